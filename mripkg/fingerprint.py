"""The machine a result was computed on, written into every results file.

Attack-derived numbers move between machines of the same kind (kernel-level rounding in
bfloat16 autocast and oneDNN's code paths, amplified by the attack's Adam steps; see
``docs/reproducibility.md``), so each results file says where it came from:

* ``cpu``: the CPU model (``/proc/cpuinfo``, else ``platform.processor()``);
* ``onednn_isa``: the instruction set oneDNN dispatches to, as oneDNN's own dispatcher ranks
  them from the CPU's flags (``avx512_core_amx`` > ``avx512_core_bf16`` > ``avx512_core_vnni``
  > ``avx512_core`` > ``avx2`` > ``sse41``), capped by ``$ONEDNN_MAX_CPU_ISA`` when set;
  ``bf16_native``: whether bfloat16 runs natively (AVX512-BF16 or AMX) or is emulated;
* ``torch``, ``onednn`` (parsed from ``torch.__config__.show()``), ``cpu_capability``
  (ATen's vector ISA), ``threads`` (``torch.get_num_threads()`` at writing time);
* ``profile`` and ``sampler`` (and the attack's steps / precision) when known: set by
  :func:`note_profile`, which :func:`mripkg.profiles.setup_torch` calls, so every notebook
  kernel records the profile it really ran (overrides included).

JSON results carry it under the top-level key :data:`KEY` (``"machine_fingerprint"``; readers
that iterate over a file's top-level keys use :func:`strip`); a CSV gets a sidecar
``<name>.machine.json`` (:func:`sidecar_path`), which keeps the CSV itself plain.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: top-level key of the fingerprint in a results JSON
KEY = "machine_fingerprint"
#: suffix of a CSV's fingerprint sidecar: ``metrics_x.csv`` -> ``metrics_x.csv.machine.json``
SIDECAR_SUFFIX = ".machine.json"

#: oneDNN's CPU ISAs, best first, with the /proc/cpuinfo flags each needs
_ISA_LADDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("avx512_core_amx", ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16")),
    ("avx512_core_bf16", ("avx512_bf16", "avx512_vnni", "avx512bw", "avx512vl", "avx512f")),
    ("avx512_core_vnni", ("avx512_vnni", "avx512bw", "avx512vl", "avx512f")),
    ("avx512_core", ("avx512bw", "avx512vl", "avx512dq", "avx512f")),
    ("avx2", ("avx2", "fma")),
    ("avx", ("avx",)),
    ("sse41", ("sse4_1",)),
)

_context: dict[str, Any] = {}


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), flags
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if not model and key in ("model name", "Model", "cpu model"):
            model = val.strip()
        elif not flags and key in ("flags", "Features"):
            flags = frozenset(val.split())
        if model and flags:
            break
    return model or platform.processor() or platform.machine(), flags


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` is not readable)."""
    return _cpuinfo()[1]


def onednn_isa(flags: frozenset[str] | set[str], cap: str | None = None) -> str:
    """The best oneDNN ISA the ``flags`` allow (``"unknown"`` when none of the ladder's),
    capped at ``cap`` (a ``ONEDNN_MAX_CPU_ISA`` value such as ``"AVX512_CORE"``)."""
    names = [n for n, _ in _ISA_LADDER]
    start = 0
    if cap:
        c = cap.strip().lower()
        if c in names:
            start = names.index(c)
        elif c.startswith("avx512_core_amx"):
            start = 0
    for name, need in _ISA_LADDER[start:]:
        if all(f in flags for f in need):
            return name
    return "unknown"


def _onednn_version(config: str) -> str:
    m = re.search(r"(?:MKL-DNN|oneDNN)\s+v?([0-9][0-9.]*)", config)
    return m.group(1) if m else "unknown"


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    import torch

    model, flags = _cpuinfo()
    try:
        config = torch.__config__.show()
    except Exception:  # pragma: no cover - exotic builds
        config = ""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover
        capability = "unknown"
    return {
        "cpu": model,
        "arch": platform.machine(),
        "cpu_capability": capability,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags and "amx_tile" in flags,
        "torch": torch.__version__,
        "onednn": _onednn_version(config),
        "mkldnn_enabled": bool(torch.backends.mkldnn.is_available()),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
    }


def note_profile(profile: Any) -> None:
    """Remember the profile this process runs (name, sampler, attack settings) for the
    fingerprints written after it; called by :func:`mripkg.profiles.setup_torch`."""
    d = profile.ddpm
    spaced = "even" if float(d.sampler_spacing) == 1 else f"t ~ u^{float(d.sampler_spacing):g}"
    name = "projection (paper)" if d.sampler == "projection" else f"DDS, eta {d.sampler_eta:g}"
    _context.clear()
    _context.update(
        profile=profile.name,
        sampler=f"{name}, {d.sampler_steps} steps, {spaced} spacing, {d.sampler_precision}",
        attack=f"{profile.attack.steps} steps, lr_rel {profile.attack.lr_rel:g}, "
        f"{profile.attack.precision}",
    )


def machine_fingerprint(profile: Any = None) -> dict[str, Any]:
    """The fingerprint (see the module docstring); ``profile``: a :class:`Profile` to record
    instead of the one noted by :func:`note_profile`."""
    import torch

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    isa = onednn_isa(cpu_flags(), cap)
    out = dict(_static())
    out.update(
        onednn_isa=isa,
        onednn_isa_cap=cap or "",
        bf16_native=isa in ("avx512_core_amx", "avx512_core_bf16"),
        threads=int(torch.get_num_threads()),
    )
    if profile is not None:
        note = dict(_context)
        note_profile(profile)
        out.update(_context)
        _context.clear()
        _context.update(note)
    else:
        out.update({"profile": "", "sampler": "", "attack": ""}, **_context)
    return out


def stamp(obj: Any) -> Any:
    """``obj`` with the fingerprint under :data:`KEY` (top level; a dict's other keys first,
    an existing fingerprint replaced); anything but a dict is returned unchanged."""
    if not isinstance(obj, Mapping):
        return obj
    out = {k: v for k, v in obj.items() if k != KEY}
    out[KEY] = machine_fingerprint()
    return out


def strip(obj: Any) -> Any:
    """``obj`` without its fingerprint (a results dict as before fingerprints existed)."""
    if isinstance(obj, Mapping) and KEY in obj and isinstance(obj[KEY], Mapping):
        return {k: v for k, v in obj.items() if k != KEY}
    return obj


def sidecar_path(csv_path: str | os.PathLike) -> Path:
    """``metrics_x.csv`` -> ``metrics_x.csv.machine.json``."""
    p = Path(csv_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields that differ between two fingerprints: ``{field: (a's, b's)}``."""
    keys = [k for k in a if k in b] + [k for k in b if k not in a]
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


__all__ = [
    "KEY",
    "SIDECAR_SUFFIX",
    "cpu_flags",
    "differences",
    "machine_fingerprint",
    "note_profile",
    "onednn_isa",
    "sidecar_path",
    "stamp",
    "strip",
]
