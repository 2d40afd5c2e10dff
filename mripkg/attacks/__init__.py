"""Stage 4, attacks: adversarial k-space perturbations and their random controls.

Receives a differentiable reconstructor ``(y, mask) -> x``, fully sampled k-space
``[B, 1, H, W]`` (complex), the mask and an eps grid; hands on :class:`AttackResult` grids
(perturbations ``[E, B, 1, H, W]``, perturbed measurements, loss histories) to evaluation/.

- :mod:`.kspace`: the attack of the paper (Eq. 5) and its settings checks;
- :mod:`.control`: equal-norm Gaussian controls;
- :mod:`.cache`: perturbations on disk, keyed by source, split, slice, eps and settings;
- :mod:`.shards`: shards of a sweep (``--shard i/n`` or torchrun ranks) that fill one cache.

Imports only the root modules.
"""

from .cache import (
    AttackCache,
    attack_shard,
    cached_attack,
    item_seed,
)
from .control import (
    budget_controls,
    budget_gap,
    control_deltas,
    random_control,
)
from .kspace import (
    ATTACK_PRECISIONS,
    FORMAT,
    MAX_EPS,
    NORM_RTOL,
    AttackResult,
    AttackSettings,
    EpsLike,
    ReconFn,
    amplification,
    as_eps,
    frozen,
    image_norm,
    image_route_measurement,
    in_precision,
    kspace_attack,
)

__all__ = [
    "ATTACK_PRECISIONS",
    "AttackCache",
    "AttackResult",
    "AttackSettings",
    "EpsLike",
    "FORMAT",
    "MAX_EPS",
    "NORM_RTOL",
    "ReconFn",
    "amplification",
    "as_eps",
    "budget_controls",
    "budget_gap",
    "attack_shard",
    "cached_attack",
    "control_deltas",
    "frozen",
    "image_norm",
    "image_route_measurement",
    "in_precision",
    "item_seed",
    "kspace_attack",
    "random_control",
]
