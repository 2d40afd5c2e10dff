"""Tests of mripkg.claims: the paired statistics, every scorecard rule on synthetic inputs (a
case that reproduces, one that does not, one that partly does), the scorecard files and table;
and the scipy-based statistics of mripkg.artifacts against the hand-written ones they replaced."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import Tensor

from mripkg import metrics
from mripkg.evaluation import artifacts, stats
from mripkg.evaluation.scoring import Evaluation
from mripkg.profiles import QUICK, SMOKE, Profile
from mripkg.report import claims

N = 48


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# paired statistics and the old verdict helpers


def test_excess_over_control_is_a_paired_t_interval():
    clear = stats.excess_over_control(torch.tensor([2.0, 2.1, 1.9]), torch.zeros(3))
    assert clear["clear"] and abs(clear["excess"] - 2.0) < 1e-6
    assert clear["low"] < 2.0 < clear["high"] and clear["p"] < 0.01
    noisy = stats.excess_over_control(torch.tensor([1.0, -1.0, 0.2]), torch.zeros(3))
    assert not noisy["clear"] and noisy["low"] < 0
    tiny_effect = stats.excess_over_control(torch.full((5,), 0.05), torch.zeros(5))
    assert not tiny_effect["clear"]  # below the minimum effect size
    assert tiny_effect["low"] == tiny_effect["high"] == pytest.approx(0.05)
    two = stats.excess_over_control(torch.tensor([2.0, 2.1]), torch.zeros(2))
    assert not two["clear"]  # too few slices for a verdict
    # mean - 2 SE > 0 (the old rule) but the 95 % t interval on 4 slices reaches below 0
    d = torch.tensor([0.5, 0.1, 0.6, 0.2])
    old_rule = float(d.mean() - 2 * d.std() / 2) > 0
    weak = stats.excess_over_control(d, torch.zeros(4))
    assert old_rule and not weak["clear"] and weak["low"] < 0
    assert stats.clear_word(two) == "too few slices"
    assert stats.clear_word(clear) == "clear" and stats.clear_word(noisy) == "not clear"
    assert claims.claim_verdict([clear, clear]) == "reproduced"
    assert claims.claim_verdict([clear, noisy]) == "not reproduced"
    assert claims.claim_verdict([clear, two]).startswith("undecided")
    assert claims.claim_verdict([]).startswith("undecided")
    with pytest.raises(ValueError, match="shape"):
        stats.excess_over_control(torch.zeros(3), torch.zeros(4))


def test_falls_with_eps():
    assert claims.falls_with_eps([30.0, 29.0, 27.0])
    assert claims.falls_with_eps([30.0, 30.03, 27.0])  # within tolerance
    assert not claims.falls_with_eps([30.0, 31.0, 27.0])
    assert not claims.falls_with_eps([30.0, 30.0])


def test_intervals():
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    m, lo, hi = stats.mean_interval(v)
    assert m == 3.0 and lo < 3.0 < hi
    assert stats.mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(x) for x in stats.mean_interval([1.0])[1:])
    with pytest.raises(ValueError, match="NaN"):
        stats.mean_interval([1.0, math.nan])
    a = stats.bootstrap_interval(lambda i: v[i].mean(-1), len(v), seed=3)
    b = stats.bootstrap_interval(lambda i: v[i].mean(-1), len(v), seed=3)
    assert a == b  # seeded
    assert a[0] == 3.0 and a[1] < 3.0 < a[2]
    const = stats.bootstrap_interval(lambda i: np.ones(i.shape[:-1]), 6, seed=0)
    assert const == (1.0, 1.0, 1.0)


def test_rows_verdict():
    row = {"holds": True, "n": 8}
    no = {"holds": False, "n": 8}
    assert claims.rows_verdict([row, row]) == claims.REPRODUCED
    assert claims.rows_verdict([row, no]) == claims.PARTLY
    assert claims.rows_verdict([no, no]) == claims.NOT_REPRODUCED
    assert claims.rows_verdict([{"holds": True, "n": 2}]).startswith("undecided")


# --------------------------------------------------------------------------------------------
# scipy statistics equal the hand-written ones they replaced


def test_scipy_moments_and_auc_equal_the_hand_written_versions():
    g = _gen(0)
    a = torch.randn(6, 1, 32, 32, generator=g, dtype=torch.float64).pow(3)
    region = torch.rand(6, 1, 32, 32, generator=g) < 0.7
    st = artifacts.artifact_stats(a, a, region)
    w = region.to(torch.float64)
    n = w.flatten(1).sum(1)
    mean = (a * w).flatten(1).sum(1) / n
    c = (a - mean.view(-1, 1, 1, 1)) * w
    m2, m3, m4 = (c.pow(k).flatten(1).sum(1) / n for k in (2, 3, 4))
    assert torch.allclose(st["skewness"], m3 / m2.pow(1.5), rtol=1e-9)
    assert torch.allclose(st["excess_kurtosis"], m4 / m2.pow(2) - 3, rtol=1e-9)
    neg = torch.randn(20, generator=g).round(decimals=1)
    pos = (torch.randn(15, generator=g) + 0.7).round(decimals=1)  # with ties
    diff = pos[:, None] - neg[None, :]
    old = float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())
    assert artifacts.auc(neg, pos) == pytest.approx(old, abs=1e-12)
    assert artifacts.auc([0.0, 1.0], [2.0, 3.0]) == 1.0 and artifacts.auc([1.0], [1.0]) == 0.5
    rows = stats.auc_rows(np.stack([neg.numpy()] * 2), np.stack([pos.numpy()] * 2))
    assert rows.shape == (2,) and rows == pytest.approx([old, old])


# --------------------------------------------------------------------------------------------
# grey matter, local damage, posterior spread


def _brain(b: int = 4, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Concentric phantom: CSF ring (dark), grey-matter ring (middle), white matter (bright)
    inside a head disc, with a little noise; returns ``(gt, head, true grey matter)``."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, N), torch.linspace(-1, 1, N), indexing="ij")
    r = (yy**2 + xx**2).sqrt()
    head = r < 0.9
    gm = (r >= 0.45) & (r < 0.7)
    img = torch.where(r < 0.45, 0.9, torch.where(gm, 0.55, 0.2)) * head
    noise = 0.02 * torch.randn(b, 1, N, N, generator=_gen(seed), dtype=torch.float32)
    gt = (img[None, None] + noise * head).clamp(0, 1)
    expand = (b, 1, N, N)
    return gt, head[None, None].expand(expand).clone(), gm[None, None].expand(expand).clone()


def test_grey_matter_mask_finds_the_middle_class():
    gt, head, gm = _brain()
    mask = artifacts.grey_matter_mask(gt, head)
    assert mask.shape == gt.shape and mask.dtype == torch.bool
    assert not (mask & ~head).any()
    agree = (mask == gm)[head].double().mean()
    assert agree > 0.98
    with pytest.raises(ValueError, match="does not match"):
        artifacts.grey_matter_mask(gt, head[:, :, :-1])
    with pytest.raises(ValueError, match="distinct"):
        artifacts.grey_matter_mask(torch.ones_like(gt) * head, head)


def test_worst_window_ssim_drop_sees_a_local_distortion():
    gt, _, _ = _brain(2)
    clean = gt.clone()
    local = clean.clone()
    patch = 0.5 + 0.1 * torch.randn(2, 1, 16, 16, generator=_gen(1), dtype=torch.float64)
    local[:, :, 10:26, 10:26] = patch.clamp(0.1, 0.8)  # inside the range: same normalisation
    d_local = stats.worst_window_ssim_drop(clean, local, gt)
    whole = metrics.ssim(clean, gt) - metrics.ssim(local, gt)  # the image-wide drop
    assert d_local.shape == (2,) and (d_local > 5 * whole).all() and (whole > 0).all()
    assert (stats.worst_window_ssim_drop(clean, clean, gt) == 0).all()
    with pytest.raises(ValueError, match="window"):
        stats.worst_window_ssim_drop(clean, local, gt, size=N + 1)


def test_posterior_sd_detects_less_certain_samples():
    region = torch.ones(3, 1, 8, 8, dtype=torch.bool)
    calm = 0.01 * torch.randn(4, 3, 1, 8, 8, generator=_gen(0), dtype=torch.float64)
    wild = 0.1 * torch.randn(4, 3, 1, 8, 8, generator=_gen(1), dtype=torch.float64)
    s_calm, s_wild = artifacts.posterior_sd(calm, region), artifacts.posterior_sd(wild, region)
    assert s_calm.shape == (3,) and (s_wild > s_calm).all()
    assert artifacts.auc(s_calm, s_wild) == 1.0
    with pytest.raises(ValueError, match="S >= 2"):
        artifacts.posterior_sd(calm[:1], region)
    det = artifacts.spread_detection({"0.00": calm, "0.08": wild, "0.04": calm}, region, "0.00")
    assert det["0.08"]["auc"] == 1.0 and det["0.04"]["auc"] == 0.5
    assert "auc" not in det["0.00"] and det["0.00"]["spread_mean"] < det["0.08"]["spread_mean"]
    with pytest.raises(KeyError):
        artifacts.spread_detection({"0.08": wild}, region, "0.00")


# --------------------------------------------------------------------------------------------
# synthetic evaluations


def _evaluation(
    gt: Tensor,
    clean: Tensor,
    adv: Tensor,
    rand: Tensor | None,
    eps: list[float],
    source: str = "s",
    target: str = "t",
) -> Evaluation:
    e, b = adv.shape[:2]

    def grid(x: Tensor) -> tuple[Tensor, Tensor]:
        flat = x.reshape(e * b, *x.shape[2:])
        ref = gt[None].expand(e, *gt.shape).reshape(e * b, *gt.shape[1:])
        return metrics.psnr(flat, ref).view(e, b), metrics.ssim(flat, ref).view(e, b)

    psnr, ssim = grid(adv)
    ev = Evaluation(
        source=source,
        target=target,
        route="direct",
        eps=eps,
        slice_ids=list(range(b)),
        seed=0,
        clean=clean,
        adv=adv,
        psnr_clean=metrics.psnr(clean, gt),
        ssim_clean=metrics.ssim(clean, gt),
        psnr=psnr,
        ssim=ssim,
        change=(adv - clean[None]).flatten(2).norm(dim=2),
        meas_change=torch.ones(e, b),
    )
    if rand is not None:
        ev.rand = rand
        ev.psnr_rand, ev.ssim_rand = grid(rand)
        ev.change_rand = (rand - clean[None]).flatten(2).norm(dim=2)
        ev.meas_change_rand = torch.ones(e, b)
    return ev


def _unit(x: Tensor) -> Tensor:
    return x / x.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _grey_case(in_gm: bool, seed_scale: float, seed: int = 0) -> tuple[Evaluation, Tensor]:
    """Diffusion evaluation at eps (0.01, 0.02) of 6 slices: the perturbation's change lies in
    grey matter (``in_gm``) or in the rest of the head; ``other_seed`` differs
    from the clean reconstruction by ``seed_scale`` times the control's size."""
    gt, head, gm = _brain(6, seed)
    g = _gen(seed + 10)
    clean = gt + 0.01 * torch.randn(gt.shape, generator=g, dtype=torch.float32) * head
    size = 0.5
    adv, rand = [], []
    for _ in range(2):
        z = torch.randn(clean.shape, generator=g, dtype=torch.float32)
        where = gm if in_gm else head & ~gm  # in grey matter, or everywhere else
        adv.append(clean + size * _unit(z * where))
        z2 = torch.randn(clean.shape, generator=g, dtype=torch.float32)
        rand.append(clean + size * _unit(z2 * head))
    ev = _evaluation(
        gt, clean, torch.stack(adv), torch.stack(rand), [0.01, 0.02], target="diffusion"
    )
    z3 = torch.randn(clean.shape, generator=g, dtype=torch.float32)
    other = clean + seed_scale * size * _unit(z3 * head)
    return ev, other


