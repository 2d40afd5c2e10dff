"""Tests of the TV-regularised compressed-sensing reconstructor (mripkg.models.tv)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from mripkg.attacks import kspace_attack
from mripkg.models import MODEL_LABELS, Reconstructor, TVReconstructor
from mripkg.models.tv import (
    choose_lambda,
    data_residual,
    div2d,
    grad2d,
    total_variation,
    tv_denoise,
    tv_objective,
    tv_reconstruct,
)
from mripkg.physics import equispaced_mask, fft2c, kspace_norm, zero_filled

N = 32


def _phantom(n_img: int = 2, seed: int = 0) -> Tensor:
    """Piecewise-constant discs in [0, 1], ``[n_img, 1, N, N]``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    out = torch.zeros(n_img, 1, N, N)
    for i in range(n_img):
        for _ in range(4):
            cy, cx = (torch.rand(2, generator=g) * 0.6 + 0.2) * N
            r = float(torch.rand(1, generator=g)) * N / 4 + 2
            out[i, 0][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = float(torch.rand(1, generator=g))
    return out


@pytest.fixture(scope="module")
def problem() -> tuple[Tensor, Tensor, Tensor]:
    x = _phantom()
    mask = equispaced_mask(N, acceleration=4, center_fraction=0.125)
    return x, fft2c(x) * mask, mask


def test_grad_div_adjoint() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 7, 9, generator=g, dtype=torch.float64)
    p = torch.randn(2, 2, 7, 9, generator=g, dtype=torch.float64)
    assert abs(float((grad2d(x) * p).sum() + (x * div2d(p)).sum())) < 1e-10
    assert float(total_variation(torch.ones(1, 1, 5, 5)).sum()) == 0.0


def test_tv_beats_zero_filled_and_is_nonnegative(problem) -> None:
    x, y, mask = problem
    lam = 1e-2  # on these blurred-looking zero-filled discs a weaker weight keeps more TV
    rec = TVReconstructor(lam, iters=150, step_ratio=10.0)
    out = rec(y, mask)
    zf = zero_filled(y)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert (out >= 0).all()
    assert (data_residual(out, y, mask) < data_residual(zf, y, mask)).all()
    assert (total_variation(out) < total_variation(zf)).all()
    assert (tv_objective(out, y, mask, lam) < tv_objective(zf, y, mask, lam)).all()
    assert ((out - x).norm() < (zf - x).norm()).item()


def test_deterministic_and_protocol(problem) -> None:
    _, y, mask = problem
    rec = TVReconstructor(2e-3, iters=20)
    assert isinstance(rec, Reconstructor) and rec.name == "tv" and "tv" in MODEL_LABELS
    assert torch.equal(rec(y, mask), rec(y, mask))
    # each image is reconstructed on its own (batching does not change the result)
    assert torch.allclose(rec(y[:1], mask), rec(y, mask)[:1], atol=1e-6)


def test_gradcheck_wrt_y() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64) + 0.2
    mask = equispaced_mask(8, acceleration=2, center_fraction=0.25)
    y = (fft2c(x) * mask).detach().requires_grad_(True)

    def f(yy: Tensor) -> Tensor:
        return tv_reconstruct(yy * mask, mask, lam=1e-2, iters=4, step_ratio=2.0)

    assert torch.autograd.gradcheck(f, (y,), eps=1e-6, atol=1e-5)
    # an image with flat zero regions: the gradient stays finite
    flat = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    flat[..., 2:5, 2:5] = 1.0
    yf = (fft2c(flat) * mask).detach().requires_grad_(True)
    tv_reconstruct(yf, mask, 1e-2, 5).pow(2).sum().backward()
    assert torch.isfinite(yf.grad).all() and yf.grad.abs().sum() > 0


