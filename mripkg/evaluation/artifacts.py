"""What perturbation artifacts look like: statistics of ``a = f(y + M delta) - f(y)``.

Claim 4 of the paper says that at larger eps the diffusion model's artifacts look like Gaussian
noise, while the supervised models' are structured and anatomical.  "Looks like Gaussian noise"
is made measurable here, per artifact map ``a [N, 1, H, W]`` inside a region (the head mask):

* ``excess_kurtosis`` and ``skewness`` of the pixel values (0 and 0 for a Gaussian; a sparse,
  structured artifact has heavy tails, a large kurtosis);
* ``neighbour_corr``: the correlation of horizontally and vertically adjacent pixels (0 for
  white noise, near 1 for smooth, structured changes);
* ``edge_corr``: the correlation of ``|a|`` with the gradient magnitude of the ground truth
  (anatomical distortions sit on tissue boundaries; noise does not);
* ``spectral_flatness``: geometric over arithmetic mean of the artifact's power spectrum
  (about 0.56 for white Gaussian noise, the mean of ``log`` of an exponential variable; small
  for energy concentrated at a few frequencies);
* ``rms``: its size, in the reconstruction's intensity units.

Detectability without the clean reconstruction: :func:`noise_sigma` estimates a reconstruction's
noise level blindly (median absolute finest-scale Haar diagonal coefficient / 0.6745, as in
wavelet denoising); :func:`auc` says how well that number separates perturbed from clean
reconstructions (0.5: not at all, 1: perfectly).  A white Gaussian reference of the same size
and region (:func:`gaussian_reference`) shows what the numbers are for pure noise.

Beyond the paper, :func:`posterior_sd` scores a measurement by the diffusion model's own
uncertainty (the per-pixel SD of reconstructions with several sampler seeds) and
:func:`spread_detection` asks how well that detects perturbed input.  :func:`grey_matter_mask`
segments grey matter from a T1 ground truth (three-class Otsu) for the scorecard of
:mod:`mripkg.claims`.  Kurtosis, skewness and the AUC come from :mod:`scipy.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats
from skimage.filters import threshold_multiotsu
from torch import Tensor

#: statistic name -> what it measures (for tables and figure labels)
STATISTICS: dict[str, str] = {
    "rms": "RMS of the artifact inside the head (intensity units)",
    "skewness": "skewness of the artifact's pixel values inside the head (Gaussian: 0)",
    "excess_kurtosis": "excess kurtosis of the pixel values inside the head (Gaussian: 0)",
    "neighbour_corr": "correlation of adjacent pixels inside the head (white noise: 0)",
    "edge_corr": "correlation of |artifact| with the ground truth's gradient magnitude",
    "spectral_flatness": "geometric / arithmetic mean of the power spectrum (white noise ~0.56)",
}

#: Expected spectral flatness of white Gaussian noise: exp(E[log P]) / E[P] for an exponential
#: periodogram ordinate P, i.e. exp(-Euler-Mascheroni constant).
WHITE_NOISE_FLATNESS = math.exp(-0.5772156649015329)


def _check_pair(a: Tensor, region: Tensor, name: str = "artifacts") -> tuple[Tensor, Tensor]:
    if a.dim() != 4 or a.shape[1] != 1:
        raise ValueError(f"{name} must be [N, 1, H, W], got {tuple(a.shape)}")
    if a.is_complex():
        raise ValueError(f"{name} must be real (magnitude images), got {a.dtype}")
    if region.shape != a.shape:
        raise ValueError(f"region {tuple(region.shape)} does not match {name} {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError(f"{name} contain NaN or inf")
    r = region.to(torch.bool)
    if (r.flatten(1).sum(1) < 16).any():
        raise ValueError("every region needs at least 16 pixels")
    return a.to(torch.float64), r


def _masked_moments(a: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = r.to(a.dtype)
    n = w.flatten(1).sum(1)
    mean = (a * w).flatten(1).sum(1) / n
    c = (a - mean.view(-1, 1, 1, 1)) * w
    m2 = c.pow(2).flatten(1).sum(1) / n
    m3 = c.pow(3).flatten(1).sum(1) / n
    m4 = c.pow(4).flatten(1).sum(1) / n
    return mean, m2, m3, m4


def _pair_corr(u: Tensor, v: Tensor, w: Tensor) -> Tensor:
    """Pearson correlation of ``u`` and ``v`` over the pixels where ``w`` (per image)."""
    n = w.flatten(1).sum(1).clamp_min(1)
    mu = (u * w).flatten(1).sum(1) / n
    mv = (v * w).flatten(1).sum(1) / n
    du = (u - mu.view(-1, 1, 1, 1)) * w
    dv = (v - mv.view(-1, 1, 1, 1)) * w
    cov = (du * dv).flatten(1).sum(1)
    den = (du.pow(2).flatten(1).sum(1) * dv.pow(2).flatten(1).sum(1)).sqrt()
    return torch.where(den > 0, cov / den.clamp_min(1e-300), torch.full_like(cov, math.nan))


def neighbour_corr(a: Tensor, region: Tensor) -> Tensor:
    """Mean of the horizontal and vertical lag-1 correlations of ``a [N, 1, H, W]`` over pixel
    pairs that both lie in ``region``; ``[N]``.  White noise: about 0."""
    return _neighbour_corr(*_check_pair(a, region))


def _neighbour_corr(a: Tensor, r: Tensor) -> Tensor:
    w = r.to(a.dtype)
    wh = w[..., :, 1:] * w[..., :, :-1]
    wv = w[..., 1:, :] * w[..., :-1, :]
    h = _pair_corr(a[..., :, 1:], a[..., :, :-1], wh)
    v = _pair_corr(a[..., 1:, :], a[..., :-1, :], wv)
    return 0.5 * (h + v)


def gradient_magnitude(x: Tensor) -> Tensor:
    """Central-difference gradient magnitude of images ``[N, 1, H, W]`` (replicated border),
    in intensity units per pixel; same shape."""
    p = torch.nn.functional.pad(x.to(torch.float64), (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    gy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    return (gx.pow(2) + gy.pow(2)).sqrt()


def edge_corr(a: Tensor, gt: Tensor, region: Tensor) -> Tensor:
    """Correlation of ``|a|`` with the gradient magnitude of the ground truth ``gt`` inside
    ``region``; ``[N]``.  Near 0 for noise, positive for changes on tissue boundaries."""
    a, r = _check_pair(a, region)
    return _edge_corr(a, gt, r)


def _edge_corr(a: Tensor, gt: Tensor, r: Tensor) -> Tensor:
    if gt.shape != a.shape:
        raise ValueError(f"gt {tuple(gt.shape)} does not match the artifacts {tuple(a.shape)}")
    return _pair_corr(a.abs(), gradient_magnitude(gt), r.to(a.dtype))


def spectral_flatness(a: Tensor, region: Tensor) -> Tensor:
    """Spectral flatness (Wiener entropy) of ``a`` restricted to ``region`` (zero outside, mean
    removed inside): ``exp(mean log P) / mean P`` over all non-DC frequencies of the power
    spectrum ``P = |FFT|^2``; ``[N]`` in (0, 1]."""
    a, r = _check_pair(a, region)
    return _spectral_flatness(a, r, _masked_moments(a, r)[0])


def _spectral_flatness(a: Tensor, r: Tensor, mean: Tensor) -> Tensor:
    c = (a - mean.view(-1, 1, 1, 1)) * r.to(a.dtype)
    p = torch.fft.fft2(c).abs().pow(2).flatten(1)[:, 1:]  # drop DC
    p = p.clamp_min(1e-300)
    return p.log().mean(1).exp() / p.mean(1)


def artifact_stats(a: Tensor, gt: Tensor, region: Tensor) -> dict[str, Tensor]:
    """All :data:`STATISTICS` of artifact maps ``a [N, 1, H, W]`` (``gt``: the ground truth,
    ``region``: bool head masks, both ``[N, 1, H, W]``); each value ``[N]`` float64 (NaN for an
    all-zero artifact, e.g. eps = 0)."""
    a64, r = _check_pair(a, region)  # validated once; the helpers below trust it
    mean, m2, _, _ = _masked_moments(a64, r)
    ok = m2 > 1e-30
    nan = torch.full_like(m2, math.nan)
    skew, kurt = _shape_moments(a64, r)
    return {
        "rms": (a64.pow(2) * r).flatten(1).sum(1).div(r.flatten(1).sum(1)).sqrt(),
        "skewness": torch.where(ok, skew, nan),
        "excess_kurtosis": torch.where(ok, kurt, nan),
        "neighbour_corr": torch.where(ok, _neighbour_corr(a64, r), nan),
        "edge_corr": torch.where(ok, _edge_corr(a64, gt, r), nan),
        "spectral_flatness": torch.where(ok, _spectral_flatness(a64, r, mean), nan),
    }


def _shape_moments(a: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Skewness and excess kurtosis (``scipy.stats``, population moments) of each image's
    pixel values inside its region; ``[N]`` each (NaN for a constant image)."""
    skew, kurt = [], []
    with np.errstate(all="ignore"):
        for i in range(a.shape[0]):
            v = a[i][r[i]].numpy()
            if np.ptp(v) == 0:
                skew.append(math.nan)
                kurt.append(math.nan)
                continue
            skew.append(float(stats.skew(v, bias=True)))
            kurt.append(float(stats.kurtosis(v, fisher=True, bias=True)))
    return torch.tensor(skew, dtype=torch.float64), torch.tensor(kurt, dtype=torch.float64)