def test_claim_grey_matter_rule():
    gt, head, _ = _brain(6, 0)
    ev_yes, other_small = _grey_case(True, 0.1)
    ev_no, other_no = _grey_case(False, 0.1, seed=1)
    yes = claims.claim_grey_matter({"resunetpp": ev_yes}, other_small, gt, head, seed=0)
    assert yes["verdict"] == claims.REPRODUCED and len(yes["rows"]) == 2
    r = yes["rows"][0]
    assert r["low"] > 1 and r["excess_energy"] > r["seed_energy"]
    assert set(r["window_ssim_drop"]) == {"mean", "low", "high"}
    assert "window SSIM drop (control)" in claims.claim_rows_markdown(yes)
    gt1, head1, _ = _brain(6, 1)
    no = claims.claim_grey_matter({"irim": ev_no}, other_no, gt1, head1, seed=0)
    assert no["verdict"] == claims.NOT_REPRODUCED
    assert all(r["high"] < 1 for r in no["rows"])
    # the energy ratio is there, but drawing another sampler seed changes grey matter more
    _, other_big = _grey_case(True, 3.0)
    partly = claims.claim_grey_matter(
        {"resunetpp": ev_yes, "irim": _grey_case(True, 0.1)[0]}, other_big, gt, head
    )
    assert partly["verdict"] == claims.PARTLY
    assert all(r["ratio_above_1"] and not r["holds"] for r in partly["rows"])
    mixed = claims.claim_grey_matter(
        {"resunetpp": ev_yes, "irim": _grey_case(False, 0.1)[0]}, other_small, gt, head
    )
    assert mixed["verdict"] == claims.PARTLY
    three = claims.claim_small_eps(mixed, "resunetpp", 0.01)
    assert three["claim"] == "3" and len(three["rows"]) == 1
    assert three["verdict"] == claims.REPRODUCED
    with pytest.raises(KeyError):
        claims.claim_small_eps(mixed, "resunetpp", 0.05)
    ev_yes.rand = None
    with pytest.raises(ValueError, match="control"):
        claims.claim_grey_matter({"resunetpp": ev_yes}, other_small, gt, head)


