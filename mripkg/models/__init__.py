"""Reconstruction models: one file per model, one shared interface (:class:`Reconstructor`)."""

from .base import Reconstructor, ZeroFilled
from .irim import IRIM
from .resunetpp import ResUNetPP

__all__ = ["IRIM", "Reconstructor", "ResUNetPP", "ZeroFilled"]