def standardised_values(a: Tensor, region: Tensor) -> Tensor:
    """Pixel values of each artifact inside its region, centred and divided by that image's
    SD, pooled into one 1-D float64 tensor (for a histogram against N(0, 1)).  All-zero maps are
    skipped."""
    a64, r = _check_pair(a, region)
    mean, m2, _, _ = _masked_moments(a64, r)
    out = []
    for i in range(a64.shape[0]):
        if m2[i] > 1e-30:
            out.append((a64[i][r[i]] - mean[i]) / m2[i].sqrt())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def gaussian_reference(
    region: Tensor, rms: Tensor | float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """White Gaussian noise maps ``[N, 1, H, W]`` with the given RMS (scalar or ``[N]``) inside
    ``region`` and zero outside: the pure-noise reference for :func:`artifact_stats`."""
    if region.dim() != 4 or region.shape[1] != 1:
        raise ValueError(f"region must be [N, 1, H, W], got {tuple(region.shape)}")
    z = torch.randn(region.shape, generator=generator, dtype=torch.float64)
    s = torch.as_tensor(rms, dtype=torch.float64).reshape(-1, 1, 1, 1)
    return z * s * region.to(torch.float64)


def noise_sigma(x: Tensor) -> Tensor:
    """Blind noise level of images ``x [N, 1, H, W]``: median |finest-scale Haar diagonal
    coefficient| / 0.6745 (the robust estimator of wavelet denoising); ``[N]``, intensity
    units.  Needs no clean reference."""
    if x.dim() != 4 or x.shape[-1] < 2 or x.shape[-2] < 2:
        raise ValueError(f"images must be [N, 1, H, W] with H, W >= 2, got {tuple(x.shape)}")
    x = x.to(torch.float64)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    d = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    return d.abs().flatten(1).median(dim=1).values / 0.6745


def auc(negative: Tensor | Sequence[float], positive: Tensor | Sequence[float]) -> float:
    """Area under the ROC curve of a score that should be larger for ``positive`` than for
    ``negative``: the Mann-Whitney U of ``scipy.stats.mannwhitneyu`` over ``n_pos n_neg`` (the
    share of pairs ordered correctly, ties count half)."""
    neg = torch.as_tensor(negative, dtype=torch.float64).flatten()
    pos = torch.as_tensor(positive, dtype=torch.float64).flatten()
    if neg.numel() == 0 or pos.numel() == 0:
        raise ValueError("auc needs at least one negative and one positive score")
    if not (torch.isfinite(neg).all() and torch.isfinite(pos).all()):
        raise ValueError("auc scores contain NaN or inf")
    u = stats.mannwhitneyu(pos.numpy(), neg.numpy(), alternative="greater").statistic
    return float(u) / (pos.numel() * neg.numel())


def summarize(stats: Mapping[str, Tensor]) -> dict[str, Any]:
    """``{stat: mean, stat + "_sd": sample SD}`` over the finite values of each statistic
    (``None`` where there is none)."""
    out: dict[str, Any] = {}
    for k, v in stats.items():
        v = v[torch.isfinite(v)]
        out[k] = float(v.mean()) if v.numel() else None
        out[f"{k}_sd"] = float(v.std()) if v.numel() > 1 else None
    out["n"] = int(min((torch.isfinite(v).sum() for v in stats.values()), default=0))
    return out


def stats_grid(artifacts: Tensor, gt: Tensor, region: Tensor) -> dict[str, Tensor]:
    """:func:`artifact_stats` of an ``[E, B, 1, H, W]`` grid of artifact maps (eps x slices)
    against ``gt`` and ``region`` ``[B, 1, H, W]``; each value ``[E, B]``."""
    if artifacts.dim() != 5:
        raise ValueError(f"artifacts must be [E, B, 1, H, W], got {tuple(artifacts.shape)}")
    e, b = artifacts.shape[:2]
    if gt.shape != artifacts.shape[1:] or region.shape != artifacts.shape[1:]:
        raise ValueError(
            f"gt {tuple(gt.shape)} / region {tuple(region.shape)} do not match the slices of "
            f"the artifacts {tuple(artifacts.shape)}"
        )
    flat = artifacts.reshape(e * b, *artifacts.shape[2:])
    g = gt[None].expand(e, *gt.shape).reshape(e * b, *gt.shape[1:])
    r = region[None].expand(e, *region.shape).reshape(e * b, *region.shape[1:])
    return {k: v.view(e, b) for k, v in artifact_stats(flat, g, r).items()}


def summarize_grid(grid: Mapping[str, Tensor], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` of each row of a :func:`stats_grid` result: ``{keys[j]: summary of
    eps j}`` (``keys``: one label per eps, e.g. ``robustness.eps_key``)."""
    return {k: summarize({s: v[j] for s, v in grid.items()}) for j, k in enumerate(keys)}


def detection_by_eps(clean: Tensor, perturbed: Tensor, keys: Sequence[str]) -> dict[str, float]:
    """:func:`detection_auc` of clean reconstructions ``[B, 1, H, W]`` against each row of
    perturbed ones ``[E, B, 1, H, W]``: ``{keys[j]: AUC at eps j}``."""
    if perturbed.shape[0] != len(keys):
        raise ValueError(f"{len(keys)} keys for {perturbed.shape[0]} rows of perturbed images")
    return {k: detection_auc(clean, perturbed[j]) for j, k in enumerate(keys)}


def detection_auc(clean: Tensor, perturbed: Tensor) -> float:
    """How well the blind :func:`noise_sigma` tells perturbed reconstructions ``[B, 1, H, W]``
    from clean ones ``[B, 1, H, W]`` (AUC; 0.5 = chance, 1 = every perturbed image has a
    higher estimated noise level than every clean one)."""
    return auc(noise_sigma(clean), noise_sigma(perturbed))


def grey_matter_mask(gt: Tensor, head: Tensor) -> Tensor:
    """Grey matter of T1-weighted ground-truth images ``gt [N, 1, H, W]``: a three-class
    intensity segmentation inside each ``head`` mask (multi-level Otsu thresholds,
    ``skimage.filters.threshold_multiotsu``; dark = CSF, middle = grey matter, bright = white
    matter) -> the middle class, bool ``[N, 1, H, W]``."""
    if gt.dim() != 4 or gt.shape[1] != 1:
        raise ValueError(f"gt must be [N, 1, H, W], got {tuple(gt.shape)}")
    if head.shape != gt.shape:
        raise ValueError(f"head {tuple(head.shape)} does not match gt {tuple(gt.shape)}")
    out = torch.zeros(gt.shape, dtype=torch.bool)
    for i in range(gt.shape[0]):
        h = head[i, 0].to(torch.bool)
        v = gt[i, 0][h].to(torch.float64).numpy()
        if v.size < 16 or np.unique(v).size < 3:
            raise ValueError(f"image {i}: too few distinct intensities in the head to segment")
        lo, hi = threshold_multiotsu(v, classes=3)
        g = gt[i, 0].to(torch.float64)
        out[i, 0] = h & (g > float(lo)) & (g <= float(hi))
    return out


def posterior_sd(samples: Tensor, region: Tensor) -> Tensor:
    """The diffusion model's posterior spread as a score: reconstructions of the same
    measurements with ``S`` sampler seeds ``[S, N, 1, H, W]`` -> the per-pixel SD across seeds
    (``S - 1`` in the denominator), averaged inside ``region [N, 1, H, W]``; ``[N]`` in
    intensity units.  Needs no clean reference: a detector of perturbed input when perturbed
    measurements make the sampler less certain."""
    if samples.dim() != 5 or samples.shape[0] < 2:
        raise ValueError(f"samples must be [S >= 2, N, 1, H, W], got {tuple(samples.shape)}")
    if region.shape != samples.shape[1:]:
        raise ValueError(f"region {tuple(region.shape)} != samples {tuple(samples.shape[1:])}")
    sd = samples.to(torch.float64).std(dim=0, unbiased=True)
    w = region.to(torch.float64)
    return (sd * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1)


#: The posterior-spread detector (beyond the paper): perturbations transferred from this
#: source, at these eps (beside eps 0, the clean input), each input reconstructed with this many
#: sampler seeds (the profile seed, + 1, ...), on the profile's diffusion slices.
SPREAD_SOURCE = "irim"
SPREAD_EPS: tuple[float, ...] = (0.04, 0.08)
SPREAD_SEEDS = 3


def spread_detection(
    samples: Mapping[str, Tensor], region: Tensor, clean_key: str
) -> dict[str, dict[str, Any]]:
    """AUC of the posterior spread (:func:`posterior_sd`) for telling perturbed input from
    clean: ``samples[key]`` ``[S, N, 1, H, W]`` (``S`` sampler seeds; ``clean_key``: the clean
    measurements); ``{key: {auc, spread_mean}}`` for every other key, ``spread_mean`` also for
    the clean one."""
    if clean_key not in samples:
        raise KeyError(f"no clean samples {clean_key!r} among {sorted(samples)}")
    score = {k: posterior_sd(v, region) for k, v in samples.items()}
    out: dict[str, dict[str, Any]] = {clean_key: {"spread_mean": float(score[clean_key].mean())}}
    for k, v in score.items():
        if k != clean_key:
            out[k] = {"auc": auc(score[clean_key], v), "spread_mean": float(v.mean())}
    return out


def per_slice_rows(
    label: str, eps: Sequence[float], grid: Mapping[str, Tensor], slice_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """CSV rows ``label, eps, slice`` + every statistic from a :func:`stats_grid` result."""
    rows = []
    for j, e in enumerate(eps):
        for i, sid in enumerate(slice_ids):
            row: dict[str, Any] = {"artifact": label, "eps": float(e), "slice": int(sid)}
            row.update({k: float(v[j, i]) for k, v in grid.items()})
            rows.append(row)
    return rows


__all__ = [
    "SPREAD_EPS",
    "SPREAD_SEEDS",
    "SPREAD_SOURCE",
    "STATISTICS",
    "WHITE_NOISE_FLATNESS",
    "artifact_stats",
    "auc",
    "detection_auc",
    "detection_by_eps",
    "edge_corr",
    "gaussian_reference",
    "gradient_magnitude",
    "grey_matter_mask",
    "neighbour_corr",
    "noise_sigma",
    "per_slice_rows",
    "posterior_sd",
    "spectral_flatness",
    "spread_detection",
    "standardised_values",
    "stats_grid",
    "summarize",
    "summarize_grid",
]
