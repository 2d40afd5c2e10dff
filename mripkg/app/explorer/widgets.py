"""The explorer's ipywidgets front end: :class:`Explorer` (notebook 06, built by
:func:`explore`) over a :class:`~.study.Study` drawn by :class:`~.panels.Panels`, and the
axial-slice scroller of notebook 01 (:class:`SliceScroller`, :func:`slice_scroller`)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
from torch import Tensor

from ... import metrics
from ...models import MODEL_LABELS
from ...physics import MRIOperator, ifft2c
from ...profiles import Profile
from .panels import Panels, _figure, _png, _set_image
from .study import (
    RANDOM,
    SOURCES,
    TARGETS,
    ExplorerError,
    Job,
    Missing,
    Study,
    View,
    _np,
    describe_plan,
    duration,
    load_study,
)

#: CSS of the status lines (the HTML widget's default line height is that of a control row).
_TEXT = "line-height: 1.35; margin-bottom: 4px;"
_SMALL = "font-size: 92%; color: #444;"


class _Cancelled(BaseException):
    """Raised inside a running computation by :meth:`Explorer.cancel` (a BaseException, so that
    no ``except Exception`` on the way swallows it)."""


class Explorer:
    """ipywidgets UI over a :class:`Study`: controls for target model, perturbation, sampler
    seed, test slice and eps; one image of the panels; a status line; a button that computes a
    setting that is not saved, with a cancel button and a progress bar.

    The controls offer only settings that can be shown from the saved results (each control's
    choices follow the controls above it: target -> perturbation -> seed -> slice -> eps; a
    value that is not offered any more moves to the nearest one that is).  The check box
    :attr:`all_values` offers every value instead, marking those that are not saved; choosing
    one shows the button, which says what it will compute and about how long it takes.

    Set the controls' ``value`` (or call :meth:`set`) and the panels follow (:attr:`view` holds
    the data shown, :attr:`message` the status, :attr:`last_update_s` the time the last update
    took)."""

    def __init__(
        self,
        study: Study,
        *,
        slice_id: int | None = None,
        target: str = "diffusion",
        source: str = "resunetpp",
        eps: float | None = None,
        seed: int | None = None,
        all_values: bool = False,
    ) -> None:
        import ipywidgets as w

        self.study = study
        p = study.profile
        ids = study.diffusion_ids
        slice_id = ids[len(ids) // 2] if slice_id is None else slice_id
        eps = p.attack.route_eps if eps is None else eps
        seed = study.seeds[0] if seed is None else seed
        e0 = study.check(slice_id, target, source, eps, seed)
        if not all_values and not study.can_show(slice_id, target, source, e0, seed):
            all_values = True  # a setting asked for by name is offered, marked "not saved"
        style = {"description_width": "105px"}
        lay = w.Layout(width="96%")
        self.target = w.Dropdown(
            options=[(MODEL_LABELS[m], m) for m in TARGETS],
            value=target,
            description="target model",
            style=style,
            layout=lay,
        )
        self.source = w.Dropdown(
            options=self._sources(target),
            value=source,
            description="perturbation",
            style=style,
            layout=lay,
        )
        self.seed = w.Dropdown(
            options=[(str(s), s) for s in study.seeds],
            value=int(seed),
            description="sampler seed",
            style=style,
            layout=lay,
        )
        self.slice = w.SelectionSlider(
            options=[(self._slice_label(s, True), s) for s in study.slice_ids],
            value=int(slice_id),
            description="test slice",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.eps = w.SelectionSlider(
            options=[(self._eps_label(e, True), e) for e in study.eps],
            value=e0,
            description="ε = ‖Mδ‖/‖k‖",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.all_values = w.Checkbox(
            value=bool(all_values),
            description="also offer settings that are not saved (computed on request)",
            indent=False,
            layout=w.Layout(width="auto"),
        )
        self.offer = w.HTML()
        self.status = w.HTML()
        self.button = w.Button(
            icon="play",
            button_style="warning",
            layout=w.Layout(width="auto", max_width="100%", display="none"),
        )
        self.cancel_button = w.Button(
            description="cancel",
            icon="stop",
            layout=w.Layout(width="100px", min_width="100px", display="none"),
        )
        self.progress = w.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=w.Layout(flex="1 1 auto", display="none")
        )
        self.progress_text = w.HTML(layout=w.Layout(display="none"))
        self.image = w.Image(
            format="png", layout=w.Layout(width="100%", max_width="1200px", height="auto")
        )
        self.panels = Panels()
        self.view: View | None = None
        self.message = ""
        self.last_update_s = math.nan
        self._quiet = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancellable = False
        self._job_text = ""
        for c in (self.target, self.source, self.seed, self.slice, self.eps, self.all_values):
            c.observe(self._changed, names="value")
        self.button.on_click(lambda _b: self.run_missing(background=True))
        self.cancel_button.on_click(lambda _b: self.cancel())
        controls = w.VBox(
            [self.target, self.source, self.seed, self.slice, self.eps, self.all_values],
            layout=w.Layout(width="470px", min_width="380px"),
        )
        side = w.VBox(
            [
                self.status,
                self.offer,
                self.button,
                self.progress_text,
                w.HBox([self.progress, self.cancel_button], layout=w.Layout(width="100%")),
            ],
            layout=w.Layout(flex="1 1 300px", min_width="300px", padding="0 0 0 12px"),
        )
        self.widget = w.VBox(
            [w.HBox([controls, side], layout=w.Layout(width="100%")), self.image],
            layout=w.Layout(width="100%", max_width="1200px"),
        )
        self._offer()
        self.update()

    # ---------------------------------------------------------------- choices

    def _sources(self, target: str) -> list[str]:
        return [target, *(m for m in SOURCES if m != target), RANDOM]

    def _source_label(self, target: str, source: str, saved: bool) -> str:
        if source == RANDOM:
            lab = "equal-norm random control"
        elif source == target:
            lab = f"white-box on {MODEL_LABELS[target]}"
        else:
            lab = f"transferred from {MODEL_LABELS[source]}"
        return lab if saved else f"{lab} (not saved)"

    def _slice_label(self, slice_id: int, saved: bool) -> str:
        z = self.study.z[self.study.slice_ids.index(int(slice_id))]
        return f"{slice_id} (z {z})" if saved else f"{slice_id} (z {z}) ·new"

    @staticmethod
    def _eps_label(eps: float, saved: bool) -> str:
        return f"{eps:g}" if saved else f"{eps:g} ·new"

    def _seeds_with(self, target: str, source: str) -> list[int]:
        st = self.study
        seeds = st.seeds if target == "diffusion" else st.seeds[:1]
        return [s for s in seeds if st.saved(target, source, s)]

    @staticmethod
    def _replace(control: Any, options: list[tuple[str, Any]], keep: Any, nearest: bool) -> None:
        """Give ``control`` these options and the value ``keep`` if offered, else the nearest
        offered number (``nearest``) or the first option."""
        values = [v for _l, v in options]
        if keep in values:
            value = keep
        elif nearest:
            value = min(values, key=lambda v: (abs(float(v) - float(keep)), float(v)))
        else:
            value = values[0]
        if tuple(control.options) != tuple(options):
            control.options = options
        control.value = value

    def _offer(self) -> None:
        """Set every control's choices to the settings that can be shown (all of them, the
        unsaved marked, with :attr:`all_values`), keeping values where possible."""
        st, every = self.study, bool(self.all_values.value)
        quiet, self._quiet = self._quiet, True
        try:
            t = self.target.value
            srcs = self._sources(t)
            shown = srcs if every else [s for s in srcs if self._seeds_with(t, s)]
            shown = shown or srcs  # nothing saved for this target at all: offer everything
            self._replace(
                self.source,
                [(self._source_label(t, s, bool(self._seeds_with(t, s))), s) for s in shown],
                self.source.value,
                nearest=False,
            )
            src = self.source.value
            saved_seeds = self._seeds_with(t, src)
            seeds = st.seeds if every or not saved_seeds else saved_seeds
            if t == "diffusion":
                self._replace(
                    self.seed,
                    [(f"{s}" + ("" if s in saved_seeds else " (not saved)"), s) for s in seeds],
                    self.seed.value,
                    nearest=True,
                )
            self.seed.disabled = t != "diffusion"
            seed = int(self.seed.value) if t == "diffusion" else st.seeds[0]
            saved = st.saved(t, src, seed)
            slices = st.slice_ids if every or not saved else sorted(saved)
            self._replace(
                self.slice,
                [(self._slice_label(s, s in saved), s) for s in slices],
                int(self.slice.value),
                nearest=True,
            )
            here = saved.get(int(self.slice.value), [])
            grid = st.eps if every or not here else here
            self._replace(
                self.eps,
                [(self._eps_label(e, e in here), e) for e in grid],
                float(self.eps.value),
                nearest=True,
            )
            self.offer.value = self._offer_text(t, src, seed, saved)
        finally:
            self._quiet = quiet

    def _offer_text(self, target: str, source: str, seed: int, saved: dict) -> str:
        st = self.study
        n, total = len(saved), len(st.slice_ids)
        what = f"{MODEL_LABELS[target]}, {self._source_label(target, source, True)}"
        if target == "diffusion":
            what += f", sampler seed {seed}"
        if not n:
            head = f"Nothing is saved for {what}."
        else:
            eps = sorted({e for es in saved.values() for e in es if e > 0})
            head = (
                f"Saved for {what}: {n} of {total} test slices, at ε "
                f"{', '.join(f'{e:g}' for e in eps)}."
            )
        if self.all_values.value:
            tail = "All values are offered; those marked “new” are computed on request."
        else:
            tail = "The controls offer only these."
        return f"<div style='{_TEXT}{_SMALL}'>{head} {tail}</div>"

    # ---------------------------------------------------------------- events

    def _changed(self, _change: dict) -> None:
        if self._quiet:
            return
        self._offer()
        self.update()

    def set(self, **values: Any) -> View | None:
        """Set several controls (``slice_id``, ``target``, ``source``, ``eps``, ``seed``) and
        update once; ``ExplorerError`` for a bad value.  The controls not named follow as when
        a user moves one (to the nearest saved value); a named value that is not saved switches
        :attr:`all_values` on (it is then offered, marked) and shows the compute button."""
        names = {
            "target": self.target,
            "source": self.source,
            "seed": self.seed,
            "slice_id": self.slice,
            "eps": self.eps,
        }
        bad = set(values) - set(names)
        if bad:
            raise ExplorerError(f"unknown controls {sorted(bad)}; use {sorted(names)}")
        cur = self.settings()
        cur.update(values)
        cur["eps"] = self.study.check(**cur)
        cur["slice_id"], cur["seed"] = int(cur["slice_id"]), int(cur["seed"])
        self._quiet = True
        try:
            self._offer()
            for name, control in names.items():  # in the order of the choices
                if name not in values or (name == "seed" and cur["target"] != "diffusion"):
                    continue
                if cur[name] not in [v for _l, v in control.options]:
                    self.all_values.value = True  # asked for by name: offer it, marked
                    self._offer()
                control.value = cur[name]
                self._offer()  # the controls below follow (a value not offered moves)
        finally:
            self._quiet = False
        self.update()
        return self.view

    def settings(self) -> dict[str, Any]:
        t = self.target.value
        return {
            "slice_id": int(self.slice.value),
            "target": t,
            "source": self.source.value,
            "eps": float(self.eps.value),
            "seed": int(self.seed.value) if t == "diffusion" else self.study.seeds[0],
        }

    def update(self) -> None:
        """Recompute the view for the current controls and redraw (or show what is saved of it
        and what the button would compute)."""
        if self._quiet:
            return
        t0 = time.perf_counter()
        s = self.settings()
        try:
            v = self.study.view(**s)
        except Missing as exc:
            self._show_missing(s, exc)
            self.last_update_s = time.perf_counter() - t0
            return
        self.view = v
        self.message = ""
        self.button.layout.display = "none"
        self.panels.draw(v)
        self.image.value = self.panels.png()
        self.last_update_s = time.perf_counter() - t0
        drop = v.psnr_clean - v.psnr
        change = (
            "no perturbation at ε = 0"
            if v.eps == 0
            else f"{abs(drop):.2f} dB {'lower' if drop >= 0 else 'higher'} than clean"
        )
        self.status.value = (
            f"<div style='{_TEXT}'><b>PSNR {v.psnr_clean:.2f} dB → {v.psnr:.2f} dB</b> "
            f"({change}); SSIM {v.ssim_clean:.3f} → {v.ssim:.3f}.<br>"
            f"<span style='{_SMALL}'>{v.origin} Drawn in {1000 * self.last_update_s:.0f} ms."
            "</span></div>"
        )

    def _show_missing(self, s: dict[str, Any], exc: Missing) -> None:
        st = self.study
        self.view = None
        self.message = exc.message
        jobs = st.plan(**s)
        self._plan_text = describe_plan(jobs)
        self.button.description = self._plan_text[0].upper() + self._plan_text[1:]
        self.button.tooltip = "; ".join(f"{j.label} ({duration(j.seconds)})" for j in jobs)
        self.button.layout.display = None
        b = st._pos(s["slice_id"])
        self.panels.draw_missing(
            _np(st.data.images[b : b + 1]),
            s["target"],
            s["source"],
            s["slice_id"],
            s["eps"],
            st.curve(s["target"], s["source"], s["slice_id"], s["seed"]),
            st.partial_view(**s),
        )
        self.image.value = self.panels.png()
        self.status.value = (
            f"<div style='{_TEXT}'><b style='color:#a04000'>Not saved yet.</b> {exc.message} "
            f"The button below computes it here and keeps it in runs/{st.profile.name}/.</div>"
        )

    # ---------------------------------------------------------------- fresh computation

    def _busy(self, on: bool) -> None:
        for c in (self.target, self.source, self.slice, self.eps, self.all_values, self.button):
            c.disabled = on
        self.seed.disabled = on or self.target.value != "diffusion"
        self.cancel_button.layout.display = None if on else "none"
        self.progress.layout.display = None if on else "none"
        self.progress_text.layout.display = None if on else "none"
        if on:
            self.progress.value = 0.0

    def _tick(self, t0: float, total: float) -> None:
        el = time.perf_counter() - t0
        if math.isfinite(total) and total > 0:
            self.progress.value = min(0.99, el / total)
        self.progress_text.value = (
            f"<div style='{_TEXT}{_SMALL}'>{self._job_text}: {el:.0f} s so far, "
            f"{duration(total)} in all</div>"
        )

    def run_missing(self, progress: bool | None = None, background: bool = False) -> View | None:
        """Compute what the current setting misses (:meth:`Study.plan`), save it in the
        ``runs/`` caches and show it.  ``background``: in a thread (the button does this), so
        that :meth:`cancel` can stop it; returns ``None`` at once.  Otherwise returns the view
        (``None`` when the computation failed; :attr:`message` says why)."""
        s = self.settings()
        jobs = self.study.plan(**s)
        if not background:
            self._work(jobs, s, progress, ticker=False)
            return self.view
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return None
            self._thread = threading.Thread(
                target=self._work, args=(jobs, s, False, True), daemon=True
            )
            self._thread.start()
        return None

    def _work(
        self, jobs: list[Job], s: dict[str, Any], progress: bool | None, ticker: bool
    ) -> None:
        total = sum(j.seconds for j in jobs)
        t0 = time.perf_counter()
        done = threading.Event()
        self._busy(True)
        if ticker:

            def tick() -> None:
                while not done.wait(0.5):
                    self._tick(t0, total)

            threading.Thread(target=tick, daemon=True).start()
        outcome = ""
        try:
            with self._lock:
                self._cancellable = True
            for i, job in enumerate(jobs):
                self._job_text = f"step {i + 1} of {len(jobs)}: {job.label}"
                self._tick(t0, total)
                job.run(progress)
            with self._lock:
                self._cancellable = False
            outcome = (
                f"Computed in {time.perf_counter() - t0:.0f} s and saved in "
                f"runs/{self.study.profile.name}/."
            )
        except _Cancelled:
            outcome = (
                f"Cancelled after {time.perf_counter() - t0:.0f} s; finished steps are saved, "
                "the interrupted one is not."
            )
        except Exception as exc:  # shown to the user; the controls stay usable
            outcome = f"The computation failed: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._cancellable = False
            done.set()
            self.study._forget(s["source"])
            self._busy(False)
            self._offer()
            self.update()
            self.status.value += f"<div style='{_TEXT}'><b>{outcome}</b></div>"
            self.last_outcome = outcome

    last_outcome = ""

    def cancel(self) -> bool:
        """Stop a computation started by the button (the step running is abandoned; what
        finished is kept).  Returns whether one was running."""
        import ctypes

        with self._lock:
            th = self._thread
            if th is None or not th.is_alive() or not self._cancellable or th.ident is None:
                return False
            self._cancellable = False
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(th.ident), ctypes.py_object(_Cancelled)
            )
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a computation started in the background (tests, scripts)."""
        th = self._thread
        if th is not None:
            th.join(timeout)

    def sweep(self, control: str = "eps") -> list[float]:
        """Move one control (``"eps"``, ``"slice_id"``, ``"source"`` or ``"target"``) through
        all the values it offers, as a user would, and back; returns the seconds of each update
        that drew a saved view (a latency measurement)."""
        widgets = {
            "eps": self.eps,
            "slice_id": self.slice,
            "source": self.source,
            "target": self.target,
        }
        if control not in widgets:
            raise ExplorerError(f"unknown control {control!r}; use {sorted(widgets)}")
        c = widgets[control]
        start, first = self.settings(), c.value
        times = []
        for _label, value in list(c.options):
            if value == first:
                continue
            c.value = value
            if self.view is not None:
                times.append(self.last_update_s)
        self.set(**start)
        return times


