"""Experiment orchestration for the robustness notebooks (03 white-box, 04 black-box transfer).

The attack itself lives in :mod:`mripkg.attacks`; this module runs it over a set of test slices
and an eps grid (cached on disk, so re-runs are instant and interrupted runs resume), makes the
equal-norm random controls, reconstructs clean, perturbed and control measurements with every
target model, and tabulates PSNR / SSIM (paper convention), their drops and the error
amplification into the JSON / CSV layouts the notebooks write.

Layout
------
Perturbations follow :mod:`mripkg.attacks`: ``[E, B, 1, H, W]`` for ``E`` eps values and ``B``
slices.  An :class:`Evaluation` holds, for one (source, target, route, sampler seed), the clean
reconstructions ``[B, 1, H, W]``, the perturbed and control reconstructions ``[E, B, 1, H, W]``
and per-slice metrics ``[E, B]``.

Determinism
-----------
Slices are identified by their index in the split.  The diffusion model draws its sampler noise
per slice from (seed, slice id, sample) (:func:`mripkg.models.ddpm.slice_generator`), so the
clean and the perturbed measurement of a slice are reconstructed with the same noise and
differences come from the perturbation alone.  A :class:`Target` remembers every
reconstruction it made (keyed by a hash of the measurement and the sampler settings) and can
keep them on disk (:class:`ReconCache`), so a measurement that reaches a target twice (the
clean one under eps = 0, or the same control for two sources) gives bit-identical output.

Random controls
---------------
Gaussian noise on the sampled columns of the same L2 norm as the adversarial perturbation
(:func:`control_deltas`, white-box) or of exactly the budget ``eps ||k||``
(:func:`budget_controls`, transfer: one control per slice and eps shared by all sources, so
the expensive diffusion target reconstructs it once; the attack reaches the budget up to float
rounding, see :func:`budget_gap`).  Both draw the noise from a generator seeded by (seed, slice
id, eps), so the two kinds point in the same direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import metrics
from ..attacks.kspace import (
    AttackResult,
    EpsLike,
    as_eps,
    image_norm,
    image_route_measurement,
)
from ..memory import release_memory
from .selection import SliceSet, eps_key
from .targets import Target

#: Routes from a k-space perturbation to a target.  ``direct``: the perturbed measurement
#: ``M (k + delta)`` itself; ``image``: the authors' route to the diffusion model (the
#: perturbed image, min-max normalised and measured again, :func:`image_route_measurement`).
ROUTES = ("direct", "image")


# --------------------------------------------------------------------------------------------
# small helpers


# --------------------------------------------------------------------------------------------
# slices


# --------------------------------------------------------------------------------------------
# attacks


# --------------------------------------------------------------------------------------------
# random controls


# --------------------------------------------------------------------------------------------
# reconstructions


# --------------------------------------------------------------------------------------------
# evaluation


@dataclass
class Evaluation:
    """Clean, perturbed and control reconstructions of one target, and their metrics.

    Tensors: ``clean`` ``[B, 1, H, W]``; ``adv``, ``rand`` ``[E, B, 1, H, W]``; per-slice
    metrics ``psnr``, ``ssim``, ``psnr_rand``, ``ssim_rand``, ``change``, ``change_rand``,
    ``meas_change``, ``meas_change_rand`` ``[E, B]`` (float64); ``psnr_clean``, ``ssim_clean``
    ``[B]``.  ``change = ||f(y') - f(y)||``; ``meas_change = ||y' - y||`` (the perturbation's
    norm as it reached the target; ``= ||F^-1 M delta||`` on the direct route).  ``rand`` and
    its metrics are ``None`` without a control.
    """

    source: str
    target: str
    route: str
    eps: list[float]
    slice_ids: list[int]
    seed: int | None
    clean: Tensor
    adv: Tensor
    psnr_clean: Tensor
    ssim_clean: Tensor
    psnr: Tensor
    ssim: Tensor
    change: Tensor
    meas_change: Tensor
    rand: Tensor | None = None
    psnr_rand: Tensor | None = None
    ssim_rand: Tensor | None = None
    change_rand: Tensor | None = None
    meas_change_rand: Tensor | None = None

    @property
    def psnr_drop(self) -> Tensor:
        """``psnr_clean - psnr`` (positive: damage), ``[E, B]``."""
        return self.psnr_clean[None] - self.psnr

    @property
    def ssim_drop(self) -> Tensor:
        return self.ssim_clean[None] - self.ssim

    @property
    def psnr_drop_rand(self) -> Tensor | None:
        return None if self.psnr_rand is None else self.psnr_clean[None] - self.psnr_rand

    @property
    def ssim_drop_rand(self) -> Tensor | None:
        return None if self.ssim_rand is None else self.ssim_clean[None] - self.ssim_rand

    @property
    def amplification(self) -> Tensor:
        """``||f(y') - f(y)|| / ||y' - y||`` ``[E, B]`` (NaN where nothing was perturbed)."""
        return _ratio(self.change, self.meas_change)

    @property
    def amplification_rand(self) -> Tensor | None:
        if self.change_rand is None or self.meas_change_rand is None:
            return None
        return _ratio(self.change_rand, self.meas_change_rand)

    def index(self, eps: float) -> int:
        for j, e in enumerate(self.eps):
            if abs(e - float(eps)) < 1e-9:
                return j
        raise KeyError(f"eps {eps!r} not in {self.eps}")

    def subset(self, slice_ids: Sequence[int]) -> Evaluation:
        """The same evaluation restricted to some slices."""
        pos = [self.slice_ids.index(int(s)) for s in slice_ids]
        kw: dict[str, Any] = {}
        for name in (
            "psnr",
            "ssim",
            "change",
            "meas_change",
            "adv",
            "rand",
            "psnr_rand",
            "ssim_rand",
            "change_rand",
            "meas_change_rand",
        ):
            v = getattr(self, name)
            kw[name] = None if v is None else v[:, pos]
        for name in ("clean", "psnr_clean", "ssim_clean"):
            kw[name] = getattr(self, name)[pos]
        return Evaluation(
            source=self.source,
            target=self.target,
            route=self.route,
            eps=list(self.eps),
            slice_ids=[self.slice_ids[p] for p in pos],
            seed=self.seed,
            **kw,
        )


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, math.nan))


def _metrics_grid(x: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """PSNR and SSIM (paper convention) of ``x [E, B, 1, H, W]`` against ``gt [B, 1, H, W]``."""
    e, b = x.shape[:2]
    ref = gt[None].expand(e, *gt.shape).reshape(e * b, *gt.shape[1:])
    flat = x.reshape(e * b, *x.shape[2:])
    return metrics.psnr(flat, ref).view(e, b), metrics.ssim(flat, ref).view(e, b)


def evaluate(
    target: Target,
    gt: Tensor,
    y_clean: Tensor,
    y_adv: Tensor,
    eps: EpsLike,
    slice_ids: Sequence[int],
    *,
    source: str,
    route: str = "direct",
    y_rand: Tensor | None = None,
) -> Evaluation:
    """Reconstruct the clean measurements ``y_clean [B]``, the perturbed ones ``y_adv [E, B]``
    and (optionally) the controls ``y_rand [E, B]`` with ``target`` and score them against the
    ground truth ``gt [B]``.  The clean and the perturbed measurement of a slice get the same
    sampler noise (a stochastic target draws it from the slice id)."""
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    eps_l = as_eps(eps).tolist()
    ids = [int(s) for s in slice_ids]
    n_e, n_b = len(eps_l), len(ids)
    if y_adv.shape[:2] != (n_e, n_b) or y_clean.shape[0] != n_b or gt.shape[0] != n_b:
        raise ValueError(
            f"shapes do not match {n_e} eps x {n_b} slices: y_adv {tuple(y_adv.shape)}, "
            f"y_clean {tuple(y_clean.shape)}, gt {tuple(gt.shape)}"
        )
    clean = target(y_clean, ids)
    adv = torch.stack([target(y_adv[j], ids) for j in range(n_e)])
    psnr0 = metrics.psnr(clean, gt)
    ssim0 = metrics.ssim(clean, gt)
    psnr, ssim = _metrics_grid(adv, gt)
    ev = Evaluation(
        source=source,
        target=target.name,
        route=route,
        eps=eps_l,
        slice_ids=ids,
        seed=target.seed,
        clean=clean,
        adv=adv,
        psnr_clean=psnr0,
        ssim_clean=ssim0,
        psnr=psnr,
        ssim=ssim,
        change=image_norm(adv - clean[None]),
        meas_change=image_norm(y_adv - y_clean[None]),
    )
    if y_rand is not None:
        if y_rand.shape[:2] != (n_e, n_b):
            raise ValueError(f"y_rand shape {tuple(y_rand.shape)} != y_adv's")
        rand = torch.stack([target(y_rand[j], ids) for j in range(n_e)])
        ev.rand = rand
        ev.psnr_rand, ev.ssim_rand = _metrics_grid(rand, gt)
        ev.change_rand = image_norm(rand - clean[None])
        ev.meas_change_rand = image_norm(y_rand - y_clean[None])
    release_memory()  # the reconstructions' and SSIM's temporaries
    return ev


def attack_inputs(
    data: SliceSet, result: AttackResult, controls: Tensor | None = None, route: str = "direct"
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The measurements a target receives: ``(y_clean [B], y_adv [E, B], y_rand [E, B] or
    None)`` on the ``direct`` route (``M (k + delta)`` unchanged) or the ``image`` route (the
    perturbed image, min-max normalised and measured again; clean reference: delta = 0)."""
    if result.batch_size != len(data):
        raise ValueError(f"result has {result.batch_size} slices, data {len(data)}")
    if controls is not None and controls.shape != result.delta.shape:
        raise ValueError(f"controls {tuple(controls.shape)} != delta {tuple(result.delta.shape)}")
    if route == "direct":
        m = data.mask.to(data.y.real.dtype)
        y_rand = None if controls is None else data.y[None] + controls * m
        return data.y, result.y_adv, y_rand
    if route == "image":
        y_clean, _ = image_route_measurement(data.kspace, torch.zeros_like(data.kspace), data.mask)
        y_adv, _ = image_route_measurement(data.kspace, result.delta, data.mask)
        y_rand = None
        if controls is not None:
            y_rand, _ = image_route_measurement(data.kspace, controls, data.mask)
        return y_clean, y_adv, y_rand
    raise ValueError(f"route must be one of {ROUTES}, got {route!r}")


def pending_keys(
    target: Target,
    data: SliceSet,
    result: AttackResult,
    controls: Tensor | None = None,
    route: str = "direct",
) -> set[str]:
    """Keys of the reconstructions :func:`evaluate_attack` would still have to run (for a time
    estimate; union over planned evaluations)."""
    y_clean, y_adv, y_rand = attack_inputs(data, result, controls, route)
    keys = target.pending_keys(y_clean, data.slice_ids)
    for j in range(y_adv.shape[0]):
        keys |= target.pending_keys(y_adv[j], data.slice_ids)
        if y_rand is not None:
            keys |= target.pending_keys(y_rand[j], data.slice_ids)
    return keys


def evaluate_attack(
    target: Target,
    data: SliceSet,
    result: AttackResult,
    *,
    source: str,
    controls: Tensor | None = None,
    route: str = "direct",
) -> Evaluation:
    """Give the perturbed measurements of ``result`` (crafted on ``source``; ``[E, B]`` over
    ``data``'s slices) to ``target``: unchanged on the ``direct`` route, re-measured through
    the perturbed image on the ``image`` route (clean reference: the same route with delta =
    0).  ``controls``: random perturbations ``[E, B]`` (e.g. :func:`budget_controls`)."""
    y_clean, y_adv, y_rand = attack_inputs(data, result, controls, route)
    return evaluate(
        target,
        data.images,
        y_clean,
        y_adv,
        result.eps,
        data.slice_ids,
        source=source,
        route=route,
        y_rand=y_rand,
    )


# --------------------------------------------------------------------------------------------
# tables


def per_slice_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """One CSV row per (eps, slice) with every per-slice number of an evaluation."""
    rows = []
    amp, amp_r = ev.amplification, ev.amplification_rand

    def num(t: Tensor | None, j: int, b: int) -> float | str:
        if t is None:
            return ""
        v = float(t[j, b])
        return round(v, 6) if math.isfinite(v) else ""

    for j, e in enumerate(ev.eps):
        for b, sid in enumerate(ev.slice_ids):
            rows.append(
                {
                    "source": ev.source,
                    "target": ev.target,
                    "route": ev.route,
                    "seed": "" if ev.seed is None else ev.seed,
                    "eps": eps_key(e),
                    "slice": sid,
                    "psnr_clean": round(float(ev.psnr_clean[b]), 6),
                    "ssim_clean": round(float(ev.ssim_clean[b]), 6),
                    "psnr": num(ev.psnr, j, b),
                    "ssim": num(ev.ssim, j, b),
                    "psnr_random": num(ev.psnr_rand, j, b),
                    "ssim_random": num(ev.ssim_rand, j, b),
                    "change_l2": num(ev.change, j, b),
                    "perturbation_l2": num(ev.meas_change, j, b),
                    "amplification": num(amp, j, b),
                    "amplification_random": num(amp_r, j, b),
                }
            )
    return rows


def transfer_matrix(
    table: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
    sources: Sequence[str],
    targets: Sequence[str],
    eps: float,
    key: str = "psnr_drop",
) -> np.ndarray:
    """``[len(sources), len(targets)]`` array of ``table[source][target][eps][key]`` (NaN
    where absent), from the ``metrics_transfer.json`` layout."""
    k = eps_key(eps)
    out = np.full((len(sources), len(targets)), np.nan)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            v = table.get(s, {}).get(t, {}).get(k, {}).get(key)
            if v is not None:
                out[i, j] = float(v)
    return out


# --------------------------------------------------------------------------------------------
# attack convergence


__all__ = [
    "Evaluation",
    "ROUTES",
    "attack_inputs",
    "evaluate",
    "evaluate_attack",
    "pending_keys",
    "per_slice_rows",
    "transfer_matrix",
]
