"""The attack cache: perturbations on disk keyed by (source, split, slice, eps, settings).

Stage: attacks.  Receives a model, k-space, mask, an eps grid and :class:`AttackSettings`;
hands on :class:`~mripkg.attacks.kspace.AttackResult` grids, computed once and reused.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..physics import kspace_norm
from .kspace import (
    NORM_RTOL,
    AttackResult,
    AttackSettings,
    EpsLike,
    ReconFn,
    _attack_flat,
    _check_kspace,
    _check_mask,
    _result_from_flat,
    _settings_meta,
    _u_shape,
    _validate_settings,
    as_eps,
    frozen,
    image_norm,
)
from .shards import MissingEntries, Shard

_SAFE = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _safe(name: str, what: str) -> str:
    s = str(name)
    if not _SAFE.match(s) or s in (".", ".."):
        raise ValueError(f"{what} {s!r} must match [A-Za-z0-9_.+-]+ (used in a file name)")
    return s


def item_seed(seed: int, slice_id: int | str, eps: float) -> int:
    """Seed of the random start of one (slice, eps) pair: independent of batching, so an
    interrupted cached run resumes from the same starts as an uninterrupted one (the results
    agree up to the batch-size effect described in :func:`kspace_attack`)."""
    blob = f"{int(seed)}|{slice_id}|{float(eps)!r}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


class AttackCache:
    """On-disk store of perturbations, one file pair per (source, split, slice, eps, settings).

    Layout: ``<root>/<source>/<split>/slice-<id>/eps-<eps>_<settings digest>.safetensors``
    plus a ``.json`` sidecar holding the settings, the key, the mask columns and ``||k||``
    (validated on load).  ``root`` defaults to ``runs/<profile>/attacks``.  ``source`` names the
    model the perturbation was crafted on (white-box), e.g. ``"irim"``; the model it is later
    evaluated on is not part of the key (the perturbation does not depend on it).
    """

    def __init__(self, profile: str, root: str | os.PathLike | None = None) -> None:
        self.profile = _safe(profile, "profile")
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        if self._root is None:
            from ..paths import run_dir

            self._root = run_dir(self.profile) / "attacks"
        return self._root

    def path(
        self, source: str, split: str, slice_id: int | str, eps: float, settings: AttackSettings
    ) -> Path:
        e = as_eps(eps)
        if e.numel() != 1:
            raise ValueError("one eps per cache entry")
        tag = format(float(e[0]), ".8g")
        return (
            self.root
            / _safe(source, "source")
            / _safe(split, "split")
            / f"slice-{_safe(str(slice_id), 'slice id')}"
            / f"eps-{tag}_{settings.digest()}.safetensors"
        )

    def load(
        self,
        source: str,
        split: str,
        slice_id: int | str,
        eps: float,
        settings: AttackSettings,
        kspace: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> AttackResult | None:
        """The cached result (``E = B = 1``), or ``None`` if absent or not usable.

        Every entry is re-validated on load, never trusted from its sidecar: the sha256 of the
        tensor file, the key, finite values, the eps stored in the file, a real ``delta`` (unless
        ``settings.complex_delta``) that is zero off the sampled columns, and the bound
        ``||M delta|| <= eps ||k||`` recomputed from ``delta`` itself.  With ``kspace`` (complex
        ``[1, 1, H, W]`` or ``[1, H, W]``) and ``mask`` given, ``||k||``, the shape, the mask and
        ``y_adv = M k + delta`` are checked against them (else ``||k||`` and the mask columns
        come from the sidecar).  A corrupt or inconsistent entry is treated as absent (with a
        warning naming the problem) and recomputed by :func:`cached_attack`, never reused.
        """
        p = self.path(source, split, slice_id, eps, settings)
        if not p.is_file() or not p.with_suffix(".json").is_file():
            return None
        try:
            res = AttackResult.load(p)
        except (ValueError, KeyError, OSError) as exc:
            warnings.warn(f"ignoring unreadable attack cache {p}: {exc}; recomputing", stacklevel=2)
            return None
        key = res.meta.get("key", {})
        want = self._key(source, split, slice_id, eps, settings)
        if key != want:
            problem: str | None = f"key {key} != {want}"
        else:
            problem = _entry_problem(res, float(as_eps(eps)[0]), settings, kspace, mask)
        if problem is not None:
            warnings.warn(f"attack cache {p} does not match ({problem}); recomputing", stacklevel=2)
            return None
        return res

    def is_valid(
        self,
        source: str,
        split: str,
        slice_id: int | str,
        eps: float,
        settings: AttackSettings,
        kspace: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> bool:
        """Whether :meth:`load` would return the entry (without the warnings)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.load(source, split, slice_id, eps, settings, kspace, mask) is not None

    def _key(
        self, source: str, split: str, slice_id: int | str, eps: float, settings: AttackSettings
    ) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "source": str(source),
            "split": str(split),
            "slice_id": str(slice_id),
            "eps": float(as_eps(eps)[0]),
            "settings": settings.to_dict(),
        }

    def save(
        self,
        result: AttackResult,
        source: str,
        split: str,
        slice_id: int | str,
        settings: AttackSettings,
        kspace: Tensor,
        mask: Tensor,
        batch: Sequence[tuple[int | str, float]] | None = None,
    ) -> Path:
        """Store a one-image, one-eps result (atomically); ``batch``: the (slice id, eps) pairs
        it was optimised together with (recorded in the sidecar, not part of the key)."""
        if result.n_eps != 1 or result.batch_size != 1:
            raise ValueError("cache entries hold one eps and one image")
        eps = float(result.eps[0])
        k = kspace.reshape(1, 1, *kspace.shape[-2:])
        extra: dict[str, Any] = {
            "key": self._key(source, split, slice_id, eps, settings),
            "shape": list(k.shape),
            "mask_columns": _mask_cols(mask),
            "kspace_norm": float(kspace_norm(k)[0]),
        }
        if batch is not None:
            extra["batch"] = [[str(sid), float(e)] for sid, e in batch]
        return result.save(self.path(source, split, slice_id, eps, settings), extra)

    def load_grid(
        self,
        source: str,
        split: str,
        slice_ids: Sequence[int | str],
        eps: EpsLike,
        settings: AttackSettings,
        kspace: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> AttackResult:
        """Assemble cached entries into ``[E, B]`` (``KeyError`` naming the first missing or
        corrupt one); no model needed, e.g. to transfer perturbations crafted on ``source`` to
        another model.  ``kspace`` (complex ``[B, 1, H, W]``) and ``mask``, when given, are
        checked against every entry (see :meth:`load`).
        """
        eps_t = as_eps(eps)
        if kspace is not None and kspace.shape[0] != len(slice_ids):
            raise ValueError(f"{len(slice_ids)} slice ids for {kspace.shape[0]} images")
        rows = []
        for e in eps_t.tolist():
            items = []
            for b, sid in enumerate(slice_ids):
                kb = kspace[b] if kspace is not None else None
                r = self.load(source, split, sid, e, settings, kb, mask)
                if r is None:
                    raise KeyError(
                        f"no cached attack for source={source!r} split={split!r} "
                        f"slice={sid!r} eps={e!r} settings={settings.digest()}"
                    )
                items.append(r)
            rows.append(AttackResult.concat(items, "batch"))
        return AttackResult.concat(rows, "eps")


def _mask_cols(mask: Tensor) -> list[int]:
    return torch.nonzero(mask.detach().cpu()).flatten().tolist()


def _entry_problem(
    res: AttackResult,
    eps: float,
    settings: AttackSettings,
    kspace: Tensor | None,
    mask: Tensor | None,
) -> str | None:
    """Why a loaded one-image, one-eps cache entry cannot be used (``None``: it can).

    Recomputes everything that can be recomputed from the tensors themselves (and from
    ``kspace`` / ``mask`` when given) instead of trusting the sidecar."""
    meta = res.meta
    shape = meta.get("shape")
    if kspace is not None:
        k = kspace.detach().cpu().reshape(1, 1, *kspace.shape[-2:])
        if list(k.shape) != shape:
            return f"shape {shape} != {list(k.shape)}"
    if not (isinstance(shape, list) and len(shape) == 4 and shape[:2] == [1, 1]):
        return f"no valid image shape in the sidecar ({shape!r})"
    img = (1, *shape)  # [E = 1, B = 1, 1, H, W]
    n_hist = int(settings.steps) + 1
    expect = {
        "eps": (1,),
        "delta": img,
        "y_adv": img,
        "rel_norm": (1, 1),
        "best_damage": (1, 1),
        "best_step": (1, 1),
        "loss_history": (n_hist, 1, 1),
    }
    for name, want_shape in expect.items():
        got = tuple(getattr(res, name).shape)
        if got != tuple(want_shape):
            return f"tensor {name} has shape {got}, expected {tuple(want_shape)}"
    for name in ("eps", "delta", "y_adv", "rel_norm", "best_damage", "loss_history"):
        t = getattr(res, name)
        t = torch.view_as_real(t) if torch.is_complex(t) else t
        if not bool(torch.isfinite(t).all()):
            return f"non-finite values in {name}"
    if not math.isclose(float(res.eps[0]), eps, rel_tol=1e-12, abs_tol=0.0):
        return f"eps in the file {float(res.eps[0])!r} != {eps!r}"
    delta = res.delta[0, 0]  # [1, H, W]
    if not settings.complex_delta and bool(delta.imag.ne(0).any()):
        return "a real perturbation with a non-zero imaginary part"
    cols = meta.get("mask_columns")
    if mask is not None and _mask_cols(mask) != cols:
        return "the mask differs"
    if not (isinstance(cols, list) and all(isinstance(c, int) for c in cols)):
        return "no valid mask columns in the sidecar"
    width = int(shape[-1])
    if any(c < 0 or c >= width for c in cols):
        return "mask columns out of range"
    off = torch.ones(width, dtype=torch.bool)
    off[cols] = False
    if bool(delta[..., off].ne(0).any()):
        return "the perturbation is non-zero off the sampled columns"
    side_kn = meta.get("kspace_norm")
    if not isinstance(side_kn, (int, float)) or not math.isfinite(side_kn):
        return f"no valid ||k|| in the sidecar ({side_kn!r})"
    kn = float(side_kn)
    if kspace is not None:
        kn = float(kspace_norm(k)[0])
        if not math.isclose(kn, float(side_kn), rel_tol=1e-4):
            return f"||k|| {side_kn} != {kn} (other data)"
    norm = float(image_norm(res.delta)[0, 0])  # recomputed in float64
    if norm > eps * kn * (1 + NORM_RTOL):
        return f"||M delta|| = {norm:.6g} exceeds eps ||k|| = {eps * kn:.6g}"
    if kn > 0 and not math.isclose(float(res.rel_norm[0, 0]), norm / kn, rel_tol=1e-5):
        return "the stored relative norm does not match the perturbation"
    if kspace is not None:
        m = torch.zeros(width, dtype=k.real.dtype)
        m[cols] = 1
        y_adv = (k * m)[0] + delta
        if not torch.allclose(res.y_adv[0, 0], y_adv, rtol=1e-6, atol=1e-7 * max(kn, 1e-30)):
            return "y_adv != M k + delta"
    return None


def cached_attack(
    model: ReconFn,
    kspace: Tensor,
    mask: Tensor,
    eps: EpsLike,
    *,
    profile: str,
    source: str,
    slice_ids: Sequence[int | str],
    split: str = "test",
    settings: AttackSettings | None = None,
    objective_model: ReconFn | None = None,
    batch_size: int | None = None,
    cache: AttackCache | None = None,
    progress: bool | None = None,
    require_cached: bool = False,
) -> AttackResult:
    """:func:`kspace_attack` with a per-(slice, eps) disk cache; the same ``[E, B]`` layout.

    ``kspace``: complex ``[B, 1, H, W]``; ``slice_ids``: ``B`` ids unique within ``split``;
    ``source``: name of ``model`` (the model attacked white-box).  The (slice, eps) pairs are
    cut into batches of ``batch_size`` (eps-major; all pairs when ``None``) fixed by the call;
    a batch with any pair missing from the cache, or corrupt there (see
    :meth:`AttackCache.load`), is attacked whole, and its missing pairs are saved as soon as it
    is done, so an interrupted run resumes and a repaired entry is bit-identical to the one an
    uninterrupted run of the same call made (same thread count).  The random start of each
    pair is drawn from :func:`item_seed` (``settings.seed``, slice id, eps), and a cached entry
    reloads bit-identically.  ``cache`` defaults to ``AttackCache(profile)``
    (``runs/<profile>/attacks``).  Returns CPU tensors (every entry is read back from disk, so
    a fresh and a cached call return the same bits).  Pairs are saved per chunk: give
    ``batch_size`` so that an interruption loses at most one chunk.

    ``require_cached=True`` (the merge of a sharded sweep, :func:`attack_shard`): attack
    nothing; a pair missing from the cache (or invalid there) raises
    :class:`~mripkg.attacks.shards.MissingEntries` naming its batches.
    """
    sweep = _Sweep(
        model, kspace, mask, eps, profile, source, slice_ids, split, settings,
        objective_model, batch_size, cache, progress,
    )  # fmt: skip
    todo = sweep.todo()
    if require_cached and todo:
        raise MissingEntries(
            f"{source}: batches {todo} of {len(sweep.batches)} (batch size {sweep.chunk}) have "
            f"(slice, eps) pairs missing from {sweep.cache.root}; run the shards that own them "
            "(batch k belongs to shard k mod n) before the merge"
        )
    sweep.attack(todo)
    return sweep.result()


def attack_shard(
    model: ReconFn,
    kspace: Tensor,
    mask: Tensor,
    eps: EpsLike,
    *,
    shard: Shard,
    profile: str,
    source: str,
    slice_ids: Sequence[int | str],
    split: str = "test",
    settings: AttackSettings | None = None,
    objective_model: ReconFn | None = None,
    batch_size: int | None = None,
    cache: AttackCache | None = None,
    progress: bool | None = None,
) -> list[int]:
    """Fill the cache with one shard of :func:`cached_attack`'s batches (same arguments): the
    batches ``k`` with ``k mod n == i`` for ``shard = i/n`` that have a pair missing.  Each is
    attacked whole, as in one process, so its entries are bit-identical to those one process
    writes.  Returns the numbers of the batches attacked here."""
    sweep = _Sweep(
        model, kspace, mask, eps, profile, source, slice_ids, split, settings,
        objective_model, batch_size, cache, progress,
    )  # fmt: skip
    todo = [k for k in sweep.todo() if shard.owns(k)]
    sweep.attack(todo)
    return todo


class _Sweep:
    """The (slice, eps) pairs of one cached attack, their batches and what the cache holds."""

    def __init__(
        self,
        model: ReconFn,
        kspace: Tensor,
        mask: Tensor,
        eps: EpsLike,
        profile: str,
        source: str,
        slice_ids: Sequence[int | str],
        split: str,
        settings: AttackSettings | None,
        objective_model: ReconFn | None,
        batch_size: int | None,
        cache: AttackCache | None,
        progress: bool | None,
    ) -> None:
        _check_kspace(kspace)
        _check_mask(mask, kspace.shape[-1])
        settings = settings or AttackSettings()
        _validate_settings(settings.steps, settings.lr, settings.lr_rel, settings.init_scale)
        if objective_model is not None and not settings.objective:
            raise ValueError("give settings.objective a label when an objective_model is used")
        if len(slice_ids) != kspace.shape[0]:
            raise ValueError(f"{len(slice_ids)} slice ids for {kspace.shape[0]} images")
        if len({str(s) for s in slice_ids}) != len(slice_ids):
            raise ValueError("slice ids must be unique")
        cache = cache or AttackCache(profile)
        if cache.profile != profile:
            raise ValueError(f"cache is for profile {cache.profile!r}, not {profile!r}")
        self.model, self.objective_model, self.progress = model, objective_model, progress
        self.kspace, self.mask, self.settings, self.cache = kspace, mask, settings, cache
        self.source, self.split, self.slice_ids = source, split, slice_ids
        self.eps_t = eps_t = as_eps(eps)
        self.grid: dict[tuple[int, int], AttackResult] = {}
        for j, e in enumerate(eps_t.tolist()):
            for b, sid in enumerate(slice_ids):
                r = cache.load(source, split, sid, e, settings, kspace[b], mask)
                if r is not None:
                    self.grid[(j, b)] = r
        # The batches are fixed by the call (all pairs, eps-major, cut every ``batch_size``),
        # not by what happens to be cached: a batch with any entry missing or corrupt is
        # recomputed whole, so a repaired entry is optimised together with the very same pairs
        # as in an uninterrupted run and comes out bit-identical (the pairs are independent
        # problems, but the batched network passes round differently for other batch
        # compositions).  The same holds for a batch attacked by a shard.
        pairs = [(j, b) for j in range(eps_t.shape[0]) for b in range(kspace.shape[0])]
        self.chunk = int(batch_size) if batch_size else len(pairs)
        self.batches = [pairs[i : i + self.chunk] for i in range(0, len(pairs), self.chunk)]

    def todo(self) -> list[int]:
        """Numbers of the batches with a pair missing from the cache."""
        return [k for k, part in enumerate(self.batches) if any(p not in self.grid for p in part)]

    def attack(self, todo: Sequence[int]) -> None:
        """Attack batches ``todo`` whole and save their missing pairs."""
        if not todo:
            return
        settings, kspace, eps_t, slice_ids = self.settings, self.kspace, self.eps_t, self.slice_ids
        cache, mask, grid = self.cache, self.mask, self.grid
        meta = _settings_meta(
            settings.steps,
            settings.lr,
            settings.lr_rel,
            settings.complex_delta,
            settings.init_scale,
            self.objective_model,
            settings.precision,
        )
        with frozen(self.model, self.objective_model):
            for k in todo:
                part = self.batches[k]
                bs = torch.tensor([b for _, b in part], device=kspace.device)
                flat_k = kspace[bs]
                flat_eps = torch.stack([eps_t[j] for j, _ in part])
                noise = torch.stack(
                    [
                        torch.randn(
                            _u_shape(flat_k[:1], settings.complex_delta)[1:],
                            generator=torch.Generator().manual_seed(
                                item_seed(settings.seed, slice_ids[b], float(eps_t[j]))
                            ),
                            dtype=kspace.real.dtype,
                        )
                        for j, b in part
                    ]
                ).to(kspace.device)
                out = _attack_flat(
                    self.model,
                    self.objective_model,
                    flat_k,
                    mask,
                    flat_eps,
                    noise,
                    steps=settings.steps,
                    lr=settings.lr,
                    lr_rel=settings.lr_rel,
                    complex_delta=settings.complex_delta,
                    init_scale=settings.init_scale,
                    batch_size=None,
                    progress=self.progress,
                    precision=settings.precision,
                )
                members = [(slice_ids[b], float(eps_t[j])) for j, b in part]
                for i, (j, b) in enumerate(part):
                    if (j, b) in grid:  # valid on disk: kept (bit-identical to the recomputed)
                        continue
                    one = {
                        k: (v[:, i : i + 1] if k == "history" else v[i : i + 1])
                        for k, v in out.items()
                    }
                    res = _result_from_flat(one, eps_t[j : j + 1], 1, dict(meta))
                    cache.save(
                        res, self.source, self.split, slice_ids[b], settings, kspace[b], mask,
                        members,
                    )  # fmt: skip
                    # reload so fresh and cached calls return the very same bits and metadata
                    loaded = cache.load(
                        self.source, self.split, slice_ids[b], float(eps_t[j]), settings,
                        kspace[b], mask,
                    )  # fmt: skip
                    grid[(j, b)] = loaded if loaded is not None else res

    def result(self) -> AttackResult:
        """The whole ``[E, B]`` grid (every pair must be in :attr:`grid`)."""
        rows = [
            AttackResult.concat([self.grid[(j, b)] for b in range(self.kspace.shape[0])], "batch")
            for j in range(self.eps_t.shape[0])
        ]
        return AttackResult.concat(rows, "eps")


__all__ = [
    "AttackCache",
    "attack_shard",
    "cached_attack",
    "item_seed",
]
