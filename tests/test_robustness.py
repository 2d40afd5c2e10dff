"""Tests of mripkg.robustness (white-box / transfer orchestration) and the figure 3-5 helpers,
on 32 x 32 phantoms with tiny models (fast, CPU)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import matplotlib
import numpy as np
import pytest
import torch
from tiny_models import TinyNet, tiny_diffusion
from torch import Tensor

from mripkg.attacks import AttackCache, AttackSettings, control
from mripkg.evaluation import attack_runs, scoring, selection, summaries, targets
from mripkg.experiments import whitebox
from mripkg.io import all_finite, write_json
from mripkg.models import ZeroFilled
from mripkg.models.ddpm import DiffusionReconstructor
from mripkg.physics import equispaced_mask, kspace_norm
from mripkg.profiles import SMOKE
from mripkg.report import figures

matplotlib.use("Agg")

N = 32
EPS = (0.0, 0.01, 0.04)
WB_KEYS = {
    "psnr_mean",
    "psnr_sd",
    "ssim_mean",
    "ssim_sd",
    "random_psnr_mean",
    "random_ssim_mean",
    "amplification",
}
TR_KEYS = {"psnr_mean", "ssim_mean", "psnr_drop", "random_psnr_drop"}

#: a profile of its own name for the caches of these tests
T = dataclasses.replace(SMOKE, name="t")


def _phantoms(n_img: int, seed: int = 0) -> Tensor:
    """Random ellipses in [0, 1], ``[n_img, 1, N, N]``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    out = torch.zeros(n_img, 1, N, N)
    for i in range(n_img):
        for _ in range(5):
            cy, cx = (torch.rand(2, generator=g) * 0.6 + 0.2) * N
            ry, rx = (torch.rand(2, generator=g) * N / 5 + 2).tolist()
            val = float(torch.rand(1, generator=g)) * 0.7 + 0.3
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            out[i, 0][inside] = torch.maximum(out[i, 0][inside], torch.tensor(val))
    return out / out.flatten(1).amax(1).view(-1, 1, 1, 1)


class _Split:
    name = "test"

    def __init__(self, images: Tensor) -> None:
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
def mask() -> Tensor:
    return equispaced_mask(N, 4, 0.08)


@pytest.fixture(scope="module")
def data(mask) -> selection.SliceSet:
    return selection.slice_set(_Split(_phantoms(5)), mask, n=3)


@pytest.fixture(scope="module")
def tiny() -> TinyNet:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyNet().eval()


@pytest.fixture(scope="module")
def diff() -> DiffusionReconstructor:
    return tiny_diffusion(N, steps=3, seed=7)


def _settings(steps: int = 4, **kw) -> AttackSettings:
    return AttackSettings(steps=steps, seed=0, **kw)


def _rel_norm(delta: Tensor, kspace: Tensor) -> Tensor:
    e, b = delta.shape[:2]
    d64 = delta.to(torch.complex128).reshape(e * b, *delta.shape[2:])
    return kspace_norm(d64).reshape(e, b) / kspace_norm(kspace.to(torch.complex128))


# --------------------------------------------------------------------------------------------
# helpers


def test_eps_key_spread_merge():
    assert selection.eps_key(0.04) == "0.04"
    assert selection.eps_key(0.0) == "0.00"
    assert selection.eps_key(0.005) == "0.005"
    assert selection.eps_key(0.1 + 0.2 - 0.3 + 0.04) == "0.04"
    assert selection.spread_ids(16, 8) == [0, 2, 4, 6, 9, 11, 13, 15]
    assert selection.spread_ids(4, 9) == [0, 1, 2, 3]
    assert selection.spread_ids(4, 2) == [0, 3]
    assert selection.merge_eps((0.0, 0.02), [0.01, 0.02], 0.04) == [0.0, 0.01, 0.02, 0.04]
    assert selection.merge_eps((0.02,), [], ()) == [0.02]
    with pytest.raises(ValueError):
        selection.merge_eps((0.01, -0.1))
    assert attack_runs.model_id({"sha256": "abcdef0123456789"}) == "abcdef012345"
    assert attack_runs.model_id({}) == ""


