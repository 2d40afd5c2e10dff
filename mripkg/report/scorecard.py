"""The scorecard of issue 17: the rules of :mod:`mripkg.report.rules` applied to evaluations.

Stage: report.  Receives :class:`mripkg.evaluation.scoring.Evaluation` objects (one per sampler
seed for the diffusion model, each with its equal-norm random control) and hands on claim
dicts for ``claims.json``: ``{claim, text, rule, statistic, rows, verdict, rule_verdict,
evidence_base, ...}``, where ``evidence_base`` says what the intervals rest on (test
subjects, slices, sampler seeds, and whether the intervals are over slices of one brain or
over subjects).

* claims 1 and 3: :func:`claim_grey_matter` (with the descriptive whole-head ratio and the
  grey-matter share of the artifact energy against the control's);
* claim 2: :func:`claim_transfer`;
* claim 4: :func:`claim_noise_like` (KS distance and excess-kurtosis difference of each
  artifact to its own random-control artifact inside the head, and the edge correlation);
* the authors' number as added MSE, amplification over the control and dB:
  :func:`authors_comparison`;
* :func:`scorecard` and :func:`scorecard_markdown` (the README's card).

With a user folder (one slice per held-out subject) pass ``ordered=False``: the slices are
independent and the intervals are over subjects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import stats as _st
from torch import Tensor

from ..models import LABELS, SUPERVISED
from . import rules
from .significance import dependent_interval, geometric_mean_interval

if TYPE_CHECKING:
    from ..evaluation.scoring import Evaluation
    from ..profiles import Profile

#: The paper's one published number (i-RIM, eps 0.08, one ADNI slice, 256 px): PSNR in dB.
AUTHORS_IRIM = {"eps": 0.08, "psnr_clean": 30.10, "psnr_perturbed": 25.46}


def _lab(name: str) -> str:
    return LABELS.get(name, name)


def _key(eps: float) -> str:
    return f"{eps:.2f}"


def evidence_base(n_subjects: int, slice_ids: Sequence[int], seeds: Sequence[int]) -> dict:
    """What a claim's intervals rest on: test subjects, slices, sampler seeds and the unit of
    the intervals (``slices`` of one brain, or ``subjects`` with one slice each)."""
    if n_subjects < 1:
        raise ValueError(f"need at least one test subject, got {n_subjects}")
    return {
        "test_subjects": int(n_subjects),
        "slices": len(set(int(s) for s in slice_ids)),
        "sampler_seeds": len(set(int(s) for s in seeds)),
        "interval_unit": "slices" if n_subjects == 1 else "subjects",
    }


def sampling_unit(subjects: Sequence[str]) -> tuple[int, bool]:
    """``(test subjects, ordered)`` of the evaluated slices' subject ids: with one slice per
    subject (a user folder, as in the paper) the values are independent and the intervals are
    over subjects (``ordered=False``); slices of one brain are ordered and adjacent ones
    correlate (``ordered=True``: the dependence-aware interval)."""
    if not subjects:
        raise ValueError("no test slices")
    n = len(set(subjects))
    return n, n < len(subjects)


def header(n_subjects: int) -> str:
    """The card's first line: what the intervals are over."""
    if n_subjects == 1:
        return "one test brain: intervals are over its slices, not over subjects"
    return f"{n_subjects} test subjects, one slice each: intervals are over subjects"


def _energy(change: Tensor, region: Tensor) -> np.ndarray:
    return (change.to(torch.float64).pow(2) * region.to(torch.float64)).flatten(1).sum(1).numpy()


def _check_seeds(name: str, evs: Sequence[Evaluation]) -> None:
    if not evs:
        raise ValueError(f"{name}: no evaluations")
    ids = list(evs[0].slice_ids)
    for ev in evs:
        if list(ev.slice_ids) != ids:
            raise ValueError(f"{name}: the seeds' evaluations cover different slices")
        if ev.rand is None:
            raise ValueError(f"{name}: an evaluation has no random control")
    if len({ev.seed for ev in evs}) != len(evs):
        raise ValueError(f"{name}: the evaluations repeat a sampler seed")


