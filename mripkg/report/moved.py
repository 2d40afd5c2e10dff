"""Which numbers moved between two result files (flattened key by key).

Stage: report.  Receives two JSON result trees; hands on rows of (key, before, after).
"""

from __future__ import annotations

from collections.abc import Mapping


def flatten_numbers(obj: object, prefix: str = "", text: bool = False) -> dict[str, float | str]:
    """Every number (not bool) inside nested dicts/lists, keyed by its path
    (``"a/b/3/c"``; list items by index); ``text=True``: strings too."""
    out: dict[str, float | str] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten_numbers(v, f"{prefix}/{k}" if prefix else str(k), text))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten_numbers(v, f"{prefix}/{i}" if prefix else str(i), text))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    elif text and isinstance(obj, str):
        out[prefix] = obj
    return out


def moved_numbers(
    before: Mapping[str, object], after: Mapping[str, object], text: bool = False
) -> list[dict[str, object]]:
    """Every number of two result sets (``{file name: parsed JSON}``) side by side: one row per
    path present in either, with ``before``, ``after`` (``None`` where absent) and ``change``
    (``after - before``, ``None`` unless both are numbers), in file and path order;
    ``text=True``: strings (verdicts, labels) too."""
    rows: list[dict[str, object]] = []
    for name in sorted(set(before) | set(after)):
        old = flatten_numbers(before.get(name, {}), text=text)
        new = flatten_numbers(after.get(name, {}), text=text)
        for key in list(old) + [k for k in new if k not in old]:
            a, b = old.get(key), new.get(key)
            both = isinstance(a, float) and isinstance(b, float)
            change = b - a if both else None  # type: ignore[operator]
            rows.append({"file": name, "key": key, "before": a, "after": b, "change": change})
    return rows


__all__ = [
    "flatten_numbers",
    "moved_numbers",
]
