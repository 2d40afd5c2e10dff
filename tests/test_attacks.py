"""Tests of mripkg.attacks on tiny images (32 x 32) and tiny models (fast, CPU)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import TinyNet
from torch import Tensor, nn

from mripkg.attacks import (
    AttackCache,
    AttackResult,
    AttackSettings,
    amplification,
    as_eps,
    cached_attack,
    image_route_measurement,
    kspace_attack,
    random_control,
)
from mripkg.models import ZeroFilled
from mripkg.physics import equispaced_mask, fft2c, kspace_norm
from mripkg.profiles import SMOKE

N = 32
EPS_GRID = (0.0, 0.01, 0.03, 0.08)


def _phantoms(n_img: int, seed: int = 0) -> Tensor:
    """Random discs in [0, 1], ``[n_img, 1, N, N]``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    out = torch.zeros(n_img, 1, N, N)
    for i in range(n_img):
        for _ in range(4):
            cy, cx = (torch.rand(2, generator=g) * 0.6 + 0.2) * N
            r = float(torch.rand(1, generator=g)) * N / 4 + 2
            val = float(torch.rand(1, generator=g)) * 0.7 + 0.3
            out[i, 0][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = val
    return out / out.flatten(1).amax(1).view(-1, 1, 1, 1)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, Tensor]:
    return fft2c(_phantoms(3)), equispaced_mask(N, 4, 0.08)


@pytest.fixture(scope="module")
def tiny() -> TinyNet:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyNet()