def _drop_eval(adv_drop: list[float], ctl_drop: list[float], s: str, t: str) -> Evaluation:
    b = len(adv_drop)
    gt = torch.zeros(b, 1, 16, 16)
    ev = _evaluation(gt, gt, gt[None].clone(), gt[None].clone(), [0.04], s, t)
    ev.psnr_clean = torch.full((b,), 30.0, dtype=torch.float64)
    ev.psnr = (30.0 - torch.tensor(adv_drop, dtype=torch.float64))[None]
    ev.psnr_rand = (30.0 - torch.tensor(ctl_drop, dtype=torch.float64))[None]
    return ev


def test_claim_transfer_rule():
    strong = [1.0, 1.2, 0.9, 1.1, 1.0]
    ctl = [0.2, 0.3, 0.2, 0.25, 0.2]
    none = [0.2, 0.35, 0.1, 0.3, 0.2]
    yes = claims.claim_transfer(
        {
            ("resunetpp", "irim"): _drop_eval(strong, ctl, "resunetpp", "irim"),
            ("irim", "diffusion"): _drop_eval(strong, ctl, "irim", "diffusion"),
        }
    )
    assert yes["verdict"] == claims.REPRODUCED
    assert yes["rows"][0]["value"] == pytest.approx(0.81, abs=1e-9) and yes["rows"][0]["low"] > 0
    no = claims.claim_transfer({("a", "b"): _drop_eval(none, ctl, "a", "b")})
    assert no["verdict"] == claims.NOT_REPRODUCED
    partly = claims.claim_transfer(
        {("a", "b"): _drop_eval(strong, ctl, "a", "b"), ("b", "a"): _drop_eval(none, ctl, "b", "a")}
    )
    assert partly["verdict"] == claims.PARTLY
    with pytest.raises(ValueError, match="white-box"):
        claims.claim_transfer({("a", "a"): _drop_eval(strong, ctl, "a", "a")})


