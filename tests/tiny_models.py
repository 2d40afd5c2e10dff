"""Tiny differentiable reconstructors shared by the attack and robustness tests."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mripkg.physics import zero_filled_real


class TinyNet(nn.Module):
    """Residual conv net on ``Re F^-1 y`` with a softplus output (non-negative)."""

    name = "tiny"

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 1, 3, padding=1)
        )

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:
        x = zero_filled_real(y)
        return F.softplus(x + self.body(x), beta=20.0)