def claim_grey_matter(
    evals: Mapping[str, Sequence[Evaluation]],
    gt: Tensor,
    head: Tensor,
    grey: Tensor,
    eps: Sequence[float] = rules.CLAIM1_EPS,
    claim: str = "1",
    n_subjects: int = 1,
    ordered: bool = True,
) -> dict[str, Any]:
    """Claims 1 (``eps`` 0.01, 0.02) and 3 (``eps`` 0.01): ``evals[source]`` the diffusion
    model's evaluations (one per sampler seed, each with its control) of the perturbations
    transferred from ``source``; ``gt``, ``head``, ``grey`` ``[B, 1, H, W]`` (ground truth, head
    and grey-matter masks of the same slices).  The seed-to-seed energy of seed ``k`` is the
    grey-matter energy of the clean reconstruction of the next seed minus seed ``k``'s.  Beside
    each row, descriptively: the whole-head energy ratio and the grey-matter share of the
    artifact energy against the control's (``towards_grey_matter``: the share's interval lies
    above the control's)."""
    ratios: dict[str, list[np.ndarray]] = {}
    excess: dict[str, list[np.ndarray]] = {}
    seed_e: dict[str, list[float]] = {}
    extra: dict[str, dict[str, Any]] = {}
    seeds: set[int] = set()
    slices: list[int] = []
    for source, evs in evals.items():
        _check_seeds(source, evs)
        slices = list(evs[0].slice_ids)
        seeds |= {int(ev.seed) for ev in evs if ev.seed is not None}
        for e in eps:
            lab = f"{_lab(source)} -> diffusion, eps {e:g}"
            ratios[lab], excess[lab], seed_e[lab] = [], [], []
            whole, share, share_c = [], [], []
            for k, ev in enumerate(evs):
                j = ev.index(e)
                a, c = ev.adv[j] - ev.clean, ev.rand[j] - ev.clean  # type: ignore[index]
                e_adv, e_ctl = _energy(a, grey), _energy(c, grey)
                if (e_ctl <= 0).any() or (e_adv <= 0).any():
                    raise ValueError(f"{lab}: an artifact is zero inside grey matter")
                ratios[lab].append(e_adv / e_ctl)
                excess[lab].append(e_adv - e_ctl)
                other = evs[(k + 1) % len(evs)].clean
                seed_e[lab].append(float(_energy(other - ev.clean, grey).mean()))
                h_adv, h_ctl = _energy(a, head), _energy(c, head)
                whole.append(h_adv / h_ctl)
                share.append(e_adv / h_adv)
                share_c.append(e_ctl / h_ctl)
            w = np.mean(whole, axis=0)  # per slice, averaged over seeds (descriptive)
            sh, shc = np.mean(share, axis=0), np.mean(share_c, axis=0)
            extra[lab] = {
                "source": source,
                "eps": _key(e),
                "whole_head_ratio": geometric_mean_interval(w, ordered=ordered),
                "grey_share": dependent_interval(sh, ordered=ordered),
                "grey_share_control": dependent_interval(shc, ordered=ordered),
                "towards_grey_matter": rules.towards_grey_matter(sh, shc, ordered),
            }
    rows = rules.grey_matter_rows(ratios, excess, seed_e, ordered=ordered)
    for r in rows:
        r.update(extra[r["label"]])
    return _claim(
        claim,
        (
            "small transferred perturbations distort grey matter in the diffusion reconstruction"
            if claim == "1"
            else "even at eps 0.01 a perturbation crafted on a supervised model distorts grey "
            "matter in the diffusion reconstruction"
        ),
        "grey-matter artifact energy / equal-norm control's (geometric mean over slices, "
        "worst seed)",
        rows,
        rules.verdict([r["holds"] for r in rows]),
        evidence_base(n_subjects, slices, sorted(seeds)),
    )


