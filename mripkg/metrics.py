"""Image-quality metrics: one value per image.

Conventions (every table names the one it uses):

* ``paper``  (default): each image (reconstruction and reference) min-max normalised to
  [0, 1], data range 1; SSIM with torchmetrics' Gaussian window (11 x 11, sigma 1.5), as in
  the authors' code (which used piq with the same window).
* ``head``: the same normalisation, but PSNR / SSIM averaged only over pixels inside the head
  mask (the background of a skull-stripped brain is easy and inflates the paper numbers).
* ``fastmri``: no normalisation, data_range = max of the reference, scikit-image SSIM
  (7 x 7 uniform window): the fastMRI challenge convention, for cross-checks.

All functions take ``x, ref`` of shape ``[B, 1, H, W]`` (or ``[B, H, W]``) and return a float64
tensor ``[B]``.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity as _sk_ssim
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio as _tm_psnr,
)
from torchmetrics.functional.image import (
    structural_similarity_index_measure as _tm_ssim,
)

CONVENTIONS = ("paper", "head", "fastmri")

#: images per SSIM call: torchmetrics' float64 convolution on CPU unfolds its input (about
#: 60 MB per 128 px image), so large batches are split; the values do not depend on it (bit for
#: bit, tested).  2 rather than 4 keeps notebook 03's evaluation peak lower (issue 19).
SSIM_CHUNK = 2


def _as_batch(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{name} must be [B, 1, H, W] or [B, H, W], got shape {tuple(x.shape)}")
    if torch.is_complex(x):
        raise ValueError(f"{name} is complex; pass a real (magnitude) image")
    x = x.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _pair(x: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
    x, ref = _as_batch(x, "x"), _as_batch(ref, "ref")
    if x.shape != ref.shape:
        raise ValueError(f"shape mismatch: x {tuple(x.shape)} vs ref {tuple(ref.shape)}")
    return x, ref


def normalize(x: Tensor) -> Tensor:
    """Min-max normalise each image of a batch ``[B, ...]`` to [0, 1]."""
    flat = x.flatten(1)
    lo = flat.min(1).values.view(-1, *([1] * (x.ndim - 1)))
    hi = flat.max(1).values.view(-1, *([1] * (x.ndim - 1)))
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    """PSNR in dB, paper convention (min-max normalised, data range 1)."""
    x, ref = _pair(x, ref)
    return _tm_psnr(normalize(x), normalize(ref), data_range=1.0, reduction="none", dim=(1, 2, 3))


def _ssim_paper(x: Tensor, ref: Tensor, full_image: bool = False) -> Tensor:
    """torchmetrics SSIM of the min-max normalised pair, :data:`SSIM_CHUNK` images per call:
    per-image values ``[B]``, or the SSIM maps ``[B, 1, H, W]`` with ``full_image``."""
    xn, rn = normalize(x), normalize(ref)
    out = []
    for i in range(0, xn.shape[0], SSIM_CHUNK):
        res = _tm_ssim(
            xn[i : i + SSIM_CHUNK],
            rn[i : i + SSIM_CHUNK],
            data_range=1.0,
            reduction="none",
            return_full_image=full_image,
        )
        out.append(res[1] if full_image else res)
    return torch.cat(out)


def ssim_map(x: Tensor, ref: Tensor) -> Tensor:
    """SSIM map ``[B, 1, H, W]`` of ``x`` against ``ref`` ``[B, 1, H, W]``, paper convention
    (the map :func:`ssim` averages)."""
    x, ref = _pair(x, ref)
    return _ssim_paper(x, ref, full_image=True)


def ssim(x: Tensor, ref: Tensor) -> Tensor:
    """SSIM, paper convention (min-max normalised, data range 1, Gaussian 11 x 11 window)."""
    x, ref = _pair(x, ref)
    return _ssim_paper(x, ref)


def nmse(x: Tensor, ref: Tensor) -> Tensor:
    """Normalised MSE ``||x - ref||^2 / ||ref||^2`` of the min-max normalised images."""
    x, ref = _pair(x, ref)
    xn, rn = normalize(x), normalize(ref)
    return (xn - rn).pow(2).flatten(1).sum(1) / rn.pow(2).flatten(1).sum(1).clamp_min(1e-12)


def _mask_batch(mask: Tensor, like: Tensor) -> Tensor:
    m = torch.as_tensor(mask)
    if m.ndim == 3:
        m = m[:, None]
    if m.shape != like.shape:
        raise ValueError(f"mask shape {tuple(m.shape)} does not match images {tuple(like.shape)}")
    m = m.to(torch.bool)
    if not m.flatten(1).any(1).all():
        raise ValueError("a head mask is empty")
    return m


def psnr_head(x: Tensor, ref: Tensor, mask: Tensor) -> Tensor:
    """PSNR in dB over the pixels inside the head ``mask`` (paper normalisation)."""
    x, ref = _pair(x, ref)
    m = _mask_batch(mask, x).to(x.dtype)
    err = (normalize(x) - normalize(ref)).pow(2) * m
    mse = err.flatten(1).sum(1) / m.flatten(1).sum(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-20))


def ssim_head(x: Tensor, ref: Tensor, mask: Tensor) -> Tensor:
    """Mean of the SSIM map over the pixels inside the head ``mask`` (paper normalisation)."""
    x, ref = _pair(x, ref)
    m = _mask_batch(mask, x).to(x.dtype)
    smap = _ssim_paper(x, ref, full_image=True)
    if smap.shape != m.shape:
        raise RuntimeError(f"unexpected SSIM map shape {tuple(smap.shape)}")
    return (smap * m).flatten(1).sum(1) / m.flatten(1).sum(1)


def psnr_fastmri(x: Tensor, ref: Tensor) -> Tensor:
    """PSNR with data_range = max(ref), no normalisation (fastMRI convention)."""
    x, ref = _pair(x, ref)
    out = []
    for xi, ri in zip(x, ref, strict=True):
        mse = (xi - ri).pow(2).mean()
        out.append(10 * torch.log10(ri.max() ** 2 / mse.clamp_min(1e-20)))
    return torch.stack(out)


def ssim_fastmri(x: Tensor, ref: Tensor) -> Tensor:
    """scikit-image SSIM (7 x 7 uniform window) with data_range = max(ref), no normalisation."""
    x, ref = _pair(x, ref)
    vals = [
        _sk_ssim(ri[0].numpy(), xi[0].numpy(), data_range=float(ri.max()))
        for xi, ri in zip(x, ref, strict=True)
    ]
    return torch.tensor(vals, dtype=torch.float64)


def all_metrics(x: Tensor, ref: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
    """Every metric for a batch: ``{name: tensor [B]}`` (head metrics only with a mask)."""
    out = {"psnr": psnr(x, ref), "ssim": ssim(x, ref), "nmse": nmse(x, ref)}
    if mask is not None:
        out["psnr_head"] = psnr_head(x, ref, mask)
        out["ssim_head"] = ssim_head(x, ref, mask)
    out["psnr_fastmri"] = psnr_fastmri(x, ref)
    out["ssim_fastmri"] = ssim_fastmri(x, ref)
    return out


def summarize(values: Tensor | list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) of per-image values (SD 0 for a single value)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    sd = float(v.std()) if v.numel() > 1 else 0.0
    return float(v.mean()), sd