def _stats(seed: int, shift: float, b: int = 6, ids: list[int] | None = None) -> dict:
    """Per-slice claim-4 statistics: ``shift`` > 0 makes the artifact more structured."""
    g = np.random.default_rng(seed)
    jitter = g.normal(0, 0.01, b)
    return {
        "slice_ids": list(range(b)) if ids is None else ids,
        "neighbour_corr": 0.3 + shift + jitter,
        "spectral_flatness": 0.5 - shift / 2 + jitter,
        "excess_kurtosis": 0.5 + 5 * shift + jitter,
        "edge_corr": 0.1 + shift / 2 + jitter,
        "sigma_clean": np.linspace(0.01, 0.02, b),
        "sigma_perturbed": np.linspace(0.01, 0.02, b) + (0.02 if shift == 0 else -0.0) + jitter,
    }


def test_claim_noise_like_rule():
    noise_like = _stats(0, 0.0)
    noise_like["sigma_perturbed"] = noise_like["sigma_clean"] - 0.001  # undetectable
    structured = _stats(1, 0.4)
    structured["sigma_perturbed"] = structured["sigma_clean"] + 0.05  # detected every time
    per = {"diff": noise_like, "sup": structured}
    yes = claims.claim_noise_like(per, ["diff"], ["sup"], eps=0.08, seed=0)
    assert [r["statistic"] for r in yes["rows"]] == [c[0] for c in claims.CLAIM4_CRITERIA]
    assert yes["verdict"] == claims.REPRODUCED
    no = claims.claim_noise_like(
        {"diff": structured, "sup": noise_like}, ["diff"], ["sup"], eps=0.08
    )
    assert no["verdict"] == claims.NOT_REPRODUCED
    # white in texture and marginal, but detected as well as the supervised artifacts
    partly_d = dict(noise_like, sigma_perturbed=structured["sigma_perturbed"])
    partly = claims.claim_noise_like(
        {"diff": partly_d, "sup": structured}, ["diff"], ["sup"], eps=0.08
    )
    assert partly["verdict"] == claims.PARTLY
    by = {r["statistic"]: r for r in partly["rows"]}
    assert not by["detection_auc"]["holds"] and by["neighbour_corr"]["holds"]
    # the diffusion slices are a subset of the supervised ones: compared on the common slices
    sub = _stats(2, 0.0, b=3, ids=[0, 2, 4])
    sub["sigma_perturbed"] = sub["sigma_clean"] - 0.001
    common = claims.claim_noise_like({"d": sub, "s": structured}, ["d"], ["s"], eps=0.08)
    assert all(r["n"] == 3 for r in common["rows"])


