"""Running the four reconstructors on a split and tabulating their metrics.

The models are ``zero_filled`` (|F^-1 y|), ``resunetpp``, ``irim`` (supervised) and
``diffusion`` (the DDPM prior with the projection sampler).  All take ``(y, mask)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import metrics
from ..data import MRIDataset, Split, dataset_fingerprint
from ..io import cache_key, legacy_cache_key, read_json, write_json
from ..models.base import ZeroFilled
from ..models.ddpm import DiffusionReconstructor
from ..models.tv import TVReconstructor, choose_lambda
from ..paths import run_dir
from ..physics import MRIOperator, equispaced_mask, fft2c, undersample, zero_filled
from ..profiles import Profile, progress_disabled
from ..training.train import load_or_train
from .selection import spread_ids


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
    the validation images are the same (a changed setting or dataset redoes the search): its
    ``"key"`` is :func:`mripkg.io.cache_key` of those settings (``"key_fields"``); a file
    written before keeps its old key, the fields themselves, and still reads.
    Returns ``(model, search record)``; the record's ``sha256`` identifies the model (weight,
    iterations, step ratio) as a weights hash does a network's (:func:`mripkg.robustness.model_id`).
    """
    cfg = profile.tv
    val = dataset["val"]
    ids = spread_ids(len(val), cfg.val_slices)
    fields = {
        "iters": cfg.iters,
        "step_ratio": cfg.step_ratio,
        "lams": [float(v) for v in cfg.lam_grid],
        "val_slice_ids": ids,
        "dataset": dataset_fingerprint(dataset),
    }
    path = tv_lambda_path(profile)
    key = cache_key(fields)
    rec = read_json(path) if path.is_file() else None
    if not isinstance(rec, dict) or rec.get("key") not in (
        key,
        legacy_cache_key("tv_lambda", fields),
    ):
        mask = equispaced_mask(profile.image_size)
        rec = choose_lambda(val.images[ids], mask, cfg.lam_grid, cfg.iters, cfg.step_ratio)
        rec["key"], rec["key_fields"] = key, fields
        write_json(path, rec, machine=False)  # a cache, not a result
    # the model's identity for the attack cache (robustness.model_id), like a weights hash
    # (solver v2: finite gradients where the image gradient is zero; v1 attacks gave NaN)
    ident = {"model": "tv", "v": 2, "lam": rec["lam"], "iters": cfg.iters, "r": cfg.step_ratio}
    rec["sha256"] = hashlib.sha256(json.dumps(ident).encode()).hexdigest()
    return TVReconstructor(rec["lam"], cfg.iters, cfg.step_ratio).eval(), rec


def measure(images: Tensor, mask: Tensor) -> Tensor:
    """``y = M F x`` for clean images ``[B, 1, H, W]``."""
    return MRIOperator(mask).A(images)


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


# --------------------------------------------------------------------------------------------
# out of domain: where the shipped models stop working


#: metric name -> convention, written next to every metrics table / JSON file
METRIC_CONVENTIONS: dict[str, str] = {
    "psnr": "paper: each image min-max normalised to [0, 1], data range 1 (torchmetrics)",
    "ssim": "paper: min-max normalised, data range 1, Gaussian 11x11 window, sigma 1.5",
    "psnr_head": "paper normalisation, mean squared error inside the head mask only",
    "ssim_head": "paper normalisation, SSIM map averaged inside the head mask only",
    "psnr_fastmri": "fastMRI: no normalisation, data range = max of the reference",
    "ssim_fastmri": "fastMRI: scikit-image SSIM, 7x7 uniform window, data range = max(ref)",
}


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


__all__ = [
    "METRIC_CONVENTIONS",
    "zero_filled_example",
    "zero_filled_metrics",
    "zero_filled_split",
]