def test_slice_set(data, mask):
    assert data.slice_ids == [0, 2, 4]
    assert torch.equal(data.y, data.kspace * mask)
    sub = data.take([4, 0])
    assert sub.slice_ids == [4, 0] and torch.equal(sub.images[0], data.images[2])
    with pytest.raises(KeyError):
        data.take([1])


def test_transfer_eps():
    from mripkg.profiles import PROFILES

    q = PROFILES["quick"]
    grid = selection.transfer_eps(q, [0.005])
    assert grid[0] == 0.0 and 0.005 in grid and q.attack.route_eps in grid
    assert grid == sorted(grid) and set(q.attack.eps_grid) <= set(grid)


def test_convergence():
    hist = torch.tensor([[0.0], [3.0], [2.0], [5.0]])
    assert whitebox.convergence(hist, [0, 2, 3, 99]).flatten().tolist() == [0, 3, 5, 5]


# --------------------------------------------------------------------------------------------
# attacks through the orchestration


def test_convergence_check_long_run_extends_the_short_one(data, tiny, tmp_path):
    cache = AttackCache(T, root=tmp_path)
    check = whitebox.convergence_check(
        tiny, "tiny", data, 0.05, _settings(3), _settings(9), profile=T, cache=cache
    )
    assert (check.steps, check.long_steps) == (3, 9)
    assert check.history.shape == (10, len(data))
    # the long run repeats the short one's first steps, so it can only add damage (damage is
    # the change from the clean reconstruction; PSNR against the truth may move either way)
    assert (check.gain >= 0).all() and (check.gain > 0).any()
    assert check.psnr_short.shape == check.psnr_long.shape == (len(data),)
    assert torch.isfinite(check.psnr_long).all()


def test_step_size_check_scores_and_verdict(data, tiny, tmp_path):
    cache = AttackCache(T, root=tmp_path)
    settings = {("tiny", lr): _settings(4, lr_rel=lr) for lr in (0.3, 1.0, 3.0)}
    with pytest.raises(ValueError, match="must not see the 'test' split"):  # issue 17
        whitebox.step_size_check(
            {"tiny": tiny}, data, [0.02], settings, profile=T, profile_lr=1.0, cache=cache
        )
    val = selection.SliceSet("val", data.slice_ids, data.images, data.mask)
    check = whitebox.step_size_check(
        {"tiny": tiny}, val, [0.02, 0.05], settings, profile=T, profile_lr=1.0, cache=cache
    )
    assert set(check.scores) == {0.3, 1.0, 3.0}
    assert all(0 < v <= 1 + 1e-12 for v in check.scores.values())
    assert check.scores[check.best] == max(check.scores.values())
    assert check.curves[1.0].shape == (5, 2 * len(data))
    assert check.ok == (check.profile_score >= 0.99 * check.scores[check.best])


@pytest.mark.parametrize("which", ["zero_filled", "tiny"])
def test_bound_holds_for_every_eps_and_model(data, tiny, which, tmp_path):
    model = ZeroFilled() if which == "zero_filled" else tiny
    cache = AttackCache(T, root=tmp_path)
    res = attack_runs.run_whitebox(
        model, which, data, EPS, _settings(), profile=T, batch_size=4, cache=cache
    )
    assert res.delta.shape == (len(EPS), len(data), 1, N, N)
    rel = _rel_norm(res.delta, data.kspace)
    eps = torch.tensor(EPS, dtype=torch.float64)[:, None]
    assert (rel <= eps * (1 + 1e-6)).all()
    assert (res.delta[0] == 0).all() and torch.equal(res.y_adv[0], data.y)
    assert control.budget_gap(res) < 1e-3  # the attack uses its budget
    # cached results reload identically through the orchestration, with no model at all
    again = attack_runs.run_whitebox(
        model, which, data, EPS, _settings(), profile=T, batch_size=2, cache=cache
    )
    assert again.equal(res)
    grid = attack_runs.cached_grid(which, data, EPS, _settings(), profile=T, cache=cache)
    assert grid is not None and grid.equal(res)
    assert attack_runs.missing_pairs(which, data, EPS, _settings(), profile=T, cache=cache) == 0
    assert attack_runs.missing_pairs(which, data, EPS, _settings(5), profile=T, cache=cache) == 6
    assert attack_runs.cached_grid(which, data, EPS, _settings(5), profile=T, cache=cache) is None


