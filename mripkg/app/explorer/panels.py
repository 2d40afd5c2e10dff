"""The explorer's figure: the panels of one :class:`~.study.View` (ground truth, clean and
perturbed reconstructions, artifact, perturbation in k-space and image space, numbers, PSNR-vs-eps
curve) on fixed colour scales, and the small matplotlib helpers the widgets share (PNG encoding,
image updates)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ...models import MODEL_LABELS
from .study import RANDOM, View, _source_label

#: Fixed colour scales of the explorer's panels, the same in every view so that views compare
#: by eye.  Images are min-max normalised per volume to [0, 1] (:mod:`mripkg.data`); k-space
#: is their orthonormal FFT.  Values outside a scale are drawn in its end colour (the colour
#: bars' arrows).
IMAGE_CLIM = (0.0, 1.0)
#: artifact f(y + M delta) - f(y), image intensity
ARTIFACT_CLIM = (-0.4, 0.4)
#: Re F^-1 M delta, image intensity
IMAGE_DELTA_CLIM = (-0.15, 0.15)
#: log10 |M delta| (orthonormal FFT of the [0, 1] image)
KSPACE_CLIM = (-5.0, 0.0)
#: Text sizes of the explorer figure (points; at least 9).
EXPLORER_RC = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
}


def _figure(figsize: tuple[float, float], dpi: int = 90):
    from matplotlib.figure import Figure

    from ...report.figures import use_style

    use_style()
    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _png(fig) -> bytes:
    """PNG bytes of a figure, drawn on its own Agg canvas and encoded with light compression
    (half the time of ``savefig``: no second draw, fast zlib level)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
    buf = io.BytesIO()
    rgba.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _tick_label(x: float) -> str:
    s = f"{x:g}"
    return "0" if s in ("-0", "0") else s.replace("-", "−")


