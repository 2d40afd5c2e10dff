"""Worst-case k-space perturbations (Eq. 5 of Han et al. 2024) and what the notebooks need
around them: a random control of the same norm, the amplification ratio, the authors' image
route to the diffusion model, and an on-disk cache.

The attack
----------
For a reconstructor ``f(y, mask) -> image`` (see :class:`mripkg.models.Reconstructor`), a clean
fully sampled k-space ``k`` and the measurement ``y = M k``, :func:`kspace_attack` solves ::

    maximise  || f(y + M delta) - f(y) ||_2^2     s.t.  || M delta ||_2 <= eps || k ||_2

per image (untargeted: away from the clean reconstruction, not from the ground truth) with Adam
on ``delta``, projecting back onto the relative L2 ball after every step and keeping, for each
image, the iterate with the largest damage.  Only the sampled columns of ``delta`` exist (the
others are exactly zero).  ``delta`` is real by default, as in the paper (a real tensor added to
complex k-space, i.e. it perturbs the real part only); ``complex_delta=True`` is a labelled
extension that perturbs both parts.

Step size
---------
With images in [0, 1] the budget per sampled k-space entry, ``b = eps ||k|| / sqrt(n)`` (``n``
the number of sampled *real* entries: ``H x n_columns``, twice that for a complex delta), is
about 0.01 at eps = 0.01, so the paper's absolute Adam learning rate 0.1 overshoots it ten-fold
and the projection turns every step into a normalised, sign-like step.  By default
(``lr=None``) the step is therefore *relative* to the per-entry budget: Adam optimises a
normalised variable ``u`` with ``delta = b_i u`` per image ``i`` and learning rate ``lr_rel``;
since an Adam step moves each entry by about ``lr``, the step in ``delta`` is about
``lr_rel * b_i``, the same fraction of the budget for every image and every eps.  In ``u`` the
constraint is the ball ``||M u|| <= sqrt(n)`` (the same for every image), and the gradient is
taken of the damage divided by ``b_i^2`` (a constant weight per image, so the maximiser is the
same; it keeps the gradient far above Adam's epsilon at the tiny random start and makes the run
invariant to the scale of ``k`` for a positively homogeneous model).  Passing a float ``lr``
(e.g. the paper's 0.1) instead optimises ``delta`` itself on the raw damage with that absolute
rate.

eps grid layout
---------------
``eps`` may be a float or a sequence / 1-D tensor of ``E`` values.  The batch of ``B`` images is
replicated once per eps and attacked in one run (chunked by ``batch_size`` if given); every
image-eps pair is an independent problem (the objective is a *sum* over pairs, and Adam is
element-wise).  Results always carry a leading eps axis: ``delta`` and ``y_adv`` are
``[E, B, 1, H, W]``, per-image numbers ``[E, B]``, ``loss_history`` ``[steps + 1, E, B]`` --
also for a scalar eps (``E = 1``).  ``result.select(e)`` picks one eps; ``result.eps`` holds the
values.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..io import _atomic_write_text, cache_key, sha256_file
from ..memory import release_memory
from ..physics import fft2c, ifft2c, kspace_norm
from ..profiles import Profile, progress_disabled

#: ``f(y, mask) -> image``: y complex ``[N, 1, H, W]``, mask bool ``[W]``,
#: image real ``[N, 1, H, W]``.
ReconFn = Callable[[Tensor, Tensor], Tensor]
#: One eps or a grid of them (relative L2 strengths, dimensionless).
EpsLike = float | int | Sequence[float] | Tensor | np.ndarray

#: Format tag written into every JSON sidecar.
FORMAT = "mripkg.attack/1"
#: Relative slack allowed between the achieved norm and the budget (float rounding).
NORM_RTOL = 1e-6
#: Sidecar fields that describe one cache entry, dropped when entries are joined.
_PER_ENTRY_META = ("key", "kspace_norm", "batch")
#: Largest eps accepted: ``||M delta|| <= eps ||k||`` with eps > 1 would allow a perturbation
#: larger than the whole k-space (a percentage passed as a fraction, e.g. 8 for 0.08).
MAX_EPS = 1.0


# --------------------------------------------------------------------------------------------
# validation


def as_eps(eps: EpsLike) -> Tensor:
    """Validate ``eps`` (a float, a sequence, or a 0-/1-D tensor or array) -> float64 ``[E]``.

    Raises ``ValueError`` naming the offending value for a negative, NaN or infinite eps, for
    eps > 1 (:data:`MAX_EPS`: more than the k-space norm itself), or for an empty grid.
    """
    if isinstance(eps, Tensor):
        if eps.ndim > 1:
            raise ValueError(f"eps must be a scalar or 1-D, got shape {tuple(eps.shape)}")
        values = eps.detach().cpu().to(torch.float64).reshape(-1).tolist()
    elif isinstance(eps, np.ndarray):
        if eps.ndim > 1:
            raise ValueError(f"eps must be a scalar or 1-D, got shape {eps.shape}")
        values = [float(v) for v in eps.reshape(-1)]
    elif isinstance(eps, (int, float, np.floating, np.integer)) and not isinstance(eps, bool):
        values = [float(eps)]
    elif isinstance(eps, Sequence) and not isinstance(eps, (str, bytes)):
        values = []
        for v in eps:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ValueError(f"eps values must be real numbers, got {v!r}")
            values.append(float(v))
    else:
        raise ValueError(f"eps must be a float or a sequence of floats, got {eps!r}")
    if not values:
        raise ValueError("eps grid is empty")
    for v in values:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"eps must be finite and >= 0, got {v!r}")
        if v > MAX_EPS:
            raise ValueError(
                f"eps must be <= {MAX_EPS:g} (a fraction of ||k||: 0.08 is 8 %), got {v!r}; "
                "a perturbation larger than the k-space itself is not a small perturbation "
                "(a percentage? divide by 100)"
            )
    return torch.tensor(values, dtype=torch.float64)


def _check_kspace(kspace: Tensor, name: str = "kspace") -> None:
    if not isinstance(kspace, Tensor) or not torch.is_complex(kspace):
        kind = kspace.dtype if isinstance(kspace, Tensor) else type(kspace).__name__
        raise ValueError(f"{name} must be a complex tensor [B, 1, H, W], got {kind}")
    if kspace.ndim != 4 or kspace.shape[1] != 1:
        raise ValueError(f"{name} must have shape [B, 1, H, W], got {tuple(kspace.shape)}")
    if not torch.isfinite(torch.view_as_real(kspace)).all():
        raise ValueError(f"{name} contains NaN or inf")


def _check_mask(mask: Tensor, width: int) -> None:
    if not isinstance(mask, Tensor) or mask.ndim != 1 or mask.dtype != torch.bool:
        desc = (mask.dtype, tuple(mask.shape)) if isinstance(mask, Tensor) else type(mask)
        raise ValueError(f"mask must be a 1-D bool tensor over columns, got {desc}")
    if mask.shape[0] != width:
        raise ValueError(f"mask has {mask.shape[0]} columns but k-space has {width}")
    if not bool(mask.any()):
        raise ValueError("mask samples no columns: there is nothing to perturb")


def image_norm(x: Tensor) -> Tensor:
    """L2 norm over the last three axes ``[..., C, H, W] -> [...]`` in float64 (complex ok)."""
    if torch.is_complex(x):
        x = torch.view_as_real(x).to(torch.float64)
        return x.pow(2).sum(dim=(-4, -3, -2, -1)).sqrt()
    return x.to(torch.float64).pow(2).sum(dim=(-3, -2, -1)).sqrt()


@contextlib.contextmanager
def frozen(*models: object) -> Iterator[None]:
    """Put ``nn.Module`` models in eval mode with frozen parameters; restore afterwards."""
    saved: list[tuple[list[tuple[nn.Module, bool]], list[tuple[Tensor, bool]]]] = []
    seen: set[int] = set()
    for m in models:
        if not isinstance(m, nn.Module) or id(m) in seen:
            continue
        seen.add(id(m))
        modes = [(mod, mod.training) for mod in m.modules()]
        grads = [(p, p.requires_grad) for p in m.parameters()]
        saved.append((modes, grads))
        m.eval()
        for p, _ in grads:
            p.requires_grad_(False)
    try:
        yield
    finally:
        for modes, grads in saved:
            for mod, training in modes:
                mod.training = training
            for p, req in grads:
                p.requires_grad_(req)


# --------------------------------------------------------------------------------------------
# result


@dataclass
class AttackResult:
    """Outcome of :func:`kspace_attack` for ``E`` eps values and ``B`` images.

    Attributes (``H, W`` pixels; k-space in the units of the orthonormal FFT of the image):

    * ``eps``: float64 ``[E]``, relative strengths;
    * ``delta``: complex ``[E, B, 1, H, W]``, the perturbation actually added to k-space (zero
      off the sampled columns; imaginary part exactly zero unless ``meta["complex_delta"]``);
    * ``y_adv``: complex ``[E, B, 1, H, W]``, the perturbed measurement ``M (k + delta)``
      (``== y`` exactly where eps = 0);
    * ``rel_norm``: float64 ``[E, B]``, achieved ``||M delta|| / ||k||`` (<= eps up to 1e-6
      relative);
    * ``best_damage``: float32 ``[E, B]``, ``||f(y + M delta) - f(y)||_2^2`` of the kept iterate
      (squared image intensity units, summed over pixels);
    * ``best_step``: int64 ``[E, B]``, index of the kept iterate (0 = the random start);
    * ``loss_history``: float32 ``[steps + 1, E, B]``, the damage of every iterate 0 .. steps
      (row 0 the tiny random start, row ``steps`` the final iterate); all zero where eps = 0;
    * ``meta``: JSON-serialisable settings (steps, lr mode, ...) and, for cached results, the
      cache key.
    """

    eps: Tensor
    delta: Tensor
    y_adv: Tensor
    rel_norm: Tensor
    best_damage: Tensor
    best_step: Tensor
    loss_history: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    _TENSORS = ("eps", "delta", "y_adv", "rel_norm", "best_damage", "best_step", "loss_history")
    _COMPLEX = ("delta", "y_adv")

    @property
    def n_eps(self) -> int:
        return int(self.eps.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.delta.shape[1])

    @property
    def final_damage(self) -> Tensor:
        """Damage of the last iterate, ``[E, B]``."""
        return self.loss_history[-1]

    def eps_index(self, eps: float) -> int:
        """Position of ``eps`` in :attr:`eps` (``KeyError`` if it is not in the grid)."""
        hits = torch.nonzero(
            torch.isclose(
                self.eps, torch.tensor(float(eps), dtype=torch.float64), rtol=1e-9, atol=1e-12
            )
        )
        if hits.numel() == 0:
            raise KeyError(f"eps {eps!r} not in this result's grid {self.eps.tolist()}")
        return int(hits[0, 0])

    def select(self, eps: float) -> AttackResult:
        """The result for one eps value (keeps the eps axis, ``E = 1``)."""
        j = self.eps_index(eps)
        return AttackResult(
            eps=self.eps[j : j + 1],
            delta=self.delta[j : j + 1],
            y_adv=self.y_adv[j : j + 1],
            rel_norm=self.rel_norm[j : j + 1],
            best_damage=self.best_damage[j : j + 1],
            best_step=self.best_step[j : j + 1],
            loss_history=self.loss_history[:, j : j + 1],
            meta=dict(self.meta),
        )

    @staticmethod
    def concat(results: Sequence[AttackResult], axis: str) -> AttackResult:
        """Join results along ``axis="batch"`` (same eps grid) or ``axis="eps"`` (same images).

        ``meta`` is taken from the first result, minus the per-entry cache fields (key,
        ``||k||``, the batch the entry was computed in).
        """
        if not results:
            raise ValueError("nothing to concatenate")
        if axis not in ("batch", "eps"):
            raise ValueError(f"axis must be 'batch' or 'eps', got {axis!r}")
        d = 1 if axis == "batch" else 0
        first = results[0]
        if axis == "batch":
            for r in results[1:]:
                if not torch.equal(r.eps, first.eps):
                    raise ValueError("cannot join along batch: eps grids differ")
            eps = first.eps
        else:
            eps = torch.cat([r.eps for r in results])
        meta = {k: v for k, v in first.meta.items() if k not in _PER_ENTRY_META}
        return AttackResult(
            eps=eps,
            delta=torch.cat([r.delta for r in results], d),
            y_adv=torch.cat([r.y_adv for r in results], d),
            rel_norm=torch.cat([r.rel_norm for r in results], d),
            best_damage=torch.cat([r.best_damage for r in results], d),
            best_step=torch.cat([r.best_step for r in results], d),
            loss_history=torch.cat([r.loss_history for r in results], d + 1),
            meta=meta,
        )

    def equal(self, other: AttackResult) -> bool:
        """Bit-identical tensors (dtype, shape and values; NaN-free data assumed)."""
        for name in self._TENSORS:
            a, b = getattr(self, name), getattr(other, name)
            if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
                return False
        return True

    def save(self, path: str | os.PathLike, extra_meta: dict[str, Any] | None = None) -> Path:
        """Write ``path`` (safetensors) and ``path.with_suffix('.json')`` (metadata and the
        sha256 of the tensor file), each atomically (temporary file + ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Tensor] = {}
        for name in self._TENSORS:
            t = getattr(self, name).detach().cpu()
            if name in self._COMPLEX:
                t = torch.view_as_real(t)
            tensors[name] = t.contiguous()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp)
            digest = sha256_file(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        side = {
            "format": FORMAT,
            "sha256": digest,
            "eps": self.eps.tolist(),
            "meta": {**self.meta, **(extra_meta or {})},
        }
        _atomic_write_text(path.with_suffix(".json"), json.dumps(side, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> AttackResult:
        """Read a result written by :meth:`save` (bit-identical); ``ValueError`` if the sidecar
        is missing or does not match the tensor file."""
        path = Path(path)
        side_path = path.with_suffix(".json")
        if not path.is_file() or not side_path.is_file():
            raise FileNotFoundError(f"attack result {path} or its sidecar {side_path.name} missing")
        try:
            side = json.loads(side_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{side_path}: corrupt JSON sidecar ({exc})") from exc
        if not isinstance(side, dict) or not isinstance(side.get("meta", {}), dict):
            raise ValueError(
                f"{side_path}: sidecar is not a JSON object with a 'meta' object "
                f"(found {type(side).__name__}): corrupt"
            )
        if side.get("format") != FORMAT:
            raise ValueError(f"{side_path}: unknown format {side.get('format')!r}")
        digest = sha256_file(path)
        if digest != side.get("sha256"):
            raise ValueError(f"{path}: sha256 does not match its sidecar (corrupt or replaced)")
        try:
            raw = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types
            raise ValueError(f"{path}: unreadable safetensors file ({exc})") from exc
        kw: dict[str, Any] = {}
        for name in cls._TENSORS:
            if name not in raw:
                raise ValueError(f"{path}: tensor {name!r} missing")
            t = raw[name]
            kw[name] = torch.view_as_complex(t.contiguous()) if name in cls._COMPLEX else t
        return cls(**kw, meta=side.get("meta", {}))


# --------------------------------------------------------------------------------------------
# the attack


def _u_shape(kspace: Tensor, complex_delta: bool) -> tuple[int, ...]:
    shape = tuple(kspace.shape)
    return (*shape, 2) if complex_delta else shape


def _delta_from_u(u: Tensor, scale: Tensor, m: Tensor, complex_delta: bool) -> Tensor:
    """``delta = scale_i * M u`` as a complex tensor ``[N, 1, H, W]`` (differentiable)."""
    if complex_delta:
        return torch.view_as_complex(u) * (scale.view(-1, 1, 1, 1) * m)
    d = u * (scale.view(-1, 1, 1, 1) * m)
    return torch.complex(d, torch.zeros_like(d))


def _attack_flat(
    model: ReconFn,
    objective_model: ReconFn | None,
    kspace: Tensor,
    mask: Tensor,
    eps: Tensor,
    noise: Tensor,
    *,
    steps: int,
    lr: float | None,
    lr_rel: float,
    complex_delta: bool,
    init_scale: float,
    batch_size: int | None,
    progress: bool | None,
    precision: str = "fp32",
) -> dict[str, Tensor]:
    """The attack on ``N`` independent (image, eps) pairs.

    ``kspace`` complex ``[N, 1, H, W]``; ``eps`` float64 ``[N]``; ``noise`` standard normal of
    the shape of ``u`` (``[N, 1, H, W]``, ``[N, 1, H, W, 2]`` if complex).  Returns flat tensors:
    ``delta``, ``y_adv`` ``[N, 1, H, W]``, ``rel_norm``, ``best_damage``, ``best_step`` ``[N]``,
    ``history`` ``[steps + 1, N]``.
    """
    n_items = kspace.shape[0]
    device = kspace.device
    rdtype = kspace.real.dtype
    model = in_precision(model, precision)
    if objective_model is not None:
        objective_model = in_precision(objective_model, precision)
    m = mask.to(device=device, dtype=rdtype)
    y = kspace * m
    n_entries = int(mask.sum()) * kspace.shape[-2] * kspace.shape[-3] * (2 if complex_delta else 1)
    knorm = kspace_norm(kspace).to(torch.float64)  # [N]
    budget = eps.to(device) * knorm  # ||M delta|| allowed, float64 [N]
    per_entry = budget / math.sqrt(n_entries)
    if lr is None:
        # optimise u = delta / per_entry (ball of radius sqrt(n) in u) and the damage in units
        # of per_entry^2: a constant weight per pair, so the maximiser is unchanged, but the
        # gradient no longer shrinks with eps ||k|| towards Adam's epsilon (1e-8), and the run
        # is invariant to the scale of k for a positively homogeneous model
        scale = per_entry
        radius = torch.full_like(budget, math.sqrt(n_entries))
        weight = 1.0 / per_entry.clamp_min(1e-150).pow(2)
        step = float(lr_rel)
    else:  # optimise delta itself on the raw damage (the paper's setting)
        scale = torch.ones_like(budget)
        radius = budget
        weight = torch.ones_like(budget)
        step = float(lr)
    init_std = init_scale * per_entry / scale.clamp_min(1e-300)

    out = {
        "delta": torch.zeros_like(kspace),
        "y_adv": y.clone(),
        "best_damage": torch.zeros(n_items, dtype=torch.float32, device=device),
        "best_step": torch.zeros(n_items, dtype=torch.int64, device=device),
        "history": torch.zeros(steps + 1, n_items, dtype=torch.float32, device=device),
    }
    active = torch.nonzero(budget > 0).flatten()  # zero budget: delta stays exactly zero
    chunk = int(batch_size) if batch_size else max(1, active.numel())
    chunks = [active[i : i + chunk] for i in range(0, active.numel(), chunk)]
    bar = tqdm(
        total=len(chunks) * steps, desc="k-space attack", disable=progress_disabled(progress)
    )
    mview = m if not complex_delta else m[:, None]
    try:
        for idx in chunks:
            y_c = y[idx]
            s_c = scale[idx].to(rdtype)
            r_c = radius[idx].to(rdtype)
            w_c = weight[idx].to(rdtype)
            bshape = (-1,) + (1,) * (len(noise.shape) - 1)
            u = noise[idx].to(device=device, dtype=rdtype) * mview
            u = (u * init_std[idx].to(rdtype).view(bshape)).requires_grad_(True)
            opt = torch.optim.Adam([u], lr=step, maximize=True)
            with torch.no_grad():
                f0 = model(y_c, mask)
                g0 = f0 if objective_model is None else objective_model(y_c, mask)
            best = torch.full((len(idx),), -math.inf, dtype=torch.float32, device=device)
            best_u = u.detach().clone()
            best_step = torch.zeros(len(idx), dtype=torch.int64, device=device)
            for t in range(steps + 1):
                last = t == steps
                with torch.set_grad_enabled(not last):
                    y_adv = y_c + _delta_from_u(u, s_c, m, complex_delta)
                    if objective_model is None:
                        obj = (model(y_adv, mask) - f0).pow(2).flatten(1).sum(1)
                        score = obj.detach().float()
                    else:
                        obj = None
                        if not last:
                            g = objective_model(y_adv, mask)
                            obj = (g - g0).pow(2).flatten(1).sum(1)
                        with torch.no_grad():
                            score = (model(y_adv.detach(), mask) - f0).pow(2).flatten(1).sum(1)
                            score = score.float()
                out["history"][t, idx] = score
                improved = score > best
                best = torch.where(improved, score, best)
                best_step = torch.where(improved, torch.full_like(best_step, t), best_step)
                keep = improved.view(bshape)
                best_u = torch.where(keep, u.detach(), best_u)
                if last:
                    break
                opt.zero_grad(set_to_none=True)
                assert obj is not None
                (obj * w_c).sum().backward()
                opt.step()
                with torch.no_grad():
                    dims = tuple(range(1, u.ndim))
                    norm = u.pow(2).sum(dims).sqrt()
                    factor = (r_c / norm.clamp_min(torch.finfo(rdtype).tiny)).clamp(max=1.0)
                    u.mul_(factor.view(bshape))
                bar.update(1)
            with torch.no_grad():
                delta = _delta_from_u(best_u, s_c, m, complex_delta)
                delta = _enforce_bound(delta, budget[idx])
            out["delta"][idx] = delta
            out["y_adv"][idx] = y_c + delta
            out["best_damage"][idx] = best
            out["best_step"][idx] = best_step
            del opt, u, best_u, y_adv, obj
            release_memory()  # this batch's autograd buffers back to the system
    finally:
        bar.close()
    out["rel_norm"] = torch.where(
        knorm > 0, image_norm(out["delta"]) / knorm.clamp_min(1e-300), torch.zeros_like(knorm)
    )
    return out


def _enforce_bound(delta: Tensor, budget: Tensor) -> Tensor:
    """Shrink any ``delta`` whose float64 norm exceeds ``budget`` by rounding (complex
    ``[N, 1, H, W]``, ``budget`` float64 ``[N]``)."""
    norm = image_norm(delta)
    over = norm > budget
    if not bool(over.any()):
        return delta
    factor = torch.where(over, budget / norm.clamp_min(1e-300) * (1 - 1e-7), torch.ones_like(norm))
    return delta * factor.to(delta.real.dtype).view(-1, 1, 1, 1)


ATTACK_PRECISIONS = ("fp32", "bf16")


def _check_precision(precision: str) -> None:
    if precision not in ATTACK_PRECISIONS:
        raise ValueError(f"attack precision must be one of {ATTACK_PRECISIONS}, got {precision!r}")


def in_precision(model: ReconFn, precision: str) -> ReconFn:
    """``model`` as the attack runs it: ``"fp32"`` unchanged; ``"bf16"``: every call under
    bfloat16 autocast on the input's device, the output cast back to float32 (the budget
    projection, the damage and every evaluation stay in float32)."""
    _check_precision(precision)
    if precision == "fp32":
        return model

    def run(y: Tensor, mask: Tensor) -> Tensor:
        with torch.autocast(y.device.type, dtype=torch.bfloat16):
            return model(y, mask).float()

    return run


def _validate_settings(
    steps: int, lr: float | None, lr_rel: float, init_scale: float, precision: str = "fp32"
) -> None:
    _check_precision(precision)
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be None or a positive finite float, got {lr!r}")
    if not (math.isfinite(lr_rel) and lr_rel > 0):
        raise ValueError(f"lr_rel must be a positive finite float, got {lr_rel!r}")
    if not (math.isfinite(init_scale) and init_scale > 0):
        raise ValueError(f"init_scale must be finite and > 0, got {init_scale!r}")


def _settings_meta(
    steps: int,
    lr: float | None,
    lr_rel: float,
    complex_delta: bool,
    init_scale: float,
    objective_model: ReconFn | None,
    precision: str = "fp32",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "steps": int(steps),
        "lr": None if lr is None else float(lr),
        "lr_rel": float(lr_rel),
        "lr_mode": "relative" if lr is None else "absolute",
        "complex_delta": bool(complex_delta),
        "init_scale": float(init_scale),
        "objective": "model" if objective_model is None else "objective_model",
    }
    if precision != "fp32":  # recorded only when used, as before the option existed
        meta["precision"] = precision
    return meta


def kspace_attack(
    model: ReconFn,
    kspace: Tensor,
    mask: Tensor,
    eps: EpsLike,
    steps: int = 100,
    lr: float | None = None,
    generator: torch.Generator | None = None,
    complex_delta: bool = False,
    *,
    lr_rel: float = 1.0,
    objective_model: ReconFn | None = None,
    init_scale: float = 1e-3,
    batch_size: int | None = None,
    progress: bool | None = None,
    precision: str = "fp32",
) -> AttackResult:
    """White-box k-space attack (Eq. 5) on ``B`` images for each of ``E`` eps values.

    Args:
        model: reconstructor ``f(y, mask) -> image`` (differentiable in ``y``); scores the
            damage and, unless ``objective_model`` is given, supplies the gradients.  An
            ``nn.Module`` is put in eval mode with frozen parameters for the attack (restored
            afterwards).
        kspace: clean fully sampled k-space ``k``, complex ``[B, 1, H, W]``; ``y = M k`` is
            formed inside.
        mask: bool ``[W]``, sampled columns.
        eps: relative L2 budget(s) ``||M delta|| <= eps ||k||``; float or ``E`` values.
        steps: projected Adam steps (``steps + 1`` iterates are scored).
        lr: ``None`` (default): step relative to the per-entry budget, see ``lr_rel`` and the
            module docstring; a float: absolute Adam learning rate on ``delta`` (paper: 0.1).
        generator: source of the tiny Gaussian start (the default torch RNG if ``None``); the
            same seed gives identical results.
        complex_delta: perturb real and imaginary parts (extension); default real ``delta``.
        lr_rel: Adam step in units of the per-entry budget ``eps ||k|| / sqrt(n)`` (used when
            ``lr is None``; the profiles' ``AttackConfig.lr_rel``).
        objective_model: optional differentiable stand-in used for the gradients (e.g. a short
            fixed-noise sampler of a stochastic model); ``model`` still scores the iterates and
            picks the best one (one extra forward of ``model`` per step, without grad).
        init_scale: norm of the random start relative to the budget (about ``init_scale * eps
            ||k||``); it must be non-zero because the damage has zero gradient at ``delta = 0``.
        batch_size: at most this many (image, eps) pairs per optimisation run (memory).  The
            pairs are optimised independently, so the result depends on it only through float
            rounding in the batched network passes, but 100 Adam steps can amplify that: at the
            quick profile, batches of 8 instead of 16 moved the mean white-box PSNR by up to
            0.04 dB (mean over 16 slices per eps).  Same batch size, same numbers.
        progress: tqdm bar; ``None`` = only on a terminal and never when ``$CI`` is set.
        precision: ``"fp32"`` or ``"bf16"``: the model's forward and backward passes of the
            optimisation under bfloat16 autocast (:func:`in_precision`; 1.3-2x faster on a CPU
            with AVX512-BF16, the same damage to within a few per cent at the quick profile).

    Returns:
        :class:`AttackResult` with a leading eps axis (``E = 1`` for a scalar eps), tensors on
        ``kspace``'s device (``eps`` on the CPU).  ``f(y)`` is computed once per chunk, without
        gradients.  Pairs with
        eps = 0 (or an all-zero image) are not optimised: ``delta`` is exactly zero, ``y_adv``
        equals ``y``, and their damage is reported as 0.
    """
    _check_kspace(kspace)
    _check_mask(mask, kspace.shape[-1])
    _validate_settings(steps, lr, lr_rel, init_scale, precision)
    eps_t = as_eps(eps)
    n_eps, n_img = eps_t.shape[0], kspace.shape[0]
    flat_k = kspace.unsqueeze(0).expand(n_eps, *kspace.shape).reshape(-1, *kspace.shape[1:])
    flat_eps = eps_t.repeat_interleave(n_img)
    shape = _u_shape(flat_k, complex_delta)
    if generator is None:
        noise = torch.randn(shape, dtype=kspace.real.dtype, device=kspace.device)
    else:
        noise = torch.randn(
            shape, generator=generator, dtype=kspace.real.dtype, device=generator.device
        ).to(kspace.device)
    with frozen(model, objective_model):
        out = _attack_flat(
            model,
            objective_model,
            flat_k,
            mask,
            flat_eps,
            noise,
            steps=int(steps),
            lr=lr,
            lr_rel=lr_rel,
            complex_delta=complex_delta,
            init_scale=init_scale,
            batch_size=batch_size,
            progress=progress,
            precision=precision,
        )
    meta = _settings_meta(steps, lr, lr_rel, complex_delta, init_scale, objective_model, precision)
    return _result_from_flat(out, eps_t, n_img, meta)


def _result_from_flat(
    out: dict[str, Tensor], eps: Tensor, n_img: int, meta: dict[str, Any]
) -> AttackResult:
    n_eps = eps.shape[0]
    img = out["delta"].shape[1:]
    return AttackResult(
        eps=eps.clone(),
        delta=out["delta"].reshape(n_eps, n_img, *img),
        y_adv=out["y_adv"].reshape(n_eps, n_img, *img),
        rel_norm=out["rel_norm"].reshape(n_eps, n_img),
        best_damage=out["best_damage"].reshape(n_eps, n_img),
        best_step=out["best_step"].reshape(n_eps, n_img),
        loss_history=out["history"].reshape(-1, n_eps, n_img),
        meta=meta,
    )


# --------------------------------------------------------------------------------------------
# controls and diagnostics


def amplification(
    model: ReconFn,
    y: Tensor,
    delta_masked: Tensor,
    mask: Tensor,
    clean: Tensor | None = None,
) -> Tensor:
    """Error amplification ``||f(y + M delta) - f(y)|| / ||F^-1 M delta||`` per image.

    ``y``: measurement, complex ``[B, 1, H, W]``; ``delta_masked``: ``[B, 1, H, W]`` or with a
    leading eps axis ``[E, B, 1, H, W]`` (the mask is applied again, idempotently); ``clean``:
    optional precomputed ``f(y)`` ``[B, 1, H, W]``.  By Parseval ``||F^-1 M delta|| = ||M
    delta||``.  Returns float64 ``[B]`` or ``[E, B]`` (dimensionless; NaN where delta = 0).
    Runs without gradients.
    """
    _check_kspace(y, "y")
    _check_mask(mask, y.shape[-1])
    if delta_masked.shape[-4:] != y.shape:
        raise ValueError(
            f"delta shape {tuple(delta_masked.shape)} does not end in y's {tuple(y.shape)}"
        )
    lead = delta_masked.shape[:-4]
    m = mask.to(device=y.device, dtype=y.real.dtype)
    d = delta_masked.to(y.device) * m
    if not torch.is_complex(d):
        d = torch.complex(d, torch.zeros_like(d))
    d = d.to(y.dtype)
    with torch.no_grad(), frozen(model):
        f0 = model(y, mask) if clean is None else clean
        y_pert = (y + d).reshape(-1, *y.shape[1:])
        f1 = model(y_pert, mask).reshape(*lead, *f0.shape)
        num = image_norm(f1 - f0)
    den = image_norm(ifft2c(d))
    return num / den


def image_route_measurement(kspace: Tensor, delta: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The authors' route from a k-space perturbation to the diffusion model.

    ``x' = normalise(Re F^-1 (k + M delta))`` (min-max to [0, 1] per image), measured again:
    ``y' = M F x'``.  ``kspace``: complex ``[B, 1, H, W]``; ``delta``: ``[B, 1, H, W]`` or
    ``[E, B, 1, H, W]`` (real or complex; masked here).  Returns ``(y', x')``: complex and real
    tensors of ``delta``'s leading shape.  With ``delta = 0`` this gives the matching clean
    input (not bit-identical to ``M k``: the real part and the normalisation are applied too),
    so compare the perturbed route against the clean route, not against ``M k``.
    """
    _check_kspace(kspace)
    _check_mask(mask, kspace.shape[-1])
    if delta.shape[-4:] != kspace.shape:
        raise ValueError(
            f"delta shape {tuple(delta.shape)} does not end in kspace's {tuple(kspace.shape)}"
        )
    m = mask.to(device=kspace.device, dtype=kspace.real.dtype)
    x = ifft2c(kspace + delta.to(kspace.device) * m).real
    flat = x.flatten(-3)
    lo = flat.min(-1).values[..., None, None, None]
    hi = flat.max(-1).values[..., None, None, None]
    x_norm = (x - lo) / (hi - lo).clamp_min(1e-12)
    y_new = fft2c(x_norm) * m
    return y_new, x_norm


# --------------------------------------------------------------------------------------------
# cache


@dataclass(frozen=True)
class AttackSettings:
    """Everything besides the data, the source model and eps that determines a perturbation.

    ``objective``: a label of the ``objective_model`` (e.g. ``"fixed-noise-10"``); empty when the
    source model's own gradients are used.  ``model_id``: e.g. the sha256 of the source
    model's weights, so that retrained weights do not reuse old perturbations.
    """

    steps: int = 100
    lr: float | None = None
    lr_rel: float = 1.0
    seed: int = 0
    complex_delta: bool = False
    init_scale: float = 1e-3
    objective: str = ""
    model_id: str = ""
    precision: str = "fp32"  # of the attack's network passes (:func:`in_precision`)
    # continuation along the eps grid and the plateau stop (:mod:`mripkg.attacks.protocols`):
    # the eps ladder solved in order, the steps of a warm-started level, the stop rule
    ladder: tuple[float, ...] = ()
    warm_steps: int = 0
    patience: int = 0
    min_gain: float = 0.0
    protocol: str = ""  # "authors-v1": the authors' protocol (PAPER.md addendum)

    #: fields left out of the key while at their default, so that older caches stay valid
    _OPTIONAL: ClassVar[dict[str, Any]] = {
        "precision": "fp32",
        "ladder": [],
        "warm_steps": 0,
        "patience": 0,
        "min_gain": 0.0,
        "protocol": "",
    }

    def __post_init__(self) -> None:
        _check_precision(self.precision)
        object.__setattr__(self, "ladder", tuple(float(e) for e in self.ladder))
        if int(self.warm_steps) != self.warm_steps or self.warm_steps < 0:
            raise ValueError(f"warm_steps must be an integer >= 0, got {self.warm_steps!r}")
        if int(self.patience) != self.patience or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")
        if not (math.isfinite(self.min_gain) and self.min_gain >= 0):
            raise ValueError(f"min_gain must be finite and >= 0, got {self.min_gain!r}")
        if list(self.ladder) != sorted(set(self.ladder)) or any(e < 0 for e in self.ladder):
            raise ValueError(f"ladder must be increasing eps >= 0, got {self.ladder!r}")

    @classmethod
    def from_profile(cls, profile: Profile, **overrides: Any) -> AttackSettings:
        """Steps, ``lr_rel`` and seed from a :class:`mripkg.profiles.Profile`."""
        base = {
            "steps": profile.attack.steps,
            "lr_rel": profile.attack.lr_rel,
            "seed": profile.seed,
            "precision": profile.attack.precision,
            "patience": getattr(profile.attack, "patience", 0),
            "min_gain": getattr(profile.attack, "min_gain", 0.0),
            "protocol": getattr(profile.attack, "protocol", ""),
            "lr": getattr(profile.attack, "lr", None),
            "init_scale": getattr(profile.attack, "init_scale", 1e-3),
        }
        if getattr(profile.attack, "continuation", False):
            base["ladder"] = tuple(e for e in profile.attack.eps_grid if e > 0)
            base["warm_steps"] = profile.attack.warm_steps
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ladder"] = list(d["ladder"])
        for k, default in self._OPTIONAL.items():
            if d[k] == default:  # as before the field existed: older caches stay valid
                del d[k]
        return d

    def digest(self) -> str:
        """12 hex digits identifying these settings (part of the cache file name):
        :func:`mripkg.io.cache_key` of :meth:`to_dict` (the digest it always was)."""
        return cache_key(self.to_dict(), length=12)


__all__ = [
    "AttackResult",
    "AttackSettings",
    "EpsLike",
    "ReconFn",
    "amplification",
    "as_eps",
    "frozen",
    "image_norm",
    "image_route_measurement",
    "in_precision",
    "kspace_attack",
]