def test_diffusion_whitebox_bound_and_cache(data, diff, tmp_path):
    cache = AttackCache(T, root=tmp_path)
    one = data.take([2])
    label = attack_runs.diffusion_objective_label(2, diff.seed)
    settings = _settings(2, objective=label)
    res = attack_runs.run_diffusion_whitebox(
        diff, one, (0.0, 0.04), settings, profile=T, steps=2, cache=cache
    )
    rel = _rel_norm(res.delta, one.kspace)
    assert rel[0, 0] == 0 and 0.039 < float(rel[1, 0]) <= 0.04 * (1 + 1e-6)
    assert res.best_damage[1, 0] > 0
    again = attack_runs.run_diffusion_whitebox(
        diff, one, (0.0, 0.04), settings, profile=T, steps=2, cache=cache
    )
    assert again.equal(res)
    assert all(p.requires_grad is False for p in diff.parameters())
    with pytest.raises(ValueError, match="objective"):
        attack_runs.run_diffusion_whitebox(
            diff, one, (0.04,), _settings(2, objective="x"), profile=T, steps=2, cache=cache
        )


def test_diffusion_whitebox_expectation_over_noise(data, diff, tmp_path):
    assert attack_runs.diffusion_objective_label(2, 0) == "fixed-noise-2-seed0"
    assert attack_runs.diffusion_objective_label(2, 0, 1) == "fixed-noise-2-seed0"
    assert attack_runs.diffusion_objective_label(2, 0, 3) == "fixed-noise-2-seed0-eot3"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="samples"):
            attack_runs.diffusion_objective_label(2, 0, bad)
    cache = AttackCache(T, root=tmp_path)
    one = data.take([2])
    s1 = _settings(2, objective=attack_runs.diffusion_objective_label(2, diff.seed))
    s2 = _settings(2, objective=attack_runs.diffusion_objective_label(2, diff.seed, 2))
    kw = {"profile": T, "steps": 2, "cache": cache}
    fixed = attack_runs.run_diffusion_whitebox(diff, one, (0.04,), s1, **kw)
    eot = attack_runs.run_diffusion_whitebox(diff, one, (0.04,), s2, samples=2, **kw)
    assert float(_rel_norm(eot.delta, one.kspace)[0, 0]) <= 0.04 * (1 + 1e-6)
    assert not torch.equal(eot.delta, fixed.delta)  # another objective, another perturbation
    # the summed objective over two draws exceeds the single-draw damage at the same delta
    with torch.no_grad():
        y_adv = eot.y_adv[0]
        draws = [
            diff.reconstruct(y_adv, one.mask, steps=2, slice_ids=[2], sample=j)
            - diff.reconstruct(one.y, one.mask, steps=2, slice_ids=[2], sample=j)
            for j in range(2)
        ]
    per_draw = [float(d.pow(2).sum()) for d in draws]
    assert float(eot.best_damage[0, 0]) == pytest.approx(sum(per_draw), rel=1e-4)
    with pytest.raises(ValueError, match="objective"):  # settings of one draw, two draws asked
        attack_runs.run_diffusion_whitebox(diff, one, (0.04,), s1, samples=2, **kw)


