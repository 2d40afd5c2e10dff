"""Loading NIfTI volumes, pseudo-subjects, splits and determinism."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mripkg import data
from mripkg.data import (
    MIN_USER_VOLUMES,
    VolumeError,
    _embedded_dataset,
    dataset_fingerprint,
    embedded_path,
    load_dataset,
    load_volume,
    normalise_volume,
    pseudo_subject,
    volume_split,
)
from mripkg.profiles import SMOKE


def _write(path, data, affine=None):
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    nib.save(img, str(path))
    return path


def _volume(shape=(6, 7, 5), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# ------------------------------------------------------------------- load_volume


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_load_good_volume(tmp_path, ext):
    data = _volume()
    path = _write(tmp_path / f"good{ext}", data, np.diag([2.0, 2.5, 3.0, 1.0]))
    vol, vox = load_volume(path)
    assert vol.dtype == np.float32 and vol.shape == data.shape
    np.testing.assert_array_equal(vol, data)
    assert vox == pytest.approx((2.0, 2.5, 3.0))


def test_load_volume_reorients_to_ras(tmp_path):
    """An LPS affine (x and y flipped) must come back flipped along x and y."""
    data = _volume((5, 6, 4), seed=1)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    vol, _ = load_volume(_write(tmp_path / "lps.nii.gz", data, lps))
    np.testing.assert_array_equal(vol, data[::-1, ::-1, :])
    # an already-RAS affine leaves the array alone
    vol_ras, _ = load_volume(_write(tmp_path / "ras.nii.gz", data))
    np.testing.assert_array_equal(vol_ras, data)


def test_load_volume_drops_trailing_singleton(tmp_path):
    data = _volume((4, 5, 6, 1), seed=2)
    vol, _ = load_volume(_write(tmp_path / "one.nii", data))
    assert vol.shape == (4, 5, 6)
    np.testing.assert_array_equal(vol, data[..., 0])


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.nii.gz"
    with pytest.raises(FileNotFoundError, match="nowhere.nii.gz"):
        load_volume(path)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_corrupt_file(tmp_path, ext):
    path = tmp_path / f"garbage{ext}"
    path.write_bytes(np.random.default_rng(3).bytes(4000))
    with pytest.raises(VolumeError, match=f"garbage{ext}"):
        load_volume(path)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_truncated_file(tmp_path, ext):
    good = _write(tmp_path / f"full{ext}", _volume((20, 20, 20), seed=4))
    raw = good.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(raw[: int(len(raw) * 0.6)])
    with pytest.raises(VolumeError, match=f"cut{ext}"):
        load_volume(cut)


def test_2d_image_is_refused(tmp_path):
    path = _write(tmp_path / "flat.nii.gz", _volume((8, 9)))
    with pytest.raises(VolumeError, match=r"flat\.nii\.gz.*\(8, 9\)"):
        load_volume(path)


def test_4d_image_is_refused(tmp_path):
    path = _write(tmp_path / "rgb.nii.gz", _volume((4, 5, 6, 3)))
    with pytest.raises(VolumeError, match=r"rgb\.nii\.gz.*\(4, 5, 6, 3\)"):
        load_volume(path)


def test_nan_voxels_are_refused(tmp_path):
    data = _volume()
    data[1, 2, 3] = np.nan
    data[0, 0, 0] = np.inf
    path = _write(tmp_path / "nan.nii", data)
    with pytest.raises(VolumeError, match=r"nan\.nii.*2 non-finite"):
        load_volume(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_bad_voxel_size_has_its_own_message(tmp_path, bad):
    img = nib.Nifti1Image(_volume(), np.eye(4))
    img.header.set_zooms((1.0, bad, 1.0))
    nib.save(img, str(tmp_path / "vox.nii"))
    with pytest.raises(VolumeError, match=r"vox\.nii: voxel size .* not finite and positive"):
        load_volume(tmp_path / "vox.nii")


@pytest.mark.parametrize("name", ["UPPER.NII", "UPPER.NII.GZ", "Mixed.Nii.Gz"])
def test_upper_case_extensions_load(tmp_path, name):
    ext = ".nii.gz" if name.lower().endswith(".gz") else ".nii"
    path = _write(tmp_path / f"lower{ext}", _volume()).rename(tmp_path / name)
    vol, _ = load_volume(path)
    assert vol.shape == (6, 7, 5)


def test_embedded_volumes_load():
    for name in ("mni152", "colin27", "colin27_skull"):
        vol, vox = load_volume(embedded_path(name))
        assert vol.ndim == 3 and min(vol.shape) > 150
        assert vox == pytest.approx((1.0, 1.0, 1.0))
        assert vol.max() > 0


# ------------------------------------------------------------- embedded data set


@pytest.fixture(scope="module")
def smoke_ds():
    return load_dataset(SMOKE)


def test_splits_are_disjoint_by_subject(smoke_ds):
    subjects = {name: set(s.subject_ids) for name, s in smoke_ds.splits.items()}
    assert set(subjects) == {"train", "val", "test", "test_id"}
    names = list(subjects)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not subjects[a] & subjects[b], (a, b)
    assert subjects["test"] == {"colin27"}
    cfg = SMOKE.data
    assert len(subjects["train"]) == cfg.n_train_subjects
    assert len(subjects["val"]) == cfg.n_val_subjects
    assert len(subjects["test_id"]) == cfg.n_test_id_subjects


def test_slices_masks_and_shapes(smoke_ds):
    s = SMOKE.image_size
    for name, split in smoke_ds.splits.items():
        assert split.images.shape[1:] == (1, s, s), name
        assert split.images.dtype == torch.float32
        assert split.masks.shape == split.images.shape and split.masks.dtype == torch.bool
        assert float(split.images.min()) >= 0.0 and float(split.images.max()) <= 1.0
        assert split.masks.flatten(1).any(1).all(), f"{name}: empty head mask"
        assert len(split.subjects) == len(split.slice_index) == len(split)
    assert len(smoke_ds["test"]) == SMOKE.data.n_test_slices
    assert len(smoke_ds["test_id"]) == SMOKE.data.n_test_slices


def test_pseudo_subject_is_deterministic():
    vol, vox = load_volume(embedded_path("mni152"))
    cfg = SMOKE.data
    a = pseudo_subject(vol, vox, cfg, seed=11, index=0)
    b = pseudo_subject(vol, vox, cfg, seed=11, index=0)
    c = pseudo_subject(vol, vox, cfg, seed=12, index=0)
    d = pseudo_subject(vol, vox, cfg, seed=11, index=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_same_seed_same_slices_bit_for_bit(smoke_ds):
    build = _embedded_dataset.__wrapped__  # bypass the lru_cache: two genuinely fresh builds
    first, second = build(SMOKE.data), build(SMOKE.data)
    assert dataset_fingerprint(first) == dataset_fingerprint(second)
    for name in first.splits:
        assert torch.equal(first[name].images, second[name].images), name
        assert torch.equal(first[name].masks, second[name].masks), name
    assert dataset_fingerprint(first) == dataset_fingerprint(smoke_ds)


def test_different_seed_different_slices(smoke_ds):
    other = _embedded_dataset.__wrapped__(dataclasses.replace(SMOKE.data, split_seed=4321))
    assert dataset_fingerprint(other) != dataset_fingerprint(smoke_ds)
    assert not torch.equal(other["train"].images[:1], smoke_ds["train"].images[:1])
    # the test set (Colin27) does not depend on the pseudo-subject seed
    assert torch.equal(other["test"].images, smoke_ds["test"].images)


# ------------------------------------------------------------ the user's NIfTI files


def _synthetic_head(seed: int, shape=(32, 36, 30)) -> np.ndarray:
    """An ellipsoidal 'head' with smooth texture, a different one per seed."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = rng.uniform(0.7, 0.85, size=3)
    inside = (x / r[0]) ** 2 + (y / r[1]) ** 2 + (z / r[2]) ** 2 < 1
    texture = 0.6 + 0.3 * np.sin(5 * x + rng.uniform(0, 6)) * np.cos(4 * y)
    return (inside * texture * rng.uniform(50, 200)).astype(np.float32)


