"""Which slices and which eps: slice sets with their k-space and measurement, eps keys and
grids.

Stage: evaluation (first step).  Receives a data split and a mask; hands on
:class:`SliceSet` (images ``[B, 1, H, W]``, k-space, ``y = M k``) and eps grids to attacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..attacks.kspace import (
    AttackResult,
    EpsLike,
    as_eps,
)
from ..physics import fft2c, undersample
from ..profiles import Profile

#: Splits a tuning function may use (issue 17: choose on validation, report on test).
TUNING_SPLITS = ("train", "val")


def require_tuning_split(split: str, what: str = "a tuning function") -> None:
    """Raise ``ValueError`` unless ``split`` is a training or validation split.

    Every tuned setting (sampler and its steps / eta / spacing / precision, TV lambda, lr_rel)
    is chosen on validation slices; a test split (``test``, ``test_id``, ``test_skull``, a user
    folder's ``test``) only reports the chosen setting."""
    if split not in TUNING_SPLITS:
        raise ValueError(
            f"{what} must not see the {split!r} split: settings are chosen on validation "
            f"slices ({' or '.join(TUNING_SPLITS)}); the test split only reports the chosen one"
        )


def eps_key(eps: float) -> str:
    """The JSON key of an eps value: two decimals (``"0.04"``, ``"0.00"``), more digits only
    when two would round it (``"0.005"``)."""
    e = float(eps)
    s = f"{e:.2f}"
    return s if abs(float(s) - e) < 1e-12 else format(e, ".6g")


def spread_ids(n_have: int, n_want: int) -> list[int]:
    """``n_want`` indices evenly spread over ``0 .. n_have - 1`` (all of them if fewer)."""
    if n_have <= 0 or n_want <= 0:
        raise ValueError(f"need n_have > 0 and n_want > 0, got {n_have}, {n_want}")
    if n_want >= n_have:
        return list(range(n_have))
    return sorted({int(v) for v in np.linspace(0, n_have - 1, n_want).round()})


def merge_eps(*grids: EpsLike) -> list[float]:
    """Sorted union of eps grids (validated; values within 1e-9 count as one; empty grids
    are skipped)."""
    out: list[float] = []
    for g in grids:
        if isinstance(g, (list, tuple)) and not g:
            continue
        for e in as_eps(g).tolist():
            if not any(abs(e - o) < 1e-9 for o in out):
                out.append(e)
    return sorted(out)


def transfer_eps(profile: Profile, extra: EpsLike = ()) -> list[float]:
    """The eps grid of the transfer experiment of a profile: the white-box grid, the diffusion
    eps, the route eps and ``extra`` (sorted union)."""
    a = profile.attack
    return merge_eps(a.eps_grid, a.diffusion_eps, [a.route_eps], extra)


@dataclass
class SliceSet:
    """Ground-truth slices of one split with their ids, k-space and measurement.

    ``images`` real ``[B, 1, H, W]`` in [0, 1]; ``slice_ids`` their indices in the split;
    ``mask`` bool ``[W]``.  ``kspace = F x`` and ``y = M k`` are computed once.
    """

    split: str
    slice_ids: list[int]
    images: Tensor
    mask: Tensor
    kspace: Tensor = field(init=False, repr=False)
    y: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.slice_ids) != self.images.shape[0]:
            raise ValueError(f"{len(self.slice_ids)} ids for {self.images.shape[0]} images")
        self.slice_ids = [int(i) for i in self.slice_ids]
        self.kspace = fft2c(self.images)
        self.y = undersample(self.kspace, self.mask)

    def __len__(self) -> int:
        return len(self.slice_ids)

    def positions(self, ids: Sequence[int]) -> list[int]:
        """Positions of ``ids`` within this set (``KeyError`` for an id not in it)."""
        where = {s: i for i, s in enumerate(self.slice_ids)}
        missing = [i for i in ids if int(i) not in where]
        if missing:
            raise KeyError(f"slice ids {missing} not in this set {self.slice_ids}")
        return [where[int(i)] for i in ids]

    def take(self, ids: Sequence[int]) -> SliceSet:
        """The sub-set with the given slice ids (in that order)."""
        pos = self.positions(ids)
        return SliceSet(self.split, [self.slice_ids[p] for p in pos], self.images[pos], self.mask)


def slice_set(split: Any, mask: Tensor, n: int | None = None) -> SliceSet:
    """``n`` slices evenly spread over a :class:`mripkg.data.Split` (all when ``None``), ids =
    their index in the split."""
    total = len(split)
    ids = list(range(total)) if n is None else spread_ids(total, int(n))
    return SliceSet(split.name, ids, split.images[ids], mask)


def subset_result(
    result: AttackResult,
    data: SliceSet,
    slice_ids: Sequence[int] | None = None,
    eps: EpsLike | None = None,
) -> AttackResult:
    """The part of ``result`` (over ``data``'s slices) for some slice ids and eps values."""
    pos = list(range(result.batch_size)) if slice_ids is None else data.positions(slice_ids)
    eps_l = result.eps.tolist() if eps is None else as_eps(eps).tolist()
    rows = [result.select(e) for e in eps_l]
    idx = torch.tensor(pos, dtype=torch.long)
    return AttackResult(
        eps=torch.cat([r.eps for r in rows]),
        delta=torch.cat([r.delta[:, idx] for r in rows]),
        y_adv=torch.cat([r.y_adv[:, idx] for r in rows]),
        rel_norm=torch.cat([r.rel_norm[:, idx] for r in rows]),
        best_damage=torch.cat([r.best_damage[:, idx] for r in rows]),
        best_step=torch.cat([r.best_step[:, idx] for r in rows]),
        loss_history=torch.cat([r.loss_history[:, :, idx] for r in rows], dim=1),
        meta=dict(result.meta),
    )


__all__ = [
    "TUNING_SPLITS",
    "SliceSet",
    "eps_key",
    "merge_eps",
    "require_tuning_split",
    "slice_set",
    "spread_ids",
    "subset_result",
    "transfer_eps",
]
