"""Tiny differentiable reconstructors shared by the attack and robustness tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mripkg.models.ddpm import DiffusionReconstructor, EpsUNet
from mripkg.physics import zero_filled_real
from mripkg.profiles import DDPMConfig


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


def tiny_diffusion(size: int, steps: int, seed: int) -> DiffusionReconstructor:
    """A seeded, frozen 2-level DDPM U-Net (base 8 channels) behind the projection sampler, for
    images of ``size`` pixels; ``conv_out`` is re-initialised (it starts at zero) so that the
    network's output matters."""
    cfg = DDPMConfig(
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        train_steps=1,
        batch_size=1,
        crop_size=size,
        sampler_steps=steps,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = EpsUNet(cfg)
        nn.init.normal_(net.conv_out.weight, std=0.05)
    for p in net.parameters():
        p.requires_grad_(False)
    return DiffusionReconstructor(net, steps=steps, seed=seed).eval()
