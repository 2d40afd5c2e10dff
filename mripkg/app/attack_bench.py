"""Attack speed against damage on validation slices (issue 18, section 1): the rows under
``attack`` in ``runs/<profile>/bench.json`` (``make bench``; ``python -m mripkg.app.attack_bench``
runs only these).

Every variant attacks the same ``val_slices`` validation slices (spread evenly over the split;
never test slices) with both supervised models at every eps of the profile's grid, through the
attack cache (``runs/<profile>/attacks/<model>/val``), so a re-run only re-times.  Damage is
``||f(y + M delta) - f(y)||^2`` of the kept perturbation, re-evaluated in float32 (as the
notebooks evaluate), summed over the slices of one (model, eps) and divided by the same sum of
the *reference* variant (the cold 100-step attack, the quick default before issue 18); the
rule of issue 18 is that a faster variant keeps >= 0.99 of it at every (model, eps).  A cold
``long_steps`` run at ``long_eps`` is the convergence reference (damage relative to it).
Rows: variant, lr_rel, ms per (pair, step) (process CPU time of the attack divided by the
(pair, step)s it ran; cached entries keep the time of the run that made them), mean steps used
per pair, damage relative to the reference per (model, eps) and its minimum, damage relative to
the long reference, and the estimated attack CPU seconds of notebook 03 at this profile (the
variant's CPU seconds per validation pair scaled to the profile's test slices).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import torch

from ..attacks.cache import AttackCache
from ..attacks.kspace import AttackSettings
from ..attacks.protocols import uses_protocol
from ..io import atomic_write_json
from ..paths import results_dir, run_dir
from ..profiles import Profile, cli_profile, setup_torch

MODELS = ("resunetpp", "irim")
#: the variants compared: name -> AttackSettings overrides on top of the profile's cold
#: 100-step settings (continuation off); "reference" is the quick default before issue 18
VARIANTS: dict[str, dict[str, Any]] = {
    "reference": {"lr_rel": 1.0},
    "continuation lr1": {"lr_rel": 1.0, "warm_steps": 50, "patience": 20, "min_gain": 1e-3},
    "continuation lr3": {"lr_rel": 3.0, "warm_steps": 50, "patience": 20, "min_gain": 1e-3},
    "continuation lr1 w100": {"lr_rel": 1.0, "warm_steps": 100, "patience": 20, "min_gain": 1e-3},
}


def variant_settings(
    base: AttackSettings, profile: Profile, overrides: dict[str, Any]
) -> AttackSettings:
    """``base`` (cold, the profile's steps) with ``overrides``; a variant with ``warm_steps``
    gets the profile's eps grid as its continuation ladder."""
    s = dataclasses.replace(base, ladder=(), warm_steps=0, patience=0, min_gain=0.0)
    s = dataclasses.replace(s, **overrides)
    if s.warm_steps:
        s = dataclasses.replace(s, ladder=tuple(e for e in profile.attack.eps_grid if e > 0))
    return s


def _fp32_damage(model, res, data) -> torch.Tensor:
    """``||f(y_adv) - f(y)||^2`` in float32 per pair, ``[E, B]``."""
    with torch.no_grad():
        f0 = model(data.y, data.mask)
        out = []
        for j in range(res.n_eps):
            out.append((model(res.y_adv[j], data.mask) - f0).pow(2).flatten(1).sum(1).double())
    return torch.stack(out)


def _entry_stats(
    cache: AttackCache, m: str, data, eps, s: AttackSettings
) -> tuple[float, float, float]:
    """(sum of CPU seconds, sum of steps run, number of pairs) over the cached pairs (eps > 0)."""
    cpu = steps = n = 0.0
    for e in eps:
        if e == 0:
            continue
        for b, sid in enumerate(data.slice_ids):
            r = cache.load(m, data.split, sid, e, s, data.kspace[b], data.mask)
            if r is None:
                continue
            steps += float(r.meta.get("steps_used", s.steps))
            cpu += float(r.meta.get("cpu_s", float("nan")))
            n += 1
    return cpu, steps, n


def run(
    profile: Profile,
    val_slices: int = 2,
    long_steps: int = 300,
    long_eps: tuple[float, ...] = (0.08,),
    variants: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Run (or load) every variant and return the ``attack`` section of bench.json."""
    from ..data import load_dataset
    from ..evaluation.attack_runs import attack_settings, missing_pairs, run_whitebox
    from ..evaluation.clean import build_reconstructors
    from ..evaluation.selection import slice_set
    from ..physics import equispaced_mask

    setup_torch(profile)
    ds = load_dataset(profile)
    mask = equispaced_mask(profile.image_size)
    models, metas, _ = build_reconstructors(profile, ds, retrain=False)
    data = slice_set(ds["val"], mask, val_slices)
    eps = [e for e in profile.attack.eps_grid if e > 0]
    cache = AttackCache(profile)
    variants = variants or VARIANTS
    # CPU seconds of the plain (cold) runs, which their cache entries do not record
    times_path = run_dir(profile.name) / "attack_bench_times.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    damage: dict[str, dict[str, torch.Tensor]] = {}
    rows = []
    runs = dict(variants)
    if long_steps:
        runs["long reference"] = {"steps": long_steps}
    for name, over in runs.items():
        grid = list(long_eps) if name == "long reference" else eps
        damage[name] = {}
        cpu = steps = n = 0.0
        for m in MODELS:
            base = attack_settings(profile, metas[m])
            s = variant_settings(base, profile, over)
            missing = missing_pairs(m, data, grid, s, profile=profile)
            t0 = time.process_time()
            res = run_whitebox(models[m], m, data, grid, s, profile=profile, batch_size=batch_size)
            dt = time.process_time() - t0
            damage[name][m] = _fp32_damage(models[m], res, data)
            c, st, k = _entry_stats(cache, m, data, grid, s)
            if not uses_protocol(s):  # plain attack: every pair runs all steps; timed here
                st, k = float(s.steps) * len(grid) * len(data), float(len(grid) * len(data))
                key = f"{m}/{s.digest()}/{data.slice_ids}/{grid}"
                if missing == k:
                    times[key] = dt
                    atomic_write_json(times_path, times)
                c = times.get(key, float("nan"))
            cpu, steps, n = cpu + c, steps + st, n + k
            print(
                f"[attack bench] {name:18s} {m:10s} {missing:3d} pairs computed, {dt:.0f} CPU-s",
                flush=True,
            )
        row: dict[str, Any] = {
            "variant": name,
            "settings": {k: v for k, v in s.to_dict().items() if k not in ("model_id", "seed")},
            "ms_per_pair_step": 1e3 * cpu / max(steps, 1.0),
            "mean_steps_used": steps / max(n, 1.0),
            "attack_cpu_s_per_pair": cpu / max(n, 1.0),
        }
        if name != "long reference":
            n_test = profile.attack.n_slices
            row["notebook03_attack_cpu_s_est"] = cpu / max(n, 1.0) * n_test * len(eps) * len(MODELS)
        rows.append(row)
    ref = damage["reference"]
    for row in rows:
        name = row["variant"]
        if name == "long reference":
            continue
        rel = {
            m: {
                f"{e:g}": float(damage[name][m][j].sum() / ref[m][j].sum())
                for j, e in enumerate(eps)
            }
            for m in MODELS
        }
        row["damage_vs_reference"] = rel
        row["min_damage_vs_reference"] = min(v for r in rel.values() for v in r.values())
        row["meets_99pct_rule"] = row["min_damage_vs_reference"] >= 0.99
        if "long reference" not in damage:
            continue
        row["damage_vs_long_reference"] = {
            m: {
                f"{e:g}": float(
                    damage[name][m][eps.index(e)].sum() / damage["long reference"][m][i].sum()
                )
                for i, e in enumerate(long_eps)
            }
            for m in MODELS
        }
    out = {
        "profile": profile.name,
        "split": "val",
        "val_slices": data.slice_ids,
        "eps": eps,
        "threads": torch.get_num_threads(),
        "long_reference": {"steps": long_steps, "eps": list(long_eps)} if long_steps else None,
        "rule": "damage (sum over slices, float32) >= 0.99 of the reference at every (model, eps)",
        "rows": rows,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--val-slices", type=int, default=2)
    ap.add_argument("--variants", default="", help="comma list of VARIANTS names (default all)")
    ap.add_argument("--long-steps", type=int, default=300, help="cold reference steps (0: none)")
    ap.add_argument(
        "--export", action="store_true", help="also write results/<profile>/bench_attack.json"
    )
    args = ap.parse_args(argv)
    profile = cli_profile(args.profile)
    names = [v for v in args.variants.split(",") if v]
    variants = {k: VARIANTS[k] for k in (names or VARIANTS)}
    if "reference" not in variants:
        variants = {"reference": VARIANTS["reference"], **variants}
    res = run(profile, val_slices=args.val_slices, variants=variants, long_steps=args.long_steps)
    path = run_dir(profile.name) / "bench.json"
    report = json.loads(path.read_text()) if path.is_file() else {"profile": profile.name}
    report["attack"] = res
    atomic_write_json(path, report)
    print(json.dumps(res["rows"], indent=1))
    print(f"wrote {path} (attack)")
    if args.export:
        out = results_dir(profile.name) / "bench_attack.json"
        atomic_write_json(out, res)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
