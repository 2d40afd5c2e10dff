"""Two ways of running the Eq. 5 attack besides the plain batched one of :mod:`mripkg.attacks`.

Continuation along the eps grid (the default at quick, issue 18)
-----------------------------------------------------------------
The white-box sweep attacks every slice at every eps of a grid.  Solved cold, each (slice, eps)
pair starts from tiny noise and spends most of its steps growing to the budget.  With
``AttackSettings.ladder`` set, the positive eps of the ladder are solved in increasing order:
the first one cold (``steps`` Adam steps from the tiny random start), every later eps_k warm
from the best perturbation of eps_(k-1) rescaled to the new budget (``delta_k = delta_(k-1)
eps_k / eps_(k-1)``; in the budget-relative variable ``u`` of :mod:`mripkg.attacks` this is the
same ``u``), for at most ``warm_steps`` steps.  Every pair stops on its own once its best
damage has not grown by more than ``min_gain`` (relative) for ``patience`` steps (a plateau
stop), and stopped pairs leave the batch.  An eps that is not on the ladder is solved cold.
Because eps_k's result depends on the ladder below it, the ladder, the warm step count and
the stop rule are part of the settings and so of every cache key.

The authors' protocol (``attack="authors"``, PAPER.md addendum)
---------------------------------------------------------------
``delta`` lives on the full k-space (every column, not only the sampled ones); the model sees
``y + M delta``; the norm is taken on the full ``delta``: ``||delta|| <= eps ||k||``.  Start:
Gaussian noise of norm ``1e-4 ||k||`` (our reading of "1e-4 times the k-space norm");
Adam with absolute learning rate 0.1 on ``delta`` in float32; loss: the mean squared
difference (MSE) between the perturbed and the clean reconstruction, maximised; up to 2000
iterations, a pair stops after 200 iterations without a new maximum; the iterate of largest MSE
is kept.  ``delta`` is real, as everywhere in this project.  Off the sampled columns ``delta``
gets no gradient, so those entries only shrink with the projection; the stored result holds
the part that reaches the model, ``M delta`` (so ``rel_norm = ||M delta|| / ||k|| <= eps``), and
the full norm is recorded in the sidecar (``full_rel_norm``).

Both write :class:`~mripkg.attacks.AttackResult` entries to the same
:class:`~mripkg.attacks.AttackCache`, one per (slice, eps), with ``loss_history`` of
``steps + 1`` rows (padded with the last scored iterate after a pair stopped; the number of
steps it ran is ``meta["steps_used"]`` of the entry).  The cached runs live in
:mod:`mripkg.attacks.cache` (:func:`~mripkg.attacks.cache.cached_protocol_attack`), which
:func:`~mripkg.attacks.cache.cached_attack` (and so every notebook's
:func:`~mripkg.evaluation.attack_runs.run_whitebox`) calls for such settings.  This module
holds the optimisation and imports only :mod:`.kspace` and root modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..physics import kspace_norm
from ..profiles import ATTACK_PRESETS
from .kspace import (
    AttackResult,
    AttackSettings,
    EpsLike,
    ReconFn,
    _delta_from_u,
    _enforce_bound,
    as_eps,
    image_norm,
    in_precision,
)

#: Version of the continuation algorithm; part of every cache key (bump it when it changes).
CONTINUATION_VERSION = 1
#: Version of the authors'-protocol implementation: part of every cache key through
#: ``protocol = "authors-v<N>"`` (:data:`mripkg.profiles.ATTACK_PRESETS`).
AUTHORS_VERSION = 1

#: The authors' protocol as :class:`AttackSettings` fields (PAPER.md addendum): the values of
#: :data:`mripkg.profiles.ATTACK_PRESETS` ``["authors"]``.
AUTHORS_PRESET: dict[str, Any] = {
    **{k: v for k, v in ATTACK_PRESETS["authors"].items() if k != "continuation"},
    "ladder": (),
}


def is_authors(settings: AttackSettings) -> bool:
    """Whether ``settings`` run the authors' protocol."""
    return settings.protocol.startswith("authors")


def uses_protocol(settings: AttackSettings) -> bool:
    """Whether :func:`cached_protocol_attack` (not the plain batched attack) runs ``settings``."""
    return bool(settings.protocol) or bool(settings.ladder) or settings.patience > 0


def authors_settings(base: AttackSettings) -> AttackSettings:
    """``base`` (its seed and model id) with the authors' protocol."""
    return replace(base, **AUTHORS_PRESET)


# --------------------------------------------------------------------------------------------
# the optimisation loop shared by both


