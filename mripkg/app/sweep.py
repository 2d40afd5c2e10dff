"""Sharded white-box sweeps: n workers fill one attack cache, one merge writes the results.

The white-box sweep of notebook 03 (:class:`mripkg.experiments.whitebox.WhiteBox`) attacks
every source model on every (test slice, eps) pair (Eq. 5).  The attacks are the cost; they
are cut into batches fixed by the call (eps-major, every ``batch_size`` pairs), and batch ``k``
belongs to shard ``k mod n`` (:mod:`mripkg.attacks.shards`)::

    python -m mripkg.app.sweep --profile paper --shard 0/4   # one per machine or process,
    python -m mripkg.app.sweep --profile paper --shard 1/4   # sharing runs/ (MRIPKG_ROOT)
    ...
    python -m mripkg.app.sweep --profile paper --merge       # validate, evaluate, write
    torchrun --standalone --nproc_per_node=8 -m mripkg.app.sweep --profile paper
                                                             # each rank its shard; rank 0
                                                             # merges when all are done

A shard attacks whole batches, as one process does, so its cache entries are bit-identical to
those one process writes (same thread count; on GPUs, the same kind of GPU).  The merge attacks
nothing: it re-validates every entry on load (sha256, key, the budget recomputed from the
tensor), stops with :class:`~mripkg.attacks.shards.MissingEntries` naming the batches still
missing, evaluates, and writes the files notebook 03 writes in one process
(``runs/<profile>/metrics_white_box.json`` and ``metrics_white_box_per_slice.csv``).  Without
``--shard`` or ``--merge`` one process does all of it.  The models must exist first (shipped,
or ``make weights``): every worker loads them.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..attacks.shards import Shard
from ..models import NAMES
from ..profiles import Profile, cli_profile, setup_torch

SOURCES = tuple(NAMES[:3])  # zero filling, ResUNet++, i-RIM: the white-box sources of 03


def run(
    profile: Profile,
    shard: Shard | None = None,
    merge: bool = False,
    batch_size: int = 8,
    sources: Sequence[str] = SOURCES,
    device: str | None = None,
) -> dict[str, list[int]] | tuple[Path, Path]:
    """One shard of the white-box sweep of ``profile`` (the batch numbers attacked per source),
    the merge, or all of it in one process (the two result files).  ``device``: where the
    networks run (default the CPU; the data stay on the CPU)."""
    from ..data import load_dataset
    from ..experiments.whitebox import WhiteBox
    from ..physics import equispaced_mask

    if shard is not None and merge:
        raise ValueError("a run is either one shard or the merge, not both")
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}; choose from {SOURCES}")
    setup_torch(profile)
    ds = load_dataset(profile)
    wb = WhiteBox(
        profile,
        ds,
        equispaced_mask(profile.image_size),
        batch_size=batch_size,
        sources=list(sources),
    )
    wb.load_models()
    if device is not None and torch.device(device).type != "cpu":
        from .paper_gpu import OnDevice

        dev = torch.device(device)
        for m in wb.sources:
            wb.models[m] = OnDevice(wb.models[m].to(dev), dev)
    wb.select()
    if shard is not None:
        return wb.attack_shard(shard)
    wb.attack(require_cached=merge)
    wb.evaluate()
    return wb.save()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--shard", default=None, help="i/n: attack only this shard's batches")
    ap.add_argument("--merge", action="store_true", help="validate the cache, write the results")
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
    rank_shard = Shard.from_torchrun() if shard is None and not args.merge else None
    device = args.device
    if device is None and rank_shard is not None and torch.cuda.is_available():
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    common = dict(
        batch_size=args.batch_size,
        sources=[s for s in args.sources.split(",") if s],
        device=device,
    )
    t0 = time.perf_counter()
    if rank_shard is not None and rank_shard.count > 1:  # torchrun: shard, wait, merge
        import torch.distributed as dist

        done = run(profile, shard=rank_shard, **common)  # type: ignore[arg-type]
        print(f"[sweep {rank_shard}] attacked batches {done} ({time.perf_counter() - t0:.0f} s)")
        dist.init_process_group("gloo")  # only to wait for every shard
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
        if rank_shard.index == 0:  # outside the group: the merge is one process's work
            paths = run(profile, merge=True, **common)  # type: ignore[arg-type]
            print(f"[sweep] merged: wrote {paths[0]} and {paths[1]}")  # type: ignore[index]
        return 0
    res = run(profile, shard=shard, merge=args.merge, **common)  # type: ignore[arg-type]
    if shard is not None:
        print(f"[sweep {shard}] attacked batches {res} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
