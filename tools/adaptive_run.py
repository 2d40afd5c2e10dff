"""Run the adaptive attacks of notebook 07 outside the notebook (background, resumable).

    PYTHONPATH=$PWD python tools/adaptive_run.py --split test --part 0/2 --attack-only
    PYTHONPATH=$PWD python tools/adaptive_run.py --split test \
        --out results/quick/metrics_adaptive.json

Quick profile with the profile's sampler (``--sampler paper``: the fp32 projection sampler of
the committed result); 1 torch thread.  ``--part i/n``: every n-th slice (for two processes);
``--attack-only`` skips the evaluation.
"""

from __future__ import annotations

import argparse
import time

import torch

from mripkg.attacks.control import budget_controls
from mripkg.data import load_dataset
from mripkg.evaluation import attack_runs, selection
from mripkg.experiments import adaptive
from mripkg.experiments.open_questions import defence_targets, subset_slices
from mripkg.io import write_json
from mripkg.models.ddpm import DiffusionReconstructor
from mripkg.physics import equispaced_mask
from mripkg.profiles import get_profile, with_overrides
from mripkg.training.train import load_or_train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--sampler", default="", help='a SAMPLER_PRESETS name; "": the profile\'s')
    ap.add_argument("--split", default="test", choices=["test", "val"])
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.04, 0.08])
    ap.add_argument("--defences", nargs="+", default=list(adaptive.DEFENCES))
    ap.add_argument("--part", default="0/1")
    ap.add_argument("--attack-only", action="store_true")
    ap.add_argument("--clean-only", action="store_true", help="clean + control recons only")
    ap.add_argument("--no-attack", action="store_true", help="evaluate cached attacks only")
    ap.add_argument("--no-convergence", action="store_true", help="evaluate the final only")
    ap.add_argument("--out", default="")
    ap.add_argument("--steps", type=int, default=0, help="Adam steps (0: AdaptiveConfig's)")
    ap.add_argument("--checkpoints", type=int, nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    prof = with_overrides(get_profile(args.profile), sampler=args.sampler)
    ds = load_dataset(prof, "")
    mask = equispaced_mask(prof.image_size)
    net, meta, _ = load_or_train("ddpm", prof, None, retrain=False)
    diff = DiffusionReconstructor.from_config(net.eval(), prof.ddpm, seed=prof.seed)
    base = attack_runs.attack_settings(prof, meta)
    full = selection.slice_set(ds[args.split], mask, prof.attack.n_slices)
    if args.split == "test":  # notebook 07: tv_slices 8, then defence_slices
        data = subset_slices(subset_slices(full, 8), args.slices)
    else:
        data = subset_slices(full, args.slices)
    i, n = (int(v) for v in args.part.split("/"))
    if not args.attack_only and n > 1:  # evaluation of a part: its slices only
        data = data.take(data.slice_ids[i::n])
    print(f"{prof.name} {diff.describe()} {args.split} slices {data.slice_ids}", flush=True)
    cfg = adaptive.AdaptiveConfig()
    if args.steps:
        cfg = adaptive.AdaptiveConfig(steps=args.steps)
    if args.checkpoints is not None:
        cfg = adaptive.AdaptiveConfig(steps=cfg.steps, checkpoints=tuple(args.checkpoints))
    t0 = time.perf_counter()
    if args.clean_only:  # the evaluation's inputs that do not depend on the attack
        targets = defence_targets(
            diff, mask, prof, 0.05, 10, 3, weights_id=attack_runs.model_id(meta)
        )
        ctrl = budget_controls(data.kspace, mask, data.slice_ids, args.eps, seed=prof.seed)
        m = mask.to(data.y.real.dtype)
        for d in args.defences:
            t = targets[d]
            t(data.y, data.slice_ids)
            for j in range(len(args.eps)):
                t(data.y + ctrl[j] * m, data.slice_ids)
            print(f"{d}: clean + controls at {time.perf_counter() - t0:.0f} s", flush=True)
        return
    if args.attack_only:
        every = {
            "diffusion": diff,
            "tv_diffusion": diff.variant(tv_weight=0.05, tv_iters=10),
            "diffusion_mean": diff,
        }
        for e in sorted(args.eps, reverse=True):  # the largest eps first
            for sid in data.slice_ids[i::n]:
                one = data.take([sid])
                for d in args.defences:
                    m = every[d]
                    s = adaptive.adaptive_settings(base, d, m, cfg)
                    r = adaptive.run_adaptive(m, d, one, [e], s, cfg, profile=prof)
                    print(
                        f"eps {e} slice {sid} {d}: cpu_s {r.cpu_s.flatten().tolist()} "
                        f"at {time.perf_counter() - t0:.0f} s",
                        flush=True,
                    )
        return
    out = adaptive.experiment(
        diff,
        base,
        data,
        args.eps,
        targets=defence_targets(
            diff, mask, prof, 0.05, 10, 3, weights_id=attack_runs.model_id(meta)
        ),
        profile=prof,
        tv_weight=0.05,
        tv_iters=10,
        mean_samples=3,
        cfg=cfg,
        controls_seed=prof.seed,
        defences=args.defences,
        run=not args.no_attack,
        convergence=not args.no_convergence,
    )
    if out is None:
        raise SystemExit("some adaptive attacks are not cached")
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.out:
        print("wrote", write_json(args.out, out))


if __name__ == "__main__":
    main()
