"""Running reconstructors over a split and tabulating the clean metrics."""

import csv

import pytest
import torch

from mripkg.data import load_dataset
from mripkg.evaluation.clean import (
    evaluate_split,
    measure,
    per_slice_rows,
    reconstruct,
    seed_spread,
    summarize,
)
from mripkg.io import write_csv
from mripkg.models import ZeroFilled
from mripkg.models.ddpm import DiffusionReconstructor, EpsUNet
from mripkg.physics import equispaced_mask
from mripkg.profiles import SMOKE


@pytest.fixture(scope="module")
def test_split():
    return load_dataset(SMOKE)["test"]


class _Oracle(torch.nn.Module):
    """Returns the ground truth it was given: the metrics must say so."""

    def __init__(self, x):
        super().__init__()
        self.x = x

    def forward(self, y, mask):
        return self.x[: y.shape[0]]


def test_evaluate_split_tabulates_every_model_and_slice(test_split):
    models = {"zero_filled": ZeroFilled(), "oracle": _Oracle(test_split.images)}
    recs, table = evaluate_split(models, test_split, SMOKE, batch_size=len(test_split))
    assert set(recs) == set(models) and recs["oracle"].shape == test_split.images.shape
    assert len(table["zero_filled"]["psnr"]) == len(test_split)
    assert all(v > 0.999 for v in table["oracle"]["ssim"])
    zf, orc = summarize(table["zero_filled"]), summarize(table["oracle"])
    for key in ("psnr_mean", "psnr_sd", "ssim_mean", "ssim_sd", "ssim_head_mean", "nmse_mean"):
        assert key in zf
    assert orc["psnr_mean"] > zf["psnr_mean"] + 20 and orc["nmse_mean"] < 1e-10


def test_per_slice_csv_is_written_atomically(tmp_path, test_split):
    _, table = evaluate_split({"zero_filled": ZeroFilled()}, test_split, SMOKE)
    path = write_csv(tmp_path / "m.csv", per_slice_rows(test_split, table))
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(test_split) and rows[0]["model"] == "zero_filled"
    assert float(rows[0]["psnr"]) == pytest.approx(table["zero_filled"]["psnr"][0], abs=1e-5)
    # no temporary left; the machine fingerprint beside the CSV
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "m.csv.machine.json"]
    with pytest.raises(ValueError, match="no rows"):
        write_csv(tmp_path / "empty.csv", [])


def test_diffusion_reconstruction_does_not_depend_on_batching(test_split):
    torch.manual_seed(0)
    net = EpsUNet(SMOKE.ddpm).eval()
    for p in net.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    model = DiffusionReconstructor(net, steps=2, seed=3)
    mask = equispaced_mask(SMOKE.image_size)
    y = measure(test_split.images, mask)
    a = reconstruct(model, y, mask, batch_size=1)
    b = reconstruct(model, y, mask, batch_size=len(test_split))
    # the same noise per slice whatever the batch: equal up to float rounding of the batched
    # convolutions (1e-5 to 4e-5 here, depending on the CPU and thread count) ...
    assert torch.allclose(a, b, atol=2e-4)
    # ... which is far below what other noise changes
    other = DiffusionReconstructor(net, steps=2, seed=4)
    assert float((reconstruct(other, y, mask, batch_size=1) - a).abs().max()) > 1e-2
    spread = seed_spread(model, test_split, SMOKE, [3, 4], known={3: b})
    assert spread["pixel_rms_across_seeds"] > 0 and len(spread["psnr_mean_per_seed"]) == 2


def test_out_of_domain_table(tmp_path):
    from mripkg.experiments.out_of_domain import out_of_domain_splits, out_of_domain_table
    from mripkg.report.tables import format_out_of_domain, out_of_domain_summary

    splits = out_of_domain_splits(SMOKE)
    test = load_dataset(SMOKE)["test"]
    assert torch.equal(splits["test"][1].images, test.images)  # the in-domain row is `test`
    for key, (_, split) in splits.items():
        assert split.slice_index == test.slice_index
        assert torch.equal(split.masks, test.masks) != key.startswith("skull")  # skull: own
    # one outlier voxel squeezes min-max slices to [0, 1/4]; robust scaling undoes it
    assert float(splits["outlier"][1].images.max()) <= 0.25 + 1e-6
    robust, fixed = splits["test_robust"][1].images, splits["outlier_robust"][1].images
    assert torch.allclose(robust, fixed, atol=0.01)
    assert float(splits["skull"][1].images[~test.masks].mean()) > 0.02  # the skull is there

    torch.manual_seed(0)
    net = EpsUNet(SMOKE.ddpm).eval()
    models = {"zero_filled": ZeroFilled(), "diffusion": DiffusionReconstructor(net, steps=2)}
    kw = dict(diffusion_slices=2, cache_dir=tmp_path, weights_id="w", progress=False)
    res = out_of_domain_table(models, SMOKE, **kw)
    rows = {r["condition"]: r for r in res["rows"]}
    assert len(rows) == 7 and res["diffusion"]["slices"] == 2
    assert res["diffusion"]["computed"] == 2 * 7
    # zero-filled is linear and the metric normalises each image: a pure intensity scale
    # cannot change its PSNR (a model that is not scale-equivariant can lose)
    assert rows["scale_0.5"]["zero_filled_psnr"] == pytest.approx(
        rows["test"]["zero_filled_psnr"], abs=1e-3
    )
    again = out_of_domain_table(models, SMOKE, **kw)
    assert again["diffusion"]["computed"] == 0  # from the reconstruction cache
    assert again["rows"] == res["rows"]
    table = format_out_of_domain(res, list(models))
    assert table.count("\n") == 10 and "diffusion (2 slices)" in table
    assert table.startswith("Data: the embedded Colin27")
    assert "diffusion" in out_of_domain_summary(res)


def test_tv_search_saved_under_the_old_key_still_reads(monkeypatch, tmp_path):
    """A ``tv_lambda.json`` whose key is the old scheme (the settings object itself) is reused
    through the adapter, not searched again; a new search stores mripkg.io.cache_key."""
    from mripkg.data import dataset_fingerprint
    from mripkg.evaluation import clean
    from mripkg.evaluation.selection import spread_ids
    from mripkg.io import cache_key, read_json, write_json

    ds = load_dataset(SMOKE)
    cfg = SMOKE.tv
    old_key = {
        "iters": cfg.iters,
        "step_ratio": cfg.step_ratio,
        "lams": [float(v) for v in cfg.lam_grid],
        "val_slice_ids": spread_ids(len(ds["val"]), cfg.val_slices),
        "dataset": dataset_fingerprint(ds),
    }
    path = tmp_path / "tv_lambda.json"
    monkeypatch.setattr(clean, "tv_lambda_path", lambda profile: path)
    write_json(path, {"lam": 0.0123, "key": old_key})

    def no_search(*args, **kwargs):
        raise AssertionError("the old search record was not read")

    monkeypatch.setattr(clean, "choose_lambda", no_search)
    model, rec = clean.build_tv(SMOKE, ds)
    assert model.lam == 0.0123 and rec["key"] == old_key
    # another setting searches again and stores the new key
    monkeypatch.setattr(clean, "choose_lambda", lambda *a, **k: {"lam": 0.05})
    write_json(path, {"lam": 0.0123, "key": {**old_key, "iters": -1}})
    model, rec = clean.build_tv(SMOKE, ds)
    assert model.lam == 0.05 and read_json(path)["key"] == cache_key(old_key)
    # and that record is reused
    monkeypatch.setattr(clean, "choose_lambda", no_search)
    assert clean.build_tv(SMOKE, ds)[0].lam == 0.05
