"""Tests of mripkg.attack_protocols: continuation along the eps grid, the plateau stop and the
authors' protocol, on 32 x 32 phantoms with a tiny model (fast, CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_robustness import _phantoms, _Split
from tiny_models import TinyNet

from mripkg.attacks import AttackCache, AttackSettings
from mripkg.attacks.cache import cached_attack, steps_used
from mripkg.attacks.protocols import (
    AUTHORS_PRESET,
    authors_settings,
    ladder_levels,
    planned_steps,
    uses_protocol,
)
from mripkg.evaluation import attack_runs, selection
from mripkg.physics import equispaced_mask
from mripkg.profiles import ATTACK_PRESETS, SMOKE, get_profile, with_overrides

N = 32
LADDER = (0.01, 0.02, 0.04)

#: a profile of its own name for the caches of these tests
T = dataclasses.replace(SMOKE, name="t")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def mask():
    return equispaced_mask(N, 4, 0.08)


@pytest.fixture(scope="module")
def data(mask):
    return selection.slice_set(_Split(_phantoms(4)), mask, n=3)


@pytest.fixture(scope="module")
def tiny():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyNet().eval()


def _cont(**kw) -> AttackSettings:
    base = {"steps": 8, "seed": 0, "ladder": LADDER, "warm_steps": 4}
    return AttackSettings(**{**base, **kw})


def _damage(model, res, data) -> torch.Tensor:
    with torch.no_grad():
        f0 = model(data.y, data.mask)
        return torch.stack(
            [
                (model(res.y_adv[j], data.mask) - f0).pow(2).flatten(1).sum(1)
                for j in range(res.n_eps)
            ]
        )


def test_settings_keys_change_with_the_algorithm():
    plain = AttackSettings(steps=8)
    # the new fields are left out of the key at their defaults: old caches stay valid
    assert set(plain.to_dict()) == set(AttackSettings().to_dict())
    assert "ladder" not in plain.to_dict() and "protocol" not in plain.to_dict()
    digests = {
        plain.digest(),
        _cont().digest(),
        _cont(warm_steps=3).digest(),
        _cont(ladder=(0.01, 0.04)).digest(),
        _cont(patience=2).digest(),
        _cont(patience=2, min_gain=1e-3).digest(),
        authors_settings(plain).digest(),
    }
    assert len(digests) == 7
    assert uses_protocol(_cont()) and not uses_protocol(plain)
    # the authors' key does not follow the profile's (unused) relative step size
    assert (
        authors_settings(AttackSettings(lr_rel=3.0)).digest()
        == authors_settings(AttackSettings(lr_rel=1.0)).digest()
    )
    with pytest.raises(ValueError, match="ladder"):
        AttackSettings(ladder=(0.02, 0.01))
    with pytest.raises(ValueError, match="patience"):
        AttackSettings(patience=-1)


def test_ladder_levels():
    s = _cont()
    assert planned_steps(s, [0.0, *LADDER]) == (8 + 4 + 4) / 3
    assert planned_steps(s, [0.03]) == 8
    assert ladder_levels(s, 0.04) == [0.01, 0.02, 0.04]
    assert ladder_levels(s, 0.01) == [0.01]
    assert ladder_levels(s, 0.03) == [0.03]  # off the ladder: cold


def test_continuation_bound_cache_and_warm_start(data, tiny, tmp_path):
    cache = AttackCache(T, root=tmp_path)
    eps = [0.0, *LADDER]
    s = _cont()
    res = attack_runs.run_whitebox(tiny, "tiny", data, eps, s, profile=T, cache=cache)
    assert res.delta.shape == (4, len(data), 1, N, N)
    assert (res.delta[0] == 0).all() and torch.equal(res.y_adv[0], data.y)
    rel = res.rel_norm
    assert (rel <= torch.tensor(eps, dtype=torch.float64)[:, None] * (1 + 1e-6)).all()
    assert (rel[1:] > 0.99 * torch.tensor(LADDER, dtype=torch.float64)[:, None]).all()
    assert (res.delta.imag == 0).all()
    assert (res.delta[..., ~data.mask] == 0).all()
    # warm levels ran at most warm_steps; the first level the full steps
    used = steps_used(cache, "tiny", data.split, data.slice_ids, eps, s)
    assert (used[1] == 8).all() and (used[2:] <= 4).all() and (used[0] == 0).all()
    # a warm level starts from the level below rescaled: its iterate 0 already has the
    # damage of that perturbation, far above the tiny random start of a cold run
    cold = attack_runs.run_whitebox(
        tiny, "tiny", data, [0.04], AttackSettings(steps=8, seed=0), profile=T, cache=cache
    )
    assert (res.loss_history[0, 3] > 100 * cold.loss_history[0, 0]).all()
    # a cached run reloads bit-identically, with any batch size, without recomputing
    again = attack_runs.run_whitebox(
        tiny, "tiny", data, eps, s, profile=T, cache=cache, batch_size=1
    )
    assert again.equal(res)
    assert attack_runs.missing_pairs("tiny", data, eps, s, profile=T, cache=cache) == 0
    # asking for one eps alone gives the same entries (the ladder below comes from the cache)
    one = attack_runs.run_whitebox(tiny, "tiny", data, [0.04], s, profile=T, cache=cache)
    assert one.equal(res.select(0.04))


def test_interrupted_continuation_resumes_identically(data, tiny, tmp_path):
    eps = list(LADDER)
    s = _cont()
    full = attack_runs.run_whitebox(
        tiny, "tiny", data, eps, s, profile=T, cache=AttackCache(T, tmp_path / "a")
    )
    part = AttackCache(T, tmp_path / "b")
    attack_runs.run_whitebox(tiny, "tiny", data, [0.02], s, profile=T, cache=part)
    resumed = attack_runs.run_whitebox(tiny, "tiny", data, eps, s, profile=T, cache=part)
    assert resumed.equal(full)


def test_plateau_stop_saves_steps_and_keeps_the_best(data, tiny, tmp_path):
    cache = AttackCache(T, root=tmp_path)
    long = AttackSettings(steps=30, seed=0)
    stop = dataclasses.replace(long, patience=3, min_gain=0.05)
    a = attack_runs.run_whitebox(tiny, "tiny", data, [0.04], long, profile=T, cache=cache)
    b = attack_runs.run_whitebox(tiny, "tiny", data, [0.04], stop, profile=T, cache=cache)
    used = steps_used(cache, "tiny", data.split, data.slice_ids, [0.04], stop)
    assert (used < 30).all()  # every pair stopped early
    # the padded history is flat after the stop, and the kept iterate is the best scored
    for i in range(len(data)):
        k = int(used[0, i])
        assert torch.all(b.loss_history[k:, 0, i] == b.loss_history[k, 0, i])
    assert torch.allclose(b.best_damage[0], b.loss_history[:, 0].amax(0))
    # up to the stop the run is the plain one (same start, same steps)
    k = int(used.min())
    assert torch.allclose(a.loss_history[: k + 1], b.loss_history[: k + 1], rtol=1e-4, atol=1e-6)


def test_authors_protocol(data, tiny, tmp_path):
    cache = AttackCache(T, root=tmp_path)
    s = dataclasses.replace(authors_settings(AttackSettings(seed=0)), steps=12, patience=4)
    assert s.lr == 0.1 and s.init_scale == 1e-4 and s.precision == "fp32"
    res = attack_runs.run_whitebox(tiny, "tiny", data, [0.0, 0.04], s, profile=T, cache=cache)
    # the stored perturbation is the part that reaches the model: zero off the mask, within
    # the budget; the full delta (sidecar) has a norm >= the masked one and <= eps ||k||
    assert (res.delta[..., ~data.mask] == 0).all()
    assert (res.rel_norm[1] <= 0.04 * (1 + 1e-6)).all() and (res.rel_norm[1] > 0).all()
    for sid in data.slice_ids:
        r = cache.load("tiny", data.split, sid, 0.04, s)
        assert r is not None
        full = r.meta["full_rel_norm"]
        assert float(r.rel_norm[0, 0]) <= full * (1 + 1e-6) and full <= 0.04 * (1 + 1e-6)
        assert r.meta["protocol"] == "authors-v1" and r.meta["steps_used"] <= 12
    assert (_damage(tiny, res, data)[1] > 0).all()
    # the preset in the profiles and in the attack settings agree
    prof = with_overrides(get_profile("smoke"), attack="authors")
    from_prof = AttackSettings.from_profile(prof)
    assert from_prof == dataclasses.replace(
        AttackSettings.from_profile(get_profile("smoke")), **AUTHORS_PRESET
    )
    assert prof.attack.steps == ATTACK_PRESETS["authors"]["steps"] == 2000
    with pytest.raises(ValueError, match="unknown attack"):
        with_overrides(get_profile("smoke"), attack="nope")


def test_cached_attack_runs_the_protocol_its_key_names(data, tiny, tmp_path):
    cache = AttackCache(T, root=tmp_path)
    s = _cont()
    kw = {"profile": T, "source": "tiny", "slice_ids": data.slice_ids, "split": data.split}
    a = cached_attack(tiny, data.kspace, data.mask, list(LADDER), settings=s, cache=cache, **kw)
    b = attack_runs.run_whitebox(tiny, "tiny", data, list(LADDER), s, profile=T, cache=cache)
    assert a.equal(b)
    used = steps_used(cache, "tiny", data.split, data.slice_ids, list(LADDER), s)
    assert (used[1:] <= 4).all()  # the warm levels really ran warm
    with pytest.raises(ValueError, match="objective_model"):
        cached_attack(
            tiny,
            data.kspace,
            data.mask,
            [0.01],
            settings=s,
            objective_model=tiny,
            cache=cache,
            **kw,
        )


def test_readme_sections_render_the_attack_results(tmp_path):
    import json

    from mripkg.report import readme

    v = {
        "psnr_clean": 22.5,
        "psnr": 20.0,
        "psnr_drop": 2.5,
        "psnr_drop_random": 0.5,
        "added_mse": 1.2e-3,
        "added_mse_random": 1e-4,
        "amplification_over_control": 3.25,
        "steps_used_mean": 340.0,
    }
    per = {"eps": {"0.08": v}, "attack_cpu_s": 120.0}
    (tmp_path / "metrics_authors_protocol.json").write_text(
        json.dumps(
            {
                "test_slices": [0, 15],
                "slices_note": "2 of 16",
                "eps": [0.08],
                "models": {
                    "irim": {
                        "authors": per,
                        "default": {
                            **per,
                            "settings": {"steps": 100, "lr_rel": 1.0, "precision": "bf16"},
                        },
                    }
                },
            }
        )
    )
    table = readme.authors_protocol_table(tmp_path)
    assert "| i-RIM | 0.08 | authors' (PAPER.md addendum) | 22.50 | 20.00 | 2.50 (0.50) |" in table
    assert "| ours: cold 100 steps, lr_rel 1, bf16 |" in table
    assert "12.00 (1.00)" in table and "| 3.2 |" in table and "| 2.0 |" in table
    row = {
        "variant": "continuation lr1",
        "settings": {"lr_rel": 1.0},
        "ms_per_pair_step": 41.0,
        "mean_steps_used": 43.2,
        "min_damage_vs_reference": 0.995,
        "damage_vs_long_reference": {"irim": {"0.08": 0.97}},
        "notebook03_attack_cpu_s_est": 600.0,
    }
    (tmp_path / "bench_attack.json").write_text(
        json.dumps(
            {
                "val_slices": [0, 65],
                "eps": [0.01],
                "threads": 1,
                "long_reference": {"steps": 300},
                "rows": [row],
            }
        )
    )
    assert "| continuation lr1 | 1 | 41 | 43 | 0.995 | 0.970 | 10.0 |" in readme.attack_speed_table(
        tmp_path
    )
