"""The explorer's data model: a :class:`Study` over the saved robustness results, one
:class:`View` of it, the bundle (:class:`Bundle`, :func:`export_bundle`) and the errors.

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
import json
import math
import os
import tempfile
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

from ... import metrics, paths
from ...attacks import control
from ...attacks.cache import AttackCache
from ...attacks.kspace import AttackSettings
from ...data import Split
from ...evaluation import attack_runs, selection, targets
from ...models import MODEL_LABELS, NAMES
from ...physics import equispaced_mask, ifft2c
from ...profiles import Profile, check_profile, progress_disabled

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
                    from ...attacks.kspace import in_precision

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
    from ...data import load_test_split
    from ...evaluation.clean import build_reconstructors

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
