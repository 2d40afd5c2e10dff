"""Interactive exploration of the saved robustness results (notebook 06) and the axial-slice
scroller of notebook 01.

Where the data come from
------------------------
A :class:`Study` looks up everything through the caches notebooks 03-05 fill, with the same
keys, so nothing is recomputed when a widget moves:

* perturbations ``delta`` from the attack cache (:class:`mripkg.attacks.AttackCache`,
  ``runs/<profile>/attacks``), keyed by source model, test slice, eps and the attack settings
  of the source's weights (:func:`mripkg.attack_runs.attack_settings`; the diffusion source:
  :func:`mripkg.attack_runs.diffusion_settings`);
* the equal-norm random control from :func:`mripkg.control.budget_controls` (a seeded draw,
  the control notebook 04 gives every target);
* diffusion reconstructions from the reconstruction cache (:class:`mripkg.targets.ReconCache`,
  ``runs/<profile>/recons``, keyed by the sampler settings and the measurement's values), never
  re-sampled; the supervised models and zero-filling are re-run (milliseconds per slice);
* per-slice PSNR curves from ``metrics_white_box_per_slice.csv`` and
  ``metrics_transfer_per_slice.csv`` (``runs/<profile>/``, else ``results/<profile>/``).

An entry missing from ``runs/`` is looked up in the bundle ``results/<profile>/explorer.npz``
(:func:`export_bundle`: the perturbations on their sampled columns and the diffusion
reconstructions, float16, one file), so the explorer also runs from committed files.  What is
in neither raises :class:`Missing`; :meth:`Study.compute` runs it fresh and stores it in the
``runs/`` caches.

Layout: images are ``[1, 1, H, W]`` tensors (one slice), k-space complex ``[1, 1, H, W]``; eps is
the relative L2 strength ``||M delta|| / ||k||`` (dimensionless).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import metrics, paths
from ..attacks import control
from ..attacks.cache import AttackCache
from ..attacks.kspace import AttackSettings
from ..data import Split
from ..evaluation import attack_runs, selection, targets
from ..models import MODEL_LABELS, NAMES
from ..physics import MRIOperator, equispaced_mask, ifft2c
from ..profiles import Profile, check_profile, progress_disabled

#: The perturbation source of the equal-norm Gaussian control.
RANDOM = "random"
#: Models a perturbation can be crafted on (white-box), in display order.
SOURCES = NAMES
#: Models a perturbation is given to.
TARGETS = NAMES
#: Format tag of the bundle.
BUNDLE_FORMAT = "mripkg.explorer/1"
#: Per-slice CSVs of notebooks 03 and 04 (read in this order; later rows win).
CURVE_FILES = ("metrics_white_box_per_slice.csv", "metrics_transfer_per_slice.csv")


class ExplorerError(ValueError):
    """A bad explorer setting (profile, slice, target, source, eps or seed)."""


class BundleMismatch(ValueError):
    """A bundle made for another profile, other slices or other weights."""


class Missing(LookupError):
    """An entry that is neither in the ``runs/`` caches nor in the bundle.

    ``what``: ``"attack"`` (no perturbation) or ``"reconstruction"`` (no saved diffusion
    reconstruction); ``message``: a sentence for the user."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what
        self.message = message


def eps_tag(eps: float) -> str:
    """The bundle's key of an eps value (:func:`mripkg.selection.eps_key`)."""
    return selection.eps_key(eps)


# --------------------------------------------------------------------------------------------
# bundle


