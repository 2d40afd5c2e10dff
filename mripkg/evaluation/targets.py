"""Reconstruction targets: a model wrapped with a per-measurement cache (memory and disk).

Stage: evaluation.  Receives measurements ``y [B, 1, H, W]`` and slice ids; hands on
reconstructions, bit-identical for a measurement seen twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from ..attacks.kspace import (
    frozen,
)
from ..io import atomic_write_json, cache_key, legacy_cache_key, save_safetensors, sha256_file
from ..models.ddpm import DiffusionReconstructor
from .selection import SliceSet


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

    ``root/<name>/<key>.safetensors`` + ``<key>.json``; ``key`` (:func:`mripkg.io.cache_key`)
    hashes the target's tag (model weights, sampler steps, seed, sample, slice id) and the
    measurement's values; an entry under the old key scheme still reads (``legacy``,
    :meth:`resolve`).  Written
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

    def resolve(self, name: str, key: str, legacy: str | None = None) -> str:
        """``key``, or ``legacy`` (the entry's key under the cache's old scheme,
        :func:`mripkg.io.legacy_cache_key`) when only the old entry is on disk."""
        if legacy is not None and not self.path(name, key).is_file():
            if self.path(name, legacy).is_file():
                return legacy
        return key

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

    def load(
        self,
        name: str,
        key: str,
        shape: Sequence[int] | None = None,
        legacy: str | None = None,
    ) -> Tensor | None:
        """The stored reconstruction, or ``None`` when absent or not usable (a warning says
        why); ``shape``: the expected shape (e.g. ``[1, H, W]``); ``legacy``: the entry's key
        under the old scheme, read when no entry has ``key`` (:meth:`resolve`)."""
        key = self.resolve(name, key, legacy)
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

    def is_valid(
        self,
        name: str,
        key: str,
        shape: Sequence[int] | None = None,
        legacy: str | None = None,
    ) -> bool:
        """Whether :meth:`load` would return the entry (no warning)."""
        return self._problem(name, self.resolve(name, key, legacy), shape)[0] == ""

    def save(self, name: str, key: str, x: Tensor) -> None:
        """Store ``x`` (atomically: the tensor file, then its sidecar)."""
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"reconstruction {name}/{key} has non-finite values; not cached")
        p = self.path(name, key)
        t = x.detach().cpu().contiguous()
        digest = save_safetensors(p, {"x": t})
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

    def _key_parts(self, y1: Tensor, slice_id: int) -> tuple[dict[str, Any], bytes]:
        """The fields and the measurement digest of one entry's cache key (the slice id
        only for a stochastic target, whose noise depends on it)."""
        sid = int(slice_id) if self.stochastic else None
        return {"target": self.tag, "slice": sid}, _y_digest(y1)

    def key(self, y1: Tensor, slice_id: int) -> str:
        """The cache key of one measurement ``y1 [1, H, W]`` (:func:`mripkg.io.cache_key`)."""
        fields, digest = self._key_parts(y1, slice_id)
        return cache_key(fields, digest)

    def keys(self, y1: Tensor, slice_id: int) -> tuple[str, str]:
        """``(key, legacy key)``: :meth:`key` and the same entry's key under the cache's old
        scheme (:func:`mripkg.io.legacy_cache_key`), by which older caches still read."""
        fields, digest = self._key_parts(y1, slice_id)
        return cache_key(fields, digest), str(legacy_cache_key("recon", fields, digest))

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
        both = [self.keys(y[i], ids[i]) for i in range(len(ids))]
        keys = [k for k, _ in both]
        out: list[Tensor | None] = []
        for k, old in both:
            x = self._memo.get(k) if self._memo is not None else None
            if x is None and self.cache is not None:
                x = self.cache.load(self.name, k, tuple(y.shape[1:]), legacy=old)
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
            k, old = self.keys(y[i], int(sid))
            hit = self._memo is not None and k in self._memo
            if not hit and self.cache is not None:
                hit = self.cache.is_valid(self.name, k, tuple(y.shape[1:]), legacy=old)
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


__all__ = [
    "ReconCache",
    "Target",
]
