"""Beyond the paper (notebook 07): is classical regularisation more robust, and do two cheap
changes to the diffusion sampler act as a defence?

* TV-regularised compressed sensing (:class:`mripkg.models.tv.TVReconstructor`) is attacked
  white-box with the same budget, steps and control as the learned models, and serves as a
  transfer source and target.
* TV-diffusion: the projection sampler with a TV proximal step on every reverse step's x0
  prediction (``DiffusionReconstructor(tv_weight > 0)``, :func:`tv_diffusion_target`).
* Seed-averaged diffusion: the mean of several sampler draws, an estimate of the posterior
  mean (:class:`MeanTarget`).

The experiment machinery is :mod:`mripkg.robustness` (targets, evaluations, controls); this
module adds the two defences as targets and the table of notebook 07.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..evaluation.scoring import Evaluation
from ..evaluation.selection import SliceSet, eps_key, spread_ids
from ..evaluation.stats import clear_word, excess_over_control
from ..evaluation.summaries import transfer_summary
from ..evaluation.targets import Target
from ..models.ddpm import DiffusionReconstructor


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


def table_rows(
    table: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str],
    sources: Sequence[str],
    eps: Sequence[float],
) -> list[dict[str, str]]:
    """Markdown-ready rows of :func:`drop_table`: clean PSNR, then for each eps the white-box
    drop, the drop transferred from each source and the control's drop ("-" where absent)."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

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
    for s in ("resunetpp", "irim"):
        lines.append(
            f"* {labels[s]} -> TV at ε {eps:g}: {table['tv']['transfer'][s][k]:.2f} dB, "
            f"{_excess_text(evals[(s, 'tv')], eps)}."
        )
    for m in ("diffusion", "tv_diffusion", "diffusion_mean"):
        r = table[m]
        drops = ", ".join(f"from {labels[s]} {r['transfer'][s][k]:.2f}" for s in sources)
        lines.append(
            f"* {labels[m]}: clean {r['clean_psnr']:.2f} dB; drops at ε {eps:g}: {drops} "
            f"(control {r['control'][k]:.2f})."
        )
    return "\n".join(lines)


__all__ = [
    "MeanTarget",
    "drop_table",
    "subset_slices",
    "table_rows",
    "tv_diffusion_target",
]
