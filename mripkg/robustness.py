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

import hashlib
import json
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from . import metrics
from .attacks import (
    AttackCache,
    AttackResult,
    AttackSettings,
    EpsLike,
    as_eps,
    cached_attack,
    frozen,
    image_norm,
    image_route_measurement,
    item_seed,
    kspace_attack,
    random_control,
)
from .checkpoints import atomic_write_json, sha256_file
from .models.ddpm import DiffusionReconstructor, config_sampler_tag
from .physics import fft2c, undersample

#: Routes from a k-space perturbation to a target.  ``direct``: the perturbed measurement
#: ``M (k + delta)`` itself; ``image``: the authors' route to the diffusion model (the
#: perturbed image, min-max normalised and measured again, :func:`image_route_measurement`).
ROUTES = ("direct", "image")


# --------------------------------------------------------------------------------------------
# small helpers


def eps_key(eps: float) -> str:
    """The JSON key of an eps value: two decimals (``"0.04"``, ``"0.00"``), more digits only
    when two would round it (``"0.005"``)."""
    e = float(eps)
    s = f"{e:.2f}"
    return s if abs(float(s) - e) < 1e-12 else format(e, ".6g")


def spread_ids(n_have: int, n_want: int) -> list[int]:
    """``n_want`` indices evenly spread over ``0 .. n_have - 1`` (all of them if fewer)."""
    if n_have <= 0 or n_want <= 0:
        raise ValueError(f"need n_have > 0 and n_want > 0, got {n_have}, {n_want}")
    if n_want >= n_have:
        return list(range(n_have))
    return sorted({int(v) for v in np.linspace(0, n_have - 1, n_want).round()})


def merge_eps(*grids: EpsLike) -> list[float]:
    """Sorted union of eps grids (validated; values within 1e-9 count as one; empty grids
    are skipped)."""
    out: list[float] = []
    for g in grids:
        if isinstance(g, (list, tuple)) and not g:
            continue
        for e in as_eps(g).tolist():
            if not any(abs(e - o) < 1e-9 for o in out):
                out.append(e)
    return sorted(out)


def transfer_eps(profile: Any, extra: EpsLike = ()) -> list[float]:
    """The eps grid of the transfer experiment of a profile: the white-box grid, the diffusion
    eps, the route eps and ``extra`` (sorted union)."""
    a = profile.attack
    return merge_eps(a.eps_grid, a.diffusion_eps, [a.route_eps], extra)


def model_id(meta: Mapping[str, Any] | None) -> str:
    """12 hex digits of the sha256 of a model's weights (from its checkpoint sidecar); empty
    for a model without weights (zero-filled)."""
    sha = (meta or {}).get("sha256") or ""
    return str(sha)[:12]


def attack_settings(
    profile: Any, meta: Mapping[str, Any] | None, **overrides: Any
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


# --------------------------------------------------------------------------------------------
# slices


@dataclass
class SliceSet:
    """Ground-truth slices of one split with their ids, k-space and measurement.

    ``images`` real ``[B, 1, H, W]`` in [0, 1]; ``slice_ids`` their indices in the split;
    ``mask`` bool ``[W]``.  ``kspace = F x`` and ``y = M k`` are computed once.
    """

    split: str
    slice_ids: list[int]
    images: Tensor
    mask: Tensor
    kspace: Tensor = field(init=False, repr=False)
    y: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.slice_ids) != self.images.shape[0]:
            raise ValueError(f"{len(self.slice_ids)} ids for {self.images.shape[0]} images")
        self.slice_ids = [int(i) for i in self.slice_ids]
        self.kspace = fft2c(self.images)
        self.y = undersample(self.kspace, self.mask)

    def __len__(self) -> int:
        return len(self.slice_ids)

    def positions(self, ids: Sequence[int]) -> list[int]:
        """Positions of ``ids`` within this set (``KeyError`` for an id not in it)."""
        where = {s: i for i, s in enumerate(self.slice_ids)}
        missing = [i for i in ids if int(i) not in where]
        if missing:
            raise KeyError(f"slice ids {missing} not in this set {self.slice_ids}")
        return [where[int(i)] for i in ids]

    def take(self, ids: Sequence[int]) -> SliceSet:
        """The sub-set with the given slice ids (in that order)."""
        pos = self.positions(ids)
        return SliceSet(self.split, [self.slice_ids[p] for p in pos], self.images[pos], self.mask)


