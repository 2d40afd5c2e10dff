"""Process memory: give the heap pages that freed tensors leave behind back to the system.

On Linux, glibc's ``malloc`` keeps freed memory of large tensors inside its heaps, and after a
few large frees it stops using ``mmap`` for them (its threshold rises), so the resident memory
of a kernel stays at its high-water mark long after an autograd graph is gone.  At the quick
profile a timed fp32 attack step left notebook 03's kernel 0.6 GB above what it held, and the
following evaluation peaked on top of that.  :func:`release_memory` runs the garbage collector
and ``malloc_trim(0)``; it moves no tensor and changes no number.  Elsewhere (macOS, Windows,
musl) it only collects garbage.

Floor: root (imports nothing of mripkg).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Callable

__all__ = ["release_memory", "trim_available"]


def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only; musl has no malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def trim_available() -> bool:
    """Whether :func:`release_memory` can return heap pages to the system (glibc)."""
    return _MALLOC_TRIM is not None


def release_memory() -> bool:
    """Collect garbage and return the free heap pages to the system (glibc ``malloc_trim``);
    ``True`` when pages were returned.  Cheap (milliseconds): call it after a phase that
    built large temporaries, such as an attack batch's autograd graph."""
    gc.collect()
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(0))
