"""Figures: one matplotlib style, atomic PNG + PDF output, shared image-panel helpers.

Every figure has a stable name ``figN_<words>`` (see :data:`FIGURE_CLAIMS`).  :func:`save`
writes ``<name>.png`` and ``<name>.pdf`` into :func:`mripkg.paths.figures_dir`: ``figures/``
for the quick profile (what the README shows), ``runs/<profile>/figures/`` for the others.

Nothing here selects a GUI backend, so the module works under Agg (CI, papermill) and under
the notebook's inline backend alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib as mpl
import numpy as np
import torch

from .paths import figures_dir

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .data import MRIDataset
    from .profiles import Profile

FIGURE_NAME_RE = re.compile(r"^fig\d+_[a-z0-9_]+$")
FIGURE_FORMATS = ("png", "pdf")
PNG_DPI = 150

#: figure name -> (notebook that makes it, the paper claim it illustrates).  Claims follow
#: PAPER.md, "What it claims"; the manifest written by ``mripkg.reproduce`` quotes them.
FIGURE_CLAIMS: dict[str, tuple[str, str]] = {
    "fig1_data_and_mask": (
        "01_data.ipynb",
        "Setting: 8x-undersampled single-coil brain MRI with the fixed equispaced Cartesian "
        "mask (acceleration exactly 8, centre block plus equispaced columns) and the "
        "orthonormal FFT; the zero-filled baseline the models improve on.",
    ),
    "fig2_clean_reconstructions": (
        "02_training.ipynb",
        "Claim 1 (first half): an unsupervised diffusion model trained on images only "
        "reconstructs 8x-undersampled brain MRI, next to the supervised ResUNet++ and i-RIM.",
    ),
    "fig2_training_curves": (
        "02_training.ipynb",
        "Setting: the three models are trained (supervised on pairs; the DDPM on images only) "
        "until their validation metrics level off; the loss and validation curves show how far.",
    ),
    "fig3_white_box": (
        "03_white_box.ipynb",
        "Claims 1 and 5: tiny worst-case k-space perturbations (relative L2 norm eps) distort "
        "the reconstructions, and SSIM and PSNR fall as eps grows, for every model.",
    ),
    "fig4_small_eps_transfer": (
        "04_black_box_transfer.ipynb",
        "Claim 3: even at eps = 0.01 a perturbation crafted on ResUNet++ distorts gray-matter "
        "structure in the diffusion model's reconstruction.",
    ),
    "fig5_transfer_curves": (
        "04_black_box_transfer.ipynb",
        "Claims 2 and 5: perturbations found white-box on a supervised surrogate transfer "
        "black-box to independently trained models, supervised and diffusion alike; PSNR and "
        "SSIM fall with eps.",
    ),
    "fig6_artifacts": (
        "05_artifacts.ipynb",
        "Claim 4: at larger eps the diffusion model's artifacts look like Gaussian noise, "
        "unlike the structured, anatomical distortions of the supervised models.",
    ),
}

#: The one style of every mripkg figure.
STYLE: dict[str, object] = {
    "figure.dpi": 100,
    "figure.facecolor": "white",
    "savefig.dpi": PNG_DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "savefig.facecolor": "white",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "image.cmap": "gray",
    "image.interpolation": "nearest",
    "image.origin": "upper",
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
    "svg.fonttype": "none",
    "svg.hashsalt": "mripkg",
}


def use_style() -> None:
    """Apply the mripkg matplotlib style (rcParams only; the backend is left alone)."""
    mpl.rcParams.update(STYLE)


def _profile_name(profile: Profile | str) -> str:
    name = getattr(profile, "name", profile)
    if not isinstance(name, str) or not name:
        raise TypeError(f"profile must be a Profile or a profile name, got {profile!r}")
    return name


def check_name(name: str) -> str:
    """Validate a figure name (``^fig\\d+_[a-z0-9_]+$``); returns it or raises ValueError."""
    if not isinstance(name, str) or not FIGURE_NAME_RE.match(name):
        raise ValueError(
            f"bad figure name {name!r}: use 'fig<N>_<lowercase_words>', e.g. 'fig1_data_and_mask'"
        )
    return name


def save(fig: Figure, name: str, profile: Profile | str) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` (150 dpi) and ``<name>.pdf`` into the profile's figure
    folder.  Each file is written to a temporary file first and moved into place with
    ``os.replace``, so a reader never sees a half-written figure.  Returns the two paths."""
    check_name(name)
    out_dir = figures_dir(_profile_name(profile))
    written = []
    for fmt in FIGURE_FORMATS:
        target = out_dir / f"{name}.{fmt}"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # no timestamps or software strings: the same figure gives the same bytes
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        try:
            fig.savefig(tmp, format=fmt, dpi=PNG_DPI, metadata=metadata)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        written.append(target)
    return written


