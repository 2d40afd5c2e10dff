"""Attacks run over a slice set and an eps grid, through the attack cache.

Stage: evaluation.  Receives a model, a :class:`~mripkg.evaluation.selection.SliceSet`, eps
and the profile's attack settings; hands on :class:`~mripkg.attacks.kspace.AttackResult`
grids ``[E, B]``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..attacks.cache import AttackCache, attack_shard, cached_attack
from ..attacks.kspace import (
    AttackResult,
    AttackSettings,
    EpsLike,
    as_eps,
    frozen,
    kspace_attack,
)
from ..attacks.shards import Shard
from ..memory import release_memory
from ..models.ddpm import DiffusionReconstructor, config_sampler_tag
from ..profiles import Profile
from .selection import SliceSet


def model_id(meta: Mapping[str, Any] | None) -> str:
    """12 hex digits of the sha256 of a model's weights (from its checkpoint sidecar); empty
    for a model without weights (zero-filled)."""
    sha = (meta or {}).get("sha256") or ""
    return str(sha)[:12]


def attack_settings(
    profile: Profile, meta: Mapping[str, Any] | None, **overrides: Any
) -> AttackSettings:
    """:class:`AttackSettings` of a profile for a source model with checkpoint ``meta``."""
    return AttackSettings.from_profile(profile, model_id=model_id(meta), **overrides)


def diffusion_objective_label(steps: int, seed: int, samples: int = 1, sampler: str = "") -> str:
    """Cache label of the white-box diffusion objective: a ``steps``-step sampler with fixed
    noise, averaged over ``samples`` noise draws (``samples > 1``: expectation over the
    sampler's randomness); ``sampler``: its :func:`~mripkg.models.ddpm.sampler_tag` (``""``:
    the paper's projection sampler)."""
    if isinstance(samples, bool) or int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    label = f"fixed-noise-{int(steps)}-seed{int(seed)}"
    if samples != 1:
        label = f"{label}-eot{int(samples)}"
    return f"{label}-{re.sub(r'[^A-Za-z0-9_.+-]', '_', sampler)}" if sampler else label


def run_whitebox(
    model: Callable[[Tensor, Tensor], Tensor],
    source: str,
    data: SliceSet,
    eps: EpsLike,
    settings: AttackSettings,
    *,
    profile: Profile,
    batch_size: int | None = 8,
    cache: AttackCache | None = None,
    progress: bool | None = None,
    require_cached: bool = False,
) -> AttackResult:
    """White-box attack of ``model`` on every (slice, eps) pair, through the attack cache
    (``runs/<profile>/attacks`` unless ``cache`` is given).  Returns ``[E, B]`` results.
    ``require_cached``: attack nothing, every pair must be in the cache (the merge of a
    sharded sweep, :func:`shard_whitebox`)."""
    return cached_attack(
        model,
        data.kspace,
        data.mask,
        eps,
        profile=profile,
        source=source,
        slice_ids=data.slice_ids,
        split=data.split,
        settings=settings,
        batch_size=batch_size,
        cache=cache,
        progress=progress,
        require_cached=require_cached,
    )


def shard_whitebox(
    model: Callable[[Tensor, Tensor], Tensor],
    source: str,
    data: SliceSet,
    eps: EpsLike,
    settings: AttackSettings,
    *,
    shard: Shard,
    profile: Profile,
    batch_size: int | None = 8,
    cache: AttackCache | None = None,
    progress: bool | None = None,
) -> list[int]:
    """One shard of :func:`run_whitebox` (same arguments): attack the batches of (slice, eps)
    pairs that ``shard`` owns into the cache; returns their numbers."""
    return attack_shard(
        model,
        data.kspace,
        data.mask,
        eps,
        shard=shard,
        profile=profile,
        source=source,
        slice_ids=data.slice_ids,
        split=data.split,
        settings=settings,
        batch_size=batch_size,
        cache=cache,
        progress=progress,
    )


def diffusion_settings(
    profile: Profile, meta: Mapping[str, Any] | None, **overrides: Any
) -> AttackSettings:
    """Attack settings of the white-box diffusion attack: the profile's steps and ``lr_rel``,
    the objective labelled by the short sampler's step count, noise seed and number of noise
    draws (``profile.attack.diffusion_eot_samples``)."""
    a = profile.attack
    label = diffusion_objective_label(
        a.diffusion_steps, profile.seed, a.diffusion_eot_samples, config_sampler_tag(profile.ddpm)
    )
    plain = {"ladder": (), "warm_steps": 0, "patience": 0, "min_gain": 0.0}  # no continuation
    return attack_settings(profile, meta, objective=label, **{**plain, **overrides})


def diffusion_objective(
    diff: DiffusionReconstructor, steps: int, slice_id: int, samples: int = 1
) -> Callable[[Tensor, Tensor], Tensor]:
    """The differentiable stand-in the white-box diffusion attack maximises the change of:
    ``(y [B, 1, H, W], mask) -> [B, samples, H, W]``, the ``steps``-step projection sampler
    with the fixed noise of (model seed, ``slice_id``, draw 0 .. samples - 1), with gradient
    checkpointing.  The squared change summed over the draws is the expectation over the
    sampler's randomness (``samples > 1``) up to a constant."""

    def objective(y: Tensor, m: Tensor) -> Tensor:
        ids = [slice_id] * y.shape[0]
        draws = [
            diff.reconstruct(y, m, steps=steps, slice_ids=ids, sample=j, grad_checkpoint=True)
            for j in range(samples)
        ]
        return draws[0] if samples == 1 else torch.cat(draws, dim=1)

    return objective


def run_diffusion_whitebox(
    diff: DiffusionReconstructor,
    data: SliceSet,
    eps: EpsLike,
    settings: AttackSettings,
    *,
    profile: Profile,
    steps: int,
    samples: int = 1,
    source: str = "diffusion",
    cache: AttackCache | None = None,
    progress: bool | None = None,
) -> AttackResult:
    """White-box attack on the diffusion model: gradients through a short (``steps``)
    projection sampler with fixed noise (the same (seed, slice id) noise at every attack step
    and for every eps), with gradient checkpointing.  One slice at a time, so the noise of the
    objective is that slice's.  With ``samples > 1`` the objective sums the damage over that
    many fixed noise draws (sampler ``sample`` 0, 1, ...; draw 0 is the one of
    ``samples = 1``): an expectation over the sampler's randomness at ``samples`` times the
    cost.  Evaluate the result with the full sampler afterwards."""
    expected = diffusion_objective_label(steps, diff.seed, samples, diff.sampler_tag)
    if settings.objective != expected:
        raise ValueError(f"settings.objective {settings.objective!r} != {expected!r}")
    parts = []
    with frozen(diff):
        for b, sid in enumerate(data.slice_ids):
            parts.append(
                cached_attack(
                    diffusion_objective(diff, steps, sid, samples),
                    data.kspace[b : b + 1],
                    data.mask,
                    eps,
                    profile=profile,
                    source=source,
                    slice_ids=[sid],
                    split=data.split,
                    settings=settings,
                    cache=cache,
                    progress=progress,
                )
            )
    return AttackResult.concat(parts, "batch")


def cached_grid(
    source: str,
    data: SliceSet,
    eps: EpsLike,
    settings: AttackSettings,
    *,
    profile: Profile,
    cache: AttackCache | None = None,
) -> AttackResult | None:
    """The cached perturbations of ``source`` for every (slice, eps) pair, or ``None`` when
    any is missing (no model needed)."""
    cache = cache or AttackCache(profile)
    try:
        return cache.load_grid(
            source, data.split, data.slice_ids, eps, settings, data.kspace, data.mask
        )
    except KeyError:
        return None


def missing_pairs(
    source: str,
    data: SliceSet,
    eps: EpsLike,
    settings: AttackSettings,
    *,
    profile: Profile,
    cache: AttackCache | None = None,
) -> int:
    """Number of (slice, eps > 0) pairs not yet in the attack cache, or corrupt there (the
    work left)."""
    cache = cache or AttackCache(profile)
    n = 0
    for e in as_eps(eps).tolist():
        if e == 0:
            continue
        for b, sid in enumerate(data.slice_ids):
            n += not cache.is_valid(source, data.split, sid, e, settings, data.kspace[b], data.mask)
    return n


def time_attack_step(
    model: Callable[[Tensor, Tensor], Tensor],
    data: SliceSet,
    batch: int,
    eps: float = 0.04,
    steps: int = 3,
) -> float:
    """Seconds per (slice, eps) pair and attack step on ``batch`` slices.

    A one-step attack first pays the first-call costs (allocator, kernel selection: they made
    an untimed two-step estimate 2-3x too high); then a ``steps``-step attack is timed.  It
    makes ``steps + 2`` forward and ``steps`` backward passes, counted as ``steps + 0.7``
    steps (a forward pass is about a third of a step), so it still slightly overestimates."""
    k = data.kspace[: max(1, min(batch, len(data)))]
    with frozen(model):
        kspace_attack(model, k, data.mask, eps, steps=1, progress=False)
        t0 = time.perf_counter()
        kspace_attack(model, k, data.mask, eps, steps=steps, progress=False)
        dt = time.perf_counter() - t0
    release_memory()  # the timed fp32 graphs left 0.3-0.6 GB resident (notebook 03's peak)
    return dt / (steps + 0.7) / k.shape[0]


__all__ = [
    "attack_settings",
    "cached_grid",
    "diffusion_objective",
    "diffusion_objective_label",
    "diffusion_settings",
    "missing_pairs",
    "model_id",
    "run_diffusion_whitebox",
    "run_whitebox",
    "shard_whitebox",
    "time_attack_step",
]