def slice_set(split: Any, mask: Tensor, n: int | None = None) -> SliceSet:
    """``n`` slices evenly spread over a :class:`mripkg.data.Split` (all when ``None``), ids =
    their index in the split."""
    total = len(split)
    ids = list(range(total)) if n is None else spread_ids(total, int(n))
    return SliceSet(split.name, ids, split.images[ids], mask)


# --------------------------------------------------------------------------------------------
# attacks


def run_whitebox(
    model: Callable[[Tensor, Tensor], Tensor],
    source: str,
    data: SliceSet,
    eps: EpsLike,
    settings: AttackSettings,
    *,
    profile: str,
    batch_size: int | None = 8,
    cache: AttackCache | None = None,
    progress: bool | None = None,
) -> AttackResult:
    """White-box attack of ``model`` on every (slice, eps) pair, through the attack cache
    (``runs/<profile>/attacks`` unless ``cache`` is given).  Returns ``[E, B]`` results."""
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
    )


def diffusion_settings(
    profile: Any, meta: Mapping[str, Any] | None, **overrides: Any
) -> AttackSettings:
    """Attack settings of the white-box diffusion attack: the profile's steps and ``lr_rel``,
    the objective labelled by the short sampler's step count, noise seed and number of noise
    draws (``profile.attack.diffusion_eot_samples``)."""
    a = profile.attack
    label = diffusion_objective_label(
        a.diffusion_steps, profile.seed, a.diffusion_eot_samples, config_sampler_tag(profile.ddpm)
    )
    return attack_settings(profile, meta, objective=label, **overrides)


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
    profile: str,
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
    profile: str,
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
    profile: str,
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
    return dt / (steps + 0.7) / k.shape[0]


# --------------------------------------------------------------------------------------------
# random controls


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


def subset_result(
    result: AttackResult,
    data: SliceSet,
    slice_ids: Sequence[int] | None = None,
    eps: EpsLike | None = None,
) -> AttackResult:
    """The part of ``result`` (over ``data``'s slices) for some slice ids and eps values."""
    pos = list(range(result.batch_size)) if slice_ids is None else data.positions(slice_ids)
    eps_l = result.eps.tolist() if eps is None else as_eps(eps).tolist()
    rows = [result.select(e) for e in eps_l]
    idx = torch.tensor(pos, dtype=torch.long)
    return AttackResult(
        eps=torch.cat([r.eps for r in rows]),
        delta=torch.cat([r.delta[:, idx] for r in rows]),
        y_adv=torch.cat([r.y_adv[:, idx] for r in rows]),
        rel_norm=torch.cat([r.rel_norm[:, idx] for r in rows]),
        best_damage=torch.cat([r.best_damage[:, idx] for r in rows]),
        best_step=torch.cat([r.best_step[:, idx] for r in rows]),
        loss_history=torch.cat([r.loss_history[:, :, idx] for r in rows], dim=1),
        meta=dict(result.meta),
    )


# --------------------------------------------------------------------------------------------
# reconstructions


def _y_digest(y1: Tensor) -> bytes:
    """sha256 of one measurement's values (``-0.0`` counted as ``0.0``)."""
    t = y1.detach().cpu().resolve_conj()
    t = (t + torch.zeros((), dtype=t.dtype)).contiguous()
    t = torch.view_as_real(t) if torch.is_complex(t) else t
    h = hashlib.sha256(str(t.dtype).encode() + str(tuple(t.shape)).encode())
    h.update(t.numpy().tobytes())
    return h.digest()


