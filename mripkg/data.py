"""Real brain MRI, offline: loading NIfTI volumes, pseudo-subjects, axial slices, splits.

The paper used ADNI T1 volumes (not redistributable).  mripkg embeds two real T1 brains under
the MNI permissive licence (see ``mripkg/assets/README.md``):

* the MNI ICBM152 2009a T1 template (skull-stripped), from which seeded *pseudo-subjects*
  (smooth random deformations, bias field, contrast change) make the training, validation and
  in-distribution test (``test_id``) subjects;
* Colin27 (``ch2bet``, skull-stripped), a real brain never seen in training: the ``test`` set.

Images are axial slices ``[N, 1, S, S]`` (float32, each volume min-max normalised to [0, 1]),
rows from anterior (top) to posterior, columns from the subject's left to right (RAS x).
"""

from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from .profiles import DataConfig, Profile, get_profile

EMBEDDED_VOLUMES: dict[str, str] = {
    "mni152": "mni_icbm152_t1_2009a.nii.gz",
    "colin27": "ch2bet.nii.gz",
    "colin27_skull": "ch2.nii.gz",
}

SPLITS = ("train", "val", "test", "test_id")


class VolumeError(ValueError):
    """A NIfTI file that cannot be used: corrupt, wrong dimensionality or non-finite."""


def embedded_path(name: str) -> Path:
    """Path of an embedded volume (``mni152``, ``colin27``, ``colin27_skull``)."""
    if name not in EMBEDDED_VOLUMES:
        raise KeyError(
            f"unknown embedded volume {name!r}; choose one of {sorted(EMBEDDED_VOLUMES)}"
        )
    ref = resources.files("mripkg.assets").joinpath(EMBEDDED_VOLUMES[name])
    return Path(str(ref))


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Load a 3-D NIfTI (.nii or .nii.gz), reoriented to RAS, as float32.

    Returns ``(volume [X, Y, Z], voxel_size_mm (x, y, z))``.  Trailing singleton dimensions
    (``[X, Y, Z, 1]``) are dropped.  Raises ``FileNotFoundError`` for a missing file and
    :class:`VolumeError` (naming the file) for a corrupt or truncated file, an image that is
    not 3-D, or non-finite voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for broken headers
        raise VolumeError(f"{path}: not a readable NIfTI file ({exc})") from exc
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise VolumeError(f"{path}: expected a 3-D image, found {len(shape)}-D shape {img.shape}")
    try:
        img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
    except Exception as exc:  # truncated gzip streams surface here
        raise VolumeError(f"{path}: corrupt or truncated image data ({exc})") from exc
    if not np.all(np.isfinite(data)):
        n_bad = int((~np.isfinite(data)).sum())
        raise VolumeError(f"{path}: {n_bad} non-finite voxels (NaN or inf)")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return np.ascontiguousarray(data), zooms  # type: ignore[return-value]


def minmax(x: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] (a constant array gives zeros)."""
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def head_mask(image: np.ndarray, threshold: float = 0.03) -> np.ndarray:
    """Head (here: brain) mask of a normalised 2-D slice: threshold, specks removed, holes
    filled, dilated by 2 pixels.  Returns bool of the same shape."""
    m = image > threshold
    if not m.any():
        return m
    lab, n = ndimage.label(m)
    if n > 1:  # drop specks smaller than 0.1 % of the image
        sizes = np.asarray(ndimage.sum(m, lab, index=np.arange(1, n + 1)))
        keep = np.flatnonzero(sizes >= 0.001 * m.size) + 1
        m = np.isin(lab, keep)
    m = ndimage.binary_fill_holes(m)
    return ndimage.binary_dilation(m, iterations=2)


def _grid(volume_shape: tuple[int, int, int], voxel_size: tuple[float, float, float], size: int):
    """Output sampling grid (voxel coordinates) for square axial slices of ``size`` pixels
    covering the larger in-plane extent, with isotropic spacing along z."""
    nx, ny, nz = volume_shape
    vx, vy, vz = voxel_size
    fov = max(nx * vx, ny * vy)  # mm
    pix = fov / size
    c = (np.arange(size) - (size - 1) / 2) * pix  # mm, centred
    n_z = int(np.floor(nz * vz / pix))
    zc = (np.arange(n_z) - (n_z - 1) / 2) * pix
    # rows: anterior (top) -> posterior, i.e. decreasing y; columns: increasing x
    yy, xx = -c, c
    return xx, yy, zc, pix


def _smooth_upsample(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Smoothly upsample a small 3-D grid: cubic spline to 16^3, then trilinear to ``shape``."""
    mid = ndimage.zoom(coarse, [16 / s for s in coarse.shape], order=3, mode="nearest")
    t = torch.from_numpy(np.ascontiguousarray(mid, dtype=np.float64))[None, None]
    up = torch.nn.functional.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=True)
    return up[0, 0].numpy()


