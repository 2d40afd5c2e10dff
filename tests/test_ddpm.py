"""DDPM prior and projection sampler."""

import dataclasses

import pytest
import torch

from mripkg.models.ddpm import (
    DiffusionReconstructor,
    EpsUNet,
    NoiseSchedule,
    draw_sampler_noise,
    projection_sample,
)
from mripkg.physics import equispaced_mask, fft2c, forward_operator
from mripkg.profiles import SMOKE

CFG = SMOKE.ddpm


def _images(n: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = ((xx**2 + yy**2) < 0.6).float()
    return (blob * (0.5 + 0.5 * torch.rand(n, 1, size, size, generator=g))).clamp(0, 1)


def test_linear_schedule_matches_paper_parametrisation():
    s = NoiseSchedule()
    b = s.betas
    assert b[0].item() == pytest.approx(1e-4)
    assert b[-1].item() == pytest.approx(0.02)
    ts = s.respaced(10)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 10
    assert torch.all(ts[:-1] > ts[1:])
    with pytest.raises(ValueError, match="sampler steps"):
        s.respaced(0)


class _Oracle(torch.nn.Module):
    """Predicts the exact noise for a known image: the sampler must return that image."""

    def __init__(self, x: torch.Tensor, s: NoiseSchedule) -> None:
        super().__init__()
        self.x, self.abar = x, s.alphas_cumprod.float()

    def forward(self, xt, t):
        a = self.abar[t].view(-1, 1, 1, 1)
        return (xt - a.sqrt() * (2 * self.x - 1)) / (1 - a).sqrt()


@pytest.mark.parametrize("steps", [3, 25])
def test_oracle_prior_recovers_the_image(steps):
    x = _images()
    mask = equispaced_mask(32)
    s = NoiseSchedule()
    out = projection_sample(_Oracle(x, s), forward_operator(x, mask), mask, s, steps, seed=1)
    assert torch.allclose(out, x, atol=1e-4)


def test_output_is_data_consistent_and_nonnegative():
    torch.manual_seed(0)
    net = EpsUNet(dataclasses.replace(CFG)).eval()
    x = _images()
    mask = equispaced_mask(32)
    y = forward_operator(x, mask)
    with torch.no_grad():
        out = DiffusionReconstructor(net, steps=3).reconstruct(y, mask)
    assert out.shape == x.shape and (out >= 0).all()
    inside = (out > 0).all(dim=(1, 2, 3))
    for i in torch.nonzero(inside).flatten():  # without clamping, measured columns are exact
        k = fft2c(out[i : i + 1])
        assert torch.allclose(k[..., mask], y[i : i + 1][..., mask], atol=1e-4)


def test_batch_independence_and_seeding():
    torch.manual_seed(0)
    net = EpsUNet(CFG).eval()
    for p in net.parameters():  # make the network non-trivial (zero-initialised output conv)
        p.data.add_(0.05 * torch.randn_like(p))
    x = _images(3)
    mask = equispaced_mask(32)
    y = forward_operator(x, mask)
    rec = DiffusionReconstructor(net, steps=4, seed=5)
    with torch.no_grad():
        full = rec.reconstruct(y, mask, slice_ids=[10, 11, 12])
        alone = rec.reconstruct(y[1:2], mask, slice_ids=[11])
        again = rec.reconstruct(y, mask, slice_ids=[10, 11, 12])
        other = rec.reconstruct(y, mask, seed=6, slice_ids=[10, 11, 12])
    assert torch.allclose(full[1:2], alone, atol=1e-5)
    assert torch.equal(full, again)
    assert not torch.allclose(full, other)


def test_noise_depends_only_on_seed_slice_and_sample():
    a = draw_sampler_noise((2, 1, 8, 8), 3, seed=0, slice_ids=[4, 7])
    b = draw_sampler_noise((1, 1, 8, 8), 3, seed=0, slice_ids=[7])
    c = draw_sampler_noise((1, 1, 8, 8), 3, seed=0, slice_ids=[7], sample=1)
    assert torch.equal(a[0][1:], b[0]) and torch.equal(a[1][:, 1:], b[1])
    assert not torch.equal(b[0], c[0])
    with pytest.raises(ValueError, match="slice id"):
        draw_sampler_noise((2, 1, 8, 8), 3, seed=0, slice_ids=[1])


def test_gradient_through_sampler_with_checkpointing_matches_plain():
    torch.manual_seed(0)
    net = EpsUNet(CFG).eval()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
        p.requires_grad_(False)
    x = _images(2)
    mask = equispaced_mask(32)
    y0 = forward_operator(x, mask)
    s = NoiseSchedule()
    noise = draw_sampler_noise(tuple(y0.shape), 3, seed=0, slice_ids=[0, 1])
    grads = []
    for ckpt in (False, True):
        y = y0.clone().requires_grad_(True)
        out = projection_sample(net, y, mask, s, 3, noise=noise, grad_checkpoint=ckpt)
        out.pow(2).sum().backward()
        grads.append(y.grad.clone())
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_unet_rejects_bad_shapes():
    net = EpsUNet(CFG)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.zeros(1, 1, 31, 31), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        net(torch.zeros(1, 2, 32, 32), torch.zeros(1, dtype=torch.long))


def test_tv_projection_variant_is_opt_in_and_smooths():
    from mripkg.models.tv import total_variation

    torch.manual_seed(0)
    net = EpsUNet(CFG).eval()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    x = _images(2)
    mask = equispaced_mask(32)
    y = forward_operator(x, mask)
    s = NoiseSchedule()
    with torch.no_grad():
        paper = projection_sample(net, y, mask, s, 4, seed=3)
        default = DiffusionReconstructor(net, steps=4, seed=3).reconstruct(y, mask)
        tv = DiffusionReconstructor(net, steps=4, seed=3, tv_weight=0.2)
        out = tv.reconstruct(y, mask)
        again = tv.reconstruct(y, mask)
    assert torch.equal(paper, default)  # weight 0 is the paper's sampler, bit for bit
    assert torch.equal(out, again)
    assert (total_variation(out) < total_variation(default)).all()
    with pytest.raises(ValueError, match="tv_weight"):
        DiffusionReconstructor(net, steps=4, tv_weight=-1.0)
