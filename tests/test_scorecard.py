"""The scorecard of issue 17 on synthetic evaluations (mripkg.scorecard)."""

import nibabel as nib
import numpy as np
import pytest
import torch

from mripkg.evaluation.scoring import Evaluation
from mripkg.profiles import QUICK, SMOKE
from mripkg.report import rules, scorecard

B, H = 8, 32


def _gt() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, H), indexing="ij")
    rings = (torch.sin(6 * (xx**2 + yy**2).sqrt()) > 0).float() * 0.5 + 0.3
    return (rings + 0.02 * torch.rand(B, 1, H, H, generator=g)).clamp(0, 1)


def _eval(adv_art, ctl_art, seed, target="diffusion", eps=(0.01, 0.02, 0.04, 0.08)):
    """An Evaluation whose artifacts at every eps are ``adv_art(e, g)`` / ``ctl_art(e, g)``."""
    g = torch.Generator().manual_seed(1000 + seed)
    clean = _gt() + 0.01 * torch.randn(B, 1, H, H, generator=g)
    adv = torch.stack([clean + adv_art(e, g) for e in eps])
    rand = torch.stack([clean + ctl_art(e, g) for e in eps])
    gt = _gt()

    def psnr(x):
        mse = (x - gt).pow(2).flatten(-3).mean(-1).double()
        return -10 * torch.log10(mse)

    z = torch.zeros(len(eps), B, dtype=torch.float64)
    return Evaluation(
        "src", target, "direct", list(eps), list(range(0, 2 * B, 2)), seed, clean, adv,
        psnr(clean), torch.ones(B), psnr(adv), torch.ones(len(eps), B), z, z,
        rand=rand, psnr_rand=psnr(rand), ssim_rand=torch.ones(len(eps), B),
        change_rand=z, meas_change_rand=z,
    )  # fmt: skip


def _noise(scale):
    return lambda e, g: scale * e * torch.randn(B, 1, H, H, generator=g)


def _edges(scale):
    gt = _gt()
    gy, gx = torch.gradient(gt[:, 0], dim=(1, 2))
    edge = (gx**2 + gy**2).sqrt()[:, None]
    return lambda e, g: (
        scale * e * (edge / edge.std()) * (1 + 0.1 * torch.randn(B, 1, H, H, generator=g))
    )


def test_claim2_needs_three_diffusion_seeds():
    evs = {
        ("resunetpp", "irim"): [_eval(_noise(3.0), _noise(1.0), 0, "irim")],
        ("resunetpp", "diffusion"): [_eval(_noise(3.0), _noise(1.0), s) for s in range(3)],
    }
    c = scorecard.claim_transfer(evs)
    assert c["verdict"] == rules.REPRODUCED, c["rows"]
    assert c["evidence_base"] == {
        "test_subjects": 1, "slices": B, "sampler_seeds": 3, "interval_unit": "slices"
    }  # fmt: skip
    assert c["rule"] == rules.RULES["2"]
    evs[("resunetpp", "diffusion")] = evs[("resunetpp", "diffusion")][:2]
    assert scorecard.claim_transfer(evs)["verdict"] == rules.PARTLY
    with pytest.raises(ValueError, match="white-box"):
        scorecard.claim_transfer({("irim", "irim"): evs[("resunetpp", "irim")]})


def test_claim1_grey_matter_rule_and_descriptive_columns():
    gt = _gt()
    head = torch.ones_like(gt, dtype=torch.bool)
    grey = gt > 0.5

    def in_grey(scale):
        return lambda e, g: scale * e * grey * torch.randn(B, 1, H, H, generator=g) + 1e-4

    evs = {"resunetpp": [_eval(in_grey(4.0), _noise(0.5), s) for s in range(3)]}
    c = scorecard.claim_grey_matter(evs, gt, head, grey, eps=(0.01, 0.02))
    assert [r["holds"] for r in c["rows"]] == [True, True]
    assert c["verdict"] == rules.REPRODUCED
    r = c["rows"][0]
    assert r["towards_grey_matter"] and r["grey_share"]["low"] > r["grey_share_control"]["high"]
    assert r["whole_head_ratio"]["mean"] > 1
    # the same artifact as the control: no claim
    same = {"resunetpp": [_eval(_noise(1.0), _noise(1.0), s) for s in range(3)]}
    c = scorecard.claim_grey_matter(same, gt, head, grey, eps=(0.01,), claim="3")
    assert c["verdict"] == rules.NOT_REPRODUCED and c["rule"] == rules.RULES["3"]


def test_claim4_noise_like_against_edge_aligned_supervised_artifacts():
    gt = _gt()
    head = torch.ones_like(gt, dtype=torch.bool)
    sup = {m: _eval(_edges(2.0), _noise(1.0), 0, m) for m in ("resunetpp", "irim")}
    dif = {s: [_eval(_noise(2.0), _noise(1.0), k) for k in range(3)] for s in ("resunetpp", "irim")}
    c = scorecard.claim_noise_like(sup, dif, gt, head)
    assert len(c["rows"]) == 8  # 2 supervised x 2 sources x 2 eps
    assert c["verdict"] == rules.REPRODUCED
    # supervised artifacts as noise-like as the diffusion's: not reproduced
    sup_noise = {m: _eval(_noise(2.0), _noise(1.0), 0, m) for m in ("resunetpp", "irim")}
    assert scorecard.claim_noise_like(sup_noise, dif, gt, head)["verdict"] == rules.NOT_REPRODUCED


