"""Figures: one matplotlib style, atomic PNG + PDF output, shared image-panel helpers.

Every figure has a stable name ``figN_<words>`` (see :data:`FIGURE_CLAIMS`).  :func:`save`
writes ``<name>.png`` and ``<name>.pdf`` into :func:`mripkg.paths.figures_dir`: ``figures/``
for the quick profile (what the README shows), ``runs/<profile>/figures/`` for the others.

Nothing here selects a GUI backend, so the module works under Agg (CI, papermill) and under
the notebook's inline backend alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib as mpl
import numpy as np
import torch

from ..io import atomic_write
from ..models import LEARNED, MODEL_LABELS, NAMES
from ..paths import figures_dir
from ..profiles import check_profile

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..data import MRIDataset
    from ..experiments.artifacts import Artifacts
    from ..experiments.open_questions import OpenQuestions
    from ..experiments.transfer import Transfer
    from ..experiments.whitebox import WhiteBox
    from ..profiles import Profile

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
        "Setting: the three models are trained (supervised on pairs; the DDPM on images only); "
        "the loss and validation curves show how far each one was trained.",
    ),
    "fig3_white_box": (
        "03_white_box.ipynb",
        "Claims 1 and 5: tiny worst-case k-space perturbations (relative L2 norm eps) distort "
        "the reconstructions, and SSIM and PSNR fall as eps grows, for every model.",
    ),
    "fig3_white_box_diffusion": (
        "03_white_box.ipynb",
        "Claim 1 (second half), probed beyond the paper: white-box perturbations found through "
        "the diffusion model's own sampler (short fixed-noise schedule, opt-in), evaluated with "
        "the full sampler; PSNR/SSIM against eps beside the equal-norm random control.",
    ),
    "fig3_attack_convergence": (
        "03_white_box.ipynb",
        "Setting: the attack (Eq. 5, projected Adam, about 100 steps) is close to converged: "
        "damage after the profile's step count against a three times longer run, and the "
        "relative step size checked on validation slices.",
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
    "fig7_open_questions": (
        "07_open_questions.ipynb",
        "Beyond the paper, its open question: is classical TV-regularised compressed sensing "
        "more robust to the same worst-case perturbations, and do a TV step in the diffusion "
        "sampler or averaging several sampler draws defend the diffusion model?",
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


def check_name(name: str) -> str:
    """Validate a figure name (``^fig\\d+_[a-z0-9_]+$``); returns it or raises ValueError."""
    if not isinstance(name, str) or not FIGURE_NAME_RE.match(name):
        raise ValueError(
            f"bad figure name {name!r}: use 'fig<N>_<lowercase_words>', e.g. 'fig1_data_and_mask'"
        )
    return name


def save(fig: Figure, name: str, profile: Profile) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` (150 dpi) and ``<name>.pdf`` into the profile's figure
    folder.  Each file is written to a temporary file first and moved into place with
    ``os.replace``, so a reader never sees a half-written figure.  Returns the two paths."""
    check_name(name)
    out_dir = figures_dir(check_profile(profile).name)
    written = []
    for fmt in FIGURE_FORMATS:
        target = out_dir / f"{name}.{fmt}"
        # no timestamps or software strings: the same figure gives the same bytes
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        atomic_write(
            target,
            lambda tmp, fmt=fmt, metadata=metadata: fig.savefig(
                tmp, format=fmt, dpi=PNG_DPI, metadata=metadata
            ),
        )
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
    """A column mask as a square k-space picture: sampled columns white on black."""
    n = int(mask.numel())
    picture = np.tile(mask.detach().cpu().numpy().astype(np.float64), (n, 1))
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="equal")
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

