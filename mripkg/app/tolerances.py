"""Run-to-run spread of the attack stage, measured on validation slices -> the tolerances of
``make verify``.

    python -m mripkg.app.tolerances --profile quick          # -> results/<profile>/tolerances.json
    make tolerances                                      # the same

Every number a run writes is either a deterministic function of the data and the shipped
weights (data, masks, clean reconstructions: equal on every machine up to float rounding) or
comes out of 100 projected Adam steps, which amplify kernel-level rounding differences
(bfloat16 autocast, oneDNN's code path for the CPU's instruction set, thread count).  This
benchmark measures that amplification instead of guessing it: the attack stage (white-box
attack of both supervised models, transfer to the other supervised model and to the diffusion
model with the equal-norm control, artifact statistics, the claim statistics per slice) runs on
``--slices`` **validation** slices at a few eps values under several *conditions*, each in a
fresh process:

* ``ref``: one thread, the default instruction set;
* ``threads2``: two threads (a different split of the work, hence different rounding);
* ``isa``: one thread with oneDNN capped at AVX-512 without bfloat16 instructions
  (``ONEDNN_MAX_CPU_ISA=AVX512_CORE``: a CPU without AVX512-BF16 / AMX, which emulates the
  bfloat16 passes); run only where this CPU has AVX512-BF16;
* ``start``: one thread, the attack's random start scaled by ``1 + 1e-6`` (a perturbation at
  float32 rounding level, injected once).

Each condition's per-slice numbers are compared with ``ref``'s.  For each *quantity* (e.g.
white-box PSNR in dB, the artifact's excess kurtosis) the spread is the root mean square over
slices of the per-slice difference, maximised over eps and conditions.  Why the RMS: for any
number of slices, the change of a mean over slices, and of an SD over slices, is at most the
RMS of the per-slice changes (Cauchy-Schwarz / triangle inequality), so it bounds the change of
every mean and SD the results report, whatever their slice count.  Interval bounds (mean +- t
SD / sqrt(n)) move by at most ``1 + t_{0.975, n-1} / sqrt(n - 1)`` times that; for n >= 8
slices this factor is below 2, which :mod:`mripkg.report.verify` applies to ``low`` / ``high`` keys.
Clean quantities get the largest measured difference (expected 0 up to float rounding).

The file records the settings measured (profile, sampler, attack steps, lr_rel, precision,
eps, slices, conditions, machine fingerprint); re-run it after changing any of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..paths import results_dir, run_dir

#: eps values attacked (claims 1/3 use 0.01, claim 2 0.04, claim 4 0.04 and 0.08)
DEFAULT_EPS: tuple[float, ...] = (0.01, 0.04, 0.08)
DEFAULT_SLICES = 4
START_PERTURBATION = 1e-6  # relative change of the attack's random start (condition "start")
INTERVAL_FACTOR = 2.0  # bound on the move of an interval bound, in units of the spread (n >= 8)

#: condition -> (environment additions, threads, init-scale factor)
CONDITIONS: dict[str, tuple[dict[str, str], int, float]] = {
    "ref": ({}, 1, 1.0),
    "threads2": ({}, 2, 1.0),
    "isa": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "DNNL_MAX_CPU_ISA": "AVX512_CORE"}, 1, 1.0),
    "start": ({}, 1, 1.0 + START_PERTURBATION),
    # the clean reconstructions alone under the capped ISA (cheap: no attack)
    "isa_clean": (
        {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "DNNL_MAX_CPU_ISA": "AVX512_CORE"},
        1,
        1.0,
    ),
}

#: conditions that measure the clean quantities only
CLEAN_ONLY = frozenset({"isa_clean"})

#: quantity -> (kind, how it is compared).  "abs": absolute difference in the quantity's unit;
#: "log": difference of natural logs (a relative tolerance).
QUANTITIES: dict[str, tuple[str, str]] = {
    "clean_psnr": ("clean", "abs"),
    "clean_ssim": ("clean", "abs"),
    "psnr": ("attack_psnr", "abs"),  # dB; drops and means of PSNR move by the same
    "ssim": ("attack_ssim", "abs"),
    "amplification": ("attack_ratio", "log"),
    "excess_drop": ("claim", "abs"),  # claim 2: transferred drop - control drop, dB
    "grey_matter_log_ratio": ("claim", "abs"),  # claims 1/3: log(E_adv / E_ctl)
    "rms": ("artifact", "log"),
    "skewness": ("artifact", "abs"),
    "excess_kurtosis": ("artifact", "abs"),
    "neighbour_corr": ("artifact", "abs"),
    "edge_corr": ("artifact", "abs"),
    "spectral_flatness": ("artifact", "abs"),
}


def _isa_available() -> bool:
    from ..fingerprint import cpu_flags

    return "avx512_bf16" in cpu_flags()


# --------------------------------------------------------------------------------------------
# one condition (runs in its own process: thread count and oneDNN's ISA are fixed at start-up)


def measure_condition(
    profile_name: str, condition: str, n_slices: int, eps: Sequence[float]
) -> dict[str, Any]:
    """Per-slice numbers of the attack stage on validation slices under one condition:
    ``{"values": {quantity: {series: [[per slice] per eps]}}, "seconds": ..., ...}``."""
    import torch

    from ..attacks.control import budget_controls
    from ..attacks.kspace import kspace_attack
    from ..data import load_dataset
    from ..evaluation import artifacts
    from ..evaluation.attack_runs import attack_settings
    from ..evaluation.clean import build_reconstructors
    from ..evaluation.scoring import evaluate_attack
    from ..evaluation.selection import slice_set
    from ..evaluation.stats import region_energy
    from ..evaluation.targets import Target
    from ..fingerprint import machine_fingerprint
    from ..physics import equispaced_mask
    from ..profiles import get_profile, setup_torch

    _env, _threads, init_factor = CONDITIONS[condition]
    t0 = time.perf_counter()
    prof = get_profile(profile_name)
    setup_torch(prof)  # $MRIPKG_THREADS, set by the parent, wins
    ds = load_dataset(prof)
    mask = equispaced_mask(prof.image_size)
    val = ds["val"]
    data = slice_set(val, mask, n_slices)
    head = val.masks[data.slice_ids]
    gt = data.images
    gm = artifacts.grey_matter_mask(gt, head)
    models, metas, _ = build_reconstructors(prof, ds, retrain=False)
    targets = {
        m: Target(m, models[m], mask, batch_size=8) for m in ("resunetpp", "irim", "diffusion")
    }
    eps_l = [float(e) for e in eps]
    values: dict[str, dict[str, Any]] = {q: {} for q in QUANTITIES}

    def put(q: str, series: str, t: torch.Tensor) -> None:
        values[q][series] = t.to(torch.float64).tolist()

    for m, tg in targets.items():
        x = tg(data.y, data.slice_ids)
        put("clean_psnr", m, _metric("psnr", x, gt))
        put("clean_ssim", m, _metric("ssim", x, gt))
    sources: tuple[str, ...] = ("resunetpp", "irim")
    if condition in CLEAN_ONLY:
        values = {q: v for q, v in values.items() if QUANTITIES[q][0] == "clean"}
        sources = ()
    controls = budget_controls(data.kspace, mask, data.slice_ids, eps_l, seed=prof.seed)
    a = prof.attack
    for src in sources:
        settings = attack_settings(prof, metas[src])
        g = torch.Generator().manual_seed(int(prof.seed))
        res = kspace_attack(
            models[src],
            data.kspace,
            mask,
            eps_l,
            steps=settings.steps,
            lr=settings.lr,
            lr_rel=settings.lr_rel,
            generator=g,
            init_scale=settings.init_scale * init_factor,
            batch_size=8,
            progress=False,
            precision=settings.precision,
        )
        for tname in ("resunetpp", "irim", "diffusion"):
            ev = evaluate_attack(targets[tname], data, res, source=src, controls=controls)
            series = f"{src}->{tname}"
            put("psnr", series, ev.psnr)
            put("ssim", series, ev.ssim)
            put("amplification", series, ev.amplification)
            if tname == src or tname == "diffusion":
                art = ev.adv - ev.clean[None]
                for j in range(len(eps_l)):
                    st = artifacts.artifact_stats(art[j], gt, head)
                    for k, v in st.items():
                        values[k].setdefault(series, []).append(v.tolist())
            if tname == "diffusion":
                assert ev.psnr_drop_rand is not None and ev.rand is not None
                put("excess_drop", series, ev.psnr_drop - ev.psnr_drop_rand)
                lr = []
                for j in range(len(eps_l)):
                    e_adv = region_energy(ev.adv[j] - ev.clean, gm)
                    e_ctl = region_energy(ev.rand[j] - ev.clean, gm)
                    lr.append((e_adv.clamp_min(1e-300).log() - e_ctl.log()).tolist())
                values["grey_matter_log_ratio"][series] = lr
    return {
        "condition": condition,
        "profile": prof.name,
        "split": "val",
        "slice_ids": data.slice_ids,
        "eps": eps_l,
        "attack": {
            "steps": a.steps,
            "lr_rel": a.lr_rel,
            "precision": a.precision,
            "init_scale_factor": init_factor,
        },
        "values": values,
        "seconds": time.perf_counter() - t0,
        "machine": machine_fingerprint(prof),
    }


def _metric(name: str, x: Any, gt: Any) -> Any:
    from .. import metrics

    return getattr(metrics, name)(x, gt)


# --------------------------------------------------------------------------------------------
# spreads and tolerances


def _flat(v: Any) -> list[list[float]]:
    """A series as ``[[per slice] per eps]`` (clean series are one row)."""
    if v and not isinstance(v[0], list):
        return [list(v)]
    return [list(r) for r in v]


def _diffs(a: Any, b: Any, how: str) -> list[list[float]]:
    out = []
    for ra, rb in zip(_flat(a), _flat(b), strict=True):
        row = []
        for x, y in zip(ra, rb, strict=True):
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                continue
            if how == "log":
                if x <= 0 or y <= 0:
                    continue
                row.append(math.log(y) - math.log(x))
            else:
                row.append(y - x)
        out.append(row)
    return out


def spreads(ref: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per quantity: the RMS over slices of the per-slice difference from ``ref`` (max over
    eps, series and conditions), the largest single difference, and which condition and
    series gave the RMS maximum."""
    out: dict[str, Any] = {}
    for q, (kind, how) in QUANTITIES.items():
        best = {"rms": 0.0, "max_abs": 0.0, "condition": None, "series": None, "n": 0}
        for other in others:
            if q not in other["values"]:
                continue  # a clean-only condition
            for series, v in ref["values"].get(q, {}).items():
                w = other["values"].get(q, {}).get(series)
                if w is None:
                    raise ValueError(f"{other['condition']}: no {q} for {series}")
                for row in _diffs(v, w, how):
                    if not row:
                        continue
                    best["n"] += len(row)
                    rms = math.sqrt(sum(d * d for d in row) / len(row))
                    best["max_abs"] = max(best["max_abs"], max(abs(d) for d in row))
                    if rms > best["rms"]:
                        best.update(rms=rms, condition=other["condition"], series=series)
        out[q] = {"kind": kind, "compare": how, **best}
    return out