def _subject_name(i: int) -> str:
    # upper-case extensions count as NIfTI too
    return f"subject{i:02d}" + (".NII.GZ" if i % 5 == 1 else ".NII" if i % 5 == 2 else ".nii.gz")


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("user_nifti")
    for i in range(MIN_USER_VOLUMES):
        _write(d / _subject_name(i), _synthetic_head(i), np.diag([4.0, 4.0, 4.0, 1.0]))
    (d / "notes.txt").write_text("not a volume")
    return d


def test_user_data_split_by_subject(user_dir):
    ds = load_dataset(SMOKE, user_dir)
    assert ds.source == str(user_dir)
    subjects = {name: set(s.subject_ids) for name, s in ds.splits.items()}
    assert subjects["train"] and subjects["val"] and subjects["test"]
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    every = subjects["train"] | subjects["val"] | subjects["test"]
    assert every == {_subject_name(i) for i in range(MIN_USER_VOLUMES)}
    # the paper's test protocol: one slice per held-out test volume, at least two of them
    test = ds["test"]
    assert len(test) == len(subjects["test"]) == 2
    assert sorted(test.subjects) == sorted(subjects["test"])
    for split in ds.splits.values():
        assert split.images.shape[1:] == (1, SMOKE.image_size, SMOKE.image_size)
        assert float(split.images.min()) >= 0 and float(split.images.max()) <= 1
    # and it is deterministic
    again = load_dataset(SMOKE, user_dir)
    assert dataset_fingerprint(again) == dataset_fingerprint(ds)