def _optimise(
    score_fn: Callable[[Tensor, Tensor], Tensor],
    u0: Tensor,
    project: Callable[[Tensor, Tensor], Tensor],
    weight: Tensor,
    *,
    lr: float,
    steps: int,
    patience: int,
    min_gain: float,
    bar: Any = None,
) -> dict[str, Tensor]:
    """Projected Adam ascent on ``N`` independent problems with a per-problem plateau stop.

    ``score_fn(u [n, ...], idx [n]) -> [n]``: the damage of the problems ``idx`` (called with
    the active ones only); the gradient is taken of ``damage * weight[idx]``; ``project(u,
    idx)`` returns ``u`` projected on the constraint.  A problem stops once its best damage
    has not exceeded ``(1 + min_gain)`` times the best of ``patience`` steps before
    (``patience = 0``: never), and leaves the batch (its Adam state is dropped with it).
    Returns ``best_u``, ``best`` [N], ``best_step`` [N], ``history`` [steps + 1, N] (padded with
    the last score after a stop) and ``steps_used`` [N].
    """
    n = u0.shape[0]
    dev = u0.device
    bshape = (-1,) + (1,) * (u0.ndim - 1)
    idx = torch.arange(n, device=dev)
    u = u0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr, maximize=True)
    best = torch.full((n,), -math.inf, dtype=torch.float32, device=dev)
    best_u = u0.detach().clone()
    best_step = torch.zeros(n, dtype=torch.int64, device=dev)
    history = torch.zeros(steps + 1, n, dtype=torch.float32, device=dev)
    steps_used = torch.full((n,), steps, dtype=torch.int64, device=dev)
    last_gain = torch.zeros(n, dtype=torch.int64, device=dev)  # step of the last real gain
    ref = torch.full((n,), -math.inf, dtype=torch.float32, device=dev)  # best at that step
    for t in range(steps + 1):
        last = t == steps
        with torch.set_grad_enabled(not last):
            obj = score_fn(u, idx)
        score = obj.detach().float()
        history[t, idx] = score
        improved = score > best[idx]
        best[idx] = torch.where(improved, score, best[idx])
        best_step[idx] = torch.where(improved, torch.full_like(idx, t), best_step[idx])
        best_u[idx] = torch.where(improved.view(bshape), u.detach(), best_u[idx])
        gained = best[idx] > ref[idx] * (1 + min_gain)
        gained = gained | (t == 0)
        ref[idx] = torch.where(gained, best[idx], ref[idx])
        last_gain[idx] = torch.where(gained, torch.full_like(idx, t), last_gain[idx])
        if last:
            break
        opt.zero_grad(set_to_none=True)
        (obj * weight[idx]).sum().backward()
        done = (t - last_gain[idx]) >= patience if patience > 0 else torch.zeros_like(improved)
        if bool(done.any()):
            steps_used[idx[done]] = t
            history[t + 1 :, idx[done]] = score[done]
            stay = ~done
            if not bool(stay.any()):
                break
            sel = torch.nonzero(stay).flatten()
            state = opt.state[u]
            grad = u.grad[sel].clone() if u.grad is not None else None
            u = u.detach()[sel].clone().requires_grad_(True)
            u.grad = grad
            opt = torch.optim.Adam([u], lr=lr, maximize=True)
            if state:
                opt.state[u] = {
                    k: (v[sel].clone() if k != "step" else v.clone()) for k, v in state.items()
                }
            idx = idx[stay]
        opt.step()
        with torch.no_grad():
            u.copy_(project(u, idx))
        if bar is not None:
            bar.update(int(idx.numel()))
    return {
        "best_u": best_u,
        "best": best,
        "best_step": best_step,
        "history": history,
        "steps_used": steps_used,
    }


# --------------------------------------------------------------------------------------------
# one batch of pairs, either protocol