MODEL_COLUMNS = NAMES
MODEL_COLORS = {
    "zero_filled": "0.5",
    "resunetpp": "tab:blue",
    "irim": "tab:orange",
    "diffusion": "tab:green",
    "tv": "tab:purple",
    "tv_diffusion": "tab:brown",
    "diffusion_mean": "tab:olive",
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
    names = [m for m in LEARNED if histories.get(m)]
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


# ------------------------------------------------------------------------ figures 3 to 5


def zoom_window(diff: torch.Tensor | np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner ``(row, col)`` of the ``size x size`` window where ``|diff|`` is largest
    on average: the argmax of ``|diff|`` smoothed by a ``size x size`` box filter (exact window
    sums from an integral image; the first maximum in row-major order wins).  Places zoomed
    insets where a perturbation changed a reconstruction most, not by hand."""
    a = np.abs(to_image(diff))
    h, w = a.shape
    if not 1 <= size <= min(h, w):
        raise ValueError(f"zoom size {size} must be in [1, {min(h, w)}]")
    s = np.zeros((h + 1, w + 1))
    s[1:, 1:] = a.cumsum(0).cumsum(1)
    win = s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
    r, c = np.unravel_index(int(np.argmax(win)), win.shape)
    return int(r), int(c)


def _box(ax: Axes, r0: int, c0: int, size: int, color: str = "yellow") -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(
        Rectangle((c0 - 0.5, r0 - 0.5), size, size, fill=False, edgecolor=color, linewidth=0.9)
    )


def _eps_subset(eps: Sequence[float], n: int = 5) -> list[float]:
    """Up to ``n`` eps values evenly spread over a grid, always with the first and last."""
    e = list(eps)
    if len(e) <= n:
        return e
    idx = np.unique(np.linspace(0, len(e) - 1, n).round().astype(int))
    return [e[i] for i in idx]


def _eps_index(eps: Sequence[float], value: float) -> int:
    for i, e in enumerate(eps):
        if abs(float(e) - float(value)) < 1e-9:
            return i
    raise KeyError(f"eps {value!r} not in {list(eps)}")


def _short_metrics(psnr: float, ssim: float) -> str:
    return f"{float(psnr):.1f} dB, {float(ssim):.3f}"


def plot_white_box(
    evals: dict[str, object],
    attacks: dict[str, object],
    summary: dict[str, dict[str, dict]],
    slice_pos: int,
    eps_show: Sequence[float] | None = None,
    change_vmax: float | None = None,
) -> Figure:
    """Figure 3: white-box attacks.

    One row per attacked model: (a) its reconstructions of one test slice (position
    ``slice_pos`` in the evaluated slices) across eps (``eps_show``, default up to five values
    of the grid) with PSNR / SSIM; (b) at the largest eps the change of the reconstruction
    ``|f(y + M delta) - f(y)|``, the perturbation in k-space (log10 |M delta|) and in image space
    (Re F^-1 M delta).  Bottom row: (c) PSNR and SSIM against eps (mean and SD over the test
    slices; dashed: the equal-norm random control) and (d) the amplification
    ``||f(y + M delta) - f(y)|| / ||F^-1 M delta||``.

    ``evals[model]``: a :class:`mripkg.robustness.Evaluation` (white-box); ``attacks[model]``:
    its :class:`mripkg.attacks.AttackResult` (same eps grid and slices); ``summary``: the
    ``metrics_white_box.json`` layout.
    """
    import matplotlib.pyplot as plt

    from ..evaluation.selection import eps_key

    use_style()
    names = list(evals)
    first = evals[names[0]]
    shown = list(eps_show) if eps_show is not None else _eps_subset(first.eps)  # type: ignore[attr-defined]
    n_cols = len(shown) + 3
    fig = plt.figure(figsize=(1.45 * n_cols, 1.6 * len(names) + 2.4))
    outer = fig.add_gridspec(2, 1, height_ratios=[1.6 * len(names), 2.0], hspace=0.22)
    grid = outer[0].subgridspec(len(names), n_cols, wspace=0.06, hspace=0.32)
    for r, m in enumerate(names):
        ev, res = evals[m], attacks[m]
        for c, e in enumerate(shown):
            j = _eps_index(ev.eps, e)  # type: ignore[attr-defined]
            ax = fig.add_subplot(grid[r, c])
            image_panel(ax, ev.adv[j, slice_pos])  # type: ignore[attr-defined]
            head = f"ε = {e:.2f}\n" if r == 0 else ""
            ax.set_title(
                head + _short_metrics(ev.psnr[j, slice_pos], ev.ssim[j, slice_pos]),  # type: ignore[attr-defined]
                fontsize=7,
            )
            if c == 0:
                ax.set_ylabel(MODEL_LABELS.get(m, m), fontsize=8)
                if r == 0:
                    panel_letter(ax, "a")
        jm = len(ev.eps) - 1  # type: ignore[attr-defined]
        emax = ev.eps[jm]  # type: ignore[attr-defined]
        change = (ev.adv[jm, slice_pos] - ev.clean[slice_pos]).abs()  # type: ignore[attr-defined]
        vmax = change_vmax if change_vmax is not None else max(float(change.max()), 1e-6)
        ax = fig.add_subplot(grid[r, len(shown)])
        image_panel(ax, change, vmin=0.0, vmax=vmax, cmap="magma")
        ax.set_title((f"|f(y+Mδ) − f(y)|, ε {emax:.2f}\n" if r == 0 else "") + f"max {vmax:.3f}")
        if r == 0:
            panel_letter(ax, "b")
        d = res.delta[_eps_index(res.eps.tolist(), emax), slice_pos]  # type: ignore[attr-defined]
        kimg = log_kspace(d, floor=1e-8)
        on = kimg[kimg > -7.9]
        lo = float(np.percentile(on, 2)) if on.size else -8.0
        ax = fig.add_subplot(grid[r, len(shown) + 1])
        image_panel(ax, kimg, vmin=lo, vmax=float(kimg.max()), cmap="viridis")
        ax.set_title("log10|Mδ| (k-space)" if r == 0 else "")
        from ..physics import ifft2c

        img = ifft2c(d).real
        amp = max(float(img.abs().max()), 1e-12)
        ax = fig.add_subplot(grid[r, len(shown) + 2])
        image_panel(ax, img, vmin=-amp, vmax=amp, cmap="RdBu_r")
        ax.set_title(("Re F⁻¹Mδ (image)\n" if r == 0 else "") + f"±{amp:.3f}")

    bottom = outer[1].subgridspec(1, 3, wspace=0.35)
    ax_p, ax_s, ax_a = (fig.add_subplot(bottom[0, i]) for i in range(3))
    for m in names:
        s = summary[m]
        eps = list(evals[m].eps)  # type: ignore[attr-defined]
        rows = [s[eps_key(e)] for e in eps]
        col = MODEL_COLORS.get(m, "k")
        lab = MODEL_LABELS.get(m, m)
        for ax, key in ((ax_p, "psnr"), (ax_s, "ssim")):
            mean = np.array([r[f"{key}_mean"] for r in rows])
            sd = np.array([r[f"{key}_sd"] for r in rows])
            ax.plot(eps, mean, "o-", color=col, label=lab)
            ax.fill_between(eps, mean - sd, mean + sd, color=col, alpha=0.15, lw=0)
            rnd = [r.get(f"random_{key}_mean") for r in rows]
            if all(v is not None for v in rnd):
                ax.plot(eps, rnd, "--", color=col, lw=0.9)
        amp = [(e, r["amplification"]) for e, r in zip(eps, rows, strict=True)]
        amp = [(e, a) for e, a in amp if a is not None]
        if amp:
            ax_a.plot(*zip(*amp, strict=True), "o-", color=col, label=lab)
        ramp = [(e, r.get("random_amplification")) for e, r in zip(eps, rows, strict=True)]
        ramp = [(e, a) for e, a in ramp if a is not None]
        if ramp:
            ax_a.plot(*zip(*ramp, strict=True), "--", color=col, lw=0.9)
    from matplotlib.lines import Line2D

    ax_p.set_ylabel("PSNR (dB) vs ground truth")
    ax_s.set_ylabel("SSIM vs ground truth")
    ax_a.set_ylabel("‖f(y+Mδ) − f(y)‖ / ‖F⁻¹Mδ‖")
    ax_a.set_yscale("log")
    for ax in (ax_p, ax_s, ax_a):
        ax.set_xlabel("ε (relative L2 norm of Mδ)")
    ax_p.set_title("c   PSNR vs ε (mean ± SD)", loc="left")
    ax_s.set_title("SSIM vs ε (mean ± SD)", loc="left")
    ax_a.set_title("d   amplification", loc="left")
    handles, _ = ax_p.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.3", ls="--", lw=0.9, label="equal-norm random control"))
    ax_p.legend(handles=handles, loc="best")
    return fig


def plot_attack_convergence(
    history: torch.Tensor,
    steps_main: int,
    lr_histories: dict[float, torch.Tensor] | None = None,
    lr_profile: float | None = None,
    title_long: str = "",
    title_lr: str = "",
    slice_labels: Sequence[str] | None = None,
    lr_ylabel: str = "best damage so far (mean over slices)",
) -> Figure:
    """Attack convergence: (a) best damage so far ``||f(y + M delta) - f(y)||^2`` against the
    Adam step for a long run (one line per slice, relative to its final value), with the
    profile's step count marked; (b) the same, mean over problems, for several relative
    learning rates (``lr_histories[lr_rel]``: ``[steps + 1, N]``, raw ``loss_history`` or the
    normalised curves of :func:`mripkg.robustness.step_size_scores`)."""
    import matplotlib.pyplot as plt

    use_style()
    n = 2 if lr_histories else 1
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 2.6), squeeze=False, layout="constrained")
    ax = axes[0, 0]
    best = torch.cummax(history.reshape(history.shape[0], -1), dim=0).values.double()
    rel = best / best[-1].clamp_min(1e-30)
    steps = np.arange(best.shape[0])
    for b in range(rel.shape[1]):
        lab = slice_labels[b] if slice_labels is not None else f"slice {b + 1}"
        ax.plot(steps, rel[:, b].numpy(), lw=1.0, label=lab)
    ax.axvline(steps_main, color="0.4", ls=":", lw=0.9)
    ax.text(steps_main, 0.05, f" {steps_main} steps", color="0.3", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("best damage / damage at the last step")
    ax.set_title(("a   " + title_long).strip(), loc="left")
    ax.legend(loc="lower right")
    if lr_histories:
        ax = axes[0, 1]
        for lr, h in sorted(lr_histories.items()):
            hb = torch.cummax(h.reshape(h.shape[0], -1), dim=0).values.double().mean(1)
            mine = lr_profile is not None and abs(lr - lr_profile) < 1e-12
            label = f"lr_rel = {lr:g}" + (" (profile)" if mine else "")
            ax.plot(np.arange(hb.shape[0]), hb.numpy(), lw=2.0 if mine else 1.0, label=label)
        ax.set_xlabel("Adam step")
        ax.set_ylabel(lr_ylabel)
        ax.set_title(("b   " + title_lr).strip(), loc="left")
        ax.legend(loc="lower right")
    return fig


def plot_small_eps_transfer(
    gt: torch.Tensor,
    clean: torch.Tensor,
    adv: dict[float, torch.Tensor],
    rand: dict[float, torch.Tensor] | None = None,
    zoom: int | None = None,
    title: str = "",
    metrics_text: dict[float, str] | None = None,
) -> Figure:
    """Figure 4: small-eps perturbations transferred to the diffusion model.

    One row per eps: ground truth, clean reconstruction, perturbed reconstruction (same
    sampler noise), their difference (perturbed - clean, signed, one colour scale for every
    row), the difference the equal-norm random control makes (same scale), and zoomed crops of
    ground truth, clean and perturbed reconstruction.  The zoom window (``zoom`` px, default a
    quarter of the image) is placed by :func:`zoom_window` where the smoothed |difference| of
    that row is largest; a yellow box marks it on the full images.
    """
    import matplotlib.pyplot as plt

    use_style()
    g, c = to_image(gt), to_image(clean)
    h = g.shape[0]
    size = int(zoom) if zoom else max(8, h // 4)
    diffs = {e: to_image(a) - c for e, a in adv.items()}
    rdiffs = {e: to_image(r) - c for e, r in (rand or {}).items()}
    vmax = max([float(np.abs(d).max()) for d in diffs.values()] + [1e-6])
    n_cols = 8 if rand else 7
    fig = plt.figure(figsize=(1.45 * n_cols, 1.75 * len(adv) + 0.35), layout="constrained")
    axes = fig.subplots(len(adv), n_cols, squeeze=False)
    for r, (e, a) in enumerate(adv.items()):
        r0, c0 = zoom_window(diffs[e], size)
        row = axes[r]
        image_panel(row[0], g, "ground truth" if r == 0 else None)
        image_panel(row[1], c, "clean reconstruction" if r == 0 else None)
        image_panel(row[2], a, None)
        extra = f"\n{metrics_text[e]}" if metrics_text and e in metrics_text else ""
        row[2].set_title(f"perturbed, ε = {e:.2f}{extra}")
        image_panel(row[3], diffs[e], vmin=-vmax, vmax=vmax, cmap="RdBu_r")
        row[3].set_title(f"perturbed − clean\n(±{vmax:.3f})")
        for ax in row[:4]:
            _box(ax, r0, c0, size)
        k = 4
        if rand:
            if e in rdiffs:
                image_panel(row[k], rdiffs[e], vmin=-vmax, vmax=vmax, cmap="RdBu_r")
                row[k].set_title("random control − clean\n(same scale)")
                _box(row[k], r0, c0, size)
            else:
                row[k].axis("off")
            k += 1
        sl = (slice(r0, r0 + size), slice(c0, c0 + size))
        for ax, img, lab in ((row[k], g, "zoom: truth"), (row[k + 1], c, "zoom: clean")):
            image_panel(ax, img[sl], lab)
        image_panel(row[k + 2], to_image(a)[sl], "zoom: perturbed")
        row[0].set_ylabel(f"ε = {e:.2f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    return fig


def plot_transfer_curves(
    table: dict[str, dict[str, dict[str, dict]]],
    sources: Sequence[str],
    targets: Sequence[str],
    matrix_eps: float,
    matrix_targets: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
) -> Figure:
    """Figure 5: black-box transfer.

    Per source (one row): PSNR and SSIM against eps for the white-box surrogate (the source
    itself) and every other target (solid; same perturbed measurement), each with its
    equal-norm random control (dashed, same colour).  Right: the transfer matrix, PSNR drop
    (dB, clean - perturbed, mean over slices) at ``matrix_eps`` for every source (rows, and a
    last row for the random control) and target (columns); the diagonal is white-box.
    ``table``: the ``metrics_transfer.json`` layout.
    """
    import matplotlib.pyplot as plt

    from ..evaluation.scoring import transfer_matrix
    from ..evaluation.selection import eps_key

    use_style()
    lab = {**MODEL_LABELS, "diffusion_image_route": "diffusion\n(image route)", **(labels or {})}
    cols = list(matrix_targets) if matrix_targets is not None else list(targets)
    fig = plt.figure(figsize=(10.5, 2.5 * len(sources) + 0.3), layout="constrained")
    gs = fig.add_gridspec(len(sources), 3, width_ratios=[1, 1, 1.25])
    palette = {**MODEL_COLORS}
    for r, s in enumerate(sources):
        ax_p = fig.add_subplot(gs[r, 0])
        ax_s = fig.add_subplot(gs[r, 1])
        for t in targets:
            per = table.get(s, {}).get(t)
            if not per:
                continue
            eps = sorted(float(k) for k in per)
            rows = [per[eps_key(e)] for e in eps]
            col = palette.get(t, "k")
            kind = "white-box" if t == s else "transfer"
            for ax, key in ((ax_p, "psnr"), (ax_s, "ssim")):
                ax.plot(
                    eps,
                    [x[f"{key}_mean"] for x in rows],
                    "o-",
                    color=col,
                    label=f"{lab.get(t, t)} ({kind})".replace("\n", " "),
                )
                drop = [x.get(f"random_{key}_drop") for x in rows]
                if all(v is not None for v in drop):
                    base = [x[f"clean_{key}_mean"] for x in rows]
                    ax.plot(
                        eps,
                        [b - d for b, d in zip(base, drop, strict=True)],
                        "--",
                        color=col,
                        lw=0.9,
                    )
        ax_p.set_ylabel(f"source: {lab.get(s, s)}\nPSNR (dB)".replace("\n(image route)", ""))
        ax_s.set_ylabel("SSIM")
        for ax in (ax_p, ax_s):
            ax.set_xlabel("ε")
        if r == 0:
            ax_p.set_title("a   PSNR vs ε (dashed: random control)", loc="left")
            ax_s.set_title("b   SSIM vs ε (dashed: random control)", loc="left")
        ax_p.legend(loc="best", fontsize=6)
    ax = fig.add_subplot(gs[:, 2])
    mat = transfer_matrix(table, sources, cols, matrix_eps)
    rnd = transfer_matrix(table, sources, cols, matrix_eps, key="random_psnr_drop")
    rnd_row = np.array(
        [
            np.nanmean(rnd[:, j]) if np.isfinite(rnd[:, j]).any() else np.nan
            for j in range(len(cols))
        ]
    )
    full = np.vstack([mat, rnd_row[None]])
    finite = full[np.isfinite(full)]
    vmax = max(float(finite.max()), 1e-3) if finite.size else 1.0
    im = ax.imshow(np.ma.masked_invalid(full), cmap="magma", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([lab.get(t, t) for t in cols], rotation=35, ha="right")
    ax.set_yticks(range(len(sources) + 1))
    ax.set_yticklabels([lab.get(s, s) for s in sources] + ["random control"])
    ax.set_xlabel("target (reconstructs the perturbed measurement)")
    ax.set_ylabel("source (perturbation crafted white-box on)")
    for i in range(full.shape[0]):
        for j in range(full.shape[1]):
            v = full[i, j]
            txt = "n/a" if not np.isfinite(v) else f"{v:.2f}"
            if i < len(sources) and sources[i] == cols[j]:
                txt += "\n(white-box)"
            bright = np.isfinite(v) and v > 0.6 * vmax
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=7,
                color="black" if bright else "white",
            )
    ax.set_title(f"c   PSNR drop (dB) at ε = {matrix_eps:.2f}", loc="left")
    fig.colorbar(im, ax=ax, shrink=0.7, label="PSNR drop (dB)")
    return fig


def figure_files(profile: Profile) -> list[Path]:
    """The figure files (``fig*.png`` / ``fig*.pdf``) present for a profile, sorted."""
    d = figures_dir(check_profile(profile).name)
    return sorted(
        p
        for p in d.iterdir()
        if p.is_file() and p.suffix[1:] in FIGURE_FORMATS and FIGURE_NAME_RE.match(p.stem)
    )


# ------------------------------------------------------------------------ figure 6


def plot_artifacts(
    maps: dict[str, torch.Tensor | np.ndarray],
    values: dict[str, torch.Tensor | np.ndarray],
    curves: dict[str, dict[float, dict]],
    colors: dict[str, str] | None = None,
    map_text: dict[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Figure 6: what the perturbation artifacts ``f(y + M delta) - f(y)`` look like.

    Top row (a): one artifact map per entry of ``maps`` (label -> ``[H, W]``), each on its own
    symmetric diverging scale, with ``map_text`` beneath.  Bottom row: (b) histograms of the
    standardised artifact values inside the head (``values``: label -> 1-D), log density,
    against the N(0, 1) density (colours name the curves, as the titles of (a) do); (c)
    excess kurtosis, (d) adjacent-pixel correlation and (e) correlation with the ground
    truth's edges against eps (``curves``: label -> {eps: row of
    :func:`mripkg.artifacts.summarize`}, mean and SD); grey lines: white Gaussian noise.
    """
    import matplotlib.pyplot as plt

    use_style()
    col = {**MODEL_COLORS, **(colors or {})}
    labels = list(maps)
    n_top = max(len(labels), 4)
    fig = plt.figure(figsize=(1.75 * n_top, 4.3), layout="constrained")
    gs = fig.add_gridspec(2, 1, height_ratios=[1.05, 1])
    top = gs[0].subgridspec(1, n_top).subplots()
    for ax, lab in zip(top, labels, strict=False):
        img = to_image(maps[lab])
        v = float(np.abs(img).max()) or 1.0
        im = ax.imshow(img, cmap="RdBu_r", vmin=-v, vmax=v)
        no_ticks(ax)
        ax.set_title(lab, color=col.get(lab, "k"))
        if map_text and lab in map_text:
            ax.set_xlabel(map_text[lab], fontsize=6.5)
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=[-v, 0, v])
        cb.ax.tick_params(labelsize=5.5)
        cb.ax.set_yticklabels([f"{-v:.2g}", "0", f"{v:.2g}"])
    for ax in top[len(labels) :]:
        ax.axis("off")
    panel_letter(top[0], "a", color="black")
    bottom = gs[1].subgridspec(1, 4).subplots()
    ax = bottom[0]
    bins = np.linspace(-6, 6, 61)
    for lab, v in values.items():
        arr = np.asarray(v, dtype=float)
        if arr.size == 0:
            continue
        dens, edges = np.histogram(arr, bins=bins, density=True)
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax.semilogy(centres, np.where(dens > 0, dens, np.nan), "-", color=col.get(lab), label=lab)
    z = np.linspace(-6, 6, 241)
    ax.semilogy(z, np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi), "k:", lw=1, label="N(0, 1)")
    ax.set_ylim(1e-4, 1.5)
    ax.set_xlabel("artifact / its SD")
    ax.set_ylabel("density")
    ax.set_title("b   colours as in (a); dotted: N(0, 1)", loc="left", fontsize=6.5)
    stats = [
        ("excess_kurtosis", "excess kurtosis", 0.0),
        ("neighbour_corr", "adjacent-pixel correlation", 0.0),
        ("edge_corr", "corr. of |artifact| with edges", 0.0),
    ]
    for ax, (key, name, ref), letter in zip(bottom[1:], stats, "cde", strict=True):
        for lab, per_eps in curves.items():
            eps = sorted(per_eps)
            m = [per_eps[e][key] for e in eps]
            sd = [per_eps[e].get(f"{key}_sd") or 0.0 for e in eps]
            ax.errorbar(eps, m, yerr=sd, fmt="o-", color=col.get(lab), capsize=2, label=lab)
        ax.axhline(ref, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel("ε")
        ax.set_ylabel(name)
        ax.set_title(letter, loc="left", fontweight="bold")
    if title:
        fig.suptitle(title, fontsize=8)
    return fig


def grid_axes(fig: Figure, n_rows: int, n_cols: int, **kw) -> Sequence[Sequence[Axes]]:
    """``n_rows x n_cols`` axes as a nested list (always 2-D, unlike ``plt.subplots``)."""
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **kw)
    return [list(row) for row in axes]


