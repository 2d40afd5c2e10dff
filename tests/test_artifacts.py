"""Tests of mripkg.artifacts: the statistics that decide whether an artifact looks like
Gaussian noise or like a structured change, the blind noise estimate, the AUC, and figure 6."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from mripkg.evaluation import artifacts
from mripkg.report import figures

matplotlib.use("Agg")

N = 64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _disc(n: int = N, radius: float = 0.4) -> torch.Tensor:
    yy, xx = torch.meshgrid(
        torch.linspace(-0.5, 0.5, n), torch.linspace(-0.5, 0.5, n), indexing="ij"
    )
    return ((yy**2 + xx**2) < radius**2).to(torch.float64)[None, None]


def test_white_noise_statistics_match_their_reference_values() -> None:
    region = torch.ones(8, 1, N, N, dtype=torch.bool)
    z = artifacts.gaussian_reference(region, 0.3, generator=_gen())
    st = {k: v.mean().item() for k, v in artifacts.artifact_stats(z, z, region).items()}
    assert st["rms"] == pytest.approx(0.3, rel=0.02)
    assert abs(st["excess_kurtosis"]) < 0.1
    assert abs(st["skewness"]) < 0.05
    assert abs(st["neighbour_corr"]) < 0.03
    assert st["spectral_flatness"] == pytest.approx(artifacts.WHITE_NOISE_FLATNESS, abs=0.02)


def test_structured_artifacts_are_told_apart_from_noise() -> None:
    region = torch.ones(4, 1, N, N, dtype=torch.bool)
    z = artifacts.gaussian_reference(region, 1.0, generator=_gen(1))
    smooth = F.avg_pool2d(z, 7, 1, 3)  # spatially correlated
    sparse = z * (torch.rand(z.shape, generator=_gen(2), dtype=torch.float64) < 0.05)  # heavy tails
    gt = _disc().expand(4, 1, N, N)
    edge = artifacts.gradient_magnitude(gt) * z.sign()  # lives on the disc's boundary
    s_smooth = artifacts.artifact_stats(smooth, gt, region)
    s_sparse = artifacts.artifact_stats(sparse, gt, region)
    s_edge = artifacts.artifact_stats(edge, gt, region)
    s_noise = artifacts.artifact_stats(z, gt, region)
    assert (s_smooth["neighbour_corr"] > 0.7).all()
    assert (s_smooth["spectral_flatness"] < 0.2).all()
    assert (s_sparse["excess_kurtosis"] > 10).all()
    assert (s_edge["edge_corr"] > 0.9).all()
    assert (s_noise["edge_corr"].abs() < 0.1).all()


def test_statistics_are_scale_invariant_and_use_only_the_region() -> None:
    region = _disc().to(torch.bool)
    z = artifacts.gaussian_reference(region, 1.0, generator=_gen(3))
    outside = (~region).to(torch.float64) * 100.0  # huge values outside the head are ignored
    gt = _disc()
    a = artifacts.artifact_stats(z, gt, region)
    b = artifacts.artifact_stats(7.0 * z + outside, gt, region)
    for k in ("skewness", "excess_kurtosis", "neighbour_corr", "edge_corr"):
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-9, abs=1e-12), k
    assert b["rms"].item() == pytest.approx(7.0 * a["rms"].item(), rel=1e-9)


def test_zero_artifact_gives_nan_statistics_not_an_error() -> None:
    region = torch.ones(2, 1, N, N, dtype=torch.bool)
    st = artifacts.artifact_stats(torch.zeros(2, 1, N, N), torch.zeros(2, 1, N, N), region)
    assert st["rms"].eq(0).all()
    assert torch.isnan(st["excess_kurtosis"]).all()
    summary = artifacts.summarize(st)
    assert summary["excess_kurtosis"] is None and summary["n"] == 0


def test_stats_grid_matches_per_eps_calls_and_rows() -> None:
    region = torch.ones(3, 1, N, N, dtype=torch.bool)
    arts = torch.stack(
        [artifacts.gaussian_reference(region, s, generator=_gen(i)) for i, s in enumerate((1, 2))]
    )
    gt = torch.rand(3, 1, N, N, generator=_gen(9), dtype=torch.float64)
    grid = artifacts.stats_grid(arts, gt, region)
    assert grid["rms"].shape == (2, 3)
    direct = artifacts.artifact_stats(arts[1], gt, region)
    torch.testing.assert_close(grid["excess_kurtosis"][1], direct["excess_kurtosis"])
    rows = artifacts.per_slice_rows("x", [0.01, 0.02], grid, [5, 6, 7])
    assert len(rows) == 6 and rows[4]["slice"] == 6 and rows[4]["eps"] == 0.02
    with pytest.raises(ValueError, match="do not match"):
        artifacts.stats_grid(arts, gt[:2], region)


def test_noise_sigma_recovers_added_noise_on_a_smooth_image() -> None:
    gt = _disc()
    smooth = F.avg_pool2d(gt, 5, 1, 2).expand(6, 1, N, N)
    sigmas = torch.tensor([0.0, 0.01, 0.02, 0.05, 0.1, 0.2], dtype=torch.float64)
    z = torch.randn(6, 1, N, N, generator=_gen(4), dtype=torch.float64)
    est = artifacts.noise_sigma(smooth + sigmas.view(-1, 1, 1, 1) * z)
    assert est[0] < 0.005
    torch.testing.assert_close(est[1:], sigmas[1:], rtol=0.15, atol=0.003)


def test_auc_and_detection() -> None:
    assert artifacts.auc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert artifacts.auc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert artifacts.auc([1.0, 2.0], [1.0, 2.0]) == 0.5
    assert artifacts.auc([0.0, 2.0], [1.0]) == 0.5
    smooth = F.avg_pool2d(_disc(), 5, 1, 2).expand(4, 1, N, N)
    noisy = smooth + 0.05 * torch.randn(4, 1, N, N, generator=_gen(5), dtype=torch.float64)
    assert artifacts.detection_auc(smooth, noisy) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        artifacts.auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        artifacts.auc([math.nan], [1.0])


@pytest.mark.parametrize(
    ("shape", "region_shape", "match"),
    [((N, N), (N, N), r"\[N, 1, H, W\]"), ((2, 1, N, N), (1, 1, N, N), "does not match")],
)
def test_bad_shapes_are_refused(shape, region_shape, match) -> None:
    with pytest.raises(ValueError, match=match):
        artifacts.artifact_stats(
            torch.zeros(shape), torch.zeros(shape), torch.ones(region_shape, dtype=torch.bool)
        )


def test_nan_and_tiny_regions_are_refused() -> None:
    region = torch.ones(1, 1, N, N, dtype=torch.bool)
    bad = torch.zeros(1, 1, N, N)
    bad[0, 0, 3, 3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        artifacts.artifact_stats(bad, bad, region)
    tiny = torch.zeros(1, 1, N, N, dtype=torch.bool)
    tiny[..., :2, :2] = True
    with pytest.raises(ValueError, match="at least 16 pixels"):
        artifacts.neighbour_corr(torch.ones(1, 1, N, N), tiny)


def test_standardised_values_are_zero_mean_unit_sd_per_image() -> None:
    region = _disc().to(torch.bool).expand(3, 1, N, N)
    a = artifacts.gaussian_reference(region, torch.tensor([1.0, 5.0, 0.0]), generator=_gen(6))
    v = artifacts.standardised_values(a, region)
    n_in = int(region[0].sum())
    assert v.numel() == 2 * n_in  # the all-zero map is skipped
    assert v[:n_in].mean().abs() < 1e-9 and v[:n_in].std(unbiased=False) == pytest.approx(1.0)


def test_plot_artifacts_builds_every_panel() -> None:
    region = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    z = artifacts.gaussian_reference(region, 1.0, generator=_gen(7))
    row = artifacts.summarize(artifacts.artifact_stats(z, z, region))
    fig = figures.plot_artifacts(
        {"a": z[0, 0], "b": z[1, 0]},
        {"a": artifacts.standardised_values(z, region)},
        {"a": {0.01: row, 0.02: row}},
        map_text={"a": "text"},
        title="t",
    )
    assert len(fig.axes) >= 4 + 4
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_per_eps_helpers_match_the_single_calls() -> None:
    region = torch.ones(3, 1, N, N, dtype=torch.bool)
    smooth = F.avg_pool2d(_disc(), 5, 1, 2).expand(3, 1, N, N)
    noisy = torch.stack(
        [smooth + s * torch.randn(3, 1, N, N, generator=_gen(8)) for s in (0.01, 0.1)]
    )
    keys = ["0.01", "0.02"]
    det = artifacts.detection_by_eps(smooth, noisy, keys)
    assert det == {k: artifacts.detection_auc(smooth, noisy[j]) for j, k in enumerate(keys)}
    grid = artifacts.stats_grid(noisy - smooth[None], smooth, region)
    rows = artifacts.summarize_grid(grid, keys)
    assert rows["0.02"] == artifacts.summarize({k: v[1] for k, v in grid.items()})
    with pytest.raises(ValueError, match="2 rows"):
        artifacts.detection_by_eps(smooth, noisy, ["0.01"])
