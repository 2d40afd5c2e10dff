"""DDPM prior and projection sampler."""

import dataclasses

import pytest
import torch

from mripkg.models.ddpm import (
    DiffusionReconstructor,
    EpsUNet,
    NoiseSchedule,
    _replace_columns,
    conj_mirror,
    dds_sample,
    draw_sampler_noise,
    projection_sample,
    real_data_consistency,
)
from mripkg.physics import equispaced_mask, fft2c, forward_operator, zero_filled_real
from mripkg.profiles import PAPER, QUICK, SMOKE

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


# --------------------------------------------------------------------------------------------
# DDS-style sampler, precision and respacing (issue 12)


@pytest.mark.parametrize(("eta", "spacing"), [(1.0, 1.0), (0.0, 2.0), (0.5, 3.0)])
def test_dds_with_an_oracle_prior_recovers_the_image(eta, spacing):
    x = _images()
    mask = equispaced_mask(32)
    s = NoiseSchedule()
    out = dds_sample(
        _Oracle(x, s), forward_operator(x, mask), mask, s, 6, seed=1, eta=eta, spacing=spacing
    )
    assert torch.allclose(out, x, atol=1e-4)


def _noisy_net() -> EpsUNet:
    torch.manual_seed(0)
    net = EpsUNet(CFG).eval()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return net


def test_dds_makes_the_denoised_estimate_consistent_with_the_measurement():
    """A prior sure of a blank image: every x0 prediction is blank, so the last data-consistent
    estimate is the blank image's unmeasured k-space plus the measurement, i.e. the
    (real, clamped) zero-filled reconstruction of ``y``."""
    x = _images(2)
    mask = equispaced_mask(32)
    y = forward_operator(x, mask)
    s = NoiseSchedule()
    blank = _Oracle(torch.zeros_like(x), s)
    with torch.no_grad():
        out = dds_sample(blank, y, mask, s, 5, seed=2)
    expected = real_data_consistency(torch.zeros_like(x), y, mask).clamp_min(0)
    assert torch.allclose(out, expected, atol=1e-4)
    assert not torch.allclose(out, torch.zeros_like(out), atol=1e-3)
    # the exact step differs from the zero-filled real part on unpaired columns
    assert not torch.allclose(out, zero_filled_real(y).clamp_min(0), atol=1e-3)