@pytest.fixture(scope="module")
def trained(data) -> TinyNet:
    """A TinyNet trained for 40 Adam steps to de-alias zero-filled phantoms (0.2 s)."""
    _, mask = data
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = TinyNet()
    x = _phantoms(16, seed=5)
    y = fft2c(x) * mask
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        loss = (net(y, mask) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _damage(model: nn.Module, y: Tensor, d: Tensor, mask: Tensor) -> Tensor:
    """``||f(y + d) - f(y)||`` per image, ``d`` ``[..., B, 1, H, W]``."""
    with torch.no_grad():
        f0 = model(y, mask)
        f1 = model((y + d).reshape(-1, *y.shape[1:]), mask).reshape(*d.shape[:-3], 1, N, N)
        return (f1 - f0).flatten(-3).norm(dim=-1)


@pytest.mark.parametrize("complex_delta", [False, True])
@pytest.mark.parametrize("which", ["zero_filled", "tiny"])
def test_bound_support_and_measurement(data, tiny, which, complex_delta):
    k, mask = data
    model = ZeroFilled() if which == "zero_filled" else tiny
    res = kspace_attack(
        model, k, mask, EPS_GRID, steps=8, generator=_gen(), complex_delta=complex_delta
    )
    E, B = len(EPS_GRID), k.shape[0]
    assert res.delta.shape == res.y_adv.shape == (E, B, 1, N, N)
    assert res.rel_norm.shape == res.best_damage.shape == res.best_step.shape == (E, B)
    assert res.loss_history.shape == (9, E, B)
    # the bound, recomputed independently in float64
    d64 = res.delta.to(torch.complex128)
    rel = kspace_norm(d64.reshape(E * B, 1, N, N)).reshape(E, B) / kspace_norm(
        k.to(torch.complex128)
    )
    eps = torch.tensor(EPS_GRID, dtype=torch.float64)[:, None]
    assert (rel <= eps * (1 + 1e-6)).all()
    assert torch.allclose(rel, res.rel_norm, rtol=1e-6, atol=0)
    # the attack uses its budget (Adam's sign-like steps push it to the boundary)
    assert (rel[1:] >= eps[1:] * 0.99).all()
    # zero off the sampled columns; real unless complex_delta
    assert (res.delta[..., ~mask] == 0).all()
    assert bool(res.delta.imag.ne(0).any()) == complex_delta
    # y_adv = M (k + delta)
    assert torch.equal(res.y_adv, k * mask + res.delta)


def test_eps_zero_changes_nothing(data, tiny):
    k, mask = data
    res = kspace_attack(tiny, k, mask, 0.0, steps=5, generator=_gen())
    assert res.eps.tolist() == [0.0]
    assert torch.equal(res.delta, torch.zeros_like(res.delta))
    assert torch.equal(res.y_adv[0], k * mask)
    assert (res.best_damage == 0).all() and (res.rel_norm == 0).all()


def test_attack_beats_random_control(data, trained):
    k, mask = data
    y = k * mask
    res = kspace_attack(trained, k, mask, 0.05, steps=20, generator=_gen())
    adv = _damage(trained, y, res.delta, mask)
    rnd = torch.stack(
        [_damage(trained, y, random_control(res.delta, mask, _gen(s)), mask) for s in range(3)]
    )
    assert (adv > 1.1 * rnd.amax(0)).all(), (adv, rnd)
    # the reported damage is that of the returned perturbation
    assert torch.allclose(adv.double().pow(2), res.best_damage.double(), rtol=1e-3)


def test_damage_grows_with_eps_and_best_iterate_kept(data, tiny):
    k, mask = data
    res = kspace_attack(tiny, k, mask, EPS_GRID, steps=15, generator=_gen())
    mean = res.best_damage.mean(1)
    assert mean[0] == 0
    assert (mean[1:] >= 0.95 * mean[:-1]).all(), mean
    assert mean[-1] > mean[1]
    assert (res.best_damage >= res.final_damage).all()
    assert torch.equal(res.best_damage, res.loss_history.max(0).values)
    picked = res.loss_history.gather(0, res.best_step[None]).squeeze(0)
    assert torch.equal(picked, res.best_damage)


def test_determinism_and_batch_independence(data, tiny):
    k, mask = data
    a = kspace_attack(tiny, k, mask, [0.02, 0.05], steps=6, generator=_gen(3))
    b = kspace_attack(tiny, k, mask, [0.02, 0.05], steps=6, generator=_gen(3))
    c = kspace_attack(tiny, k, mask, [0.02, 0.05], steps=6, generator=_gen(4))
    assert a.equal(b)
    assert not torch.equal(a.delta, c.delta)
    # chunking the (image, eps) pairs changes nothing beyond float rounding
    d = kspace_attack(tiny, k, mask, [0.02, 0.05], steps=6, generator=_gen(3), batch_size=2)
    assert torch.allclose(a.delta, d.delta, rtol=1e-4, atol=1e-6 * float(a.delta.abs().max()))


def test_relative_step_is_scale_invariant(data):
    """lr=None scales the step with eps ||k||: a positively homogeneous model (zero-filled)
    gives the same perturbation, scaled, for a scaled k-space; an absolute lr does not."""
    k, mask = data
    model = ZeroFilled()
    r1 = kspace_attack(model, k, mask, 0.03, steps=6, generator=_gen(1))
    r2 = kspace_attack(model, 10 * k, mask, 0.03, steps=6, generator=_gen(1))
    # equal up to rounding, except for sign flips (Adam's first step is sign-like) of a few
    # entries whose gradient is ~0 at the random start
    diff = (10 * r1.delta - r2.delta).abs().pow(2).sum().sqrt() / r2.delta.abs().pow(2).sum().sqrt()
    assert diff < 0.02
    assert torch.allclose(100 * r1.best_damage, r2.best_damage, rtol=1e-3)
    assert torch.allclose(r1.rel_norm, r2.rel_norm, rtol=1e-6)
    a1 = kspace_attack(model, k, mask, 0.03, steps=6, lr=0.1, generator=_gen(1))
    assert a1.meta["lr_mode"] == "absolute" and r1.meta["lr_mode"] == "relative"
    assert (a1.rel_norm <= 0.03 * (1 + 1e-6)).all()


def test_objective_model_scores_with_model(data, tiny):
    k, mask = data
    zf = ZeroFilled()
    res = kspace_attack(zf, k, mask, 0.05, steps=5, generator=_gen(), objective_model=tiny)
    assert res.meta["objective"] == "objective_model"
    dmg = _damage(zf, k * mask, res.delta, mask).double().pow(2)
    assert torch.allclose(dmg, res.best_damage.double(), rtol=1e-4)


def test_models_restored_after_attack(data):
    k, mask = data
    net = TinyNet().train()
    kspace_attack(net, k, mask, 0.02, steps=2, generator=_gen())
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), [0.01, -1.0], 1.5, [0.01, 8.0]])
def test_bad_eps_raises(data, bad):
    k, mask = data
    with pytest.raises(ValueError, match="eps"):
        kspace_attack(ZeroFilled(), k, mask, bad, steps=1)
    with pytest.raises(ValueError) as info:
        as_eps(bad)
    shown = bad[-1] if isinstance(bad, list) else bad
    assert repr(float(shown)) in str(info.value)


