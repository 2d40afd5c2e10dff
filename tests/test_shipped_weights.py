"""The quick profile's shipped weights: integrity, provenance and a quality floor."""

import json

import pytest
import torch

from mripkg import metrics
from mripkg.data import load_dataset
from mripkg.io import sha256_file
from mripkg.models.ddpm import DiffusionReconstructor
from mripkg.paths import shipped_weights_dir
from mripkg.physics import equispaced_mask, fft2c, undersample, zero_filled
from mripkg.profiles import QUICK, SMOKE
from mripkg.training.checkpoints import CheckpointError, load_weights
from mripkg.training.train import MODEL_NAMES, load_model

WEIGHTS = shipped_weights_dir("quick")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_weights_are_verified_and_small(name):
    path = WEIGHTS / f"{name}.safetensors"
    assert path.is_file(), f"shipped weights missing: {path}"
    assert path.stat().st_size <= 10 * 2**20
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256_file(path)
    assert meta["profile"] == "quick" and meta["model"] == name
    for key in ("step", "seed", "cpu_time_s", "val_psnr", "val_ssim", "train_config"):
        assert key in meta, key
    with pytest.raises(CheckpointError, match="profile"):
        load_weights(path, profile=SMOKE)


@pytest.fixture(scope="module")
def four_test_slices():
    torch.set_num_threads(2)
    ds = load_dataset(QUICK)
    test = ds["test"].subset([2, 6, 10, 14])
    mask = equispaced_mask(QUICK.image_size)
    return test.images, undersample(fft2c(test.images), mask), mask


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_models_beat_zero_filled_by_3db(name, four_test_slices):
    x, y, mask = four_test_slices
    net, _ = load_model(name, QUICK)
    with torch.no_grad():
        if name == "ddpm":
            # a shorter sampler than the profile's keeps this test quick
            out = DiffusionReconstructor(net, steps=25).reconstruct(
                y, mask, slice_ids=[2, 6, 10, 14]
            )
        else:
            out = net(y, mask)
    gain = metrics.psnr(out, x).mean() - metrics.psnr(zero_filled(y), x).mean()
    assert gain > 3.0, f"{name}: only {gain:.2f} dB above zero-filled"