def _sample_volume(
    volume: np.ndarray,
    voxel_size: tuple[float, float, float],
    size: int,
    rng: np.random.Generator | None = None,
    max_displacement_mm: float = 0.0,
) -> np.ndarray:
    """Resample a volume onto axial slices ``[Z, size, size]``, optionally through a seeded
    random affine + smooth deformation (a pseudo-subject)."""
    xx, yy, zc, _ = _grid(volume.shape, voxel_size, size)
    Z, Y, X = np.meshgrid(zc, yy, xx, indexing="ij")  # [nz, size, size], mm from the centre
    pts = np.stack([X, Y, Z])  # [3, nz, S, S]
    if rng is not None:
        angle = np.deg2rad(rng.uniform(-6, 6))
        scale = rng.uniform(0.92, 1.08, size=3)
        rot = np.array(
            [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
        )
        A = rot * scale[None, :]
        shift = rng.uniform(-3, 3, size=3)
        pts = np.einsum("ij,j...->i...", A, pts) + shift[:, None, None, None]
        if max_displacement_mm > 0:
            coarse = rng.standard_normal((3, 5, 5, 5))
            for d in range(3):
                pts[d] += max_displacement_mm * _smooth_upsample(coarse[d], pts.shape[1:]) / 2.5
    centre = (np.array(volume.shape) - 1) / 2
    vox = pts / np.array(voxel_size)[:, None, None, None] + centre[:, None, None, None]
    out = ndimage.map_coordinates(volume, vox.reshape(3, -1), order=1, mode="constant", cval=0.0)
    out = out.reshape(pts.shape[1:]).astype(np.float32)
    out = np.maximum(out, 0.0)
    if rng is not None:
        # smooth multiplicative bias field (+-15 %) and a gamma contrast change
        nz = out.shape[0]
        coarse = rng.standard_normal((3, 3, 3)) * 0.15 / 1.5
        bias = np.exp(_smooth_upsample(coarse, (nz, size, size)))
        out = out * bias.astype(np.float32)
        out = minmax(out) ** np.float32(rng.uniform(0.8, 1.25))
    return minmax(out)


@dataclass
class Split:
    """One split: slices ``images [N, 1, S, S]`` in [0, 1], ``masks [N, 1, S, S]`` (bool head
    masks), the subject of each slice and its axial index within that subject."""

    name: str
    images: Tensor
    masks: Tensor
    subjects: list[str]
    slice_index: list[int]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def subject_ids(self) -> list[str]:
        """Unique subjects, in order of appearance."""
        return list(dict.fromkeys(self.subjects))

    def subset(self, idx: list[int] | np.ndarray) -> Split:
        idx = [int(i) for i in idx]
        return Split(
            self.name,
            self.images[idx],
            self.masks[idx],
            [self.subjects[i] for i in idx],
            [self.slice_index[i] for i in idx],
        )


@dataclass
class MRIDataset:
    """Train / val / test / test_id splits of one profile."""

    image_size: int
    splits: dict[str, Split]
    source: str
    info: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise KeyError(f"no split {name!r}; have {list(self.splits)}")
        return self.splits[name]

    def table(self) -> list[dict]:
        """One row per split: subjects, slices, image size (for the notebooks' dataset table)."""
        return [
            {
                "split": s.name,
                "subjects": len(s.subject_ids),
                "slices": len(s),
                "image_size": f"{self.image_size}x{self.image_size}",
                "source": self.info.get(s.name, ""),
            }
            for s in self.splits.values()
        ]


def _slices_from_stack(
    stack: np.ndarray, subject: str, cfg: DataConfig, stride: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[str], list[int]]:
    imgs, masks, subs, idx = [], [], [], []
    for z in range(stack.shape[0]):
        m = head_mask(stack[z])
        if m.mean() < cfg.min_foreground:
            continue
        imgs.append(stack[z])
        masks.append(m)
        subs.append(subject)
        idx.append(z)
    keep = list(range(0, len(imgs), stride))
    return (
        [imgs[i] for i in keep],
        [masks[i] for i in keep],
        [subs[i] for i in keep],
        [idx[i] for i in keep],
    )


def _evenly(n_have: int, n_want: int) -> list[int]:
    if n_want >= n_have:
        return list(range(n_have))
    return [int(round(v)) for v in np.linspace(0, n_have - 1, n_want)]


def _make_split(name: str, parts: list[tuple[list, list, list, list]]) -> Split:
    imgs = [a for p in parts for a in p[0]]
    masks = [a for p in parts for a in p[1]]
    if not imgs:
        raise ValueError(f"split {name!r} has no slices with enough foreground")
    return Split(
        name,
        torch.from_numpy(np.stack(imgs)[:, None].astype(np.float32)),
        torch.from_numpy(np.stack(masks)[:, None]),
        [s for p in parts for s in p[2]],
        [i for p in parts for i in p[3]],
    )


def _subject_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def pseudo_subject(
    volume: np.ndarray,
    voxel_size: tuple[float, float, float],
    cfg: DataConfig,
    seed: int,
    index: int,
) -> np.ndarray:
    """Pseudo-subject ``index`` of generator ``seed``: axial slices ``[Z, S, S]`` in [0, 1]."""
    rng = _subject_rng(seed, index)
    return _sample_volume(volume, voxel_size, cfg.image_size, rng, cfg.max_displacement_mm)


@functools.lru_cache(maxsize=4)
def _embedded_dataset(cfg: DataConfig) -> MRIDataset:
    mni, mni_vox = load_volume(embedded_path("mni152"))
    colin, colin_vox = load_volume(embedded_path("colin27"))
    parts: dict[str, list] = {"train": [], "val": [], "test_id": []}
    n_tv = cfg.n_train_subjects + cfg.n_val_subjects
    for i in range(n_tv):
        split = "train" if i < cfg.n_train_subjects else "val"
        stack = pseudo_subject(mni, mni_vox, cfg, cfg.split_seed, i)
        stride = cfg.slice_stride
        parts[split].append(_slices_from_stack(stack, f"mni-pseudo-{i:03d}", cfg, stride))
    for i in range(cfg.n_test_id_subjects):
        stack = pseudo_subject(mni, mni_vox, cfg, cfg.test_id_seed, i)
        parts["test_id"].append(_slices_from_stack(stack, f"mni-heldout-{i:03d}", cfg, 1))
    colin_stack = _sample_volume(colin, colin_vox, cfg.image_size)
    test = _make_split("test", [_slices_from_stack(colin_stack, "colin27", cfg, 1)])
    test = test.subset(_evenly(len(test), cfg.n_test_slices))
    test_id = _make_split("test_id", parts["test_id"])
    test_id = test_id.subset(_evenly(len(test_id), cfg.n_test_slices))
    splits = {
        "train": _make_split("train", parts["train"]),
        "val": _make_split("val", parts["val"]),
        "test": test,
        "test_id": test_id,
    }
    info = {
        "train": "MNI152 2009a pseudo-subjects",
        "val": "MNI152 2009a pseudo-subjects",
        "test": "Colin27 (ch2bet), real, unseen",
        "test_id": "MNI152 pseudo-subjects, held-out seed",
    }
    return MRIDataset(cfg.image_size, splits, "embedded", info)


def _user_dataset(cfg: DataConfig, data_dir: Path, seed: int) -> MRIDataset:
    files = sorted(
        p for p in Path(data_dir).iterdir() if p.name.endswith((".nii", ".nii.gz")) and p.is_file()
    )
    if len(files) < 3:
        raise ValueError(
            f"{data_dir}: need at least 3 NIfTI volumes (one subject per file) for a "
            f"train/val/test split by subject, found {len(files)}"
        )
    order = np.random.default_rng(seed).permutation(len(files))
    n = len(files)
    n_test = max(1, int(round(0.1 * n)))
    n_val = max(1, int(round(0.1 * n)))
    groups = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    parts: dict[str, list] = {k: [] for k in groups}
    for split, idx in groups.items():
        for i in idx:
            vol, vox = load_volume(files[i])
            stack = _sample_volume(vol, vox, cfg.image_size)
            stride = cfg.slice_stride if split != "test" else 1
            sl = _slices_from_stack(stack, files[i].name, cfg, stride)
            if split == "test":  # the paper: one random slice per test volume
                rng = np.random.default_rng([seed, int(i)])
                if sl[0]:
                    j = int(rng.integers(len(sl[0])))
                    sl = tuple([v[j]] for v in sl)  # type: ignore[assignment]
            parts[split].append(sl)
    splits = {k: _make_split(k, v) for k, v in parts.items()}
    splits["test_id"] = Split(
        "test_id",
        *[getattr(splits["test"], a) for a in ("images", "masks", "subjects", "slice_index")],
    )
    info = {k: f"user data ({data_dir})" for k in splits}
    return MRIDataset(cfg.image_size, splits, str(data_dir), info)


def load_dataset(profile: Profile | str, data_dir: str | os.PathLike | None = None) -> MRIDataset:
    """The profile's data set: the embedded default, or a folder of the user's NIfTI volumes
    (one subject per file, split 80/10/10 by subject with the profile's seed; the test split is
    one random slice per held-out volume, as in the paper, and ``test_id`` equals ``test``).

    ``profile``: a :class:`Profile` or a profile name (``"quick"``; ``""`` as for
    :func:`mripkg.profiles.get_profile`).  ``data_dir`` of ``None`` or ``""`` (a notebook's
    default) means the embedded brains.  Deterministic: the same profile gives the same slices,
    bit for bit.
    """
    if isinstance(profile, str):
        profile = get_profile(profile)
    if data_dir is None or str(data_dir) == "":
        return _embedded_dataset(profile.data)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir is not a folder: {data_dir}")
    return _user_dataset(profile.data, data_dir, profile.data.split_seed)


def dataset_fingerprint(ds: MRIDataset) -> str:
    """A short checksum of all split images (for manifests and determinism checks)."""
    crc = 0
    for name in SPLITS:
        if name in ds.splits:
            crc = zlib.crc32(ds.splits[name].images.numpy().tobytes(), crc)
    return f"{crc:08x}"