def test_claim4_point_criteria():
    rows = {
        "noise": {
            "neighbour_corr": 0.0,
            "spectral_flatness": 0.56,
            "excess_kurtosis": 0.1,
            "edge_corr": 0.0,
            "detection_auc": 0.5,
        },
        "smooth": {
            "neighbour_corr": 0.9,
            "spectral_flatness": 0.05,
            "excess_kurtosis": 3.0,
            "edge_corr": 0.3,
            "detection_auc": 0.9,
        },
    }
    crit = claims.claim4_criteria(rows, ["noise"], ["smooth"])
    assert [c["statistic"] for c in crit] == [c[0] for c in claims.CLAIM4_CRITERIA]
    assert claims.claim4_verdict(crit) == claims.REPRODUCED
    swapped = claims.claim4_criteria(rows, ["smooth"], ["noise"])
    assert not any(c["holds"] for c in swapped)
    assert claims.claim4_verdict(swapped) == claims.NOT_REPRODUCED
    rows["noise"]["detection_auc"] = 0.95
    assert claims.claim4_verdict(claims.claim4_criteria(rows, ["noise"], ["smooth"])) == (
        claims.PARTLY
    )


def _psnr_eval(psnr: Tensor, eps: list[float]) -> Evaluation:
    e, b = psnr.shape
    gt = torch.zeros(b, 1, 16, 16)
    ev = _evaluation(gt, gt, gt[None].expand(e, *gt.shape).clone(), None, eps)
    ev.psnr = psnr.to(torch.float64)
    ev.psnr_clean = torch.full((b,), 30.0, dtype=torch.float64)
    return ev


