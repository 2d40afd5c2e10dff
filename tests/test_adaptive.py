"""Adaptive attacks on the diffusion defences (mripkg.experiments.adaptive), tiny DDPM."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import tiny_diffusion

from mripkg.attacks import AttackSettings, image_norm
from mripkg.evaluation import selection
from mripkg.experiments import adaptive
from mripkg.experiments.open_questions import defence_targets
from mripkg.physics import equispaced_mask
from mripkg.profiles import SMOKE

#: a profile of its own name for the caches of these tests
T = dataclasses.replace(SMOKE, name="t")

N = 32
CFG = adaptive.AdaptiveConfig(surrogate_steps=2, eot_samples=4, steps=3, checkpoints=(1,))


class _Split:
    name = "test"

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data() -> selection.SliceSet:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, N), torch.linspace(-1, 1, N), indexing="ij")
    disc = ((xx**2 + yy**2) < 0.6).float()
    images = (disc * (0.5 + 0.3 * torch.rand(3, 1, N, N, generator=g))).clamp(0, 1)
    return selection.slice_set(_Split(images), equispaced_mask(N, 4, 0.08))


@pytest.fixture(scope="module")
def diff():
    return tiny_diffusion(N, steps=3, seed=7)


def _variants(diff):
    return {
        "diffusion": diff,
        "tv_diffusion": diff.variant(tv_weight=0.05, tv_iters=3),
        "diffusion_mean": diff,
    }


def _settings(defence, model):
    return adaptive.adaptive_settings(AttackSettings(seed=0), defence, model, CFG)


@pytest.mark.parametrize("defence", adaptive.DEFENCES)
def test_gradient_flows_through_the_defence(data, diff, defence):
    model = _variants(diff)[defence]
    g = adaptive.surrogate(model, defence, 1, steps=2, samples=4, seed=5)
    y = data.y[:1].clone()
    u = torch.zeros(y.shape, dtype=torch.float32, requires_grad=True)
    out = g(y + torch.complex(u, torch.zeros_like(u)) * data.mask.float(), data.mask)
    assert out.shape == ((1, 1, N, N) if defence == "diffusion_mean" else (1, 4, N, N))
    out.pow(2).sum().backward()
    grad = u.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert float(grad.abs().sum()) > 0
    # only sampled columns carry gradient (the perturbation lives there)
    assert float(grad[..., ~data.mask].abs().sum()) == 0


def test_mean_surrogate_is_the_average_of_the_draws(data, diff):
    y = data.y[:2]
    draws = adaptive.surrogate(diff, "diffusion", 1, steps=2, samples=4, seed=5)(y, data.mask)
    mean = adaptive.surrogate(diff, "diffusion_mean", 1, steps=2, samples=4, seed=5)(y, data.mask)
    torch.testing.assert_close(mean[:, 0], draws.mean(1))
    # the TV step changes the surrogate
    tv = adaptive.surrogate(
        diff.variant(tv_weight=0.05, tv_iters=3), "tv_diffusion", 1, steps=2, samples=4, seed=5
    )(y, data.mask)
    assert not torch.allclose(tv, draws)


def test_wrong_model_for_defence_is_refused(diff):
    with pytest.raises(ValueError, match="tv_weight"):
        adaptive.surrogate(diff, "tv_diffusion", 0, steps=2, samples=2, seed=0)
    with pytest.raises(ValueError, match="defence"):
        adaptive.surrogate(diff, "nope", 0, steps=2, samples=2, seed=0)
    with pytest.raises(ValueError, match="steps"):
        adaptive.AdaptiveConfig(steps=0)
    with pytest.raises(ValueError, match="checkpoints"):
        adaptive.AdaptiveConfig(steps=4, checkpoints=(5,))


@pytest.mark.parametrize("defence", ["tv_diffusion", "diffusion_mean"])
def test_adaptive_attack_budget_cache_and_determinism(data, diff, defence, tmp_path):
    model = _variants(diff)[defence]
    s = _settings(defence, model)
    one = data.take([1])
    eps = (0.04, 0.08)
    kw = {"profile": T, "root": tmp_path / "a"}
    res = adaptive.run_adaptive(model, defence, one, eps, s, CFG, **kw)
    assert res.checkpoints == [1, 3]
    knorm = image_norm(one.kspace)
    for k in range(2):
        rel = image_norm(res.delta[k]) / knorm  # [E, B]
        for j, e in enumerate(eps):
            assert float(rel[j, 0]) <= e * (1 + 1e-6)  # Eq. 5 budget
        assert float(rel[-1, 0]) > 0.07  # the attack uses the budget
    # only sampled lines are perturbed
    assert float(res.delta[..., ~data.mask].abs().sum()) == 0
    assert (res.history[-1] > 0).all() and torch.isfinite(res.cpu_s).all()
    # fixed seeds: a fresh run elsewhere gives the same bits; a rerun reads the cache
    fresh = adaptive.run_adaptive(model, defence, one, eps, s, CFG, profile=T, root=tmp_path / "b")
    assert torch.equal(fresh.delta, res.delta) and torch.equal(fresh.history, res.history)
    again = adaptive.run_adaptive(model, defence, one, eps, s, CFG, only_cached=True, **kw)
    assert again is not None and torch.equal(again.delta, res.delta)
    other = adaptive.run_adaptive(
        model, defence, data.take([2]), eps, s, CFG, only_cached=True, **kw
    )
    assert other is None
    # the same split and slice id with another image is another entry
    moved = selection.SliceSet(one.split, one.slice_ids, one.images * 0.9, one.mask)
    assert adaptive.run_adaptive(model, defence, moved, eps, s, CFG, only_cached=True, **kw) is None
    with pytest.raises(ValueError, match="settings"):
        adaptive.run_adaptive(model, defence, one, eps, AttackSettings(), CFG, **kw)


def test_experiment_summary_and_key(data, diff, tmp_path, monkeypatch):
    from mripkg.experiments import open_questions

    monkeypatch.setattr(adaptive, "run_dir", lambda p: tmp_path / p)
    monkeypatch.setattr(open_questions, "run_dir", lambda p: tmp_path / p)
    two = data.take([0, 2])
    kw = {
        "profile": T,
        "tv_weight": 0.05,
        "tv_iters": 3,
        "mean_samples": 2,
        "cfg": adaptive.AdaptiveConfig(surrogate_steps=2, eot_samples=4, steps=2, checkpoints=()),
        "controls_seed": 0,
        "targets": defence_targets(diff, two.mask, T, 0.05, 3, 2),
    }
    base = AttackSettings(seed=0)
    assert adaptive.experiment(diff, base, two, [0.08], run=False, **kw) is None
    out = adaptive.experiment(diff, base, two, [0.08], **kw)
    assert set(out["verdicts"]) == {"tv_diffusion", "diffusion_mean"}
    row = out["diffusion"]["eps"]["0.08"]
    assert len(row["psnr_drop_per_slice"]) == 2
    assert row["convergence"]["steps"] == [2]
    assert out["diffusion"]["cost"]["pairs"] == 2
    assert (
        out["key"]["settings_digest"]["tv_diffusion"] != out["key"]["settings_digest"]["diffusion"]
    )
    # with too few slices nothing counts as a defence
    assert not any(v["defence"] for r in out["verdicts"].values() for v in r.values())
    # committed results are used only when the key matches
    path = tmp_path / "m.json"
    path.write_text(__import__("json").dumps({**out, "source": "x"}))
    got = adaptive.experiment(diff, base, two, [0.08], run=False, committed=path, **kw)
    assert got["source"] == str(path)
    # a result for fewer eps answers a request for more (the rest: transfer only), not fewer
    key = out["key"]
    assert adaptive.key_matches(key, {**key, "eps": [0.04, 0.08]})
    assert not adaptive.key_matches({**key, "eps": [0.04, 0.08]}, key)
    assert not adaptive.key_matches(key, {**key, "weights_id": "other"})
    kw2 = {**kw, "mean_samples": 3}
    got2 = adaptive.experiment(diff, base, two, [0.08], run=False, committed=path, **kw2)
    assert got2 is None or got2["source"] == "this run"


def _table():
    row = {"clean_psnr": 25.0, "n_slices": 4, "white_box": {}, "transfer": {}, "control": {}}
    return {
        m: {**row, "transfer": {"tv": {"0.08": 1.0}}, "control": {"0.08": 0.5}}
        for m in (
            "tv",
            "diffusion",
            "tv_diffusion",
            "diffusion_mean",
        )
    }


def test_rows_without_adaptive_result_say_transfer_only():
    from mripkg.experiments import open_questions as oq

    table = oq.add_adaptive(_table(), None)
    assert "status" not in table["tv"]
    assert all(table[m]["status"] == oq.TRANSFER_ONLY for m in oq.DIFFUSION_ROWS)
    rows = {r["model"]: r for r in oq.table_rows(table, {}, ["tv"], [0.08])}
    assert rows["tv_diffusion"]["adaptive 0.08"] == oq.TRANSFER_ONLY
    assert rows["tv"]["adaptive 0.08"] == "-"
    text = "\n".join(oq.defence_status(table, {}))
    assert text.count("transfer only") == 3 and text.count("not called a defence") == 2


def test_adaptive_rows_carry_interval_and_verdict():
    from mripkg.experiments import open_questions as oq

    iv = {"mean": 2.0, "low": 1.0, "high": 3.0}
    res = {
        "slice_ids": [0, 1, 2, 3],
        "eps": {"0.08": {"psnr_drop": iv, "control_drop": {"mean": 0.5}}},
    }
    adaptive_res = {
        "diffusion": res,
        "tv_diffusion": res,
        "verdicts": {
            "tv_diffusion": {"0.08": {"verdict": "not a defence under the adaptive attack"}}
        },
    }
    table = oq.add_adaptive(_table(), adaptive_res)
    assert table["diffusion_mean"]["status"] == oq.TRANSFER_ONLY
    rows = {r["model"]: r for r in oq.table_rows(table, {}, ["tv"], [0.08])}
    assert rows["tv_diffusion"]["adaptive 0.08"] == "2.00 [1.00, 3.00]"
    text = "\n".join(oq.defence_status(table, {}))
    assert "not a defence under the adaptive attack" in text
