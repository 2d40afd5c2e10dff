"""mripkg: a reproducible companion to Han et al., "On Instabilities of Unsupervised Denoising
Diffusion Models in Magnetic Resonance Imaging Reconstruction" (MICCAI 2024).

The package is laid out by stage, in the order the data flows; each stage imports only the
stages above it in this list (a test checks):

1. root modules -- ``profiles`` (settings), ``paths`` (where files go), ``fingerprint`` (the
   machine a result was computed on), ``io`` (atomic writes, hashes), ``memory`` (freed heap
   pages back to the system), ``physics`` (FFT, masks, the forward operator), ``metrics``
   (PSNR / SSIM), ``data`` (volumes -> train / val / test slices).
2. ``models`` -- the reconstructors: zero-filled, ResUNet++, i-RIM, the DDPM prior and its
   samplers, TV.
3. ``training`` -- training loops and checkpoints; hands on trained weights.
4. ``attacks`` -- the k-space attack, random controls and the attack cache; hands on
   perturbations.
5. ``evaluation`` -- slice / eps selection, reconstruction targets, metrics of clean,
   perturbed and control reconstructions, summaries and statistics; hands on numbers.
6. ``experiments`` -- what a notebook runs (white-box, transfer, artifacts, out-of-domain,
   open questions).
7. ``report`` -- claims and verdicts, tables, figures, the README's tables.
8. ``app`` -- commands and apps: ``reproduce`` (runs the notebooks), the explorer, benchmarks,
   the paper-scale GPU run.

Submodules are imported on first use, so that ``import mripkg`` stays fast and does not load
torch.  The old flat module names (``mripkg.robustness``, ``mripkg.claims``, ...) are aliases
for one release (:mod:`mripkg._aliases`).
"""

from __future__ import annotations

import importlib
from typing import Any

from . import _aliases

__version__ = "0.1.0"

#: the stages in flow order (root modules first)
STAGES = (
    ("profiles", "paths", "fingerprint", "io", "memory", "physics", "metrics", "data"),
    ("models",),
    ("training",),
    ("attacks",),
    ("evaluation",),
    ("experiments",),
    ("report",),
    ("app",),
)

SUBMODULES = tuple(m for stage in STAGES for m in stage)

__all__ = ["STAGES", "__version__", *SUBMODULES]

_aliases.install()


def __getattr__(name: str) -> Any:
    if name in SUBMODULES or name in _aliases.ALIASES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES))