def test_bad_shapes_raise(data):
    k, mask = data
    with pytest.raises(ValueError, match="columns"):
        kspace_attack(ZeroFilled(), k, mask[:-1], 0.01, steps=1)
    with pytest.raises(ValueError, match="bool"):
        kspace_attack(ZeroFilled(), k, mask.float(), 0.01, steps=1)
    with pytest.raises(ValueError, match="complex"):
        kspace_attack(ZeroFilled(), k.real, mask, 0.01, steps=1)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        kspace_attack(ZeroFilled(), k[:, 0], mask, 0.01, steps=1)
    with pytest.raises(ValueError, match="no columns"):
        kspace_attack(ZeroFilled(), k, torch.zeros(N, dtype=torch.bool), 0.01, steps=1)


@pytest.mark.parametrize("complex_delta", [False, True])
def test_random_control_norm_and_support(data, complex_delta):
    k, mask = data
    res = kspace_attack(
        ZeroFilled(), k, mask, EPS_GRID, steps=3, generator=_gen(), complex_delta=complex_delta
    )
    ctrl = random_control(res.delta, mask, _gen(5))
    assert ctrl.shape == res.delta.shape and ctrl.dtype == res.delta.dtype
    n_adv = res.delta.abs().pow(2).sum((-3, -2, -1)).sqrt().double()
    n_ctl = ctrl.abs().pow(2).sum((-3, -2, -1)).sqrt().double()
    assert torch.allclose(n_ctl, n_adv, rtol=1e-6, atol=0)
    assert (ctrl[0] == 0).all()  # eps = 0
    assert (ctrl[..., ~mask] == 0).all()
    assert bool(ctrl.imag.ne(0).any()) == complex_delta
    assert torch.equal(ctrl, random_control(res.delta, mask, _gen(5)))
    real = random_control(res.delta.real, mask, _gen(5))
    assert not torch.is_complex(real)
    n_re = res.delta.real.pow(2).sum((-3, -2, -1)).sqrt().double()
    assert torch.allclose(real.pow(2).sum((-3, -2, -1)).sqrt().double(), n_re, rtol=1e-6)


def test_amplification_and_image_route(data, tiny):
    k, mask = data
    y = k * mask
    res = kspace_attack(tiny, k, mask, [0.0, 0.02], steps=3, generator=_gen())
    amp = amplification(ZeroFilled(), y, res.delta, mask)
    assert amp.shape == (2, 3) and torch.isnan(amp[0]).all()
    assert (amp[1] <= 1 + 1e-5).all()  # |F^-1 .| is 1-Lipschitz (Parseval)
    amp_t = amplification(tiny, y, res.delta[1], mask)
    assert amp_t.shape == (3,) and (amp_t > 0).all()
    y2, x2 = image_route_measurement(k, res.delta, mask)
    assert y2.shape == x2.shape == res.delta.shape and torch.is_complex(y2)
    assert torch.allclose(x2.flatten(-3).amin(-1), torch.zeros(2, 3), atol=1e-6)
    assert torch.allclose(x2.flatten(-3).amax(-1), torch.ones(2, 3), atol=1e-6)
    assert (y2[..., ~mask] == 0).all()
    # clean route: the phantoms are already in [0, 1] with min 0 and max 1
    assert torch.allclose(y2[0], y, atol=1e-5)
    assert not torch.allclose(y2[1], y, atol=1e-5)


def test_save_load_bit_identical(data, tiny, tmp_path):
    k, mask = data
    res = kspace_attack(tiny, k, mask, [0.0, 0.03], steps=3, generator=_gen())
    path = res.save(tmp_path / "r.safetensors")
    back = AttackResult.load(path)
    assert back.equal(res) and back.meta == res.meta
    assert not list(tmp_path.glob(".*.tmp"))
    side = json.loads(path.with_suffix(".json").read_text())
    side["sha256"] = "0" * 64
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ValueError, match="sha256"):
        AttackResult.load(path)