class Bundle:
    """Read side of ``explorer.npz`` (lazy: arrays are read on first use, then kept)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._npz = np.load(self.path, allow_pickle=False)
        self.meta: dict[str, Any] = json.loads(str(self._npz["meta"]))
        if self.meta.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"{self.path}: unknown format {self.meta.get('format')!r}")
        self.curves: dict[str, Any] = json.loads(str(self._npz["curves"]))
        self._keys = set(self._npz.files)
        self._memo: dict[str, np.ndarray] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def get(self, key: str) -> np.ndarray | None:
        if key not in self._keys:
            return None
        if key not in self._memo:
            self._memo[key] = self._npz[key]
        return self._memo[key]

    @staticmethod
    def delta_key(source: str, slice_id: int, eps: float) -> str:
        return f"delta|{source}|{int(slice_id)}|{eps_tag(eps)}"

    @staticmethod
    def recon_key(seed: int, source: str, slice_id: int, eps: float) -> str:
        """``source = "clean"`` (with eps 0) for the clean reconstruction."""
        return f"recon|diffusion|{int(seed)}|{source}|{int(slice_id)}|{eps_tag(eps)}"


# --------------------------------------------------------------------------------------------
# one view


@dataclass
class View:
    """Everything the panels show for one (slice, target, source, eps, seed).

    Images are float arrays ``[H, W]``: ``gt``, ``clean`` = f(y), ``perturbed`` = f(y + M delta),
    ``artifact`` = perturbed - clean, ``kspace`` = ``|M delta|`` (k-space units),
    ``image_delta`` = ``Re F^-1 M delta``.  PSNR in dB and SSIM in the paper's convention;
    ``rel_norm`` = ``||M delta|| / ||k||``; ``curve``: ``{"eps": [...], "mean": [...],
    "slice": [...], "control": [...], "n_slices": int}`` from the saved per-slice CSVs (empty
    lists when none were saved); ``origin``: where the perturbation and the reconstructions
    came from."""

    slice_id: int
    target: str
    source: str
    eps: float
    seed: int
    gt: np.ndarray
    clean: np.ndarray
    perturbed: np.ndarray
    artifact: np.ndarray
    kspace: np.ndarray
    image_delta: np.ndarray
    psnr_clean: float
    ssim_clean: float
    psnr: float
    ssim: float
    rel_norm: float
    curve: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    def numbers(self) -> dict[str, float]:
        """The scalar results (for checks): PSNR / SSIM clean and perturbed, their drop,
        ``rel_norm`` and the artifact's RMS."""
        return {
            "psnr_clean": self.psnr_clean,
            "ssim_clean": self.ssim_clean,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "psnr_drop": self.psnr_clean - self.psnr,
            "rel_norm": self.rel_norm,
            "artifact_rms": float(np.sqrt(np.mean(self.artifact**2))),
        }


@dataclass
class Job:
    """One step of a fresh computation (:meth:`Study.plan`): ``kind`` ``"attack"`` or
    ``"reconstruction"``, ``label`` in plain words, ``seconds`` estimated on this machine (NaN:
    unknown), ``run(progress)`` does it and stores the result in the ``runs/`` caches."""

    kind: str
    label: str
    seconds: float
    run: Callable[[bool | None], object]


def duration(seconds: float) -> str:
    """A rough duration in words: ``"about 10 s"``, ``"about 5 min"``, ``"about 2 h"``."""
    if not math.isfinite(seconds):
        return "time unknown"
    if seconds < 1:
        return "under a second"
    if seconds < 20:
        return f"about {round(seconds):d} s"
    if seconds < 90:
        return f"about {5 * round(seconds / 5):d} s"
    if seconds < 5400:
        return f"about {round(seconds / 60):d} min"
    return f"about {seconds / 3600:.1f} h"


def describe_plan(jobs: Sequence[Job]) -> str:
    """What a list of jobs will compute and its estimated cost, in one line, e.g.
    ``"reconstruct 2 images with the diffusion model, about 10 s"``."""
    if not jobs:
        return "nothing to compute"
    parts = [j.label for j in jobs if j.kind == "attack"]
    n = sum(j.kind == "reconstruction" for j in jobs)
    if n:
        images = f"reconstruct {n} image{'s' if n > 1 else ''}"
        parts.append(f"{images} with the diffusion model" if not parts else images)
    return f"{', then '.join(parts)}, {duration(sum(j.seconds for j in jobs))}"


# --------------------------------------------------------------------------------------------
# study


