"""Reconstruction models: one file per model, one shared interface (:class:`Reconstructor`)."""

from .base import Reconstructor, ZeroFilled

__all__ = ["Reconstructor", "ZeroFilled"]