class _Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:
        self.calls += 1
        return self.inner(y, mask)


def test_cache_reuse_resume_and_settings(data, tiny, tmp_path):
    k, mask = data
    ids = ["s0", "s1", "s2"]
    settings = AttackSettings(steps=4, seed=11)
    kw = dict(profile=SMOKE, source="tiny", slice_ids=ids, split="test", settings=settings)
    cache = AttackCache(SMOKE, root=tmp_path / "a")
    model = _Counting(tiny)
    first = cached_attack(model, k, mask, EPS_GRID, cache=cache, **kw)
    assert first.delta.shape == (4, 3, 1, N, N)
    assert (
        first.rel_norm <= torch.tensor(EPS_GRID, dtype=torch.float64)[:, None] * (1 + 1e-6)
    ).all()
    n_calls = model.calls
    assert n_calls > 0
    again = cached_attack(model, k, mask, EPS_GRID, cache=cache, **kw)
    assert model.calls == n_calls  # all from the cache
    assert again.equal(first)
    # one entry reloads bit-identically and is found by its key
    one = cache.load("tiny", "test", "s1", 0.03, settings)
    assert one is not None and torch.equal(one.delta[0, 0], first.delta[2, 1])
    grid = cache.load_grid("tiny", "test", ids, EPS_GRID, settings)
    assert grid.equal(first)
    # an interrupted run (only part of the grid cached) resumes to the same numbers
    cache_b = AttackCache(SMOKE, root=tmp_path / "b")
    cached_attack(tiny, k[1:2], mask, [0.03], cache=cache_b, **{**kw, "slice_ids": ["s1"]})
    resumed = cached_attack(tiny, k, mask, EPS_GRID, cache=cache_b, batch_size=5, **kw)
    tol = 1e-3 * float(first.delta.abs().max())  # batch-size dependent float rounding only
    assert torch.allclose(resumed.delta, first.delta, rtol=1e-4, atol=tol)
    assert torch.allclose(resumed.best_damage, first.best_damage, rtol=1e-3)
    # a fresh run in another folder agrees with the cached one
    fresh = cached_attack(tiny, k, mask, EPS_GRID, cache=AttackCache(SMOKE, tmp_path / "c"), **kw)
    assert fresh.equal(first)
    # other settings are never served from this cache
    other = AttackSettings(steps=5, seed=11)
    assert cache.load("tiny", "test", "s1", 0.03, other) is None
    with pytest.raises(KeyError, match="s0"):
        cache.load_grid("tiny", "test", ids, EPS_GRID, other)
    # other data under the same key is recomputed, not reused
    with pytest.warns(UserWarning, match="does not match"):
        assert cache.load("tiny", "test", "s1", 0.03, settings, 2 * k[1], mask) is None
    assert not list((tmp_path / "a").rglob(".*.tmp"))


def test_cache_validation(data, tmp_path):
    k, mask = data
    cache = AttackCache(SMOKE, root=tmp_path)
    with pytest.raises(ValueError, match="slice ids"):
        cached_attack(
            ZeroFilled(),
            k,
            mask,
            0.01,
            profile=SMOKE,
            source="zf",
            slice_ids=[0, 1],
            cache=cache,
        )
    with pytest.raises(ValueError, match="source"):
        cache.path("../x", "test", 0, 0.01, AttackSettings())
    with pytest.raises(ValueError, match="eps"):
        cached_attack(
            ZeroFilled(),
            k,
            mask,
            -0.5,
            profile=SMOKE,
            source="zf",
            slice_ids=[0, 1, 2],
            cache=cache,
        )
    assert AttackSettings().digest() != AttackSettings(seed=1).digest()


