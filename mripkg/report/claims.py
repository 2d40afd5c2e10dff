"""The report layer: summaries of evaluations, paired statistics over slices, and the scorecard
of the paper's five claims.

Summaries
---------
:func:`whitebox_summary`, :func:`transfer_summary`, :func:`seed_summary` turn a
:class:`mripkg.robustness.Evaluation` into the JSON rows of notebooks 03/04;
:func:`clean_summary` writes notebook 02's closing note.

Statistics
----------
Everything is paired over slices (the same slice clean, perturbed and under the control) and
comes from :mod:`scipy.stats`: :func:`excess_over_control` (paired t-test and its 95 % interval),
:func:`mean_interval` (t interval of a mean), :func:`bootstrap_interval` (BCa bootstrap over slices
with a seeded generator, for ratios, AUCs and rank correlations).

Scorecard
---------
Rules fixed before looking at results (issue 10).  Each ``claim_*`` function returns one claim:
``{claim, text, statistic, threshold, rows, verdict, slices, seeds}``; each row one comparison
``{label, value, low, high, holds, n}`` (``low``/``high``: 95 % interval over slices).  A claim is
``reproduced`` when every row holds, ``partly reproduced`` when some do, ``not reproduced`` when
none does.  :func:`scorecard` collects the claims (under the smoke profile every verdict reads
``not evidence``), :func:`write_scorecard` writes ``runs/<profile>/claims.json`` atomically and
:func:`scorecard_markdown` renders the table (notebook 05, README).

1. claims 1 and 3 (:func:`claim_grey_matter`): at eps 0.01 and 0.02, from each supervised
   source into the diffusion model, the artifact energy inside a grey-matter mask
   (:func:`mripkg.artifacts.grey_matter_mask`) over that of the equal-norm random control
   (geometric mean over slices); holds when its interval lies above 1 and the mean excess energy
   exceeds the energy of the seed-to-seed change of clean diffusion reconstructions (partly
   reproduced when only the interval lies above 1 somewhere).  Beside it:
   the PSNR drop and the worst 16 x 16 window SSIM drop (:func:`worst_window_ssim_drop`).
   Claim 3 is the ResUNet++, eps 0.01 row.
2. claim 2 (:func:`claim_transfer`): transferred PSNR drop minus control drop at eps 0.04, every
   source-target pair; holds when the interval lies above 0.
3. claim 4 (:func:`claim_noise_like`): the criteria of :data:`CLAIM4_CRITERIA`, each as a paired
   difference over slices oriented so that positive = diffusion more noise-like; holds when the
   interval of the worst (diffusion, supervised) pair lies above 0.
4. claim 5 (:func:`claim_monotone`): per-slice Spearman(eps, PSNR), mean over slices; holds when
   its interval lies below 0, for every model and source-target pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..evaluation.artifacts import grey_matter_mask
from ..evaluation.selection import eps_key
from ..evaluation.stats import (
    CONFIDENCE,
    MIN_EXCESS_DB,
    MIN_SLICES,
    _as_np,
    auc_rows,
    bootstrap_interval,
    clear_word,
    excess_over_control,
    mean_interval,
    region_energy,
    slice_spearman,
    worst_window_ssim_drop,
)
from ..io import read_json, write_json
from ..models import LABELS, LEARNED, NAMES, SUPERVISED
from .tables import format_table

if TYPE_CHECKING:
    from ..evaluation.scoring import Evaluation
    from ..experiments.artifacts import Artifacts
    from ..experiments.transfer import Transfer
    from ..experiments.whitebox import WhiteBox
    from ..profiles import Profile

#: The one number the authors published (i-RIM, eps 0.08, one ADNI slice, 256 px): PSNR in dB.
AUTHORS_IRIM = {"eps": 0.08, "psnr_clean": 30.10, "psnr_perturbed": 25.46}
#: eps of the grey-matter rule (claims 1 and 3) and of the transfer rule (claim 2).
GREY_MATTER_EPS: tuple[float, ...] = (0.01, 0.02)
TRANSFER_EPS = 0.04
#: Verdict words.
REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly reproduced", "not reproduced"
NOT_EVIDENCE = "not evidence"


def _lab(name: str) -> str:
    return LABELS.get(name, name)


# --------------------------------------------------------------------------------------------
# summaries of evaluations (moved from robustness)


def clean_summary(results: dict[str, Any], spread: dict[str, Any], profile: Profile) -> str:
    """Markdown summary of the clean comparison with the measured numbers and the targets of
    the quick profile (learned models >= zero-filled + 4 dB; diffusion within 2 dB of the best
    supervised model), saying plainly which targets are met."""
    s = results["test"]["summary"]
    zf = s["zero_filled"]
    best_sup = max(SUPERVISED, key=lambda m: s[m]["psnr_mean"])
    lines = [
        f"Profile `{profile.name}` ({profile.image_size} px), test subject Colin27, "
        f"{len(results['test']['table']['zero_filled']['psnr'])} slices, paper convention:",
        "",
    ]
    for m in NAMES:
        v = s[m]
        gain = v["psnr_mean"] - zf["psnr_mean"]
        lines.append(
            f"* {LABELS[m]}: PSNR {v['psnr_mean']:.2f} ± {v['psnr_sd']:.2f} dB "
            f"({gain:+.2f} dB vs zero-filled), SSIM {v['ssim_mean']:.3f} "
            f"(head {v['ssim_head_mean']:.3f}); in-distribution test_id: "
            f"{results['test_id']['summary'][m]['psnr_mean']:.2f} dB"
        )
    lines.append("")
    for m in LEARNED:
        ok = (
            s[m]["psnr_mean"] >= zf["psnr_mean"] + 4
            and s[m]["ssim_mean"] > zf["ssim_mean"]
            and s[m]["ssim_head_mean"] > zf["ssim_head_mean"]
        )
        lines.append(
            f"* target '{LABELS[m]} >= zero-filled + 4 dB and above it in both SSIMs': "
            f"{'met' if ok else 'NOT met'}"
        )
    gap = s[best_sup]["psnr_mean"] - s["diffusion"]["psnr_mean"]
    lines.append(
        f"* target 'diffusion within 2 dB of the best supervised model ({LABELS[best_sup]})': "
        f"gap {gap:.2f} dB, {'met' if gap <= 2 else 'NOT met'}"
    )
    lines.append(
        f"* diffusion posterior spread over {len(spread['seeds'])} sampler seeds: PSNR SD "
        f"{spread['psnr_sd_across_seeds']:.2f} dB per slice, pixel RMS "
        f"{spread['pixel_rms_across_seeds']:.4f}"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the notebooks' closing notes (computed, never typed in)


def excess_text(ev: Evaluation, eps: float) -> tuple[dict[str, Any], str]:
    """:func:`excess_over_control` of an evaluation at ``eps`` and one line saying it: the
    drops, the excess with its 95 % interval, the slices and whether it is clear."""
    j = ev.index(eps)
    ex = excess_over_control(ev.psnr_drop[j], ev.psnr_drop_rand[j])  # type: ignore[index]
    text = (
        f"{float(ev.psnr_drop[j].mean()):.2f} dB vs control "
        f"{float(ev.psnr_drop_rand[j].mean()):.2f} dB (excess {ex['excess']:.2f} dB, "  # type: ignore[index]
        f"95 % interval [{ex['low']:.2f}, {ex['high']:.2f}], {ex['n']} slices): "
        f"{clear_word(ex)}"
    )
    return ex, text


def clear_rule() -> str:
    """The rule behind 'clear', in words."""
    return (
        f"'Clear': at least {MIN_SLICES} slices, a mean excess of the PSNR drop over the "
        f"control's of at least {MIN_EXCESS_DB} dB and a 95 % paired t interval above 0."
    )


def whitebox_report(
    evals: Mapping[str, Evaluation],
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    profile: Profile,
    steps: int,
    lr_rel: float,
    proxy_rows: Sequence[Mapping[str, Any]] = (),
    short_steps: int = 0,
) -> str:
    """Notebook 03's closing note: per model the PSNR / SSIM from eps 0 to the largest eps
    beside the control, amplification, whether they fall with eps and the excess over the
    control; claim 5 and the supervised part of claim 1; the authors' number beside ours; the
    diffusion white-box part when it ran (``proxy_rows``: :func:`mripkg.robustness.\
short_vs_full_sampler`); amplification.  ``summary[m]``: :func:`whitebox_summary`."""
    first = next(iter(evals.values()))
    eps_grid = first.eps
    lines = [
        f"Profile `{profile.name}`: {len(first.slice_ids)} Colin27 test slices, eps "
        f"{eps_grid[0]:g} to {eps_grid[-1]:g}, {steps} Adam steps (lr_rel {lr_rel:g}). "
        + clear_rule(),
        "",
    ]
    e_max = eps_key(eps_grid[-1])
    for m, ev in evals.items():
        s = summary[m]
        keys = list(s)
        p_falls = falls_with_eps([s[k]["psnr_mean"] for k in keys])
        s_falls = falls_with_eps([s[k]["ssim_mean"] for k in keys], tol=0.002)
        k = eps_key(ev.eps[-1])
        _, txt = excess_text(ev, ev.eps[-1])
        lines.append(
            f"* {LABELS[m]}: PSNR {s[keys[0]]['psnr_mean']:.2f} -> {s[k]['psnr_mean']:.2f} dB and "
            f"SSIM {s[keys[0]]['ssim_mean']:.3f} -> {s[k]['ssim_mean']:.3f} from eps 0 to {k} "
            f"(random control of the same norm: {s[k]['random_psnr_mean']:.2f} dB, "
            f"{s[k]['random_ssim_mean']:.3f}); amplification {s[k]['amplification']:.2f} "
            f"(control {s[k]['random_amplification']:.2f}). PSNR falls with eps: "
            f"{'yes' if p_falls else 'NO'}; SSIM falls: {'yes' if s_falls else 'NO'}; PSNR drop "
            f"{txt}."
        )
    lines.append("")
    sup = [m for m in SUPERVISED if m in evals]
    learned = [m for m in evals if m != "zero_filled"]
    claim5 = all(
        falls_with_eps([summary[m][k]["psnr_mean"] for k in summary[m]])
        and falls_with_eps([summary[m][k]["ssim_mean"] for k in summary[m]], 0.002)
        for m in learned
    )
    lines.append(
        f"* Claim 5 (SSIM and PSNR fall as the perturbation grows, for every model; attacked "
        f"here: {', '.join(LABELS[m] for m in learned)}): "
        f"**{REPRODUCED if claim5 else NOT_REPRODUCED}** (the scorecard of notebook 05 tests "
        "it per slice with a rank correlation)."
    )
    beats = claim_verdict(
        [excess_over_control(evals[m].psnr_drop[-1], evals[m].psnr_drop_rand[-1]) for m in sup]  # type: ignore[index]
    )
    lines.append(
        f"* Claim 1, supervised part (tiny worst-case perturbations distort the reconstruction "
        f"far more than random noise of the same norm, at eps {e_max}): "
        f"**{beats}** for {', '.join(LABELS[m] for m in sup)}."
    )
    if "irim" in evals and any(abs(e - AUTHORS_IRIM["eps"]) < 1e-9 for e in evals["irim"].eps):
        a = authors_number(evals["irim"])
        o, d = a["ours"], a["ours"]["drop"]
        lines.append(
            f"* The one number seen from the authors' outputs (i-RIM, eps 0.08, one ADNI slice, "
            f"256 px): {AUTHORS_IRIM['psnr_clean']:.2f} -> {AUTHORS_IRIM['psnr_perturbed']:.2f} "
            f"dB, a drop of {a['paper']['drop']:.2f} dB. Here: {o['psnr_clean']:.2f} -> "
            f"{o['psnr_perturbed']:.2f} dB, a drop of {d['mean']:.2f} dB (95 % interval "
            f"[{d['low']:.2f}, {d['high']:.2f}]) over {o['n']} slices (other data, size and "
            "model width, so only the order of magnitude is comparable)."
        )
    if "diffusion" in evals:
        ev = evals["diffusion"]
        ex, txt = excess_text(ev, ev.eps[-1])
        lines.append(
            f"* Claim 1, diffusion part (white-box, beyond the paper, {len(ev.slice_ids)} "
            f"slices): at eps {eps_key(ev.eps[-1])} PSNR drop {txt}: "
            f"**{claim_verdict([ex])}**."
        )
        if proxy_rows:
            r = proxy_rows[-1]
            lines.append(
                f"  On the attacked {short_steps}-step sampler itself (the attack's noise) the "
                f"drop at eps {r['eps']} is {r['short sampler']:.2f} dB (control "
                f"{r['control (short)']:.2f}); on the full sampler {r['full sampler']:.2f} dB "
                f"(control {r['control (full)']:.2f})."
            )
    else:
        lines.append(
            "* Claim 1, diffusion part: not tested here (white-box on the diffusion model is "
            "opt-in: `diffusion_whitebox = True`); notebook 04 tests it by transfer."
        )
    if "zero_filled" in summary:
        zf = summary["zero_filled"][e_max]["amplification"]
        amp = []
        for m in sup:
            a_m = summary[m][e_max]["amplification"]
            amp.append(f"{LABELS[m]} {a_m:.2f} ({'enlarges' if a_m > 1 else 'damps'} it)")
        lines.append(
            f"* Amplification at eps {e_max}: zero-filled {zf:.2f} (at most 1 by construction); "
            + "; ".join(amp)
            + "."
        )
    return "\n".join(lines)


def transfer_report(
    evals: Mapping[tuple[str, ...], Evaluation],
    table: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
    *,
    profile: Profile,
    sources: Sequence[str],
    route_eps: float,
    small_eps: float,
    steps: int,
    sampler_steps: int,
    sampler: str = "",
) -> str:
    """Notebook 04's closing note: each supervised source against the other supervised model
    and the diffusion model (direct route over sampler seeds, and the authors' image route) at
    ``route_eps``, the white-box diffusion source when present, claims 2, 3 and 5.
    ``evals[(source, target[, seed tag])]``; ``table``: the ``metrics_transfer.json`` layout;
    ``sampler``: a description of the diffusion sampler (``DiffusionReconstructor.describe``)."""
    labels = {**LABELS, "diffusion_image_route": "diffusion (image route)"}
    sup = [s for s in SUPERVISED if s in sources]
    ev_any = evals[(sup[0], "diffusion")]
    n_src = len(evals[(sup[0], "resunetpp" if sup[0] != "resunetpp" else "irim")].slice_ids)
    lines = [
        f"Profile `{profile.name}`: perturbations crafted on {n_src} Colin27 test slices with "
        f"{steps} Adam steps; diffusion target on {len(ev_any.slice_ids)} of them with "
        f"{sampler_steps} sampler steps{f' ({sampler})' if sampler else ''}. " + clear_rule(),
        "",
    ]
    sup_ok, diff_ok = [], []
    for s in sup:
        other = "irim" if s == "resunetpp" else "resunetpp"
        ex, txt = excess_text(evals[(s, other)], route_eps)
        sup_ok.append(ex)
        lines.append(f"* {labels[s]} -> {labels[other]} at eps {route_eps:g}: PSNR drop {txt}.")
        ex, txt = excess_text(evals[(s, "diffusion")], route_eps)
        diff_ok.append(ex)
        seeds = table[s]["diffusion"][eps_key(route_eps)]
        lines.append(
            f"* {labels[s]} -> diffusion at eps {route_eps:g} (direct route, same noise): {txt}; "
            f"over sampler seeds {seeds['seeds']}: {seeds['psnr_drop_seed_mean']:.2f} ± "
            f"{seeds['psnr_drop_seed_sd']:.2f} dB (control "
            f"{seeds['random_psnr_drop_seed_mean']:.2f})."
        )
        _, txt = excess_text(evals[(s, "diffusion_image_route")], route_eps)
        lines.append(
            f"* {labels[s]} -> diffusion at eps {route_eps:g}, authors' image route: {txt}."
        )
    if "diffusion" in sources:
        for t in ("diffusion", "resunetpp", "irim"):
            ev = evals[("diffusion", t)]
            if any(abs(e - route_eps) < 1e-9 for e in ev.eps):
                _, txt = excess_text(ev, route_eps)
                kind = "white-box, full sampler" if t == "diffusion" else "transfer"
                lines.append(f"* diffusion ({kind}) -> {labels[t]} at eps {route_eps:g}: {txt}.")
    lines.append("")
    lines.append(
        f"* Claim 2, between the supervised models (eps {route_eps:g}): "
        f"**{claim_verdict(sup_ok)}** ({sum(e['clear'] for e in sup_ok)} of {len(sup_ok)} "
        "source-target pairs clear)."
    )
    lines.append(
        f"* Claim 2, supervised surrogate -> diffusion (eps {route_eps:g}): "
        f"**{claim_verdict(diff_ok)}** ({sum(e['clear'] for e in diff_ok)} of {len(diff_ok)} "
        "sources clear)."
    )
    ex3, txt3 = excess_text(evals[("resunetpp", "diffusion")], small_eps)
    lines.append(
        f"* Claim 3 (eps {small_eps:g}, ResUNet++ -> diffusion): PSNR drop {txt3}; a measurable "
        f"distortion beyond the control: **{claim_verdict([ex3])}** (grey matter: the "
        "scorecard of notebook 05; Figure 4 shows where it acts)."
    )
    falls = {}
    for key, ev in evals.items():
        if len(key) == 2 and key[1] != "zero_filled" and len(ev.eps) > 2:
            falls[key] = falls_with_eps([float(v) for v in ev.psnr.mean(1)])
    n_f = sum(falls.values())
    missing = ", ".join(f"{labels[s]} -> {labels[t]}" for (s, t), v in falls.items() if not v)
    lines.append(
        f"* Claim 5 (PSNR falls as eps grows, every source -> target with at least 3 eps): "
        f"**{REPRODUCED if n_f == len(falls) else NOT_REPRODUCED}** ({n_f} of {len(falls)} "
        f"pairs" + (f"; not for {missing}" if missing else "") + ")."
    )
    return "\n".join(lines)


def artifacts_report(
    at_star: Mapping[str, Mapping[str, Any]],
    references: Mapping[str, Mapping[str, Any]],
    *,
    profile: Profile,
    eps: float,
    n_slices: int,
    diffusion: Sequence[str],
    supervised: Sequence[str],
    control: str,
) -> tuple[list[dict[str, Any]], str, str]:
    """Notebook 05's claim-4 note: :func:`claim4_criteria` of ``at_star`` (label -> summary row
    with ``detection_auc`` at ``eps``), the references without perturbation (label -> summary
    row at eps 0) and the diffusion model's response to the random control.  Returns
    ``(criteria, verdict, markdown)``."""
    criteria = claim4_criteria(at_star, diffusion=diffusion, supervised=supervised)
    verdict = claim4_verdict(criteria)
    lines = [f"Profile `{profile.name}`, eps {eps:g}, {n_slices} diffusion slices:", ""]
    for c in criteria:
        lines.append(
            f"* {c['meaning']} ({c['statistic']}; worst diffusion {c['diffusion']:.3f} vs best "
            f"supervised {c['supervised']:.3f}): {'holds' if c['holds'] else 'does NOT hold'}."
        )
    for lab, r in references.items():
        lines.append(
            f"* reference, {lab}: excess kurtosis {r['excess_kurtosis']:.2f}, adjacent corr "
            f"{r['neighbour_corr']:.2f}, edge corr {r['edge_corr']:.2f}, flatness "
            f"{r['spectral_flatness']:.2f}."
        )
    r_ctl = at_star[control]
    lines += [
        f"* the diffusion model's response to random noise of the same norm: adjacent corr "
        f"{r_ctl['neighbour_corr']:.2f}, kurtosis {r_ctl['excess_kurtosis']:.2f}, detection AUC "
        f"{r_ctl['detection_auc']:.2f}.",
        "",
        f"Exploratory (never a verdict; issue 17): the five descriptive criteria above, on the "
        f"means, would read '{verdict}'; claim 4's verdict is the scorecard's, by its fixed "
        "rule (each artifact against its own random control, edge correlation).",
    ]
    return criteria, verdict, "\n".join(lines)


# --------------------------------------------------------------------------------------------
# paired statistics over slices


def claim_verdict(comparisons: Sequence[Mapping[str, Any]]) -> str:
    """``'reproduced'`` when every comparison (:func:`excess_over_control`) is clear,
    ``'undecided (fewer than MIN_SLICES slices)'`` when any has too few slices to decide, else
    ``'not reproduced'``."""
    if not comparisons:
        return "undecided (nothing compared)"
    if any(c["n"] < MIN_SLICES for c in comparisons):
        return f"undecided (fewer than {MIN_SLICES} slices)"
    return REPRODUCED if all(c["clear"] for c in comparisons) else NOT_REPRODUCED


def falls_with_eps(values: Sequence[float], tol: float = 0.05) -> bool:
    """True when a metric (ordered by increasing eps) ends below where it starts and never
    rises by more than ``tol`` from one eps to the next."""
    v = [float(x) for x in values]
    if len(v) < 2:
        return False
    return v[-1] < v[0] and all(b <= a + tol for a, b in zip(v, v[1:], strict=False))


def grey_matter_verdict(rows: Sequence[Mapping[str, Any]]) -> str:
    """The verdict of :func:`claim_grey_matter`: :func:`rows_verdict`, except that a claim in
    which no row holds but some row's energy ratio lies above 1 (the perturbation targets grey
    matter beyond the control, by less than the sampler's own seed-to-seed change) is
    ``partly reproduced``."""
    v = rows_verdict(rows)
    if v == NOT_REPRODUCED and any(r.get("ratio_above_1") for r in rows):
        return PARTLY
    return v


def rows_verdict(rows: Sequence[Mapping[str, Any]]) -> str:
    """``reproduced`` when every row holds, ``partly reproduced`` when some do, else ``not
    reproduced``; ``undecided`` when any row rests on fewer than :data:`MIN_SLICES` slices."""
    if not rows:
        return "undecided (nothing compared)"
    if any(int(r["n"]) < MIN_SLICES for r in rows):
        return f"undecided (fewer than {MIN_SLICES} slices)"
    held = [bool(r["holds"]) for r in rows]
    if all(held):
        return REPRODUCED
    return PARTLY if any(held) else NOT_REPRODUCED


# --------------------------------------------------------------------------------------------
# local damage


# --------------------------------------------------------------------------------------------
# the claims


def _none(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def _row(label: str, value: float, low: float, high: float, holds: bool, n: int, **extra: Any):
    return {
        "label": label,
        "value": _none(value),
        "low": _none(low),
        "high": _none(high),
        "holds": bool(holds),
        "n": int(n),
        **extra,
    }


def _claim(
    claim: str,
    text: str,
    statistic: str,
    threshold: str,
    rows: list[dict[str, Any]],
    slices: Sequence[int],
    seeds: Sequence[int],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "claim": claim,
        "text": text,
        "statistic": statistic,
        "threshold": threshold,
        "rows": rows,
        "verdict": rows_verdict(rows),
        "slices": [int(s) for s in slices],
        "seeds": [int(s) for s in seeds],
        **extra,
    }


def claim_grey_matter(
    evals: Mapping[str, Evaluation],
    other_seed: Tensor,
    gt: Tensor,
    head: Tensor,
    eps: Sequence[float] = GREY_MATTER_EPS,
    seed: int = 0,
    other_seed_id: int | None = None,
) -> dict[str, Any]:
    """Claims 1 and 3: small transferred perturbations distort grey matter in the diffusion
    reconstruction.

    ``evals[source]``: the diffusion model's evaluation of the perturbations transferred from
    ``source`` with the equal-norm control (``rand``), over the slices of ``gt`` / ``head``
    ``[B, 1, H, W]``; ``other_seed``: clean reconstructions of the same slices with another
    sampler seed ``[B, 1, H, W]`` (``other_seed_id``: that seed, listed among the seeds).  One
    row per (source, eps): the geometric mean over slices of
    ``E_adv / E_ctl``, the artifact energy inside the grey-matter mask of the perturbed over
    that of the control reconstruction, with a bootstrap interval; it holds when the interval
    lies above 1 and the mean excess ``E_adv - E_ctl`` exceeds the mean grey-matter energy
    ``E_seed`` of the seed-to-seed change.  Extra keys: the PSNR drops and the worst-window SSIM
    drops of perturbation and control (means with t intervals)."""
    if not evals:
        raise ValueError("no evaluations")
    gm = grey_matter_mask(gt, head)
    rows, slices, seeds = [], None, set()
    for source, ev in evals.items():
        if ev.rand is None:
            raise ValueError(f"the evaluation of {source!r} has no random control")
        if ev.clean.shape != gt.shape or other_seed.shape != gt.shape:
            raise ValueError(
                f"{source}: clean {tuple(ev.clean.shape)}, other_seed "
                f"{tuple(other_seed.shape)} and gt {tuple(gt.shape)} must match"
            )
        slices = ev.slice_ids
        seeds |= {ev.seed} if ev.seed is not None else set()
        seeds |= {other_seed_id} if other_seed_id is not None else set()
        e_seed = region_energy(other_seed - ev.clean, gm).numpy()
        for e in eps:
            j = ev.index(e)
            e_adv = region_energy(ev.adv[j] - ev.clean, gm).numpy()
            e_ctl = region_energy(ev.rand[j] - ev.clean, gm).numpy()
            if (e_ctl <= 0).any():
                raise ValueError(f"{source}, eps {e}: a control changes nothing in grey matter")
            log_r = np.log(np.maximum(e_adv, 1e-300)) - np.log(e_ctl)
            value, low, high = bootstrap_interval(
                lambda i, lr=log_r: np.exp(lr[i].mean(-1)), len(log_r), seed
            )
            excess = float((e_adv - e_ctl).mean())
            spread = float(e_seed.mean())
            wd = worst_window_ssim_drop(ev.clean, ev.adv[j], gt)
            wc = worst_window_ssim_drop(ev.clean, ev.rand[j], gt)
            extra = {
                "source": source,
                "eps": eps_key(e),
                "excess_energy": excess,
                "seed_energy": spread,
                "excess_over_seed": _none(excess / spread) if spread > 0 else None,
                "psnr_drop": _interval_dict(ev.psnr_drop[j]),
                "psnr_drop_control": _interval_dict(ev.psnr_drop_rand[j]),  # type: ignore[index]
                "window_ssim_drop": _interval_dict(wd),
                "window_ssim_drop_control": _interval_dict(wc),
            }
            extra["ratio_above_1"] = bool(math.isfinite(low) and low > 1)
            holds = extra["ratio_above_1"] and excess > spread
            rows.append(
                _row(
                    f"{_lab(source)} -> diffusion, eps {e:g}",
                    value,
                    low,
                    high,
                    holds,
                    len(log_r),
                    **extra,
                )
            )
    return _claim(
        "1",
        "small transferred perturbations distort grey matter in the diffusion reconstruction",
        "grey-matter artifact energy / equal-norm control's (geometric mean over slices)",
        "interval > 1 and mean excess energy > seed-to-seed energy of clean reconstructions",
        rows,
        slices or [],
        sorted(seeds),
        seed_to_seed="energy of f_seed'(y) - f(y) inside grey matter, mean over slices",
    ) | {"verdict": grey_matter_verdict(rows)}


def _interval_dict(v: Tensor) -> dict[str, float | None]:
    m, lo, hi = mean_interval(v)
    return {"mean": _none(m), "low": _none(lo), "high": _none(hi)}


def claim_small_eps(
    grey: Mapping[str, Any], source: str = "resunetpp", eps: float = 0.01
) -> dict[str, Any]:
    """Claim 3: the row of :func:`claim_grey_matter` for ``source`` at ``eps`` (the paper's
    ResUNet++ at 0.01), judged by the same rule."""
    rows = [r for r in grey["rows"] if r.get("source") == source and r.get("eps") == eps_key(eps)]
    if not rows:
        raise KeyError(f"no row for {source} at eps {eps:g} in the grey-matter claim")
    return _claim(
        "3",
        f"even at eps {eps:g} a perturbation crafted on {_lab(source)} distorts grey matter "
        "in the diffusion reconstruction",
        grey["statistic"],
        grey["threshold"],
        rows,
        grey["slices"],
        grey["seeds"],
    ) | {"verdict": grey_matter_verdict(rows)}


def claim_transfer(
    evals: Mapping[tuple[str, str], Evaluation], eps: float = 0.04
) -> dict[str, Any]:
    """Claim 2: perturbations transfer.  ``evals[(source, target)]`` (source != target, each
    with its control): one row per pair, the mean over slices of the transferred PSNR drop
    minus the control's at ``eps`` with its paired t interval (:func:`excess_over_control`);
    holds when the interval lies above 0."""
    rows, slices, seeds = [], set(), set()
    for (s, t), ev in evals.items():
        if s == t:
            raise ValueError(f"({s}, {t}) is white-box, not a transfer")
        if ev.psnr_drop_rand is None:
            raise ValueError(f"the evaluation {s} -> {t} has no random control")
        j = ev.index(eps)
        ex = excess_over_control(ev.psnr_drop[j], ev.psnr_drop_rand[j])
        slices |= set(ev.slice_ids)
        if ev.seed is not None:
            seeds.add(ev.seed)
        rows.append(
            _row(
                f"{_lab(s)} -> {_lab(t)}",
                ex["excess"],
                ex["low"],
                ex["high"],
                math.isfinite(ex["low"]) and ex["low"] > 0,
                ex["n"],
                source=s,
                target=t,
                p=_none(ex["p"]),
                psnr_drop=float(ev.psnr_drop[j].mean()),
                psnr_drop_control=float(ev.psnr_drop_rand[j].mean()),
            )
        )
    return _claim(
        "2",
        "perturbations crafted on a supervised surrogate transfer to the other models",
        f"transferred PSNR drop - control drop at eps {eps:g} (dB, mean over slices)",
        "interval > 0 for every source-target pair",
        rows,
        sorted(slices),
        sorted(seeds),
    )


#: The criteria of claim 4, each a comparison of the diffusion model's artifacts with the
#: supervised models' at one eps: (statistic, which way is "more like white Gaussian noise",
#: what it tests).  "abs_lower": smaller absolute value; "higher" / "lower": the value itself.
CLAIM4_CRITERIA: tuple[tuple[str, str, str], ...] = (
    ("neighbour_corr", "lower", "texture: less correlated between adjacent pixels"),
    ("spectral_flatness", "higher", "texture: flatter power spectrum"),
    ("excess_kurtosis", "abs_lower", "marginal: pixel values closer to Gaussian tails"),
    ("edge_corr", "lower", "not anatomical: less aligned with tissue edges"),
    ("detection_auc", "lower", "harder to detect: the blind noise estimate separates less"),
)


def claim4_criteria(
    rows: Mapping[str, Mapping[str, Any]],
    diffusion: Sequence[str],
    supervised: Sequence[str],
) -> list[dict[str, Any]]:
    """Evaluate :data:`CLAIM4_CRITERIA` on ``rows[label]`` (a :func:`mripkg.artifacts.summarize`
    row plus ``detection_auc``, all at one eps).  A criterion holds when *every* diffusion
    artifact is on the noise-like side of *every* supervised one (worst diffusion vs best
    supervised).  Returns one dict per criterion: ``statistic, meaning, diffusion, supervised,
    holds`` (``diffusion`` / ``supervised``: the worst / best value of each group)."""
    out = []
    for key, way, meaning in CLAIM4_CRITERIA:
        d = [float(rows[lab][key]) for lab in diffusion]
        s = [float(rows[lab][key]) for lab in supervised]
        if way == "abs_lower":
            d, s = [abs(v) for v in d], [abs(v) for v in s]
        if way == "higher":
            worst_d, best_s, holds = min(d), max(s), min(d) > max(s)
        else:
            worst_d, best_s, holds = max(d), min(s), max(d) < min(s)
        out.append(
            {
                "statistic": key,
                "meaning": meaning,
                "diffusion": worst_d,
                "supervised": best_s,
                "holds": bool(holds),
            }
        )
    return out


def claim4_verdict(criteria: Sequence[Mapping[str, Any]]) -> str:
    """``reproduced`` (every criterion holds), ``partly reproduced`` or ``not reproduced``."""
    held = [bool(c["holds"]) for c in criteria]
    if held and all(held):
        return REPRODUCED
    return PARTLY if any(held) else NOT_REPRODUCED


def _oriented(way: str, d: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-slice difference, positive where the diffusion value is the more noise-like."""
    if way == "higher":
        return d - s
    if way == "lower":
        return s - d
    if way == "abs_lower":
        return np.abs(s) - np.abs(d)
    raise ValueError(f"unknown direction {way!r}")


