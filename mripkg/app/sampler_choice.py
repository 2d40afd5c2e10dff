"""Choose on validation, report on test: the sampler settings a profile uses are measured here.

Every tuned setting (sampler, steps, eta, spacing, precision, ...) is chosen on VALIDATION
slices; the test split is for reporting only, once, for the chosen setting.  Functions that tune
call :func:`require_tuning_split` first, which raises on any test split.

:func:`precision_check` measures whether the U-Net's bfloat16 autocast moves the paper's
projection sampler (50 steps, even spacing) by less than :data:`BF16_TOLERANCE_DB` in PSNR on
validation slices: the rule, fixed before the measurement, that decides the quick profile's
``sampler_precision``.  ``python -m mripkg.app.sampler_choice --profile quick`` writes the numbers
to ``results/<profile>/sampler_precision.json``.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch

from ..evaluation.selection import TUNING_SPLITS, require_tuning_split

#: bfloat16 is allowed when |mean PSNR(bf16) - PSNR(fp32)| over validation slices and seeds is
#: below this (dB), fixed in issue 17 before any measurement.
BF16_TOLERANCE_DB = 0.05


def bf16_allowed(diff_db: list[float], tolerance: float = BF16_TOLERANCE_DB) -> bool:
    """The rule: bfloat16 may replace float32 when the mean paired PSNR change (bf16 - fp32,
    one value per validation slice and seed, dB) is smaller than ``tolerance`` in magnitude."""
    if not diff_db:
        raise ValueError("need at least one paired PSNR difference")
    if not all(math.isfinite(d) for d in diff_db):
        raise ValueError("PSNR differences must be finite")
    return abs(sum(diff_db) / len(diff_db)) < tolerance


def precision_check(
    profile_name: str = "quick",
    n_slices: int = 12,
    seeds: tuple[int, ...] = (0, 1),
    steps: int | None = None,
    split: str = "val",
) -> dict[str, Any]:
    """PSNR of the projection sampler (even spacing, the profile's step count unless ``steps``)
    in float32 and under bfloat16 autocast on ``n_slices`` evenly spread slices of ``split``
    (validation by default; test splits raise), the same noise for both; per slice and seed,
    the paired difference, its mean with a t interval, and the rule's decision."""
    require_tuning_split(split, "the bf16 precision check")
    from tqdm.auto import tqdm

    from .. import metrics
    from ..data import load_dataset
    from ..models.ddpm import DiffusionReconstructor
    from ..physics import MRIOperator, equispaced_mask
    from ..profiles import get_profile, setup_torch
    from ..report.significance import t_interval
    from ..training.train import load_model

    profile = get_profile(profile_name)
    setup_torch(profile)
    net, meta = load_model("ddpm", profile)
    ds = load_dataset(profile)
    part = ds[split]
    idx = torch.linspace(0, len(part) - 1, n_slices).round().long().tolist()
    x = part.images[idx]
    mask = equispaced_mask(profile.image_size)
    y = MRIOperator(mask).A(x)
    n_steps = profile.ddpm.sampler_steps if steps is None else int(steps)
    psnr: dict[str, list[float]] = {"fp32": [], "bf16": []}
    secs: dict[str, float] = {"fp32": 0.0, "bf16": 0.0}
    jobs = [(seed, prec) for seed in seeds for prec in ("fp32", "bf16")]
    for seed, prec in tqdm(jobs, desc="fp32 vs bf16 (validation)"):
        rec = DiffusionReconstructor(net, steps=n_steps, seed=seed, precision=prec)
        t0 = time.perf_counter()
        outs = []
        with torch.no_grad():
            for i in range(0, len(idx), 4):
                outs.append(rec.reconstruct(y[i : i + 4], mask, slice_ids=idx[i : i + 4]))
        secs[prec] += time.perf_counter() - t0
        psnr[prec] += metrics.psnr(torch.cat(outs), x).tolist()
    diff = [b - f for b, f in zip(psnr["bf16"], psnr["fp32"], strict=True)]
    _, lo, hi = t_interval(diff)
    n_runs = len(idx) * len(seeds)
    return {
        "profile": profile.name,
        "split": split,
        "slices": idx,
        "seeds": list(seeds),
        "sampler": DiffusionReconstructor(net, steps=n_steps).describe(),
        "weights_sha256": meta.get("sha256", ""),
        "threads": torch.get_num_threads(),
        "psnr_fp32": psnr["fp32"],
        "psnr_bf16": psnr["bf16"],
        "mean_psnr_fp32": sum(psnr["fp32"]) / n_runs,
        "mean_psnr_bf16": sum(psnr["bf16"]) / n_runs,
        "mean_diff_db": sum(diff) / n_runs,
        "mean_diff_ci95": [lo, hi],
        "mean_abs_diff_db": sum(abs(d) for d in diff) / n_runs,
        "max_abs_diff_db": max(abs(d) for d in diff),
        "s_per_slice": {k: v / n_runs for k, v in secs.items()},
        "tolerance_db": BF16_TOLERANCE_DB,
        "rule": (
            f"bf16 autocast is used when |mean PSNR change| over validation slices and seeds "
            f"is < {BF16_TOLERANCE_DB} dB"
        ),
        "bf16_allowed": bf16_allowed(diff),
    }


__all__ = [
    "BF16_TOLERANCE_DB",
    "TUNING_SPLITS",
    "bf16_allowed",
    "precision_check",
    "require_tuning_split",
]


def main(argv: list[str] | None = None) -> int:
    from ..io import atomic_write_json
    from ..paths import results_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--slices", type=int, default=12)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    out = precision_check(args.profile, args.slices, seeds, args.steps)
    path = results_dir(args.profile) / "sampler_precision.json"
    atomic_write_json(path, out)
    print(
        f"fp32 {out['mean_psnr_fp32']:.3f} dB, bf16 {out['mean_psnr_bf16']:.3f} dB, "
        f"change {out['mean_diff_db']:+.4f} dB [{out['mean_diff_ci95'][0]:+.4f}, "
        f"{out['mean_diff_ci95'][1]:+.4f}], mean |change| {out['mean_abs_diff_db']:.4f}; "
        f"bf16 allowed: {out['bf16_allowed']}; {out['s_per_slice']} s/slice -> {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