def _read_curves(files: Sequence[Path]) -> dict[str, dict[str, dict[str, float]]]:
    """``{"target|source|seed": {eps_key: {slice_id: psnr}}}`` from per-slice CSVs of
    :func:`mripkg.scoring.per_slice_rows` (direct route only; ``source = "random"`` from the
    control columns; seed ``""`` for the deterministic targets)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for path in files:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("route", "direct") != "direct" or row["target"] not in TARGETS:
                    continue
                seed = row["seed"] if row["target"] == "diffusion" else ""
                e, sid = eps_tag(float(row["eps"])), str(int(row["slice"]))
                for src, col in ((row["source"], "psnr"), (RANDOM, "psnr_random")):
                    if row.get(col, "") == "":
                        continue
                    key = f"{row['target']}|{src}|{seed}"
                    out.setdefault(key, {}).setdefault(e, {})[sid] = float(row[col])
    return out


class Study:
    """The saved robustness results of one profile, for one test split.

    ``test``: the profile's test split (:func:`mripkg.data.load_test_split`); ``models`` and
    ``metas``: :func:`mripkg.reconstruction.build_reconstructors`; ``root``: the profile's run
    folder (``runs/<profile>``); ``bundle``: path of an ``explorer.npz`` to fall back to (or
    ``None``).  Lookups are memoised, so a repeated view costs nothing.
    """

    def __init__(
        self,
        profile: Profile,
        test: Split,
        models: dict[str, nn.Module],
        metas: dict[str, dict],
        *,
        root: str | os.PathLike | None = None,
        bundle: str | os.PathLike | None = None,
        curve_dirs: Sequence[str | os.PathLike] | None = None,
    ) -> None:
        missing = [m for m in TARGETS if m not in models]
        if missing:
            raise ExplorerError(f"models {missing} missing (need {list(TARGETS)})")
        self.profile = profile
        a = profile.attack
        self.mask = equispaced_mask(profile.image_size)
        if test.images.shape[-1] != profile.image_size:
            raise ExplorerError(
                f"test images are {test.images.shape[-1]} px, profile {profile.name!r} "
                f"uses {profile.image_size}"
            )
        self.data = selection.slice_set(test, self.mask, a.n_slices)
        self.slice_ids = list(self.data.slice_ids)
        self.diffusion_ids = [
            self.slice_ids[i] for i in selection.spread_ids(len(self.data), a.diffusion_slices)
        ]
        self.z = [int(test.slice_index[i]) for i in self.slice_ids]
        self.models = models
        self.metas = metas
        self.root = Path(root) if root is not None else paths.RUNS_DIR / profile.name
        self.cache = AttackCache(profile, self.root / "attacks")
        self.recon_cache = targets.ReconCache(self.root / "recons")
        self.settings: dict[str, AttackSettings] = {
            m: attack_runs.attack_settings(profile, metas.get(m)) for m in SOURCES
        }
        self.settings["diffusion"] = attack_runs.diffusion_settings(profile, metas.get("diffusion"))
        self.seeds = [profile.seed + k for k in range(max(1, a.diffusion_seeds))]
        self._targets = {
            m: targets.Target(
                m,
                models[m],
                self.mask,
                weights_id=attack_runs.model_id(metas.get(m)),
                cache=self.recon_cache if m == "diffusion" else None,
            )
            for m in TARGETS
        }
        self._seeded = {self.seeds[0]: self._targets["diffusion"]}
        for s in self.seeds[1:]:
            self._seeded[s] = self._targets["diffusion"].with_seed(s)
        self.bundle: Bundle | None = None
        if bundle is not None and Path(bundle).is_file():
            self.bundle = Bundle(bundle)
            self._check_bundle(self.bundle)
        dirs = [self.root] if curve_dirs is None else [Path(d) for d in curve_dirs]
        # each CSV from the first folder that has it (runs/ before results/)
        found = (
            next((d / name for d in dirs if (d / name).is_file()), None) for name in CURVE_FILES
        )
        files = [f for f in found if f is not None]
        self.curves = _read_curves(files)
        if not self.curves and self.bundle is not None:
            self.curves = self.bundle.curves
        self.curve_files = files
        self.eps = selection.merge_eps(
            [0.0],
            a.eps_grid,
            a.diffusion_eps,
            [a.route_eps],
            a.diffusion_whitebox_eps,
            sorted({float(e) for c in self.curves.values() for e in c}),
        )
        self._memo: dict[tuple, Any] = {}
        self._timing: dict[str, float] = {}

    # ---------------------------------------------------------------- validation

    def _check_bundle(self, b: Bundle) -> None:
        m = b.meta
        if m.get("profile") != self.profile.name or m.get("slice_ids") != self.slice_ids:
            raise BundleMismatch(
                f"{b.path} is for profile {m.get('profile')!r}, slices {m.get('slice_ids')}; "
                f"this study is {self.profile.name!r}, slices {self.slice_ids}"
            )
        mine = {k: v.digest() for k, v in self.settings.items()}
        stale = sorted(k for k, v in m.get("settings", {}).items() if mine.get(k) != v)
        tags = {str(s): t.tag for s, t in self._seeded.items()}
        if any(tags.get(s) != t for s, t in m.get("recon_tags", {}).items()):
            stale.append("diffusion reconstructions (other weights or sampler)")
        if stale:
            raise BundleMismatch(
                f"{b.path} was made with other weights or attack settings for {stale}; "
                "re-export it (explorer.export_bundle) from this checkout's runs/ caches"
            )

    def check(self, slice_id: int, target: str, source: str, eps: float, seed: int) -> float:
        """Validate one setting; returns eps as it is in the grid (``ExplorerError`` naming
        the bad value and the allowed ones otherwise)."""
        if target not in TARGETS:
            raise ExplorerError(f"unknown target {target!r}; choose one of {list(TARGETS)}")
        if source not in (*SOURCES, RANDOM):
            raise ExplorerError(f"unknown source {source!r}; choose one of {[*SOURCES, RANDOM]}")
        if int(slice_id) not in self.slice_ids:
            raise ExplorerError(
                f"test slice {slice_id!r} not attacked; choose from {self.slice_ids}"
            )
        if int(seed) not in self.seeds:
            raise ExplorerError(f"sampler seed {seed!r} not used; choose from {self.seeds}")
        try:
            e = float(eps)
        except (TypeError, ValueError):
            raise ExplorerError(f"eps must be a number, got {eps!r}") from None
        hits = [g for g in self.eps if abs(g - e) < 1e-9]
        if not hits:
            raise ExplorerError(f"eps {eps!r} is not in this study's grid {self.eps}")
        return hits[0]

    # ---------------------------------------------------------------- lookups

    #: Most entries of each kind kept in the memo (views ~0.5 MB each at quick, perturbations
    #: and reconstructions less); the oldest go first, so a long session stays bounded.
    MEMO_LIMIT = {"view": 48, "pert": 160, "rec": 160}

    def _remember(self, key: tuple, value: Any) -> None:
        self._memo[key] = value
        limit = self.MEMO_LIMIT.get(key[0])
        if limit is not None:
            same = [k for k in self._memo if k[0] == key[0]]
            for k in same[: max(0, len(same) - limit)]:
                del self._memo[k]

    def _pos(self, slice_id: int) -> int:
        return self.slice_ids.index(int(slice_id))

    def perturbation(self, source: str, slice_id: int, eps: float) -> tuple[Tensor, Tensor, str]:
        """``(y + M delta, delta, origin)`` for one slice: complex ``[1, 1, H, W]`` each.
        ``Missing`` when the perturbation was never saved."""
        key = ("pert", source, int(slice_id), eps_tag(eps))
        if key in self._memo:
            return self._memo[key]
        b = self._pos(slice_id)
        y0 = self.data.y[b : b + 1]
        m = self.mask.to(y0.real.dtype)
        if eps == 0:
            out = (y0, torch.zeros_like(y0), "clean")
        elif source == RANDOM:
            ctl = control.budget_controls(
                self.data.kspace[b : b + 1], self.mask, [slice_id], [eps], seed=self.profile.seed
            )[0]
            out = (y0 + ctl * m, ctl, "seeded control")
        else:
            res = self.cache.load(source, self.data.split, slice_id, eps, self.settings[source])
            if res is not None:
                out = (res.y_adv[0], res.delta[0], f"runs/{self.profile.name}/attacks")
            else:
                arr = (
                    None
                    if self.bundle is None
                    else self.bundle.get(Bundle.delta_key(source, slice_id, eps))
                )
                if arr is None:
                    raise Missing(
                        "attack",
                        f"No saved perturbation crafted on {MODEL_LABELS[source]} for test slice "
                        f"{slice_id} at ε {eps:g}: notebooks 03-05 did not attack this (it is "
                        f"neither in {_short(self.cache.root)} nor in the bundle).",
                    )
                delta = _expand_columns(arr, self.mask, y0.dtype)
                out = (y0 + delta * m, delta, "bundle")
        self._remember(key, out)
        return out

    def reconstruction(
        self, target: str, source: str, slice_id: int, eps: float, seed: int, y: Tensor
    ) -> tuple[Tensor, str]:
        """Reconstruction ``[1, 1, H, W]`` of the measurement ``y`` (the perturbation of
        ``source`` at ``eps``; ``source = "clean"`` for the clean one).  Supervised models run
        here; the diffusion model's comes from the reconstruction cache or the bundle
        (``Missing`` otherwise)."""
        key = ("rec", target, source, int(slice_id), eps_tag(eps), int(seed))
        if key in self._memo:
            return self._memo[key]
        if target != "diffusion":
            out = (self._targets[target](y, [slice_id]), "computed")
        else:
            t = self._seeded[int(seed)]
            if t.pending(y, [slice_id]) == 0:
                out = (t(y, [slice_id]), f"runs/{self.profile.name}/recons")
            else:
                arr = (
                    None
                    if self.bundle is None
                    else self.bundle.get(Bundle.recon_key(seed, source, slice_id, eps))
                )
                if arr is None:
                    what = "clean" if source == "clean" else f"perturbed ({_source_label(source)})"
                    raise Missing(
                        "reconstruction",
                        f"No saved diffusion reconstruction of test slice {slice_id}, {what}"
                        + ("" if source == "clean" else f" at ε {eps:g}")
                        + f", sampler seed {seed}: notebook 04 did not run the diffusion model "
                        "on this one (the sampler is too slow to run it on every setting).",
                    )
                out = (torch.from_numpy(arr.astype(np.float32))[None, None], "bundle")
        self._remember(key, out)
        return out

    def curve(self, target: str, source: str, slice_id: int, seed: int) -> dict[str, Any]:
        """Mean PSNR over the saved slices, this slice's PSNR and the control's mean against
        eps, from the per-slice CSVs (or the bundle)."""
        s = str(seed) if target == "diffusion" else ""
        tab = self.curves.get(f"{target}|{source}|{s}", {})
        ctl = self.curves.get(f"{target}|{RANDOM}|{s}", {})
        eps = sorted(tab, key=float)
        sid = str(int(slice_id))
        return {
            "eps": [float(e) for e in eps],
            "mean": [float(np.mean(list(tab[e].values()))) for e in eps],
            "slice": [tab[e].get(sid, math.nan) for e in eps],
            "control_eps": [float(e) for e in sorted(ctl, key=float)],
            "control": [float(np.mean(list(ctl[e].values()))) for e in sorted(ctl, key=float)],
            "n_slices": max((len(v) for v in tab.values()), default=0),
            **self._reference(target, source, seed),
        }

    def _reference(self, target: str, source: str, seed: int) -> dict[str, Any]:
        """The first sampler seed's mean curve, drawn for comparison at the other seeds."""
        if target != "diffusion" or int(seed) == self.seeds[0]:
            return {}
        ref = self.curves.get(f"{target}|{source}|{self.seeds[0]}", {})
        eps = sorted(ref, key=float)
        return {
            "reference_eps": [float(e) for e in eps],
            "reference": [float(np.mean(list(ref[e].values()))) for e in eps],
            "reference_label": f"mean, seed {self.seeds[0]}",
        }

    def view(self, slice_id: int, target: str, source: str, eps: float, seed: int) -> View:
        """The panels' data for one setting (``ExplorerError`` for a bad value, ``Missing``
        for an entry that was not saved)."""
        eps = self.check(slice_id, target, source, eps, seed)
        seed = int(seed) if target == "diffusion" else self.seeds[0]
        key = ("view", int(slice_id), target, source, eps_tag(eps), seed)
        if key in self._memo:
            return self._memo[key]
        b = self._pos(slice_id)
        gt = self.data.images[b : b + 1]
        y0 = self.data.y[b : b + 1]
        y1, delta, o_pert = self.perturbation(source, slice_id, eps)
        clean, o_clean = self.reconstruction(target, "clean", slice_id, 0.0, seed, y0)
        if eps == 0:
            pert, o_rec = clean, o_clean
        else:
            pert, o_rec = self.reconstruction(target, source, slice_id, eps, seed, y1)
        md = delta * self.mask.to(delta.real.dtype)
        knorm = float(self.data.kspace[b].abs().pow(2).sum().sqrt())
        v = View(
            slice_id=int(slice_id),
            target=target,
            source=source,
            eps=eps,
            seed=seed,
            gt=_np(gt),
            clean=_np(clean),
            perturbed=_np(pert),
            artifact=_np(pert - clean),
            kspace=_np(md.abs()),
            image_delta=_np(ifft2c(md).real),
            psnr_clean=float(metrics.psnr(clean, gt)[0]),
            ssim_clean=float(metrics.ssim(clean, gt)[0]),
            psnr=float(metrics.psnr(pert, gt)[0]),
            ssim=float(metrics.ssim(pert, gt)[0]),
            rel_norm=float(md.abs().pow(2).sum().sqrt()) / knorm,
            curve=self.curve(target, source, slice_id, seed),
            origin=self._origin(target, o_pert, o_clean, o_rec),
        )
        self._remember(key, v)
        return v

    def _origin(self, target: str, o_pert: str, o_clean: str, o_rec: str) -> str:
        """Where a view's data came from, in plain words."""

        def place(o: str) -> str:
            if o == "bundle" and self.bundle is not None:
                return f"the bundle {_short(self.bundle.path)}"
            return o

        def where(o: str) -> str:
            return f"read from {place(o)}" if o == "bundle" or "/" in o else o

        recs = {o_clean, o_rec}
        if recs == {"computed"}:
            rec = f"{MODEL_LABELS[target]} reconstructed it just now"
        else:
            rec = "diffusion reconstructions read from " + " and ".join(
                sorted(place(o) for o in recs)
            )
        if recs == {o_pert}:
            return f"Perturbation and {rec}."
        pert = {
            "clean": "No perturbation (ε = 0)",
            "seeded control": "The random control was drawn from its seed",
        }.get(o_pert, f"Perturbation {where(o_pert)}")
        return f"{pert}; {rec}."

    # ---------------------------------------------------------------- what is saved

    def has_perturbation(self, source: str, slice_id: int, eps: float) -> bool:
        """Whether the perturbation of ``source`` on this slice at ``eps`` is saved (the
        ``runs/`` attack cache or the bundle; the control and eps 0 always are)."""
        if eps == 0 or source == RANDOM:
            return True
        key = ("has-pert", source, int(slice_id), eps_tag(eps))
        if key not in self._memo:
            ok = self.bundle is not None and Bundle.delta_key(source, slice_id, eps) in self.bundle
            if not ok:
                s = self.settings[source]
                ok = self.cache.is_valid(source, self.data.split, slice_id, eps, s)
            self._memo[key] = ok
        return self._memo[key]

    def has_reconstruction(self, source: str, slice_id: int, eps: float, seed: int) -> bool:
        """Whether the diffusion reconstruction (sampler ``seed``) of the measurement perturbed
        by ``source`` at ``eps`` is saved (``source = "clean"``, eps 0: the clean one)."""
        key = ("has-rec", source, int(slice_id), eps_tag(eps), int(seed))
        if key not in self._memo:
            ok = self.bundle is not None and Bundle.recon_key(seed, source, slice_id, eps) in (
                self.bundle
            )
            if not ok and self.recon_cache.root.is_dir():
                if source == "clean":
                    b = self._pos(slice_id)
                    y: Tensor | None = self.data.y[b : b + 1]
                elif self.has_perturbation(source, slice_id, eps):
                    y = self.perturbation(source, slice_id, eps)[0]
                else:
                    y = None
                ok = y is not None and self._seeded[int(seed)].pending(y, [int(slice_id)]) == 0
            self._memo[key] = ok
        return self._memo[key]

    def can_show(self, slice_id: int, target: str, source: str, eps: float, seed: int) -> bool:
        """Whether :meth:`view` of this setting is saved (no computation needed)."""
        e = self.check(slice_id, target, source, eps, seed)
        if not self.has_perturbation(source, slice_id, e):
            return False
        if target != "diffusion":
            return True  # the supervised models and zero-filling run in milliseconds
        if not self.has_reconstruction("clean", slice_id, 0.0, seed):
            return False
        return e == 0 or self.has_reconstruction(source, slice_id, e, seed)

    def saved(self, target: str, source: str, seed: int) -> dict[int, list[float]]:
        """The views of ``target`` under ``source`` (sampler ``seed``) that can be shown
        without computing: ``{slice_id: [eps, ...]}`` over the slices that have at least one
        eps > 0 saved (eps 0 listed where the clean view is)."""
        seed = int(seed) if target == "diffusion" else self.seeds[0]
        key = ("saved", target, source, seed)
        if key not in self._memo:
            out = {}
            for sid in self.slice_ids:
                es = [e for e in self.eps if self.can_show(sid, target, source, e, seed)]
                if any(e > 0 for e in es):
                    out[sid] = es
            self._memo[key] = out
        return self._memo[key]

    def _forget(self, source: str) -> None:
        """Drop what a fresh computation can change from the memo."""
        drop = ("view", "has-pert", "has-rec", "saved")
        self._memo = {
            k: v
            for k, v in self._memo.items()
            if k[0] not in drop and not (k[0] == "pert" and k[1] == source)
        }

    def partial_view(
        self, slice_id: int, target: str, source: str, eps: float, seed: int
    ) -> dict[str, np.ndarray]:
        """What is saved of a view that :meth:`view` cannot build: ``clean`` (the clean
        reconstruction), ``kspace`` and ``image_delta`` (the perturbation), each ``[H, W]``
        where available."""
        eps = self.check(slice_id, target, source, eps, seed)
        seed = int(seed) if target == "diffusion" else self.seeds[0]
        b = self._pos(slice_id)
        out: dict[str, np.ndarray] = {}
        try:
            out["clean"] = _np(
                self.reconstruction(target, "clean", slice_id, 0.0, seed, self.data.y[b : b + 1])[0]
            )
        except Missing:
            pass
        if self.has_perturbation(source, slice_id, eps):
            delta = self.perturbation(source, slice_id, eps)[1]
            md = delta * self.mask.to(delta.real.dtype)
            out["kspace"] = _np(md.abs())
            out["image_delta"] = _np(ifft2c(md).real)
        return out

    # ---------------------------------------------------------------- fresh computation

    def plan(self, slice_id: int, target: str, source: str, eps: float, seed: int) -> list[Job]:
        """What :meth:`view` misses for this setting, as jobs in order (the attack on this
        slice, then the diffusion reconstructions), each with its estimated seconds on this
        machine; empty when the view is saved."""
        eps = self.check(slice_id, target, source, eps, seed)
        seed = int(seed) if target == "diffusion" else self.seeds[0]
        sid = int(slice_id)
        one = self.data.take([sid])
        jobs: list[Job] = []
        attack = eps > 0 and source != RANDOM and not self.has_perturbation(source, sid, eps)
        if attack:
            jobs.append(
                Job(
                    "attack",
                    f"attack {MODEL_LABELS[source]}",
                    self.attack_seconds(source),
                    lambda progress: self._attack(source, one, eps, progress),
                )
            )
        if target == "diffusion":
            t = self._seeded[seed]
            if not self.has_reconstruction("clean", sid, 0.0, seed):
                jobs.append(
                    Job(
                        "reconstruction",
                        "reconstruct the clean measurement with the diffusion model",
                        self.reconstruction_seconds(),
                        lambda _progress: t(one.y, one.slice_ids),
                    )
                )
            if eps > 0 and (attack or not self.has_reconstruction(source, sid, eps, seed)):
                jobs.append(
                    Job(
                        "reconstruction",
                        "reconstruct the perturbed measurement with the diffusion model",
                        self.reconstruction_seconds(),
                        lambda _progress: t(self.perturbation(source, sid, eps)[0], one.slice_ids),
                    )
                )
        return jobs

    def compute(
        self,
        slice_id: int,
        target: str,
        source: str,
        eps: float,
        seed: int,
        progress: bool | None = None,
    ) -> View:
        """Run what :meth:`view` misses for this setting (:meth:`plan`), store it in the
        ``runs/`` caches, and return the view."""
        jobs = self.plan(slice_id, target, source, eps, seed)
        bar = tqdm(jobs, desc="computing", disable=progress_disabled(progress), leave=False)
        try:
            for job in bar:
                bar.set_postfix_str(job.kind)
                job.run(progress)
        finally:
            bar.close()
            self._forget(source)
        return self.view(slice_id, target, source, eps, seed)

    def reconstruction_seconds(self) -> float:
        """Estimated seconds of one diffusion reconstruction here: two sampler steps timed
        (after a warm-up) times the sampler's step count (NaN when it cannot be timed)."""
        if "recon" not in self._timing:
            diff = self.models["diffusion"]
            y, sid = self.data.y[:1], [self.slice_ids[0]]
            try:
                with torch.no_grad():
                    if hasattr(diff, "reconstruct") and hasattr(diff, "steps"):
                        diff.reconstruct(y, self.mask, steps=2, slice_ids=sid)
                        t0 = time.perf_counter()
                        diff.reconstruct(y, self.mask, steps=2, slice_ids=sid)
                        sec = (time.perf_counter() - t0) / 2 * int(diff.steps)
                    else:
                        t0 = time.perf_counter()
                        diff(y, self.mask)
                        sec = time.perf_counter() - t0
            except Exception:  # an estimate only: the button then says "cost unknown"
                sec = math.nan
            self._timing["recon"] = sec
        return self._timing["recon"]

    def attack_seconds(self, source: str) -> float:
        """Estimated seconds of the attack on ``source`` for one slice and one eps: one
        gradient pass timed (after a warm-up) times the attack's steps (the diffusion source:
        two sampler steps with gradients, times its differentiated steps and noise samples);
        NaN when it cannot be timed."""
        if source not in self._timing:
            a, s = self.profile.attack, self.settings[source]
            y = self.data.y[:1]
            try:
                if source == "diffusion":
                    diff = self.models["diffusion"]

                    def one_pass() -> None:
                        x = y.clone().requires_grad_(True)
                        out = diff.reconstruct(  # type: ignore[operator]
                            x, self.mask, steps=2, slice_ids=[0], grad_checkpoint=True
                        )
                        out.abs().sum().backward()

                    per = 0.5 * a.diffusion_steps * max(1, a.diffusion_eot_samples)
                else:
                    from ..attacks.kspace import in_precision

                    model = in_precision(self.models[source], s.precision)

                    def one_pass() -> None:
                        x = y.clone().requires_grad_(True)
                        model(x, self.mask).abs().sum().backward()

                    per = 1.0
                one_pass()
                t0 = time.perf_counter()
                one_pass()
                sec = (time.perf_counter() - t0) * per * s.steps
            except Exception:  # an estimate only
                sec = math.nan
            self._timing[source] = sec
        return self._timing[source]

    def _attack(self, source: str, one: selection.SliceSet, eps: float, progress: bool | None):
        if source == "diffusion":
            a = self.profile.attack
            return attack_runs.run_diffusion_whitebox(
                self.models["diffusion"],  # type: ignore[arg-type]
                one,
                [eps],
                self.settings["diffusion"],
                profile=self.profile,
                steps=a.diffusion_steps,
                samples=a.diffusion_eot_samples,
                cache=self.cache,
                progress=progress,
            )
        return attack_runs.run_whitebox(
            self.models[source],
            source,
            one,
            [eps],
            self.settings[source],
            profile=self.profile,
            batch_size=1,
            cache=self.cache,
            progress=progress,
        )