def claim_noise_like(
    per_slice: Mapping[str, Mapping[str, Any]],
    diffusion: Sequence[str],
    supervised: Sequence[str],
    eps: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Claim 4 with an interval per criterion.

    ``per_slice[label]``: ``slice_ids`` and, per slice at ``eps``, every statistic of
    :data:`CLAIM4_CRITERIA` but the AUC (``[B]`` tensors or arrays), plus ``sigma_clean`` and
    ``sigma_perturbed`` (``[B]``, the blind :func:`mripkg.artifacts.noise_sigma` of the clean and
    the perturbed reconstruction).  For each criterion and each (diffusion, supervised) pair,
    on the slices both have, the mean per-slice difference (for the AUC: the supervised AUC minus
    the diffusion AUC) oriented so that positive = diffusion more noise-like, with a bootstrap
    interval over slices.  The criterion's row is its worst pair (lowest lower bound); it holds
    when that interval lies above 0."""
    rows = []
    all_ids: set[int] = set()
    for key, way, meaning in CLAIM4_CRITERIA:
        worst = None
        for d in diffusion:
            for s in supervised:
                pd, ps = per_slice[d], per_slice[s]
                common = [i for i in pd["slice_ids"] if i in set(ps["slice_ids"])]
                if len(common) < 1:
                    raise ValueError(f"{d} and {s} share no slice")
                all_ids |= set(common)
                id_d = [list(pd["slice_ids"]).index(i) for i in common]
                id_s = [list(ps["slice_ids"]).index(i) for i in common]
                if key == "detection_auc":
                    cd, qd = _as_np(pd["sigma_clean"])[id_d], _as_np(pd["sigma_perturbed"])[id_d]
                    cs, qs = _as_np(ps["sigma_clean"])[id_s], _as_np(ps["sigma_perturbed"])[id_s]

                    def stat(i, cd=cd, qd=qd, cs=cs, qs=qs):
                        return auc_rows(cs[i], qs[i]) - auc_rows(cd[i], qd[i])

                else:
                    diff = _oriented(way, _as_np(pd[key])[id_d], _as_np(ps[key])[id_s])

                    def stat(i, diff=diff):
                        return diff[i].mean(-1)

                value, low, high = bootstrap_interval(stat, len(common), seed)
                cand = (low if math.isfinite(low) else -math.inf, d, s, value, low, high)
                if worst is None or cand[0] < worst[0]:
                    worst = (*cand, len(common))
        assert worst is not None
        _, d, s, value, low, high, n = worst
        rows.append(
            _row(
                f"{meaning} ({key})",
                value,
                low,
                high,
                math.isfinite(low) and low > 0,
                n,
                statistic=key,
                worst_pair=[d, s],
            )
        )
    return _claim(
        "4",
        "the diffusion model's artifacts look like Gaussian noise, unlike the supervised "
        "models', and are harder to detect",
        f"per criterion, diffusion minus supervised at eps {eps:g}, oriented so that > 0 = "
        "diffusion more noise-like (worst pair)",
        "interval > 0 for every criterion",
        rows,
        sorted(all_ids),
        [],
    )


def noise_like_inputs(ev: Evaluation, grid: Mapping[str, Tensor], eps: float) -> dict[str, Any]:
    """The per-slice inputs of :func:`claim_noise_like` for one artifact: its slice ids, the
    statistics of :func:`mripkg.artifacts.stats_grid` ``grid`` (``[E, B]``, rows = ``ev.eps``)
    at ``eps``, and the blind noise level of the clean and the perturbed reconstruction."""
    from ..evaluation.artifacts import noise_sigma

    j = ev.index(eps)
    return {
        "slice_ids": list(ev.slice_ids),
        **{k: v[j] for k, v in grid.items()},
        "sigma_clean": noise_sigma(ev.clean),
        "sigma_perturbed": noise_sigma(ev.adv[j]),
    }


def claim_monotone(evals: Mapping[str, Evaluation], seed: int = 0) -> dict[str, Any]:
    """Claim 5: PSNR falls as eps grows, for every model and source-target pair.
    ``evals[label]``: evaluations over at least 3 eps (the clean PSNR counts as eps 0 when 0 is
    not in the grid).  One row per label: the mean over slices of Spearman(eps, PSNR) with a
    bootstrap interval; it holds when the interval lies below 0 (a slice whose PSNR does not
    change at all counts as 0)."""
    rows, slices, seeds = [], set(), set()
    for label, ev in evals.items():
        eps, psnr = list(ev.eps), ev.psnr
        if not any(abs(e) < 1e-12 for e in eps):
            eps, psnr = [0.0, *eps], torch.cat([ev.psnr_clean[None], ev.psnr])
        rho = np.nan_to_num(slice_spearman(eps, psnr), nan=0.0)
        value, low, high = bootstrap_interval(lambda i, r=rho: r[i].mean(-1), len(rho), seed)
        slices |= set(ev.slice_ids)
        if ev.seed is not None:
            seeds.add(ev.seed)
        rows.append(
            _row(
                label,
                value,
                low,
                high,
                math.isfinite(high) and high < 0,
                len(rho),
                eps=[eps_key(e) for e in eps],
            )
        )
    return _claim(
        "5",
        "PSNR falls as the perturbation grows, for every model",
        "Spearman(eps, PSNR) per slice, mean over slices",
        "interval < 0 for every model and pair",
        rows,
        sorted(slices),
        sorted(seeds),
    )


def authors_number(ev: Evaluation) -> dict[str, Any]:
    """The authors' one published number (:data:`AUTHORS_IRIM`) beside ours: ``ev`` is the
    white-box i-RIM evaluation; our clean and perturbed PSNR at that eps and the drop with its
    t interval over slices."""
    j = ev.index(AUTHORS_IRIM["eps"])
    drop = _interval_dict(ev.psnr_drop[j])
    return {
        "paper": {
            **AUTHORS_IRIM,
            "drop": round(AUTHORS_IRIM["psnr_clean"] - AUTHORS_IRIM["psnr_perturbed"], 2),
            "slices": "one ADNI slice, 256 px",
        },
        "ours": {
            "eps": AUTHORS_IRIM["eps"],
            "psnr_clean": float(ev.psnr_clean.mean()),
            "psnr_perturbed": float(ev.psnr[j].mean()),
            "drop": drop,
            "n": len(ev.slice_ids),
        },
    }


# --------------------------------------------------------------------------------------------
# the scorecard


def scorecard(
    profile: Profile,
    claims: Sequence[Mapping[str, Any]],
    authors: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The scorecard of a run: the claims in order, the authors' number beside ours, and
    ``evidence`` (False under the smoke profile: tiny models trained for seconds, so each
    claim's ``verdict`` reads ``not evidence``; the verdict its rule gives stays in
    ``rule_verdict``)."""
    evidence = profile.name != "smoke"
    out = []
    for c in sorted(claims, key=lambda c: str(c["claim"])):
        c = dict(c)
        c["rule_verdict"] = c["verdict"]
        if not evidence:
            c["verdict"] = NOT_EVIDENCE
        out.append(c)
    card: dict[str, Any] = {
        "profile": profile.name,
        "evidence": evidence,
        "confidence": CONFIDENCE,
        "claims": out,
    }
    if authors is not None:
        card["authors_number"] = dict(authors)
    if extra:
        card.update(extra)
    return card


def write_scorecard(path: str | Path, card: Mapping[str, Any]) -> Path:
    """Write the scorecard as JSON atomically (``runs/<profile>/claims.json``)."""
    return write_json(path, card)


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _worst(c: Mapping[str, Any]) -> Mapping[str, Any]:
    """The row that decides a claim: the first that fails, else the one nearest failing."""
    rows = c["rows"]
    failing = [r for r in rows if not r["holds"]]
    if failing:
        return failing[0]
    if c["claim"] == "5":
        return max(rows, key=lambda r: r["high"] if r["high"] is not None else math.inf)
    return min(rows, key=lambda r: r["low"] if r["low"] is not None else -math.inf)


def scorecard_markdown(claims: Mapping[str, Any]) -> str:
    """The scorecard as a Markdown table: one line per claim with its statistic, the deciding
    comparison's value and 95 % interval over slices, how many comparisons hold, the
    threshold, the verdict, and the slices and seeds it rests on; then the authors' number
    beside ours.  ``claims``: a :func:`scorecard` (e.g. read from ``claims.json``)."""
    rows = []
    for c in claims["claims"]:
        w = _worst(c)
        n_hold = sum(bool(r["holds"]) for r in c["rows"])
        rows.append(
            {
                "claim": c["claim"],
                "statistic": c["statistic"],
                "value [95 % interval]": f"{_fmt(w['value'])} [{_fmt(w['low'])}, "
                f"{_fmt(w['high'])}] ({w['label']})",
                "holds": f"{n_hold} of {len(c['rows'])}",
                "threshold": c["threshold"],
                "verdict": c["verdict"],
                "slices / seeds": f"{len(c['slices'])} / "
                f"{', '.join(str(s) for s in c['seeds']) or '-'}",
            }
        )
    lines = [format_table(rows)]
    a = claims.get("authors_number")
    if a:
        p, o = a["paper"], a["ours"]
        lines.append(
            f"\nThe authors' one number (i-RIM, eps {p['eps']:g}, {p['slices']}): "
            f"{p['psnr_clean']:.2f} -> {p['psnr_perturbed']:.2f} dB (drop {p['drop']:.2f}); "
            f"here: {o['psnr_clean']:.2f} -> {o['psnr_perturbed']:.2f} dB (drop "
            f"{_fmt(o['drop']['mean'])} [{_fmt(o['drop']['low'])}, {_fmt(o['drop']['high'])}], "
            f"{o['n']} slices)."
        )
    if not claims.get("evidence", True):
        lines.append(
            f"\nProfile `{claims['profile']}`: tiny models trained for seconds; these numbers "
            "test the code, they are not evidence about the paper."
        )
    return "\n".join(lines)


def claim_rows_markdown(claim: Mapping[str, Any]) -> str:
    """Every comparison of one claim as a Markdown table (label, value, interval, holds); for
    the grey-matter claim also the excess energy over the seed-to-seed energy, and the PSNR
    drop and the worst 16 x 16 window SSIM drop of perturbation and control beside it."""
    out = []
    for r in claim["rows"]:
        row = {
            "comparison": r["label"],
            "value": _fmt(r["value"], 3),
            "95 % interval": f"[{_fmt(r['low'], 3)}, {_fmt(r['high'], 3)}]",
            "slices": r["n"],
            "holds": "yes" if r["holds"] else "no",
        }
        if isinstance(r.get("psnr_drop"), Mapping):
            row["excess / seed energy"] = _fmt(r.get("excess_over_seed"), 3)
            for key, name in (
                ("psnr_drop", "PSNR drop dB"),
                ("window_ssim_drop", "window SSIM drop"),
            ):
                a, c = r[key], r[f"{key}_control"]
                row[f"{name} (control)"] = f"{_fmt(a['mean'], 3)} ({_fmt(c['mean'], 3)})"
        out.append(row)
    return format_table(out)


__all__ = [
    "artifacts_note",
    "check_scorecard",
    "scorecard_notes",
    "transfer_note",
    "whitebox_note",
    "AUTHORS_IRIM",
    "CLAIM4_CRITERIA",
    "GREY_MATTER_EPS",
    "NOT_EVIDENCE",
    "TRANSFER_EPS",
    "artifacts_report",
    "authors_number",
    "claim4_criteria",
    "claim4_verdict",
    "claim_grey_matter",
    "claim_monotone",
    "claim_noise_like",
    "claim_rows_markdown",
    "claim_small_eps",
    "claim_transfer",
    "claim_verdict",
    "clean_summary",
    "clear_rule",
    "excess_text",
    "falls_with_eps",
    "grey_matter_verdict",
    "noise_like_inputs",
    "rows_verdict",
    "scorecard",
    "scorecard_markdown",
    "transfer_report",
    "whitebox_report",
    "write_scorecard",
]


def whitebox_note(wb: WhiteBox) -> str:
    """Notebook 03's closing note: :func:`whitebox_report` of a
    :class:`~mripkg.experiments.whitebox.WhiteBox` run, then the convergence and step-size
    checks (:meth:`~mripkg.experiments.whitebox.WhiteBox.convergence`)."""
    prof = wb.prof
    report = whitebox_report(
        wb.evals,
        wb.summary,
        profile=prof,
        steps=prof.attack.steps,
        lr_rel=prof.attack.lr_rel,
        proxy_rows=wb.proxy_rows,
        short_steps=prof.attack.diffusion_steps,
    )
    if getattr(wb, "conv_check", None) is None:  # checks not run: the kept record
        from ..experiments.whitebox import attack_check_note

        return (
            report + "\n" + attack_check_note(getattr(wb, "check_record", None), prof.attack.lr_rel)
        )
    conv, lr = wb.conv_check, wb.lr_check
    gain, psnr_short, psnr_long = conv.gain, conv.psnr_short, conv.psnr_long
    convergence_note = (
        f"* Convergence (ResUNet++, eps {wb.conv_eps:g}, {len(conv.slice_ids)} test slices): "
        f"going from {prof.attack.steps} to {conv.long_steps} steps adds "
        f"{100 * float(gain.mean()):.1f} % damage (PSNR {float(psnr_short.mean()):.2f} -> "
        f"{float(psnr_long.mean()):.2f} dB); step-size check on validation: best lr_rel of "
        f"{wb.lr_rel_grid} is {lr.best:g} (score {lr.scores[lr.best]:.4f}); the profile's "
        f"{prof.attack.lr_rel:g} scores {lr.profile_score:.4f}"
    )
    kept = " (within 1 %: kept)." if lr.ok else " (more than 1 % worse: the default should change)."
    convergence_note += kept
    return report + "\n" + convergence_note


def transfer_note(tr: Transfer) -> str:
    """Notebook 04's closing note: :func:`transfer_report` of a
    :class:`~mripkg.experiments.transfer.Transfer` run."""
    prof = tr.prof
    return transfer_report(
        tr.evals,
        tr.table,
        profile=prof,
        sources=tr.sources,
        route_eps=prof.attack.route_eps,
        small_eps=min(tr.small_eps),
        steps=prof.attack.steps,
        sampler_steps=prof.ddpm.sampler_steps,
        sampler=tr.models["diffusion"].describe(),
    )


def artifacts_note(art: Artifacts) -> tuple[list[dict[str, Any]], str, str]:
    """Notebook 05's claim-4 note: :func:`artifacts_report` of an
    :class:`~mripkg.experiments.artifacts.Artifacts` run at its shown eps.  Returns
    ``(criteria, verdict, markdown)``."""
    main, k_star = art.main, art.k_star
    at_star = {
        lab: {**art.summary[lab][k_star], "detection_auc": art.detect[lab][k_star]} for lab in main
    }
    return artifacts_report(
        at_star,
        {lab: art.summary[lab][eps_key(0.0)] for lab in art.refs},
        profile=art.prof,
        eps=art.e_star,
        n_slices=len(art.d_ids),
        diffusion=main[2:4],
        supervised=main[0:2],
        control="diffusion, random control",
    )


def scorecard_notes(card: Mapping[str, Any]) -> list[str]:
    """Markdown of a scorecard: the verdicts (:func:`scorecard_markdown`), then each claim's
    rows (:func:`claim_rows_markdown`)."""
    return [scorecard_markdown(card)] + [
        f"**Claim {c['claim']}** ({c['text']})\n\n" + claim_rows_markdown(c) for c in card["claims"]
    ]


def check_scorecard(
    path: str | Path, profile: Profile, criteria: Sequence[Mapping[str, Any]], verdict: str
) -> None:
    """Assert that a written scorecard has the five claims with rows and a verdict each, that
    its evidence flag matches the profile (smoke is no evidence), and that claim 4's note had
    every criterion and a verdict."""
    assert len(criteria) == len(CLAIM4_CRITERIA)
    assert verdict in (REPRODUCED, PARTLY, NOT_REPRODUCED)
    card = read_json(path)
    assert [c["claim"] for c in card["claims"]] == ["1", "2", "3", "4", "5"]
    for c in card["claims"]:
        assert c["rows"] and all(r["n"] >= 1 for r in c["rows"]), c["claim"]
        assert c["verdict"] in (
            REPRODUCED,
            PARTLY,
            NOT_REPRODUCED,
            NOT_EVIDENCE,
        ) or c["verdict"].startswith("undecided"), c
    assert card["evidence"] == (profile.name != "smoke")
    if "general_rule" in card:  # issue 17's card: rules, what the evidence rests on, seeds
        assert card["header"] and card["method"] and "exploratory" in card
        for c in card["claims"]:
            assert c["rule"] and c["evidence_base"]["test_subjects"] >= 1, c["claim"]
        assert card["claims"][1]["evidence_base"]["sampler_seeds"] == profile.attack.diffusion_seeds
    det = card["posterior_spread_detector"]
    assert all(0 <= v["auc"] <= 1 for k, v in det["spread"].items() if k != "0.00")
    print("scorecard checks passed")
