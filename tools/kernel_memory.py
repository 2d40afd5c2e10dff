"""Where a notebook's kernel memory goes: run it and record, per cell, the kernel's resident
memory after the cell and its peak during the cell.

    python tools/kernel_memory.py notebooks/07_open_questions.ipynb --profile quick \
        [-p tv_slices=2 -p defence_slices=1] [--out runs/quick/memory_07.json]

Parameters are injected as papermill does (``-p NAME=VALUE``, a Python literal or a string);
``$MRIPKG_PROFILE`` is set to ``--profile`` for the kernel.  Memory is the resident set size
of the kernel process and its children, sampled every 0.2 s (psutil).  Prints a table of the
cells that raised the peak, with the first line of each cell, and writes every row as JSON.
Nothing is written into figures/ (figures of such a run go to runs/<profile>/figures/).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Sampler:
    """Peak and current RSS (GB) of a process tree, sampled in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0.0
        self.now = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> float:
        import psutil

        total = 0
        try:
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            return self.now
        return total / 1024**3

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.now = self.rss()
            self.peak = max(self.peak, self.now)

    def reset_peak(self) -> None:
        self.now = self.rss()
        self.peak = self.now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--timeout", type=int, default=3600, help="per cell, seconds")
    args = ap.parse_args(argv)

    from nbclient import NotebookClient
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    params: dict[str, object] = {"profile": args.profile}
    for item in args.param:
        name, _, text = item.partition("=")
        try:
            params[name.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            params[name.strip()] = text.strip()
    nb = parameterize_notebook(load_notebook_node(str(args.notebook)), params)
    os.environ["MRIPKG_PROFILE"] = args.profile
    os.environ.pop("MRIPKG_PUBLISH_FIGURES", None)
    client = NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(args.notebook.resolve().parent)}},
    )
    rows: list[dict[str, object]] = []
    with client.setup_kernel():
        pid = client.km.provisioner.pid if client.km.provisioner else client.km.kernel.pid
        mem = Sampler(pid)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            mem.reset_peak()
            t = time.perf_counter()
            client.execute_cell(cell, i)
            time.sleep(0.25)
            now = mem.rss()
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            rows.append(
                {
                    "cell": i,
                    "source": first[:70],
                    "seconds": round(time.perf_counter() - t, 1),
                    "peak_gb": round(max(mem.peak, now), 3),
                    "after_gb": round(now, 3),
                }
            )
            r = rows[-1]
            print(
                f"cell {i:2d}  {r['seconds']:7.1f} s  peak {r['peak_gb']:.2f} GB  "
                f"after {r['after_gb']:.2f} GB  {r['source']}",
                flush=True,
            )
        mem.stop()
    peak = max(float(r["peak_gb"]) for r in rows) if rows else 0.0
    print(f"kernel peak {peak:.2f} GB")
    out = args.out or ROOT / "runs" / args.profile / f"memory_{args.notebook.stem[:2]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {"notebook": args.notebook.name, "params": params, "cells": rows}, indent=1, default=str
        ),
        encoding="utf-8",
    )
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
