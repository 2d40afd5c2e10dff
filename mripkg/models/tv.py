"""Classical compressed sensing: total-variation regularised reconstruction.

The paper asks whether a classical regulariser is more robust than learned ones.  This model
solves

    min_{x >= 0}  0.5 ||M F x - y||^2 + lam * TV(x),    TV(x) = sum_pixels |grad x|_2

(isotropic TV, forward differences with a zero difference across the last row / column) for a
real image ``x`` with a fixed number of primal-dual iterations (Chambolle & Pock 2011,
Algorithm 1 with theta = 1).  Both the data term and TV are dualised, so every step is an FFT
pair, finite differences and closed-form projections: no inner solver, and the whole
reconstruction is an ordinary differentiable PyTorch graph (the attacks differentiate through
all iterations).  ``K x = (grad x, M F x)`` has ``||K||^2 <= 8 + 1``.

Library check (issue 12): ``deepinv`` 0.5.0 provides TV priors and primal-dual solvers in
PyTorch, but ``pip install --dry-run deepinv`` resolves torchvision 0.29.1, which requires
torch 2.14.1 (the CUDA build): it would replace the pinned CPU torch 2.13.0, so it is not
used; the solver here is about 40 lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .. import metrics
from ..physics import _check_mask, fft2c, ifft2c

#: ||K||^2 bound for K = (grad, M F): 8 for the 2-D forward-difference gradient, 1 for M F
_K_NORM_SQ = 9.0


def grad2d(x: Tensor) -> Tensor:
    """Forward differences of ``x [B, 1, H, W]`` -> ``[B, 2, H, W]`` (rows, then columns);
    zero across the last row / column (Neumann boundary)."""
    dh = torch.zeros_like(x)
    dw = torch.zeros_like(x)
    dh[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    dw[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.cat([dh, dw], dim=1)


def div2d(p: Tensor) -> Tensor:
    """Discrete divergence ``[B, 2, H, W]`` -> ``[B, 1, H, W]``, the negative adjoint of
    :func:`grad2d` (``<grad x, p> = -<x, div p>``)."""
    ph, pw = p[:, :1], p[:, 1:2]
    dh = torch.zeros_like(ph)
    dw = torch.zeros_like(pw)
    dh[..., 0, :] = ph[..., 0, :]
    dh[..., 1:-1, :] = ph[..., 1:-1, :] - ph[..., :-2, :]
    dh[..., -1, :] = -ph[..., -2, :]
    dw[..., :, 0] = pw[..., :, 0]
    dw[..., :, 1:-1] = pw[..., :, 1:-1] - pw[..., :, :-2]
    dw[..., :, -1] = -pw[..., :, -2]
    return dh + dw


def total_variation(x: Tensor) -> Tensor:
    """Isotropic TV of each image ``x [B, 1, H, W]`` -> ``[B]``."""
    g = grad2d(x)
    return g.pow(2).sum(1).sqrt().flatten(1).sum(1)


def data_residual(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """``||M F x - y||`` per image, ``[B]`` (``y`` with zeros off the mask)."""
    m = _check_mask(y, mask).to(y.real.dtype)
    return (fft2c(x) * m - y).flatten(1).abs().pow(2).sum(1).sqrt()


def tv_objective(x: Tensor, y: Tensor, mask: Tensor, lam: float) -> Tensor:
    """``0.5 ||M F x - y||^2 + lam TV(x)`` per image, ``[B]``."""
    return 0.5 * data_residual(x, y, mask).pow(2) + lam * total_variation(x)


def tv_reconstruct(
    y: Tensor, mask: Tensor, lam: float, iters: int, step_ratio: float = 1.0
) -> Tensor:
    """TV-regularised reconstruction of ``y`` (complex ``[B, 1, H, W]``, zeros off ``mask``)
    with ``iters`` primal-dual iterations; returns a real image ``[B, 1, H, W]`` >= 0.

    Primal steps ``tau = step_ratio * s``, dual steps ``sigma = s / step_ratio`` with
    ``s^2 ||K||^2 = 0.99`` (convergent for every ratio).  Starts from
    ``max(Re F^-1 y, 0)``.  Deterministic and differentiable with respect to ``y``.
    """
    if not torch.is_complex(y) or y.ndim != 4 or y.shape[1] != 1:
        raise ValueError(f"y must be complex [B, 1, H, W], got {y.dtype} {tuple(y.shape)}")
    if not lam >= 0 or not math.isfinite(lam):
        raise ValueError(f"TV weight lam must be a finite number >= 0, got {lam!r}")
    if int(iters) != iters or iters < 1:
        raise ValueError(f"iters must be an integer >= 1, got {iters!r}")
    if not step_ratio > 0:
        raise ValueError(f"step_ratio must be > 0, got {step_ratio!r}")
    m = _check_mask(y, mask).to(y.real.dtype)
    s = math.sqrt(0.99 / _K_NORM_SQ)
    tau, sigma = s * step_ratio, s / step_ratio
    x = ifft2c(y).real.clamp_min(0.0)
    x_bar = x
    p = torch.zeros((x.shape[0], 2, *x.shape[2:]), dtype=x.dtype, device=x.device)
    q = torch.zeros_like(y)
    # Under autograd (the white-box attack), the iterations run in checkpointed chunks: only
    # the state between chunks is kept and each chunk is recomputed in the backward pass, so
    # memory grows with CHECKPOINT_EVERY instead of with iters (quick: 1.0 GB less at a batch
    # of 8), with the same values and gradients bit for bit.
    checkpointed = torch.is_grad_enabled() and y.requires_grad
    done = 0
    while done < int(iters):
        n = min(CHECKPOINT_EVERY, int(iters) - done) if checkpointed else int(iters)
        state = (x, x_bar, p, q)
        if checkpointed:
            state = checkpoint(_primal_dual, *state, y, m, lam, tau, sigma, n, use_reentrant=False)
        else:
            state = _primal_dual(*state, y, m, lam, tau, sigma, n)
        x, x_bar, p, q = state
        done += n
    return x


#: primal-dual iterations per checkpointed chunk of :func:`tv_reconstruct` under autograd
CHECKPOINT_EVERY = 10


def _primal_dual(
    x: Tensor,
    x_bar: Tensor,
    p: Tensor,
    q: Tensor,
    y: Tensor,
    m: Tensor,
    lam: float,
    tau: float,
    sigma: float,
    n: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``n`` Chambolle-Pock iterations of :func:`tv_reconstruct` from the state
    ``(x, x_bar, p, q)``; returns the new state."""
    for _ in range(n):
        # dual ascent; TV: projection onto {|p_ij| <= lam}; data: prox of (0.5||. - y||^2)*
        p = p + sigma * grad2d(x_bar)
        if lam > 0:  # max(|p| / lam, 1) as sqrt(max(|p|^2 / lam^2, 1)): finite gradient at p = 0
            p = p / (p.pow(2).sum(1, keepdim=True) / lam**2).clamp_min(1.0).sqrt()
        else:
            p = torch.zeros_like(p)
        q = (q + sigma * (fft2c(x_bar) * m - y)) / (1.0 + sigma)
        # primal descent along -K^T (p, q), projected onto x >= 0
        x_new = (x - tau * (ifft2c(q * m).real - div2d(p))).clamp_min(0.0)
        x_bar = 2 * x_new - x
        x = x_new
    return x, x_bar, p, q