class _BatchCoupled(nn.Module):
    """TinyNet plus a small term from the batch mean: its output depends on which images share
    a batch, an exaggerated stand-in for the float rounding of batched network passes."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:
        x = self.inner(y, mask)
        return x + 1e-2 * x.mean(0, keepdim=True)


def _rewrite_entry(path, change) -> None:
    """Change the tensors of a cache entry with ``change(dict) -> None`` and give its sidecar
    the new sha256: a consistent entry whose *contents* are wrong."""
    from safetensors.torch import load_file, save_file

    from mripkg.io import sha256_file

    raw = load_file(str(path))
    change(raw)
    save_file(raw, str(path))
    side_path = path.with_suffix(".json")
    side = json.loads(side_path.read_text())
    side["sha256"] = sha256_file(path)
    side_path.write_text(json.dumps(side))


def test_repaired_entry_is_bit_identical_to_an_uninterrupted_run(data, trained, tmp_path):
    import shutil

    k, mask = data
    model = _BatchCoupled(trained)
    ids = [0, 1, 2]
    settings = AttackSettings(steps=5, seed=3)
    kw = dict(profile=SMOKE, source="tiny", slice_ids=ids, split="test", settings=settings)
    # 12 (slice, eps) pairs in batches of 5: [0..4], [5..9], [10, 11]
    first = cached_attack(
        model, k, mask, EPS_GRID, cache=AttackCache(SMOKE, tmp_path / "a"), **kw, batch_size=5
    )
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    cache_b = AttackCache(SMOKE, tmp_path / "b")
    target = cache_b.path("tiny", "test", 1, 0.03, settings)  # pair 7, in the second batch
    original = target.read_bytes()
    batch = [["2", 0.01], ["0", 0.03], ["1", 0.03], ["2", 0.03], ["0", 0.08]]
    assert json.loads(target.with_suffix(".json").read_text())["meta"]["batch"] == batch
    # zero the last quarter of the tensor data, header intact
    raw = bytearray(original)
    raw[-len(raw) // 4 :] = bytes(len(raw) // 4)
    target.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="sha256"):
        repaired = cached_attack(model, k, mask, EPS_GRID, cache=cache_b, **kw, batch_size=5)
    assert repaired.equal(first)  # bit for bit
    assert target.read_bytes() == original
    # the same entry attacked in another batch (alone) differs: the test can see the effect
    alone = cached_attack(
        model,
        k[1:2],
        mask,
        [0.03],
        cache=AttackCache(SMOKE, tmp_path / "c"),
        **{**kw, "slice_ids": [1]},
    )
    assert not torch.equal(alone.delta[0, 0], first.delta[3, 1])


@pytest.mark.parametrize(
    "sidecar", ["null", "[]", '"text"', "{", '{"format": "mripkg.attack/1", "meta": []}']
)
def test_sidecar_that_is_not_an_object_is_corrupt(data, tiny, tmp_path, sidecar):
    k, mask = data
    settings = AttackSettings(steps=2, seed=1)
    kw = dict(profile=SMOKE, source="tiny", slice_ids=[0, 1, 2], settings=settings)
    cache = AttackCache(SMOKE, tmp_path)
    first = cached_attack(tiny, k, mask, [0.02], cache=cache, **kw)
    side = cache.path("tiny", "test", 2, 0.02, settings).with_suffix(".json")
    side.write_text(sidecar)
    with pytest.warns(UserWarning, match="recomputing"):
        assert cache.load("tiny", "test", 2, 0.02, settings) is None
    with pytest.warns(UserWarning, match="recomputing"):
        again = cached_attack(tiny, k, mask, [0.02], cache=cache, **kw)
    assert again.equal(first)
    assert json.loads(side.read_text())["format"] == "mripkg.attack/1"


def test_entries_are_revalidated_not_trusted(data, tiny, tmp_path):
    k, mask = data
    settings = AttackSettings(steps=2, seed=1)
    cache = AttackCache(SMOKE, tmp_path)
    cached_attack(
        tiny,
        k,
        mask,
        [0.02],
        profile=SMOKE,
        source="tiny",
        slice_ids=[0, 1, 2],
        settings=settings,
        cache=cache,
    )
    p0 = cache.path("tiny", "test", 0, 0.02, settings)
    p1 = cache.path("tiny", "test", 1, 0.02, settings)
    p2 = cache.path("tiny", "test", 2, 0.02, settings)
    assert cache.load("tiny", "test", 0, 0.02, settings, k[0], mask) is not None

    def grow(raw):  # 1.5 x the perturbation: over the budget (sidecar rel_norm untouched)
        raw["delta"] *= 1.5
        raw["y_adv"] = raw["y_adv"] + raw["delta"] / 3

    def nan(raw):
        raw["loss_history"][0, 0, 0] = float("nan")

    def off_mask(raw):  # energy moved to an unsampled column, norm unchanged
        col = int(torch.nonzero(~mask)[0])
        raw["delta"][..., col, 0] = raw["delta"][..., int(torch.nonzero(mask)[0]), 0]
        raw["delta"][..., int(torch.nonzero(mask)[0]), 0] = 0

    _rewrite_entry(p0, grow)
    _rewrite_entry(p1, nan)
    _rewrite_entry(p2, off_mask)
    with pytest.warns(UserWarning, match="exceeds eps"):
        assert cache.load("tiny", "test", 0, 0.02, settings) is None
    with pytest.warns(UserWarning, match="non-finite"):
        assert cache.load("tiny", "test", 1, 0.02, settings, k[1], mask) is None
    with pytest.warns(UserWarning, match="off the sampled columns"):
        assert cache.load("tiny", "test", 2, 0.02, settings) is None
    with pytest.warns(UserWarning), pytest.raises(KeyError, match="slice=0"):
        cache.load_grid("tiny", "test", [0, 1, 2], [0.02], settings, k, mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda(data, tiny, tmp_path):
    k, mask = data
    dev = torch.device("cuda")
    net = TinyNet().to(dev)
    net.load_state_dict(tiny.state_dict())
    res = kspace_attack(net, k.to(dev), mask.to(dev), EPS_GRID, steps=4, generator=_gen())
    assert res.delta.device.type == "cuda"
    eps = torch.tensor(EPS_GRID, dtype=torch.float64)[:, None]
    assert (res.rel_norm.cpu() <= eps * (1 + 1e-6)).all()
    ctrl = random_control(res.delta, mask, _gen())
    assert ctrl.device.type == "cuda"
    amplification(net, k.to(dev) * mask.to(dev), res.delta, mask)
    image_route_measurement(k.to(dev), res.delta, mask)
    cache = AttackCache(SMOKE, root=tmp_path)
    kw = dict(profile=SMOKE, source="tiny", slice_ids=[0, 1, 2], cache=cache)
    a = cached_attack(net, k.to(dev), mask.to(dev), EPS_GRID, **kw)
    assert a.equal(cached_attack(net, k.to(dev), mask.to(dev), EPS_GRID, **kw))


def test_bf16_attack_respects_the_bound_and_is_in_effect(data, trained, tmp_path):
    k, mask = data
    fp32 = kspace_attack(trained, k, mask, [0.01, 0.05], steps=10, generator=_gen())
    bf16 = kspace_attack(
        trained, k, mask, [0.01, 0.05], steps=10, generator=_gen(), precision="bf16"
    )
    eps = torch.tensor([0.01, 0.05], dtype=torch.float64)[:, None]
    assert (bf16.rel_norm <= eps * (1 + 1e-6)).all()
    assert (bf16.rel_norm >= eps * 0.99).all()
    assert (bf16.delta[..., ~mask] == 0).all()
    assert bf16.delta.dtype == fp32.delta.dtype
    assert not torch.equal(bf16.delta, fp32.delta)  # the autocast is in effect
    # damage measured in float32 on both: the bf16 run finds comparable perturbations
    d16, d32 = (
        _damage(trained, k * mask, bf16.delta, mask),
        _damage(trained, k * mask, fp32.delta, mask),
    )
    assert (d16 > 0.5 * d32).all()
    with pytest.raises(ValueError, match="attack precision"):
        kspace_attack(trained, k, mask, 0.05, steps=2, precision="fp16")
    with pytest.raises(ValueError, match="attack precision"):
        AttackSettings(precision="half")


def test_settings_digest_of_float32_attacks_is_unchanged():
    """The precision field joined AttackSettings later: float32 settings keep the digests (and
    so the cache files) they had before; bfloat16 ones get their own."""
    assert AttackSettings().digest() == "ae2fa71c88d3"
    assert AttackSettings(steps=7, model_id="abc").digest() == "0a191a62702f"
    assert AttackSettings(precision="bf16").digest() != AttackSettings().digest()
