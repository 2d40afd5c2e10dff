"""Every number of results/<profile>/*.json before and after a change, in one CSV.

    .venv/bin/python tools/moved_numbers.py --before 487d2b2   # -> results/quick/moved_numbers.csv

``--before``: the git revision whose committed ``results/<profile>/*.json`` are the old
numbers; the files in the working tree are the new ones.  Prints how many numbers moved (by
more than ``--tol``) per file; ``python -m mripkg.readme`` turns the CSV into the README's
"what moved" table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mripkg.fingerprint import SIDECAR_SUFFIX, strip  # noqa: E402
from mripkg.report.moved import moved_numbers  # noqa: E402


def committed_json(rev: str, folder: str) -> dict[str, object]:
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:{folder}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    out: dict[str, object] = {}
    for name in names:
        if name.endswith(".json"):
            text = subprocess.run(
                ["git", "show", f"{rev}:{folder}/{name}"],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            out[name] = json.loads(text)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision of the old results")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--tol", type=float, default=0.01, help="a change above this counts as moved")
    args = ap.parse_args(argv)
    folder = f"results/{args.profile}"
    before = committed_json(args.before, folder)
    after = {p.name: json.loads(p.read_text()) for p in sorted((ROOT / folder).glob("*.json"))}
    # timings and memory, not results
    skip = {"bench_levers.json", "bench.json", "bench_memory_03.json", "tolerances.json"}

    def keep(name: str) -> bool:  # not a CSV's machine sidecar either
        return name not in skip and not name.endswith(SIDECAR_SUFFIX)

    # the machine fingerprint is compared by `make verify`, not listed as moved numbers
    before = {k: strip(v) for k, v in before.items() if keep(k)}
    after = {k: strip(v) for k, v in after.items() if keep(k)}
    rows = moved_numbers(before, after, text=True)
    path = ROOT / folder / "moved_numbers.csv"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "key", "before", "after", "change"])
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    tmp.replace(path)
    for name in sorted({r["file"] for r in rows}):
        mine = [r for r in rows if r["file"] == name]
        moved = [
            r
            for r in mine
            if (r["change"] is not None and abs(r["change"]) > args.tol)
            or (
                r["change"] is None
                and None not in (r["before"], r["after"])
                and r["before"] != r["after"]
            )
        ]
        gone = [r for r in mine if r["after"] is None]
        new = [r for r in mine if r["before"] is None]
        print(
            f"{name:34s} {len(mine):5d} numbers, {len(moved):5d} moved > {args.tol:g}, "
            f"{len(new)} new, {len(gone)} gone"
        )
    print(f"wrote {path.relative_to(ROOT)} ({len(rows)} rows; before = {args.before})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