def clean_max(ref: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Largest clean difference from ``ref``, separately for the supervised models
    (``"supervised"``: one float32 forward pass) and the diffusion model (``"diffusion"``: a
    sampler whose U-Net may run in bfloat16, so its rounding follows the CPU's instruction
    set)."""
    out = {"supervised": 0.0, "diffusion": 0.0}
    for other in others:
        for q in ("clean_psnr", "clean_ssim"):
            for series, v in ref["values"].get(q, {}).items():
                w = other["values"].get(q, {}).get(series)
                if w is None:
                    continue
                d = max((abs(x) for r in _diffs(v, w, "abs") for x in r), default=0.0)
                key = "diffusion" if series == "diffusion" else "supervised"
                out[key] = max(out[key], d)
    return out


def tolerances_from(
    spread: Mapping[str, Any], clean: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Tolerances per kind of number (and per artifact statistic) from :func:`spreads`:
    attack-derived quantities: the RMS spread (it bounds the change of any mean or SD over
    slices; :data:`INTERVAL_FACTOR` times it for interval bounds); clean quantities: the largest
    single difference seen."""
    s = spread

    def rms(*qs: str) -> float | None:  # None: no condition measured these quantities
        if not any(int(s[q].get("n", 0)) for q in qs):
            return None
        return max(float(s[q]["rms"]) for q in qs)

    worst_clean = max(float(s[q]["max_abs"]) for q in ("clean_psnr", "clean_ssim"))
    return {
        "clean": worst_clean if clean is None else float(clean["supervised"]),
        "clean_diffusion": worst_clean if clean is None else float(clean["diffusion"]),
        "attack_psnr_db": rms("psnr", "excess_drop"),
        "attack_ssim": rms("ssim"),
        "attack_ratio_log": rms("amplification"),
        "claim_excess_db": rms("psnr", "excess_drop"),
        "claim_log_ratio": rms("grey_matter_log_ratio"),
        "artifact": {
            k: rms(k)
            for k in (
                "rms",
                "skewness",
                "excess_kurtosis",
                "neighbour_corr",
                "edge_corr",
                "spectral_flatness",
            )
        },
        "interval_factor": INTERVAL_FACTOR,
    }


# --------------------------------------------------------------------------------------------
# driver


def _run_child(
    profile: str, condition: str, n_slices: int, eps: Sequence[float], out: Path
) -> None:
    env_add, threads, _ = CONDITIONS[condition]
    env = {**os.environ, **env_add, "MRIPKG_THREADS": str(threads), "TQDM_DISABLE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "mripkg.app.tolerances",
        "--profile",
        profile,
        "--child",
        condition,
        "--slices",
        str(n_slices),
        "--eps",
        ",".join(f"{e:g}" for e in eps),
        "--raw",
        str(out),
    ]
    subprocess.run(cmd, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mripkg.app.tolerances", description=__doc__)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--slices", type=int, default=DEFAULT_SLICES, help="validation slices")
    ap.add_argument("--eps", default=",".join(f"{e:g}" for e in DEFAULT_EPS))
    ap.add_argument(
        "--conditions", default="threads2,isa,start", help="compared with 'ref' (one thread)"
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="default results/<profile>/tolerances.json"
    )
    ap.add_argument("--reuse", action="store_true", help="reuse runs/<profile>/tolerances/*.json")
    ap.add_argument(
        "--note", default="", help="a remark stored in the file (e.g. what was left out)"
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--raw", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    eps = [float(e) for e in args.eps.split(",") if e.strip()]
    if not eps or any(e <= 0 for e in eps):
        ap.error(f"--eps needs positive values, got {args.eps!r}")
    if args.child is not None:
        from ..io import atomic_write_json as atomic_json

        raw = measure_condition(args.profile, args.child, args.slices, eps)
        atomic_json(args.raw, raw)
        return 0
    conds = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conds if c not in CONDITIONS or c == "ref"]
    if unknown:
        ap.error(f"unknown conditions {unknown}; choose from {sorted(set(CONDITIONS) - {'ref'})}")
    skipped = {}
    if "isa" in conds and not _isa_available():
        conds.remove("isa")
        skipped["isa"] = "this CPU has no AVX512-BF16: nothing to cap"
    raw_dir = run_dir(args.profile) / "tolerances"
    raw_dir.mkdir(parents=True, exist_ok=True)
    raws = {}
    t0 = time.perf_counter()
    for c in ["ref", *conds]:
        p = raw_dir / f"{c}.json"
        if not (args.reuse and p.is_file()):
            print(f"[tolerances] condition {c} ...", flush=True)
            _run_child(args.profile, c, args.slices, eps, p)
        raws[c] = json.loads(p.read_text())
        print(f"[tolerances] {c}: {raws[c]['seconds']:.0f} s", flush=True)
    ref = raws["ref"]
    for c in conds:
        if raws[c]["slice_ids"] != ref["slice_ids"] or raws[c]["eps"] != ref["eps"]:
            raise ValueError(f"{c}: measured on other slices / eps than ref; run without --reuse")
    sp = spreads(ref, [raws[c] for c in conds])
    per_condition = {c: spreads(ref, [raws[c]]) for c in conds}
    report = {
        "what": "run-to-run spread of the attack stage on validation slices; tolerances of "
        "`make verify` (python -m mripkg.report.verify)",
        "how": __doc__.split("Each condition's")[1].strip() if __doc__ else "",
        "profile": args.profile,
        "split": "val",
        "slice_ids": ref["slice_ids"],
        "eps": ref["eps"],
        "settings": {"attack": ref["attack"], "sampler": ref["machine"].get("sampler")},
        "conditions": {
            c: {
                "env": CONDITIONS[c][0],
                "threads": CONDITIONS[c][1],
                "init_scale_factor": CONDITIONS[c][2],
                "seconds": raws[c]["seconds"],
                "onednn_isa": raws[c]["machine"].get("onednn_isa"),
            }
            for c in ["ref", *conds]
        },
        "skipped": skipped,
        "note": args.note,
        "spread": sp,
        "spread_per_condition": {
            c: {q: v["rms"] for q, v in s.items()} for c, s in per_condition.items()
        },
        "clean_max": clean_max(ref, [raws[c] for c in conds]),
        "tolerances": tolerances_from(sp, clean_max(ref, [raws[c] for c in conds])),
        "seconds": time.perf_counter() - t0,
        "measured_on": ref["machine"],  # the reference condition's machine fingerprint
    }
    from ..io import atomic_write_json as atomic_json

    out = args.out if args.out is not None else results_dir(args.profile) / "tolerances.json"
    atomic_json(out, report)
    for q, v in sp.items():
        print(
            f"  {q:24s} {v['kind']:12s} rms {v['rms']:.4g}  max {v['max_abs']:.4g}  "
            f"({v['condition']}, {v['series']})"
        )
    print(f"[tolerances] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
