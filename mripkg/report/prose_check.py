"""The README says only what the files say: numbers in prose checked against the result files.

:func:`unmatched_numbers` finds every number with two or more decimals in the prose of a
Markdown text (outside the generated ``<!-- results:NAME -->`` blocks, code blocks and links)
that matches no value of the result files within its rounding (``|x - v| <= 0.5 * 10^-d`` for
``d`` decimals, sign ignored).  :func:`table_shapes` and :func:`lost_cells` let
``python -m mripkg.readme --check`` fail when a generated table has lost a column or a row.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CELL_NUMBER_RE = re.compile(r"-?\d+\.\d+")
NUMBER_RE = re.compile(r"(?<![\w.:/\-])[-+\u2212]?\d+\.(\d{2,})(?![\w.])")
BLOCK_RE = re.compile(r"<!-- results:(\S+) -->.*?<!-- /results:\1 -->", re.DOTALL)
CODE_RE = re.compile(r"```.*?```", re.DOTALL)
LINK_RE = re.compile(r"\]\([^)]*\)|https?://\S+|doi:\S+|arXiv:\S+")


def _leaves(obj: Any, out: list[float]) -> None:
    if isinstance(obj, dict):
        for v in obj.values():
            _leaves(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _leaves(v, out)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if math.isfinite(obj):
            out.append(float(obj))
    elif isinstance(obj, str):
        try:
            x = float(obj)
        except ValueError:  # a formatted cell, e.g. "0.48 [-0.13, 1.08]": each number in it
            for m in CELL_NUMBER_RE.finditer(obj):
                out.append(float(m.group(0)))
            return
        if math.isfinite(x):
            out.append(x)


def result_values(paths: Iterable[Path]) -> list[float]:
    """Every finite number in the JSON and CSV files among ``paths`` (folders are searched),
    sorted, absolute values."""
    vals: list[float] = []
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files += sorted(p.rglob("*")) if p.is_dir() else [p]
    for f in files:
        if f.suffix == ".json":
            _leaves(json.loads(f.read_text(encoding="utf-8")), vals)
        elif f.suffix == ".csv":
            with open(f, newline="", encoding="utf-8") as fh:
                for row in csv.reader(fh):
                    _leaves(row, vals)
    return sorted({abs(v) for v in vals})


def prose(text: str) -> str:
    """``text`` without generated result blocks, fenced code and link targets."""
    return LINK_RE.sub("", CODE_RE.sub("", BLOCK_RE.sub("", text)))


def _matches(x: float, decimals: int, values: list[float]) -> bool:
    tol = 0.5 * 10.0**-decimals + 1e-12
    i = bisect.bisect_left(values, abs(x) - tol)
    return i < len(values) and values[i] <= abs(x) + tol


def unmatched_numbers(
    text: str, values: list[float], allowed: Iterable[str] = ()
) -> list[tuple[int, str, str]]:
    """``(line number, number, line)`` for each number in ``text``'s prose that matches no
    value (``values``: sorted absolute values, :func:`result_values`) within its rounding;
    ``allowed``: tokens exempted (each with a reason where the caller lists them)."""
    ok = set(allowed)
    out = []
    for n, line in enumerate(prose(text).splitlines(), 1):
        for m in NUMBER_RE.finditer(line):
            tok = m.group(0).replace("\u2212", "-").lstrip("+")
            if tok.lstrip("-") in ok:
                continue
            if not _matches(float(tok), len(m.group(1)), values):
                out.append((n, tok, line.strip()))
    return out


def table_shapes(markdown: str) -> list[tuple[list[str], int]]:
    """``(header cells, number of body rows)`` of every Markdown table in ``markdown``."""
    shapes: list[tuple[list[str], int]] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if (
            lines[i].startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|[-:| ]+\|$", lines[i + 1])
        ):
            head = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            shapes.append((head, j - i - 2))
            i = j
        else:
            i += 1
    return shapes


def lost_cells(old: str, new: str) -> list[str]:
    """What the tables of ``new`` lost against those of ``old`` (same order): a column named
    in ``old``'s header and missing from ``new``'s, fewer body rows, or a missing table."""
    a, b = table_shapes(old), table_shapes(new)
    out = []
    if len(b) < len(a):
        out.append(f"{len(a) - len(b)} table(s) lost")
    for k, ((ha, na), (hb, nb)) in enumerate(zip(a, b, strict=False)):
        gone = [c for c in ha if c not in hb]
        if gone:
            out.append(f"table {k + 1}: lost column(s) {gone}")
        if nb < na:
            out.append(f"table {k + 1}: {na - nb} row(s) lost ({na} -> {nb})")
    return out


__all__ = ["lost_cells", "prose", "result_values", "table_shapes", "unmatched_numbers"]
