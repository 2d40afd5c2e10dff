"""Scorecard statistics (mripkg.report.significance) and the verdict rules of issue 17
(mripkg.report.rules): one
test per outcome of every rule."""

import math

import numpy as np
import pytest

from mripkg.report import rules
from mripkg.report import significance as stats
from mripkg.report.rules import NOT_EVIDENCE, NOT_REPRODUCED, PARTLY, REPRODUCED, UNDECIDED


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = g.normal() / math.sqrt(1 - phi**2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + g.normal()
    return x


def _standard(n: int, seed: int) -> np.ndarray:
    """``n`` values with mean exactly 0, sd exactly 1 and no lag-1 correlation to speak of
    (alternating signs give a negative lag-1, which never counts)."""
    z = np.random.default_rng(seed).normal(size=n)
    z = np.sort(z)
    lo, hi = z[: n // 2], z[n // 2 :][::-1]
    z = np.empty(n)
    z[0::2], z[1::2] = hi[: (n + 1) // 2], lo[: n // 2]  # high-low alternation: lag-1 < 0
    z = (z - z.mean()) / z.std(ddof=1)
    assert stats.lag1_autocorrelation(z) < 0
    return z


# ---------------------------------------------------------------------------------- stats


def test_lag1_autocorrelation_recovers_ar1_and_is_near_zero_for_iid():
    assert abs(stats.lag1_autocorrelation(_ar1(2000, 0.8, 0)) - 0.8) < 0.05
    iid = np.random.default_rng(1).normal(size=2000)
    assert abs(stats.lag1_autocorrelation(iid)) < 0.06
    assert math.isnan(stats.lag1_autocorrelation([1.0, 2.0]))
    assert math.isnan(stats.lag1_autocorrelation([3.0, 3.0, 3.0]))


def test_dependent_interval_widens_on_correlated_data():
    x = _ar1(40, 0.7, 3) + 1.0
    plain = stats.t_interval(x)
    dep = stats.dependent_interval(x)
    assert dep["lag1"] > 0.3 and dep["n_eff"] < 0.6 * len(x)
    assert dep["high"] - dep["low"] > 1.3 * (plain[2] - plain[1])
    assert dep["mean"] == pytest.approx(plain[0])
    # independent values (one slice per subject): the plain t interval
    un = stats.dependent_interval(x, ordered=False)
    assert (un["low"], un["high"]) == pytest.approx(plain[1:])
    # a negative lag-1 never narrows the interval below the plain one
    z = _standard(20, 4)
    d = stats.dependent_interval(z)
    assert d["n_eff"] == 20 and (d["low"], d["high"]) == pytest.approx(stats.t_interval(z)[1:])


def test_dependent_interval_restores_coverage_on_ar1_data():
    """95 % coverage of the true mean 0 over 400 AR(1) series (phi 0.6, n 30): the plain t
    interval undercovers badly; the effective-n interval comes much closer."""
    hit_plain = hit_dep = 0
    for s in range(400):
        x = _ar1(30, 0.6, 100 + s)
        _, lo, hi = stats.t_interval(x)
        hit_plain += lo <= 0 <= hi
        d = stats.dependent_interval(x)
        hit_dep += d["low"] <= 0 <= d["high"]
    assert hit_plain / 400 < 0.85
    assert hit_dep / 400 > hit_plain / 400 + 0.05


def test_t_interval_edge_cases_and_bad_input():
    assert stats.t_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    m, lo, hi = stats.t_interval([1.0])
    assert m == 1.0 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="NaN or inf"):
        stats.t_interval([1.0, math.nan])
    with pytest.raises(ValueError, match="no values"):
        stats.dependent_interval([])


def test_one_sided_p_matches_the_interval():
    x = _standard(12, 5) + 0.9  # t = 0.9 sqrt(12) = 3.1
    p = stats.one_sided_p(x, ordered=False)
    assert 0.001 < p < 0.01
    lo = stats.t_interval(x)[1]
    assert lo > 0  # p < 0.025 <=> the 95 % interval's lower bound above 0
    assert stats.one_sided_p(-x, ordered=False) > 0.99
    assert stats.one_sided_p([1.0, 1.0, 1.0]) == 0.0


def test_holm_steps_down_and_beats_bonferroni():
    assert stats.holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert stats.holm([0.02, 0.04], 0.05) == [True, True]  # Bonferroni: only the first
    assert stats.holm([0.03, 0.04], 0.05) == [False, False]
    adj = stats.holm_adjusted([0.01, 0.04, 0.03, 0.005])
    assert [a <= 0.05 for a in adj] == stats.holm([0.01, 0.04, 0.03, 0.005], 0.05)
    with pytest.raises(ValueError, match="p values"):
        stats.holm([1.5])


def test_separation_p_is_the_non_overlap_of_95_percent_intervals():
    a = _standard(10, 6)
    for shift, overlap in ((3.0, False), (1.0, True)):
        b = _standard(10, 7) + shift
        ia, ib = stats.dependent_interval(a), stats.dependent_interval(b)
        p = stats.separation_p(a, b)
        assert (ia["high"] >= ib["low"]) == overlap
        assert (p < 0.05) == (not overlap)
    assert stats.separation_p(a + 5, a) == 1.0  # the wrong way round


def test_seed_rule_needs_three_seeds_each_holding():
    assert stats.holds_per_seed([True, True, True])
    assert not stats.holds_per_seed([True, True])
    assert not stats.holds_per_seed([True, False, True])


def test_geometric_mean_interval():
    g = stats.geometric_mean_interval([2.0, 2.0, 2.0, 2.0])
    assert g["mean"] == pytest.approx(2.0) and g["p"] == 0.0
    with pytest.raises(ValueError, match="positive"):
        stats.geometric_mean_interval([1.0, 0.0])


# ---------------------------------------------------------------------------------- rules


def test_rule_text_is_one_sentence_per_claim():
    assert set(rules.RULES) == {"general", "1", "2", "3", "4", "5"}
    for text in rules.RULES.values():
        assert text.endswith(".") and text.count(". ") == 0


@pytest.mark.parametrize(
    ("holds", "evidence", "expected"),
    [
        ([True, True, True], True, REPRODUCED),
        ([True, False, False], True, PARTLY),
        ([False, False], True, NOT_REPRODUCED),
        ([True, True], False, NOT_EVIDENCE),
        ([], True, UNDECIDED),
    ],
)
def test_general_rule(holds, evidence, expected):
    assert rules.verdict(holds, evidence) == expected


def test_a_comparison_holds_only_when_all_conditions_hold():
    assert rules.comparison_holds({"a": True, "b": True})
    assert not rules.comparison_holds({"a": True, "b": False})
    assert not rules.comparison_holds({})


def _ratios(log_mean: float, n: int = 10, seed: int = 0) -> np.ndarray:
    return np.exp(_standard(n, seed) * 0.3 + log_mean)


def _gm(cases: dict, n_seeds: int = 3, seed_energy: float = 1.0, excess: float = 2.0):
    ratios = {k: [_ratios(v, seed=i) for i in range(n_seeds)] for k, v in cases.items()}
    ex = {k: [np.full(10, excess)] * n_seeds for k in cases}
    se = {k: [seed_energy] * n_seeds for k in cases}
    return rules.grey_matter_rows(ratios, ex, se)


def test_claim1_holds_when_interval_above_1_and_excess_above_seed_energy():
    rows = _gm({"ResUNet++ eps 0.01": 0.7, "i-RIM eps 0.01": 0.7})
    assert all(r["holds"] for r in rows)
    assert rules.verdict([r["holds"] for r in rows]) == REPRODUCED
    assert rows[0]["low"] > 1 and rows[0]["value"] == pytest.approx(math.exp(0.7))


def test_claim1_fails_when_the_interval_reaches_1():
    rows = _gm({"a": 0.7, "b": 0.05})
    assert [r["holds"] for r in rows] == [True, False]
    assert rules.verdict([r["holds"] for r in rows]) == PARTLY


def test_claim1_fails_when_excess_is_below_the_seed_to_seed_energy():
    rows = _gm({"a": 0.7}, seed_energy=3.0, excess=2.0)
    assert not rows[0]["holds"]
    assert not rows[0]["conditions"]["excess energy above seed-to-seed energy, every seed"]
    assert rules.verdict([r["holds"] for r in rows]) == NOT_REPRODUCED


def test_claim1_needs_three_seeds_and_every_seed():
    assert not _gm({"a": 0.7}, n_seeds=2)[0]["holds"]
    ratios = {"a": [_ratios(0.7, seed=0), _ratios(0.7, seed=1), _ratios(0.0, seed=2)]}
    ex = {"a": [np.full(10, 2.0)] * 3}
    rows = rules.grey_matter_rows(ratios, ex, {"a": [1.0] * 3})
    assert not rows[0]["holds"]
    assert [s["holm_reject"] for s in rows[0]["per_seed"]] == [True, True, False]


def test_claim1_holm_across_the_four_comparisons():
    """Each comparison alone has p ~ 0.017 (< 0.025: its plain interval lies above 1), but with
    four comparisons Holm needs the smallest below 0.025 / 4."""
    shift = 2.5 * 0.3 / math.sqrt(10)  # t = 2.5 on 9 degrees of freedom
    one = _gm({"a": shift})
    assert one[0]["holds"]
    assert 0.00625 < one[0]["per_seed"][0]["p"] < 0.025
    four = _gm({k: shift for k in ("a", "b", "c", "d")})
    assert not any(r["holds"] for r in four)


def test_claim3_is_claim1_at_eps_001():
    assert rules.CLAIM3_EPS == (0.01,) and rules.CLAIM1_EPS == (0.01, 0.02)
    assert "0.01" in rules.RULES["3"]


def _drops(excess: float, seed: int = 0, n: int = 10):
    ctl = np.random.default_rng(seed).uniform(0.1, 0.5, n)
    return ctl + excess + 0.3 * _standard(n, seed), ctl


def test_claim2_supervised_pair_and_diffusion_pair_hold():
    a, c = _drops(1.0)
    da, dc = zip(*[_drops(1.0, s) for s in range(3)], strict=True)
    rows = rules.excess_rows(
        {"ResUNet++ -> i-RIM": [a], "ResUNet++ -> diffusion": list(da)},
        {"ResUNet++ -> i-RIM": [c], "ResUNet++ -> diffusion": list(dc)},
        seeded={"ResUNet++ -> diffusion": True},
    )
    assert [r["holds"] for r in rows] == [True, True]
    assert rules.verdict([r["holds"] for r in rows]) == REPRODUCED


def test_claim2_fails_on_one_seed_or_too_few_seeds():
    da, dc = zip(*[_drops(1.0, s) for s in range(2)], strict=True)
    rows = rules.excess_rows({"x": list(da)}, {"x": list(dc)}, seeded={"x": True})
    assert not rows[0]["holds"]  # two seeds
    da, dc = zip(*[_drops(e, s) for s, e in enumerate((1.0, 1.0, 0.0))], strict=True)
    rows = rules.excess_rows({"x": list(da)}, {"x": list(dc)}, seeded={"x": True})
    assert not rows[0]["holds"]  # one seed fails
    a, c = _drops(-0.2)
    rows = rules.excess_rows({"x": [a]}, {"x": [c]}, seeded={})
    assert not rows[0]["holds"] and rules.verdict([False]) == NOT_REPRODUCED
    with pytest.raises(ValueError, match="differ"):
        rules.excess_rows({"x": [a]}, {"x": [c[:3]]}, seeded={})


def _art(ks: float, kurt: float, edge: float, seed: int = 0, n: int = 10) -> dict:
    z = 0.02 * _standard(n, seed)
    return {"ks": ks + z, "kurt": kurt + 10 * z, "edge": edge + z}


def _claim4(diff: dict, sup: dict, n_seeds: int = 3) -> str:
    rows = rules.noise_like_rows(
        {"ResUNet++": sup, "i-RIM": sup},
        {"ResUNet++ -> diffusion": [diff] * n_seeds, "i-RIM -> diffusion": [diff] * n_seeds},
    )
    assert len(rows) == 4
    return rules.claim4_verdict(rows)


def test_claim4_outcomes():
    sup = _art(ks=0.5, kurt=5.0, edge=0.4)
    assert _claim4(_art(0.1, 0.5, 0.05), sup) == REPRODUCED
    assert _claim4(_art(0.1, 0.5, 0.4), sup) == PARTLY  # (a) only
    assert _claim4(_art(0.5, 0.5, 0.05), sup) == PARTLY  # (b) only; (a) needs KS and kurtosis
    assert _claim4(_art(0.5, 5.0, 0.4), sup) == NOT_REPRODUCED
    assert _claim4(_art(0.1, 0.5, 0.05), sup, n_seeds=2) == NOT_REPRODUCED  # seed rule
    assert rules.claim4_verdict([{"a": True, "b": True}], evidence=False) == NOT_EVIDENCE
    assert rules.claim4_verdict([]) == UNDECIDED


def test_claim4_needs_every_pair():
    sup_close = _art(ks=0.1, kurt=0.5, edge=0.05)  # a supervised model as noise-like
    rows = rules.noise_like_rows(
        {"ResUNet++": _art(0.5, 5.0, 0.4), "i-RIM": sup_close},
        {"ResUNet++ -> diffusion": [_art(0.1, 0.5, 0.05)] * 3},
    )
    assert [r["holds"] for r in rows] == [True, False]
    assert rules.claim4_verdict(rows) == NOT_REPRODUCED


def test_towards_grey_matter_needs_separated_share_intervals():
    share = 0.46 + 0.01 * _standard(10, 1)
    ctl = 0.41 + 0.01 * _standard(10, 2)
    assert rules.towards_grey_matter(share, ctl)
    assert not rules.towards_grey_matter(0.42 + 0.01 * _standard(10, 1), ctl)
