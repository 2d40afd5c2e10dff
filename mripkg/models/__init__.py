"""Reconstruction models: one file per model, one shared interface (:class:`Reconstructor`)."""

from .base import Reconstructor, ZeroFilled
from .irim import IRIM
from .resunetpp import ResUNetPP
from .tv import TVReconstructor

#: display name of each reconstructor (tables, figure labels, notebooks)
MODEL_LABELS: dict[str, str] = {
    "zero_filled": "zero-filled",
    "resunetpp": "ResUNet++",
    "irim": "i-RIM",
    "diffusion": "diffusion",
    # beyond the paper (notebook 07)
    "tv": "TV",
    "tv_diffusion": "TV-diffusion",
    "diffusion_mean": "diffusion, seed mean",
}

__all__ = ["IRIM", "MODEL_LABELS", "Reconstructor", "ResUNetPP", "TVReconstructor", "ZeroFilled"]
