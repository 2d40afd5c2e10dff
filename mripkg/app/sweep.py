"""Sharded white-box sweeps: n workers fill one attack cache, one merge writes the results.

The white-box sweep attacks every source model on every (test slice, eps) pair (Eq. 5), then
gives each perturbation to every target model with the equal-norm random control.  The attacks
are the cost; they are cut into batches fixed by the call (eps-major, every ``batch_size``
pairs), and batch ``k`` belongs to shard ``k mod n`` (:mod:`mripkg.attacks.shards`)::

    python -m mripkg.app.sweep --profile paper --shard 0/4      # on 4 machines or processes
    python -m mripkg.app.sweep --profile paper --shard 1/4      # ... sharing runs/ (or its
    ...                                                          #     attacks/ folder)
    python -m mripkg.app.sweep --profile paper --merge          # validate, evaluate, write
    torchrun --standalone --nproc_per_node=8 -m mripkg.app.sweep --profile paper
                                                                # each rank its shard; rank 0
                                                                # merges after a barrier

A shard attacks whole batches, as one process does, so its cache entries are bit-identical to
those one process writes (same thread count; on GPUs, the same kind of GPU); the merge attacks
nothing, re-validates every entry on load (sha256, key, budget recomputed from the tensor),
stops with :class:`~mripkg.attacks.shards.MissingEntries` naming the batches still missing,
and writes the result files a single process writes (``python -m mripkg.app.sweep`` without a
shard does all of it in one process):

* ``<out>/sweep_whitebox.json``: per (source, target): eps, mean PSNR / SSIM clean, attacked and
  under the random control;
* ``<out>/sweep_whitebox_per_slice.csv``: every (source, target, eps, slice) row.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attacks.cache import AttackCache
from ..attacks.control import budget_controls
from ..attacks.kspace import AttackSettings
from ..attacks.shards import Shard
from ..evaluation.attack_runs import attack_settings, run_whitebox, shard_whitebox
from ..evaluation.scoring import evaluate_attack, per_slice_rows
from ..evaluation.selection import SliceSet, slice_set
from ..evaluation.targets import Target
from ..io import write_csv, write_json
from ..paths import run_dir
from ..physics import equispaced_mask
from ..profiles import Profile, cli_profile, setup_torch

SOURCES = ("resunetpp", "irim")
RESULT_FILES = ("sweep_whitebox.json", "sweep_whitebox_per_slice.csv")


def fill_shard(
    models: Mapping[str, nn.Module],
    data: SliceSet,
    eps: Sequence[float],
    settings: Mapping[str, AttackSettings],
    *,
    shard: Shard,
    profile: str,
    cache: AttackCache,
    batch_size: int = 8,
) -> dict[str, list[int]]:
    """Attack this shard's batches of every source into ``cache``; returns the batch numbers
    attacked per source (an entry already in the cache is not attacked again)."""
    done = {}
    for source, model in models.items():
        done[source] = shard_whitebox(
            model,
            source,
            data,
            eps,
            settings[source],
            shard=shard,
            profile=profile,
            batch_size=batch_size,
            cache=cache,
            progress=False,
        )
    return done


def write_results(
    models: Mapping[str, nn.Module],
    data: SliceSet,
    eps: Sequence[float],
    settings: Mapping[str, AttackSettings],
    *,
    profile: str,
    seed: int,
    cache: AttackCache,
    out_dir: Path,
    batch_size: int = 8,
    merge: bool = False,
) -> list[Path]:
    """The white-box sweep's result files: attack every source (``merge``: every pair from the
    cache, nothing attacked), evaluate on every model as target with the equal-norm random
    controls (seeded by ``seed``), write :data:`RESULT_FILES` to ``out_dir``."""
    controls = budget_controls(data.kspace, data.mask, data.slice_ids, eps, seed)
    targets = {k: Target(k, m, data.mask, batch_size=batch_size) for k, m in models.items()}
    summary: dict[str, Any] = {"eps": [float(e) for e in eps], "slices": list(data.slice_ids)}
    rows: list[dict[str, Any]] = []
    for source, model in models.items():
        result = run_whitebox(
            model,
            source,
            data,
            eps,
            settings[source],
            profile=profile,
            batch_size=batch_size,
            cache=cache,
            progress=False,
            require_cached=merge,
        )
        for name, target in targets.items():
            ev = evaluate_attack(target, data, result, source=source, controls=controls)
            rows.extend(per_slice_rows(ev))
            summary[f"{source}->{name}"] = {
                "psnr_clean": float(ev.psnr_clean.double().mean()),
                "ssim_clean": float(ev.ssim_clean.double().mean()),
                "psnr": [float(ev.psnr[j].double().mean()) for j in range(len(eps))],
                "ssim": [float(ev.ssim[j].double().mean()) for j in range(len(eps))],
                "psnr_random": [float(ev.psnr_rand[j].double().mean()) for j in range(len(eps))],  # type: ignore[index]
            }
    out_dir = Path(out_dir)
    return [
        write_json(out_dir / RESULT_FILES[0], summary),
        write_csv(out_dir / RESULT_FILES[1], rows),
    ]


def run(
    profile: Profile,
    shard: Shard | None = None,
    merge: bool = False,
    out_dir: Path | None = None,
    cache_root: Path | None = None,
    batch_size: int = 8,
    sources: Sequence[str] = SOURCES,
    device: str | None = None,
) -> list[Path] | dict[str, list[int]]:
    """The sweep of ``profile`` with its shipped (or trained) models on its attacked test
    slices and eps grid: one shard (``shard``), the merge (``merge``), or all of it in one
    process.  ``out_dir``: ``runs/<profile>``; ``cache_root``: ``<out_dir>/attacks``;
    ``device``: where the networks run (default the CPU; the data stay on the CPU)."""
    from ..data import load_dataset
    from ..evaluation.clean import build_reconstructors

    if shard is not None and merge:
        raise ValueError("a run is either one shard or the merge, not both")
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}; choose from {SOURCES}")
    setup_torch(profile)
    out_dir = Path(out_dir) if out_dir is not None else run_dir(profile.name)
    cache = AttackCache(profile.name, root=cache_root or out_dir / "attacks")
    ds = load_dataset(profile)
    models, metas, _ = build_reconstructors(profile, ds)
    nets = {k: models[k] for k in sources}
    if device is not None and torch.device(device).type != "cpu":
        from .paper_gpu import OnDevice

        dev = torch.device(device)
        nets = {k: OnDevice(v.to(dev), dev) for k, v in nets.items()}
    settings = {k: attack_settings(profile, metas[k]) for k in sources}
    data = slice_set(ds["test"], equispaced_mask(profile.image_size), profile.attack.n_slices)
    eps = list(profile.attack.eps_grid)
    if shard is not None:
        return fill_shard(
            nets,
            data,
            eps,
            settings,
            shard=shard,
            profile=profile.name,
            cache=cache,
            batch_size=batch_size,
        )
    return write_results(
        nets,
        data,
        eps,
        settings,
        profile=profile.name,
        seed=profile.seed,
        cache=cache,
        out_dir=out_dir,
        batch_size=batch_size,
        merge=merge,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--shard", default=None, help="i/n: attack only this shard's batches")
    ap.add_argument("--merge", action="store_true", help="validate the cache, write the results")
    ap.add_argument("--out", type=Path, default=None, help="default: runs/<profile>")
    ap.add_argument("--cache", type=Path, default=None, help="default: <out>/attacks")
    ap.add_argument("--batch-size", type=int, default=8, help="(slice, eps) pairs per batch")
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated models")
    ap.add_argument(
        "--device", default=None, help="default: the CPU; under torchrun each rank's GPU if any"
    )
    args = ap.parse_args(argv)
    profile = cli_profile(args.profile)
    if args.batch_size < 1:
        ap.error(f"--batch-size must be a positive integer, got {args.batch_size}")
    try:
        shard = Shard.parse(args.shard) if args.shard else None
    except ValueError as err:
        ap.error(str(err))
    sources = [s for s in args.sources.split(",") if s]
    ranks_shard = Shard.from_torchrun() if shard is None and not args.merge else None
    device = args.device
    if device is None and ranks_shard is not None and torch.cuda.is_available():
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    common = dict(
        out_dir=args.out,
        cache_root=args.cache,
        batch_size=args.batch_size,
        sources=sources,
        device=device,
    )
    t0 = time.perf_counter()
    if ranks_shard is not None and ranks_shard.count > 1:  # torchrun: shard, barrier, merge
        import torch.distributed as dist

        done = run(profile, shard=ranks_shard, **common)  # type: ignore[arg-type]
        print(f"[sweep {ranks_shard}] attacked batches {done} ({time.perf_counter() - t0:.0f} s)")
        dist.init_process_group("gloo")  # only to wait for every shard
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
        if ranks_shard.index == 0:  # outside the group: the merge is one process's work
            paths = run(profile, merge=True, **common)  # type: ignore[arg-type]
            print(f"[sweep] merged: wrote {', '.join(str(p) for p in paths)}")  # type: ignore[union-attr]
        return 0
    res = run(profile, shard=shard, merge=args.merge, **common)  # type: ignore[arg-type]
    if shard is not None:
        print(f"[sweep {shard}] attacked batches {res} ({time.perf_counter() - t0:.0f} s)")
    else:
        print(f"[sweep] wrote {', '.join(str(p) for p in res)}")  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
