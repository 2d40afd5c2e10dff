"""Notebook 05: what the artifacts f(y + M delta) - f(y) look like, and whether they can be
told from noise.

Stage: experiments.  Receives the profile, the data set and the mask; hands on the artifact
groups (label -> eps, artifacts ``[E, B, 1, H, W]``, slice ids), their statistics per slice
(``grids``) and per eps (``summary``), the blind detection AUCs, the posterior-spread
detector and the evaluations that report/ turns into claims 1-5.  Each method of
:class:`Artifacts` is one analysis cell of the notebook.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..attacks.control import budget_controls
from ..data import MRIDataset
from ..evaluation.artifacts import (
    SPREAD_EPS,
    SPREAD_SEEDS,
    SPREAD_SOURCE,
    WHITE_NOISE_FLATNESS,
    artifact_stats,
    detection_by_eps,
    gaussian_reference,
    per_slice_rows,
    spread_detection,
    stats_grid,
    summarize_grid,
)
from ..evaluation.attack_runs import attack_settings, missing_pairs, model_id, run_whitebox
from ..evaluation.clean import build_reconstructors
from ..evaluation.scoring import evaluate_attack, pending_keys
from ..evaluation.selection import eps_key, merge_eps, slice_set, spread_ids, subset_result
from ..evaluation.targets import ReconCache, Target
from ..io import all_finite, read_json, write_csv, write_json
from ..models import LABELS as L
from ..models import SUPERVISED
from ..paths import REPO_ROOT, run_dir
from ..profiles import Profile


@dataclass
class Artifacts:
    """Notebook 05, step by step (see the module docstring)."""

    prof: Profile
    ds: MRIDataset
    mask: Tensor
    batch_size: int = 8

    def prepare(self) -> None:
        """Models, the attacked slices (the diffusion model's subset), the supervised
        white-box perturbations (through the attack cache), the diffusion target with its
        reconstruction cache and a second sampler seed; prints the work left."""
        prof, ds, mask, a, batch_size = (
            self.prof,
            self.ds,
            self.mask,
            self.prof.attack,
            self.batch_size,
        )
        models, metas, _ = build_reconstructors(prof, ds, retrain=False)
        self.models, self.metas = models, metas
        self.data = data = slice_set(ds["test"], mask, a.n_slices)
        self.d_ids = d_ids = [data.slice_ids[i] for i in spread_ids(len(data), a.diffusion_slices)]
        self.ddata = ddata = data.take(d_ids)
        sup = SUPERVISED
        self.sup_eps = sup_eps = [e for e in merge_eps(a.eps_grid, a.diffusion_eps) if e > 0]
        self.d_eps = d_eps = [e for e in a.diffusion_eps if e > 0]
        settings = {m: attack_settings(prof, metas[m]) for m in sup}
        todo = {m: missing_pairs(m, data, sup_eps, settings[m], profile=prof) for m in sup}

        self.dt = dt = Target(
            "diffusion",
            models["diffusion"],
            mask,
            batch_size=batch_size,
            weights_id=model_id(metas["diffusion"]),
            cache=ReconCache(run_dir(prof.name) / "recons"),
        )
        self.dt_other = dt_other = dt.with_seed(prof.seed + 1)  # the sampler's own variability
        self.attacks = attacks = {
            m: run_whitebox(
                models[m], m, data, sup_eps, settings[m], profile=prof, batch_size=batch_size
            )
            for m in sup
        }
        self.sub = sub = {s: subset_result(attacks[s], data, d_ids, d_eps) for s in sup}
        self.ctl = ctl = budget_controls(ddata.kspace, mask, d_ids, d_eps, seed=prof.seed)
        pending = dt_other.pending_keys(ddata.y, d_ids)
        for s in sup:
            pending |= pending_keys(dt, ddata, sub[s], ctl)
        per = dt.time_per_slice(ddata) if pending else 0.0
        print(
            f"attack pairs computed here: {todo}; diffusion reconstructions not cached: "
            f"{len(pending)} -> about {len(pending) * per / 60:.1f} min"
        )

    def evaluate(self) -> None:
        """White-box and supervised-transfer evaluations on the attacked slices, transfer to
        the diffusion model with the equal-norm random control, and the diffusion model's
        clean reconstruction under the second seed."""
        models, mask, data, attacks, batch_size = (
            self.models,
            self.mask,
            self.data,
            self.attacks,
            self.batch_size,
        )
        evals = {}
        for m in SUPERVISED:  # white-box: the source is the target
            target = Target(m, models[m], mask, batch_size=batch_size)
            evals[m, m] = evaluate_attack(target, data, attacks[m], source=m)
        for s, t in (("irim", "resunetpp"), ("resunetpp", "irim")):  # supervised transfer
            target = Target(t, models[t], mask, batch_size=batch_size)
            evals[s, t] = evaluate_attack(target, data, attacks[s], source=s)
        for s in SUPERVISED:  # transfer to the diffusion model, with the random control
            evals[s, "diffusion"] = evaluate_attack(
                self.dt, self.ddata, self.sub[s], source=s, controls=self.ctl
            )
        self.clean_other = self.dt_other(self.ddata.y, self.d_ids)
        self.evals = evals
        print(f"diffusion reconstructions run here: {self.dt.computed + self.dt_other.computed}")

    def statistics(self, show_eps: float = -1.0) -> tuple[str, list[dict[str, Any]]]:
        """The artifact groups, their statistics per slice and per eps, against the sampler's
        own variability (another seed) and white Gaussian noise of the same RMS; the table at
        ``show_eps`` (``-1``: the largest diffusion eps)."""
        prof, evals, ddata, d_ids = self.prof, self.evals, self.ddata, self.d_ids
        self.test = test = self.ds["test"]
        groups = {}  # label -> (eps list, artifacts [E, B, 1, H, W], slice ids)
        for (s, t), ev in evals.items():
            kind = "white-box" if s == t else f"<- {L[s]}"
            groups[f"{L[t]} {kind}"] = (ev.eps, ev.adv - ev.clean[None], ev.slice_ids)
        self.ev_c = ev_c = evals["irim", "diffusion"]
        groups["diffusion, random control"] = (
            ev_c.eps,
            ev_c.rand - ev_c.clean[None],
            ev_c.slice_ids,
        )
        seed_diff = (self.clean_other - ev_c.clean)[None]
        groups["diffusion, other seed"] = ([0.0], seed_diff, d_ids)
        g = torch.Generator().manual_seed(prof.seed)
        rms_ref = artifact_stats(seed_diff[0], ddata.images, test.masks[d_ids])["rms"]
        noise = gaussian_reference(test.masks[d_ids], rms_ref, generator=g)[None]
        groups["white Gaussian noise"] = ([0.0], noise, d_ids)

        grids, summary = {}, {}
        for lab, (eps, arts, ids) in groups.items():
            grids[lab] = stats_grid(arts, test.images[ids], test.masks[ids])
            summary[lab] = summarize_grid(grids[lab], [eps_key(e) for e in eps])
        self.e_star = e_star = max(self.d_eps) if show_eps < 0 else float(show_eps)
        self.k_star = k_star = eps_key(e_star)
        self.groups, self.grids, self.summary = groups, grids, summary
        rows = []
        for lab, per_eps in summary.items():
            r = per_eps.get(k_star) or per_eps.get(eps_key(0.0))
            if r is None:
                continue
            rows.append(
                {
                    "artifact": lab,
                    "eps": k_star if k_star in per_eps else "-",
                    "slices": r["n"],
                    "RMS": f"{r['rms']:.4f}",
                    "excess kurtosis": (
                        f"{r['excess_kurtosis']:.2f} ± {r['excess_kurtosis_sd']:.2f}"
                    ),
                    "skewness": f"{r['skewness']:.2f}",
                    "adjacent corr": f"{r['neighbour_corr']:.3f}",
                    "edge corr": f"{r['edge_corr']:.3f}",
                    "flatness": f"{r['spectral_flatness']:.3f}",
                }
            )
        print(f"spectral flatness of white noise: {WHITE_NOISE_FLATNESS:.3f}")
        return f"Mean ± SD over slices at eps {e_star:g}", rows

    def detection(
        self,
    ) -> tuple[tuple[str, list[dict[str, Any]]], tuple[str, list[dict[str, Any]]]]:
        """Detection AUC of the blind noise-level estimate per group and eps, and the
        diffusion model's change relative to the change from another sampler seed."""
        evals, ev_c, clean_other = self.evals, self.ev_c, self.clean_other
        detect = {}
        for (s, t), ev in evals.items():
            kind = "white-box" if s == t else f"<- {L[s]}"
            keys = [eps_key(e) for e in ev.eps]
            detect[f"{L[t]} {kind}"] = detection_by_eps(ev.clean, ev.adv, keys)
        keys_c = [eps_key(e) for e in ev_c.eps]
        detect["diffusion, random control"] = detection_by_eps(ev_c.clean, ev_c.rand, keys_c)
        detect["diffusion, other seed"] = detection_by_eps(
            ev_c.clean, clean_other[None], [eps_key(0.0)]
        )
        seed_norm = (clean_other - ev_c.clean).flatten(1).norm(dim=1)
        relative = {
            L[s]: {
                eps_key(e): float((evals[s, "diffusion"].change[j] / seed_norm).mean())
                for j, e in enumerate(self.d_eps)
            }
            for s in SUPERVISED
        }
        self.detect, self.relative = detect, relative
        cols = sorted({k for v in detect.values() for k in v}, key=float)
        rows_d = [
            {"artifact": lab, **{f"eps {k}": v.get(k, "") for k in cols}}
            for lab, v in detect.items()
        ]
        rows_r = [
            {"source": s, **{f"eps {k}": round(v, 3) for k, v in r.items()}}
            for s, r in relative.items()
        ]
        return (
            ("Detection AUC of the blind noise-level estimate", rows_d),
            ("Diffusion: change / change from another sampler seed", rows_r),
        )

    def spread_detector(self) -> tuple[str, list[dict[str, Any]]]:
        """The posterior spread over sampler seeds as a detector of perturbed measurements,
        beside the blind noise estimate's AUC."""
        prof, dt, ddata, d_ids = self.prof, self.dt, self.ddata, self.d_ids
        src = SPREAD_SOURCE
        spread_eps = [e for e in SPREAD_EPS if any(abs(e - d) < 1e-9 for d in self.d_eps)]
        self.spread_seeds = spread_seeds = [prof.seed + k for k in range(SPREAD_SEEDS)]
        spread_sub = subset_result(self.attacks[src], self.data, d_ids, spread_eps)
        spread_inputs = {eps_key(0.0): ddata.y}
        spread_inputs.update({eps_key(e): spread_sub.y_adv[j] for j, e in enumerate(spread_eps)})
        spread_targets = [dt.with_seed(sd) for sd in spread_seeds]
        self.spread_todo = spread_todo = sum(
            t.pending(y, d_ids) for t in spread_targets for y in spread_inputs.values()
        )
        per = dt.time_per_slice(ddata) if spread_todo else 0.0
        print(
            f"{len(spread_inputs)} inputs x {len(spread_seeds)} seeds x {len(d_ids)} slices; "
            f"{spread_todo} reconstructions not cached -> about {spread_todo * per / 60:.1f} min"
        )
        t0 = time.perf_counter()
        spread_samples = {
            k: torch.stack([t(y, d_ids) for t in spread_targets]) for k, y in spread_inputs.items()
        }
        self.spread_seconds = spread_seconds = time.perf_counter() - t0
        self.spread = spread = spread_detection(
            spread_samples, self.test.masks[d_ids], eps_key(0.0)
        )
        self.blind = blind = self.detect[f"{L['diffusion']} <- {L[src]}"]
        rows = [
            {
                "eps": k,
                "posterior spread (mean SD in the head)": f"{v['spread_mean']:.4f}",
                "AUC, posterior spread": f"{v['auc']:.2f}" if "auc" in v else "-",
                "AUC, blind noise estimate": f"{blind[k]:.2f}" if k in blind else "-",
            }
            for k, v in spread.items()
        ]
        caption = (
            f"{L['diffusion']} <- {L[src]}, {len(d_ids)} slices, sampler seeds {spread_seeds}; "
            f"{spread_todo} reconstructions run here in {spread_seconds:.0f} s"
        )
        return caption, rows

    @property
    def main(self) -> list[str]:
        """The artifact groups of the claims: supervised white-box, transferred to the
        diffusion model, the diffusion model's random control."""
        return [
            f"{L['resunetpp']} white-box",
            f"{L['irim']} white-box",
            f"{L['diffusion']} <- {L['resunetpp']}",
            f"{L['diffusion']} <- {L['irim']}",
            "diffusion, random control",
        ]

    #: the reference groups (no perturbation)
    refs = ("diffusion, other seed", "white Gaussian noise")

    def save(self) -> tuple[Path, Path]:
        """``metrics_artifacts.json`` (summaries with detection AUCs, the diffusion change
        against the seed change) and its per-slice CSV, in runs/."""
        out_dir = run_dir(self.prof.name)
        out = {}
        for lab, per_eps in self.summary.items():
            out[lab] = {
                k: {**v, "detection_auc": self.detect.get(lab, {}).get(k)}
                for k, v in per_eps.items()
            }
        out["diffusion_change_vs_seed"] = self.relative
        self.json_path = write_json(out_dir / "metrics_artifacts.json", out)
        rows = []
        for lab, (eps, _, ids) in self.groups.items():
            rows += per_slice_rows(lab, eps, self.grids[lab], ids)
        self.csv_path = write_csv(out_dir / "metrics_artifacts_per_slice.csv", rows)
        print(
            "wrote",
            self.json_path.relative_to(REPO_ROOT),
            "and",
            self.csv_path.relative_to(REPO_ROOT),
        )
        return self.json_path, self.csv_path

    def supervised_transfer(self) -> dict[tuple[str, str], Any]:
        """The supervised transfer pairs with the budget controls notebook 04 uses, and the
        transfer to the diffusion model (claim 2's and claim 5's evaluations)."""
        prof, mask, data, batch_size = self.prof, self.mask, self.data, self.batch_size
        ctl_sup = budget_controls(data.kspace, mask, data.slice_ids, self.sup_eps, seed=prof.seed)
        transfer = {}
        for s, t in (("irim", "resunetpp"), ("resunetpp", "irim")):
            target = Target(t, self.models[t], mask, batch_size=batch_size)
            transfer[s, t] = evaluate_attack(
                target, data, self.attacks[s], source=s, controls=ctl_sup
            )
        for s in SUPERVISED:
            transfer[s, "diffusion"] = self.evals[s, "diffusion"]
        self.transfer = transfer
        return transfer

    def check(self, figure_paths: Sequence[Path] = ()) -> None:
        """Assert what the notebook produced: figures, a finite JSON with every group, sane
        statistics, white noise that looks like white noise, the budget."""
        for p in figure_paths:
            assert p.is_file() and p.stat().st_size > 0, p
        saved = read_json(self.json_path)
        assert all_finite(saved), "non-finite values in metrics_artifacts.json"
        assert set(self.main) | set(self.refs) <= set(saved)
        for lab in self.main:
            assert self.k_star in saved[lab], (lab, self.k_star)
            row = saved[lab][self.k_star]
            assert row["n"] >= 1 and 0 <= row["detection_auc"] <= 1, lab
            assert -1 <= row["neighbour_corr"] <= 1 and -1 <= row["edge_corr"] <= 1, lab
            assert 0 < row["spectral_flatness"] <= 1 and row["rms"] > 0, lab
        ref = saved["white Gaussian noise"][eps_key(0.0)]
        assert abs(ref["neighbour_corr"]) < 0.1 and abs(ref["excess_kurtosis"]) < 0.5, ref
        for m, res in self.attacks.items():
            assert (res.rel_norm <= res.eps.view(-1, 1) * (1 + 1e-6)).all(), m
        assert self.csv_path.stat().st_size > 0
        print("all checks passed")