def test_user_data_too_small_is_refused_up_front(tmp_path):
    for i in range(MIN_USER_VOLUMES - 1):  # 14 volumes: a one-slice test split
        _write(tmp_path / f"s{i}.nii", _synthetic_head(i), np.diag([4.0, 4.0, 4.0, 1.0]))
    with pytest.raises(ValueError, match=f"at least {MIN_USER_VOLUMES} NIfTI.*found 14"):
        load_dataset(SMOKE, tmp_path)


def test_dataset_identity(user_dir, smoke_ds, tmp_path):
    assert smoke_ds.identity == "embedded"
    ds = load_dataset(SMOKE, user_dir)
    assert (
        ds.identity.startswith("folder:") and ds.identity == load_dataset(SMOKE, user_dir).identity
    )
    robust = load_dataset(SMOKE, user_dir, normalise="robust")
    assert robust.identity == ds.identity + "|normalise=robust"
    with pytest.raises(ValueError, match="normalise"):
        load_dataset(SMOKE, normalise="zscore")


def _head_with_outlier(seed: int, factor: float) -> np.ndarray:
    v = _synthetic_head(seed)
    v[1, 1, 1] = factor * v.max()  # one bright voxel outside the head
    return v


def test_outlier_voxel_compresses_minmax_not_robust():
    clean = _synthetic_head(3)
    spiked = _head_with_outlier(3, 10.0)
    a, b = normalise_volume(clean), normalise_volume(spiked)
    head = clean > 0
    # min-max: one voxel squeezes the whole head into [0, ~0.1]
    assert float(b[head].max()) < 0.11 and float(a[head].max()) == 1.0
    # robust percentiles ignore it: the head keeps its intensities
    ra, rb = normalise_volume(clean, "robust"), normalise_volume(spiked, "robust")
    assert float(np.abs(ra - rb)[head].max()) < 0.02
    assert ra.min() >= 0 and ra.max() <= 1
    # the same through a split, with the voxel in a slice that is not used
    vox = (4.0, 4.0, 4.0)
    ref = volume_split("t", clean, vox, SMOKE.data, "s")
    out = volume_split("t", clean, vox, SMOKE.data, "s", outlier=10.0)
    fixed = volume_split("t", clean, vox, SMOKE.data, "s", outlier=10.0, normalise="robust")
    assert out.slice_index == ref.slice_index and torch.equal(out.masks, ref.masks)
    assert float(out.images.max()) < 0.11
    assert float(fixed.images.max()) == 1.0
    robust_ref = volume_split("t", clean, vox, SMOKE.data, "s", normalise="robust")
    assert torch.allclose(fixed.images, robust_ref.images, atol=0.02)


