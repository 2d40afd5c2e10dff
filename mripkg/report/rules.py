"""The verdict rules of the scorecard, exactly as issue 17 fixes them, as pure functions.

:data:`RULES` holds one sentence per claim (and the general rule); ``claims.json`` carries it
and the README's card is generated from it.  Each ``*_rows`` function takes per-slice values
(one array per sampler seed for the diffusion model) and returns one row per comparison with
its statistic, interval, Holm decision and ``holds``; :func:`verdict` and
:func:`claim4_verdict` map rows to a verdict.  Statistics: :mod:`mripkg.stats`
(dependence-aware intervals over slices, Holm across the comparisons of one claim, and the
seed rule: a diffusion comparison holds only when it holds for each of at least
:data:`mripkg.stats.MIN_SEEDS` sampler seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .significance import (
    ALPHA_ONE_SIDED,
    MIN_SEEDS,
    dependent_interval,
    geometric_mean_interval,
    holm,
    one_sided_p,
    separation_p,
)

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly reproduced", "not reproduced"
NOT_EVIDENCE = "not evidence"
UNDECIDED = "undecided"
#: Fewest slices (or subjects) behind a comparison.
MIN_SLICES = 3
#: the side and value each claim's interval must clear (claims 1 and 3: the grey-matter energy
#: ratio above 1; claim 2: the excess over the control above 0; claim 5: the rank correlation
#: below 0), as the sentences of :data:`RULES` state them
THRESHOLDS: dict[str, tuple[str, float]] = {
    "1": (">", 1.0),
    "2": (">", 0.0),
    "3": (">", 1.0),
    "5": ("<", 0.0),
}
#: Family-wise level of claim 4's separation tests (non-overlapping 95 % intervals).
ALPHA_SEPARATION = 0.05
#: eps of each rule, fixed in issue 17.
CLAIM1_EPS: tuple[float, ...] = (0.01, 0.02)
CLAIM3_EPS: tuple[float, ...] = (0.01,)
CLAIM2_EPS = 0.04
CLAIM4_EPS: tuple[float, ...] = (0.04, 0.08)

#: One sentence per rule: claims.json carries these and the README card is generated from them.
RULES: dict[str, str] = {
    "general": (
        "A claim is reproduced when every comparison holds, partly reproduced when at least one "
        "holds fully, and not reproduced when none does; a comparison holds only when all of "
        "its conditions hold, and under the smoke profile the card says not evidence."
    ),
    "1": (
        "For each supervised source -> diffusion at eps 0.01 and 0.02 (4 comparisons), the "
        "geometric mean over slices of the grey-matter artifact energy with the transferred "
        "perturbation over that with the equal-norm random control must have its Holm-adjusted "
        "95 % interval above 1 and a mean excess energy above the seed-to-seed energy of clean "
        "reconstructions, for each of at least 3 sampler seeds."
    ),
    "2": (
        "For every source-target pair at eps 0.04, the transferred PSNR drop minus the control's "
        "drop must have its Holm-adjusted 95 % interval above 0 (for a diffusion target, for "
        "each of at least 3 sampler seeds)."
    ),
    "3": ("As claim 1 at eps 0.01 only, from each supervised source (2 comparisons)."),
    "4": (
        "At eps 0.04 and 0.08, for each supervised model's white-box artifact against each "
        "diffusion artifact transferred from a supervised source: (a) the diffusion artifact is "
        "closer to its own random-control artifact than the supervised one is to its own, by "
        "the KS distance inside the head (values centred and scaled by their SD) and by the "
        "absolute difference in excess kurtosis, and "
        "(b) it is less edge-aligned (edge correlation), each with non-overlapping 95 % "
        "intervals (Holm across the pairs); reproduced if (a) and (b) hold for every pair, "
        "partly if (a) or (b) holds for every pair, otherwise not reproduced."
    ),
    "5": (
        "For every model and source-target pair, the mean over slices of the per-slice "
        "Spearman correlation of eps with PSNR must have its 95 % interval below 0."
    ),
}


#: How the intervals are built (the card prints it under the rules).
METHOD = (
    "Intervals: a t interval on the effective number of slices n (1 - r1) / (1 + r1), r1 the "
    "lag-1 correlation of the per-slice values in slice order (counted when positive; over "
    "subjects, one slice each, the plain t interval); Holm across the comparisons of one claim, "
    "once per sampler seed; a diffusion comparison must hold for each of at least 3 sampler "
    "seeds."
)


def _clean(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def verdict(holds: Sequence[bool], evidence: bool = True) -> str:
    """The general rule: ``reproduced`` when every comparison holds, ``partly reproduced`` when
    at least one does, ``not reproduced`` when none does; ``not evidence`` when ``evidence`` is
    False (the smoke profile); ``undecided`` when there is nothing to compare."""
    if not evidence:
        return NOT_EVIDENCE
    h = [bool(x) for x in holds]
    if not h:
        return UNDECIDED
    if all(h):
        return REPRODUCED
    return PARTLY if any(h) else NOT_REPRODUCED


def comparison_holds(conditions: Mapping[str, bool]) -> bool:
    """A comparison holds only when all of its conditions hold (and it has at least one)."""
    return bool(conditions) and all(bool(v) for v in conditions.values())


def holm_families(
    pvalues: Mapping[str, Sequence[float]], alpha: float = ALPHA_ONE_SIDED
) -> dict[str, list[bool]]:
    """Holm across the comparisons of one claim, once per sampler seed.

    ``pvalues[label]``: one p value per seed (a deterministic target: a single value, which
    enters every seed's family).  Family ``k`` holds every comparison's ``k``-th p value; the
    result lists, per comparison, Holm's rejection in each family (``max`` seeds entries)."""
    if not pvalues:
        return {}
    n_fam = max(len(v) for v in pvalues.values())
    for lab, v in pvalues.items():
        if len(v) not in (1, n_fam):
            raise ValueError(f"{lab}: {len(v)} p values, expected 1 or {n_fam}")
    labels = list(pvalues)
    out: dict[str, list[bool]] = {lab: [] for lab in labels}
    for k in range(n_fam):
        fam = [pvalues[lab][k if len(pvalues[lab]) > 1 else 0] for lab in labels]
        for lab, r in zip(labels, holm(fam, alpha), strict=True):
            out[lab].append(r)
    return out


def _mark(seeds: list[dict[str, Any]], rejected: Sequence[bool]) -> None:
    """Holm's decision per seed (a single deterministic entry: rejected in every family)."""
    if len(seeds) == len(rejected):
        for s, r in zip(seeds, rejected, strict=True):
            s["holm_reject"] = bool(r)
    else:
        seeds[0]["holm_reject"] = all(bool(r) for r in rejected)


def _seeded_row(
    label: str, seeds: Sequence[Mapping[str, Any]], conditions: Mapping[str, bool]
) -> dict[str, Any]:
    """One comparison's row: the worst seed's (lowest interval bound) mean and interval, every
    seed's numbers, the conditions and whether all of them hold."""
    worst = min(seeds, key=lambda s: s["low"] if math.isfinite(s["low"]) else -math.inf)
    return {
        "label": label,
        "value": _clean(worst["mean"]),
        "low": _clean(worst["low"]),
        "high": _clean(worst["high"]),
        "n": int(worst["n"]),
        "n_eff": _clean(worst["n_eff"]),
        "lag1": _clean(worst["lag1"]),
        "per_seed": [
            {k: _clean(v) if isinstance(v, float) else v for k, v in s.items()} for s in seeds
        ],
        "conditions": dict(conditions),
        "holds": comparison_holds(conditions),
    }


def grey_matter_rows(
    ratios: Mapping[str, Sequence[np.ndarray]],
    excess: Mapping[str, Sequence[np.ndarray]],
    seed_energy: Mapping[str, Sequence[float]],
    ordered: bool = True,
) -> list[dict[str, Any]]:
    """Claims 1 and 3.  Per comparison label and sampler seed: ``ratios`` the per-slice
    grey-matter energy ratio ``E_adv / E_ctl`` (> 0), ``excess`` the per-slice ``E_adv -
    E_ctl``, ``seed_energy`` the mean grey-matter energy of the seed-to-seed change of clean
    reconstructions (one number per seed).  Per seed: the geometric mean with its
    dependence-aware interval and one-sided p value of "> 1"; Holm across the comparisons
    (per seed); the comparison holds when, for every one of at least
    :data:`~mripkg.stats.MIN_SEEDS` seeds, Holm rejects and the mean excess exceeds the seed
    energy."""
    per: dict[str, list[dict[str, Any]]] = {}
    for lab, rs in ratios.items():
        if len(rs) != len(excess[lab]) or len(rs) != len(seed_energy[lab]):
            raise ValueError(f"{lab}: ratios, excess and seed energy differ in seeds")
        per[lab] = []
        for r, ex, se in zip(rs, excess[lab], seed_energy[lab], strict=True):
            g = geometric_mean_interval(r, ordered=ordered)
            ex_mean = float(np.mean(ex))
            per[lab].append({**g, "excess_mean": ex_mean, "seed_energy": float(se)})
    rej = holm_families({lab: [s["p"] for s in v] for lab, v in per.items()})
    rows = []
    for lab, seeds in per.items():
        _mark(seeds, rej[lab])
        for s in seeds:
            s["above_seed_energy"] = s["excess_mean"] > s["seed_energy"]
        conditions = {
            f"{MIN_SEEDS}+ sampler seeds": len(seeds) >= MIN_SEEDS,
            f"{MIN_SLICES}+ slices": min(s["n"] for s in seeds) >= MIN_SLICES,
            "Holm-adjusted interval above 1, every seed": all(s["holm_reject"] for s in seeds),
            "excess energy above seed-to-seed energy, every seed": all(
                s["above_seed_energy"] for s in seeds
            ),
        }
        rows.append(_seeded_row(lab, seeds, conditions))
    return rows


def excess_rows(
    adv_drop: Mapping[str, Sequence[np.ndarray]],
    ctl_drop: Mapping[str, Sequence[np.ndarray]],
    seeded: Mapping[str, bool],
    ordered: bool = True,
) -> list[dict[str, Any]]:
    """Claim 2.  Per comparison label: per seed (one array for a deterministic target) the
    per-slice transferred and control PSNR drops.  The per-slice excess's mean, its
    dependence-aware interval and one-sided p value of "> 0"; Holm across the comparisons per
    seed; holds when Holm rejects for every seed, with at least
    :data:`~mripkg.stats.MIN_SEEDS` seeds where ``seeded[label]`` (a diffusion target)."""
    per: dict[str, list[dict[str, Any]]] = {}
    for lab, advs in adv_drop.items():
        ctls = ctl_drop[lab]
        if len(advs) != len(ctls):
            raise ValueError(f"{lab}: {len(advs)} perturbed vs {len(ctls)} control seeds")
        per[lab] = []
        for a, c in zip(advs, ctls, strict=True):
            a, c = np.asarray(a, dtype=float), np.asarray(c, dtype=float)
            if a.shape != c.shape:
                raise ValueError(f"{lab}: drops {a.shape} and control {c.shape} differ")
            d = a - c
            iv = dependent_interval(d, ordered=ordered)
            per[lab].append({**iv, "p": one_sided_p(d, 0.0, ordered)})
    rej = holm_families({lab: [s["p"] for s in v] for lab, v in per.items()})
    rows = []
    for lab, seeds in per.items():
        _mark(seeds, rej[lab])
        conditions = {
            f"{MIN_SLICES}+ slices": min(s["n"] for s in seeds) >= MIN_SLICES,
            "Holm-adjusted interval above 0, every seed": all(s["holm_reject"] for s in seeds),
        }
        if seeded.get(lab, False):
            conditions[f"{MIN_SEEDS}+ sampler seeds"] = len(seeds) >= MIN_SEEDS
        rows.append(_seeded_row(lab, seeds, conditions))
    return rows


def noise_like_rows(
    supervised: Mapping[str, Mapping[str, np.ndarray]],
    diffusion: Mapping[str, Sequence[Mapping[str, np.ndarray]]],
    ordered: bool = True,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Claim 4 at one eps.  ``supervised[s]`` and each seed of ``diffusion[d]``: per-slice
    ``ks`` (KS distance, inside the head, between the artifact's pixel values and its own
    random-control artifact's), ``kurt`` (``|excess kurtosis(artifact) - excess
    kurtosis(own control)|``) and ``edge`` (edge correlation of the artifact).  For each pair
    (s, d) and seed, three separation tests (:func:`mripkg.stats.separation_p`: the diffusion
    value's 95 % interval entirely below the supervised one's), Holm across all tests of the
    claim at this eps, per seed.  A pair's ``a`` holds when both KS and kurtosis separate for
    every seed, ``b`` when the edge correlation does; seeds as :data:`~mripkg.stats.MIN_SEEDS`.
    ``pairs``: the (supervised, diffusion) keys to compare (default: every combination), e.g.
    keys that carry their eps so that all eps of the claim form one Holm family.
    """
    todo = list(pairs) if pairs is not None else [(s, d) for s in supervised for d in diffusion]
    tests: dict[str, list[float]] = {}
    for s, d in todo:
        sv, seeds = supervised[s], diffusion[d]
        for key in ("ks", "kurt", "edge"):
            tests[f"{d} vs {s}: {key}"] = [separation_p(dv[key], sv[key], ordered) for dv in seeds]
    rej = holm_families(tests, ALPHA_SEPARATION)
    rows = []
    for s, d in todo:
        sv, seeds = supervised[s], diffusion[d]
        ok = {key: all(rej[f"{d} vs {s}: {key}"]) for key in ("ks", "kurt", "edge")}
        enough = len(seeds) >= MIN_SEEDS
        stats_ = {}
        for key in ("ks", "kurt", "edge"):
            di = [dependent_interval(dv[key], ordered=ordered) for dv in seeds]
            si = dependent_interval(sv[key], ordered=ordered)
            stats_[key] = {
                "diffusion": [{k: _clean(v) for k, v in x.items()} for x in di],
                "supervised": {k: _clean(v) for k, v in si.items()},
                "p": [float(p) for p in tests[f"{d} vs {s}: {key}"]],
            }
        a = {"KS closer to own control": ok["ks"], "|kurtosis diff| smaller": ok["kurt"]}
        rows.append(
            {
                "label": f"{d} vs {s}",
                "a": enough and comparison_holds(a),
                "b": enough and ok["edge"],
                "conditions": {
                    **a,
                    "less edge-aligned": ok["edge"],
                    f"{MIN_SEEDS}+ sampler seeds": enough,
                },
                "statistics": stats_,
                "n": int(len(sv["edge"])),
            }
        )
    for r in rows:
        r["holds"] = bool(r["a"] and r["b"])
    return rows


def claim4_verdict(pairs: Sequence[Mapping[str, Any]], evidence: bool = True) -> str:
    """Claim 4: ``reproduced`` if (a) and (b) hold for every pair, ``partly reproduced`` if
    (a) holds for every pair or (b) holds for every pair, otherwise ``not reproduced``
    (``not evidence`` under smoke; ``undecided`` without pairs)."""
    if not evidence:
        return NOT_EVIDENCE
    if not pairs:
        return UNDECIDED
    all_a = all(bool(p["a"]) for p in pairs)
    all_b = all(bool(p["b"]) for p in pairs)
    if all_a and all_b:
        return REPRODUCED
    return PARTLY if (all_a or all_b) else NOT_REPRODUCED


def towards_grey_matter(
    share: Sequence[float], control_share: Sequence[float], ordered: bool = True
) -> bool:
    """Whether prose may say "towards grey matter": the interval of the mean grey-matter share
    of the artifact energy lies entirely above that of the control's share."""
    a = dependent_interval(share, ordered=ordered)
    b = dependent_interval(control_share, ordered=ordered)
    return bool(math.isfinite(a["low"]) and math.isfinite(b["high"]) and a["low"] > b["high"])


__all__ = [
    "CLAIM1_EPS",
    "CLAIM2_EPS",
    "CLAIM3_EPS",
    "CLAIM4_EPS",
    "METHOD",
    "NOT_EVIDENCE",
    "NOT_REPRODUCED",
    "PARTLY",
    "REPRODUCED",
    "RULES",
    "claim4_verdict",
    "comparison_holds",
    "excess_rows",
    "grey_matter_rows",
    "holm_families",
    "noise_like_rows",
    "towards_grey_matter",
    "verdict",
]
