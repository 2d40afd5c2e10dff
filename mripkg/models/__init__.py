"""Stage 2, models: the reconstructors, one file per model, one shared interface
(:class:`Reconstructor`: ``(y, mask) -> x``).

Receives configurations from :mod:`mripkg.profiles` (and weights from training/); hands on
modules that map a measurement ``y [B, 1, H, W]`` (complex) and a mask ``[W]`` to an image
``[B, 1, H, W]`` in [0, 1].  :mod:`.ddpm` holds the DDPM prior and its samplers.

Imports only the root modules.
"""

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