def _np(x: Tensor) -> np.ndarray:
    return x.detach().cpu().to(torch.float32).reshape(x.shape[-2], x.shape[-1]).numpy()


def _expand_columns(arr: np.ndarray, mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Bundle columns ``[H, n]`` (real) or ``[2, H, n]`` (real, imaginary) -> ``[1, 1, H, W]``."""
    cols = torch.nonzero(mask).flatten()
    a = torch.from_numpy(arr.astype(np.float32))
    re, im = (a[0], a[1]) if a.ndim == 3 else (a, torch.zeros_like(a))
    out = torch.zeros(1, 1, re.shape[0], mask.shape[0], dtype=dtype)
    out[0, 0][:, cols] = torch.complex(re, im).to(dtype)
    return out


def _short(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (for messages)."""
    try:
        return str(Path(path).resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)


def _source_label(source: str) -> str:
    return "random control" if source == RANDOM else f"from {MODEL_LABELS.get(source, source)}"


def load_study(
    profile: Profile,
    *,
    data_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    bundle: str | os.PathLike | None = None,
) -> Study:
    """The :class:`Study` of a profile: its test split, the models from their weights, the
    ``runs/<profile>`` caches and, as fallback, ``results/<profile>/explorer.npz``.

    ``profile``: the :class:`Profile` (a notebook resolves its ``profile`` parameter with
    :func:`mripkg.profiles.get_profile`)."""
    from ..data import load_test_split
    from ..evaluation.clean import build_reconstructors

    prof = check_profile(profile)
    test = load_test_split(prof, data_dir)
    models, metas, _ = build_reconstructors(prof, None, retrain=False)
    if bundle is None:  # this run's results/, else the shipped copy (installed package)
        found = [d / "explorer.npz" for d in paths.results_dirs(prof.name)]
        bundle = next((b for b in found if b.is_file()), found[0])
    curve_dirs = [Path(root) if root else paths.RUNS_DIR / prof.name]
    curve_dirs += paths.results_dirs(prof.name)
    try:
        return Study(prof, test, models, metas, root=root, bundle=bundle, curve_dirs=curve_dirs)
    except BundleMismatch as exc:  # a stale bundle must not hide complete runs/ caches
        warnings.warn(f"{exc}; the bundle is ignored", stacklevel=2)
        return Study(prof, test, models, metas, root=root, bundle=None, curve_dirs=curve_dirs)


# --------------------------------------------------------------------------------------------
# bundle export


def export_bundle(study: Study, path: str | os.PathLike | None = None) -> Path:
    """Write what the explorer needs from ``runs/<profile>`` into one compressed ``.npz``
    (default ``results/<profile>/explorer.npz``), atomically.

    Contents: ``meta`` (JSON: profile, slice ids, eps grid, seeds, mask columns, settings
    digests), ``curves`` (JSON, the per-slice PSNR table), every cached perturbation as
    float16 ``[H, n_sampled_columns]`` (``[2, H, n]`` when it has an imaginary part) under
    ``delta|<source>|<slice>|<eps>``, and every cached diffusion reconstruction as float16
    ``[H, W]`` under ``recon|diffusion|<seed>|<source or clean>|<slice>|<eps>``.  The
    supervised reconstructions are not stored (the explorer re-runs them in milliseconds)."""
    prof = study.profile
    path = Path(path) if path is not None else paths.results_dir(prof.name) / "explorer.npz"
    cols = torch.nonzero(study.mask).flatten()
    arrays: dict[str, np.ndarray] = {}
    pos_eps = [e for e in study.eps if e > 0]
    for source in SOURCES:
        for sid in study.slice_ids:
            for e in pos_eps:
                res = study.cache.load(source, study.data.split, sid, e, study.settings[source])
                if res is None:
                    continue
                d = res.delta[0, 0, 0][:, cols]
                arr = d.real if not bool(d.imag.ne(0).any()) else torch.stack([d.real, d.imag])
                arrays[Bundle.delta_key(source, sid, e)] = arr.numpy().astype(np.float16)
    for seed in study.seeds:
        t = study._seeded[seed]
        for sid in study.slice_ids:
            b = study._pos(sid)
            cands: list[tuple[str, float, Tensor]] = [("clean", 0.0, study.data.y[b : b + 1])]
            for source in (*SOURCES, RANDOM):
                for e in pos_eps:
                    try:
                        y1 = study.perturbation(source, sid, e)[0]
                    except Missing:
                        continue
                    cands.append((source, e, y1))
            for source, e, y in cands:
                if t.pending(y, [sid]) == 0:
                    x = t(y, [sid])[0, 0]
                    arrays[Bundle.recon_key(seed, source, sid, e)] = x.numpy().astype(np.float16)
    meta = {
        "format": BUNDLE_FORMAT,
        "profile": prof.name,
        "image_size": prof.image_size,
        "slice_ids": study.slice_ids,
        "eps": study.eps,
        "seeds": study.seeds,
        "mask_columns": cols.tolist(),
        "settings": {m: s.digest() for m, s in study.settings.items()},
        "recon_tags": {str(s): t.tag for s, t in study._seeded.items()},
        "written": time.strftime("%Y-%m-%d"),
    }
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    arrays["curves"] = np.array(json.dumps(study.curves, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# --------------------------------------------------------------------------------------------
# panels

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

    from ..report.figures import use_style

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

        from ..report.figures import no_ticks

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


# --------------------------------------------------------------------------------------------
# widget


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
        from ..report.figures import no_ticks

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


__all__ = [
    "BUNDLE_FORMAT",
    "BundleMismatch",
    "RANDOM",
    "SOURCES",
    "TARGETS",
    "Bundle",
    "Job",
    "Explorer",
    "ExplorerError",
    "Missing",
    "Panels",
    "SliceScroller",
    "Study",
    "View",
    "describe_plan",
    "duration",
    "explore",
    "export_bundle",
    "load_study",
    "slice_scroller",
]
