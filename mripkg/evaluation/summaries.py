"""Summaries of evaluations: per-eps means, SDs and drops (white-box, transfer, seeds).

Stage: evaluation.  Receives :class:`~mripkg.evaluation.scoring.Evaluation` objects; hands on
JSON-ready dicts keyed by :func:`~mripkg.evaluation.selection.eps_key`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from .. import metrics
from .selection import eps_key

if TYPE_CHECKING:
    from .scoring import Evaluation


def _mean_sd(v: Tensor) -> tuple[float, float]:
    return metrics.summarize(v)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def whitebox_summary(ev: Evaluation) -> dict[str, dict[str, Any]]:
    """``{eps: {psnr_mean, psnr_sd, ssim_mean, ssim_sd, random_psnr_mean, random_ssim_mean,
    amplification, ...}}`` of a white-box evaluation (eps keys from
    :func:`mripkg.robustness.eps_key`).

    ``amplification``: mean over slices of ``||f(y + M delta) - f(y)|| / ||F^-1 M delta||``
    (``None`` at eps = 0, where it is undefined).  Extra keys: drops, their SDs, the control's
    amplification and the number of slices.
    """
    out: dict[str, dict[str, Any]] = {}
    for j, e in enumerate(ev.eps):
        pm, ps = _mean_sd(ev.psnr[j])
        sm, ss = _mean_sd(ev.ssim[j])
        dm, dsd = _mean_sd(ev.psnr_drop[j])
        row: dict[str, Any] = {
            "psnr_mean": pm,
            "psnr_sd": ps,
            "ssim_mean": sm,
            "ssim_sd": ss,
            "random_psnr_mean": None,
            "random_ssim_mean": None,
            "amplification": _finite_or_none(float(ev.amplification[j].mean())),
            "psnr_drop_mean": dm,
            "psnr_drop_sd": dsd,
            "ssim_drop_mean": float(ev.ssim_drop[j].mean()),
        }
        if ev.psnr_rand is not None and ev.ssim_rand is not None:
            row["random_psnr_mean"] = float(ev.psnr_rand[j].mean())
            row["random_ssim_mean"] = float(ev.ssim_rand[j].mean())
            row["random_psnr_drop_mean"] = float(ev.psnr_drop_rand[j].mean())  # type: ignore[index]
            amp_r = ev.amplification_rand
            row["random_amplification"] = (
                None if amp_r is None else _finite_or_none(float(amp_r[j].mean()))
            )
        row["n_slices"] = len(ev.slice_ids)
        out[eps_key(e)] = row
    return out


def transfer_summary(ev: Evaluation) -> dict[str, dict[str, Any]]:
    """``{eps: {psnr_mean, ssim_mean, psnr_drop, random_psnr_drop, ...}}``: means over the
    evaluation's slices; ``psnr_drop = clean PSNR - perturbed PSNR`` (positive = damage) over
    the same slices and sampler noise.  Extra keys: SDs, SSIM drops, the clean PSNR, the
    amplification and the number of slices."""
    out: dict[str, dict[str, Any]] = {}
    for j, e in enumerate(ev.eps):
        dm, dsd = _mean_sd(ev.psnr_drop[j])
        row: dict[str, Any] = {
            "psnr_mean": float(ev.psnr[j].mean()),
            "ssim_mean": float(ev.ssim[j].mean()),
            "psnr_drop": dm,
            "random_psnr_drop": None,
            "psnr_drop_sd": dsd,
            "ssim_drop": float(ev.ssim_drop[j].mean()),
            "clean_psnr_mean": float(ev.psnr_clean.mean()),
            "clean_ssim_mean": float(ev.ssim_clean.mean()),
            "amplification": _finite_or_none(float(ev.amplification[j].mean())),
        }
        if ev.psnr_rand is not None:
            row["random_psnr_drop"] = float(ev.psnr_drop_rand[j].mean())  # type: ignore[index]
            row["random_psnr_drop_sd"] = _mean_sd(ev.psnr_drop_rand[j])[1]  # type: ignore[index]
            row["random_ssim_drop"] = float(ev.ssim_drop_rand[j].mean())  # type: ignore[index]
        row["n_slices"] = len(ev.slice_ids)
        out[eps_key(e)] = row
    return out


def seed_summary(evals: Sequence[Evaluation], eps: float) -> dict[str, Any]:
    """PSNR drop (and the control's) at one eps for evaluations that differ only in the
    sampler seed: per-seed means, their mean and SD across seeds."""
    if not evals:
        raise ValueError("no evaluations")
    drops = [float(ev.psnr_drop[ev.index(eps)].mean()) for ev in evals]
    rdrops = [
        float(ev.psnr_drop_rand[ev.index(eps)].mean())  # type: ignore[index]
        for ev in evals
        if ev.psnr_drop_rand is not None
    ]
    out: dict[str, Any] = {
        "seeds": [ev.seed for ev in evals],
        "psnr_drop_per_seed": drops,
        "psnr_drop_seed_mean": float(np.mean(drops)),
        "psnr_drop_seed_sd": float(np.std(drops, ddof=1)) if len(drops) > 1 else 0.0,
    }
    if rdrops:
        out["random_psnr_drop_per_seed"] = rdrops
        out["random_psnr_drop_seed_mean"] = float(np.mean(rdrops))
    return out


__all__ = [
    "seed_summary",
    "transfer_summary",
    "whitebox_summary",
]
