"""Running the four reconstructors on a split and tabulating their metrics.

The models are ``zero_filled`` (|F^-1 y|), ``resunetpp``, ``irim`` (supervised) and
``diffusion`` (the DDPM prior with the projection sampler).  All take ``(y, mask)``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import metrics
from .analysis import read_json, write_json
from .checkpoints import atomic_write_bytes
from .data import MRIDataset, Split, dataset_fingerprint
from .models import MODEL_LABELS
from .models.base import ZeroFilled
from .models.ddpm import DiffusionReconstructor
from .models.tv import TVReconstructor, choose_lambda
from .paths import run_dir
from .physics import equispaced_mask, fft2c, undersample
from .profiles import Profile, progress_disabled
from .robustness import spread_ids
from .train import load_or_train

MODELS = ("zero_filled", "resunetpp", "irim", "diffusion")
LABELS = MODEL_LABELS  # the one table of display names (mripkg.models)


def build_reconstructors(
    profile: Profile, dataset: MRIDataset | None = None, retrain: bool = False
) -> tuple[dict[str, nn.Module], dict[str, dict], dict[str, dict]]:
    """All four reconstructors of a profile, from shipped weights or trained here.

    Returns ``(models, checkpoint metadata, training histories)``, keyed by model name.
    """
    models: dict[str, nn.Module] = {"zero_filled": ZeroFilled()}
    metas: dict[str, dict] = {"zero_filled": {}}
    hists: dict[str, dict] = {"zero_filled": {}}
    for name in ("resunetpp", "irim", "ddpm"):
        net, meta, hist = load_or_train(name, profile, dataset, retrain=retrain)
        key = "diffusion" if name == "ddpm" else name
        if name == "ddpm":
            net = DiffusionReconstructor.from_config(net, profile.ddpm, seed=profile.seed)
        models[key], metas[key], hists[key] = net.eval(), meta, hist
    return models, metas, hists


def tv_lambda_path(profile: Profile) -> Path:
    """Where :func:`build_tv` keeps its validation search: ``runs/<profile>/tv_lambda.json``."""
    return run_dir(profile.name) / "tv_lambda.json"


def build_tv(profile: Profile, dataset: MRIDataset) -> tuple[TVReconstructor, dict[str, Any]]:
    """The TV reconstructor of a profile, its weight chosen on validation slices.

    The grid ``profile.tv.lam_grid`` is searched on ``profile.tv.val_slices`` validation slices
    (spread evenly) with the profile's iterations (:func:`mripkg.models.tv.choose_lambda`);
    the result goes to ``runs/<profile>/tv_lambda.json`` and is reused while the settings and
    the validation images are the same (a changed setting or dataset redoes the search).
    Returns ``(model, search record)``; the record's ``sha256`` identifies the model (weight,
    iterations, step ratio) as a weights hash does a network's (:func:`mripkg.robustness.model_id`).
    """
    cfg = profile.tv
    val = dataset["val"]
    ids = spread_ids(len(val), cfg.val_slices)
    key = {
        "iters": cfg.iters,
        "step_ratio": cfg.step_ratio,
        "lams": [float(v) for v in cfg.lam_grid],
        "val_slice_ids": ids,
        "dataset": dataset_fingerprint(dataset),
    }
    path = tv_lambda_path(profile)
    rec = read_json(path) if path.is_file() else None
    if rec is None or rec.get("key") != key:
        mask = equispaced_mask(profile.image_size)
        rec = choose_lambda(val.images[ids], mask, cfg.lam_grid, cfg.iters, cfg.step_ratio)
        rec["key"] = key
        write_json(path, rec)
    # the model's identity for the attack cache (robustness.model_id), like a weights hash
    # (solver v2: finite gradients where the image gradient is zero; v1 attacks gave NaN)
    ident = {"model": "tv", "v": 2, "lam": rec["lam"], "iters": cfg.iters, "r": cfg.step_ratio}
    rec["sha256"] = hashlib.sha256(json.dumps(ident).encode()).hexdigest()
    return TVReconstructor(rec["lam"], cfg.iters, cfg.step_ratio).eval(), rec


def measure(images: Tensor, mask: Tensor) -> Tensor:
    """``y = M F x`` for clean images ``[B, 1, H, W]``."""
    return undersample(fft2c(images), mask)


@torch.no_grad()
def reconstruct(
    model: nn.Module,
    y: Tensor,
    mask: Tensor,
    slice_ids: Sequence[int] | None = None,
    batch_size: int = 8,
    seed: int | None = None,
    sample: int = 0,
    desc: str | None = None,
) -> Tensor:
    """Reconstruct a stack of measurements ``y [N, 1, H, W]`` in batches -> ``[N, 1, H, W]``.

    For the diffusion model, ``slice_ids`` (default ``0..N-1``), ``seed`` and ``sample`` pick
    the sampler noise of each slice, so results do not depend on the batching.
    """
    n = y.shape[0]
    ids = list(range(n)) if slice_ids is None else list(slice_ids)
    outs = []
    rng = range(0, n, batch_size)
    for i in tqdm(rng, desc=desc, disable=progress_disabled() or desc is None):
        yb = y[i : i + batch_size]
        if isinstance(model, DiffusionReconstructor):
            outs.append(
                model.reconstruct(
                    yb, mask, seed=seed, slice_ids=ids[i : i + batch_size], sample=sample
                )
            )
        else:
            outs.append(model(yb, mask))
    return torch.cat(outs)


def per_slice_metrics(x: Tensor, split: Split) -> dict[str, list[float]]:
    """PSNR / SSIM (paper convention and inside the head mask), NMSE and the fastMRI-convention
    PSNR / SSIM of reconstructions ``x`` against the split's ground truth, one value per slice."""
    m = metrics.all_metrics(x, split.images, split.masks)
    return {k: [float(v) for v in t] for k, t in m.items()}


