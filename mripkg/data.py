"""Real brain MRI, offline: loading NIfTI volumes, pseudo-subjects, axial slices, splits.

The paper used ADNI T1 volumes (not redistributable).  mripkg embeds two real T1 brains under
the MNI permissive licence (see ``mripkg/assets/README.md``):

* the MNI ICBM152 2009a T1 template (skull-stripped), from which seeded *pseudo-subjects*
  (smooth random deformations, bias field, contrast change) make the training, validation and
  in-distribution test (``test_id``) subjects;
* Colin27 (``ch2bet``, skull-stripped), a real brain never seen in training: the ``test`` set.

Images are axial slices ``[N, 1, S, S]`` (float32, each volume min-max normalised to [0, 1],
as in the paper, or optionally robust percentile scaling, :func:`normalise_volume`), rows from
anterior (top) to posterior, columns from the subject's left to right (RAS x).  Out of domain:
``load_dataset(..., skull=True)`` adds ``test_skull`` (Colin27 with its skull, ``ch2``), and
:func:`volume_split` makes test slices of any volume under intensity stresses.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from .profiles import DataConfig, Profile, check_profile, progress_disabled

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


def _load_nifti(path: Path):
    """``nib.load``, also for extensions in another letter case (``.NII.GZ``, ``.Nii.Gz``),
    which nibabel maps to file names that do not exist: those are read from bytes."""
    low = path.name.lower()
    if path.name.endswith((".nii", ".nii.gz")) or not low.endswith((".nii", ".nii.gz")):
        return nib.load(str(path))
    opener = gzip.open if low.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    try:
        return nib.Nifti1Image.from_bytes(raw)
    except Exception:  # noqa: BLE001 - maybe NIfTI-2
        return nib.Nifti2Image.from_bytes(raw)


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Load a 3-D NIfTI (.nii or .nii.gz), reoriented to RAS, as float32.

    Returns ``(volume [X, Y, Z], voxel_size_mm (x, y, z))``.  Trailing singleton dimensions
    (``[X, Y, Z, 1]``) are dropped; the extension may be upper-case (``.NII.GZ``).  Raises
    ``FileNotFoundError`` for a missing file and :class:`VolumeError` (naming the file) for a
    corrupt or truncated file, an image that is not 3-D, a voxel size that is NaN, zero or
    negative, or non-finite voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    try:
        img = _load_nifti(path)
    except Exception as exc:  # nibabel raises several types for broken headers
        raise VolumeError(f"{path}: not a readable NIfTI file ({exc})") from exc
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise VolumeError(f"{path}: expected a 3-D image, found {len(shape)}-D shape {img.shape}")
    raw_zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if not all(np.isfinite(z) and z > 0 for z in raw_zooms):
        raise VolumeError(
            f"{path}: voxel size {raw_zooms} mm is not finite and positive (NaN, zero or "
            "negative pixdim in the NIfTI header); fix the header's pixdim"
        )
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


#: Intensity normalisations of a volume: ``minmax`` (the paper's: min -> 0, max -> 1) and
#: ``robust`` (percentiles :data:`ROBUST_PERCENTILES` -> 0 and 1, clipped to [0, 1]), which one
#: bright outlier voxel cannot compress.
NORMALISATIONS = ("minmax", "robust")
ROBUST_PERCENTILES = (0.5, 99.5)


def normalise_volume(x: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Normalise a whole volume (e.g. axial slices ``[Z, S, S]``) to [0, 1] as float32.

    ``minmax``: :func:`minmax`.  ``robust``: the 0.5th and 99.5th percentiles of all voxels
    map to 0 and 1, values outside are clipped (a constant volume gives zeros)."""
    if method == "minmax":
        return minmax(x)
    if method != "robust":
        raise ValueError(f"unknown normalise {method!r}; choose one of {NORMALISATIONS}")
    lo, hi = (float(v) for v in np.percentile(x, ROBUST_PERCENTILES))
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


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
    normalise: str | None = "minmax",
) -> np.ndarray:
    """Resample a volume onto axial slices ``[Z, size, size]``, optionally through a seeded
    random affine + smooth deformation (a pseudo-subject); ``normalise``: see
    :func:`normalise_volume` (``None``: the resampled intensities, clipped at 0)."""
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
    return out if normalise is None else normalise_volume(out, normalise)


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
    #: What the data are, for training states and checkpoints: ``"embedded"`` or
    #: ``"folder:<sha256 of the files' names and contents, 16 hex>"``, plus
    #: ``"|normalise=robust"`` when not min-max normalised.
    identity: str = "embedded"

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
    normalise: str = "minmax",
) -> np.ndarray:
    """Pseudo-subject ``index`` of generator ``seed``: axial slices ``[Z, S, S]`` in [0, 1]."""
    rng = _subject_rng(seed, index)
    return _sample_volume(
        volume, voxel_size, cfg.image_size, rng, cfg.max_displacement_mm, normalise
    )