def _residual(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float((forward_operator(x, mask) - y).abs().norm() / y.abs().norm())


@pytest.mark.parametrize("size", [32, 64, 128, 30])
def test_real_data_consistency_is_exact_on_a_random_real_image(size):
    """||M F x' - y|| = 0 to float precision after the exact step, for a random real x0 and
    the measurement y of another random real image; the paper's column replacement (real part
    kept) leaves a residual where a column's conjugate partner is not sampled."""
    g = torch.Generator().manual_seed(size)
    x_true = torch.rand(2, 1, size, size, generator=g)
    x0 = torch.randn(2, 1, size, size, generator=g)
    mask = equispaced_mask(size)
    y = forward_operator(x_true, mask)
    out = real_data_consistency(x0, y, mask)
    assert out.dtype == torch.float32 and not torch.is_complex(out)
    assert _residual(out, y, mask) < 1e-5
    assert _residual(_replace_columns(x0, y, mask), y, mask) > 0.05
    # frequencies neither measured nor partnered by a measured one keep x0's values
    k0, k1 = fft2c(x0), fft2c(out)
    m = mask.float().expand(size, -1)
    free = (m + conj_mirror(m.to(torch.complex64)).real) == 0
    assert free.any()
    assert torch.allclose(k1[..., free], k0[..., free], atol=1e-4)


def test_real_data_consistency_solves_the_real_normal_equations():
    """For a measurement no real image explains (a complex perturbation on the lines), the step
    gives the least-squares real image: the gradient Re F^H M (M F x' - y) vanishes."""
    g = torch.Generator().manual_seed(3)
    size = 64
    mask = equispaced_mask(size)
    x0 = torch.randn(1, 1, size, size, generator=g, dtype=torch.float64)
    noise = torch.randn(1, 1, size, size, 2, generator=g, dtype=torch.float64)
    y = forward_operator(torch.rand(1, 1, size, size, generator=g, dtype=torch.float64), mask)
    y = y + forward_operator(torch.zeros_like(x0), mask) + torch.view_as_complex(noise) * mask
    out = real_data_consistency(x0, y, mask)
    from mripkg.physics import ifft2c

    grad = ifft2c(forward_operator(out, mask) - y).real  # Re F^H M^T (M F x' - y)
    assert float(grad.norm()) < 1e-10 * float(y.abs().norm())
    assert _residual(out, y, mask) > 0.1  # not exactly consistent: no real image fits y


def test_dds_eta_zero_ignores_the_step_noise_and_eta_one_uses_it():
    net = _noisy_net()
    x = _images(2)
    mask = equispaced_mask(32)
    y = forward_operator(x, mask)
    s = NoiseSchedule()
    xt, zs, ms = draw_sampler_noise(tuple(y.shape), 5, 0, [0, 1])
    other = (xt, torch.randn_like(zs), ms)
    with torch.no_grad():
        a0 = dds_sample(net, y, mask, s, 5, noise=(xt, zs, ms), eta=0.0)
        b0 = dds_sample(net, y, mask, s, 5, noise=other, eta=0.0)
        a1 = dds_sample(net, y, mask, s, 5, noise=(xt, zs, ms), eta=1.0)
        b1 = dds_sample(net, y, mask, s, 5, noise=other, eta=1.0)
    assert torch.equal(a0, b0)
    assert not torch.allclose(a1, b1)


def test_dds_is_deterministic_and_independent_of_the_batch():
    net = _noisy_net()
    x = _images(3)
    mask = equispaced_mask(32)
    y = forward_operator(x, mask)
    rec = DiffusionReconstructor(net, steps=4, seed=5, sampler="dds", spacing=2.0)
    with torch.no_grad():
        full = rec.reconstruct(y, mask, slice_ids=[7, 8, 9])
        again = rec.reconstruct(y, mask, slice_ids=[7, 8, 9])
        one = rec.reconstruct(y[1:2], mask, slice_ids=[8])
        other_seed = rec.reconstruct(y, mask, slice_ids=[7, 8, 9], seed=6)
    assert torch.equal(full, again)
    assert torch.allclose(full[1:2], one, atol=1e-5)
    assert not torch.allclose(full, other_seed)


def test_bf16_precision_changes_little_and_stays_float32():
    net = _noisy_net()
    x = _images(2)
    mask = equispaced_mask(32)
    y = forward_operator(x, mask)
    with torch.no_grad():
        fp32 = DiffusionReconstructor(net, steps=4, sampler="dds").reconstruct(y, mask)
        bf16 = DiffusionReconstructor(net, steps=4, sampler="dds", precision="bf16")
        out = bf16.reconstruct(y, mask)
    assert out.dtype == torch.float32
    assert not torch.equal(out, fp32)  # the autocast is in effect
    assert (out - fp32).abs().mean() < 0.01  # a random prior amplifies a few pixels


def test_spaced_respacing_is_denser_near_zero():
    s = NoiseSchedule()
    even, dense = s.respaced(50), s.respaced(50, power=2.0)
    assert torch.equal(even, s.respaced(50, power=1.0))
    for ts in (even, dense):
        assert ts[0] == 999 and ts[-1] == 0 and torch.all(ts[:-1] > ts[1:])
    gaps = dense[:-1] - dense[1:]
    assert gaps[-1] < gaps[0] and len(dense) <= 50
    with pytest.raises(ValueError, match="spacing power"):
        s.respaced(10, power=0.5)


def test_sampler_settings_are_checked_and_tagged():
    net = _noisy_net()
    for bad, match in (
        ({"sampler": "ddim"}, "sampler must be one of"),
        ({"eta": 1.5}, "eta must lie in"),
        ({"precision": "fp16"}, "precision must be one of"),
        ({"spacing": 0.0}, "spacing power"),
    ):
        with pytest.raises(ValueError, match=match):
            DiffusionReconstructor(net, steps=4, **bad)
    paper = DiffusionReconstructor(net, steps=4)
    assert paper.sampler_tag == ""  # older cache keys of the paper's sampler stay valid
    tags = {
        DiffusionReconstructor(net, steps=4, **kw).sampler_tag
        for kw in (
            {"sampler": "dds"},
            {"sampler": "dds", "eta": 0.5},
            {"precision": "bf16"},
            {"spacing": 2.0},
            {"tv_weight": 0.1},
        )
    }
    assert "" not in tags and len(tags) == 5
    quick = DiffusionReconstructor.from_config(net, QUICK.ddpm, seed=3)
    assert (quick.sampler, quick.steps, quick.spacing, quick.precision, quick.seed) == (
        QUICK.ddpm.sampler,
        QUICK.ddpm.sampler_steps,
        QUICK.ddpm.sampler_spacing,
        QUICK.ddpm.sampler_precision,
        3,
    )
    assert quick.variant(steps=7).sampler_tag == quick.sampler_tag
    assert quick.variant(steps=7).steps == 7
    assert DiffusionReconstructor(
        net, steps=50, sampler="dds", spacing=2.0, precision="bf16"
    ).describe() == ("DDS, DDIM eta 1, 50 steps, t ~ u^2 spacing, bf16")


def test_paper_sampler_preset_restores_the_projection_sampler():
    from mripkg.profiles import with_overrides

    paper = with_overrides(QUICK, sampler="paper")
    d = paper.ddpm
    assert (d.sampler, d.sampler_spacing, d.sampler_precision) == ("projection", 1.0, "fp32")
    assert d.sampler_steps == QUICK.ddpm.sampler_steps
    assert with_overrides(QUICK, sampler="paper", sampler_steps=1000).ddpm.sampler_steps == 1000
    assert PAPER.ddpm.sampler == "projection" and PAPER.ddpm.sampler_steps == 1000
    with pytest.raises(ValueError, match="unknown sampler 'ddim'"):
        with_overrides(QUICK, sampler="ddim")
