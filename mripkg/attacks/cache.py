"""The attack cache: perturbations on disk keyed by (source, split, slice, eps, settings).

Stage: attacks.  Receives a model, k-space, mask, an eps grid and :class:`AttackSettings`;
hands on :class:`~mripkg.attacks.kspace.AttackResult` grids, computed once and reused.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..physics import kspace_norm
from ..profiles import Profile, check_profile, progress_disabled
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
from .protocols import (
    CONTINUATION_VERSION,
    _close,
    _flat_pairs,
    _u_from_result,
    is_authors,
    ladder_levels,
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

    def __init__(self, profile: Profile, root: str | os.PathLike | None = None) -> None:
        #: the profile's name: the folder ``runs/<name>/attacks`` and part of every key
        self.profile_name = _safe(check_profile(profile).name, "profile")
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        if self._root is None:
            from ..paths import run_dir

            self._root = run_dir(self.profile_name) / "attacks"
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
            "profile": self.profile_name,
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
    profile: Profile,
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
    if settings is not None and (settings.ladder or settings.patience or settings.protocol):
        # continuation, plateau stop or the authors' protocol: keyed by those fields, so they
        # must run them (:mod:`.protocols`), never the plain attack under their key
        if objective_model is not None:
            raise ValueError(
                "continuation, plateau-stop or protocol settings cannot use an objective_model; "
                "clear ladder, warm_steps, patience and protocol for this attack"
            )
        if require_cached:
            raise ValueError("require_cached (sharded sweeps) is not supported for these settings")
        return cached_protocol_attack(
            model,
            kspace,
            mask,
            eps,
            profile=profile,
            source=source,
            slice_ids=slice_ids,
            split=split,
            settings=settings,
            batch_size=batch_size,
            cache=cache or AttackCache(profile),
            progress=progress,
        )
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
    profile: Profile,
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
        profile: Profile,
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
        if cache.profile_name != check_profile(profile).name:
            raise ValueError(f"cache is for profile {cache.profile_name!r}, not {profile.name!r}")
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


# --------------------------------------------------------------------------------------------
# continuation and the authors' protocol through the cache (:mod:`.protocols`)


def _noise(
    settings: AttackSettings, slice_id: int | str, eps: float, shape: Sequence[int]
) -> Tensor:
    g = torch.Generator().manual_seed(item_seed(settings.seed, slice_id, float(eps)))
    return torch.randn(tuple(shape), generator=g)


def cached_protocol_attack(
    model: ReconFn,
    kspace: Tensor,
    mask: Tensor,
    eps: EpsLike,
    *,
    profile: Profile,
    source: str,
    slice_ids: Sequence[int | str],
    split: str = "test",
    settings: AttackSettings,
    batch_size: int | None = None,
    cache: AttackCache | None = None,
    progress: bool | None = None,
) -> AttackResult:
    """:func:`mripkg.attacks.cached_attack` for continuation or authors'-protocol ``settings``
    (the same ``[E, B]`` result, the same cache).  Pairs are attacked per eps level in
    batches of ``batch_size`` slices (all when ``None``) and saved as soon as their batch is
    done, so an interruption loses at most one batch; a continuation level needs the level
    below it, which is loaded from the cache or computed first."""
    _check_kspace(kspace)
    _check_mask(mask, kspace.shape[-1])
    if settings.complex_delta:
        raise ValueError("continuation and the authors' protocol use a real delta")
    if len(slice_ids) != kspace.shape[0]:
        raise ValueError(f"{len(slice_ids)} slice ids for {kspace.shape[0]} images")
    if len({str(s) for s in slice_ids}) != len(slice_ids):
        raise ValueError("slice ids must be unique")
    cache = cache or AttackCache(profile)
    if cache.profile_name != check_profile(profile).name:
        raise ValueError(f"cache is for profile {cache.profile_name!r}, not {profile.name!r}")
    eps_t = as_eps(eps)
    # levels to solve, in increasing order: every requested eps and the ladder below it
    levels: list[float] = []
    for e in eps_t.tolist():
        for lev in ladder_levels(settings, e) if e > 0 else [0.0]:
            if not any(_close(lev, x) for x in levels):
                levels.append(lev)
    levels.sort()
    on_ladder = [float(e) for e in settings.ladder if e > 0]
    meta = _settings_meta(
        settings.steps,
        settings.lr,
        settings.lr_rel,
        False,
        settings.init_scale,
        None,
        settings.precision,
    )
    meta.update(_protocol_meta(settings))
    n_img = kspace.shape[0]
    shape = (1, *kspace.shape[1:])
    chunk = int(batch_size) if batch_size else n_img
    grid: dict[tuple[float, int], AttackResult] = {}

    def get(e: float, b: int) -> AttackResult | None:
        if (e, b) not in grid:
            r = cache.load(source, split, slice_ids[b], e, settings, kspace[b], mask)
            if r is not None:
                grid[(e, b)] = r
        return grid.get((e, b))

    def warm_from(e: float) -> float | None:
        pos = [i for i, x in enumerate(on_ladder) if _close(x, e)]
        if is_authors(settings) or not pos or pos[0] == 0:
            return None
        return on_ladder[pos[0] - 1]

    def level_steps(e: float) -> int:
        if e == 0:
            return 0
        return (settings.warm_steps or settings.steps) if warm_from(e) else settings.steps

    todo = {e: [b for b in range(n_img) if get(e, b) is None] for e in levels}
    bar = tqdm(
        total=sum(level_steps(e) * len(bs) for e, bs in todo.items()),
        desc=f"attack {source}",
        disable=progress_disabled(progress),
    )
    try:
        with frozen(model):
            for e in levels:
                prev = warm_from(e)
                for i in range(0, len(todo[e]), chunk):
                    part = todo[e][i : i + chunk]
                    if e == 0:
                        out = _zero_flat(kspace[part], mask, settings.steps)
                    else:
                        warm_u = None
                        if prev is not None:
                            below = [get(prev, b) for b in part]
                            if any(r is None for r in below):
                                raise RuntimeError(f"continuation level {prev} missing below {e}")
                            warm_u = torch.cat(
                                [
                                    _u_from_result(r, kspace[b], mask)
                                    for r, b in zip(below, part, strict=True)
                                    if r is not None
                                ]
                            )
                        noise = torch.cat([_noise(settings, slice_ids[b], e, shape) for b in part])
                        t_cpu = time.process_time()
                        out = _flat_pairs(
                            model,
                            kspace[part],
                            mask,
                            torch.full((len(part),), e, dtype=torch.float64),
                            noise.to(kspace.device),
                            settings,
                            steps=level_steps(e),
                            warm_u=warm_u,
                            bar=bar,
                        )
                        out["cpu_s"] = torch.full((len(part),), time.process_time() - t_cpu)
                        out["cpu_s"] /= len(part)
                    members = [(slice_ids[b], e) for b in part]
                    for j, b in enumerate(part):
                        one = {
                            k: (v[:, j : j + 1] if k == "history" else v[j : j + 1])
                            for k, v in out.items()
                            if k not in ("steps_used", "full_rel_norm", "u", "cpu_s")
                        }
                        hist = one["history"]
                        if hist.shape[0] < settings.steps + 1:  # a warm level: pad
                            pad = hist[-1:].expand(settings.steps + 1 - hist.shape[0], -1)
                            one["history"] = torch.cat([hist, pad])
                        entry_meta = {
                            **meta,
                            "steps_used": int(out["steps_used"][j]),
                            "warm_from": prev,
                            "full_rel_norm": float(out["full_rel_norm"][j]),
                            # process CPU time of its batch / batch size (all threads)
                            "cpu_s": float(out["cpu_s"][j]) if "cpu_s" in out else 0.0,
                        }
                        one = {k: v.cpu() for k, v in one.items()}
                        res = _result_from_flat(
                            one, torch.tensor([e], dtype=torch.float64), 1, entry_meta
                        )
                        sid = slice_ids[b]
                        cache.save(res, source, split, sid, settings, kspace[b], mask, members)
                        loaded = cache.load(source, split, sid, e, settings, kspace[b], mask)
                        grid[(e, b)] = loaded if loaded is not None else res
    finally:
        bar.close()
    rows = []
    for e in eps_t.tolist():
        lev = next(x for x in levels if _close(x, e))
        rows.append(AttackResult.concat([grid[(lev, b)] for b in range(n_img)], "batch"))
    return AttackResult.concat(rows, "eps")


def _zero_flat(kspace: Tensor, mask: Tensor, steps: int) -> dict[str, Tensor]:
    """eps = 0: no perturbation, zero damage (as the plain attack reports it)."""
    n = kspace.shape[0]
    y = kspace * mask.to(device=kspace.device, dtype=kspace.real.dtype)
    z = torch.zeros(n, dtype=torch.float64)
    return {
        "delta": torch.zeros_like(y),
        "y_adv": y,
        "rel_norm": z,
        "best_damage": torch.zeros(n),
        "best_step": torch.zeros(n, dtype=torch.int64),
        "history": torch.zeros(steps + 1, n),
        "steps_used": torch.zeros(n, dtype=torch.int64),
        "full_rel_norm": z,
    }


def _protocol_meta(settings: AttackSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"patience": int(settings.patience), "min_gain": float(settings.min_gain)}
    if settings.ladder:
        out["ladder"] = [float(e) for e in settings.ladder]
        out["warm_steps"] = int(settings.warm_steps)
        out["continuation_version"] = CONTINUATION_VERSION
    if settings.protocol:
        out["protocol"] = settings.protocol
    return out


def steps_used(
    cache: AttackCache,
    source: str,
    split: str,
    slice_ids: Sequence[int | str],
    eps: EpsLike,
    settings: AttackSettings,
) -> Tensor:
    """Adam steps each cached pair ran, ``[E, B]`` int64 (``settings.steps`` for an entry
    written without a plateau stop; 0 at eps = 0)."""
    rows = []
    for e in as_eps(eps).tolist():
        row = []
        for sid in slice_ids:
            if e == 0:
                row.append(0)
                continue
            r = cache.load(source, split, sid, e, settings)
            if r is None:
                raise KeyError(f"no cached attack for {source} {split} slice {sid} eps {e}")
            row.append(int(r.meta.get("steps_used", settings.steps)))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int64)


__all__ = [
    "cached_protocol_attack",
    "steps_used",
    "AttackCache",
    "attack_shard",
    "cached_attack",
    "item_seed",
]