#: Format tag of the reconstruction cache's JSON sidecars.
RECON_FORMAT = "mripkg.recon/1"


class ReconCache:
    """Reconstructions on disk, one safetensors file per (target tag, measurement), each with a
    JSON sidecar (format, the sha256 of the tensor file, the key, shape and dtype).

    ``root/<name>/<key>.safetensors`` + ``<key>.json``; ``key`` hashes the target's tag (model
    weights, sampler steps, seed, sample, slice id) and the measurement's values.  Written
    atomically (tensor file first, sidecar last).  On load every entry is re-validated: the
    sidecar must be a JSON object of this format whose sha256, key, shape and dtype match, and
    the values must be finite; anything else is treated as absent (with a warning) and
    recomputed by :class:`Target`, never reused.  Entries written before the sidecars existed
    (a tensor file without ``.json``) are recomputed too, unless adopted with
    :meth:`adopt_legacy` (for a cache one trusts, e.g. one just made by a complete run).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, name: str, key: str) -> Path:
        return self.root / name / f"{key}.safetensors"

    def _problem(self, name: str, key: str, shape: Sequence[int] | None) -> tuple[str, Any]:
        """``(problem, tensor)``: problem ``""`` and the tensor when the entry is usable,
        ``"absent"`` when there is no tensor file, else a description."""
        p = self.path(name, key)
        if not p.is_file():
            return "absent", None
        side_path = p.with_suffix(".json")
        if not side_path.is_file():
            return "no sidecar (written by an older mripkg, or interrupted)", None
        try:
            side = json.loads(side_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"corrupt JSON sidecar ({exc})", None
        if not isinstance(side, dict):
            return f"sidecar is not a JSON object ({type(side).__name__})", None
        if side.get("format") != RECON_FORMAT:
            return f"unknown format {side.get('format')!r}", None
        if side.get("key") != key or side.get("name") != name:
            return f"sidecar is for {side.get('name')!r}/{side.get('key')!r}", None
        if sha256_file(p) != side.get("sha256"):
            return "sha256 does not match its sidecar (corrupt or replaced)", None
        return _check_recon_tensor(p, side.get("shape"), side.get("dtype"), shape)

    def load(self, name: str, key: str, shape: Sequence[int] | None = None) -> Tensor | None:
        """The stored reconstruction, or ``None`` when absent or not usable (a warning says
        why); ``shape``: the expected shape (e.g. ``[1, H, W]``)."""
        problem, x = self._problem(name, key, shape)
        if problem == "absent":
            return None
        if problem:
            warnings.warn(
                f"reconstruction cache {self.path(name, key)}: {problem}; recomputing",
                stacklevel=2,
            )
            return None
        return x

    def is_valid(self, name: str, key: str, shape: Sequence[int] | None = None) -> bool:
        """Whether :meth:`load` would return the entry (no warning)."""
        return self._problem(name, key, shape)[0] == ""

    def save(self, name: str, key: str, x: Tensor) -> None:
        """Store ``x`` (atomically: the tensor file, then its sidecar)."""
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"reconstruction {name}/{key} has non-finite values; not cached")
        p = self.path(name, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        t = x.detach().cpu().contiguous()
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file({"x": t}, tmp)
            digest = sha256_file(Path(tmp))
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        side = {
            "format": RECON_FORMAT,
            "name": name,
            "key": key,
            "sha256": digest,
            "shape": list(t.shape),
            "dtype": str(t.dtype).replace("torch.", ""),
        }
        atomic_write_json(p.with_suffix(".json"), side)

    def adopt_legacy(self, shape: Sequence[int] | None = None) -> dict[str, int]:
        """Give every entry without a sidecar (written by an older mripkg) one, after checking
        that it reads back as a finite float tensor ``x`` (of ``shape``, when given); unreadable
        or non-finite files are deleted.  Only for a cache one trusts: a file damaged in a way
        that keeps it finite (e.g. a zeroed block) cannot be told from a good one.  Returns
        ``{"adopted": n, "deleted": n}``."""
        counts = {"adopted": 0, "deleted": 0}
        for p in sorted(self.root.glob("*/*.safetensors")):
            if p.with_suffix(".json").is_file():
                continue
            problem, x = _check_recon_tensor(p, None, None, shape)
            if problem:
                p.unlink()
                counts["deleted"] += 1
                continue
            self.save(p.parent.name, p.stem, x)
            counts["adopted"] += 1
        return counts


def _check_recon_tensor(
    p: Path, side_shape: Any, side_dtype: Any, shape: Sequence[int] | None
) -> tuple[str, Any]:
    try:
        raw = load_file(str(p))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        return f"unreadable safetensors file ({exc})", None
    x = raw.get("x")
    if x is None or not x.is_floating_point():
        return "no float tensor 'x' in the file", None
    if side_shape is not None and list(x.shape) != side_shape:
        return f"shape {list(x.shape)} != the sidecar's {side_shape}", None
    if side_dtype is not None and str(x.dtype).replace("torch.", "") != side_dtype:
        return f"dtype {x.dtype} != the sidecar's {side_dtype}", None
    if shape is not None and tuple(x.shape) != tuple(shape):
        return f"shape {tuple(x.shape)} != the expected {tuple(shape)}", None
    if not bool(torch.isfinite(x).all()):
        return "non-finite values", None
    return "", x


class Target:
    """A model to evaluate, as a deterministic function of (measurements, slice ids).

    ``model(y, mask)`` for a deterministic model; for a :class:`DiffusionReconstructor` the
    full sampler with noise from (``seed``, slice id, ``sample``) (``seed=None``: the model's
    own).  Every reconstruction is remembered (``memo``) and, with a ``cache``, kept on disk;
    both are keyed by the measurement's values, so equal inputs give bit-identical outputs.
    ``weights_id`` (e.g. :func:`model_id`) goes into the disk key.
    """

    def __init__(
        self,
        name: str,
        model: Callable[[Tensor, Tensor], Tensor],
        mask: Tensor,
        *,
        seed: int | None = None,
        sample: int = 0,
        batch_size: int = 8,
        weights_id: str = "",
        cache: ReconCache | None = None,
        memo: bool = True,
    ) -> None:
        self.name = name
        self.model = model
        self.mask = mask
        self.stochastic = isinstance(model, DiffusionReconstructor)
        self.seed = (model.seed if seed is None else int(seed)) if self.stochastic else None
        self.sample = int(sample) if self.stochastic else 0
        self.batch_size = int(batch_size)
        self.weights_id = weights_id
        self.cache = cache
        self._memo: dict[str, Tensor] | None = {} if memo else None
        self.computed = 0  # reconstructions actually run (not from memo or disk)

    def with_seed(self, seed: int | None = None, sample: int = 0) -> Target:
        """The same target with other sampler noise (shares the disk cache, not the memo)."""
        return Target(
            self.name,
            self.model,
            self.mask,
            seed=seed,
            sample=sample,
            batch_size=self.batch_size,
            weights_id=self.weights_id,
            cache=self.cache,
            memo=self._memo is not None,
        )

    @property
    def tag(self) -> str:
        if self.stochastic:
            steps = getattr(self.model, "steps", "")
            tag = f"{self.name}|{self.weights_id}|steps={steps}|seed={self.seed}|s={self.sample}"
            extra = self.model.sampler_tag  # type: ignore[attr-defined]
            return f"{tag}|{extra}" if extra else tag  # "": the paper's sampler, older keys
        return f"{self.name}|{self.weights_id}"

    def key(self, y1: Tensor, slice_id: int) -> str:
        sid = f"|slice={int(slice_id)}" if self.stochastic else ""
        h = hashlib.sha256((self.tag + sid).encode())
        h.update(_y_digest(y1))
        return h.hexdigest()[:32]

    def _run(self, y: Tensor, ids: list[int]) -> Tensor:
        self.computed += y.shape[0]
        with torch.no_grad(), frozen(self.model):
            outs = []
            for i in range(0, y.shape[0], self.batch_size):
                yb, ib = y[i : i + self.batch_size], ids[i : i + self.batch_size]
                if self.stochastic:
                    outs.append(
                        self.model.reconstruct(  # type: ignore[attr-defined]
                            yb, self.mask, seed=self.seed, slice_ids=ib, sample=self.sample
                        )
                    )
                else:
                    outs.append(self.model(yb, self.mask))
            return torch.cat(outs)

    def __call__(self, y: Tensor, slice_ids: Sequence[int]) -> Tensor:
        """Reconstruct ``y [N, 1, H, W]`` (slice ``slice_ids[i]`` for row ``i``)."""
        ids = [int(s) for s in slice_ids]
        if len(ids) != y.shape[0]:
            raise ValueError(f"{len(ids)} slice ids for {y.shape[0]} measurements")
        if self._memo is None and self.cache is None:
            return self._run(y, ids)
        keys = [self.key(y[i], ids[i]) for i in range(len(ids))]
        out: list[Tensor | None] = []
        for k in keys:
            x = self._memo.get(k) if self._memo is not None else None
            if x is None and self.cache is not None:
                x = self.cache.load(self.name, k, tuple(y.shape[1:]))
            out.append(x)
        todo = [i for i, x in enumerate(out) if x is None]
        if todo:
            fresh = self._run(y[todo], [ids[i] for i in todo])
            for n, i in enumerate(todo):
                x = fresh[n].clone()
                if self.cache is not None:
                    self.cache.save(self.name, keys[i], x)
                    # the bits a re-run reads
                    again = self.cache.load(self.name, keys[i], tuple(y.shape[1:]))
                    x = again if again is not None else x
                out[i] = x
        for k, x in zip(keys, out, strict=True):
            if self._memo is not None:
                self._memo[k] = x  # type: ignore[assignment]
        return torch.stack(out)  # type: ignore[arg-type]

    def pending_keys(self, y: Tensor, slice_ids: Sequence[int]) -> set[str]:
        """Keys of the measurements that would have to be reconstructed (not remembered);
        union the sets of several calls to count shared inputs once."""
        out = set()
        for i, sid in enumerate(slice_ids):
            k = self.key(y[i], int(sid))
            hit = self._memo is not None and k in self._memo
            if not hit and self.cache is not None:
                hit = self.cache.is_valid(self.name, k, tuple(y.shape[1:]))
            if not hit:
                out.add(k)
        return out

    def pending(self, y: Tensor, slice_ids: Sequence[int]) -> int:
        """How many of these measurements would have to be reconstructed (not remembered)."""
        return len(self.pending_keys(y, slice_ids))

    def time_per_slice(self, data: SliceSet, n: int = 1) -> float:
        """Seconds per reconstruction, timed on ``n`` slices (bypasses memo and cache)."""
        t0 = time.perf_counter()
        self._run(data.y[:n], data.slice_ids[:n])
        self.computed -= n
        return (time.perf_counter() - t0) / n


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
    from .claims import whitebox_summary  # claims imports this module

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
    "ROUTES",
    "Evaluation",
    "ReconCache",
    "SliceSet",
    "Target",
    "attack_settings",
    "budget_controls",
    "attack_inputs",
    "budget_gap",
    "cached_grid",
    "control_deltas",
    "convergence",
    "convergence_check",
    "ConvergenceCheck",
    "StepSizeCheck",
    "step_size_check",
    "diffusion_objective_label",
    "diffusion_objective",
    "diffusion_settings",
    "eps_key",
    "evaluate",
    "evaluate_attack",
    "merge_eps",
    "missing_pairs",
    "model_id",
    "pending_keys",
    "per_slice_rows",
    "run_diffusion_whitebox",
    "run_whitebox",
    "short_vs_full_sampler",
    "slice_set",
    "spread_ids",
    "step_size_scores",
    "subset_result",
    "time_attack_step",
    "transfer_eps",
    "transfer_matrix",
]
