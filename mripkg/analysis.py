"""Small analysis helpers the notebooks share: tables, zero-filled baselines, JSON output."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from . import metrics
from .data import MRIDataset, Split
from .physics import fft2c, undersample, zero_filled

#: metric name -> convention, written next to every metrics table / JSON file
METRIC_CONVENTIONS: dict[str, str] = {
    "psnr": "paper: each image min-max normalised to [0, 1], data range 1 (torchmetrics)",
    "ssim": "paper: min-max normalised, data range 1, Gaussian 11x11 window, sigma 1.5",
    "psnr_head": "paper normalisation, mean squared error inside the head mask only",
    "ssim_head": "paper normalisation, SSIM map averaged inside the head mask only",
    "psnr_fastmri": "fastMRI: no normalisation, data range = max of the reference",
    "ssim_fastmri": "fastMRI: scikit-image SSIM, 7x7 uniform window, data range = max(ref)",
}


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """A Markdown pipe table (readable as plain text) from a list of dicts.

    Floats are printed with 4 significant digits; ``columns`` picks and orders the columns
    (default: the keys of the first row)."""
    if not rows:
        return "(empty table)"
    cols = list(columns) if columns is not None else list(rows[0])

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in cells:
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def dataset_table(ds: MRIDataset) -> str:
    """The dataset table of notebook 01: split, subjects, slices, image size, source."""
    return format_table(ds.table(), ["split", "subjects", "slices", "image_size", "source"])


def zero_filled_split(split: Split, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Zero-filled reconstructions of a whole split: ``{"gt", "kspace", "y", "zf"}``
    (images ``[N, 1, H, W]``; k-space complex)."""
    gt = split.images
    k = fft2c(gt)
    y = undersample(k, mask)
    return {"gt": gt, "kspace": k, "y": y, "zf": zero_filled(y)}


def zero_filled_metrics(split: Split, mask: torch.Tensor) -> dict[str, object]:
    """Zero-filled PSNR/SSIM of a split, paper convention and inside the head mask:
    per-slice values plus mean and SD (sample) of each metric."""
    rec = zero_filled_split(split, mask)
    per = metrics.all_metrics(rec["zf"], rec["gt"], split.masks)
    out: dict[str, object] = {
        "n_slices": len(split),
        "subjects": split.subject_ids,
    }
    for name, values in per.items():
        mean, sd = metrics.summarize(values)
        out[f"{name}_mean"] = mean
        out[f"{name}_sd"] = sd
    out["per_slice"] = {name: [float(v) for v in values] for name, values in per.items()}
    return out


def zero_filled_example(split: Split, mask: torch.Tensor, index: int | None = None) -> dict:
    """One slice of a split for a figure (default: the middle slice of the split's first
    subject): ground truth, full and undersampled k-space, the zero-filled image and its
    PSNR/SSIM (paper convention)."""
    if index is None:
        first = [j for j, s in enumerate(split.subjects) if s == split.subjects[0]]
        index = first[len(first) // 2]
    i = int(index)
    sub = split.subset([i])
    rec = zero_filled_split(sub, mask)
    return {
        **{k: v[0, 0] for k, v in rec.items()},
        "psnr": float(metrics.psnr(rec["zf"], rec["gt"])[0]),
        "ssim": float(metrics.ssim(rec["zf"], rec["gt"])[0]),
        "subject": sub.subjects[0],
        "slice_index": sub.slice_index[0],
    }


def all_finite(obj: object) -> bool:
    """True when every number inside a nested dict/list structure is finite."""
    if isinstance(obj, Mapping):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(all_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


def write_json(path: str | os.PathLike, obj: object) -> Path:
    """Write ``obj`` as indented JSON atomically (temporary file, then ``os.replace``).
    Non-finite floats are refused (they are not valid JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, allow_nan=False, sort_keys=False) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_json(path: str | os.PathLike) -> object:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
    "METRIC_CONVENTIONS",
    "all_finite",
    "flatten_numbers",
    "moved_numbers",
    "dataset_table",
    "format_table",
    "read_json",
    "write_json",
    "zero_filled_example",
    "zero_filled_metrics",
    "zero_filled_split",
]
