"""Random controls: Gaussian perturbations of the same norm as an attack (or its budget).

Stage: attacks.  Receives attack results or k-space, mask, slice ids, eps and a seed; hands on
control perturbations ``[E, B, 1, H, W]`` drawn from seeded generators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .cache import item_seed
from .kspace import (
    AttackResult,
    EpsLike,
    _check_mask,
    as_eps,
    image_norm,
)


def random_control(
    delta: Tensor,
    mask: Tensor,
    generator: torch.Generator | None = None,
    real: bool | None = None,
) -> Tensor:
    """Gaussian noise on the sampled columns with the per-image norm of ``delta``.

    ``delta``: ``[..., 1, H, W]`` (e.g. ``AttackResult.delta`` ``[E, B, 1, H, W]``), complex or
    real; ``mask`` bool ``[W]``.  The noise is real-valued (zero imaginary part) when ``real``
    is true or, with ``real=None``, when ``delta`` is real or has an all-zero imaginary part.
    Returns a tensor of ``delta``'s shape and dtype whose norm over the last three axes equals
    that of ``delta`` (float rounding only; zero where ``delta`` is zero).
    """
    if delta.ndim < 3:
        raise ValueError(f"delta must be [..., 1, H, W], got shape {tuple(delta.shape)}")
    _check_mask(mask, delta.shape[-1])
    is_complex = torch.is_complex(delta)
    if real is None:
        real = (not is_complex) or not bool(delta.imag.ne(0).any())
    if not real and not is_complex:
        raise ValueError("a complex control was requested for a real delta")
    shape = tuple(delta.shape) + (() if real else (2,))
    dev = generator.device if generator is not None else delta.device
    z = torch.randn(shape, generator=generator, dtype=torch.float64, device=dev).to(delta.device)
    m = mask.to(device=delta.device, dtype=torch.float64)
    z = z * (m if real else m[:, None])
    if not real:
        z = torch.view_as_complex(z)
    target = image_norm(delta)
    scale = target / image_norm(z).clamp_min(1e-300)
    z = z * scale.view(*scale.shape, 1, 1, 1)
    if is_complex:
        dtype = delta.dtype
        return (z if torch.is_complex(z) else torch.complex(z, torch.zeros_like(z))).to(dtype)
    return z.to(delta.dtype)


def _control_generator(seed: int, slice_id: int, eps: float) -> torch.Generator:
    return torch.Generator().manual_seed(item_seed(seed, f"control-{slice_id}", eps))


def control_deltas(
    result: AttackResult, mask: Tensor, slice_ids: Sequence[int], seed: int
) -> Tensor:
    """Equal-norm random controls ``[E, B, 1, H, W]`` of an attack result: Gaussian noise on
    the sampled columns (real, like the paper's delta) with each adversarial delta's norm,
    drawn from a generator seeded by (seed, slice id, eps).  Zero where eps = 0."""
    delta = result.delta
    if delta.shape[1] != len(slice_ids):
        raise ValueError(f"{len(slice_ids)} slice ids for {delta.shape[1]} slices")
    out = torch.zeros_like(delta)
    for j, e in enumerate(result.eps.tolist()):
        for b, sid in enumerate(slice_ids):
            if e == 0:
                continue
            g = _control_generator(seed, sid, e)
            out[j, b] = random_control(delta[j, b : b + 1], mask, generator=g)[0]
    return out


def budget_controls(
    kspace: Tensor, mask: Tensor, slice_ids: Sequence[int], eps: EpsLike, seed: int
) -> Tensor:
    """Random controls ``[E, B, 1, H, W]`` with norm exactly ``eps ||k||`` (the attack's
    budget), in the direction :func:`control_deltas` draws for the same (seed, slice, eps)."""
    eps_t = as_eps(eps)
    if kspace.shape[0] != len(slice_ids):
        raise ValueError(f"{len(slice_ids)} slice ids for {kspace.shape[0]} slices")
    m = mask.to(kspace.real.dtype)
    n_entries = float(mask.sum()) * kspace.shape[-2]
    knorm = image_norm(kspace)  # [B]
    out = torch.zeros((eps_t.shape[0], *kspace.shape), dtype=kspace.dtype)
    for j, e in enumerate(eps_t.tolist()):
        for b, sid in enumerate(slice_ids):
            if e == 0:
                continue
            level = float(e * knorm[b]) / math.sqrt(n_entries)
            ref = (torch.ones(kspace.shape[1:]) * m * level).to(kspace.dtype)[None]
            g = _control_generator(seed, sid, e)
            out[j, b] = random_control(ref, mask, generator=g, real=True)[0]
    return out


def budget_gap(result: AttackResult) -> float:
    """Largest relative shortfall ``(eps - ||M delta|| / ||k||) / eps`` over pairs with
    eps > 0: how far the adversarial perturbations stay inside the budget (0 = on it)."""
    eps = result.eps.view(-1, 1).expand_as(result.rel_norm)
    pos = eps > 0
    if not bool(pos.any()):
        return 0.0
    return float(((eps - result.rel_norm)[pos] / eps[pos]).max())


__all__ = [
    "budget_controls",
    "budget_gap",
    "control_deltas",
    "random_control",
]
