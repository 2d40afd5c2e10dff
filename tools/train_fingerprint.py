"""Fingerprint a one-process smoke training of all three models, to compare two versions.

    PYTHONPATH=. python tools/train_fingerprint.py runs/fp_new            # this checkout
    git worktree add /tmp/old <commit> && (cd /tmp/old && PYTHONPATH=. python \\
        /path/to/tools/train_fingerprint.py /tmp/fp_old)
    python tools/train_fingerprint.py --compare /tmp/fp_old runs/fp_new

Trains ResUNet++, i-RIM and the DDPM at the smoke profile from scratch (seconds each) into the
given folder and compares, part by part, two such folders: the raw and EMA weights, Adam's
moments, the generator state, the loss and validation history and the bytes of the best
checkpoint (safetensors), each equal or not, plus the learning rate stored with the optimiser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

NAMES = ("resunetpp", "irim", "ddpm")


def train(out: Path) -> None:
    from mripkg.data import load_dataset
    from mripkg.profiles import SMOKE
    from mripkg.training.train import train_model

    ds = load_dataset(SMOKE)
    for name in NAMES:
        train_model(name, SMOKE, ds, out_dir=out, resume=False, progress=False)
        print(f"trained {name} -> {out}")


def compare(a: Path, b: Path) -> bool:
    same = True
    for name in NAMES:
        sa = torch.load(a / f"{name}.state.pt", weights_only=True)
        sb = torch.load(b / f"{name}.state.pt", weights_only=True)
        res = {}
        for part in ("model", "ema"):
            res[part] = sa[part].keys() == sb[part].keys() and all(
                torch.equal(sa[part][k], sb[part][k]) for k in sa[part]
            )
        oa, ob = sa["optimizer"]["state"], sb["optimizer"]["state"]
        res["adam"] = oa.keys() == ob.keys() and all(
            torch.equal(torch.as_tensor(oa[k][m]), torch.as_tensor(ob[k][m]))
            for k in oa
            for m in oa[k]
        )
        res["generator"] = torch.equal(sa["generator"], sb["generator"])
        res["history"] = sa["history"] == sb["history"]
        res["best_checkpoint"] = (a / f"{name}.safetensors").read_bytes() == (
            b / f"{name}.safetensors"
        ).read_bytes()
        lrs = [g["lr"] for g in sa["optimizer"]["param_groups"]]
        lrs += [g["lr"] for g in sb["optimizer"]["param_groups"]]
        same &= all(res.values())
        print(f"{name}: {res}; stored lr {lrs}")
    return same


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--compare", action="store_true", help="compare two trained folders")
    args = ap.parse_args(argv)
    if args.compare:
        if len(args.folders) != 2:
            ap.error("--compare takes two folders")
        return 0 if compare(*args.folders) else 1
    train(args.folders[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