def tv_denoise(x: Tensor, weight: float, iters: int = 10) -> Tensor:
    """TV proximal step: ``argmin_z 0.5 ||z - x||^2 + weight * TV(z)`` for ``x [B, 1, H, W]``,
    approximately, by ``iters`` projected gradient steps on the dual (Chambolle 2004; step
    ``1 / 8``, convergent).  ``weight = 0`` returns ``x`` unchanged.  Differentiable."""
    if not weight >= 0 or not math.isfinite(weight):
        raise ValueError(f"TV weight must be a finite number >= 0, got {weight!r}")
    if weight == 0:
        return x
    p = torch.zeros((x.shape[0], 2, *x.shape[2:]), dtype=x.dtype, device=x.device)
    for _ in range(int(iters)):
        p = p + grad2d(x + weight * div2d(p)) / (8.0 * weight)
        p = p / p.pow(2).sum(1, keepdim=True).clamp_min(1.0).sqrt()  # finite gradient at 0
    return x + weight * div2d(p)


class TVReconstructor(nn.Module):
    """``recon(y, mask)``: TV-regularised compressed sensing (see module doc).

    ``lam``: TV weight (image intensities in [0, 1], orthonormal FFT); ``iters``: primal-dual
    iterations.  No trainable parameters; deterministic.
    """

    name = "tv"

    def __init__(self, lam: float, iters: int = 100, step_ratio: float = 1.0) -> None:
        super().__init__()
        if not lam >= 0 or not math.isfinite(lam):
            raise ValueError(f"TV weight lam must be a finite number >= 0, got {lam!r}")
        self.lam = float(lam)
        self.iters = int(iters)
        self.step_ratio = float(step_ratio)

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:  # noqa: D102
        return tv_reconstruct(y, mask, self.lam, self.iters, self.step_ratio)

    def extra_repr(self) -> str:
        return f"lam={self.lam:g}, iters={self.iters}, step_ratio={self.step_ratio:g}"


@torch.no_grad()
def choose_lambda(
    images: Tensor,
    mask: Tensor,
    lams: Sequence[float],
    iters: int,
    step_ratio: float = 1.0,
) -> dict[str, Any]:
    """Grid search of the TV weight on (validation) images ``[N, 1, H, W]``: the ``lam`` of
    ``lams`` with the highest mean PSNR (paper convention) of the reconstruction from
    ``M F x``.  Deterministic (no random draws; ties go to the smaller weight).

    Returns ``{"lam", "lams", "psnr_mean" (one per lam), "iters", "step_ratio", "n_images"}``.
    """
    if not len(lams):
        raise ValueError("lams is empty")
    y = fft2c(images) * _check_mask(fft2c(images), mask).to(images.dtype)
    scores = []
    for lam in lams:
        x = tv_reconstruct(y, mask, float(lam), iters, step_ratio)
        scores.append(float(metrics.psnr(x, images).mean()))
    best = max(range(len(lams)), key=lambda i: (scores[i], -float(lams[i])))
    return {
        "lam": float(lams[best]),
        "lams": [float(v) for v in lams],
        "psnr_mean": scores,
        "iters": int(iters),
        "step_ratio": float(step_ratio),
        "n_images": int(images.shape[0]),
    }


__all__ = [
    "TVReconstructor",
    "choose_lambda",
    "data_residual",
    "div2d",
    "grad2d",
    "total_variation",
    "tv_denoise",
    "tv_objective",
    "tv_reconstruct",
]