def test_short_vs_full_sampler_rows(data, diff, mask, tmp_path):
    one = data.take([2])
    label = attack_runs.diffusion_objective_label(2, diff.seed)
    res = attack_runs.run_diffusion_whitebox(
        diff,
        one,
        (0.0, 0.04),
        _settings(2, objective=label),
        profile=T,
        steps=2,
        cache=AttackCache(T, root=tmp_path),
    )
    ctl = control.control_deltas(res, mask, one.slice_ids, seed=0)
    full = summaries.whitebox_summary(
        scoring.evaluate_attack(
            targets.Target("diffusion", diff, mask), one, res, source="diffusion", controls=ctl
        )
    )
    rows = whitebox.short_vs_full_sampler(diff, one, res, ctl, full, steps=2)
    assert [r["eps"] for r in rows] == list(full) == ["0.00", "0.04"]
    assert rows[0]["short sampler"] == rows[0]["control (short)"] == 0
    assert rows[1]["full sampler"] == round(full["0.04"]["psnr_drop_mean"], 2)
    # the short sampler with the attack's noise is the objective the attack maximised
    obj = attack_runs.diffusion_objective(diff, 2, 2)
    with torch.no_grad():
        change = obj(res.y_adv[1], mask) - obj(one.y, mask)
    assert float(change.pow(2).sum()) == pytest.approx(float(res.best_damage[1, 0]), rel=1e-4)


def test_controls_norm_direction_and_support(data, tiny, mask, tmp_path):
    res = attack_runs.run_whitebox(
        tiny, "tiny", data, EPS, _settings(), profile=T, cache=AttackCache(T, root=tmp_path)
    )
    ctl = control.control_deltas(res, mask, data.slice_ids, seed=3)
    bud = control.budget_controls(data.kspace, mask, data.slice_ids, EPS, seed=3)
    assert ctl.shape == bud.shape == res.delta.shape
    n_adv = _rel_norm(res.delta, data.kspace)
    assert torch.allclose(_rel_norm(ctl, data.kspace), n_adv, rtol=1e-5, atol=0)
    eps = torch.tensor(EPS, dtype=torch.float64)[:, None].expand_as(n_adv)
    assert torch.allclose(_rel_norm(bud, data.kspace), eps, rtol=1e-5, atol=1e-12)
    for t in (ctl, bud):
        assert (t[..., ~mask] == 0).all() and (t.imag == 0).all() and (t[0] == 0).all()
    # same direction for the same (seed, slice, eps); another seed gives another direction
    unit = ctl[1:] / _rel_norm(ctl, data.kspace)[1:, :, None, None, None]
    unit_b = bud[1:] / _rel_norm(bud, data.kspace)[1:, :, None, None, None]
    assert torch.allclose(unit, unit_b, atol=1e-5)
    other = control.budget_controls(data.kspace, mask, data.slice_ids, EPS, seed=4)
    assert not torch.allclose(other[1:], bud[1:])


# --------------------------------------------------------------------------------------------
# evaluation


def test_eps_zero_changes_nothing(data, tiny, tmp_path):
    res = attack_runs.run_whitebox(
        tiny, "tiny", data, EPS, _settings(), profile=T, cache=AttackCache(T, root=tmp_path)
    )
    target = targets.Target("tiny", tiny, data.mask, memo=False)
    ctl = control.control_deltas(res, data.mask, data.slice_ids, seed=0)
    ev = scoring.evaluate_attack(target, data, res, source="tiny", controls=ctl)
    assert torch.equal(ev.adv[0], ev.clean) and torch.equal(ev.rand[0], ev.clean)
    assert torch.equal(ev.psnr[0], ev.psnr_clean) and (ev.psnr_drop[0] == 0).all()
    assert (ev.change[0] == 0).all() and torch.isnan(ev.amplification[0]).all()
    # the attack hurts its own model and moves it more than noise of the same norm
    assert (ev.change[1:] > 0).all()
    assert (ev.change[-1] > ev.change_rand[-1]).all()
    s = summaries.whitebox_summary(ev)
    assert s["0.00"]["amplification"] is None
    assert s["0.00"]["psnr_mean"] == s["0.00"]["random_psnr_mean"]
    assert s["0.04"]["amplification"] > 0