def explore(profile: Profile, **kw: Any) -> Explorer:
    """Build the explorer of a profile's saved results and display it (notebook 06)."""
    from IPython.display import display

    study = load_study(profile, root=kw.pop("root", None), bundle=kw.pop("bundle", None))
    ex = Explorer(study, **kw)
    display(ex.widget)
    return ex


# --------------------------------------------------------------------------------------------
# notebook 01: axial-slice scroller


class SliceScroller:
    """Scroll through the axial slices of each volume of a data set: the slice with its head
    mask outlined, its undersampled k-space ``log10 |M F x|`` (the sampling mask's columns) and
    the zero-filled reconstruction ``|F^-1 y|`` with its PSNR / SSIM."""

    def __init__(self, dataset: Any, mask: Tensor) -> None:
        import ipywidgets as w

        self.dataset = dataset
        self.mask = mask
        self.volumes: dict[str, tuple[str, list[int]]] = {}
        for name, split in dataset.splits.items():
            for subj in split.subject_ids:
                idx = [i for i, s in enumerate(split.subjects) if s == subj]
                idx.sort(key=lambda i: split.slice_index[i])
                self.volumes[f"{name}: {subj}"] = (name, idx)
        # start on the real test brain when there is one
        first = next((k for k in self.volumes if k.startswith("test:")), next(iter(self.volumes)))
        self.volume = w.Dropdown(options=list(self.volumes), value=first, description="volume")
        self.slice = w.IntSlider(
            min=0,
            max=len(self.volumes[first][1]) - 1,
            value=len(self.volumes[first][1]) // 2,
            description="slice",
            continuous_update=True,
        )
        self.image = w.Image(format="png", layout=w.Layout(width="800px"))
        self.fig = _figure((9.0, 3.3))
        axs = self.fig.subplots(1, 3)
        self.axs = list(axs)
        blank = np.zeros((8, 8))
        self.ims = [
            axs[0].imshow(blank, cmap="gray", vmin=0, vmax=1),
            axs[1].imshow(blank, cmap="viridis"),
            axs[2].imshow(blank, cmap="gray", vmin=0, vmax=1),
        ]
        from ...report.figures import no_ticks

        for a in axs:
            no_ticks(a)
        self._contour = None
        self.volume.observe(self._volume_changed, names="value")
        self.slice.observe(lambda _c: self.update(), names="value")
        self.widget = w.VBox([w.HBox([self.volume, self.slice]), self.image])
        self.update()

    def _volume_changed(self, change: dict) -> None:
        n = len(self.volumes[change["new"]][1])
        self.slice.max = n - 1
        self.slice.value = min(self.slice.value, n - 1)
        self.update()

    def current(self) -> dict[str, Any]:
        """The arrays of the current slice: ``image``, ``head``, ``kspace`` (log10 of the
        undersampled k-space), ``zero_filled``, and ``psnr`` / ``ssim`` / ``z``."""
        split_name, idx = self.volumes[self.volume.value]
        split = self.dataset[split_name]
        i = idx[int(self.slice.value)]
        x = split.images[i : i + 1]
        y = MRIOperator(self.mask).A(x)
        zf = ifft2c(y).abs()
        return {
            "image": _np(x),
            "head": split.masks[i, 0].numpy(),
            "kspace": np.log10(_np(y.abs()) + 1e-6),
            "zero_filled": _np(zf),
            "psnr": float(metrics.psnr(zf, x)[0]),
            "ssim": float(metrics.ssim(zf, x)[0]),
            "z": int(split.slice_index[i]),
            "index": i,
        }

    def update(self) -> None:
        c = self.current()
        _set_image(self.ims[0], c["image"])
        if self._contour is not None:
            self._contour.remove()
        self._contour = self.axs[0].contour(
            c["head"], levels=[0.5], colors="tab:orange", linewidths=0.6
        )
        self.axs[0].set_title(f"{self.volume.value}\naxial z = {c['z']}, head mask outlined")
        _set_image(self.ims[1], c["kspace"])
        self.ims[1].set_clim(-4, float(c["kspace"].max()))
        n = int(self.mask.sum())
        self.axs[1].set_title(
            f"undersampled k-space, log10 |M F x|\n{n} of {self.mask.numel()} columns"
        )
        _set_image(self.ims[2], c["zero_filled"])
        self.axs[2].set_title(f"zero-filled |F⁻¹ y|\n{c['psnr']:.2f} dB / SSIM {c['ssim']:.3f}")
        self.image.value = _png(self.fig)


def slice_scroller(dataset: Any, mask: Tensor) -> SliceScroller:
    """Build the notebook-01 slice scroller and display it; returns it."""
    from IPython.display import display

    s = SliceScroller(dataset, mask)
    display(s.widget)
    return s
