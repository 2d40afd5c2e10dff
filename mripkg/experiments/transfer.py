"""Notebook 04: perturbations crafted on one model given to the others (black-box transfer).

Stage: experiments.  Receives the profile, the data set and the mask; hands on the
evaluations of every (source, target) pair (``evals``), the per-eps transfer summaries
(``table``, the content of ``metrics_transfer.json``) and the source-by-target matrix for
report/.  Each method of :class:`Transfer` is one analysis cell of the notebook.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..attacks.control import budget_controls, budget_gap
from ..data import MRIDataset
from ..evaluation.attack_runs import (
    attack_settings,
    cached_grid,
    diffusion_settings,
    missing_pairs,
    model_id,
    run_whitebox,
    time_attack_step,
)
from ..evaluation.clean import METRIC_CONVENTIONS, build_reconstructors
from ..evaluation.scoring import evaluate_attack, pending_keys, per_slice_rows, transfer_matrix
from ..evaluation.selection import (
    eps_key,
    merge_eps,
    slice_set,
    spread_ids,
    subset_result,
    transfer_eps,
)
from ..evaluation.summaries import seed_summary, transfer_summary
from ..evaluation.targets import ReconCache, Target
from ..io import all_finite, read_json, write_csv, write_json
from ..models import LABELS as MODEL_LABELS
from ..models import NAMES, SUPERVISED
from ..paths import REPO_ROOT, run_dir
from ..profiles import PROFILES, Profile

#: display names, with the authors' route to the diffusion model
LABELS = {**MODEL_LABELS, "diffusion_image_route": "diffusion (image route)"}
#: the columns of the source-by-target matrix
MATRIX_TARGETS = [*NAMES, "diffusion_image_route"]


def settings_rows(prof: Profile) -> list[dict[str, Any]]:
    """The transfer settings of every profile, one row each (this run's marked)."""
    rows = []
    for p in PROFILES.values():
        q = p.attack
        rows.append(
            {
                "profile": p.name + (" (this run)" if p.name == prof.name else ""),
                "px": p.image_size,
                "attacked slices": q.n_slices,
                "transfer eps": ", ".join(f"{e:g}" for e in transfer_eps(p)),
                "Adam steps": q.steps,
                "diffusion slices": q.diffusion_slices,
                "diffusion eps": ", ".join(f"{e:g}" for e in q.diffusion_eps),
                "sampler seeds": q.diffusion_seeds,
                "route eps": q.route_eps,
                "sampler steps": p.ddpm.sampler_steps,
            }
        )
    return rows


def _drop_rows(evals: dict[tuple, Any], keep: Any = None) -> list[dict[str, Any]]:
    rows = []
    for key, ev in evals.items():
        if keep is not None and not keep(key):
            continue
        s, t = key[0], key[1]
        if keep is None:
            row = {"source": LABELS[s], "target": LABELS[t] + (" (white-box)" if s == t else "")}
        else:
            row = {
                "source": LABELS[s],
                "target": LABELS[t],
                "sampler seed": ev.seed,
                "route": ev.route,
            }
        for j, e in enumerate(ev.eps):
            if e > 0:
                row[f"eps {e:g}"] = (
                    f"{float(ev.psnr_drop[j].mean()):.2f} "
                    f"({float(ev.psnr_drop_rand[j].mean()):.2f})"
                )
        rows.append(row)
    return rows


@dataclass
class Transfer:
    """Notebook 04, step by step (see the module docstring)."""

    prof: Profile
    ds: MRIDataset
    mask: Tensor
    batch_size: int = 8
    small_eps: list[float] = field(default_factory=lambda: [0.01, 0.02])
    use_diffusion_source: bool = True

    def load_models(self) -> dict[str, str]:
        """The reconstructors from their weights, each wrapped as a target (the diffusion
        model's reconstructions cached on disk); returns their weights ids."""
        prof, mask = self.prof, self.mask
        self.models, self.metas, _ = build_reconstructors(prof, self.ds, retrain=False)
        recon_cache = ReconCache(run_dir(prof.name) / "recons")
        self.targets = {
            m: Target(
                m,
                self.models[m],
                mask,
                batch_size=self.batch_size,
                weights_id=model_id(self.metas[m]),
                cache=recon_cache if m == "diffusion" else None,
            )
            for m in NAMES
        }
        ids = {m: model_id(self.metas[m]) or "(no weights)" for m in self.targets}
        print(ids)
        return ids

    def attack(self) -> list[str]:
        """White-box attacks on the supervised sources over the transfer eps grid (through
        the attack cache, with a time estimate first), and the cached white-box diffusion
        perturbations of notebook 03 as a further source when complete; the sources."""
        prof, ds, mask, a = self.prof, self.ds, self.mask, self.prof.attack
        models, metas, batch_size = self.models, self.metas, self.batch_size
        self.data = data = slice_set(ds["test"], mask, a.n_slices)
        self.t_eps = t_eps = transfer_eps(prof, self.small_eps)
        self.d_eps = merge_eps([0.0], a.diffusion_eps, [a.route_eps], self.small_eps)
        sup_sources = SUPERVISED
        settings = {m: attack_settings(prof, metas[m]) for m in sup_sources}
        print(f"attacked test slices: {data.slice_ids}; transfer eps: {t_eps}")
        total = 0.0
        for m in sup_sources:
            todo = missing_pairs(m, data, t_eps, settings[m], profile=prof)
            per = time_attack_step(models[m], data, batch_size) if todo else 0.0
            total += todo * a.steps * per
            print(
                f"  {LABELS[m]:10s} {todo:4d} (slice, eps) pairs to attack -> about "
                f"{todo * a.steps * per / 60:.1f} min"
            )
        print(f"estimated: about {total / 60:.1f} min")

        attacks, source_data = {}, {}
        t0 = time.perf_counter()
        for m in sup_sources:
            attacks[m] = run_whitebox(
                models[m], m, data, t_eps, settings[m], profile=prof, batch_size=batch_size
            )
            source_data[m] = data
            print(
                f"{LABELS[m]} ready after {time.perf_counter() - t0:.0f} s; largest shortfall "
                f"from the budget {budget_gap(attacks[m]):.1e}"
            )
        sources = list(sup_sources)
        if self.use_diffusion_source:
            dwb = slice_set(ds["test"], mask, a.diffusion_whitebox_slices)
            dwb_eps = [0.0, *a.diffusion_whitebox_eps]
            grid = cached_grid(
                "diffusion",
                dwb,
                dwb_eps,
                diffusion_settings(prof, metas["diffusion"]),
                profile=prof,
            )
            if grid is not None:
                attacks["diffusion"], source_data["diffusion"] = grid, dwb
                sources.append("diffusion")
        print(
            "sources:",
            [LABELS[s] for s in sources],
            ""
            if "diffusion" in sources
            else "(no complete white-box diffusion cache: run notebook 03 "
            "with diffusion_whitebox = True to add it)",
        )
        self.attacks, self.source_data, self.sources = attacks, source_data, sources
        return sources

    def evaluate_supervised(self) -> list[dict[str, Any]]:
        """Every source's perturbations (and budget controls) given to the zero-filled and
        supervised targets; rows of PSNR drops (control)."""
        evals, controls = {}, {}
        for s in self.sources:
            sd = self.source_data[s]
            controls[s] = budget_controls(
                sd.kspace, self.mask, sd.slice_ids, self.attacks[s].eps, seed=self.prof.seed
            )
            for t in NAMES[:3]:
                evals[(s, t)] = evaluate_attack(
                    self.targets[t], sd, self.attacks[s], source=s, controls=controls[s]
                )
        self.evals, self.controls = evals, controls
        return _drop_rows(evals)

    def evaluate_diffusion(self) -> tuple[str, list[dict[str, Any]]]:
        """The diffusion target: the supervised perturbations on its slices (direct route),
        at the route eps under further sampler seeds and through the authors' image route,
        and the white-box diffusion perturbations when they are a source; caption and rows."""
        prof, a, mask, data, attacks = (
            self.prof,
            self.prof.attack,
            self.mask,
            self.data,
            self.attacks,
        )
        evals, d_eps = self.evals, self.d_eps
        self.d_ids = d_ids = [data.slice_ids[i] for i in spread_ids(len(data), a.diffusion_slices)]
        self.ddata = ddata = data.take(d_ids)
        dt = self.targets["diffusion"]
        self.seeded = seeded = {k: dt.with_seed(prof.seed + k) for k in range(1, a.diffusion_seeds)}
        plans = []  # (key, target, slices, perturbations, controls, route)
        for s in SUPERVISED:
            sub = subset_result(attacks[s], data, d_ids, d_eps)
            ctl = budget_controls(ddata.kspace, mask, d_ids, d_eps, seed=prof.seed)
            plans.append(((s, "diffusion"), dt, ddata, sub, ctl, "direct"))
            sub_r = subset_result(attacks[s], data, d_ids, [a.route_eps])
            ctl_r = budget_controls(ddata.kspace, mask, d_ids, [a.route_eps], seed=prof.seed)
            for k, tk in seeded.items():  # every diffusion eps with every seed (issue 17)
                plans.append(((s, "diffusion", f"seed+{k}"), tk, ddata, sub, ctl, "direct"))
            plans.append(((s, "diffusion_image_route"), dt, ddata, sub_r, ctl_r, "image"))
        if "diffusion" in self.sources:
            sd = self.source_data["diffusion"]
            plans.append(
                (
                    ("diffusion", "diffusion"),
                    dt,
                    sd,
                    attacks["diffusion"],
                    self.controls["diffusion"],
                    "direct",
                )
            )
        pending = set()
        for _key, t, sd, res, ctl, route in plans:
            pending |= pending_keys(t, sd, res, ctl, route)
        per = dt.time_per_slice(ddata) if pending else 0.0
        print(
            f"diffusion target: {len(d_ids)} slices {d_ids}, eps {d_eps}, seeds "
            f"{[prof.seed, *(prof.seed + k for k in seeded)]} (image route at eps "
            f"{a.route_eps:g}); {len(pending)} reconstructions to run at ~{per:.1f} s each "
            f"-> about {len(pending) * per / 60:.1f} min"
        )
        t0 = time.perf_counter()
        for key, t, sd, res, ctl, route in plans:
            evals[key] = evaluate_attack(t, sd, res, source=key[0], controls=ctl, route=route)
        print(f"done in {time.perf_counter() - t0:.0f} s")
        for key, ev in evals.items():  # eps = 0 through the transfer path is the clean recon
            if 0.0 in ev.eps and ev.route == "direct":
                assert torch.equal(ev.adv[ev.index(0.0)], ev.clean), key
        rows = _drop_rows(evals, keep=lambda key: key[1] in ("diffusion", "diffusion_image_route"))
        return "PSNR drop in dB (random control)", rows

    def summarise(self) -> tuple[str, list[dict[str, Any]]]:
        """``table[source][target][eps]``: :func:`transfer_summary` of every pair, with the
        seed spread at the route eps; the source-by-target matrix of PSNR drops at the route
        eps as caption and rows."""
        a, evals = self.prof.attack, self.evals
        table: dict[str, dict[str, Any]] = {}
        for key, ev in evals.items():
            if len(key) == 2:
                table.setdefault(key[0], {})[key[1]] = transfer_summary(ev)
        for s in SUPERVISED:
            runs = [
                evals[(s, "diffusion")],
                *(evals[(s, "diffusion", f"seed+{k}")] for k in self.seeded),
            ]
            table[s]["diffusion"][eps_key(a.route_eps)].update(seed_summary(runs, a.route_eps))
        sources = self.sources
        mat = transfer_matrix(table, sources, MATRIX_TARGETS, a.route_eps)
        rnd = transfer_matrix(table, sources, MATRIX_TARGETS, a.route_eps, "random_psnr_drop")
        rows = [
            {
                "source \\ target": LABELS[s],
                **{
                    LABELS[t]: (
                        "n/a" if math.isnan(mat[i, j]) else f"{mat[i, j]:.2f} ({rnd[i, j]:.2f})"
                    )
                    for j, t in enumerate(MATRIX_TARGETS)
                },
            }
            for i, s in enumerate(sources)
        ]
        self.table = table
        return f"PSNR drop (random control) in dB at eps {a.route_eps:g}", rows

    def save(self) -> tuple[Path, Path]:
        """``metrics_transfer.json`` (the table) and its per-slice CSV, in runs/."""
        out_dir = run_dir(self.prof.name)
        self.json_path = write_json(out_dir / "metrics_transfer.json", self.table)
        rows = [r for ev in self.evals.values() for r in per_slice_rows(ev)]
        self.csv_path = write_csv(out_dir / "metrics_transfer_per_slice.csv", rows)
        print(
            "wrote",
            self.json_path.relative_to(REPO_ROOT),
            "and",
            self.csv_path.relative_to(REPO_ROOT),
        )
        print(f"psnr: {METRIC_CONVENTIONS['psnr']}")
        return self.json_path, self.csv_path

    def check(self, figure_paths: Sequence[Path] = ()) -> None:
        """Assert what the notebook produced: figures, a finite JSON with every source,
        target and eps, zero drops at eps 0, every seed at the route eps, the budget."""
        a, sources, d_eps = self.prof.attack, self.sources, self.d_eps
        for p in figure_paths:
            assert p.is_file() and p.stat().st_size > 0, p
        saved = read_json(self.json_path)
        assert all_finite(saved), "non-finite values in metrics_transfer.json"
        assert set(saved) == set(sources)
        for s in sources:
            assert set(NAMES) <= set(saved[s]), s
            for t, per_eps in saved[s].items():
                for k, v in per_eps.items():
                    for key in ("psnr_mean", "ssim_mean", "psnr_drop", "random_psnr_drop"):
                        assert isinstance(v[key], float) and math.isfinite(v[key]), (s, t, k, key)
                    if float(k) == 0:
                        assert v["psnr_drop"] == 0 and v["random_psnr_drop"] == 0, (s, t)
        for s in SUPERVISED:
            assert set(saved[s]["diffusion"]) == {eps_key(e) for e in d_eps}
            assert set(saved[s]["diffusion_image_route"]) == {eps_key(a.route_eps)}
            n_seeds = len(saved[s]["diffusion"][eps_key(a.route_eps)]["seeds"])
            assert n_seeds == a.diffusion_seeds
        for s, res in self.attacks.items():
            assert (res.rel_norm <= res.eps.view(-1, 1) * (1 + 1e-6)).all(), s
        assert self.csv_path.stat().st_size > 0
        print("all checks passed")