def test_zero_filled_amplification_is_about_one(data, tmp_path):
    """|F^-1 (y + M delta)| - |F^-1 y| is at most |F^-1 M delta| pixelwise: amplification <= 1."""
    zf = ZeroFilled()
    res = attack_runs.run_whitebox(
        zf, "zero_filled", data, EPS, _settings(), profile=T, cache=AttackCache(T, tmp_path)
    )
    ev = scoring.evaluate_attack(
        targets.Target("zero_filled", zf, data.mask), data, res, source="zero_filled"
    )
    amp = ev.amplification[1:]
    assert (amp <= 1 + 1e-5).all() and (amp > 0.3).all()


@pytest.mark.parametrize("memo", [False, True])
def test_transfer_uses_the_same_sampler_noise(data, diff, memo):
    """The clean measurement sent through the transfer path gives exactly the clean
    reconstruction: same noise per slice for clean and perturbed input."""
    target = targets.Target("diffusion", diff, data.mask, batch_size=2, memo=memo)
    y_same = torch.stack([data.y, data.y.clone()])
    ev = scoring.evaluate(
        target, data.images, data.y, y_same, (0.01, 0.02), data.slice_ids, source="x"
    )
    assert torch.equal(ev.adv[0], ev.clean) and torch.equal(ev.adv[1], ev.clean)
    assert (ev.psnr_drop == 0).all()
    # the noise is that of the slice, not of the batch position
    rev = target(data.y.flip(0), data.slice_ids[::-1])
    assert torch.allclose(rev.flip(0), ev.clean, atol=1e-5)
    # another seed is other noise
    other = target.with_seed(seed=8)(data.y, data.slice_ids)
    assert not torch.allclose(other, ev.clean, atol=1e-4)
    assert other.shape == ev.clean.shape


def test_recon_cache_reloads_identically(data, diff, tmp_path):
    cache = targets.ReconCache(tmp_path / "recons")
    t1 = targets.Target("diffusion", diff, data.mask, weights_id="w", cache=cache)
    first = t1(data.y, data.slice_ids)
    assert t1.computed == len(data)
    t2 = targets.Target("diffusion", diff, data.mask, weights_id="w", cache=cache)
    assert t2.pending(data.y, data.slice_ids) == 0
    again = t2(data.y, data.slice_ids)
    assert t2.computed == 0 and torch.equal(again, first)
    # other weights, other seed or another measurement are other entries
    t3 = targets.Target("diffusion", diff, data.mask, weights_id="v", cache=cache)
    assert t3.pending(data.y, data.slice_ids) == len(data)
    assert t1.with_seed(seed=1).pending(data.y, data.slice_ids) == len(data)
    assert t2.pending(data.y * 1.01, data.slice_ids) == len(data)
    # -0.0 and 0.0 are the same measurement
    assert t2.pending(data.y + torch.zeros((), dtype=data.y.dtype), data.slice_ids) == 0


def _entries(cache: targets.ReconCache) -> list:
    return sorted(cache.root.glob("*/*.safetensors"))


