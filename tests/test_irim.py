"""i-RIM: exact invertibility (random and trained-like weights), gradcheck w.r.t. y, the
memory-saving backward, shapes, non-negativity, input checks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

from mripkg.models.irim import IRIM, OrthogonalMix
from mripkg.physics import equispaced_mask, forward_operator, zero_filled_real
from mripkg.profiles import QUICK, SMOKE, IRIMConfig


def _cfg(
    n_steps: int = 3,
    multiplicity: int = 4,
    hidden: int = 8,
    dilations: tuple[int, ...] = (1, 2, 4, 1),
) -> IRIMConfig:
    return IRIMConfig(
        n_steps=n_steps,
        multiplicity=multiplicity,
        hidden=hidden,
        dilations=dilations,
        train_steps=1,
        batch_size=2,
    )


def _measure(
    n: int, batch: int = 2, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, n, n, generator=g, dtype=dtype)
    if n >= 16:
        mask = equispaced_mask(n)
    else:  # the equispaced rule has no centre block below 16 columns
        mask = torch.zeros(n, dtype=torch.bool)
        mask[[1, n // 2 - 1, n // 2, n - 2]] = True
    return forward_operator(x, mask), mask


def _randomize(model: IRIM, gain: float = 1.0, seed: int = 1) -> IRIM:
    """Random weights everywhere (the default init is identity-like): PyTorch's default conv
    init times ``gain`` (the zero-initialised last convs included), random rotations."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.reset_parameters()
                m.weight.mul_(gain)
            elif isinstance(m, OrthogonalMix):
                m.skew.normal_()
    return model