def test_claim_monotone_rule():
    eps = [0.01, 0.02, 0.04, 0.08]  # no 0: the clean PSNR is prepended
    g = _gen(0)
    falling = 29.5 - 50 * torch.tensor(eps)[:, None] + 0.01 * torch.randn(4, 6, generator=g)
    flat = 30.0 + 0.3 * torch.randn(4, 6, generator=g)
    assert (
        stats.slice_spearman([0.0, *eps], torch.cat([torch.full((1, 6), 30.0), falling])).max() < 0
    )
    yes = claims.claim_monotone({"a": _psnr_eval(falling, eps), "b": _psnr_eval(falling, eps)})
    assert yes["verdict"] == claims.REPRODUCED and yes["rows"][0]["value"] == pytest.approx(-1.0)
    assert yes["rows"][0]["eps"][0] == "0.00"
    no = claims.claim_monotone({"a": _psnr_eval(flat, eps)})
    assert no["verdict"] == claims.NOT_REPRODUCED
    partly = claims.claim_monotone({"a": _psnr_eval(falling, eps), "b": _psnr_eval(flat, eps)})
    assert partly["verdict"] == claims.PARTLY
    with pytest.raises(ValueError, match="3 eps"):
        stats.slice_spearman([0.0, 0.1], torch.zeros(2, 3))


# --------------------------------------------------------------------------------------------
# the scorecard


def _card(profile: Profile) -> dict:
    strong = [1.0, 1.2, 0.9, 1.1, 1.0]
    ctl = [0.2, 0.3, 0.2, 0.25, 0.2]
    two = claims.claim_transfer(
        {("irim", "diffusion"): _drop_eval(strong, ctl, "irim", "diffusion")}
    )
    irim = _drop_eval(strong, ctl, "irim", "irim")
    irim.eps = [0.08]
    return claims.scorecard(profile, [two], authors=claims.authors_number(irim))


def test_scorecard_files_and_table(tmp_path):
    card = _card(QUICK)
    assert card["evidence"] and card["claims"][0]["verdict"] == claims.REPRODUCED
    assert card["authors_number"]["paper"]["drop"] == pytest.approx(4.64)
    assert card["authors_number"]["ours"]["drop"]["mean"] == pytest.approx(1.04)
    path = claims.write_scorecard(tmp_path / "claims.json", card)
    raw = json.loads(path.read_text())
    assert "machine_fingerprint" in raw  # every results file says where it was computed
    back = {k: v for k, v in raw.items() if k != "machine_fingerprint"}
    assert back == json.loads(json.dumps(card))
    assert [p.name for p in tmp_path.iterdir()] == ["claims.json"]  # no temporary left
    md = claims.scorecard_markdown(back)
    assert "| 2 " in md and "reproduced" in md and "30.10 -> 25.46" in md
    assert "not evidence" not in md
    assert "i-RIM -> diffusion" in claims.claim_rows_markdown(back["claims"][0])


def test_smoke_scorecard_is_not_evidence():
    card = _card(SMOKE)
    c = card["claims"][0]
    assert c["verdict"] == claims.NOT_EVIDENCE and c["rule_verdict"] == claims.REPRODUCED
    assert "not evidence" in claims.scorecard_markdown(card)


def test_excess_text_says_the_interval_and_the_word():
    ev = _drop_eval([1.0, 1.2, 0.9, 1.1, 1.0], [0.2, 0.3, 0.2, 0.25, 0.2], "a", "b")
    ex, text = claims.excess_text(ev, 0.04)
    assert ex["clear"] and text.endswith(": clear") and "95 % interval [" in text
    assert "5 slices" in text and str(stats.MIN_SLICES) in claims.clear_rule()
