"""Beyond the paper (notebook 07): is classical regularisation more robust, and do two cheap
changes to the diffusion sampler act as a defence?

* TV-regularised compressed sensing (:class:`mripkg.models.tv.TVReconstructor`) is attacked
  white-box with the same budget, steps and control as the learned models, and serves as a
  transfer source and target.
* TV-diffusion: the projection sampler with a TV proximal step on every reverse step's x0
  prediction (``DiffusionReconstructor(tv_weight > 0)``, :func:`tv_diffusion_target`).
* Seed-averaged diffusion: the mean of several sampler draws, an estimate of the posterior
  mean (:class:`MeanTarget`).

The experiment machinery is :mod:`mripkg.evaluation` (targets, evaluations, controls); this
module adds the two defences as targets, the table of notebook 07 and :class:`OpenQuestions`,
the notebook's analysis cells one method each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..attacks.control import budget_controls
from ..data import MRIDataset
from ..evaluation.attack_runs import (
    attack_settings,
    missing_pairs,
    model_id,
    run_whitebox,
    time_attack_step,
)
from ..evaluation.clean import build_reconstructors, build_tv
from ..evaluation.scoring import Evaluation, evaluate_attack, pending_keys
from ..evaluation.selection import (
    SliceSet,
    eps_key,
    merge_eps,
    slice_set,
    spread_ids,
    subset_result,
)
from ..evaluation.stats import clear_word, excess_over_control
from ..evaluation.summaries import transfer_summary, whitebox_summary
from ..evaluation.targets import ReconCache, Target
from ..io import all_finite, read_json, write_json
from ..models import LABELS, SUPERVISED
from ..models.ddpm import DiffusionReconstructor
from ..paths import REPO_ROOT, results_dir, run_dir
from ..profiles import Profile
from . import adaptive as adaptive_attacks


class MeanTarget:
    """The posterior mean of a diffusion target: the average of its reconstructions with
    sampler draws ``sample = 0 .. n_samples - 1`` (same seed).  Each draw is an ordinary
    :class:`~mripkg.robustness.Target` sharing the base target's disk cache, so draw 0 is the
    base target's own (cached) reconstruction.  Usable wherever a ``Target`` is evaluated."""

    def __init__(self, name: str, base: Target, n_samples: int) -> None:
        if not base.stochastic:
            raise ValueError(f"target {base.name!r} is deterministic: nothing to average")
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        self.name = name
        self.seed = base.seed
        self.mask = base.mask
        self.parts = [base.with_seed(base.seed, sample=j) for j in range(int(n_samples))]

    def __call__(self, y: Tensor, slice_ids: Sequence[int]) -> Tensor:
        """Mean of the draws' reconstructions of ``y [N, 1, H, W]`` -> ``[N, 1, H, W]``."""
        return torch.stack([t(y, slice_ids) for t in self.parts]).mean(0)

    def pending_keys(self, y: Tensor, slice_ids: Sequence[int]) -> set[str]:
        """Reconstructions still to run, over all draws."""
        out: set[str] = set()
        for t in self.parts:
            out |= t.pending_keys(y, slice_ids)
        return out

    @property
    def computed(self) -> int:
        return sum(t.computed for t in self.parts)


def tv_diffusion_target(base: Target, tv_weight: float, tv_iters: int = 10) -> Target:
    """The TV variant of a diffusion target (a TV proximal step on every x0 prediction of its
    sampler): the same prior, sampler, steps, seed, weights id and disk cache, named
    ``tv_diffusion`` (its cache key carries the TV weight)."""
    model = base.model
    if not isinstance(model, DiffusionReconstructor):
        raise ValueError(f"target {base.name!r} is not a diffusion model")
    if not tv_weight > 0:
        raise ValueError(f"tv_weight must be > 0 (0 is the plain sampler), got {tv_weight!r}")
    variant = model.variant(tv_weight=tv_weight, tv_iters=tv_iters)
    return Target(
        "tv_diffusion",
        variant,
        base.mask,
        seed=base.seed,
        batch_size=base.batch_size,
        weights_id=base.weights_id,
        cache=base.cache,
    )


