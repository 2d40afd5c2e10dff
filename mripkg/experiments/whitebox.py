"""White-box checks of notebook 03: short vs full sampler, attack convergence, step sizes.

Stage: experiments.  Receives models, slice sets and attack settings; hands on rows and
check results for the notebook and its JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..attacks.cache import AttackCache
from ..attacks.kspace import (
    AttackResult,
    AttackSettings,
    EpsLike,
)
from ..evaluation.attack_runs import run_whitebox
from ..evaluation.scoring import evaluate_attack
from ..evaluation.selection import SliceSet
from ..evaluation.summaries import whitebox_summary
from ..evaluation.targets import Target
from ..models.ddpm import DiffusionReconstructor


def short_vs_full_sampler(
    diff: DiffusionReconstructor,
    data: SliceSet,
    result: AttackResult,
    controls: Tensor,
    full: Mapping[str, Mapping[str, Any]],
    *,
    steps: int,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """How much of a white-box diffusion attack's damage on its stand-in carries over.

    The perturbations ``result`` (and their ``controls``) of :func:`run_diffusion_whitebox`
    are given to the ``steps``-step sampler with the attack's noise (draw 0); ``full`` is the
    :func:`mripkg.claims.whitebox_summary` of the same perturbations on the full sampler.  One
    row per eps: mean PSNR drops in dB, ``short sampler``, ``control (short)``, ``full
    sampler``, ``control (full)``."""
    short = diff.variant(steps=steps)
    target = Target(diff.name, short, data.mask, batch_size=batch_size)
    on_short = whitebox_summary(
        evaluate_attack(target, data, result, source="diffusion", controls=controls)
    )
    return [
        {
            "eps": k,
            "short sampler": round(on_short[k]["psnr_drop_mean"], 2),
            "control (short)": round(on_short[k]["random_psnr_drop_mean"], 2),
            "full sampler": round(v["psnr_drop_mean"], 2),
            "control (full)": round(v["random_psnr_drop_mean"], 2),
        }
        for k, v in full.items()
    ]


def convergence(history: Tensor, at: Sequence[int]) -> Tensor:
    """Best damage reached by step ``t`` for each ``t`` in ``at``: ``[len(at), ...]`` from a
    ``loss_history`` ``[steps + 1, ...]`` (the attack keeps the best iterate)."""
    best = torch.cummax(history, dim=0).values
    return torch.stack([best[min(int(t), best.shape[0] - 1)] for t in at])


def step_size_scores(
    histories: Mapping[float, Tensor],
) -> tuple[dict[float, Tensor], dict[float, float]]:
    """Compare Adam step sizes on the same attack problems.

    ``histories[lr_rel]``: ``loss_history`` ``[steps + 1, N]`` of the same ``N`` problems
    (slices x eps x models, same order for every step size).  Each problem's best-damage-so-far
    curve is divided by the best final damage any step size reached on it, so problems of
    different scale weigh the same.  Returns those normalised curves ``{lr: [steps + 1, N]}``
    and the score of each step size: the mean final ratio (1 = best on every problem).
    """
    if not histories:
        raise ValueError("no step sizes to compare")
    shapes = {tuple(h.shape) for h in histories.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"histories must share one [steps + 1, N] shape, got {sorted(shapes)}")
    best = {lr: torch.cummax(h.double(), dim=0).values for lr, h in histories.items()}
    top = torch.stack([b[-1] for b in best.values()]).amax(0).clamp_min(1e-30)  # [N]
    curves = {lr: b / top for lr, b in best.items()}
    return curves, {lr: float(c[-1].mean()) for lr, c in curves.items()}


@dataclass
class ConvergenceCheck:
    """Does the attack converge?  The same problems attacked for ``steps`` and ``long_steps``.

    ``history``: the long run's damage per step ``[long_steps + 1, B]`` (one eps); ``gain``:
    relative extra damage of the best iterate from ``steps`` to ``long_steps`` ``[B]``;
    ``psnr_short`` / ``psnr_long``: the target's PSNR under each run's perturbation ``[B]``."""

    slice_ids: list[int]
    steps: int
    long_steps: int
    history: Tensor
    gain: Tensor
    psnr_short: Tensor
    psnr_long: Tensor


def convergence_check(
    model: Callable[[Tensor, Tensor], Tensor],
    source: str,
    data: SliceSet,
    eps: float,
    settings: AttackSettings,
    long_settings: AttackSettings,
    *,
    profile: str,
    batch_size: int | None = 8,
    cache: AttackCache | None = None,
) -> ConvergenceCheck:
    """Attack ``data`` at one ``eps`` with ``settings`` and with ``long_settings`` (more
    steps), both through the attack cache, and compare (:class:`ConvergenceCheck`)."""
    short = run_whitebox(
        model, source, data, [eps], settings, profile=profile, batch_size=batch_size, cache=cache
    )
    long = run_whitebox(
        model,
        source,
        data,
        [eps],
        long_settings,
        profile=profile,
        batch_size=batch_size,
        cache=cache,
    )
    at = convergence(long.loss_history[:, 0], [settings.steps, long_settings.steps])
    target = Target(source, model, data.mask)
    return ConvergenceCheck(
        slice_ids=list(data.slice_ids),
        steps=settings.steps,
        long_steps=long_settings.steps,
        history=long.loss_history[:, 0],
        gain=(at[1] / at[0].clamp_min(1e-30) - 1).double(),
        psnr_short=evaluate_attack(target, data, short, source=source).psnr[0],
        psnr_long=evaluate_attack(target, data, long, source=source).psnr[0],
    )


@dataclass
class StepSizeCheck:
    """Adam step sizes compared on the same problems (:func:`step_size_scores`): normalised
    best-damage curves ``{lr_rel: [steps + 1, N]}``, scores, the best step size, and whether
    the profile's ``lr_rel`` scores within ``tolerance`` of it."""

    curves: dict[float, Tensor]
    scores: dict[float, float]
    best: float
    profile_lr: float
    profile_score: float
    ok: bool


def step_size_check(
    models: Mapping[str, Callable[[Tensor, Tensor], Tensor]],
    data: SliceSet,
    eps: EpsLike,
    settings: Mapping[tuple[str, float], AttackSettings],
    *,
    profile: str,
    profile_lr: float,
    batch_size: int | None = 8,
    tolerance: float = 0.01,
    cache: AttackCache | None = None,
) -> StepSizeCheck:
    """Attack ``data`` at ``eps`` with every ``settings[(model name, lr_rel)]`` (through the
    attack cache); each step size's problems are the models' (slice, eps) pairs, in the order
    of ``settings``."""
    runs: dict[float, list[Tensor]] = {}
    for (m, lr), s in settings.items():
        r = run_whitebox(
            models[m], m, data, eps, s, profile=profile, batch_size=batch_size, cache=cache
        )
        runs.setdefault(lr, []).append(r.loss_history.flatten(1))  # [steps + 1, E * B]
    curves, scores = step_size_scores({lr: torch.cat(h, 1) for lr, h in runs.items()})
    best = max(scores, key=scores.get)  # type: ignore[arg-type]
    profile_score = scores.get(profile_lr, float("nan"))
    return StepSizeCheck(
        curves=curves,
        scores=scores,
        best=best,
        profile_lr=profile_lr,
        profile_score=profile_score,
        ok=profile_score >= (1 - tolerance) * scores[best],
    )


__all__ = [
    "ConvergenceCheck",
    "StepSizeCheck",
    "convergence",
    "convergence_check",
    "short_vs_full_sampler",
    "step_size_check",
    "step_size_scores",
]