def claim_transfer(
    evals: Mapping[tuple[str, str], Sequence[Evaluation]],
    eps: float = rules.CLAIM2_EPS,
    n_subjects: int = 1,
    ordered: bool = True,
) -> dict[str, Any]:
    """Claim 2: ``evals[(source, target)]`` one evaluation per sampler seed (a single one for a
    supervised target), each with its control: the transferred PSNR drop minus the control's
    at ``eps`` (:func:`mripkg.report.rules.excess_rows`)."""
    adv: dict[str, list[np.ndarray]] = {}
    ctl: dict[str, list[np.ndarray]] = {}
    seeded: dict[str, bool] = {}
    slices: set[int] = set()
    seeds: set[int] = set()
    for (s, t), evs in evals.items():
        if s == t:
            raise ValueError(f"({s}, {t}) is white-box, not a transfer")
        _check_seeds(f"{s} -> {t}", evs)
        lab = f"{_lab(s)} -> {_lab(t)}"
        adv[lab] = [ev.psnr_drop[ev.index(eps)].numpy() for ev in evs]
        ctl[lab] = [ev.psnr_drop_rand[ev.index(eps)].numpy() for ev in evs]  # type: ignore[index]
        seeded[lab] = t == "diffusion"
        slices |= set(evs[0].slice_ids)
        if seeded[lab]:
            seeds |= {int(ev.seed) for ev in evs if ev.seed is not None}
    rows = rules.excess_rows(adv, ctl, seeded, ordered=ordered)
    return _claim(
        "2",
        "perturbations crafted on a supervised surrogate transfer to the other models",
        f"transferred PSNR drop - control drop at eps {eps:g} (dB, mean over slices, worst seed)",
        rows,
        rules.verdict([r["holds"] for r in rows]),
        evidence_base(n_subjects, sorted(slices), sorted(seeds)),
    )


def noise_like_values(artifact: Tensor, control: Tensor, gt: Tensor, head: Tensor) -> dict:
    """Per slice ``[B]`` (``[B, 1, H, W]`` inputs): ``ks``, the two-sample KS distance between
    the artifact's and its own control artifact's pixel values inside the head, each centred
    and divided by its SD (the shape of the distribution, not its size); ``kurt``, the absolute
    difference of their excess kurtoses; ``edge``, the artifact's edge correlation
    (:func:`mripkg.evaluation.artifacts.edge_corr`)."""
    from ..evaluation.artifacts import edge_corr

    if artifact.shape != control.shape or artifact.shape != head.shape:
        raise ValueError("artifact, control and head must have one [B, 1, H, W] shape")
    ks, kurt = [], []
    for i in range(artifact.shape[0]):
        m = head[i, 0].to(torch.bool)
        a = artifact[i, 0][m].to(torch.float64).numpy()
        c = control[i, 0][m].to(torch.float64).numpy()
        if np.ptp(a) == 0 or np.ptp(c) == 0:
            raise ValueError(f"slice {i}: an artifact is constant inside the head")
        za, zc = (a - a.mean()) / a.std(), (c - c.mean()) / c.std()
        ks.append(float(_st.ks_2samp(za, zc).statistic))
        kurt.append(abs(float(_st.kurtosis(a)) - float(_st.kurtosis(c))))
    return {
        "ks": np.asarray(ks),
        "kurt": np.asarray(kurt),
        "edge": edge_corr(artifact, gt, head).numpy(),
    }