# ---------------------------------------------------------------------------- panels


def to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A 2-D float array from an image tensor ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if torch.is_complex(x):
            x = x.abs()
        x = x.numpy()
    a = np.asarray(x, dtype=np.float64)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"expected a single 2-D image, got shape {np.shape(x)}")
    return a


def metric_label(psnr: float | None = None, ssim: float | None = None) -> str:
    """``'28.41 dB / 0.812'`` style text for a panel (parts that are None are left out)."""
    parts = []
    if psnr is not None:
        parts.append(f"{float(psnr):.2f} dB")
    if ssim is not None:
        parts.append(f"SSIM {float(ssim):.3f}")
    return " / ".join(parts)


def image_panel(
    ax: Axes,
    image: torch.Tensor | np.ndarray,
    title: str | None = None,
    *,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = "gray",
    psnr: float | None = None,
    ssim: float | None = None,
):
    """Show one image without ticks, grey scale with a fixed ``vmin``/``vmax``, and a title
    that carries PSNR/SSIM when given.  Returns the ``AxesImage``."""
    im = ax.imshow(to_image(image), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    no_ticks(ax)
    label = metric_label(psnr, ssim)
    text = "\n".join(t for t in (title, label) if t)
    if text:
        ax.set_title(text)
    return im


def no_ticks(ax: Axes) -> None:
    """Hide ticks, tick labels and spines (image panels)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def panel_letter(ax: Axes, letter: str, color: str = "white") -> None:
    """Bold panel label ``a`` inside the top-left corner of an axes."""
    ax.text(
        0.03,
        0.97,
        letter,
        transform=ax.transAxes,
        ha="left",
        va="top",
        color=color,
        fontweight="bold",
        fontsize=10,
    )


def error_panel(
    ax: Axes,
    image: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    title: str | None = None,
    *,
    vmax: float = 0.25,
    cmap: str = "magma",
):
    """Absolute-error map ``|image - reference|`` on a fixed scale [0, vmax]."""
    err = np.abs(to_image(image) - to_image(reference))
    return image_panel(ax, err, title, vmin=0.0, vmax=vmax, cmap=cmap)


def log_kspace(kspace: torch.Tensor | np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """``log10(|k| + floor)`` of one k-space ``[H, W]`` (or ``[1, 1, H, W]``) for display."""
    return np.log10(to_image(kspace) + floor)


# ------------------------------------------------------------------------ figure 1


def _example_slices(ds: MRIDataset, n_train: int = 3) -> list[tuple[str, torch.Tensor]]:
    """One central slice of the first ``n_train`` training subjects and of the first subject
    of every other split, labelled with split, subject and axial index."""
    out = []
    for name, split in ds.splits.items():
        subjects = split.subject_ids[: (n_train if name == "train" else 1)]
        for subj in subjects:
            idx = [i for i, s in enumerate(split.subjects) if s == subj]
            i = idx[len(idx) // 2]
            out.append((f"{name}\n{subj}\nz = {split.slice_index[i]}", split.images[i]))
    return out


def mask_panel(ax: Axes, mask: torch.Tensor, title: str | None = None) -> None:
    """A column mask as a square k-space picture: sampled columns white on black, drawn as
    rectangles so that every column stays visible at any resolution."""
    n = int(mask.numel())
    ax.set_facecolor("black")
    for c in torch.nonzero(mask).flatten().tolist():
        ax.axvspan(c - 0.5, c + 0.5, color="white", lw=0)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_aspect("equal")
    no_ticks(ax)
    if title:
        ax.set_title(title)


def mask_psf(mask: torch.Tensor) -> np.ndarray:
    """Point-spread function of a column mask along the row direction, ``|F^-1 m|``
    (centred, normalised to a peak of 1): the aliasing pattern of undersampling."""
    m = mask.detach().cpu().numpy().astype(np.float64)
    psf = np.abs(np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(m))))
    return psf / psf.max()


def plot_data_and_mask(
    ds: MRIDataset,
    mask: torch.Tensor,
    examples: dict[str, dict],
    acceleration: int = 8,
    error_vmax: float = 0.3,
) -> Figure:
    """Figure 1: (a) example axial slices of every split, (b) the column mask and its
    point-spread function, (c) log k-space magnitude, full and undersampled, (d) zero-filled
    reconstructions beside the ground truth, PSNR/SSIM (paper convention) on the panels, and
    the absolute error on [0, ``error_vmax``].

    ``examples`` maps a short test-set label to ``{"gt", "kspace", "y", "zf", "psnr",
    "ssim"}`` for one slice (see :func:`mripkg.analysis.zero_filled_example`); the first
    entry's k-space is shown in (c).  At most two test sets fit in row (d).
    """
    import matplotlib.pyplot as plt

    use_style()
    slices = _example_slices(ds)
    n_cols = 6
    fig = plt.figure(figsize=(1.55 * n_cols, 6.6))
    outer = fig.add_gridspec(3, 1, hspace=0.5, height_ratios=[1, 1.12, 1])

    # (a) example slices
    row = outer[0].subgridspec(1, n_cols, wspace=0.08)
    for j, (label, img) in enumerate(slices[:n_cols]):
        ax = fig.add_subplot(row[0, j])
        image_panel(ax, img, label)
        if j == 0:
            panel_letter(ax, "a")

    # (b) mask and point-spread function, (c) log k-space
    row = outer[1].subgridspec(1, 4, wspace=0.25)
    n = int(mask.numel())
    ax = fig.add_subplot(row[0, 0])
    mask_panel(ax, mask, f"R={acceleration} equispaced mask\n{int(mask.sum())} of {n} columns")
    panel_letter(ax, "b", color="tab:red")
    ax = fig.add_subplot(row[0, 1])
    offsets = np.arange(n) - n // 2
    ax.plot(offsets, mask_psf(mask), color="k")
    ax.set_xlim(offsets[0], offsets[-1])
    ax.set_ylim(0, 1.05)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_box_aspect(1)
    ax.set_title("point-spread function |F$^{-1}$m|\n(aliasing along x, pixels)")
    first = next(iter(examples.values()))
    k_full = log_kspace(first["kspace"])
    lo, hi = float(np.percentile(k_full, 1)), float(k_full.max())
    ax = fig.add_subplot(row[0, 2])
    image_panel(ax, k_full, "log|k|, fully sampled", vmin=lo, vmax=hi, cmap="viridis")
    panel_letter(ax, "c")
    ax = fig.add_subplot(row[0, 3])
    image_panel(ax, log_kspace(first["y"]), "log|y|, y = Mk", vmin=lo, vmax=hi, cmap="viridis")

    # (d) ground truth | zero-filled | error, for up to two test sets
    row = outer[2].subgridspec(1, n_cols, wspace=0.08)
    for k, (label, ex) in enumerate(list(examples.items())[:2]):
        ax = fig.add_subplot(row[0, 3 * k])
        image_panel(ax, ex["gt"], f"{label}\nground truth")
        if k == 0:
            panel_letter(ax, "d")
        ax = fig.add_subplot(row[0, 3 * k + 1])
        image_panel(ax, ex["zf"], "zero-filled |F$^{-1}$y|", psnr=ex["psnr"], ssim=ex["ssim"])
        ax = fig.add_subplot(row[0, 3 * k + 2])
        error_panel(ax, ex["zf"], ex["gt"], f"|error| (0 to {error_vmax:g})", vmax=error_vmax)
    return fig


# ------------------------------------------------------------------------ figure 2

MODEL_COLUMNS = ("zero_filled", "resunetpp", "irim", "diffusion")
MODEL_LABELS = {
    "zero_filled": "zero-filled",
    "resunetpp": "ResUNet++",
    "irim": "i-RIM",
    "diffusion": "diffusion",
}
MODEL_COLORS = {
    "zero_filled": "0.5",
    "resunetpp": "tab:blue",
    "irim": "tab:orange",
    "diffusion": "tab:green",
}


def plot_clean_reconstructions(
    split: MRIDataset | object,
    recs: dict[str, torch.Tensor],
    table: dict[str, dict[str, list[float]]],
    n_slices: int = 3,
    err_vmax: float = 0.33,
) -> Figure:
    """Figure 2: rows of test slices, columns ground truth | zero-filled | ResUNet++ | i-RIM |
    diffusion, each reconstruction with its absolute-error map beneath and PSNR/SSIM (paper
    convention) in its title.  ``recs[model]``: ``[N, 1, H, W]``; ``table``: per-slice metrics."""
    import matplotlib.pyplot as plt

    use_style()
    images = split.images  # type: ignore[attr-defined]
    n = images.shape[0]
    idx = np.unique(np.linspace(0, n - 1, n_slices + 2).round().astype(int)[1:-1]) if n > 2 else [0]
    cols = [m for m in MODEL_COLUMNS if m in recs]
    fig = plt.figure(figsize=(1.9 * (len(cols) + 1), 3.9 * len(idx)), layout="constrained")
    axes = fig.subplots(2 * len(idx), len(cols) + 1, squeeze=False)
    for r, i in enumerate(idx):
        top, bottom = axes[2 * r], axes[2 * r + 1]
        image_panel(top[0], images[i], f"ground truth, slice {i}")
        bottom[0].axis("off")
        for c, m in enumerate(cols, start=1):
            image_panel(
                top[c],
                recs[m][i],
                MODEL_LABELS[m],
                psnr=table[m]["psnr"][i],
                ssim=table[m]["ssim"][i],
            )
            error_panel(bottom[c], recs[m][i], images[i], "|error|", vmax=err_vmax)
    return fig


def plot_training_curves(histories: dict[str, dict]) -> Figure:
    """Training loss (moving average) and validation PSNR against steps, one panel each per
    model that has a history."""
    import matplotlib.pyplot as plt

    use_style()
    names = [m for m in ("resunetpp", "irim", "diffusion") if histories.get(m)]
    fig, axes = plt.subplots(
        2,
        max(1, len(names)),
        figsize=(3.6 * max(1, len(names)), 5),
        squeeze=False,
        layout="constrained",
    )
    for c, m in enumerate(names):
        h = histories[m]
        loss = np.asarray(h.get("loss", []), dtype=float)
        steps = np.asarray(h.get("step", np.arange(1, len(loss) + 1)), dtype=float)
        if loss.size:
            w = max(1, loss.size // 50)
            smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
            axes[0, c].plot(steps[: smooth.size] + w - 1, smooth, color=MODEL_COLORS[m])
            axes[0, c].set_yscale("log")
        axes[0, c].set_title(f"{MODEL_LABELS[m]}: training loss")
        axes[0, c].set_xlabel("step")
        if h.get("val_step"):
            axes[1, c].plot(h["val_step"], h["val_psnr"], "o-", color=MODEL_COLORS[m], ms=3)
        axes[1, c].set_title("validation PSNR (dB)")
        axes[1, c].set_xlabel("step")
    return fig


def figure_files(profile: Profile | str) -> list[Path]:
    """The figure files (``fig*.png`` / ``fig*.pdf``) present for a profile, sorted."""
    d = figures_dir(_profile_name(profile))
    return sorted(
        p
        for p in d.iterdir()
        if p.is_file() and p.suffix[1:] in FIGURE_FORMATS and FIGURE_NAME_RE.match(p.stem)
    )


def grid_axes(fig: Figure, n_rows: int, n_cols: int, **kw) -> Sequence[Sequence[Axes]]:
    """``n_rows x n_cols`` axes as a nested list (always 2-D, unlike ``plt.subplots``)."""
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **kw)
    return [list(row) for row in axes]


__all__ = [
    "FIGURE_CLAIMS",
    "FIGURE_NAME_RE",
    "STYLE",
    "check_name",
    "error_panel",
    "figure_files",
    "grid_axes",
    "image_panel",
    "log_kspace",
    "mask_panel",
    "mask_psf",
    "metric_label",
    "no_ticks",
    "panel_letter",
    "plot_clean_reconstructions",
    "plot_data_and_mask",
    "plot_training_curves",
    "save",
    "to_image",
    "use_style",
]
