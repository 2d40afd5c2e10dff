"""Out-of-domain test: the reconstructors on slices unlike the training data.

Stage: experiments.  Receives a profile, the reconstructors and their caches; hands on the
result dict that notebook 07 and the README tabulate.
"""

from __future__ import annotations

import os
import time
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from .. import metrics
from ..data import Split
from ..evaluation.clean import measure, reconstruct
from ..models.ddpm import DiffusionReconstructor
from ..physics import equispaced_mask
from ..profiles import Profile, progress_disabled

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
    from ..data import embedded_path, load_volume, volume_split

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
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """PSNR / SSIM (paper convention) of every model under each condition of
    :func:`out_of_domain_splits`.

    The conditions are made from the embedded Colin27 brain (with and without its skull);
    ``"data"`` in the result names them.  With a user folder (``data_dir`` not empty) nothing
    is run: the result is ``{"data": ..., "skipped": reason}``, so that a run on your data never
    reports the embedded brain's numbers as yours.

    The fast models reconstruct every test slice; the diffusion model (if in ``models``) only
    ``diffusion_slices`` of them, evenly spread, through :class:`mripkg.robustness.Target`
    (cached in ``cache_dir``, e.g. ``runs/<profile>/recons``; ``weights_id`` names its weights in
    the cache key); for a like-for-like comparison every model is also scored on those slices
    (``*_sub`` keys).  Returns ``{"rows": [...], "diffusion": {...}}``: one row per condition
    with ``{model}_psnr`` / ``{model}_ssim`` means (and SDs over slices), and the diffusion
    model's slice count, reconstructions computed (not from the cache) and wall time in s.
    """
    from ..evaluation.selection import spread_ids
    from ..evaluation.targets import ReconCache, Target

    if data_dir is not None and str(data_dir) != "":
        return {
            "data": f"your folder {data_dir}",
            "skipped": (
                f"Out-of-domain section skipped: data_dir is set ({data_dir}), and its conditions "
                "(skull, scaling, an outlier voxel) are built from the embedded Colin27 brain, "
                "not from your volumes; run without data_dir to see them."
            ),
        }
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
    n = len(next(iter(conditions.values()))[1])
    return {"data": DATA_LABEL.format(n=n), "rows": rows, "diffusion": diff_info}


#: what the out-of-domain conditions are made from (the result's ``"data"``)
DATA_LABEL = "the embedded Colin27 brain (ch2bet, skull-stripped; ch2, with skull), {n} test slices"
