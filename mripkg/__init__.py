"""mripkg: a reproducible companion to Han et al., "On Instabilities of Unsupervised Denoising
Diffusion Models in Magnetic Resonance Imaging Reconstruction" (MICCAI 2024).

The submodules are imported on first use (``mripkg.data``, ``mripkg.attacks``, ...), so that
``import mripkg`` stays fast and does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

SUBMODULES = (
    "analysis",
    "artifacts",
    "attacks",
    "bench",
    "checkpoints",
    "claims",
    "data",
    "explorer",
    "figures",
    "metrics",
    "models",
    "open_questions",
    "paper_gpu",
    "paths",
    "physics",
    "profiles",
    "readme",
    "reconstruction",
    "reproduce",
    "robustness",
    "train",
)

__all__ = ["__version__", *SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES))