def defence_targets(
    diff: DiffusionReconstructor,
    mask: Tensor,
    profile: Profile,
    tv_weight: float,
    tv_iters: int,
    mean_samples: int,
    batch_size: int = 8,
    weights_id: str = "",
) -> dict[str, Any]:
    """Notebook 07's evaluation targets (full samplers, reconstructions cached in
    ``runs/<profile>/recons``): ``diffusion``, ``tv_diffusion``, ``diffusion_mean``."""
    base = Target(
        "diffusion",
        diff,
        mask,
        batch_size=batch_size,
        weights_id=weights_id,
        cache=ReconCache(run_dir(profile.name) / "recons"),
    )
    return {
        "diffusion": base,
        "tv_diffusion": tv_diffusion_target(base, tv_weight, tv_iters),
        "diffusion_mean": MeanTarget("diffusion_mean", base, mean_samples),
    }


def subset_slices(data: SliceSet, n: int) -> SliceSet:
    """``n`` of ``data``'s slices, spread evenly (the first and last included)."""
    return data.take([data.slice_ids[i] for i in spread_ids(len(data), n)])


def drop_table(
    evals: Mapping[tuple[str, str], Evaluation],
    targets: Sequence[str],
    sources: Sequence[str],
    eps: Sequence[float],
) -> dict[str, dict[str, Any]]:
    """``{target: {"clean_psnr", "n_slices", "white_box": {eps: drop}, "transfer":
    {source: {eps: drop}}, "control": {eps: drop}}}``: mean PSNR drops in dB (clean minus
    perturbed, positive = damage) from the evaluations keyed ``(source, target)``.  The diagonal
    (source = target) is the white-box drop (with ``amplification`` and
    ``control_amplification``: ``||f(y') - f(y)|| / ||y' - y||``, mean over slices); the
    control is the equal-norm random perturbation of the target's evaluations (the same for
    every source).  Missing pairs are left out."""
    out: dict[str, dict[str, Any]] = {}
    for t in targets:
        row: dict[str, Any] = {"white_box": {}, "transfer": {}, "control": {}}
        for s in sources:
            ev = evals.get((s, t))
            if ev is None:
                continue
            summ = transfer_summary(ev)
            row.setdefault("clean_psnr", float(ev.psnr_clean.mean()))
            row.setdefault("n_slices", len(ev.slice_ids))
            for e in eps:
                k = eps_key(e)
                if k not in summ:
                    continue
                if s == t:
                    row["white_box"][k] = summ[k]["psnr_drop"]
                    row.setdefault("amplification", {})[k] = summ[k]["amplification"]
                    if ev.amplification_rand is not None:
                        amp_r = float(ev.amplification_rand[ev.index(e)].mean())
                        row.setdefault("control_amplification", {})[k] = amp_r
                else:
                    row["transfer"].setdefault(s, {})[k] = summ[k]["psnr_drop"]
                if summ[k]["random_psnr_drop"] is not None:
                    row["control"].setdefault(k, summ[k]["random_psnr_drop"])
        if "clean_psnr" in row:
            out[t] = row
    return out


#: The diffusion rows of notebook 07's table: the undefended model and the two candidates.
DIFFUSION_ROWS = ("diffusion", "tv_diffusion", "diffusion_mean")
#: Status of a diffusion row without an adaptive result.
TRANSFER_ONLY = "transfer only"


def fmt_interval(iv: Mapping[str, Any] | None) -> str:
    """``"mean [low, high]"`` (dB, two decimals) of ``{mean, low, high}``; the mean alone when
    the interval is undefined (one slice), "-" for ``None``."""
    if iv is None or iv.get("mean") is None:
        return "-"
    if iv.get("low") is None or iv.get("high") is None:
        return f"{iv['mean']:.2f}"
    return f"{iv['mean']:.2f} [{iv['low']:.2f}, {iv['high']:.2f}]"


