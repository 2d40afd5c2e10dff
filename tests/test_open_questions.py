"""Tests of mripkg.open_questions (notebook 07: TV and the two diffusion defences) on 32 x 32
discs with a tiny untrained prior (fast, CPU)."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from tiny_models import tiny_diffusion
from torch import Tensor

from mripkg.attacks import control, kspace_attack
from mripkg.evaluation import scoring, selection, summaries, targets
from mripkg.experiments import open_questions
from mripkg.models import MODEL_LABELS, TVReconstructor
from mripkg.models.ddpm import DiffusionReconstructor
from mripkg.physics import equispaced_mask
from mripkg.report import figures

matplotlib.use("Agg")
N = 32


class _Split:
    name = "test"

    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]


def _discs(n: int) -> Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    out = torch.zeros(n, 1, N, N)
    for i in range(n):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=g) * 0.6 + 0.2) * N
            r = float(torch.rand(1, generator=g)) * N / 4 + 3
            out[i, 0][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = float(torch.rand(1, generator=g))
    return out


@pytest.fixture(scope="module")
def mask() -> Tensor:
    return equispaced_mask(N, 4, 0.08)


@pytest.fixture(scope="module")
def data(mask) -> selection.SliceSet:
    return selection.slice_set(_Split(_discs(4)), mask, n=4)


@pytest.fixture(scope="module")
def diff() -> DiffusionReconstructor:
    return tiny_diffusion(N, steps=2, seed=3)


def test_subset_slices(data) -> None:
    sub = open_questions.subset_slices(data, 2)
    assert sub.slice_ids == [0, 3] and torch.equal(sub.images, data.images[[0, 3]])


def test_mean_target_averages_cached_draws(data, diff, tmp_path) -> None:
    cache = targets.ReconCache(tmp_path)
    base = targets.Target("diffusion", diff, data.mask, cache=cache)
    mean = open_questions.MeanTarget("diffusion_mean", base, 3)
    assert mean.seed == base.seed and len(mean.parts) == 3
    assert len(mean.pending_keys(data.y, data.slice_ids)) == 3 * len(data)
    out = mean(data.y, data.slice_ids)
    draws = [
        diff.reconstruct(data.y, data.mask, slice_ids=data.slice_ids, sample=j) for j in (0, 1, 2)
    ]
    assert torch.allclose(out, torch.stack(draws).mean(0), atol=1e-6)
    # draw 0 is the base target's own reconstruction, from the shared disk cache
    assert mean.pending_keys(data.y, data.slice_ids) == set()
    assert base.pending(data.y, data.slice_ids) == 0
    assert not torch.allclose(out, draws[0], atol=1e-4)
    with pytest.raises(ValueError, match="deterministic"):
        open_questions.MeanTarget("m", targets.Target("tv", TVReconstructor(0.01), data.mask), 2)
    with pytest.raises(ValueError, match="n_samples"):
        open_questions.MeanTarget("m", base, 0)


def test_tv_diffusion_target(data, diff, tmp_path) -> None:
    base = targets.Target("diffusion", diff, data.mask, cache=targets.ReconCache(tmp_path))
    tvd = open_questions.tv_diffusion_target(base, 0.1, 5)
    assert tvd.name == "tv_diffusion" and tvd.seed == base.seed and "tv=0.1" in tvd.tag
    assert tvd.model.net is diff.net and diff.tv_weight == 0.0  # the base model is untouched
    plain, smooth = base(data.y, data.slice_ids), tvd(data.y, data.slice_ids)
    assert not torch.allclose(plain, smooth)
    with pytest.raises(ValueError, match="tv_weight"):
        open_questions.tv_diffusion_target(base, 0.0)
    with pytest.raises(ValueError, match="not a diffusion"):
        open_questions.tv_diffusion_target(
            targets.Target("tv", TVReconstructor(0.01), data.mask), 0.1
        )


def test_drop_table_rows_and_figure(data) -> None:
    import matplotlib.pyplot as plt

    eps = (0.0, 0.04, 0.08)
    tv = TVReconstructor(0.01, iters=10)
    res = kspace_attack(
        tv,
        data.kspace,
        data.mask,
        eps,
        steps=2,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    ctl = control.budget_controls(data.kspace, data.mask, data.slice_ids, eps, seed=0)
    target = targets.Target("tv", tv, data.mask)
    evals = {("tv", "tv"): scoring.evaluate_attack(target, data, res, source="tv", controls=ctl)}
    table = open_questions.drop_table(evals, ["tv", "diffusion"], ["tv"], (0.04, 0.08))
    assert set(table) == {"tv"}  # no evaluation of the diffusion target: left out
    row = table["tv"]
    assert row["n_slices"] == len(data) and set(row["white_box"]) == {"0.04", "0.08"}
    ev = evals[("tv", "tv")]
    assert row["white_box"]["0.08"] == pytest.approx(float(ev.psnr_drop[2].mean()))
    assert row["control"]["0.08"] == pytest.approx(float(ev.psnr_drop_rand[2].mean()))
    assert row["transfer"] == {} and row["amplification"]["0.08"] > 0
    rows = open_questions.table_rows(table, MODEL_LABELS, ["tv"], (0.04, 0.08))
    assert rows[0]["model"] == "TV" and rows[0]["from TV 0.08"] == "-"
    fig = figures.plot_open_questions(
        {"tv": summaries.whitebox_summary(ev)}, table, ["tv"], 0.08, [("gt", data.images[0])]
    )
    assert len(fig.axes) == 3
    plt.close(fig)
