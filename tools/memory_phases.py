"""Resident memory of notebook 03's phases, with and without returning freed heap pages.

    python tools/memory_phases.py [--profile quick] [--repeats 3] [--out FILE.json]

Runs, each variant in a fresh process (the same order as notebook 03): load the data and the
models; the time estimate's attack steps per model (fp32, a batch of 8); the white-box attacks
(from the attack cache: run notebook 03 once first); the evaluation.  Variants:

- ``before``: ``mripkg.memory.release_memory`` only collects garbage and SSIM takes 4 images
  per call (the package before issue 19's last change);
- ``after``: the package as it is (``malloc_trim`` after each phase, 2 images per SSIM call).

Memory is the resident set size of the process, sampled every 20 ms (``Sampler`` of
``tools/kernel_memory.py``); GB = 2^30 bytes.  What glibc keeps varies from run to run (thread
timing), so each variant runs ``--repeats`` times, alternating.  Prints a row per run and the
mean per variant and writes every row as JSON (default ``runs/<profile>/bench_memory_03.json``,
:func:`mripkg.io.write_json`).  Nothing else is written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("before", "after")


def child(variant: str, profile: str) -> dict[str, float]:
    """One variant's phases in this process: ``{phase_peak_gb / phase_after_gb: GB}``."""
    from kernel_memory import Sampler  # tools/, beside this script

    mem = Sampler(os.getpid(), interval_s=0.02)
    from mripkg import memory, metrics

    if variant == "before":
        import gc

        from mripkg.attacks import kspace
        from mripkg.evaluation import attack_runs, scoring

        def gc_only() -> bool:
            gc.collect()
            return False

        for mod in (kspace, attack_runs, scoring):
            mod.release_memory = gc_only  # type: ignore[attr-defined]
        metrics.SSIM_CHUNK = 4
    from mripkg.data import load_dataset
    from mripkg.evaluation.attack_runs import time_attack_step
    from mripkg.experiments import whitebox
    from mripkg.physics import equispaced_mask
    from mripkg.profiles import get_profile, setup_torch

    prof = get_profile(profile)
    setup_torch(prof)
    out: dict[str, float] = {}

    def phase(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        mem.reset_peak()
        fn()
        time.sleep(0.1)
        now = mem.rss()
        out[f"{name}_peak_gb"] = round(max(mem.peak, now), 3)
        out[f"{name}_after_gb"] = round(now, 3)

    state: dict[str, object] = {}

    def load() -> None:
        ds = load_dataset(prof, "", splits=("val", "test"))
        wb = whitebox.WhiteBox(prof, ds, equispaced_mask(prof.image_size), batch_size=8)
        wb.load_models()
        wb.select()
        state["wb"] = wb

    phase("load", load)
    wb = state["wb"]
    phase(
        "timed_steps",
        lambda: [time_attack_step(wb.models[m], wb.data, 8) for m in wb.sources],  # type: ignore[attr-defined]
    )
    phase("attack_cached", wb.attack)  # type: ignore[attr-defined]
    phase("evaluate", wb.evaluate)  # type: ignore[attr-defined]
    out["trim_available"] = float(memory.trim_available())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.profile)))
        return 0
    env = {**os.environ, "CI": "true", "MRIPKG_PROFILE": args.profile}
    rows = []
    for rep in range(args.repeats):
        for v in VARIANTS:
            proc = subprocess.run(
                [sys.executable, __file__, "--profile", args.profile, "--child", v],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                print(f"error: variant {v!r} failed (exit {proc.returncode})", file=sys.stderr)
                return 1
            row = {"variant": v, "repeat": rep, **json.loads(proc.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(
                f"{v:7s} #{rep} loaded {row['load_after_gb']:.2f} | timed steps peak "
                f"{row['timed_steps_peak_gb']:.2f}, after {row['timed_steps_after_gb']:.2f} | "
                f"evaluate peak {row['evaluate_peak_gb']:.2f}, after "
                f"{row['evaluate_after_gb']:.2f} GB",
                flush=True,
            )
    keys = [k for k in rows[0] if k.endswith("_gb")]
    means = {
        v: {k: round(sum(r[k] for r in rows if r["variant"] == v) / args.repeats, 3) for k in keys}
        for v in VARIANTS
    }
    for v, m in means.items():
        print(
            f"{v:7s} mean: timed steps after {m['timed_steps_after_gb']:.2f}, evaluate peak "
            f"{m['evaluate_peak_gb']:.2f} GB"
        )
    from mripkg.io import write_json

    out = args.out or ROOT / "runs" / args.profile / "bench_memory_03.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "what": "resident memory (GB) of notebook 03's phases in one process; see the docstring",
        "profile": args.profile,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "repeats": args.repeats,
        "mean": means,
        "rows": rows,
    }
    write_json(out, record)  # atomic, with the machine fingerprint every result file carries
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
