"""MRI forward model: FFT conventions, the paper's mask, undersampling, data consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mripkg.physics import (
    dc_gradient,
    equispaced_mask,
    fft2c,
    forward_operator,
    ifft2c,
    random_mask,
    undersample,
    zero_filled,
    zero_filled_real,
)

# PAPER.md, "Setting": the sampled columns of the R = 8 equispaced mask
PAPER_MASKS = {
    256: [5, 15, 26, 36, 46, 57, 67, 77, 88, 98, 108, 119]
    + list(range(124, 132))
    + [139, 150, 160, 170, 181, 191, 201, 212, 222, 232, 243, 253],
    128: [5, 15, 26, 36, 46, 57, 62, 63, 64, 65, 67, 77, 88, 98, 108, 119],
    64: [5, 15, 26, 31, 32, 36, 46, 57],
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- FFT


def test_parseval_real_input():
    x = torch.rand(3, 1, 32, 48, generator=_gen(1))
    k = fft2c(x)
    assert k.dtype == torch.complex64
    assert k.shape == x.shape
    assert torch.allclose(k.abs().pow(2).sum(), x.pow(2).sum(), rtol=1e-5)


def test_parseval_complex_input():
    g = _gen(2)
    x = torch.complex(
        torch.randn(2, 1, 40, 40, generator=g), torch.randn(2, 1, 40, 40, generator=g)
    )
    k = fft2c(x)
    assert torch.allclose(k.abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-5)
    # and for the inverse
    assert torch.allclose(ifft2c(x).abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ifft_inverts_fft(dtype):
    x = torch.rand(2, 1, 33, 64, generator=_gen(3), dtype=dtype)
    back = ifft2c(fft2c(x))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(back.real, x, atol=tol)
    assert back.imag.abs().max() < tol


def test_fft_is_centred():
    """A constant image has all its energy at the centre pixel (DC at (H//2, W//2))."""
    x = torch.ones(1, 1, 16, 16)
    k = fft2c(x).abs()
    assert k[0, 0, 8, 8] == pytest.approx(16.0, rel=1e-6)
    k[0, 0, 8, 8] = 0
    assert k.max() < 1e-5


# -------------------------------------------------------------------------- masks


@pytest.mark.parametrize("n", sorted(PAPER_MASKS))
def test_equispaced_mask_matches_paper(n):
    mask = equispaced_mask(n)
    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert torch.nonzero(mask).flatten().tolist() == PAPER_MASKS[n]


@pytest.mark.parametrize("n, lines", [(256, 32), (128, 16), (64, 8)])
def test_equispaced_acceleration_is_exactly_eight(n, lines):
    mask = equispaced_mask(n, acceleration=8)
    assert int(mask.sum()) == lines
    assert n / int(mask.sum()) == 8


def test_equispaced_mask_centre_block_256():
    mask = equispaced_mask(256)
    assert mask[124:132].all()
    assert not mask[120:124].any() and not mask[132:139].any()


def test_random_mask_centre_block_and_determinism():
    n, cf = 128, 0.08
    num_low = round(n * cf)
    pad = (n - num_low + 1) // 2
    a = random_mask(n, 8, cf, seed=7)
    b = random_mask(n, 8, cf, seed=7)
    c = random_mask(n, 8, cf, seed=8)
    assert a.dtype == torch.bool and a.shape == (n,)
    assert a[pad : pad + num_low].all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_mask_acceleration_in_expectation():
    n, seeds = 256, 400
    counts = np.array([int(random_mask(n, 8, 0.08, seed=s).sum()) for s in range(seeds)])
    # expected n / 8 = 32 lines; the SD of the mean over 400 masks is about 0.25 lines
    assert abs(counts.mean() - n / 8) < 1.0
    assert counts.std() > 0  # random, not fixed


@pytest.mark.parametrize("bad", [dict(n=2), dict(acceleration=0), dict(center_fraction=0.0)])
def test_mask_arguments_are_checked(bad):
    kw = dict(n=64, acceleration=8, center_fraction=0.032) | bad
    with pytest.raises(ValueError):
        equispaced_mask(**kw)


# -------------------------------------------------------------- undersampling, DC


def test_undersample_zeroes_unsampled_columns():
    x = torch.rand(2, 1, 64, 64, generator=_gen(4))
    mask = equispaced_mask(64)
    k = fft2c(x)
    y = undersample(k, mask)
    assert y.shape == k.shape and y.dtype == k.dtype
    assert torch.all(y[..., ~mask] == 0)
    assert torch.equal(y[..., mask], k[..., mask])
    assert torch.equal(forward_operator(x, mask), y)


def test_undersample_rejects_bad_mask_length():
    k = fft2c(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="columns"):
        undersample(k, equispaced_mask(128))
    with pytest.raises(ValueError):
        undersample(k, equispaced_mask(64).float())  # not a bool mask


def test_zero_filled_magnitude_and_real_part():
    x = torch.rand(1, 1, 64, 64, generator=_gen(5))
    y = forward_operator(x, equispaced_mask(64))
    zf = zero_filled(y)
    assert zf.dtype == torch.float32 and (zf >= 0).all()
    assert torch.allclose(zf, ifft2c(y).abs())
    assert torch.allclose(zero_filled_real(y), ifft2c(y).real)
    # the full mask gives the image back
    full = torch.ones(64, dtype=torch.bool)
    assert torch.allclose(zero_filled(forward_operator(x, full)), x, atol=1e-5)


def test_dc_gradient_equals_autograd():
    g = _gen(6)
    mask = equispaced_mask(64)
    x = torch.rand(2, 1, 64, 64, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 1, 64, 64, generator=g, dtype=torch.float64)
    y = forward_operator(target, mask)
    loss = 0.5 * (forward_operator(x, mask) - y).abs().pow(2).sum()
    (auto,) = torch.autograd.grad(loss, x)
    manual = dc_gradient(x.detach(), y, mask)
    assert torch.allclose(manual, auto, atol=1e-10)


def test_mri_operator_is_the_forward_operator_and_its_adjoint():
    from mripkg.physics import MRIOperator

    g = torch.Generator().manual_seed(0)
    mask = equispaced_mask(32)
    op = MRIOperator(mask)
    x = torch.rand(2, 1, 32, 32, generator=g)
    assert torch.equal(op.A(x), forward_operator(x, mask))
    assert torch.equal(op(x), op.A(x))
    y = torch.randn(2, 1, 32, 32, dtype=torch.complex64, generator=g)
    lhs = torch.vdot(op.A(x.to(torch.complex64)).flatten(), y.flatten())
    rhs = torch.vdot(x.to(torch.complex64).flatten(), op.A_adjoint(y).flatten())
    assert torch.allclose(lhs, rhs, rtol=1e-4, atol=1e-4)  # <Ax, y> = <x, A^H y>