def test_skull_split_and_normalise(smoke_ds):
    ds = load_dataset(SMOKE, skull=True)
    assert torch.equal(ds["test"].images, smoke_ds["test"].images)
    skull = ds["test_skull"]
    assert skull.slice_index == ds["test"].slice_index
    assert skull.images.shape == ds["test"].images.shape
    # the skull adds bright tissue outside the brain mask of the skull-stripped slices
    outside = ~ds["test"].masks
    assert float(skull.images[outside].mean()) > 5 * float(ds["test"].images[outside].mean())
    robust = load_dataset(SMOKE, normalise="robust")
    assert robust.identity == "embedded|normalise=robust"
    assert not torch.equal(robust["test"].images, smoke_ds["test"].images)
    assert float(robust["test"].images.max()) == 1.0 and float(robust["test"].images.min()) == 0.0


def test_user_data_dir_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_dataset(SMOKE, tmp_path / "missing")


# ------------------------------------------------------------------------------------------
# unusable volumes in a user folder: named, and not counted towards the 15


def _folder_with_unusable(tmp_path, n_good: int):
    for i in range(n_good):
        _write(tmp_path / f"s{i:02d}.nii.gz", _synthetic_head(i), np.diag([4.0, 4.0, 4.0, 1.0]))
    _write(tmp_path / "zeros.nii.gz", np.zeros((24, 24, 24), np.float32))
    _write(tmp_path / "flat.nii.gz", np.full((24, 24, 24), 7.0, np.float32))
    speck = np.zeros((40, 40, 40), np.float32)
    speck[20, 20, 20] = 100.0  # one bright voxel: no slice has a head
    _write(tmp_path / "speck.nii.gz", speck, np.diag([4.0, 4.0, 4.0, 1.0]))


def test_unusable_volumes_are_named_and_not_counted(tmp_path):
    # 14 usable + 3 unusable = 17 files: the 15-volume rule counts only the 14
    _folder_with_unusable(tmp_path, MIN_USER_VOLUMES - 1)
    with pytest.warns(data.UnusableVolumeWarning) as rec:
        with pytest.raises(ValueError, match="found 14 usable of 17") as exc:
            load_dataset(SMOKE, tmp_path)
    msg = str(exc.value)
    assert "zeros.nii.gz: all voxels are zero" in msg
    assert "flat.nii.gz: constant (every voxel is 7)" in msg
    assert "speck.nii.gz: no foreground" in msg
    assert {Path(str(w.message).split(":")[0]).name for w in rec} == {
        "zeros.nii.gz",
        "flat.nii.gz",
        "speck.nii.gz",
    }


def test_unusable_volumes_are_left_out_with_a_warning(tmp_path):
    _folder_with_unusable(tmp_path, MIN_USER_VOLUMES)
    with pytest.warns(data.UnusableVolumeWarning, match="zeros.nii.gz: left out"):
        ds = load_dataset(SMOKE, tmp_path)
    every = set().union(*(set(s.subject_ids) for s in ds.splits.values()))
    assert every == {f"s{i:02d}.nii.gz" for i in range(MIN_USER_VOLUMES)}
    assert len(ds["test"]) == 2  # 10 % of the 15 usable volumes, one slice each


def test_only_some_splits_are_built_bit_for_bit(smoke_ds):
    ds = load_dataset(SMOKE, splits=("test", "val"))
    assert list(ds.splits) == ["val", "test"] and ds.identity == smoke_ds.identity
    for name in ("val", "test"):
        assert torch.equal(ds[name].images, smoke_ds[name].images), name
        assert ds[name].subjects == smoke_ds[name].subjects
    with pytest.raises(KeyError, match="no split 'train'"):
        ds["train"]
    with pytest.raises(ValueError, match="choose from train, val, test, test_id"):
        load_dataset(SMOKE, splits=("tset",))


def test_training_from_a_partial_dataset_loads_the_whole_one(monkeypatch, tmp_path):
    from mripkg.training import train as train_mod

    seen = {}

    def fake_train(name, profile, dataset, **kw):
        seen["splits"] = sorted(dataset.splits)
        raise RuntimeError("stop")

    monkeypatch.setattr(train_mod, "train_model", fake_train)
    monkeypatch.setattr(train_mod, "shipped_weights_dir", lambda name: tmp_path)
    partial = load_dataset(SMOKE, splits=("test",))
    with pytest.raises(RuntimeError, match="stop"):
        train_mod.load_or_train("irim", SMOKE, partial)
    assert seen["splits"] == ["test", "test_id", "train", "val"]