def _flat_pairs(
    model: ReconFn,
    kspace: Tensor,
    mask: Tensor,
    eps: Tensor,
    noise: Tensor,
    settings: AttackSettings,
    *,
    steps: int,
    warm_u: Tensor | None = None,
    bar: Any = None,
) -> dict[str, Tensor]:
    """``N`` (image, eps) pairs, ``kspace`` complex ``[N, 1, H, W]``, ``eps`` float64 ``[N]``
    (all > 0), ``noise`` standard normal ``[N, 1, H, W]``.  ``warm_u``: the budget-relative
    start ``[N, 1, H, W]`` of a continuation level (``None``: the tiny random start).  Returns
    the flat dict of :func:`mripkg.attacks._attack_flat` plus ``steps_used`` and
    ``full_rel_norm`` (``[N]``)."""
    device = kspace.device
    rdtype = kspace.real.dtype
    net = in_precision(model, settings.precision)
    m = mask.to(device=device, dtype=rdtype)
    y = kspace * m
    knorm = kspace_norm(kspace).to(torch.float64)
    budget = eps.to(device) * knorm
    with torch.no_grad():
        f0 = net(y, mask)
    if is_authors(settings):
        # delta on the full k-space, norm on the full delta, absolute lr, MSE (mean) loss
        start = noise.to(device=device, dtype=rdtype)
        start_norm = start.flatten(1).pow(2).sum(1).sqrt().clamp_min(1e-30)
        target = (settings.init_scale * knorm).to(rdtype)
        u0 = start * (target / start_norm).view(-1, 1, 1, 1)
        radius = budget.to(rdtype)
        ones = torch.ones_like(radius)

        def score(u: Tensor, idx: Tensor) -> Tensor:
            d = _delta_from_u(u, ones[idx], m, False)
            return (net(y[idx] + d, mask) - f0[idx]).pow(2).flatten(1).sum(1)

        # the gradient of the mean squared change (the authors' MSE loss), in float32
        weight = torch.full_like(radius, 1.0 / float(f0[0].numel()))

        def project(u: Tensor, idx: Tensor) -> Tensor:
            norm = u.flatten(1).pow(2).sum(1).sqrt()
            fac = (radius[idx] / norm.clamp_min(torch.finfo(rdtype).tiny)).clamp(max=1.0)
            return u * fac.view(-1, 1, 1, 1)

        lr = float(settings.lr if settings.lr is not None else 0.1)
        scale = ones
    else:
        n_entries = int(mask.sum()) * kspace.shape[-2] * kspace.shape[-3]
        per_entry = budget / math.sqrt(n_entries)
        scale = per_entry.to(rdtype)
        weight = (1.0 / per_entry.clamp_min(1e-150).pow(2)).to(rdtype)
        radius = torch.full_like(scale, math.sqrt(n_entries))
        if warm_u is None:
            u0 = noise.to(device=device, dtype=rdtype) * m * settings.init_scale
        else:
            u0 = warm_u.to(device=device, dtype=rdtype) * m

        def score(u: Tensor, idx: Tensor) -> Tensor:
            d = _delta_from_u(u, scale[idx], m, False)
            return (net(y[idx] + d, mask) - f0[idx]).pow(2).flatten(1).sum(1)

        def project(u: Tensor, idx: Tensor) -> Tensor:
            norm = u.flatten(1).pow(2).sum(1).sqrt()
            fac = (radius[idx] / norm.clamp_min(torch.finfo(rdtype).tiny)).clamp(max=1.0)
            return u * fac.view(-1, 1, 1, 1)

        lr = float(settings.lr_rel)
    out = _optimise(
        score,
        u0,
        project,
        weight,
        lr=lr,
        steps=steps,
        patience=int(settings.patience),
        min_gain=float(settings.min_gain),
        bar=bar,
    )
    with torch.no_grad():
        best_u = out["best_u"].to(device)
        full_norm = best_u.flatten(1).to(torch.float64).pow(2).sum(1).sqrt() * scale.double()
        delta = _enforce_bound(_delta_from_u(best_u, scale, m, False), budget)
    rel = image_norm(delta) / knorm.clamp_min(1e-300)
    return {
        "delta": delta,
        "y_adv": y + delta,
        "rel_norm": rel,
        "best_damage": out["best"],
        "best_step": out["best_step"],
        "history": out["history"],
        "steps_used": out["steps_used"],
        "full_rel_norm": full_norm / knorm.clamp_min(1e-300),
        "u": best_u.detach().cpu(),
    }


# --------------------------------------------------------------------------------------------
# cached runs


def ladder_levels(settings: AttackSettings, eps: float) -> list[float]:
    """The eps values solved (in order) to get ``eps``: the ladder up to ``eps`` when ``eps``
    is on the ladder, else ``[eps]`` alone (cold)."""
    lad = [float(e) for e in settings.ladder if e > 0]
    hit = [i for i, e in enumerate(lad) if math.isclose(e, eps, rel_tol=1e-9, abs_tol=1e-12)]
    return lad[: hit[0] + 1] if hit else [float(eps)]


def _u_from_result(res: AttackResult, kspace: Tensor, mask: Tensor) -> Tensor:
    """The budget-relative ``u`` ``[1, 1, H, W]`` of a cached one-pair continuation entry."""
    n_entries = int(mask.sum()) * kspace.shape[-2] * kspace.shape[-3]
    kn = float(kspace_norm(kspace.reshape(1, *kspace.shape[-3:]))[0])
    per_entry = float(res.eps[0]) * kn / math.sqrt(n_entries)
    return (res.delta[0].real / max(per_entry, 1e-300)).to(kspace.real.dtype)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def planned_steps(settings: AttackSettings, eps: EpsLike) -> float:
    """Mean number of Adam steps per (slice, eps > 0) pair before any plateau stop (an upper
    bound for the time estimate): ``steps`` for a cold pair, ``warm_steps`` for a warm one."""
    vals = []
    lad = [float(e) for e in settings.ladder if e > 0]
    for e in as_eps(eps).tolist():
        if e == 0:
            continue
        warm = not is_authors(settings) and any(_close(e, x) for x in lad[1:])
        vals.append((settings.warm_steps or settings.steps) if warm else settings.steps)
    return sum(vals) / len(vals) if vals else 0.0


__all__ = [
    "AUTHORS_PRESET",
    "AUTHORS_VERSION",
    "CONTINUATION_VERSION",
    "authors_settings",
    "is_authors",
    "ladder_levels",
    "planned_steps",
    "uses_protocol",
]
