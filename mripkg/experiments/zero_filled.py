"""What notebook 01 runs: the zero-filled baseline on both test sets, its result file and the
notebook's checks.

Stage: experiments.  Receives a profile, the data set and the mask; hands on the zero-filled
metrics (``{test set: metrics}``) and ``runs/<profile>/metrics_zero_filled.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import io
from ..data import MRIDataset, dataset_fingerprint
from ..evaluation import clean
from ..paths import run_dir
from ..profiles import Profile

#: the two test sets of notebook 01, in the order of its table and result file
TEST_SETS = ("test", "test_id")
#: the zero-filled metrics notebook 01 tabulates (paper convention and inside the head mask)
METRICS = ("psnr", "ssim", "psnr_head", "ssim_head")


def zero_filled_metrics(ds: MRIDataset, mask: torch.Tensor) -> dict[str, dict[str, object]]:
    """:func:`mripkg.evaluation.clean.zero_filled_metrics` of each test set
    (:data:`TEST_SETS`); ``mask``: the ``[W]`` column mask."""
    return {name: clean.zero_filled_metrics(ds[name], mask) for name in TEST_SETS}


def result_path(profile: Profile) -> Path:
    """``runs/<profile>/metrics_zero_filled.json``."""
    return run_dir(profile.name) / "metrics_zero_filled.json"


def write_metrics(
    profile: Profile, ds: MRIDataset, mask: torch.Tensor, zf: dict[str, dict[str, object]]
) -> Path:
    """Write ``metrics_zero_filled.json`` (profile, image size in px, data source and
    fingerprint, the mask, the metric conventions, then ``zf``); returns its path."""
    cols = torch.nonzero(mask).flatten().tolist()
    path = result_path(profile)
    io.write_json(
        path,
        {
            "profile": profile.name,
            "image_size": profile.image_size,
            "data": ds.source,
            "dataset_fingerprint": dataset_fingerprint(ds),
            "mask": {
                "kind": "equispaced",
                "acceleration": 8,
                "center_fraction": 0.032,
                "n_lines": len(cols),
                "columns": cols,
            },
            "conventions": clean.METRIC_CONVENTIONS,
            **zf,
        },
    )
    return path


def check_outputs(
    profile: Profile, mask: torch.Tensor, fig_paths: Sequence[Path], json_path: Path
) -> None:
    """Notebook 01's closing checks (``AssertionError`` naming the failure): the figure as PNG
    and PDF, finite metrics for both test sets with 0 < SSIM <= 1, and ``n / 8`` mask lines."""
    assert len(fig_paths) == 2 and {p.suffix for p in fig_paths} == {".png", ".pdf"}
    for p in fig_paths:
        assert p.is_file() and p.stat().st_size > 0, p
    saved = io.read_json(json_path)
    assert isinstance(saved, dict)
    assert io.all_finite(saved), "non-finite values in the metrics JSON"
    for name in TEST_SETS:
        assert saved[name]["n_slices"] > 0
        for k in ("psnr_mean", "ssim_mean", "psnr_head_mean", "ssim_head_mean"):
            assert math.isfinite(saved[name][k]), (name, k)
        assert 0 < saved[name]["ssim_mean"] <= 1
    assert int(mask.sum()) == profile.image_size // 8 == saved["mask"]["n_lines"]


__all__ = [
    "METRICS",
    "TEST_SETS",
    "check_outputs",
    "result_path",
    "write_metrics",
    "zero_filled_metrics",
]