def add_adaptive(
    table: dict[str, dict[str, Any]], adaptive: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Put the adaptive results (:func:`~mripkg.experiments.adaptive.experiment`; ``None`` when
    there are none for this run's settings) into :func:`drop_table`'s diffusion rows:
    ``adaptive`` ``{eps: {mean, low, high}}`` (PSNR drop, dB, 95 % interval over slices),
    ``adaptive_slices``, ``status`` (``"adaptive"`` or :data:`TRANSFER_ONLY`) and, for the
    two candidates, ``verdict`` ``{eps: text}`` of :data:`mripkg.experiments.adaptive.DEFENCE_RULE`.
    Returns ``table`` (changed in place)."""
    for name in DIFFUSION_ROWS:
        row = table.get(name)
        if row is None:
            continue
        res = (adaptive or {}).get(name)
        if not res:
            row["status"] = TRANSFER_ONLY
            continue
        row["status"] = "adaptive"
        row["adaptive"] = {k: v["psnr_drop"] for k, v in res["eps"].items()}
        row["adaptive_control"] = {k: v["control_drop"]["mean"] for k, v in res["eps"].items()}
        row["adaptive_slices"] = len(res["slice_ids"])
        verdicts = (adaptive or {}).get("verdicts", {}).get(name)
        if verdicts:
            row["verdict"] = {k: v["verdict"] for k, v in verdicts.items()}
    return table


def table_rows(
    table: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str],
    sources: Sequence[str],
    eps: Sequence[float],
) -> list[dict[str, str]]:
    """Markdown-ready rows of :func:`drop_table`: clean PSNR, then for each eps the white-box
    drop, the drop transferred from each source, the control's drop ("-" where absent) and,
    when any row has one (:func:`add_adaptive`), the adaptive white-box drop with its 95 %
    interval (diffusion rows without one: "transfer only")."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    with_adaptive = any("status" in r for r in table.values())

    def adaptive_cell(r: Mapping[str, Any], k: str) -> str:
        if r.get("status") == TRANSFER_ONLY:
            return TRANSFER_ONLY
        a = r.get("adaptive", {}).get(k)
        if a is None:  # a diffusion row attacked adaptively at other eps only
            return TRANSFER_ONLY if "status" in r else "-"
        return fmt_interval(a)

    rows = []
    for t, r in table.items():
        row = {
            "model": labels.get(t, t),
            "slices": str(r["n_slices"]),
            "clean PSNR": f"{r['clean_psnr']:.2f}",
        }
        for e in eps:
            k = eps_key(e)
            row[f"white-box {e:g}"] = fmt(r["white_box"].get(k))
            for s in sources:  # every column in every row ("-" on the diagonal)
                row[f"from {labels.get(s, s)} {e:g}"] = fmt(r["transfer"].get(s, {}).get(k))
            row[f"control {e:g}"] = fmt(r["control"].get(k))
            if with_adaptive:
                row[f"adaptive {e:g}"] = adaptive_cell(r, k)
        rows.append(row)
    return rows


def _excess_text(ev: Evaluation, eps: float) -> str:
    j = ev.index(eps)
    ex = excess_over_control(ev.psnr_drop[j], ev.psnr_drop_rand[j])
    return (
        f"{ex['excess']:.2f} dB over the control [95 % interval {ex['low']:.2f}, "
        f"{ex['high']:.2f}] ({clear_word(ex)})"
    )


def summary_markdown(
    table: Mapping[str, Mapping[str, Any]],
    evals: Mapping[tuple[str, str], Evaluation],
    labels: Mapping[str, str],
    sources: Sequence[str],
    eps: float,
    header: str,
) -> str:
    """Notebook 07's summary: for TV, ResUNet++ and i-RIM the clean PSNR, the white-box drop at
    ``eps`` with its excess over the equal-norm control (a paired interval over slices,
    :func:`mripkg.claims.excess_over_control`) and the error amplification; the supervised
    perturbations transferred to TV; the diffusion variants' clean PSNR and transferred drops.
    ``table``: :func:`drop_table`; ``evals`` keyed ``(source, target)``."""
    k = eps_key(eps)
    lines = [header, ""]
    for m in ("tv", "resunetpp", "irim"):
        r = table[m]
        lines.append(
            f"* {labels[m]}: clean {r['clean_psnr']:.2f} dB; white-box drop at ε {eps:g}: "
            f"{r['white_box'][k]:.2f} dB, {_excess_text(evals[(m, m)], eps)}; error "
            f"amplification {r['amplification'][k]:.2f} "
            f"(control {r['control_amplification'][k]:.2f})."
        )
    for s in SUPERVISED:
        lines.append(
            f"* {labels[s]} -> TV at ε {eps:g}: {table['tv']['transfer'][s][k]:.2f} dB, "
            f"{_excess_text(evals[(s, 'tv')], eps)}."
        )
    for m in DIFFUSION_ROWS:
        r = table[m]
        drops = ", ".join(f"from {labels[s]} {r['transfer'][s][k]:.2f}" for s in sources)
        lines.append(
            f"* {labels[m]}: clean {r['clean_psnr']:.2f} dB; transferred drops at ε {eps:g}: "
            f"{drops} (control {r['control'][k]:.2f})."
        )
    lines += ["", *defence_status(table, labels)]
    return "\n".join(lines)


def defence_status(table: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> list[str]:
    """One Markdown bullet per diffusion row of :func:`add_adaptive`'s table: its adaptive
    drops (with intervals) or "transfer only", and for the candidates the verdict of
    :data:`mripkg.experiments.adaptive.DEFENCE_RULE` (the only place a row is called a defence)."""
    lines = []
    for m in DIFFUSION_ROWS:
        r = table.get(m)
        if r is None:
            continue
        name = labels.get(m, m)
        if r.get("status") != "adaptive":
            tail = "; not called a defence." if m != "diffusion" else "."
            what = "candidate defence" if m != "diffusion" else "undefended"
            lines.append(
                f"* {name} ({what}): **transfer only**, no adaptive attack result for this "
                f"run's sampler and settings{tail}"
            )
            continue
        parts = []
        for k, a in r["adaptive"].items():
            text = f"ε {k}: {fmt_interval(a)} dB"
            if m != "diffusion" and k in r.get("verdict", {}):
                text += f" → {r['verdict'][k]}"
            parts.append(text)
        head = "undefended, adaptive drop" if m == "diffusion" else "candidate, adaptive drop"
        lines.append(
            f"* {name} ({head} over {r['adaptive_slices']} slices): " + "; ".join(parts) + "."
        )
    return lines


__all__ = [
    "DIFFUSION_ROWS",
    "TRANSFER_ONLY",
    "MeanTarget",
    "OpenQuestions",
    "add_adaptive",
    "defence_status",
    "defence_targets",
    "drop_table",
    "fmt_interval",
    "subset_slices",
    "table_rows",
    "tv_diffusion_target",
]


# --------------------------------------------------------------------------------------------
# notebook 07, step by step: each method is one analysis cell

#: the transfer sources of notebook 07, and every target of its table
SOURCES = ["resunetpp", "irim", "tv"]
ALL_TARGETS = ["resunetpp", "irim", "tv", "diffusion", "tv_diffusion", "diffusion_mean"]


@dataclass
class OpenQuestions:
    """Notebook 07: TV attacked white-box and as transfer source and target; the diffusion
    model with two candidate defences (a TV step in the sampler, the mean of several draws).

    Receives the profile, the data set, the mask and the notebook's settings; hands on the
    evaluations (``evals``), the white-box curves and the drop table (``table``)."""

    prof: Profile
    ds: MRIDataset
    mask: Tensor
    batch_size: int = 8
    tv_slices: int = 8
    tv_eps: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.02, 0.04, 0.08])
    table_eps: list[float] = field(default_factory=lambda: [0.04, 0.08])
    defence_slices: int = 4
    mean_samples: int = 3
    tv_diffusion_weight: float = 0.05
    tv_diffusion_iters: int = 10
    adaptive: bool = False

    def load_models(self) -> tuple[str, list[dict[str, Any]]]:
        """The reconstructors and TV with its weight chosen on validation slices; caption and
        rows of the TV search."""
        prof, ds = self.prof, self.ds
        self.models, self.metas, _ = build_reconstructors(prof, ds, retrain=False)
        tv, tv_search = build_tv(prof, ds)
        self.models["tv"], self.metas["tv"] = tv, tv_search
        self.tv, self.tv_search = tv, tv_search
        caption = (
            f"TV: {tv_search['iters']} primal-dual iterations, step ratio "
            f"{tv_search['step_ratio']:g}, {tv_search['n_images']} validation slices"
        )
        rows = [
            {"λ": f"{lam:g}", "validation PSNR dB": f"{p:.2f}", "chosen": "*" * (lam == tv.lam)}
            for lam, p in zip(tv_search["lams"], tv_search["psnr_mean"], strict=True)
        ]
        return caption, rows

    def attack_tv(self) -> tuple[str, list[dict[str, Any]]]:
        """ResUNet++, i-RIM and TV attacked white-box on the TV slices (through the attack
        cache, with a time estimate first), each source's perturbations given to every
        other; caption and rows of PSNR drops (control)."""
        prof, ds, mask, a, batch_size = (
            self.prof,
            self.ds,
            self.mask,
            self.prof.attack,
            self.batch_size,
        )
        models, metas = self.models, self.metas
        data = slice_set(ds["test"], mask, a.n_slices)
        self.tdata = tdata = subset_slices(data, self.tv_slices)
        t_eps = merge_eps(self.tv_eps, self.table_eps)
        sources = SOURCES
        settings = {m: attack_settings(prof, metas[m]) for m in sources}
        todo, per = {}, {}
        for m in sources:
            todo[m] = missing_pairs(m, tdata, t_eps, settings[m], profile=prof)
            per[m] = time_attack_step(models[m], tdata, batch_size) if todo[m] else 0.0
        print(f"slices {tdata.slice_ids}, eps {t_eps}, {a.steps} Adam steps")
        for m in sources:
            minutes = todo[m] * a.steps * per[m] / 60
            print(f"  {LABELS[m]:10s} {todo[m]:3d} pairs to attack -> about {minutes:.1f} min")
        t0 = time.perf_counter()
        self.attacks = attacks = {
            m: run_whitebox(
                models[m], m, tdata, t_eps, settings[m], profile=prof, batch_size=batch_size
            )
            for m in sources
        }
        print(f"attacks ready after {time.perf_counter() - t0:.0f} s")
        for m, res in attacks.items():
            assert (res.rel_norm <= res.eps.view(-1, 1) * (1 + 1e-6)).all(), m  # the budget
        controls = budget_controls(tdata.kspace, mask, tdata.slice_ids, t_eps, seed=prof.seed)
        targets = {m: Target(m, models[m], mask, batch_size=batch_size) for m in sources}
        self.evals = evals = {
            (s, t): evaluate_attack(targets[t], tdata, attacks[s], source=s, controls=controls)
            for s in sources
            for t in sources
        }
        self.curves = {m: whitebox_summary(evals[(m, m)]) for m in sources}
        rows = []
        for (s, t), ev in evals.items():
            row = {"source": LABELS[s], "target": LABELS[t] + (" (white-box)" if s == t else "")}
            for j, e in enumerate(ev.eps):
                if e > 0:
                    row[f"eps {e:g}"] = (
                        f"{float(ev.psnr_drop[j].mean()):.2f} "
                        f"({float(ev.psnr_drop_rand[j].mean()):.2f})"
                    )
            rows.append(row)
        return "PSNR drop in dB (random control)", rows

    def defences(self) -> None:
        """The diffusion model, TV-diffusion and the seed-averaged diffusion model as targets
        of every source's perturbations on the defence slices (reconstructions cached)."""
        prof, mask, tdata = self.prof, self.mask, self.tdata
        self.ddata = ddata = subset_slices(tdata, self.defence_slices)
        d_eps = [0.0, *self.table_eps]
        self.diff = diff = Target(
            "diffusion",
            self.models["diffusion"],
            mask,
            batch_size=self.batch_size,
            weights_id=model_id(self.metas["diffusion"]),
            cache=ReconCache(run_dir(prof.name) / "recons"),
        )
        self.d_targets = d_targets = {
            "diffusion": diff,
            "tv_diffusion": tv_diffusion_target(
                diff, self.tv_diffusion_weight, self.tv_diffusion_iters
            ),
            "diffusion_mean": MeanTarget("diffusion_mean", diff, self.mean_samples),
        }
        d_ids = ddata.slice_ids
        d_controls = budget_controls(ddata.kspace, mask, d_ids, d_eps, seed=prof.seed)
        d_attacks = {s: subset_result(self.attacks[s], tdata, d_ids, d_eps) for s in SOURCES}
        pending = set()
        for t in d_targets.values():
            for s in SOURCES:
                pending |= pending_keys(t, ddata, d_attacks[s], d_controls)
        per_recon = diff.time_per_slice(ddata) if pending else 0.0
        print(
            f"diffusion slices {ddata.slice_ids}, eps {d_eps}, {prof.ddpm.sampler_steps} sampler "
            f"steps, {self.mean_samples} draws in the mean; {len(pending)} reconstructions to "
            f"run at ~{per_recon:.1f} s "
            f"-> about {len(pending) * per_recon / 60:.1f} min"
        )
        t0 = time.perf_counter()
        for name, t in d_targets.items():
            for s in SOURCES:
                self.evals[(s, name)] = evaluate_attack(
                    t, ddata, d_attacks[s], source=s, controls=d_controls
                )
        print(f"done in {time.perf_counter() - t0:.0f} s")

    def adaptive_attacks(self) -> str:
        """The adaptive attacks on the diffusion model and both candidates
        (:func:`mripkg.experiments.adaptive.experiment`) on the defence slices at the table
        eps: run when ``adaptive`` (cached per (model, slice, eps) in
        ``runs/<profile>/adaptive``), else the committed
        ``results/<profile>/metrics_adaptive.json`` when it matches this run; one line saying
        which (``None``: the diffusion rows are "transfer only")."""
        prof, metas = self.prof, self.metas
        self.adaptive_res = adaptive_attacks.experiment(
            self.models["diffusion"],
            attack_settings(prof, metas["diffusion"]),
            self.ddata,
            self.table_eps,
            targets=self.d_targets,
            profile=prof,
            tv_weight=self.tv_diffusion_weight,
            tv_iters=self.tv_diffusion_iters,
            mean_samples=self.mean_samples,
            controls_seed=prof.seed,
            run=self.adaptive,
            committed=results_dir(prof.name) / "metrics_adaptive.json",
            out=run_dir(prof.name) / "metrics_adaptive.json",
        )
        if self.adaptive_res is None:
            return "adaptive: no result for this run's settings (diffusion rows: transfer only)"
        return f"adaptive: from {self.adaptive_res['source']}"

    def drop_table(self) -> dict[str, Any]:
        """The drop table of every target (:func:`drop_table`) at the table eps, with the
        adaptive columns (:func:`add_adaptive`)."""
        table = drop_table(self.evals, ALL_TARGETS, SOURCES, self.table_eps)
        self.table = add_adaptive(table, getattr(self, "adaptive_res", None))
        return self.table

    def figure_images(self) -> list[tuple[str, Tensor]]:
        """The image row of figure 7: ground truth, each model's clean reconstruction and
        TV's white-box reconstruction at the largest table eps, on the middle defence slice."""
        evals, tdata, ddata = self.evals, self.tdata, self.ddata
        e_max = max(self.table_eps)
        pos = ddata.slice_ids[len(ddata) // 2]
        ev_tv = evals[("tv", "tv")]
        b = ev_tv.slice_ids.index(pos)
        images = [("ground truth", tdata.images[b])]
        for m in ("tv", "diffusion", "tv_diffusion", "diffusion_mean"):
            ev = evals[(m if m == "tv" else "tv", m)]
            bb = ev.slice_ids.index(pos)
            images.append((f"{LABELS[m]}, clean\n{float(ev.psnr_clean[bb]):.2f} dB", ev.clean[bb]))
        j = ev_tv.index(e_max)
        images.append(
            (f"TV, white-box ε={e_max:g}\n{float(ev_tv.psnr[j, b]):.2f} dB", ev_tv.adv[j, b])
        )
        return images

    def table_rows(self) -> tuple[str, list[dict[str, Any]]]:
        """Caption and rows of the drop table (:func:`table_rows`)."""
        return (
            "PSNR drop in dB (clean − perturbed, mean over the slices)",
            table_rows(self.table, LABELS, SOURCES, self.table_eps),
        )

    def save(self) -> Path:
        """``metrics_open_questions.json``: TV's search, the defences' settings, the slices,
        the white-box curves and the drop table, in runs/."""
        tv_search = self.tv_search
        out = {
            "tv": {k: tv_search[k] for k in ("lam", "lams", "psnr_mean", "iters", "step_ratio")},
            "tv_diffusion": {
                "tv_weight": self.tv_diffusion_weight,
                "tv_iters": self.tv_diffusion_iters,
            },
            "diffusion_mean": {"samples": self.mean_samples},
            "slices": {"attacked": self.tdata.slice_ids, "diffusion": self.ddata.slice_ids},
            "whitebox": self.curves,
            "table": self.table,
        }
        self.json_path = write_json(run_dir(self.prof.name) / "metrics_open_questions.json", out)
        print("wrote", self.json_path.relative_to(REPO_ROOT))
        return self.json_path

    def summary(self) -> str:
        """The closing note (:func:`summary_markdown`) with this run's settings."""
        prof, tv, tv_search = self.prof, self.tv, self.tv_search
        header = (
            f"Profile `{prof.name}`: TV with λ = {tv.lam:g} ({tv.iters} iterations) chosen on "
            f"{tv_search['n_images']} validation slices; attacks on {len(self.tdata)} test "
            f"slices, {prof.attack.steps} Adam steps; diffusion variants on {len(self.ddata)} "
            f"slices, {prof.ddpm.sampler_steps} sampler steps."
        )
        return summary_markdown(
            self.table, self.evals, LABELS, SOURCES, max(self.table_eps), header
        )

    def check(self, figure_paths: Sequence[Path] = ()) -> None:
        """Assert what the notebook produced: figures, a finite JSON with every target and
        eps, clean reconstructions at eps 0, a non-negative TV image, TV's weight."""
        for p in figure_paths:
            assert p.is_file() and p.stat().st_size > 0, p
        saved = read_json(self.json_path)
        assert all_finite(saved), "non-finite values in metrics_open_questions.json"
        assert set(saved["table"]) == set(ALL_TARGETS), set(saved["table"])
        for m in SOURCES:
            assert set(saved["table"][m]["white_box"]) == {eps_key(e) for e in self.table_eps}, m
        for key, ev in self.evals.items():  # eps = 0 through the transfer path is the clean one
            if 0.0 in ev.eps:
                assert torch.allclose(ev.adv[ev.index(0.0)], ev.clean), key
        assert (self.evals[("tv", "tv")].clean >= 0).all()
        assert math.isfinite(self.tv.lam) and self.tv.lam in self.tv_search["lams"]
        for m in DIFFUSION_ROWS:  # every diffusion row says whether it was attacked adaptively
            assert saved["table"][m]["status"] in ("adaptive", TRANSFER_ONLY), m
        res = getattr(self, "adaptive_res", None)
        if self.adaptive:  # computed here: every perturbation within the Eq. 5 budget
            assert res is not None and res["source"] == "this run"
            for d in adaptive_attacks.DEFENCES:
                for k, row in res[d]["eps"].items():
                    assert row["rel_norm_max"] <= float(k) * (1 + 1e-6), (d, k)
        print("all checks passed")