def summarize(per_slice: dict[str, list[float]]) -> dict[str, float]:
    """Mean and SD over slices in the keys of ``metrics_clean.json``."""
    out: dict[str, float] = {}
    for key in ("psnr", "ssim", "ssim_head", "psnr_head", "nmse", "psnr_fastmri", "ssim_fastmri"):
        if key in per_slice:
            mean, sd = metrics.summarize(per_slice[key])
            out[f"{key}_mean"], out[f"{key}_sd"] = mean, sd
    return out


def evaluate_split(
    models: dict[str, nn.Module],
    split: Split,
    profile: Profile,
    batch_size: int = 8,
) -> tuple[dict[str, Tensor], dict[str, dict[str, list[float]]]]:
    """Reconstruct a split with every model; returns ``(images, per-slice metrics)``."""
    mask = equispaced_mask(profile.image_size)
    y = measure(split.images, mask)
    ids = list(range(len(split)))
    recs, table = {}, {}
    for name, model in models.items():
        recs[name] = reconstruct(model, y, mask, ids, batch_size, desc=f"{split.name}: {name}")
        table[name] = per_slice_metrics(recs[name], split)
    return recs, table


def seed_spread(
    model: DiffusionReconstructor,
    split: Split,
    profile: Profile,
    seeds: Sequence[int],
    batch_size: int = 8,
    known: dict[int, Tensor] | None = None,
) -> dict[str, Any]:
    """Posterior spread of the diffusion reconstruction across sampler seeds: PSNR per seed,
    the mean over slices of the per-slice SD across seeds, and the pixel RMS between samples.
    ``known`` maps seeds to reconstructions already made (slice ids ``0..N-1``)."""
    mask = equispaced_mask(profile.image_size)
    y = measure(split.images, mask)
    known = known or {}
    recs = [
        known[s] if s in known else reconstruct(model, y, mask, None, batch_size, seed=s)
        for s in seeds
    ]
    ps = torch.stack([metrics.psnr(r, split.images) for r in recs])  # [S, N]
    ss = torch.stack([metrics.ssim(r, split.images) for r in recs])
    stack = torch.stack(recs)  # [S, N, 1, H, W]
    rms = float(stack.std(dim=0, unbiased=len(seeds) > 1).pow(2).mean().sqrt())
    return {
        "seeds": list(seeds),
        "psnr_mean_per_seed": [float(v) for v in ps.mean(1)],
        "ssim_mean_per_seed": [float(v) for v in ss.mean(1)],
        "psnr_sd_across_seeds": float(ps.std(0).mean()) if len(seeds) > 1 else 0.0,
        "ssim_sd_across_seeds": float(ss.std(0).mean()) if len(seeds) > 1 else 0.0,
        "pixel_rms_across_seeds": rms,
    }


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Atomically write a list of flat dicts as CSV (columns from the first row)."""
    if not rows:
        raise ValueError(f"{path}: no rows to write")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def per_slice_rows(split: Split, table: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """Flatten ``{model: {metric: [per slice]}}`` into CSV rows (one per model and slice)."""
    rows = []
    for model, vals in table.items():
        for i in range(len(split)):
            row: dict[str, Any] = {
                "split": split.name,
                "model": model,
                "slice": i,
                "subject": split.subjects[i],
                "z": split.slice_index[i],
            }
            row.update({k: round(v[i], 6) for k, v in vals.items()})
            rows.append(row)
    return rows


def format_table(summary: dict[str, dict[str, float]], title: str = "") -> str:
    """A markdown table of the summary (conventions named in the header)."""
    head = (
        "| model | PSNR dB (paper) | SSIM (paper) | SSIM (head) | PSNR dB (head) | NMSE |\n"
        "|---|---|---|---|---|---|\n"
    )
    lines = [f"**{title}**\n" if title else "", head]
    for m, s in summary.items():
        lines.append(
            f"| {LABELS.get(m, m)} | {s['psnr_mean']:.2f} ± {s['psnr_sd']:.2f} | "
            f"{s['ssim_mean']:.3f} ± {s['ssim_sd']:.3f} | {s['ssim_head_mean']:.3f} | "
            f"{s['psnr_head_mean']:.2f} | {s['nmse_mean']:.4f} |\n"
        )
    return "".join(lines)


# --------------------------------------------------------------------------------------------
# out of domain: where the shipped models stop working

#: Brightness of the outlier voxel of the stress test, in units of the volume's maximum: min-max
#: normalisation then squeezes every slice into about [0, 1 / OUTLIER_FACTOR].
OUTLIER_FACTOR = 4.0
#: Intensity-scale stress: the normalised test images multiplied by this factor.
SCALE_FACTOR = 0.5


def out_of_domain_splits(profile: Profile) -> dict[str, tuple[str, Split]]:
    """The out-of-domain test conditions, all on the ``test`` slices of Colin27 (same axial
    positions; the same head masks, except with the skull, whose masks include it):
    ``{key: (description, split)}``.

    * ``test`` / ``test_robust``: skull-stripped, min-max (as in training) / robust percentile
      normalisation (:func:`mripkg.data.normalise_volume`);
    * ``scale_0.5``: the normalised images times :data:`SCALE_FACTOR`;
    * ``outlier`` / ``outlier_robust``: one voxel of an unused slice at :data:`OUTLIER_FACTOR`
      times the volume's maximum, then min-max / robust normalisation;
    * ``skull`` / ``skull_robust``: the same brain with its skull (``ch2``, the ``test_skull``
      split), min-max / robust.
    """
    from .data import embedded_path, load_volume, volume_split

    cfg = profile.data
    brain, vox = load_volume(embedded_path("colin27"))
    head, hvox = load_volume(embedded_path("colin27_skull"))
    base = volume_split("test", brain, vox, cfg, "colin27")
    z = list(base.slice_index)
    f = OUTLIER_FACTOR

    def colin(**kw: Any) -> Split:
        return volume_split("test", brain, vox, cfg, "colin27", z_index=z, **kw)

    def skull(**kw: Any) -> Split:
        return volume_split("test_skull", head, hvox, cfg, "colin27_skull", z_index=z, **kw)

    return {
        "test": ("skull-stripped, min-max (as trained)", base),
        "test_robust": ("skull-stripped, robust percentiles", colin(normalise="robust")),
        "scale_0.5": (f"skull-stripped, intensity x {SCALE_FACTOR:g}", colin(scale=SCALE_FACTOR)),
        "outlier": (f"one outlier voxel ({f:g} x max), min-max", colin(outlier=f)),
        "outlier_robust": (
            f"one outlier voxel ({f:g} x max), robust percentiles",
            colin(outlier=f, normalise="robust"),
        ),
        "skull": ("with skull, min-max", skull()),
        "skull_robust": ("with skull, robust percentiles", skull(normalise="robust")),
    }


def out_of_domain_table(
    models: dict[str, nn.Module],
    profile: Profile,
    *,
    diffusion_slices: int = 4,
    cache_dir: str | os.PathLike | None = None,
    weights_id: str = "",
    batch_size: int = 8,
    progress: bool | None = None,
) -> dict[str, Any]:
    """PSNR / SSIM (paper convention) of every model under each condition of
    :func:`out_of_domain_splits`.

    The fast models reconstruct every test slice; the diffusion model (if in ``models``) only
    ``diffusion_slices`` of them, evenly spread, through :class:`mripkg.robustness.Target`
    (cached in ``cache_dir``, e.g. ``runs/<profile>/recons``; ``weights_id`` names its weights in
    the cache key); for a like-for-like comparison every model is also scored on those slices
    (``*_sub`` keys).  Returns ``{"rows": [...], "diffusion": {...}}``: one row per condition
    with ``{model}_psnr`` / ``{model}_ssim`` means (and SDs over slices), and the diffusion
    model's slice count, reconstructions computed (not from the cache) and wall time in s.
    """
    from .robustness import ReconCache, Target, spread_ids

    mask = equispaced_mask(profile.image_size)
    conditions = out_of_domain_splits(profile)
    cache = ReconCache(cache_dir) if cache_dir is not None else None
    rows: list[dict[str, Any]] = []
    diff_info = {"slices": 0, "computed": 0, "seconds": 0.0}
    bar = tqdm(conditions.items(), desc="out of domain", disable=progress_disabled(progress))
    for key, (label, split) in bar:
        y = measure(split.images, mask)
        sub = spread_ids(len(split), diffusion_slices)
        row: dict[str, Any] = {"condition": key, "description": label, "slices": len(split)}
        for name, model in models.items():
            if isinstance(model, DiffusionReconstructor):
                target = Target(
                    name, model, mask, batch_size=batch_size, weights_id=weights_id, cache=cache
                )
                t0 = time.perf_counter()
                before = target.computed
                x = target(y[sub], sub)
                diff_info["seconds"] += time.perf_counter() - t0
                diff_info["computed"] += target.computed - before
                diff_info["slices"] = len(sub)
                ref, xs = split.images[sub], x
            else:
                x = reconstruct(model, y, mask, None, batch_size)
                ref, xs = split.images, x
                ps = metrics.psnr(x[sub], split.images[sub])
                row[f"{name}_psnr_sub"] = float(ps.mean())
            ps, ss = metrics.psnr(xs, ref), metrics.ssim(xs, ref)
            row[f"{name}_psnr"], row[f"{name}_psnr_sd"] = metrics.summarize(ps)
            row[f"{name}_ssim"] = float(ss.mean())
            if isinstance(model, DiffusionReconstructor):
                row[f"{name}_psnr_sub"] = row[f"{name}_psnr"]
        rows.append(row)
    diff_info["seconds"] = round(diff_info["seconds"], 1)
    return {"rows": rows, "diffusion": diff_info}


def format_out_of_domain(result: dict[str, Any], models: Sequence[str]) -> str:
    """Markdown table of :func:`out_of_domain_table`: PSNR dB / SSIM per model and condition
    (the diffusion model on its subset of slices, named in the header)."""
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
    return "\n".join(lines)


def out_of_domain_summary(result: dict[str, Any]) -> str:
    """Plain sentences: for each learned model, the conditions where it is no better than
    zero-filled on the same slices (PSNR), and its loss against the in-domain ``test`` row."""
    rows = {r["condition"]: r for r in result["rows"]}
    base = rows["test"]
    out = []
    for m in ("resunetpp", "irim", "diffusion"):
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