class Panels:
    """The explorer's figure: ground truth, clean and perturbed reconstruction, artifact,
    ``|M delta|`` (log10), ``Re F^-1 M delta``, the numbers and the PSNR-vs-eps curve; built
    once, updated in place by :meth:`draw` (or :meth:`draw_missing`).  Every image panel has a
    fixed colour scale (:data:`ARTIFACT_CLIM` etc.) with its unit on the colour bar; the layout
    is re-solved at every draw (constrained), so changing labels never clip."""

    IMAGES = ("gt", "clean", "perturbed", "artifact", "kspace", "image_delta")

    def __init__(self) -> None:
        import matplotlib as mpl

        from ...report.figures import no_ticks

        self.fig = _figure((12.0, 5.7), dpi=100)
        with mpl.rc_context(EXPLORER_RC):
            axs = self.fig.subplots(2, 4)
            self.ax = dict(
                zip(
                    [*self.IMAGES[:4], "kspace", "image_delta", "text", "curve"],
                    axs.flatten(),
                    strict=True,
                )
            )
            self.im: dict[str, Any] = {}
            self.note: dict[str, Any] = {}
            blank = np.zeros((8, 8))
            scales = {
                "gt": ("gray", IMAGE_CLIM),
                "clean": ("gray", IMAGE_CLIM),
                "perturbed": ("gray", IMAGE_CLIM),
                "artifact": ("RdBu_r", ARTIFACT_CLIM),
                "kspace": ("magma", KSPACE_CLIM),
                "image_delta": ("RdBu_r", IMAGE_DELTA_CLIM),
            }
            for k, (cmap, (lo, hi)) in scales.items():
                cm = mpl.colormaps[cmap].with_extremes(bad="0.85")  # NaN: not measured / shown
                self.im[k] = self.ax[k].imshow(blank, cmap=cm, vmin=lo, vmax=hi)
                no_ticks(self.ax[k])
                self.note[k] = self.ax[k].text(
                    0.5,
                    0.5,
                    "",
                    transform=self.ax[k].transAxes,
                    ha="center",
                    va="center",
                    color="0.25",
                    fontsize=10,
                    wrap=True,
                )
            bars = {
                "perturbed": ("intensity (volume 0–1)", (0, 0.5, 1), "max"),
                "artifact": ("Δ intensity", (-0.4, -0.2, 0, 0.2, 0.4), "both"),
                "kspace": ("log₁₀ |Mδ| (ortho FFT)", (-5, -4, -3, -2, -1, 0), "both"),
                "image_delta": ("intensity", (-0.15, -0.1, -0.05, 0, 0.05, 0.1, 0.15), "both"),
            }
            for k, (label, ticks, extend) in bars.items():
                # inset colour bars: every image panel keeps the same size
                cax = self.ax[k].inset_axes((1.03, 0.04, 0.05, 0.92))
                cb = self.fig.colorbar(self.im[k], cax=cax, extend=extend)
                cb.set_ticks(list(ticks), labels=[_tick_label(t) for t in ticks])
                cb.set_label(label, fontsize=9, labelpad=2)
                cax.tick_params(labelsize=9)
            self.ax["text"].axis("off")
            self.text = self.ax["text"].text(
                0.0, 1.0, "", va="top", ha="left", family="DejaVu Sans Mono", fontsize=9.5
            )

    def _titles(self, v_target: str, slice_id: int, eps: float) -> None:
        lab = MODEL_LABELS[v_target]
        self.ax["gt"].set_title(f"ground truth\ntest slice {slice_id}")
        self.ax["clean"].set_title(f"{lab}, clean f(y)")
        self.ax["perturbed"].set_title(f"perturbed f(y + Mδ), ε = {eps:g}")
        self.ax["artifact"].set_title("artifact\nf(y + Mδ) − f(y)")
        self.ax["kspace"].set_title("|Mδ| in k-space\n(grey: columns not sampled)")
        self.ax["image_delta"].set_title("Re F⁻¹Mδ\n(image domain)")

    def draw(self, v: View) -> None:
        """Put one view into the figure."""
        import matplotlib as mpl

        with mpl.rc_context(EXPLORER_RC):
            self._titles(v.target, v.slice_id, v.eps)
            lab = MODEL_LABELS[v.target]
            for k in self.IMAGES:
                self.note[k].set_text("")
            _set_image(self.im["gt"], v.gt)
            _set_image(self.im["clean"], v.clean)
            self.ax["clean"].set_title(
                f"{lab}, clean f(y)\n{v.psnr_clean:.2f} dB, SSIM {v.ssim_clean:.3f}"
            )
            _set_image(self.im["perturbed"], v.perturbed)
            self.ax["perturbed"].set_title(
                f"perturbed f(y + Mδ), ε = {v.eps:g}\n{v.psnr:.2f} dB, SSIM {v.ssim:.3f}"
            )
            _set_image(self.im["artifact"], v.artifact)
            with np.errstate(divide="ignore"):
                k = np.log10(v.kspace)
            _set_image(self.im["kspace"], np.where(v.kspace > 0, k, np.nan))
            _set_image(self.im["image_delta"], v.image_delta)
            src = "white-box" if v.source == v.target else _source_label(v.source)
            seed = f", seed {v.seed}" if v.target == "diffusion" else ""
            self.text.set_text(
                "\n".join(
                    [
                        f"target  {lab}{seed}",
                        f"source  {src}",
                        f"ε       {v.eps:g}",
                        f"‖Mδ‖/‖k‖ = {v.rel_norm:.4f}",
                        "",
                        "           PSNR dB   SSIM",
                        f"clean      {v.psnr_clean:7.2f}  {v.ssim_clean:.3f}",
                        f"perturbed  {v.psnr:7.2f}  {v.ssim:.3f}",
                        f"drop       {v.psnr_clean - v.psnr:7.2f}  {v.ssim_clean - v.ssim:.3f}",
                    ]
                )
            )
            self._curve(v.target, v.source, v.slice_id, v.eps, v.psnr, v.curve)

    def draw_missing(
        self,
        gt: np.ndarray,
        target: str,
        source: str,
        slice_id: int,
        eps: float,
        curve: dict[str, Any],
        parts: dict[str, np.ndarray],
    ) -> None:
        """A setting that is not saved: the ground truth, the saved curve and whatever of the
        view is saved (``parts``: ``clean``, ``kspace`` = ``|M delta|``, ``image_delta``); the
        other panels blank with a note."""
        import matplotlib as mpl

        with mpl.rc_context(EXPLORER_RC):
            self._titles(target, slice_id, eps)
            _set_image(self.im["gt"], gt)
            self.note["gt"].set_text("")
            for k in self.IMAGES[1:]:
                a = parts.get(k)
                if k == "kspace" and a is not None:
                    with np.errstate(divide="ignore"):
                        a = np.where(a > 0, np.log10(a), np.nan)
                _set_image(self.im[k], np.full_like(gt, np.nan) if a is None else a)
                self.note[k].set_text("not computed yet" if a is None else "")
            self.text.set_text(
                "\n".join(
                    [
                        f"target  {MODEL_LABELS[target]}",
                        f"source  {'white-box' if source == target else _source_label(source)}",
                        f"ε       {eps:g}",
                        "",
                        "Not saved yet: the button",
                        "above computes it.",
                    ]
                )
            )
            self._curve(target, source, slice_id, eps, None, curve)

    def _curve(
        self,
        target: str,
        source: str,
        slice_id: int,
        eps: float,
        psnr: float | None,
        c: dict[str, Any],
    ) -> None:
        ax = self.ax["curve"]
        ax.clear()
        if c.get("eps"):
            ax.plot(
                c["eps"],
                c["mean"],
                "-o",
                color="tab:blue",
                ms=4,
                label=f"mean, {c['n_slices']} slices",
            )
            ax.plot(
                c["eps"],
                c["slice"],
                "-s",
                color="tab:orange",
                ms=3.5,
                lw=1,
                label=f"slice {slice_id}",
            )
        if c.get("control") and source != RANDOM:
            ax.plot(
                c["control_eps"],
                c["control"],
                "--^",
                color="0.45",
                ms=3.5,
                lw=1,
                label="random control, mean",
            )
        if c.get("reference_eps"):
            ax.plot(
                c["reference_eps"],
                c["reference"],
                ":",
                color="tab:blue",
                lw=1,
                alpha=0.6,
                label=c["reference_label"],
            )
        if psnr is not None:
            ax.plot([eps], [psnr], "*", color="tab:red", ms=12, label="this view")
        ax.set_xlabel("ε = ‖Mδ‖ / ‖k‖")
        ax.set_ylabel("PSNR (dB)")
        src = "white-box" if source == target else _source_label(source)
        title = f"PSNR vs ε\n{MODEL_LABELS[target]}, {src}"
        ax.set_title(title if c.get("eps") else f"{title}: no saved curve")
        if ax.lines:
            ys = [float(y) for ln in ax.lines for y in ln.get_ydata() if np.isfinite(y)]
            lo, hi = min(ys), max(ys)
            span = max(hi - lo, 0.5)
            n = len(ax.lines)  # room under the curves for the legend (about 0.16 span a line)
            ax.set_ylim(lo - (0.12 + 0.16 * n) * span, hi + 0.1 * span)
            ax.legend(loc="lower left", fontsize=9, handlelength=1.8, borderaxespad=0.3)
        ax.set_xlim(-0.004, max(0.08, eps, *c.get("eps", [0.0])) + 0.004)

    def _layout_key(self) -> tuple:
        """What the layout depends on: the titles' line counts and the widest tick label of
        the curve (every other label is fixed)."""
        ax = self.ax["curve"]
        ticks = ax.yaxis.get_major_locator()()
        labels = ax.yaxis.get_major_formatter().format_ticks(list(ticks))
        titles = tuple(a.get_title().count("\n") for a in self.ax.values())
        return titles, max((len(t) for t in labels), default=0)

    def png(self) -> bytes:
        """The figure as PNG bytes.  The constrained layout is solved again whenever a label
        it depends on changes size (:meth:`_layout_key`), else kept (solving it costs about as
        much as drawing)."""
        import matplotlib as mpl

        key = self._layout_key()
        if key != self._solved_for:
            self.fig.set_layout_engine("constrained")
        with mpl.rc_context(EXPLORER_RC):
            out = _png(self.fig)
        if key != self._solved_for:
            self.fig.set_layout_engine("none")
            self._solved_for = key
        return out

    _solved_for: tuple = ()


def _set_image(im: Any, a: np.ndarray) -> None:
    """Replace an ``AxesImage``'s data and fit its extent and its axes to the new shape (pixel
    coordinates, so overlays such as contours line up)."""
    h, w = a.shape
    im.set_data(a)
    im.set_extent((-0.5, w - 0.5, h - 0.5, -0.5))
    im.axes.set_xlim(-0.5, w - 0.5)
    im.axes.set_ylim(h - 0.5, -0.5)