def claim_noise_like(
    supervised: Mapping[str, Evaluation],
    diffusion: Mapping[str, Sequence[Evaluation]],
    gt: Tensor,
    head: Tensor,
    eps: Sequence[float] = rules.CLAIM4_EPS,
    n_subjects: int = 1,
    ordered: bool = True,
) -> dict[str, Any]:
    """Claim 4: ``supervised[m]`` the white-box evaluation of supervised model ``m`` with its
    random control, on the same slices as the diffusion evaluations ``diffusion[source]`` (one
    per sampler seed, perturbations transferred from ``source``, each with its control);
    ``gt``, ``head`` of those slices.  Every (supervised, diffusion) pair at every eps forms one
    Holm family (:func:`mripkg.report.rules.noise_like_rows`); verdict by
    :func:`mripkg.report.rules.claim4_verdict`."""
    sup_v: dict[str, dict] = {}
    dif_v: dict[str, list[dict]] = {}
    pairs: list[tuple[str, str]] = []
    seeds: set[int] = set()
    slices: list[int] = []
    evs_all = [*supervised.values(), *(ev for evs in diffusion.values() for ev in evs)]
    have = [e for e in eps if all(any(abs(e - x) < 1e-9 for x in ev.eps) for ev in evs_all)]
    for e in have:
        ek = _key(e)
        for m, ev in supervised.items():
            if ev.rand is None:
                raise ValueError(f"{m}: the white-box evaluation has no random control")
            j = ev.index(e)
            sup_v[f"{_lab(m)} white-box, eps {ek}"] = noise_like_values(
                ev.adv[j] - ev.clean, ev.rand[j] - ev.clean, gt, head
            )
        for src, evs in diffusion.items():
            _check_seeds(src, evs)
            if slices and list(evs[0].slice_ids) != slices:
                raise ValueError("the diffusion evaluations cover different slices")
            slices = list(evs[0].slice_ids)
            seeds |= {int(ev.seed) for ev in evs if ev.seed is not None}
            dif_v[f"diffusion <- {_lab(src)}, eps {ek}"] = [
                noise_like_values(
                    ev.adv[ev.index(e)] - ev.clean,
                    ev.rand[ev.index(e)] - ev.clean,  # type: ignore[index]
                    gt,
                    head,
                )
                for ev in evs
            ]
        pairs += [
            (s, d)
            for s in sup_v
            if s.endswith(f"eps {ek}")
            for d in dif_v
            if d.endswith(f"eps {ek}")
        ]
    for m, ev in supervised.items():
        if slices and list(ev.slice_ids) != slices:
            raise ValueError(f"{m}: the white-box evaluation covers other slices than diffusion")
    rows = rules.noise_like_rows(sup_v, dif_v, ordered=ordered, pairs=pairs)
    missing = [_key(e) for e in eps if e not in have]
    return {
        "eps_missing": missing,
        **_claim(
            "4",
            "the diffusion model's artifacts look like Gaussian noise, unlike the supervised "
            "models' structured ones",
            "(a) KS distance and |excess kurtosis difference| to the own random-control artifact, "
            "(b) edge correlation; diffusion against supervised, non-overlapping 95 % intervals",
            rows,
            rules.claim4_verdict(rows) if not missing else rules.UNDECIDED,
            evidence_base(n_subjects, slices, sorted(seeds)),
        ),
    }


def authors_comparison(ev: Evaluation) -> dict[str, Any]:
    """The authors' one number beside ours (white-box i-RIM evaluation ``ev`` with its control)
    in three currencies: the PSNR drop (dB), the MSE the attack adds (``10^(-PSNR/10)`` of the
    [0, 1]-normalised images, so the clean baselines' 7.6 dB difference does not hide the size
    of the error), and the amplification over the equal-norm control (added MSE / the
    control's; the authors published no control)."""
    e = AUTHORS_IRIM["eps"]
    j = ev.index(e)
    mse = lambda p: 10.0 ** (-np.asarray(p, dtype=float) / 10)  # noqa: E731
    paper_added = float(mse(AUTHORS_IRIM["psnr_perturbed"]) - mse(AUTHORS_IRIM["psnr_clean"]))
    clean, adv = ev.psnr_clean.numpy(), ev.psnr[j].numpy()
    added = mse(adv) - mse(clean)
    out: dict[str, Any] = {
        "paper": {
            **AUTHORS_IRIM,
            "drop_db": round(AUTHORS_IRIM["psnr_clean"] - AUTHORS_IRIM["psnr_perturbed"], 2),
            "added_mse": paper_added,
            "slices": "one ADNI slice, 256 px",
        },
        "ours": {
            "eps": e,
            "psnr_clean": float(clean.mean()),
            "psnr_perturbed": float(adv.mean()),
            "drop_db": dependent_interval(clean - adv, ordered=False),
            "added_mse": dependent_interval(added, ordered=False),
            "n": len(clean),
        },
    }
    if ev.psnr_rand is not None:
        added_c = mse(ev.psnr_rand[j].numpy()) - mse(clean)
        out["ours"]["added_mse_control"] = dependent_interval(added_c, ordered=False)
        ratio = float(added.mean() / added_c.mean()) if added_c.mean() > 0 else math.nan
        out["ours"]["amplification_over_control"] = ratio
    return out


