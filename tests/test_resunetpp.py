"""ResUNet++: shapes, output range, gradients w.r.t. k-space, determinism, input checks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

from mripkg.models.resunetpp import ResUNetPP, scaled_aspp_rates
from mripkg.physics import equispaced_mask, forward_operator
from mripkg.profiles import SMOKE, ResUNetPPConfig


def _cfg(filters: tuple[int, ...]) -> ResUNetPPConfig:
    return ResUNetPPConfig(filters=filters, train_steps=1, batch_size=2)


def _measure(n: int, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, n, n, generator=g)
    mask = equispaced_mask(n)
    return forward_operator(x, mask), mask


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    """Fixed seed; one thread (tiny tensors: faster, and robust on a shared CPU)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("n", [64, 128])
def test_shape_and_range(n: int) -> None:
    model = ResUNetPP(SMOKE.resunetpp)
    y, mask = _measure(n)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(y, mask)
        assert out.shape == (2, 1, n, n)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_five_levels_like_the_paper() -> None:
    """The paper's depth (5 filter counts, 3 stride-2 blocks) on a small input."""
    model = ResUNetPP(_cfg((4, 8, 16, 32, 64))).eval()
    assert model.divisor == 8
    y, mask = _measure(64, batch=1)
    with torch.no_grad():
        out = model(y, mask)
    assert out.shape == (1, 1, 64, 64)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_gradient_wrt_y_flows() -> None:
    model = ResUNetPP(SMOKE.resunetpp).eval()
    y, mask = _measure(64, batch=1)
    y = y.clone().requires_grad_(True)
    model(y, mask).pow(2).sum().backward()
    assert y.grad is not None
    assert torch.isfinite(y.grad).all()
    assert y.grad[..., mask].abs().sum() > 0
    # unsampled columns are masked inside the model: no gradient reaches them
    assert y.grad[..., ~mask].abs().max() == 0


def test_unsampled_columns_are_ignored() -> None:
    model = ResUNetPP(SMOKE.resunetpp).eval()
    y, mask = _measure(64, batch=1)
    junk = torch.randn_like(y) * (~mask).to(torch.float32)
    with torch.no_grad():
        assert torch.equal(model(y, mask), model(y + junk, mask))


def test_deterministic_in_eval_mode() -> None:
    model = ResUNetPP(SMOKE.resunetpp).eval()
    y, mask = _measure(64)
    with torch.no_grad():
        a = model(y, mask)
        b = model(y, mask)
    assert torch.equal(a, b)


def test_training_step_changes_output() -> None:
    model = ResUNetPP(SMOKE.resunetpp)
    y, mask = _measure(64)
    target = torch.rand(2, 1, 64, 64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.eval()
    with torch.no_grad():
        before = model(y, mask)
    model.train()
    loss = (model(y, mask) - target).abs().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    model.eval()
    with torch.no_grad():
        assert not torch.equal(before, model(y, mask))


def test_input_errors() -> None:
    model = ResUNetPP(SMOKE.resunetpp)
    y, mask = _measure(64, batch=1)
    with pytest.raises(ValueError, match="complex"):
        model(y.real, mask)
    with pytest.raises(ValueError, match="columns"):
        model(y, equispaced_mask(128))
    with pytest.raises(ValueError, match="bool"):
        model(y, mask.float())
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        model(y[:, 0], mask)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(y[..., :62, :], mask)
    with pytest.raises(ValueError, match="filter"):
        ResUNetPP(_cfg((8, 16)))


def test_aspp_rates_scale_with_bridge_size() -> None:
    assert scaled_aspp_rates(32) == (6, 12, 18)
    assert scaled_aspp_rates(256) == (6, 12, 18)
    assert scaled_aspp_rates(16) == (3, 6, 9)
    assert scaled_aspp_rates(8) == (2, 3, 5)
    assert scaled_aspp_rates(2) == (2, 3, 4)
    for s in range(1, 70):
        r = scaled_aspp_rates(s)
        assert r[0] >= 2 and all(b > a for a, b in zip(r, r[1:], strict=False))
    model = ResUNetPP(SMOKE.resunetpp)  # 64 px: 16 x 16 bridge
    assert model.aspp_rates(64) == {"bridge": (1, 3, 6, 9), "head": (1, 6, 12, 18)}


def test_config_dict_is_json() -> None:
    model = ResUNetPP(SMOKE.resunetpp)
    d = json.loads(json.dumps(model.config_dict()))
    assert d["filters"] == list(SMOKE.resunetpp.filters)
    assert ResUNetPP.name == "resunetpp"
