"""Plain-text and Markdown tables of result dictionaries.

Stage: report.  Receives summaries (dicts of numbers) from evaluation/ and experiments/;
hands on strings for notebooks and the README.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..data import MRIDataset
from ..models import LABELS, LEARNED


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
        return str(v).replace("|", "\\|")  # a "|" inside a cell would split it

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


def clean_table(summary: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    """Markdown table of clean metrics per model (:func:`format_table`; the conventions are
    named in the header), under a bold ``title`` when one is given."""
    rows = [
        {
            "model": LABELS.get(m, m),
            "PSNR dB (paper)": f"{s['psnr_mean']:.2f} ± {s['psnr_sd']:.2f}",
            "SSIM (paper)": f"{s['ssim_mean']:.3f} ± {s['ssim_sd']:.3f}",
            "SSIM (head)": f"{s['ssim_head_mean']:.3f}",
            "PSNR dB (head)": f"{s['psnr_head_mean']:.2f}",
            "NMSE": f"{s['nmse_mean']:.4f}",
        }
        for m, s in summary.items()
    ]
    return (f"**{title}**\n\n" if title else "") + format_table(rows)


def format_out_of_domain(result: dict[str, Any], models: Sequence[str]) -> str:
    """Markdown table of :func:`out_of_domain_table`: PSNR dB / SSIM per model and condition
    (the diffusion model on its subset of slices, named in the header), after a line naming
    the data when the result does (``"data"``); a skipped run gives its reason."""
    if "skipped" in result:
        return str(result["skipped"])
    n_diff = result["diffusion"]["slices"]
    head = ["condition"] + [
        f"{LABELS.get(m, m)}" + (f" ({n_diff} slices)" if m == "diffusion" else "") for m in models
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["description"]]
        for m in models:
            cells.append(f"{r[f'{m}_psnr']:.2f} / {r[f'{m}_ssim']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("data"):
        lines = [f"Data: {result['data']}.", "", *lines]
    return "\n".join(lines)


def out_of_domain_summary(result: dict[str, Any]) -> str:
    """Plain sentences: for each learned model, the conditions where it is no better than
    zero-filled on the same slices (PSNR), and its loss against the in-domain ``test`` row."""
    rows = {r["condition"]: r for r in result["rows"]}
    base = rows["test"]
    out = []
    for m in LEARNED:
        if f"{m}_psnr_sub" not in base:
            continue
        fails = [
            r["description"]
            for r in result["rows"]
            if r[f"{m}_psnr_sub"] <= r["zero_filled_psnr_sub"] + 0.5
        ]
        drops = ", ".join(
            f"{r['condition']} {r[f'{m}_psnr_sub'] - base[f'{m}_psnr_sub']:+.2f} dB"
            for r in result["rows"]
            if r["condition"] != "test"
        )
        verdict = (
            "within 0.5 dB of zero-filled or below under: " + "; ".join(fails)
            if fails
            else "above zero-filled (by more than 0.5 dB) under every condition"
        )
        out.append(f"* {LABELS[m]}: {verdict}. Change against `test`: {drops}.")
    return "\n".join(out)


__all__ = [
    "clean_table",
    "clean_tables",
    "dataset_table",
    "format_table",
    "kspace_energy",
    "split_ranges",
    "split_subjects",
    "training_table",
    "zero_filled_summary",
    "zero_filled_table",
]


def markdown(
    table: str | Sequence[Mapping[str, object]] | tuple[str, Sequence[Mapping[str, object]]],
) -> str:
    """Markdown of a table as experiments/ hand it on: rows (:func:`format_table`), a
    ``(caption, rows)`` pair (the caption, a blank line, the table; the caption alone when
    there are no rows) or ready text."""
    if isinstance(table, str):
        return table
    if isinstance(table, tuple):
        caption, rows = table
        return caption + ("\n\n" + format_table(rows) if rows else "")
    return format_table(table)


def show(
    *tables: str | Sequence[Mapping[str, object]] | tuple[str, Sequence[Mapping[str, object]]],
) -> None:
    """Display tables (:func:`markdown`) in a notebook, one after the other."""
    from IPython.display import Markdown, display

    for t in tables:
        display(Markdown(markdown(t)))


# --------------------------------------------------------------------------------------------
# notebook 01: the data and the zero-filled baseline


def split_ranges(ds: MRIDataset) -> str:
    """One line per split: its intensity range and the fraction of pixels inside the head."""
    lines = []
    for name, split in ds.splits.items():
        lo, hi = float(split.images.min()), float(split.images.max())
        head = float(split.masks.float().mean())
        lines.append(
            f"{name:8s} intensity range [{lo:.2f}, {hi:.2f}], head covers {head:.0%} of the pixels"
        )
    return "\n".join(lines)


def split_subjects(ds: MRIDataset, shown: int = 4) -> str:
    """One line per split: its subject count and the first ``shown`` subject ids."""
    lines = []
    for name, split in ds.splits.items():
        ids = split.subject_ids
        more = " ..." if len(ids) > shown else ""
        lines.append(f"{name:8s} {len(ids):3d} subject(s): {', '.join(ids[:shown])}{more}")
    return "\n".join(lines)


def kspace_energy(examples: Mapping[str, Mapping[str, Any]], mask: Any) -> str:
    """One line per example slice (:func:`mripkg.evaluation.clean.zero_filled_example`): the
    fraction of its k-space energy the ``[W]`` column mask keeps, against the fraction of lines."""
    n, n_cols = int(mask.numel()), int(mask.sum())
    lines = []
    for name, ex in examples.items():
        kept = float(ex["y"].abs().pow(2).sum() / ex["kspace"].abs().pow(2).sum())
        lines.append(
            f"{name}: {ex['subject']} slice {ex['slice_index']}, "
            f"mask keeps {kept:.1%} of the k-space energy with {n_cols / n:.1%} of the lines"
        )
    return "\n".join(lines)


#: the zero-filled metrics of notebook 01's table (paper convention and inside the head mask)
ZERO_FILLED_METRICS = ("psnr", "ssim", "psnr_head", "ssim_head")


def zero_filled_table(zf: Mapping[str, Mapping[str, Any]], conventions: Mapping[str, str]) -> str:
    """Notebook 01's table of zero-filled metrics (mean ± SD per test set), followed by the
    convention of each metric (``conventions``: metric name -> sentence)."""
    rows = []
    for name, m in zf.items():
        row: dict[str, object] = {"test set": name, "slices": m["n_slices"]}
        for k in ZERO_FILLED_METRICS:
            digits = 2 if "psnr" in k else 3
            row[k] = f"{m[k + '_mean']:.{digits}f} ± {m[k + '_sd']:.{digits}f}"
        rows.append(row)
    notes = [f"  {k}: {conventions[k]}" for k in ZERO_FILLED_METRICS]
    return "\n".join([format_table(rows), *notes])


def zero_filled_summary(zf: Mapping[str, Mapping[str, Any]], mask: Any) -> str:
    """Notebook 01's summary sentences: zero-filled PSNR / SSIM of each test set (paper
    convention and inside the head) and the mask's acceleration."""
    lines = []
    for name, m in zf.items():
        label = "Colin27 (real, unseen)" if name == "test" else "held-out pseudo-subjects"
        lines.append(
            f"{name} [{label}, {m['n_slices']} slices]: zero-filled PSNR "
            f"{m['psnr_mean']:.2f} ± {m['psnr_sd']:.2f} dB, SSIM {m['ssim_mean']:.3f} ± "
            f"{m['ssim_sd']:.3f} (paper convention); inside the head: PSNR "
            f"{m['psnr_head_mean']:.2f} dB, SSIM {m['ssim_head_mean']:.3f}"
        )
    n, n_cols = int(mask.numel()), int(mask.sum())
    lines.append(f"R = {n // n_cols} mask: {n_cols} of {n} columns")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# notebook 02: the trained models and their clean reconstructions


def training_table(models: Mapping[str, Any], metas: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of the trained models (those with a checkpoint sidecar): parameters,
    training steps, CPU minutes and the validation PSNR dB / SSIM of the checkpoint kept."""
    rows = []
    for name, meta in metas.items():
        if not meta:
            continue
        rows.append(
            {
                "model": LABELS[name],
                "params": sum(p.numel() for p in models[name].parameters()),
                "train steps": meta.get("step"),
                "CPU min": round(meta.get("cpu_time_s", 0) / 60, 1),
                "val PSNR": round(meta.get("val_psnr", float("nan")), 2),
                "val SSIM": round(meta.get("val_ssim", float("nan")), 3),
            }
        )
    return format_table(rows)


def clean_tables(results: Mapping[str, Mapping[str, Any]], ds: MRIDataset) -> list[str]:
    """One :func:`clean_table` per test set of notebook 02's results, titled with its slice
    count."""
    return [
        clean_table(r["summary"], f"{name} ({len(ds[name])} slices)") for name, r in results.items()
    ]