def sampler_sensitivity_rows(
    evals: Mapping[str, Mapping[str, Sequence[Evaluation]]], ordered: bool = True
) -> list[dict[str, Any]]:
    """The sampler-sensitivity table (issue 17): ``evals[sampler][source]`` the diffusion
    model's evaluations (one per seed, each with its control) under a named sampler (e.g. the
    paper's projection sampler and the DDS ablation).  One row per sampler, source and eps: the
    transferred PSNR drop, the control's drop and their difference (per slice averaged over the
    seeds, dependence-aware 95 % intervals over slices), and the ratio of the mean drops."""
    rows = []
    for sampler, by_src in evals.items():
        for src, evs in by_src.items():
            _check_seeds(f"{sampler}, {src}", evs)
            for e in evs[0].eps:
                if e <= 0:
                    continue
                adv = np.mean([ev.psnr_drop[ev.index(e)].numpy() for ev in evs], axis=0)
                ctl = np.mean(
                    [ev.psnr_drop_rand[ev.index(e)].numpy() for ev in evs],  # type: ignore[index]
                    axis=0,
                )
                iv = {
                    k: dependent_interval(v, ordered=ordered)
                    for k, v in (("transfer", adv), ("control", ctl), ("excess", adv - ctl))
                }
                rows.append(
                    {
                        "sampler": sampler,
                        "source": _lab(src),
                        "eps": _key(e),
                        "seeds": len(evs),
                        "slices": len(adv),
                        **{
                            f"{k} drop dB" if k != "excess" else "excess dB": (
                                f"{_f(v['mean'])} [{_f(v['low'])}, {_f(v['high'])}]"
                            )
                            for k, v in iv.items()
                        },
                        # only where the control's drop is clearly above 0 (a ratio over a
                        # drop indistinguishable from 0 means nothing)
                        "transfer / control": _f(
                            float(adv.mean() / ctl.mean())
                            if math.isfinite(iv["control"]["low"]) and iv["control"]["low"] > 0
                            else math.nan
                        ),
                    }
                )
    return rows


def _claim(
    claim: str,
    text: str,
    statistic: str,
    rows: list[dict[str, Any]],
    verdict: str,
    base: dict[str, Any],
) -> dict[str, Any]:
    return {
        "claim": claim,
        "text": text,
        "rule": rules.RULES[claim],
        "statistic": statistic,
        "rows": rows,
        "verdict": verdict,
        "evidence_base": base,
    }