def _adam_train(model: IRIM, y: torch.Tensor, mask: torch.Tensor, steps: int = 5) -> IRIM:
    """A few Adam steps on a random target: weights that look trained, not freshly drawn."""
    g = torch.Generator().manual_seed(2)
    n = y.shape[-1]
    target = torch.rand(y.shape[0], 1, n, n, generator=g, dtype=y.real.dtype)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(y, mask) - target).pow(2).mean()
        loss.backward()
        opt.step()
    return model


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    """Fixed seed; one thread (tiny tensors: faster, and robust on a shared CPU)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_inverse(model: IRIM, y: torch.Tensor, mask: torch.Tensor, tol: float) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        # whole machine from the real initial state
        h0 = model.initial_state(y)
        hT = model.forward_latent(y, mask)
        assert _rel_err(hT, h0) > 1e-3  # the steps do something
        assert _rel_err(model.inverse_latent(hT, y, mask), h0) < tol
        # every step and every G_t from an arbitrary latent state (memory channels too)
        h = torch.randn(h0.shape, generator=g, dtype=h0.dtype)
        for t in range(model.cfg.n_steps):
            assert (
                _rel_err(model.step_inverse(model.step_forward(h, y, mask, t), y, mask, t), h) < tol
            )
            assert (
                _rel_err(model.step_forward(model.step_inverse(h, y, mask, t), y, mask, t), h) < tol
            )
            assert _rel_err(model.net_inverse(model.net_forward(h, t), t), h) < tol


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_inverse_random_weights(dtype: torch.dtype, tol: float) -> None:
    model = _randomize(IRIM(_cfg()).to(dtype))
    y, mask = _measure(32, dtype=dtype)
    _check_inverse(model, y, mask, tol)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_inverse_after_training_steps(dtype: torch.dtype, tol: float) -> None:
    y, mask = _measure(32, dtype=dtype)
    model = _adam_train(_randomize(IRIM(_cfg()).to(dtype), gain=0.5), y, mask)
    _check_inverse(model, y, mask, tol)
    # larger weights (a model trained for long): still invertible
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    _check_inverse(model, y, mask, tol)


def test_inverse_from_default_init() -> None:
    """Default init (identity mixing, zero last convs) after a few Adam steps."""
    y, mask = _measure(32, dtype=torch.float64)
    model = _adam_train(IRIM(_cfg()).double(), y, mask)
    _check_inverse(model, y, mask, 1e-10)


def test_orthogonal_mix() -> None:
    mix = OrthogonalMix(8, count=3).double()
    with torch.no_grad():
        mix.skew.normal_()
    w = mix.weights()
    eye = torch.eye(8, dtype=torch.float64).expand(3, 8, 8)
    assert torch.allclose(w @ w.transpose(1, 2), eye, atol=1e-12)
    h = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    for k in range(3):
        assert torch.allclose(mix.inverse(mix(h, k), k), h, atol=1e-12)
        assert not torch.allclose(mix(h, k), h)


def test_untrained_model_returns_zero_filled_magnitude() -> None:
    model = IRIM(_cfg())
    y, mask = _measure(32)
    with torch.no_grad():
        out = model(y, mask)
    assert torch.allclose(out, zero_filled_real(y).abs(), atol=1e-6)


def test_gradcheck_wrt_y() -> None:
    cfg = _cfg(n_steps=2, multiplicity=2, hidden=4, dilations=(1, 2))
    model = _randomize(IRIM(cfg).double(), gain=1.0)
    y, mask = _measure(8, batch=1, dtype=torch.float64)
    yr = y.real.clone().requires_grad_(True)
    yi = y.imag.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: model(torch.complex(a, b), mask), (yr, yi))


def test_memory_efficient_backward_matches_autograd() -> None:
    cfg = _cfg(n_steps=3, multiplicity=4, hidden=6, dilations=(1, 2, 1))
    plain = _randomize(IRIM(cfg).double(), gain=1.0)
    lean = IRIM(cfg, memory_efficient=True).double()
    lean.load_state_dict(plain.state_dict())
    y, mask = _measure(16, batch=2, dtype=torch.float64)
    w = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    grads = []
    for model in (plain, lean):
        model.zero_grad()
        yy = y.clone().requires_grad_(True)
        out = model(yy, mask)
        (out * w).sum().backward()
        grads.append((out.detach(), yy.grad, [p.grad.clone() for p in model.parameters()]))
    (o1, gy1, gp1), (o2, gy2, gp2) = grads
    assert torch.allclose(o1, o2, rtol=0, atol=1e-12)
    assert gy1 is not None and gy2 is not None
    assert _rel_err(gy2, gy1) < 1e-9
    for a, b in zip(gp1, gp2, strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)
    # gradient w.r.t. y only (parameters frozen), as in the attacks
    for p in lean.parameters():
        p.requires_grad_(False)
    yy = y.clone().requires_grad_(True)
    (lean(yy, mask) * w).sum().backward()
    assert yy.grad is not None and _rel_err(yy.grad, gy1) < 1e-9


def test_memory_efficient_gradcheck() -> None:
    cfg = _cfg(n_steps=2, multiplicity=2, hidden=4, dilations=(1, 2))
    model = _randomize(IRIM(cfg, memory_efficient=True).double(), gain=1.0)
    y, mask = _measure(8, batch=1, dtype=torch.float64)
    yr = y.real.clone().requires_grad_(True)
    yi = y.imag.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: model(torch.complex(a, b), mask), (yr, yi))


@pytest.mark.parametrize("n, cfg", [(64, SMOKE.irim), (128, QUICK.irim)])
def test_shape_and_non_negative(n: int, cfg: IRIMConfig) -> None:
    model = _randomize(IRIM(cfg), gain=1.0)
    y, mask = _measure(n, batch=1)
    with torch.no_grad():
        out = model(y, mask)
    assert out.shape == (1, 1, n, n)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.min() >= 0.0
    assert not torch.allclose(out, zero_filled_real(y).abs())


def test_unsampled_columns_are_ignored() -> None:
    model = _randomize(IRIM(_cfg()), gain=0.5)
    y, mask = _measure(32, batch=1)
    junk = torch.randn_like(y) * (~mask).to(torch.float32)
    with torch.no_grad():
        assert torch.equal(model(y, mask), model(y + junk, mask))


def test_input_errors() -> None:
    model = IRIM(SMOKE.irim)
    y, mask = _measure(64, batch=1)
    with pytest.raises(ValueError, match="complex"):
        model(y.real, mask)
    with pytest.raises(ValueError, match="columns"):
        model(y, equispaced_mask(32))
    with pytest.raises(ValueError, match="bool"):
        model(y, mask.long())
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        model(y[0], mask)
    with pytest.raises(ValueError, match="even"):
        model(y[..., :63, :], mask)
    with pytest.raises(ValueError, match="multiplicity"):
        IRIM(_cfg(multiplicity=1))


def test_config_dict_is_json() -> None:
    model = IRIM(QUICK.irim)
    d = json.loads(json.dumps(model.config_dict()))
    assert d["n_steps"] == QUICK.irim.n_steps and d["dilations"] == list(QUICK.irim.dilations)
    assert d["latent_channels"] == 4 * QUICK.irim.multiplicity
    assert IRIM.name == "irim"
