"""Reconstruction models: one file per model, one shared interface (:class:`Reconstructor`)."""

from .base import Reconstructor, ZeroFilled
from .irim import IRIM
from .resunetpp import ResUNetPP

#: display name of each reconstructor (tables, figure labels, notebooks)
MODEL_LABELS: dict[str, str] = {
    "zero_filled": "zero-filled",
    "resunetpp": "ResUNet++",
    "irim": "i-RIM",
    "diffusion": "diffusion",
}

__all__ = ["IRIM", "MODEL_LABELS", "Reconstructor", "ResUNetPP", "ZeroFilled"]