def test_recon_cache_detects_a_zeroed_quarter_and_recomputes(data, diff, tmp_path):
    cache = targets.ReconCache(tmp_path / "recons")
    first = targets.Target("diffusion", diff, data.mask, weights_id="w", cache=cache)(
        data.y, data.slice_ids
    )
    p = _entries(cache)[1]
    raw = bytearray(p.read_bytes())
    raw[-len(raw) // 4 :] = bytes(len(raw) // 4)  # header intact, the data's last quarter zero
    p.write_bytes(bytes(raw))
    t = targets.Target("diffusion", diff, data.mask, weights_id="w", cache=cache)
    assert t.pending(data.y, data.slice_ids) == 1
    with pytest.warns(UserWarning, match="sha256 does not match"):
        again = t(data.y, data.slice_ids)
    assert t.computed == 1
    # recomputed alone instead of in a batch: equal up to the float rounding of batching
    assert torch.allclose(again, first, atol=2e-4)
    assert targets.ReconCache(tmp_path / "recons").is_valid(p.parent.name, p.stem)


@pytest.mark.parametrize("sidecar", ["null", "[]", "{", '{"format": "other"}'])
def test_recon_cache_sidecar_that_is_not_an_object_is_corrupt(data, tmp_path, sidecar):
    cache = targets.ReconCache(tmp_path)
    x = torch.rand(1, 8, 8)
    cache.save("m", "k1", x)
    assert torch.equal(cache.load("m", "k1", (1, 8, 8)), x)
    with pytest.warns(UserWarning, match="expected"):
        assert cache.load("m", "k1", (1, 4, 4)) is None
    cache.path("m", "k1").with_suffix(".json").write_text(sidecar)
    with pytest.warns(UserWarning, match="recomputing"):
        assert cache.load("m", "k1") is None
    with pytest.raises(ValueError, match="non-finite"):
        cache.save("m", "k2", torch.full((1, 8, 8), float("nan")))


def test_recon_cache_legacy_entries_are_recomputed_unless_adopted(data, tmp_path):
    from safetensors.torch import save_file

    cache = targets.ReconCache(tmp_path)
    good, bad = torch.rand(1, 8, 8), torch.rand(1, 8, 8)
    bad[0, 0, 0] = float("nan")
    (tmp_path / "m").mkdir()
    save_file({"x": good}, str(cache.path("m", "good")))  # as the code before sidecars did
    save_file({"x": bad}, str(cache.path("m", "bad")))
    with pytest.warns(UserWarning, match="no sidecar"):
        assert cache.load("m", "good") is None
    assert cache.adopt_legacy((1, 8, 8)) == {"adopted": 1, "deleted": 1}
    assert torch.equal(cache.load("m", "good"), good)
    assert not cache.path("m", "bad").exists()


def test_image_route_clean_reference(data, tiny, tmp_path):
    res = attack_runs.run_whitebox(
        tiny, "tiny", data, EPS, _settings(), profile=T, cache=AttackCache(T, root=tmp_path)
    )
    target = targets.Target("tiny", tiny, data.mask)
    bud = control.budget_controls(data.kspace, data.mask, data.slice_ids, EPS, seed=0)
    ev = scoring.evaluate_attack(target, data, res, source="tiny", route="image", controls=bud)
    assert ev.route == "image"
    assert (ev.psnr_drop[0] == 0).all() and (ev.change[0] == 0).all()
    assert (ev.change[1:] > 0).all()
    with pytest.raises(ValueError):
        scoring.evaluate_attack(target, data, res, source="tiny", route="nope")


def test_json_and_csv_layout(data, tiny, tmp_path):
    res = attack_runs.run_whitebox(
        tiny, "tiny", data, EPS, _settings(), profile=T, cache=AttackCache(T, root=tmp_path)
    )
    zf = ZeroFilled()
    ctl = control.control_deltas(res, data.mask, data.slice_ids, seed=0)
    bud = control.budget_controls(data.kspace, data.mask, data.slice_ids, EPS, seed=0)
    wb = scoring.evaluate_attack(
        targets.Target("tiny", tiny, data.mask), data, res, source="tiny", controls=ctl
    )
    tr = scoring.evaluate_attack(
        targets.Target("zero_filled", zf, data.mask), data, res, source="tiny", controls=bud
    )
    white = {"tiny": summaries.whitebox_summary(wb)}
    transfer = {"tiny": {"zero_filled": summaries.transfer_summary(tr)}}
    assert set(white["tiny"]) == {"0.00", "0.01", "0.04"}
    for row in white["tiny"].values():
        assert WB_KEYS <= set(row)
    for row in transfer["tiny"]["zero_filled"].values():
        assert TR_KEYS <= set(row)
    row = transfer["tiny"]["zero_filled"]["0.04"]
    assert math.isclose(row["psnr_drop"], row["clean_psnr_mean"] - row["psnr_mean"], abs_tol=1e-9)
    assert row["psnr_drop"] > 0 and row["random_psnr_drop"] is not None
    for name, obj in (("w.json", white), ("t.json", transfer)):
        p = write_json(tmp_path / name, obj)  # refuses NaN
        back = json.loads(p.read_text())
        assert "machine_fingerprint" in back  # every results file says where it was made
        back.pop("machine_fingerprint")
        assert back == json.loads(json.dumps(obj)) and all_finite(back)
    mat = scoring.transfer_matrix(transfer, ["tiny", "x"], ["zero_filled", "tiny"], 0.04)
    assert mat.shape == (2, 2) and mat[0, 0] == row["psnr_drop"]
    assert np.isnan(mat[0, 1]) and np.isnan(mat[1]).all()
    rows = scoring.per_slice_rows(wb) + scoring.per_slice_rows(tr)
    assert len(rows) == 2 * len(EPS) * len(data)
    assert all(list(r) == list(rows[0]) for r in rows)
    seeds = summaries.seed_summary([tr, tr], 0.04)
    assert seeds["psnr_drop_seed_sd"] == 0.0 and len(seeds["psnr_drop_per_seed"]) == 2
    sub = tr.subset([4])
    assert sub.slice_ids == [4] and torch.equal(sub.adv[:, 0], tr.adv[:, 2])


# --------------------------------------------------------------------------------------------
# figures


def test_zoom_window_finds_planted_difference():
    g = np.random.default_rng(0)
    diff = g.normal(0, 0.01, (64, 64))
    diff[40:48, 10:18] += 0.5  # planted 8 x 8 change
    assert figures.zoom_window(diff, 8) == (40, 10)
    r, c = figures.zoom_window(torch.tensor(diff), 16)
    assert r <= 40 and r + 16 >= 48 and c <= 10 and c + 16 >= 18
    single = np.zeros((32, 32))
    single[0, 31] = -1.0  # sign does not matter; a corner is reachable
    assert figures.zoom_window(single, 4) == (0, 28)
    with pytest.raises(ValueError):
        figures.zoom_window(diff, 65)


def test_figures_draw(data, tiny, tmp_path):
    import matplotlib.pyplot as plt

    res = attack_runs.run_whitebox(
        tiny, "tiny", data, EPS, _settings(), profile=T, cache=AttackCache(T, root=tmp_path)
    )
    ctl = control.control_deltas(res, data.mask, data.slice_ids, seed=0)
    ev = scoring.evaluate_attack(
        targets.Target("resunetpp", tiny, data.mask), data, res, source="x", controls=ctl
    )
    fig = figures.plot_white_box(
        {"resunetpp": ev}, {"resunetpp": res}, {"resunetpp": summaries.whitebox_summary(ev)}, 1
    )
    plt.close(fig)
    fig = figures.plot_attack_convergence(
        res.loss_history[:, -1], 2, {1.0: res.loss_history[:, -1]}
    )
    plt.close(fig)
    fig = figures.plot_small_eps_transfer(
        data.images[0], ev.clean[0], {0.01: ev.adv[1, 0], 0.04: ev.adv[2, 0]}, {0.01: ev.rand[1, 0]}
    )
    plt.close(fig)
    table = {"resunetpp": {"resunetpp": summaries.transfer_summary(ev)}}
    fig = figures.plot_transfer_curves(table, ["resunetpp"], ["resunetpp", "irim"], 0.04)
    plt.close(fig)


def test_subset_result_and_pending(data, tiny, diff, tmp_path):
    res = attack_runs.run_whitebox(
        tiny, "tiny", data, EPS, _settings(), profile=T, cache=AttackCache(T, root=tmp_path)
    )
    sub = selection.subset_result(res, data, [4, 0], (0.04, 0.0))
    assert sub.eps.tolist() == [0.04, 0.0]
    assert torch.equal(sub.delta[0, 0], res.delta[2, 2]) and torch.equal(sub.y_adv[1, 1], data.y[0])
    assert sub.loss_history.shape == (res.loss_history.shape[0], 2, 2)
    part = data.take([4, 0])
    bud = control.budget_controls(part.kspace, part.mask, part.slice_ids, sub.eps, seed=0)
    target = targets.Target("diffusion", diff, data.mask)
    keys = scoring.pending_keys(target, part, sub, bud)
    # clean (2) + adversarial at 0.04 (2) + controls at 0.04 (2); eps 0 repeats the clean input
    assert len(keys) == 6
    ev = scoring.evaluate_attack(target, part, sub, source="tiny", controls=bud)
    assert target.computed == 6 and not scoring.pending_keys(target, part, sub, bud)
    assert torch.equal(ev.adv[1], ev.clean)


def test_step_size_scores_normalise_each_problem() -> None:
    # two problems of very different scale; lr 1 wins the first, lr 3 the second
    h1 = torch.tensor([[0.0, 0.0], [5.0, 50.0], [10.0, 60.0]])
    h3 = torch.tensor([[0.0, 0.0], [8.0, 100.0], [6.0, 90.0]])  # best-so-far keeps 8 and 100
    curves, scores = whitebox.step_size_scores({1.0: h1, 3.0: h3})
    assert scores[1.0] == pytest.approx((1.0 + 0.6) / 2)
    assert scores[3.0] == pytest.approx((0.8 + 1.0) / 2)
    assert torch.all(curves[3.0][1:] >= curves[3.0][:-1])  # best so far never falls
    assert float(torch.stack([c[-1] for c in curves.values()]).amax(0).min()) == 1.0
    with pytest.raises(ValueError, match="one \\[steps"):
        whitebox.step_size_scores({1.0: h1, 3.0: h3[:, :1]})
    with pytest.raises(ValueError, match="no step sizes"):
        whitebox.step_size_scores({})


def _old_recon_key(target: targets.Target, y1: Tensor, slice_id: int) -> str:
    """The reconstruction cache's key before mripkg.io.cache_key, written out literally."""
    sid = f"|slice={int(slice_id)}" if target.stochastic else ""
    h = hashlib.sha256((target.tag + sid).encode())
    h.update(targets._y_digest(y1))
    return h.hexdigest()[:32]


@pytest.mark.parametrize("stochastic", [True, False])
def test_recon_cache_written_under_the_old_key_still_reads(data, diff, tiny, tmp_path, stochastic):
    """An entry stored under the old key scheme is found (not recomputed) through the adapter;
    new entries take the new key, and the two schemes name the entry differently."""
    model = diff if stochastic else tiny
    cache = targets.ReconCache(tmp_path / "recons")
    old = targets.Target("m", model, data.mask, weights_id="w", cache=cache)
    marks = {}
    for i, sid in enumerate(data.slice_ids):
        key = _old_recon_key(old, data.y[i], sid)
        assert key != old.key(data.y[i], sid)
        marks[sid] = torch.full((1, N, N), float(i + 1))  # no model gives this
        cache.save("m", key, marks[sid])
    t = targets.Target("m", model, data.mask, weights_id="w", cache=cache)
    assert t.pending(data.y, data.slice_ids) == 0
    out = t(data.y, data.slice_ids)
    assert t.computed == 0
    assert all(torch.equal(out[i], marks[s]) for i, s in enumerate(data.slice_ids))
    # a new entry is written under the new key only
    fresh = targets.Target("m", model, data.mask, weights_id="v", cache=cache)
    fresh(data.y[:1], data.slice_ids[:1])
    assert fresh.computed == 1
    assert cache.path("m", fresh.key(data.y[0], data.slice_ids[0])).is_file()
    assert not cache.path("m", _old_recon_key(fresh, data.y[0], data.slice_ids[0])).is_file()
