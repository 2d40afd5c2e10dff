"""Machine-to-machine spread next to each attack-derived claim statistic.

Every interval of the scorecard (``claims.json``) is over test slices; it says nothing about
how far the same statistic moves when the run is repeated on another machine of the same kind
(kernel-level rounding amplified by the attack's Adam steps, measured by
:mod:`mripkg.app.tolerances`).  :func:`claim_spread` puts the two side by side for each comparison:

* ``spread``: the measured run-to-run spread of the statistic, in its unit (the tolerance
  :mod:`mripkg.report.verify` applies to it);
* ``half_width``: half the slice interval's width;
* ``interval_wider``: whether the slice interval is wider than the spread (then the machine
  adds little to the uncertainty already stated);
* ``low_with_spread`` / ``high_with_spread``: the interval widened by the spread on both sides
  (the spread added to the uncertainty, linearly: conservative);
* ``decision_same``: whether the widened interval lies on the same side of the claim's
  threshold as the interval itself (``None`` where the threshold is not ``interval > c`` or
  ``interval < c``).

Hook: ``claims.json`` (``card``) and ``results/<profile>/tolerances.json`` in, rows out; the
scorecard may show :func:`spread_markdown` under the card.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .rules import THRESHOLDS
from .verify import Rule, load_tolerances, rule_for

_THRESHOLD = re.compile(r"interval\s*([<>])\s*(-?\d+(?:\.\d+)?)")


def _threshold(text: str) -> tuple[str, float] | None:
    m = _THRESHOLD.search(text or "")
    return (m.group(1), float(m.group(2))) if m else None


def _spread(rule: Rule, value: float) -> float | None:
    if rule.how == "abs":
        return float(rule.tol)
    if rule.how == "rel":
        return float(rule.tol) * abs(float(value))
    return None


def claim_spread(card: Mapping[str, Any], tolerances: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per comparison of every claim in ``card`` (a ``claims.json``) with a value and
    an interval: the claim, the comparison's label, value, low, high, ``spread`` (``None``
    where no spread was measured for that statistic, e.g. a rank correlation), ``half_width``,
    ``interval_wider``, ``low_with_spread``, ``high_with_spread`` and ``decision_same``."""
    claims = card.get("claims")
    if not isinstance(claims, Sequence):
        raise ValueError("not a scorecard: no 'claims' list")
    out = []
    for i, c in enumerate(claims):
        # an older card states its threshold as text; issue 17's card only in its rules
        thr = _threshold(str(c.get("threshold", ""))) or THRESHOLDS.get(str(c.get("claim", "")))
        for j, r in enumerate(c.get("rows", []) or []):
            vals = [r.get(k) for k in ("value", "low", "high")]
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
                continue
            value, low, high = (float(v) for v in vals)
            rule = rule_for("claims.json", f"claims/{i}/rows/{j}/value", tolerances, card)
            s = _spread(rule, value)
            row: dict[str, Any] = {
                "claim": str(c.get("claim", i + 1)),
                "label": str(r.get("label", "")),
                "value": value,
                "low": low,
                "high": high,
                "half_width": (high - low) / 2,
                "spread": s,
                "interval_wider": None,
                "low_with_spread": None,
                "high_with_spread": None,
                "decision_same": None,
            }
            if s is not None:
                lo2, hi2 = low - s, high + s
                row.update(
                    interval_wider=(high - low) / 2 > s,
                    low_with_spread=lo2,
                    high_with_spread=hi2,
                )
                if thr is not None:
                    side, t = thr
                    if side == ">":
                        row["decision_same"] = (low > t) == (lo2 > t)
                    else:
                        row["decision_same"] = (high < t) == (hi2 < t)
            out.append(row)
    return out


def claim_spread_from_files(card_path: str | Path, tolerances_path: str | Path) -> list[dict]:
    """:func:`claim_spread` of a ``claims.json`` and a ``tolerances.json``."""
    import json

    card = json.loads(Path(card_path).read_text(encoding="utf-8"))
    return claim_spread(card, load_tolerances(tolerances_path))


def spread_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of :func:`claim_spread` as a Markdown table."""

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.3g}"

    def yn(x: Any) -> str:
        return "n/a" if x is None else ("yes" if x else "**no**")

    lines = [
        "| claim | comparison | value [slice interval] | machine spread | interval wider "
        "| with the spread added | same decision |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        widened = (
            "-"
            if r["low_with_spread"] is None
            else f"[{f(r['low_with_spread'])}, {f(r['high_with_spread'])}]"
        )
        lines.append(
            f"| {r['claim']} | {r['label']} | {f(r['value'])} [{f(r['low'])}, {f(r['high'])}] "
            f"| {f(r['spread'])} | {yn(r['interval_wider'])} | {widened} "
            f"| {yn(r['decision_same'])} |"
        )
    return "\n".join(lines)


def summary_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """E.g. "18 of 20 comparisons: slice interval wider than the machine spread; 1 decision
    changes with the spread added"."""
    known = [r for r in rows if r["spread"] is not None]
    wider = sum(bool(r["interval_wider"]) for r in known)
    flips = sum(r["decision_same"] is False for r in known)
    return (
        f"{wider} of {len(known)} comparisons with a measured spread: slice interval wider "
        f"than the machine-to-machine spread; {flips} decision(s) change with the spread added"
        f" ({len(rows) - len(known)} without a measured spread)"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m mripkg.report.run_spread [--profile quick] [--claims FILE]``: the table for
    a run's scorecard (default ``runs/<profile>/claims.json``, else ``results/<profile>/``)."""
    import argparse
    import sys

    from ..paths import RESULTS_DIR, RUNS_DIR
    from .verify import VerifyError

    ap = argparse.ArgumentParser(prog="python -m mripkg.report.run_spread")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--claims", type=Path, default=None)
    ap.add_argument("--tolerances", type=Path, default=None)
    args = ap.parse_args(argv)
    card = args.claims
    if card is None:
        card = RUNS_DIR / args.profile / "claims.json"
        if not card.is_file():
            card = RESULTS_DIR / args.profile / "claims.json"
    tol = args.tolerances or RESULTS_DIR / args.profile / "tolerances.json"
    try:
        if not Path(card).is_file():
            raise VerifyError(f"{card}: missing (notebook 05 writes it)")
        rows = claim_spread_from_files(card, tol)
    except (VerifyError, ValueError) as err:
        print(f"run_spread: error: {err}", file=sys.stderr)
        return 2
    print(f"Claim statistics of {card}: slice interval and machine-to-machine spread")
    print(spread_markdown(rows))
    print(summary_line(rows))
    return 0


__all__ = ["claim_spread", "claim_spread_from_files", "main", "spread_markdown", "summary_line"]


if __name__ == "__main__":
    raise SystemExit(main())
