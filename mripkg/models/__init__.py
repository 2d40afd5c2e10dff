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

#: the paper's four reconstructors, in the order of every table and figure
NAMES: tuple[str, ...] = ("zero_filled", "resunetpp", "irim", "diffusion")
#: the two supervised ones (the attack sources of the transfer experiments)
SUPERVISED: tuple[str, ...] = ("resunetpp", "irim")
#: the three learned ones (the supervised two and the diffusion model)
LEARNED: tuple[str, ...] = (*SUPERVISED, "diffusion")

#: display name of each reconstructor (tables, figure labels, notebooks)
LABELS: dict[str, str] = {
    "zero_filled": "zero-filled",
    "resunetpp": "ResUNet++",
    "irim": "i-RIM",
    "diffusion": "diffusion",
    # beyond the paper (notebook 07)
    "tv": "TV",
    "tv_diffusion": "TV-diffusion",
    "diffusion_mean": "diffusion, seed mean",
}

#: the same table under its former name
MODEL_LABELS = LABELS

__all__ = [
    "IRIM",
    "LABELS",
    "LEARNED",
    "MODEL_LABELS",
    "NAMES",
    "SUPERVISED",
    "Reconstructor",
    "ResUNetPP",
    "TVReconstructor",
    "ZeroFilled",
]
