"""Single-coil Cartesian MRI forward model.

Conventions (used everywhere in mripkg):

* images: real tensors ``[B, 1, H, W]`` (float32), intensities in [0, 1];
* k-space: complex tensors ``[B, 1, H, W]`` (complex64), centred (DC at ``(H//2, W//2)``);
* the FFT is orthonormal, so ``||fft2c(x)||_2 == ||x||_2`` (Parseval);
* a mask is a 1-D boolean tensor ``[W]`` over the columns (phase encoding along the image
  width); it broadcasts over batch, channel and rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def fft2c(x: Tensor) -> Tensor:
    """Centred orthonormal 2-D FFT over the last two axes.

    ``x``: real or complex tensor ``[..., H, W]``; returns complex ``[..., H, W]``.
    """
    if not torch.is_complex(x):
        x = x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    k = torch.fft.fft2(x, norm="ortho")
    return torch.fft.fftshift(k, dim=(-2, -1))


def ifft2c(k: Tensor) -> Tensor:
    """Inverse of :func:`fft2c`: centred orthonormal 2-D inverse FFT over the last two axes."""
    if not torch.is_complex(k):
        k = k.to(torch.complex128 if k.dtype == torch.float64 else torch.complex64)
    k = torch.fft.ifftshift(k, dim=(-2, -1))
    x = torch.fft.ifft2(k, norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def equispaced_mask(n: int, acceleration: int = 8, center_fraction: float = 0.032) -> Tensor:
    """Deterministic equispaced 1-D Cartesian mask (fastMRI's equispaced construction).

    A contiguous centre block of ``round(n * center_fraction)`` columns plus columns spaced so
    that the total acceleration is exactly ``acceleration``.  For n = 256, R = 8 this samples
    32 columns: 5, 15, 26, ..., 119, 124-131, 139, ..., 253 (the paper's mask).

    Returns a ``torch.bool`` tensor ``[n]`` (True = column sampled).
    """
    _check_mask_args(n, acceleration, center_fraction)
    num_low = int(round(n * center_fraction))
    if num_low < 1:
        raise ValueError(f"center_fraction={center_fraction} gives no centre lines for n={n}")
    mask = np.zeros(n, dtype=bool)
    pad = (n - num_low + 1) // 2
    mask[pad : pad + num_low] = True
    # spacing such that (num_low + number of equispaced lines) * acceleration == n
    adjusted = (acceleration * (num_low - n)) / (num_low * acceleration - n)
    offset = round(adjusted) // 2
    accel_cols = np.round(np.arange(offset, n - 1, adjusted)).astype(np.int64)
    mask[accel_cols] = True
    return torch.from_numpy(mask)


def random_mask(
    n: int, acceleration: int = 8, center_fraction: float = 0.08, seed: int = 0
) -> Tensor:
    """Random 1-D Cartesian mask with fastMRI's semantics.

    A centre block of ``round(n * center_fraction)`` columns, and every other column sampled
    independently with the probability that makes the expected acceleration ``acceleration``.
    Returns ``torch.bool`` ``[n]``; the same seed gives the same mask.
    """
    _check_mask_args(n, acceleration, center_fraction)
    rng = np.random.default_rng(seed)
    num_low = int(round(n * center_fraction))
    prob = (n / acceleration - num_low) / (n - num_low)
    if prob < 0:
        raise ValueError(
            f"center_fraction={center_fraction} alone samples more than 1/{acceleration} of {n}"
        )
    mask = rng.uniform(size=n) < prob
    pad = (n - num_low + 1) // 2
    mask[pad : pad + num_low] = True
    return torch.from_numpy(mask)


def _check_mask_args(n: int, acceleration: int, center_fraction: float) -> None:
    if int(n) != n or n < 4:
        raise ValueError(f"mask size n must be an integer >= 4, got {n!r}")
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration!r}")
    if not 0.0 < center_fraction < 1.0:
        raise ValueError(f"center_fraction must be in (0, 1), got {center_fraction!r}")


def _check_mask(kspace: Tensor, mask: Tensor) -> Tensor:
    if mask.ndim != 1 or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a 1-D bool tensor over columns, got {mask.dtype} {tuple(mask.shape)}"
        )
    if mask.shape[0] != kspace.shape[-1]:
        raise ValueError(
            f"mask has {mask.shape[0]} columns but k-space has {kspace.shape[-1]} "
            f"(shape {tuple(kspace.shape)})"
        )
    return mask.to(kspace.device)


def undersample(kspace: Tensor, mask: Tensor) -> Tensor:
    """Apply a column mask: ``y = M k``.  ``kspace`` complex ``[B, 1, H, W]``, ``mask`` ``[W]``;
    unsampled columns are set to zero (the shape is kept)."""
    m = _check_mask(kspace, mask)
    return kspace * m.to(kspace.real.dtype)


@dataclass(frozen=True)
class MRIOperator:
    """The measurement of single-coil Cartesian MRI with a column mask: ``A = M F``.

    ``A(x)``: image ``[B, 1, H, W]`` (real or complex) -> measurement ``y = M F x``, complex
    ``[B, 1, H, W]`` with the unsampled columns zero; ``A_adjoint(y) = F^H M^T y`` (complex
    image; its magnitude is the zero-filled reconstruction).  ``F`` is the centred orthonormal
    FFT, so ``A_adjoint`` is the exact adjoint (in the manner of DeepInverse's ``physics.MRI``
    or fastMRI's transforms).  mripkg measures images with it (the
    DDPM samplers' scaled measurement too); code that already holds k-space (the attack,
    :class:`~mripkg.evaluation.selection.SliceSet`, notebook 01's k-space panels) masks it with
    :func:`undersample`.
    """

    mask: Tensor

    def A(self, x: Tensor) -> Tensor:
        """``y = M F x``."""
        return undersample(fft2c(x), self.mask)

    def A_adjoint(self, y: Tensor) -> Tensor:
        """``F^H M^T y`` (complex ``[B, 1, H, W]``)."""
        return ifft2c(undersample(y, self.mask))

    def __call__(self, x: Tensor) -> Tensor:
        return self.A(x)


def forward_operator(image: Tensor, mask: Tensor) -> Tensor:
    """``y = M F x`` for a real image ``[B, 1, H, W]``; returns complex ``[B, 1, H, W]``
    (:meth:`MRIOperator.A`)."""
    return MRIOperator(mask).A(image)


def zero_filled(y: Tensor) -> Tensor:
    """The zero-filled baseline: the magnitude ``|F^-1 y|``, real ``[B, 1, H, W]`` >= 0."""
    return ifft2c(y).abs()


def zero_filled_real(y: Tensor) -> Tensor:
    """The networks' input (as in the paper): ``Re F^-1 y``, real ``[B, 1, H, W]``."""
    return ifft2c(y).real


def dc_gradient(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Gradient of 0.5 ||M F x - y||^2 w.r.t. a real image x: ``Re F^H M^T (M F x - y)``."""
    op = MRIOperator(mask)
    return op.A_adjoint(op.A(x) - y).real


def project_measured(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Hard data consistency: replace the sampled columns of ``F x`` by ``y``; returns the real
    part of the inverse FFT (``[B, 1, H, W]``)."""
    m = _check_mask(y, mask).to(y.real.dtype)
    k = fft2c(x)
    k = k * (1 - m) + y * m
    return ifft2c(k).real


def kspace_norm(kspace: Tensor) -> Tensor:
    """Per-image L2 norm of k-space ``[B, ...]`` -> ``[B]`` (equal to the image norm)."""
    return kspace.flatten(1).abs().pow(2).sum(1).sqrt()


__all__ = [
    "MRIOperator",
    "dc_gradient",
    "equispaced_mask",
    "fft2c",
    "forward_operator",
    "ifft2c",
    "kspace_norm",
    "project_measured",
    "random_mask",
    "undersample",
    "zero_filled",
    "zero_filled_real",
]
