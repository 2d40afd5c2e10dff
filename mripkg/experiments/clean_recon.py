"""What notebook 02 runs: the clean (unperturbed) reconstructions of both test sets, the
sampler seeds of the posterior spread, the result files and the notebook's checks.

Stage: experiments.  Receives a profile, the data set and the four reconstructors; hands on
``{test set: {"table": per-slice metrics, "summary": means and SDs}}``, the reconstructions,
and ``runs/<profile>/metrics_clean.json`` + ``metrics_clean_per_slice.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .. import io
from ..data import MRIDataset
from ..evaluation import clean
from ..models import NAMES
from ..paths import figures_dir, run_dir
from ..profiles import Profile

#: the two test sets, in the order of the tables and the result files
TEST_SETS = ("test", "test_id")
#: the figures notebook 02 saves
FIGURES = ("fig2_clean_reconstructions", "fig2_training_curves")


def evaluate_test_sets(
    models: dict[str, nn.Module], ds: MRIDataset, profile: Profile
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Tensor]]]:
    """Every model on each test set (:func:`mripkg.evaluation.clean.evaluate_split`, in the
    order of :data:`TEST_SETS`).  Returns ``(results, recs)``: ``results[split]`` holds
    ``"table"`` (``{model: {metric: [per slice]}}``) and ``"summary"`` (``{model: means and
    SDs}``); ``recs[split][model]``: the reconstructions ``[N, 1, H, W]``."""
    results: dict[str, dict[str, Any]] = {}
    recs: dict[str, dict[str, Tensor]] = {}
    for split_name in TEST_SETS:
        recs[split_name], table = clean.evaluate_split(models, ds[split_name], profile)
        results[split_name] = {
            "table": table,
            "summary": {m: clean.summarize(t) for m, t in table.items()},
        }
    return results, recs


def sampler_seeds(profile: Profile) -> list[int]:
    """The diffusion sampler seeds of the posterior spread: ``profile.seed + k`` for
    ``k < profile.ddpm.n_sampler_seeds``."""
    return [profile.seed + k for k in range(profile.ddpm.n_sampler_seeds)]


def write_metrics(
    profile: Profile,
    ds: MRIDataset,
    results: dict[str, dict[str, Any]],
    spread: dict[str, Any],
    diffusion_sampler: str,
) -> dict[str, Any]:
    """Write ``metrics_clean.json`` (each model's ``test`` summary, then ``test_id``, the seed
    spread, the conventions, the profile name and the sampler) and the per-slice CSV of both
    test sets; returns the JSON's content."""
    out_dir = run_dir(profile.name)
    saved: dict[str, Any] = dict(results["test"]["summary"])
    saved["test_id"] = results["test_id"]["summary"]
    saved["diffusion_seed_spread"] = spread
    saved["conventions"] = clean.METRIC_CONVENTIONS
    saved["profile"] = profile.name
    saved["diffusion_sampler"] = diffusion_sampler
    io.write_json(out_dir / "metrics_clean.json", saved)
    rows: list[dict[str, Any]] = []
    for split_name in TEST_SETS:
        rows += clean.per_slice_rows(ds[split_name], results[split_name]["table"])
    io.write_csv(out_dir / "metrics_clean_per_slice.csv", rows)
    return saved


def check_outputs(profile: Profile) -> Path:
    """Notebook 02's closing checks (``AssertionError`` naming the failure): both figures as
    PNG and PDF, finite clean metrics of the four models on both test sets, a non-empty
    per-slice CSV.  Returns the run folder."""
    out_dir = run_dir(profile.name)
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (figures_dir(profile.name) / f"{name}.{ext}").is_file(), name
    saved = io.read_json(out_dir / "metrics_clean.json")
    assert isinstance(saved, dict)
    keys = ("psnr_mean", "psnr_sd", "ssim_mean", "ssim_sd", "ssim_head_mean", "nmse_mean")
    for model in NAMES:
        for split_summary in (saved[model], saved["test_id"][model]):
            assert all(math.isfinite(split_summary[k]) for k in keys), model
    assert (out_dir / "metrics_clean_per_slice.csv").stat().st_size > 0
    return out_dir


__all__ = [
    "FIGURES",
    "TEST_SETS",
    "check_outputs",
    "evaluate_test_sets",
    "sampler_seeds",
    "write_metrics",
]