# ------------------------------------------------------------------------ figure 7 (beyond)


def plot_open_questions(
    curves: dict[str, dict[str, dict]],
    table: dict[str, dict],
    sources: Sequence[str],
    bar_eps: float,
    images: Sequence[tuple[str, torch.Tensor]] = (),
    labels: dict[str, str] | None = None,
) -> Figure:
    """Figure 7 (beyond the paper): is TV more robust, and do the sampler changes defend?

    a: PSNR against eps under the white-box attack (solid) and the equal-norm random control
    (dashed) per model; ``curves``: ``{model: whitebox_summary}``.  b: PSNR drop at
    ``bar_eps`` for every model of ``table`` (:func:`mripkg.open_questions.drop_table`):
    white-box, transferred from each source, control.  c: example images ``(title, [1, H, W]
    or [H, W])``, on one grey scale.
    """
    import matplotlib.pyplot as plt

    from ..evaluation.selection import eps_key

    use_style()
    lab = {**MODEL_LABELS, **(labels or {})}
    n_img = len(images)
    fig = plt.figure(figsize=(11, 6.2 if n_img else 3.4), layout="constrained")
    gs = fig.add_gridspec(2 if n_img else 1, max(n_img, 2))
    ax = fig.add_subplot(gs[0, : max(n_img, 2) // 2])
    for m, per in curves.items():
        eps = sorted(float(k) for k in per)
        rows = [per[eps_key(e)] for e in eps]
        col = MODEL_COLORS.get(m, "k")
        ax.plot(eps, [r["psnr_mean"] for r in rows], "o-", color=col, label=lab.get(m, m))
        rnd = [r.get("random_psnr_mean") for r in rows]
        if all(v is not None for v in rnd):
            ax.plot(eps, rnd, "--", color=col, lw=0.9)
    ax.set_xlabel("ε")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("a   white-box attack (dashed: random control)", loc="left")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(gs[0, max(n_img, 2) // 2 :])
    k = eps_key(bar_eps)
    kinds = ["white-box", *sources, "control"]
    width = 0.8 / len(kinds)
    names = list(table)
    for i, kind in enumerate(kinds):
        vals = []
        for t in names:
            r = table[t]
            if kind == "white-box":
                v = r["white_box"].get(k)
            elif kind == "control":
                v = r["control"].get(k)
            else:
                v = None if kind == t else r["transfer"].get(kind, {}).get(k)
            vals.append(np.nan if v is None else v)
        color = "0.6" if kind == "control" else MODEL_COLORS.get(kind, "k")
        label = kind if kind in ("white-box", "control") else f"from {lab.get(kind, kind)}"
        ax.bar(
            np.arange(len(names)) + (i - (len(kinds) - 1) / 2) * width,
            vals,
            width,
            color=color,
            label=label,
            hatch="//" if kind == "white-box" else None,
            edgecolor="k" if kind == "white-box" else None,
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([lab.get(t, t) for t in names], rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("PSNR drop (dB)")
    ax.set_title(f"b   PSNR drop at ε = {bar_eps:g}", loc="left")
    ax.legend(fontsize=6, ncol=2)
    for j, (title, img) in enumerate(images):
        ax = fig.add_subplot(gs[1, j])
        ax.imshow(to_image(img), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=7)
        no_ticks(ax)
    if n_img:
        panel_letter(fig.axes[2], "c")
    return fig


__all__ = [
    "fig7_open_questions",
    "fig6_artifacts",
    "fig4_small_eps_transfer",
    "fig5_transfer_curves",
    "fig3_attack_convergence",
    "fig3_white_box",
    "show",
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
    "plot_artifacts",
    "plot_attack_convergence",
    "plot_clean_reconstructions",
    "plot_data_and_mask",
    "plot_small_eps_transfer",
    "plot_training_curves",
    "plot_transfer_curves",
    "plot_white_box",
    "save",
    "to_image",
    "use_style",
    "zoom_window",
]


# --------------------------------------------------------------------------------------------
# one call per notebook figure: plot, save (PNG + PDF), close; the saved paths


def show(paths: Sequence[Path]) -> None:
    """Display the PNG of a saved figure (the first of ``paths``) in a notebook."""
    from IPython.display import Image, display

    display(Image(filename=str(paths[0])))


def _saved(fig: Figure, name: str, profile: Profile) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = save(fig, name, profile)
    plt.close(fig)
    return paths


def fig3_white_box(wb: WhiteBox) -> list[Path]:
    """Figure 3 of a :class:`~mripkg.experiments.whitebox.WhiteBox` run (and, when the
    diffusion white-box ran, its diffusion panel); prints and returns the saved paths."""
    from .. import paths as _paths

    src = wb.sources
    fig = plot_white_box(
        {m: wb.evals[m] for m in src}, {m: wb.attacks[m] for m in src}, wb.summary, wb.pos
    )
    fig_paths = _saved(fig, f"fig3_white_box{wb.suffix}", wb.prof)
    print("saved:", ", ".join(str(p.relative_to(_paths.REPO_ROOT)) for p in fig_paths))
    show(fig_paths)
    if wb.run_diffusion:
        dpos = len(wb.ddata) // 2
        fig = plot_white_box(
            {"diffusion": wb.evals["diffusion"]},
            {"diffusion": wb.attacks["diffusion"]},
            wb.summary,
            dpos,
        )
        d_paths = _saved(fig, f"fig3_white_box_diffusion{wb.suffix}", wb.prof)
        fig_paths += d_paths
        print("saved:", ", ".join(str(p.relative_to(_paths.REPO_ROOT)) for p in d_paths))
        show(d_paths)
    return fig_paths


def fig3_attack_convergence(wb: WhiteBox) -> list[Path]:
    """The convergence and step-size figure of
    :meth:`~mripkg.experiments.whitebox.WhiteBox.convergence`; the saved paths."""
    conv, lr = wb.conv_check, wb.lr_check
    fig = plot_attack_convergence(
        conv.history,
        wb.prof.attack.steps,
        lr.curves,
        lr_profile=wb.prof.attack.lr_rel,
        title_long=f"ResUNet++, ε = {wb.conv_eps:g}, test slices {conv.slice_ids}",
        title_lr=f"step size: {wb.n_val} validation slices, ε {wb.lr_eps}, 2 models",
        slice_labels=[f"test slice {i}" for i in conv.slice_ids],
        lr_ylabel="best damage so far / best of any step size",
    )
    paths = _saved(fig, f"fig3_attack_convergence{wb.suffix}", wb.prof)
    show(paths)
    return paths


def fig4_small_eps_transfer(tr: Transfer, figure_slice: int = -1) -> list[Path]:
    """Figure 4 of a :class:`~mripkg.experiments.transfer.Transfer` run: ResUNet++ ->
    diffusion at the small eps, on one slice (``-1``: the middle one) with a zoom window
    where the change is largest; prints the RMS change there and in the whole image."""
    prof, ddata, d_ids = tr.prof, tr.ddata, tr.d_ids
    ev4 = tr.evals[("resunetpp", "diffusion")]
    pos = len(ddata) // 2 if figure_slice < 0 else min(int(figure_slice), len(ddata) - 1)
    size = max(8, prof.image_size // 4)
    adv4, rand4, text4 = {}, {}, {}
    for e in tr.small_eps:
        j = ev4.index(e)
        adv4[e], rand4[e] = ev4.adv[j, pos], ev4.rand[j, pos]
        text4[e] = f"{float(ev4.psnr[j, pos]):.2f} dB (clean {float(ev4.psnr_clean[pos]):.2f})"
        d_adv = (adv4[e] - ev4.clean[pos])[0]
        d_rnd = (rand4[e] - ev4.clean[pos])[0]
        r0, c0 = zoom_window(d_adv, size)
        win = (slice(r0, r0 + size), slice(c0, c0 + size))
        print(
            f"eps {e:g}: window rows {r0}-{r0 + size - 1}, cols {c0}-{c0 + size - 1}; RMS change "
            f"there {float(d_adv[win].pow(2).mean().sqrt()):.4f} (random control "
            f"{float(d_rnd[win].pow(2).mean().sqrt()):.4f}); whole image "
            f"{float(d_adv.pow(2).mean().sqrt()):.4f} ({float(d_rnd.pow(2).mean().sqrt()):.4f})"
        )
    fig = plot_small_eps_transfer(
        ddata.images[pos],
        ev4.clean[pos],
        adv4,
        rand4,
        zoom=size,
        metrics_text=text4,
        title=f"ResUNet++ -> diffusion, test slice {d_ids[pos]}, sampler seed {ev4.seed}",
    )
    paths = _saved(fig, "fig4_small_eps_transfer", prof)
    show(paths)
    return paths


def fig5_transfer_curves(tr: Transfer) -> list[Path]:
    """Figure 5 of a :class:`~mripkg.experiments.transfer.Transfer` run (after
    :meth:`~mripkg.experiments.transfer.Transfer.summarise`)."""
    from ..experiments.transfer import MATRIX_TARGETS

    fig = plot_transfer_curves(
        tr.table,
        tr.sources,
        list(LEARNED),
        tr.prof.attack.route_eps,
        MATRIX_TARGETS,
    )
    paths = _saved(fig, "fig5_transfer_curves", tr.prof)
    show(paths)
    return paths


def fig6_artifacts(art: Artifacts, figure_slice: int = -1) -> list[Path]:
    """Figure 6 of an :class:`~mripkg.experiments.artifacts.Artifacts` run: the artifact maps
    of one slice (``-1``: the middle one) at the shown eps, their standardised values and the
    statistics against eps; prints and returns the saved paths."""
    from .. import paths as _paths
    from ..evaluation.artifacts import standardised_values
    from ..evaluation.selection import eps_key

    ddata, d_ids, test, groups, grids = art.ddata, art.d_ids, art.test, art.groups, art.grids
    pos = len(ddata) // 2 if figure_slice < 0 else min(int(figure_slice), len(ddata) - 1)
    sid = d_ids[pos]
    main, refs = art.main, list(art.refs)
    colors = dict(
        zip(
            [*main, *refs],
            ["tab:blue", "tab:orange", "tab:green", "tab:olive", "0.45", "tab:purple", "black"],
            strict=True,
        )
    )
    maps, text, values = {}, {}, {}
    for lab in [*main, *refs]:
        eps, arts, ids = groups[lab]
        j = 0 if lab in refs else [eps_key(e) for e in eps].index(art.k_star)
        i = ids.index(sid)
        maps[lab] = arts[j, i, 0]
        st = {k: float(v[j, i]) for k, v in grids[lab].items()}
        text[lab] = f"kurt {st['excess_kurtosis']:.1f}, adj {st['neighbour_corr']:.2f}"
        values[lab] = standardised_values(arts[j], test.masks[ids])
    curves = {
        lab: {float(k): v for k, v in art.summary[lab].items() if float(k) > 0} for lab in main
    }
    fig = plot_artifacts(
        maps,
        values,
        curves,
        colors=colors,
        map_text=text,
        title=f"Artifacts f(y + Mδ) − f(y) at ε = {art.e_star:g}, test slice {sid}",
    )
    fig_paths = _saved(fig, "fig6_artifacts", art.prof)
    print("saved:", ", ".join(str(p.relative_to(_paths.REPO_ROOT)) for p in fig_paths))
    show(fig_paths)
    return fig_paths


def fig7_open_questions(oq: OpenQuestions) -> list[Path]:
    """Figure 7 of an :class:`~mripkg.experiments.open_questions.OpenQuestions` run (after
    its drop table); the saved paths."""
    from ..experiments.open_questions import SOURCES

    fig = plot_open_questions(oq.curves, oq.table, SOURCES, max(oq.table_eps), oq.figure_images())
    paths = _saved(fig, "fig7_open_questions", oq.prof)
    show(paths)
    return paths