def scorecard(
    profile: Profile,
    claims: Sequence[Mapping[str, Any]],
    n_subjects: int,
    authors: Mapping[str, Any] | None = None,
    exploratory: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card: header, the general rule, the claims in order (under smoke every verdict reads
    ``not evidence``; the rule's own verdict stays in ``rule_verdict``), the authors' number,
    and ``exploratory`` (tables that never enter a verdict)."""
    evidence = profile.name != "smoke"
    out = []
    for c in sorted(claims, key=lambda c: str(c["claim"])):
        c = dict(c)
        c["rule_verdict"] = c["verdict"]
        c.setdefault("rule", rules.RULES.get(str(c["claim"]), ""))
        if not evidence:
            c["verdict"] = rules.NOT_EVIDENCE
        out.append(c)
    card: dict[str, Any] = {
        "profile": profile.name,
        "header": header(n_subjects),
        "test_subjects": int(n_subjects),
        "evidence": evidence,
        "confidence": 0.95,
        "general_rule": rules.RULES["general"],
        "method": rules.METHOD,
        "claims": out,
    }
    if authors is not None:
        card["authors_number"] = dict(authors)
    if exploratory:
        card["exploratory"] = {"note": "exploratory: never enters a verdict", **exploratory}
    if extra:
        card.update(extra)
    return finite_json(card)


def build_card(
    profile: Profile,
    *,
    diffusion: Mapping[str, Sequence[Evaluation]],
    supervised_whitebox: Mapping[str, Evaluation],
    supervised_transfer: Mapping[tuple[str, str], Evaluation],
    claim5: Mapping[str, Any],
    gt: Tensor,
    head: Tensor,
    grey: Tensor,
    subjects: Sequence[str],
    authors: Evaluation | None = None,
    exploratory: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole card of issue 17 from a run's evaluations.

    ``diffusion[source]``: the diffusion model's evaluations of the perturbations transferred
    from ``source`` (one per sampler seed, every diffusion eps, with the equal-norm control);
    ``supervised_whitebox[m]``: model ``m``'s white-box evaluation with its control on the same
    slices; ``supervised_transfer[(s, t)]``: the supervised transfers with controls;
    ``claim5``: the claim-5 dict (unchanged rule, :func:`mripkg.report.claims.claim_monotone`);
    ``gt``, ``head``, ``grey``: images and masks of the diffusion slices; ``subjects``: the
    subject id of each diffusion slice (one slice per subject: intervals over subjects);
    ``authors``: the white-box i-RIM evaluation; ``exploratory``: tables outside the verdicts
    (e.g. the five criteria of the earlier claim 4 and the detector's AUC)."""
    n_sub, ordered = sampling_unit(list(subjects))
    c1 = claim_grey_matter(diffusion, gt, head, grey, rules.CLAIM1_EPS, "1", n_sub, ordered)
    c3 = claim_grey_matter(diffusion, gt, head, grey, rules.CLAIM3_EPS, "3", n_sub, ordered)
    pairs: dict[tuple[str, str], Sequence[Evaluation]] = {
        k: [v] for k, v in supervised_transfer.items()
    }
    pairs.update({(s, "diffusion"): evs for s, evs in diffusion.items()})
    c2 = claim_transfer(pairs, rules.CLAIM2_EPS, n_sub, ordered)
    c4 = claim_noise_like(
        supervised_whitebox, diffusion, gt, head, rules.CLAIM4_EPS, n_sub, ordered
    )
    c5 = {**claim5, "rule": rules.RULES["5"]}
    c5.setdefault("evidence_base", evidence_base(n_sub, c5.get("slices", []), c5.get("seeds", [])))
    return scorecard(
        profile,
        [c1, c2, c3, c4, c5],
        n_sub,
        authors=authors_comparison(authors) if authors is not None else None,
        exploratory=exploratory,
        extra=extra,
    )


def claim_rows_markdown(claim: Mapping[str, Any]) -> str:
    """Every comparison of one claim: value and interval (worst seed), slices, effective n,
    lag-1 correlation, each condition, holds; for claim 4 the pair's (a) and (b)."""
    from .tables import format_table

    out = []
    for r in claim["rows"]:
        row: dict[str, Any] = {"comparison": r["label"]}
        if "value" in r:
            row["value [95 % interval]"] = (
                f"{_f(r['value'], 3)} [{_f(r.get('low'), 3)}, {_f(r.get('high'), 3)}]"
            )
            row["slices (effective)"] = f"{r['n']} ({_f(r.get('n_eff'), 1)})"
            row["lag-1"] = _f(r.get("lag1"))
        else:
            row["(a) closer to own control"] = "yes" if r["a"] else "no"
            row["(b) less edge-aligned"] = "yes" if r["b"] else "no"
        failed = [k for k, v in r.get("conditions", {}).items() if not v]
        row["failed conditions"] = "; ".join(failed) or "-"
        row["holds"] = "yes" if r["holds"] else "no"
        out.append(row)
    return format_table(out) if out else "(no comparisons)"


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN / inf float replaced by ``None`` and numpy scalars / arrays made
    plain (``claims.json`` is strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def paper_card(art: Any) -> dict[str, Any]:
    """Notebook 05's card from an :class:`~mripkg.experiments.artifacts.Artifacts` run (after
    its statistics, detection, spread detector and ``supervised_transfer``): the diffusion
    evaluations over every sampler seed (read from notebook 04's caches), the supervised
    models' white-box evaluations with their own random controls on the diffusion slices, the
    earlier claim-4 criteria as an exploratory table; written to ``runs/<profile>/claims.json``
    and returned."""
    from ..attacks.control import budget_controls
    from ..evaluation.artifacts import SPREAD_SOURCE, grey_matter_mask
    from ..evaluation.scoring import evaluate_attack
    from ..evaluation.targets import Target
    from ..experiments import scorecard as run
    from ..io import write_json
    from ..paths import REPO_ROOT, run_dir
    from .claims import claim_monotone, claim_noise_like, noise_like_inputs

    prof, evals, main, e_star = art.prof, art.evals, art.main, art.e_star
    sup = list(SUPERVISED)
    d_ids = art.d_ids
    diff_runs = run.seed_evaluations(art.dt, art.ddata, art.sub, art.ctl, run.diffusion_seeds(prof))
    sup_targets = {m: Target(m, art.models[m], art.mask, batch_size=art.batch_size) for m in sup}
    wb_ctl = run.whitebox_with_controls(
        sup_targets, art.data, art.ddata, art.attacks, art.d_eps, art.ctl
    )
    ctl_sup = budget_controls(
        art.data.kspace, art.mask, art.data.slice_ids, art.sup_eps, seed=prof.seed
    )
    irim_wb = evaluate_attack(
        sup_targets["irim"], art.data, art.attacks["irim"], source="irim", controls=ctl_sup
    )
    noise_inputs = {}
    for (s, t), ev in evals.items():
        lab = f"{_lab(t)} {'white-box' if s == t else f'<- {_lab(s)}'}"
        if lab in main[:4]:
            noise_inputs[lab] = noise_like_inputs(ev, art.grids[lab], e_star)
    earlier = claim_noise_like(noise_inputs, main[2:4], main[0:2], e_star, seed=prof.seed)
    monotone = {f"{_lab(m)} (white-box)": evals[m, m] for m in sup}
    monotone.update({f"{_lab(s)} -> {_lab(t)}": ev for (s, t), ev in art.transfer.items()})
    head = art.test.masks[d_ids]
    card = build_card(
        prof,
        diffusion=diff_runs,
        supervised_whitebox=wb_ctl,
        supervised_transfer={k: v for k, v in art.transfer.items() if k[1] != "diffusion"},
        claim5=claim_monotone(monotone, seed=prof.seed),
        gt=art.ddata.images,
        head=head,
        grey=grey_matter_mask(art.ddata.images, head),
        subjects=[art.test.subjects[i] for i in d_ids],
        authors=irim_wb,
        exploratory={
            "claim4_earlier_criteria": {
                "eps": e_star,
                "rows": earlier["rows"],
                "note": "the five criteria before issue 17 (neighbour correlation, spectral "
                "flatness, kurtosis against a Gaussian, edge correlation, blind detector AUC)",
            }
        },
        extra={
            "sampler": art.models["diffusion"].describe(),
            "posterior_spread_detector": {
                "source": SPREAD_SOURCE,
                "seeds": art.spread_seeds,
                "slices": d_ids,
                "spread": art.spread,
                "blind_noise_auc": {k: art.blind[k] for k in art.spread if k in art.blind},
                "reconstructions_run": art.spread_todo,
                "seconds": art.spread_seconds,
            },
        },
    )
    path = write_json(run_dir(prof.name) / "claims.json", card)
    print("wrote", path.relative_to(REPO_ROOT))
    art.earlier_claim4 = earlier
    return card


def card_notes(card: Mapping[str, Any], earlier: Mapping[str, Any] | None = None) -> list[str]:
    """Markdown of the card: the card (:func:`scorecard_markdown`), each claim's rows
    (:func:`claim_rows_markdown`), then the exploratory table of the earlier claim-4 criteria
    (``earlier``: :func:`mripkg.report.claims.claim_noise_like`), never a verdict."""
    out = [scorecard_markdown(card)]
    out += [
        f"**Claim {c['claim']}** ({c['text']})\n\n" + claim_rows_markdown(c) for c in card["claims"]
    ]
    if earlier is not None:
        from .claims import claim_rows_markdown as old_rows

        out.append(
            "Exploratory, never a verdict: the earlier claim-4 criteria\n\n" + old_rows(earlier)
        )
    return out


def sensitivity_table(tr: Any) -> tuple[str, list[dict[str, Any]]]:
    """Notebook 04's sampler-sensitivity table from a
    :class:`~mripkg.experiments.transfer.Transfer` run (after ``evaluate_diffusion``): the
    paper's sampler over its seeds beside the DDS ablation on the same perturbations and
    controls; written to ``runs/<profile>/metrics_sampler_sensitivity.json``."""
    from ..attacks.control import budget_controls
    from ..evaluation.selection import subset_result
    from ..experiments import scorecard as run
    from ..io import write_json
    from ..paths import run_dir

    prof, evals, d_ids = tr.prof, tr.evals, tr.d_ids
    sup = list(SUPERVISED)
    paper = {
        s: [evals[(s, "diffusion")], *(evals[(s, "diffusion", f"seed+{k}")] for k in tr.seeded)]
        for s in sup
    }
    inputs = run.sampler_sensitivity(
        tr.targets["diffusion"],
        tr.ddata,
        {s: subset_result(tr.attacks[s], tr.data, d_ids, tr.d_eps) for s in sup},
        budget_controls(tr.ddata.kspace, tr.mask, d_ids, tr.d_eps, seed=prof.seed),
        paper,
        prof.seed,
    )
    rows = sampler_sensitivity_rows(inputs)
    tr.sensitivity_path = write_json(
        run_dir(prof.name) / "metrics_sampler_sensitivity.json", {"rows": rows}
    )
    return "Sampler sensitivity (PSNR drops in dB, 95 % intervals over slices)", rows


def _f(v: Any, d: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"


def card_markdown(card: Mapping[str, Any]) -> str:
    """The scorecard table of any ``claims.json``: issue 17's card (it has ``general_rule``)
    with :func:`scorecard_markdown`, an older one with
    :func:`mripkg.report.claims.scorecard_markdown`."""
    if "general_rule" in card:
        return scorecard_markdown(card)
    from .claims import scorecard_markdown as older_markdown

    return older_markdown(card)


def scorecard_markdown(card: Mapping[str, Any]) -> str:
    """The README's card from ``claims.json``: the header, one line per claim (the deciding
    comparison with its interval, how many hold, the verdict, subjects / slices / seeds), then
    each claim's rule sentence and the authors' number in dB, added MSE and amplification."""
    from .tables import format_table

    lines = [f"**{card['header']}.**", ""]
    rows = []
    for c in card["claims"]:
        rs = c["rows"]
        fail = [r for r in rs if not r["holds"]]
        w = fail[0] if fail else (rs[0] if rs else {})
        b = c.get("evidence_base", {})
        value = "-"
        if "value" in w:
            value = f"{_f(w['value'])} [{_f(w.get('low'))}, {_f(w.get('high'))}] ({w['label']})"
        elif w:
            value = (
                f"{w['label']}: (a) {'yes' if w['a'] else 'no'}, (b) {'yes' if w['b'] else 'no'}"
            )
        rows.append(
            {
                "claim": c["claim"],
                "statistic": c["statistic"],
                "deciding comparison [95 % interval]": value,
                "holds": f"{sum(bool(r['holds']) for r in rs)} of {len(rs)}",
                "verdict": c["verdict"],
                "subjects / slices / seeds": f"{b.get('test_subjects', '-')} / "
                f"{b.get('slices', '-')} / {b.get('sampler_seeds', '-')}",
            }
        )
    lines.append(format_table(rows))
    lines += ["", f"Rules (fixed before the results): {card['general_rule']}"]
    for c in card["claims"]:
        lines.append(f"* Claim {c['claim']}: {c['rule']}")
    if card.get("method"):
        lines += ["", card["method"]]
    a = card.get("authors_number")
    if a:
        p, o = a["paper"], a["ours"]
        amp = o.get("amplification_over_control")
        lines.append(
            f"\nThe authors' one number (i-RIM, eps {p['eps']:g}, {p['slices']}): "
            f"{p['psnr_clean']:.2f} -> {p['psnr_perturbed']:.2f} dB (drop {p['drop_db']:.2f} dB, "
            f"added MSE {p['added_mse']:.2e}); here: {o['psnr_clean']:.2f} -> "
            f"{o['psnr_perturbed']:.2f} dB (drop {_f(o['drop_db']['mean'])} dB, added MSE "
            f"{o['added_mse']['mean']:.2e} [{o['added_mse']['low']:.2e}, "
            f"{o['added_mse']['high']:.2e}], {_f(amp)}x the equal-norm control's, {o['n']} "
            "slices)."
        )
    if not card.get("evidence", True):
        lines.append(
            f"\nProfile `{card['profile']}`: tiny models trained for seconds; these numbers "
            "test the code, they are not evidence about the paper."
        )
    return "\n".join(lines)


__all__ = [
    "AUTHORS_IRIM",
    "authors_comparison",
    "build_card",
    "card_notes",
    "claim_grey_matter",
    "claim_noise_like",
    "claim_rows_markdown",
    "claim_transfer",
    "evidence_base",
    "finite_json",
    "header",
    "noise_like_values",
    "paper_card",
    "sampler_sensitivity_rows",
    "sampling_unit",
    "scorecard",
    "scorecard_markdown",
    "sensitivity_table",
]