def test_noise_like_values():
    gt = _gt()
    head = torch.ones_like(gt, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    a, c = torch.randn(B, 1, H, H, generator=g), torch.randn(B, 1, H, H, generator=g)
    v = scorecard.noise_like_values(a, 5 * c, gt, head)  # the size does not count
    assert v["ks"].max() < 0.1 and v["kurt"].max() < 0.5 and np.abs(v["edge"]).max() < 0.2
    heavy = a**3
    assert (scorecard.noise_like_values(heavy, c, gt, head)["ks"] > v["ks"]).all()


def test_scorecard_header_smoke_and_markdown():
    evs = {("resunetpp", "irim"): [_eval(_noise(3.0), _noise(1.0), 0, "irim")]}
    c2 = scorecard.claim_transfer(evs)
    card = scorecard.scorecard(SMOKE, [c2], n_subjects=1, exploratory={"criteria": []})
    assert card["header"] == "one test brain: intervals are over its slices, not over subjects"
    assert card["claims"][0]["verdict"] == rules.NOT_EVIDENCE
    assert card["claims"][0]["rule_verdict"] == rules.REPRODUCED
    assert card["exploratory"]["note"].startswith("exploratory")
    md = scorecard.scorecard_markdown(card)
    assert card["header"] in md and rules.RULES["2"] in md and "not evidence" in md
    quick = scorecard.scorecard(QUICK, [c2], n_subjects=12)
    assert quick["header"].startswith("12 test subjects")
    assert quick["claims"][0]["verdict"] == rules.REPRODUCED


def test_authors_number_in_added_mse_and_amplification():
    ev = _eval(_noise(3.0), _noise(1.0), 0, "irim")
    a = scorecard.authors_comparison(ev)
    p, o = a["paper"], a["ours"]
    assert p["added_mse"] == pytest.approx(10 ** (-2.546) - 10 ** (-3.01))
    assert o["added_mse"]["mean"] > o["added_mse_control"]["mean"] > 0
    assert o["amplification_over_control"] > 1


def _write_folder(path, n=15):
    for i in range(n):
        g = np.random.default_rng(i)
        zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, 24)] * 3, indexing="ij")
        vol = ((xx**2 + yy**2 + zz**2) < 0.7) * (0.5 + 0.5 * g.random((24, 24, 24)))
        nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), str(path / f"s{i:02d}.nii"))


def test_user_folder_gives_intervals_over_subjects(tmp_path):
    from mripkg.data import load_dataset
    from mripkg.profiles import SMOKE

    _write_folder(tmp_path)
    test = load_dataset(SMOKE, tmp_path)["test"]
    n, ordered = scorecard.sampling_unit(test.subjects)
    assert n == len(test) == 2 and not ordered
    assert scorecard.header(n) == "2 test subjects, one slice each: intervals are over subjects"
    embedded = load_dataset(SMOKE)["test"]
    assert scorecard.sampling_unit(embedded.subjects) == (1, True)


def test_sampler_sensitivity_table():
    evs = {
        "projection (paper)": {"resunetpp": [_eval(_noise(2.0), _noise(1.0), s) for s in range(3)]},
        "DDS (ablation)": {"resunetpp": [_eval(_noise(4.0), _noise(3.0), 0)]},
    }
    rows = scorecard.sampler_sensitivity_rows(evs)
    assert len(rows) == 8 and {r["sampler"] for r in rows} == set(evs)
    assert [r["eps"] for r in rows[:4]] == ["0.01", "0.02", "0.04", "0.08"]
    assert rows[0]["seeds"] == 3 and rows[4]["seeds"] == 1
    assert float(rows[3]["transfer / control"]) > 1


def test_build_card_has_every_claim_and_is_json():
    import json

    gt = _gt()
    head = torch.ones_like(gt, dtype=torch.bool)
    grey = gt > 0.5
    sup = {m: _eval(_edges(2.0), _noise(1.0), 0, m) for m in ("resunetpp", "irim")}
    dif = {s: [_eval(_noise(2.0), _noise(1.0), k) for k in range(3)] for s in sup}
    transfer = {("resunetpp", "irim"): sup["irim"], ("irim", "resunetpp"): sup["resunetpp"]}
    c5 = {"claim": "5", "text": "t", "statistic": "s", "rows": [], "verdict": "x", "slices": [0]}
    card = scorecard.build_card(
        QUICK, diffusion=dif, supervised_whitebox=sup, supervised_transfer=transfer,
        claim5=c5, gt=gt, head=head, grey=grey, subjects=["colin27"] * B, authors=sup["irim"],
        exploratory={"claim4_criteria": [{"criterion": "AUC", "holds": True}]},
    )  # fmt: skip
    assert [c["claim"] for c in card["claims"]] == ["1", "2", "3", "4", "5"]
    assert all(c["rule"] == rules.RULES[c["claim"]] for c in card["claims"])
    assert card["header"].startswith("one test brain")
    assert card["claims"][1]["evidence_base"]["sampler_seeds"] == 3
    json.dumps(card, allow_nan=False)
    assert "Claim 4" in scorecard.scorecard_markdown(card)
