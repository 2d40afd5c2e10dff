"""Files in and out, written atomically: JSON, CSV, text, bytes, safetensors, any writer;
sha256 of a file; the one cache key and its adapter for old caches.

Every write goes through :func:`atomic_write`: a temporary file beside the target (one name
style, ``.<name>.<random>.tmp``), flushed and synced, mode 0644, then ``os.replace``, so that a
reader never sees half a file and an interrupted write leaves the old file (or none).

JSON: :func:`write_json` is the one writer; its two choices are explicit arguments, and each
kind of file keeps the bytes it always had:

- result files (``metrics_*.json``, ``claims.json``, ...): keys in insertion order (the order
  a notebook builds them, as the committed ``results/`` files have), NaN and infinity refused
  (they are not JSON; a result must be a number);
- sidecars and cache metadata (:func:`atomic_write_json`): keys sorted, and a non-finite
  number written as JSON's ``Infinity`` extension, as before (a training sidecar records
  ``best_ssim = -inf`` until the first validation).

Caches: every cache names its entries with :func:`cache_key` (the sha256 of the entry's fields
as sorted JSON, then any raw bytes such as a measurement's values).  Entries written under a
cache's key scheme from before :func:`cache_key` still read: :func:`legacy_cache_key` is the
one adapter, giving for the same fields the key that cache used then (a cache looks the new key
up first, then the old one).

Result files carry the machine they were computed on: :func:`write_json` adds the
fingerprint of :mod:`mripkg.fingerprint` (a root module) to a result dict, :func:`write_csv`
writes it beside the CSV (``<name>.machine.json``), :func:`read_json` leaves it out.

Floor: root (imports nothing of mripkg but the package version and :mod:`mripkg.fingerprint`).
Every stage writes through this module.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import fingerprint


def all_finite(obj: object) -> bool:
    """True when every number inside a nested dict/list structure is finite."""
    if isinstance(obj, Mapping):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(all_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


def json_text(obj: object, *, sort_keys: bool = False, allow_nan: bool = False) -> str:
    """``obj`` as indented JSON text with a final newline; NaN and infinity are refused unless
    ``allow_nan``."""
    return json.dumps(obj, indent=2, allow_nan=allow_nan, sort_keys=sort_keys) + "\n"


def write_json(
    path: str | os.PathLike,
    obj: object,
    *,
    sort_keys: bool = False,
    allow_nan: bool = False,
    machine: bool = True,
) -> Path:
    """Write ``obj`` as indented JSON atomically (:func:`atomic_write`).  Non-finite floats
    are refused (they are not valid JSON) unless ``allow_nan``; keys in insertion order unless
    ``sort_keys``.  ``machine``: a dict gets the machine fingerprint under
    ``"machine_fingerprint"`` (:func:`mripkg.fingerprint.stamp`), as every result file does;
    ``False`` for sidecars and caches."""
    path = Path(path)
    if machine:
        obj = fingerprint.stamp(obj)
    text = json_text(obj, sort_keys=sort_keys, allow_nan=allow_nan)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def read_json(path: str | os.PathLike, machine: bool = False) -> object:
    """Read a JSON file written by :func:`write_json`; without its machine fingerprint unless
    ``machine`` (so that a result file's top-level keys are its results)."""
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    return obj if machine else fingerprint.strip(obj)


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], object], suffix: str = ""
) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder
    (``.<name>.<random>.tmp<suffix>``; ``suffix`` for writers that want an extension, e.g.
    ``.npz``), which is synced, given mode 0644 and moved into place with ``os.replace``.  On
    any error the temporary file is removed and the target is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("utf-8")))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write a sidecar or cache metadata: :func:`write_json` with sorted keys and
    non-finite numbers kept (``sort_keys=True, allow_nan=True``)."""
    write_json(path, obj, sort_keys=True, allow_nan=True, machine=False)


def save_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> str:
    """Write tensors as a safetensors file atomically; returns the file's sha256."""
    from safetensors.torch import save_file

    digest: list[str] = []

    def write(tmp: Path) -> None:
        save_file(dict(tensors), str(tmp), metadata=dict(metadata) if metadata else None)
        digest.append(sha256_file(tmp))

    atomic_write(path, write)
    return digest[0]


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically (:func:`atomic_write`)."""
    return atomic_write(dst, lambda tmp: tmp.write_bytes(Path(src).read_bytes()))


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(fields: Mapping[str, Any], *blobs: bytes, length: int = 32) -> str:
    """The one cache key: the first ``length`` hex digits of the sha256 of ``fields`` as JSON
    (keys sorted, ``json.dumps``' default separators), followed by ``blobs`` (raw bytes, e.g. a
    tensor's values).  ``fields`` must be JSON-serialisable; equal fields give equal keys in
    every process and on every platform."""
    if not 1 <= length <= 64:
        raise ValueError(f"cache key length {length} not in 1..64 hex digits")
    h = hashlib.sha256(json.dumps(dict(fields), sort_keys=True).encode())
    for blob in blobs:
        h.update(blob)
    return h.hexdigest()[:length]


#: caches whose key scheme changed with :func:`cache_key` (the attack cache's settings digest
#: was already ``cache_key(settings, length=12)`` and is not listed)
LEGACY_SCHEMES = ("recon", "tv_lambda", "bench_reference")


def legacy_cache_key(scheme: str, fields: Mapping[str, Any], *blobs: bytes) -> object:
    """The adapter for old caches: the key a cache gave the entry of ``fields`` (and ``blobs``)
    before :func:`cache_key`, from the same arguments its new key takes.

    - ``"recon"`` (reconstruction cache file names), fields ``{"target": tag, "slice": id or
      None}``, blobs the measurement's digest: ``sha256(tag + "|slice=<id>" + digest)``, 32
      hex digits;
    - ``"tv_lambda"`` (the TV weight search): the fields themselves (the JSON object stored);
    - ``"bench_reference"`` (the 1000-step benchmark reference), fields ``{"weights": 12 hex
      digits, "split": name, "slices": [ids]}``: ``"<weights>|<split>|<ids>"``.
    """
    if scheme == "recon":
        sid = fields["slice"]
        text = fields["target"] + (f"|slice={int(sid)}" if sid is not None else "")
        h = hashlib.sha256(text.encode())
        for blob in blobs:
            h.update(blob)
        return h.hexdigest()[:32]
    if scheme == "tv_lambda":
        return dict(fields)
    if scheme == "bench_reference":
        return f"{fields['weights']}|{fields['split']}|{list(fields['slices'])}"
    raise ValueError(f"unknown cache scheme {scheme!r}; known: {list(LEGACY_SCHEMES)}")


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Atomically write a list of flat dicts as CSV (columns from the first row), and the
    machine fingerprint beside it (``<name>.machine.json``; the CSV itself stays plain)."""
    if not rows:
        raise ValueError(f"{path}: no rows to write")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue().encode())
    write_json(fingerprint.sidecar_path(path), fingerprint.machine_fingerprint(), machine=False)
    return path


__all__ = [
    "LEGACY_SCHEMES",
    "all_finite",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_key",
    "copy_file",
    "json_text",
    "legacy_cache_key",
    "read_json",
    "save_safetensors",
    "sha256_file",
    "write_csv",
    "write_json",
]
