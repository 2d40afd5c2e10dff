"""The paper profile's sizes build, take one training step and one sampler pass (CPU, batch 1).

Full paper-scale training is a documented GPU recipe (README), not something CI does.
"""

import pytest
import torch
import torch.nn.functional as F

from mripkg.models.ddpm import DiffusionReconstructor, NoiseSchedule, ddpm_loss
from mripkg.physics import equispaced_mask, fft2c, undersample
from mripkg.profiles import PAPER
from mripkg.training.train import build_model


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, PAPER.image_size, PAPER.image_size, generator=g)
    mask = equispaced_mask(PAPER.image_size)
    assert int(mask.sum()) == 32
    return x, undersample(fft2c(x), mask), mask


@pytest.mark.parametrize("name", ["resunetpp", "irim"])
def test_supervised_paper_models_train_one_step(name, batch):
    x, y, mask = batch
    net = build_model(name, PAPER)
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    out = net(y, mask)
    assert out.shape == x.shape and torch.isfinite(out).all() and (out >= 0).all()
    F.l1_loss(out, x).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_paper_ddpm_trains_one_step_and_samples(batch):
    x, y, mask = batch
    net = build_model("ddpm", PAPER)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params > 20_000_000  # base 128 channels: the paper-scale U-Net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss = ddpm_loss(net, 2 * x - 1, NoiseSchedule(), torch.Generator().manual_seed(0))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    with torch.no_grad():
        out = DiffusionReconstructor(net.eval(), steps=2).reconstruct(y, mask)
    assert out.shape == x.shape and torch.isfinite(out).all()
