"""Paired statistics over slices: t and bootstrap intervals, AUCs, excess over the control,
local damage measures.

Stage: evaluation.  Receives per-slice numbers; hands on intervals and comparison dicts that
the claims in :mod:`mripkg.report.claims` read.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from .. import metrics

if TYPE_CHECKING:
    pass


#: Smallest mean excess over the control (dB) that counts as an effect in the verdicts.
MIN_EXCESS_DB = 0.1


#: Fewest slices for a verdict (an interval from fewer is meaningless).
MIN_SLICES = 3


#: Confidence level of every interval.
CONFIDENCE = 0.95


#: Bootstrap resamples of :func:`bootstrap_interval`.
N_RESAMPLES = 2000


#: Side of the square window of :func:`worst_window_ssim_drop` (pixels).
WINDOW = 16


def _as_np(v: Tensor | Sequence[float] | np.ndarray) -> np.ndarray:
    if isinstance(v, Tensor):
        v = v.detach().to(torch.float64).cpu().numpy()
    return np.asarray(v, dtype=np.float64).ravel()


def mean_interval(
    values: Tensor | Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Mean of per-slice ``values`` and its t interval (``scipy.stats.ttest_1samp``):
    ``(mean, low, high)``; NaN bounds for fewer than 2 values, ``low = high = mean`` when every
    value is the same."""
    v = _as_np(values)
    if v.size == 0:
        raise ValueError("no values")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or inf")
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    if np.ptp(v) == 0:
        return m, m, m
    ci = stats.ttest_1samp(v, 0.0).confidence_interval(confidence)
    return m, float(ci.low), float(ci.high)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray | float],
    n: int,
    seed: int,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
) -> tuple[float, float, float]:
    """``statistic`` of all ``n`` slices and its bootstrap interval over slices
    (``scipy.stats.bootstrap``, BCa, resampling slice indices with a generator seeded by
    ``seed``; percentile bounds where BCa is undefined): ``(value, low, high)``.

    ``statistic(idx)`` is vectorised: ``idx`` is an integer array ``[..., k]`` of slice
    indices, the statistic reduces its last axis (e.g. ``values[idx].mean(-1)``)."""
    if n < 1:
        raise ValueError(f"need at least one slice, got {n}")
    idx = np.arange(n)
    value = float(np.asarray(statistic(idx)))
    if n < 2:
        return value, math.nan, math.nan

    def stat(i: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(statistic(np.moveaxis(np.asarray(i), axis, -1).astype(int)))

    def run(method: str) -> tuple[float, float]:
        res = stats.bootstrap(
            (idx,),
            stat,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            rng=np.random.default_rng(seed),
        )
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about degenerate resamples
        low, high = run("BCa")
        if not (math.isfinite(low) and math.isfinite(high)):
            low, high = run("percentile")
    if not (math.isfinite(low) and math.isfinite(high)):
        low = high = value  # every resample gives the same value
    return value, low, high


def auc_rows(negative: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """:func:`mripkg.artifacts.auc` along the last axis of ``negative [..., n]`` and
    ``positive [..., m]`` (``scipy.stats.mannwhitneyu`` U / (n m)); ``[...]``."""
    neg, pos = np.asarray(negative, dtype=float), np.asarray(positive, dtype=float)
    u = stats.mannwhitneyu(pos, neg, axis=-1, alternative="greater").statistic
    return np.asarray(u) / (pos.shape[-1] * neg.shape[-1])


def excess_over_control(
    adv_drop: Tensor, rand_drop: Tensor, min_excess: float = MIN_EXCESS_DB
) -> dict[str, float | bool]:
    """Paired comparison over slices of the adversarial and the control PSNR drop
    (``scipy.stats.ttest_rel``): mean excess (dB), its standard error, its 95 % t interval
    (``low``, ``high``), the one-sided p value, and ``clear``: at least :data:`MIN_SLICES`
    slices, a mean excess of at least ``min_excess`` dB and an interval above 0."""
    a, r = _as_np(adv_drop), _as_np(rand_drop)
    if a.shape != r.shape:
        raise ValueError(f"adv_drop {a.shape} and rand_drop {r.shape} differ in shape")
    d = a - r
    n = int(d.size)
    mean, low, high = mean_interval(d) if n else (math.nan, math.nan, math.nan)
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    p = math.nan
    if n > 1 and np.ptp(d) > 0:
        p = float(stats.ttest_rel(a, r, alternative="greater").pvalue)
    clear = n >= MIN_SLICES and mean >= min_excess and low > 0
    return {
        "excess": mean,
        "se": se,
        "low": low,
        "high": high,
        "p": p,
        "clear": bool(clear),
        "n": n,
    }


def clear_word(ex: Mapping[str, Any]) -> str:
    """``'clear'``, ``'not clear'`` or ``'too few slices'`` for one :func:`excess_over_control`."""
    if ex["n"] < MIN_SLICES:
        return "too few slices"
    return "clear" if ex["clear"] else "not clear"


def worst_window_ssim_drop(
    clean: Tensor, perturbed: Tensor, gt: Tensor, size: int = WINDOW
) -> Tensor:
    """Largest drop of the local SSIM (paper convention, against the ground truth) from the
    clean to the perturbed reconstruction over all ``size x size`` windows: the SSIM maps are
    averaged over each window (stride 1) and ``max(window SSIM clean - window SSIM perturbed)``
    is taken per slice; ``[B]`` from ``[B, 1, H, W]`` inputs.  Sees a local distortion that the
    image-wide PSNR averages away."""
    if clean.shape != perturbed.shape or clean.shape != gt.shape or clean.dim() != 4:
        raise ValueError(
            f"clean {tuple(clean.shape)}, perturbed {tuple(perturbed.shape)} and gt "
            f"{tuple(gt.shape)} must be one [B, 1, H, W] shape"
        )
    if size < 1 or size > min(clean.shape[-2:]):
        raise ValueError(f"window size {size} does not fit images {tuple(clean.shape[-2:])}")
    pool = torch.nn.functional.avg_pool2d
    s0 = pool(metrics.ssim_map(clean, gt).to(torch.float64), size, stride=1)
    s1 = pool(metrics.ssim_map(perturbed, gt).to(torch.float64), size, stride=1)
    return (s0 - s1).flatten(1).amax(1)


def region_energy(change: Tensor, region: Tensor) -> Tensor:
    """Energy ``sum(change^2)`` of ``change [B, 1, H, W]`` inside ``region`` (same shape);
    ``[B]`` float64."""
    if change.shape != region.shape:
        raise ValueError(f"region {tuple(region.shape)} != change {tuple(change.shape)}")
    return (change.to(torch.float64).pow(2) * region.to(torch.float64)).flatten(1).sum(1)


def slice_spearman(eps: Sequence[float], psnr: Tensor) -> np.ndarray:
    """Spearman rank correlation of eps with PSNR for each slice: ``psnr [E, B]`` against the
    ``E`` eps values -> ``[B]`` (``scipy.stats.spearmanr``; NaN for a constant slice)."""
    p = psnr.detach().to(torch.float64).cpu().numpy()
    if p.ndim != 2 or p.shape[0] != len(eps):
        raise ValueError(f"psnr must be [E={len(eps)}, B], got {tuple(p.shape)}")
    if len(eps) < 3:
        raise ValueError(f"need at least 3 eps values for a rank correlation, got {len(eps)}")
    out = np.empty(p.shape[1])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant slice has no rank correlation
        for b in range(p.shape[1]):
            out[b] = stats.spearmanr(np.asarray(eps, dtype=float), p[:, b]).statistic
    return out


__all__ = [
    "CONFIDENCE",
    "MIN_EXCESS_DB",
    "MIN_SLICES",
    "auc_rows",
    "bootstrap_interval",
    "clear_word",
    "excess_over_control",
    "mean_interval",
    "region_energy",
    "slice_spearman",
    "worst_window_ssim_drop",
]