def volume_split(
    name: str,
    volume: np.ndarray,
    voxel_size: tuple[float, float, float],
    cfg: DataConfig,
    subject: str,
    *,
    normalise: str = "minmax",
    z_index: list[int] | None = None,
    outlier: float | None = None,
    scale: float = 1.0,
) -> Split:
    """Test slices of one real volume (no deformation), for out-of-domain checks.

    The slices (``z_index``, else ``cfg.n_test_slices`` evenly spread over the axial slices with
    enough foreground) and their head masks are chosen on the min-max normalised volume, so
    they are the same whatever the stress applied: ``outlier``: one voxel of a slice *not*
    used (the first corner voxel of the nearest unused slice) set to ``outlier`` times the
    volume's maximum before normalisation, so min-max normalisation compresses every slice by
    about that factor; ``scale``: the normalised images multiplied by it (an intensity-scale
    stress).  With the defaults this is bit-identical to the slices of ``load_dataset``'s
    ``test`` split for Colin27.
    """
    raw = _sample_volume(volume, voxel_size, cfg.image_size, normalise=None)
    ref = minmax(raw)
    if z_index is None:
        kept = _slices_from_stack(ref, subject, cfg, 1)[3]
        if not kept:
            raise ValueError(f"split {name!r}: no slice of {subject} has enough foreground")
        z_index = [kept[i] for i in _evenly(len(kept), cfg.n_test_slices)]
    z_index = [int(z) for z in z_index]
    if outlier is not None:
        if not (np.isfinite(outlier) and outlier > 0):
            raise ValueError(f"outlier must be a positive factor, got {outlier!r}")
        free = [z for z in range(raw.shape[0]) if z not in z_index]
        if not free:
            raise ValueError("no unused slice to hold the outlier voxel")
        z_out = min(free, key=lambda z: abs(z - z_index[len(z_index) // 2]))
        raw = raw.copy()
        raw[z_out, 0, 0] = np.float32(outlier * float(raw.max()))
    stack = ref if (normalise == "minmax" and outlier is None) else normalise_volume(raw, normalise)
    imgs = stack[z_index] * np.float32(scale) if scale != 1.0 else stack[z_index]
    masks = np.stack([head_mask(ref[z]) for z in z_index])
    return Split(
        name,
        torch.from_numpy(np.ascontiguousarray(imgs[:, None], dtype=np.float32)),
        torch.from_numpy(masks[:, None]),
        [subject] * len(z_index),
        z_index,
    )


def _colin_test(
    cfg: DataConfig,
    colin: np.ndarray,
    colin_vox: tuple[float, float, float],
    normalise: str = "minmax",
) -> Split:
    """The embedded ``test`` split: ``n_test_slices`` evenly spaced axial slices of Colin27."""
    colin_stack = _sample_volume(colin, colin_vox, cfg.image_size, normalise=normalise)
    test = _make_split("test", [_slices_from_stack(colin_stack, "colin27", cfg, 1)])
    return test.subset(_evenly(len(test), cfg.n_test_slices))


def _progress(total: int, what: str):
    """A tqdm bar (cleared when done; quiet under ``$CI`` / ``$TQDM_DISABLE``)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=f"loading {what}", unit="vol", leave=False, disable=progress_disabled()
    )


@functools.lru_cache(maxsize=4)
def _embedded_dataset(
    cfg: DataConfig,
    normalise: str = "minmax",
    skull: bool = False,
    names: tuple[str, ...] = SPLITS,
) -> MRIDataset:
    mni, mni_vox = load_volume(embedded_path("mni152"))
    colin, colin_vox = load_volume(embedded_path("colin27"))
    parts: dict[str, list] = {"train": [], "val": [], "test_id": []}
    n_tv = cfg.n_train_subjects + cfg.n_val_subjects
    # each pseudo-subject has its own seeded generator: building only some splits gives
    # exactly the slices of the full build
    tv = [i for i in range(n_tv) if ("train" if i < cfg.n_train_subjects else "val") in names]
    n_tid = cfg.n_test_id_subjects if "test_id" in names else 0
    bar = _progress(len(tv) + n_tid, "pseudo-subjects")
    for i in tv:
        split = "train" if i < cfg.n_train_subjects else "val"
        stack = pseudo_subject(mni, mni_vox, cfg, cfg.split_seed, i, normalise)
        stride = cfg.slice_stride
        parts[split].append(_slices_from_stack(stack, f"mni-pseudo-{i:03d}", cfg, stride))
        bar.update()
    for i in range(n_tid):
        stack = pseudo_subject(mni, mni_vox, cfg, cfg.test_id_seed, i, normalise)
        parts["test_id"].append(_slices_from_stack(stack, f"mni-heldout-{i:03d}", cfg, 1))
        bar.update()
    bar.close()
    test = _colin_test(cfg, colin, colin_vox, normalise)
    splits = {}
    for name in ("train", "val"):
        if name in names:
            splits[name] = _make_split(name, parts[name])
    if "test" in names:
        splits["test"] = test
    if "test_id" in names:
        test_id = _make_split("test_id", parts["test_id"])
        splits["test_id"] = test_id.subset(_evenly(len(test_id), cfg.n_test_slices))
    info = {
        "train": "MNI152 2009a pseudo-subjects",
        "val": "MNI152 2009a pseudo-subjects",
        "test": "Colin27 (ch2bet), real, unseen",
        "test_id": "MNI152 pseudo-subjects, held-out seed",
    }
    if skull:
        # the same brain with its skull, at the same axial positions as `test`
        vol, vox = load_volume(embedded_path("colin27_skull"))
        splits["test_skull"] = volume_split(
            "test_skull",
            vol,
            vox,
            cfg,
            "colin27_skull",
            normalise=normalise,
            z_index=list(test.slice_index),
        )
        info["test_skull"] = "Colin27 with skull (ch2), real, unseen: out of domain"
    identity = "embedded" + ("" if normalise == "minmax" else f"|normalise={normalise}")
    info = {k: v for k, v in info.items() if k in splits}
    return MRIDataset(cfg.image_size, splits, "embedded", info, identity)


#: Fewest volumes a user folder needs: 10 % of them, rounded, is the test split (one slice
#: per volume, as in the paper), and the notebooks need at least 2 test slices (a mean and an
#: SD over slices); 15 is the smallest count whose 10 % rounds to 2.
MIN_USER_VOLUMES = 15


def is_nifti(path: Path) -> bool:
    """A NIfTI file name: ``.nii`` or ``.nii.gz`` in any letter case."""
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _folder_digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


class UnusableVolumeWarning(UserWarning):
    """A volume of a user folder that cannot give a slice (left out, named)."""


def volume_problem(volume: np.ndarray, stack: np.ndarray | None, cfg: DataConfig) -> str | None:
    """Why a volume cannot be used, or ``None``: all zero, constant, or (``stack``: its
    normalised axial slices ``[Z, S, S]``) no slice whose head mask covers
    ``cfg.min_foreground`` of the image."""
    lo, hi = float(volume.min()), float(volume.max())
    if hi == 0.0 and lo == 0.0:
        return "all voxels are zero"
    if hi <= lo:
        return f"constant (every voxel is {lo:g})"
    if stack is not None and not any(
        head_mask(stack[z]).mean() >= cfg.min_foreground for z in range(stack.shape[0])
    ):
        return (
            f"no foreground: no axial slice has a head mask over {cfg.min_foreground:.0%} of "
            "the image"
        )
    return None


def usable_volumes(
    files: list[Path], cfg: DataConfig, normalise: str = "minmax"
) -> tuple[list[Path], dict[Path, str]]:
    """Split ``files`` into the usable volumes and {file: why not} for the others (each one
    named in an :class:`UnusableVolumeWarning`)."""
    good, bad = [], {}
    bar = _progress(len(files), "volumes (check)")
    for f in files:
        vol, vox = load_volume(f)
        why = volume_problem(vol, None, cfg)
        if why is None:
            why = volume_problem(
                vol, _sample_volume(vol, vox, cfg.image_size, normalise=normalise), cfg
            )
        if why is None:
            good.append(f)
        else:
            bad[f] = why
            warnings.warn(f"{f}: left out, {why}", UnusableVolumeWarning, stacklevel=3)
        bar.update()
    bar.close()
    return good, bad


def _user_dataset(cfg: DataConfig, data_dir: Path, seed: int, normalise: str) -> MRIDataset:
    files = sorted(p for p in Path(data_dir).iterdir() if is_nifti(p) and p.is_file())
    if len(files) < MIN_USER_VOLUMES:
        raise ValueError(
            f"{data_dir}: need at least {MIN_USER_VOLUMES} NIfTI volumes (one subject per "
            f".nii / .nii.gz file) for a train/val/test split by subject with at least 2 test "
            f"slices (10 % of the volumes, one slice each, as in the paper); found {len(files)}"
        )
    files, bad = usable_volumes(files, cfg, normalise)
    if len(files) < MIN_USER_VOLUMES:
        named = "; ".join(f"{p.name}: {why}" for p, why in bad.items())
        raise ValueError(
            f"{data_dir}: need at least {MIN_USER_VOLUMES} usable NIfTI volumes; found "
            f"{len(files)} usable of {len(files) + len(bad)} ({named})"
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
    bar = _progress(n, "volumes")
    for split, idx in groups.items():
        for i in idx:
            bar.update()
            vol, vox = load_volume(files[i])
            stack = _sample_volume(vol, vox, cfg.image_size, normalise=normalise)
            stride = cfg.slice_stride if split != "test" else 1
            sl = _slices_from_stack(stack, files[i].name, cfg, stride)
            if split == "test":  # the paper: one random slice per test volume
                rng = np.random.default_rng([seed, int(i)])
                if sl[0]:
                    j = int(rng.integers(len(sl[0])))
                    sl = tuple([v[j]] for v in sl)  # type: ignore[assignment]
            parts[split].append(sl)
    bar.close()
    splits = {k: _make_split(k, v) for k, v in parts.items()}
    splits["test_id"] = Split(
        "test_id",
        *[getattr(splits["test"], a) for a in ("images", "masks", "subjects", "slice_index")],
    )
    info = {k: f"user data ({data_dir})" for k in splits}
    identity = f"folder:{_folder_digest(files)}"
    if normalise != "minmax":
        identity += f"|normalise={normalise}"
    return MRIDataset(cfg.image_size, splits, str(data_dir), info, identity)


def load_dataset(
    profile: Profile,
    data_dir: str | os.PathLike | None = None,
    normalise: str = "minmax",
    skull: bool = False,
    splits: Sequence[str] | None = None,
) -> MRIDataset:
    """The profile's data set: the embedded default, or a folder of the user's NIfTI volumes
    (one subject per file, at least :data:`MIN_USER_VOLUMES`, split 80/10/10 by subject with
    the profile's seed; the test split is one random slice per held-out volume, as in the
    paper, and ``test_id`` equals ``test``).

    ``normalise``: ``"minmax"`` (the paper's, default) or ``"robust"`` percentile scaling of
    each volume (:func:`normalise_volume`).  ``skull=True`` (embedded data only) adds the split
    ``test_skull``: Colin27 *with* its skull (``ch2``) at the axial positions of ``test``, out
    of the training domain (every training brain is skull-stripped).

    ``splits``: build only these of ``train``, ``val``, ``test``, ``test_id`` (default: all);
    for the embedded data the others are not made, which saves most of the time and memory
    when the training split is not needed (notebooks 03-07), and the slices are the same bit
    for bit.

    ``profile``: a :class:`Profile` (a name is resolved at the edge with
    :func:`mripkg.profiles.get_profile`).  ``data_dir`` of ``None`` or ``""`` (a notebook's
    default) means the embedded brains.  Deterministic: the same profile gives the same slices,
    bit for bit.
    """
    profile = check_profile(profile)
    if normalise not in NORMALISATIONS:
        raise ValueError(f"unknown normalise {normalise!r}; choose one of {NORMALISATIONS}")
    names = SPLITS if splits is None else tuple(s for s in SPLITS if s in splits)
    unknown = sorted(set(splits or ()) - set(SPLITS))
    if unknown or not names:
        raise ValueError(f"splits {list(splits or [])}: choose from {', '.join(SPLITS)}")
    if data_dir is None or str(data_dir) == "":
        return _embedded_dataset(profile.data, normalise, bool(skull), names)
    if skull:
        raise ValueError("the test_skull split exists for the embedded data only")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir is not a folder: {data_dir}")
    ds = _user_dataset(profile.data, data_dir, profile.data.split_seed, normalise)
    if names != SPLITS:
        ds = MRIDataset(
            ds.image_size,
            {k: ds.splits[k] for k in names},
            ds.source,
            {k: v for k, v in ds.info.items() if k in names},
            ds.identity,
        )
    return ds


def load_test_split(profile: Profile, data_dir: str | os.PathLike | None = None) -> Split:
    """Only the ``test`` split of :func:`load_dataset` (the same slices, bit for bit); for the
    embedded data it skips building the training pseudo-subjects (seconds instead of a minute
    at the quick profile)."""
    if data_dir is not None:
        return load_dataset(profile, data_dir)["test"]
    colin, colin_vox = load_volume(embedded_path("colin27"))
    return _colin_test(profile.data, colin, colin_vox)


def dataset_fingerprint(ds: MRIDataset) -> str:
    """A short checksum of all split images (for manifests and determinism checks)."""
    crc = 0
    for name in SPLITS:
        if name in ds.splits:
            crc = zlib.crc32(ds.splits[name].images.numpy().tobytes(), crc)
    return f"{crc:08x}"