def test_attack_respects_budget(problem) -> None:
    x, _, mask = problem
    k = fft2c(x)
    rec = TVReconstructor(1e-3, iters=15)
    eps = (0.0, 0.02, 0.08)
    res = kspace_attack(
        rec, k, mask, eps, steps=4, generator=torch.Generator().manual_seed(0), progress=False
    )
    bound = torch.tensor(eps, dtype=res.rel_norm.dtype)[:, None] * (1 + 1e-6)
    assert (res.rel_norm <= bound).all()
    # the attack moved away from its tiny start (finite gradients on the flat background)
    assert (res.rel_norm[1:] > 0.5 * bound[1:]).all()
    assert (res.delta[0] == 0).all()
    # the perturbation lives on the sampled columns and the damage grows with the budget
    assert (res.delta[..., ~mask] == 0).all()
    assert (res.best_damage[2] > res.best_damage[1]).all()
    assert torch.allclose(kspace_norm(res.delta[2]) / kspace_norm(k), res.rel_norm[2].float())


def test_choose_lambda_is_deterministic(problem) -> None:
    x, _, mask = problem
    a = choose_lambda(x, mask, [1e-4, 1e-3, 1e-1], iters=30, step_ratio=10.0)
    b = choose_lambda(x, mask, [1e-4, 1e-3, 1e-1], iters=30, step_ratio=10.0)
    assert a == b
    assert a["lam"] in a["lams"] and len(a["psnr_mean"]) == 3
    assert a["psnr_mean"][a["lams"].index(a["lam"])] == max(a["psnr_mean"])
    # a very strong weight flattens the image: worse than the chosen one
    assert a["psnr_mean"][2] < max(a["psnr_mean"])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"lam": -1.0}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"iters": 0}, "iters"),
        ({"step_ratio": 0.0}, "step_ratio"),
    ],
)
def test_bad_arguments(problem, kw, match) -> None:
    _, y, mask = problem
    args = {"lam": 1e-3, "iters": 2, "step_ratio": 1.0, **kw}
    with pytest.raises(ValueError, match=match):
        tv_reconstruct(y, mask, **args)
    with pytest.raises(ValueError, match="complex"):
        tv_reconstruct(y.real, mask, 1e-3, 2)
    with pytest.raises(ValueError, match="columns"):
        tv_reconstruct(y, equispaced_mask(N + 4), 1e-3, 2)


def test_tv_denoise_prox() -> None:
    x = _phantom(1) + 0.1 * torch.randn(1, 1, N, N, generator=torch.Generator().manual_seed(3))
    assert torch.equal(tv_denoise(x, 0.0), x)
    z = tv_denoise(x, 0.05, iters=50)
    # the prox objective falls below that of the input, and TV falls
    obj = 0.5 * (z - x).pow(2).sum() + 0.05 * total_variation(z).sum()
    assert obj < 0.05 * total_variation(x).sum()
    assert total_variation(z).sum() < total_variation(x).sum()
    with pytest.raises(ValueError, match="TV weight"):
        tv_denoise(x, -0.1)


def test_checkpointed_iterations_give_the_same_values_and_gradients(monkeypatch):
    from mripkg.models import tv as tvmod
    from mripkg.physics import equispaced_mask, fft2c, undersample

    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 32, 32, generator=g)
    mask = equispaced_mask(32)
    y0 = undersample(fft2c(x), mask)

    def run(every):
        monkeypatch.setattr(tvmod, "CHECKPOINT_EVERY", every)
        y = y0.clone().requires_grad_(True)
        out = tvmod.tv_reconstruct(y, mask, 0.02, 25)
        (out - x).pow(2).sum().backward()
        return out.detach(), y.grad

    chunked, whole = run(10), run(1000)  # 10 + 10 + 5 iterations against one piece
    assert torch.equal(chunked[0], whole[0]) and torch.equal(chunked[1], whole[1])
    with torch.no_grad():  # no autograd: no checkpointing, the same result
        assert torch.equal(tvmod.tv_reconstruct(y0, mask, 0.02, 25), whole[0])
