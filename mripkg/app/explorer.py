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
from ..profiles import Profile, get_profile, progress_disabled

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
        self.cache = AttackCache(profile.name, self.root / "attacks")
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
                        f"{slice_id} at eps {eps:g} (not in {_short(self.cache.root)} nor in "
                        "the bundle).",
                    )
                delta = _expand_columns(arr, self.mask, y0.dtype)
                out = (y0 + delta * m, delta, "bundle")
        self._memo[key] = out
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
                        f"No saved diffusion reconstruction of test slice {slice_id}, {what}, "
                        f"eps {eps:g}, sampler seed {seed} (notebook 04 reconstructs slices "
                        f"{self.diffusion_ids} at eps {list(self.profile.attack.diffusion_eps)}"
                        f", other seeds only at eps {self.profile.attack.route_eps:g}).",
                    )
                out = (torch.from_numpy(arr.astype(np.float32))[None, None], "bundle")
        self._memo[key] = out
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
            origin=f"perturbation: {o_pert}; reconstructions: {o_clean}"
            + ("" if o_rec == o_clean else f" / {o_rec}"),
        )
        self._memo[key] = v
        return v

    # ---------------------------------------------------------------- fresh computation

    def compute(
        self,
        slice_id: int,
        target: str,
        source: str,
        eps: float,
        seed: int,
        progress: bool | None = None,
    ) -> View:
        """Run what :meth:`view` misses for this setting (the attack on this slice, the
        diffusion reconstructions), store it in the ``runs/`` caches, and return the view."""
        eps = self.check(slice_id, target, source, eps, seed)
        seed = int(seed) if target == "diffusion" else self.seeds[0]
        one = self.data.take([int(slice_id)])
        jobs: list[tuple[str, Callable[[], object]]] = []
        if eps > 0 and source != RANDOM:
            try:
                self.perturbation(source, slice_id, eps)
            except Missing:
                jobs.append(
                    (
                        f"attack on {source}",
                        lambda: self._attack(source, one, eps, progress),
                    )
                )
        if target == "diffusion":
            t = self._seeded[seed]
            jobs.append(("clean reconstruction", lambda: t(one.y, one.slice_ids)))
            if eps > 0:
                jobs.append(
                    (
                        "perturbed reconstruction",
                        lambda: t(self.perturbation(source, slice_id, eps)[0], one.slice_ids),
                    )
                )
        bar = tqdm(jobs, desc="computing", disable=progress_disabled(progress))
        for label, job in bar:
            bar.set_postfix_str(label)
            job()
        self._memo = {k: v for k, v in self._memo.items() if k[0] != "view"}
        self._memo = {
            k: v for k, v in self._memo.items() if not (k[0] == "pert" and k[1] == source)
        }
        return self.view(slice_id, target, source, eps, seed)

    def _attack(self, source: str, one: selection.SliceSet, eps: float, progress: bool | None):
        if source == "diffusion":
            a = self.profile.attack
            return attack_runs.run_diffusion_whitebox(
                self.models["diffusion"],  # type: ignore[arg-type]
                one,
                [eps],
                self.settings["diffusion"],
                profile=self.profile.name,
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
            profile=self.profile.name,
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
    profile: str | Profile = "quick",
    *,
    data_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    bundle: str | os.PathLike | None = None,
) -> Study:
    """The :class:`Study` of a profile: its test split, the models from their weights, the
    ``runs/<profile>`` caches and, as fallback, ``results/<profile>/explorer.npz``.

    ``profile``: a name (``$MRIPKG_PROFILE`` overrides it, as in the notebooks) or a Profile.
    Raises ``ValueError`` naming the known profiles for an unknown name."""
    from ..data import load_test_split
    from ..evaluation.clean import build_reconstructors

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    test = load_test_split(prof, data_dir)
    models, metas, _ = build_reconstructors(prof, None, retrain=False)
    if bundle is None:
        bundle = paths.results_dir(prof.name) / "explorer.npz"
    curve_dirs = [Path(root) if root else paths.RUNS_DIR / prof.name, paths.results_dir(prof.name)]
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


def _figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    from ..report.figures import use_style

    use_style()
    return Figure(figsize=figsize, dpi=90, layout="constrained")


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


class Panels:
    """The explorer's figure: ground truth, clean and perturbed reconstruction, artifact,
    ``|M delta|`` (log10), ``Re F^-1 M delta``, the numbers and the PSNR-vs-eps curve; built
    once, updated in place by :meth:`draw`."""

    def __init__(self) -> None:
        from ..report.figures import no_ticks

        self.fig = _figure((11.0, 5.6))
        axs = self.fig.subplots(2, 4)
        self.ax = dict(
            zip(
                ["gt", "clean", "perturbed", "artifact", "kspace", "image_delta", "text", "curve"],
                axs.flatten(),
                strict=True,
            )
        )
        self.im: dict[str, Any] = {}
        blank = np.zeros((8, 8))
        for k, cmap in (
            ("gt", "gray"),
            ("clean", "gray"),
            ("perturbed", "gray"),
            ("artifact", "RdBu_r"),
            ("kspace", "magma"),
            ("image_delta", "RdBu_r"),
        ):
            self.im[k] = self.ax[k].imshow(blank, cmap=cmap, vmin=0, vmax=1)
            no_ticks(self.ax[k])
        # unsampled columns (NaN): grey, not measured
        self.im["kspace"].set_cmap(self.im["kspace"].cmap.with_extremes(bad="0.85"))
        for k in ("artifact", "kspace", "image_delta"):
            # inset colour bars: every image panel keeps the same size
            cax = self.ax[k].inset_axes((1.03, 0.05, 0.05, 0.9))
            self.fig.colorbar(self.im[k], cax=cax)
            cax.tick_params(labelsize=6)
        self.ax["text"].axis("off")
        self.text = self.ax["text"].text(
            0.0, 1.0, "", va="top", ha="left", family="DejaVu Sans Mono", fontsize=8
        )

    def draw(self, v: View) -> None:
        """Put one view into the figure."""
        lab = MODEL_LABELS[v.target]
        _set_image(self.im["gt"], v.gt)
        self.ax["gt"].set_title(f"ground truth\ntest slice {v.slice_id}")
        _set_image(self.im["clean"], v.clean)
        self.ax["clean"].set_title(
            f"{lab}, clean f(y)\n{v.psnr_clean:.2f} dB / SSIM {v.ssim_clean:.3f}"
        )
        _set_image(self.im["perturbed"], v.perturbed)
        self.ax["perturbed"].set_title(
            f"perturbed f(y + Mδ), ε = {v.eps:g}\n{v.psnr:.2f} dB / SSIM {v.ssim:.3f}"
        )
        a = float(np.abs(v.artifact).max()) or 1e-6
        _set_image(self.im["artifact"], v.artifact)
        self.im["artifact"].set_clim(-a, a)
        self.ax["artifact"].set_title("artifact f(y + Mδ) − f(y)")
        k = np.log10(v.kspace + 1e-12)
        top = float(k.max()) if v.kspace.max() > 0 else 0.0
        _set_image(self.im["kspace"], np.where(v.kspace > 0, k, np.nan))
        self.im["kspace"].set_clim(top - 4, top)
        self.ax["kspace"].set_title("|Mδ| in k-space, log10\n(grey: columns not sampled)")
        d = float(np.abs(v.image_delta).max()) or 1e-6
        _set_image(self.im["image_delta"], v.image_delta)
        self.im["image_delta"].set_clim(-d, d)
        self.ax["image_delta"].set_title("Re F⁻¹ Mδ (image domain)")
        src = "white-box" if v.source == v.target else _source_label(v.source)
        seed = f", sampler seed {v.seed}" if v.target == "diffusion" else ""
        self.text.set_text(
            "\n".join(
                [
                    f"target   {lab}{seed}",
                    f"source   {src}",
                    f"eps      {v.eps:g}  (||Mδ||/||k|| = {v.rel_norm:.4f})",
                    "",
                    "           PSNR dB   SSIM",
                    f"clean      {v.psnr_clean:7.2f}  {v.ssim_clean:.3f}",
                    f"perturbed  {v.psnr:7.2f}  {v.ssim:.3f}",
                    f"drop       {v.psnr_clean - v.psnr:7.2f}  {v.ssim_clean - v.ssim:.3f}",
                    "",
                    *_wrap(v.origin, 44),
                ]
            )
        )
        ax = self.ax["curve"]
        ax.clear()
        c = v.curve
        if c.get("eps"):
            ax.plot(
                c["eps"],
                c["mean"],
                "-o",
                color="tab:blue",
                ms=3,
                label=f"mean, {c['n_slices']} slices",
            )
            ax.plot(
                c["eps"], c["slice"], "-", color="tab:orange", lw=0.8, label=f"slice {v.slice_id}"
            )
        if c.get("control") and v.source != RANDOM:
            ax.plot(
                c["control_eps"], c["control"], "--", color="0.5", lw=0.8, label="control, mean"
            )
        ax.plot([v.eps], [v.psnr], "*", color="tab:red", ms=11, label="this view")
        ax.set_xlabel("ε (relative L2 norm)")
        ax.set_ylabel("PSNR dB")
        ax.set_title(f"PSNR vs ε: {lab}, {src}")
        ax.legend(loc="best", fontsize=6.5)
        if not c.get("eps"):
            ax.text(
                0.5,
                0.92,
                "no saved curve (notebooks 03/04 did not run this pair)",
                transform=ax.transAxes,
                ha="center",
                color="0.4",
                fontsize=7,
            )
        ax.set_xlim(-0.004, max(0.08, v.eps, *c.get("eps", [0.0])) + 0.004)

    def png(self) -> bytes:
        """The figure as PNG bytes.  The layout is solved on the first call and then kept
        (re-solving it costs more than drawing)."""
        out = _png(self.fig)
        if self.fig.get_layout_engine() is not None:
            self.fig.set_layout_engine("none")
        return out


def _set_image(im: Any, a: np.ndarray) -> None:
    """Replace an ``AxesImage``'s data and fit its extent and its axes to the new shape (pixel
    coordinates, so overlays such as contours line up)."""
    h, w = a.shape
    im.set_data(a)
    im.set_extent((-0.5, w - 0.5, h - 0.5, -0.5))
    im.axes.set_xlim(-0.5, w - 0.5)
    im.axes.set_ylim(h - 0.5, -0.5)


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(" "), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return [*lines, cur] if cur else lines


# --------------------------------------------------------------------------------------------
# widget


class Explorer:
    """ipywidgets UI over a :class:`Study`: controls for test slice, target, source, eps and
    sampler seed; one image of the panels; a status line; a button that computes a missing
    entry.  Set the controls' ``value`` (or call :meth:`set`) and the panels follow
    (:attr:`view` holds the data shown, :attr:`message` the status, :attr:`last_update_s` the
    time the last update took)."""

    def __init__(
        self,
        study: Study,
        *,
        slice_id: int | None = None,
        target: str = "diffusion",
        source: str = "resunetpp",
        eps: float | None = None,
        seed: int | None = None,
    ) -> None:
        import ipywidgets as w

        self.study = study
        p = study.profile
        ids = study.diffusion_ids
        slice_id = ids[len(ids) // 2] if slice_id is None else slice_id
        eps = p.attack.route_eps if eps is None else eps
        seed = study.seeds[0] if seed is None else seed
        e0 = study.check(slice_id, target, source, eps, seed)
        style = {"description_width": "110px"}
        lay = w.Layout(width="420px")
        self.slice = w.SelectionSlider(
            options=[(f"{s} (z = {z})", s) for s, z in zip(study.slice_ids, study.z, strict=True)],
            value=int(slice_id),
            description="test slice",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.target = w.Dropdown(
            options=[(MODEL_LABELS[m], m) for m in TARGETS],
            value=target,
            description="target model",
            style=style,
            layout=lay,
        )
        self.source = w.Dropdown(
            options=self._source_options(target),
            value=source,
            description="perturbation",
            style=style,
            layout=lay,
        )
        self.eps = w.SelectionSlider(
            options=[(f"{e:g}", e) for e in study.eps],
            value=e0,
            description="ε",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.seed = w.Dropdown(
            options=study.seeds,
            value=int(seed),
            description="sampler seed",
            style=style,
            layout=lay,
        )
        self.button = w.Button(
            description="run attack on this slice",
            icon="play",
            layout=w.Layout(width="240px", display="none"),
            button_style="warning",
        )
        self.status = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(width="990px"))
        self.log = w.Output()
        self.panels = Panels()
        self.view: View | None = None
        self.message = ""
        self.last_update_s = math.nan
        for c in (self.slice, self.eps, self.seed, self.source):
            c.observe(self._changed, names="value")
        self.target.observe(self._target_changed, names="value")
        self.button.on_click(lambda _b: self.run_missing())
        controls = w.VBox([self.slice, self.target, self.source, self.eps, self.seed])
        side = w.VBox([self.status, self.button], layout=w.Layout(width="540px"))
        self.log.layout = w.Layout(width="990px")  # progress bars of a fresh computation
        self.widget = w.VBox([w.HBox([controls, side]), self.log, self.image])
        self.update()

    def _source_options(self, target: str) -> list[tuple[str, str]]:
        opts = [(f"white-box on {MODEL_LABELS[target]}", target)]
        opts += [(f"transferred from {MODEL_LABELS[m]}", m) for m in SOURCES if m != target]
        return [*opts, ("equal-norm random control", RANDOM)]

    def _target_changed(self, change: dict) -> None:
        keep, quiet = self.source.value, self._quiet
        self._quiet = True  # replacing the options resets the value: no update in between
        try:
            self.source.options = self._source_options(change["new"])
            self.source.value = keep
        finally:
            self._quiet = quiet
        self.seed.disabled = change["new"] != "diffusion"
        self.update()

    def _changed(self, _change: dict) -> None:
        self.update()

    def set(self, **values: Any) -> View | None:
        """Set several controls (``slice_id``, ``target``, ``source``, ``eps``, ``seed``) and
        update once; ``ExplorerError`` for a bad value."""
        names = {
            "slice_id": self.slice,
            "target": self.target,
            "source": self.source,
            "eps": self.eps,
            "seed": self.seed,
        }
        bad = set(values) - set(names)
        if bad:
            raise ExplorerError(f"unknown controls {sorted(bad)}; use {sorted(names)}")
        cur = self.settings()
        cur.update(values)
        e = self.study.check(**cur)
        self._quiet = True
        try:
            self.target.value = cur["target"]
            self.slice.value = int(cur["slice_id"])
            self.source.value = cur["source"]
            self.eps.value = e
            self.seed.value = int(cur["seed"])
        finally:
            self._quiet = False
        self.update()
        return self.view

    _quiet = False

    def settings(self) -> dict[str, Any]:
        return {
            "slice_id": int(self.slice.value),
            "target": self.target.value,
            "source": self.source.value,
            "eps": float(self.eps.value),
            "seed": int(self.seed.value),
        }

    def update(self) -> None:
        """Recompute the view for the current controls and redraw (or say what is missing)."""
        if self._quiet:
            return
        t0 = time.perf_counter()
        s = self.settings()
        try:
            v = self.study.view(**s)
        except Missing as exc:
            self.view = None
            self.message = exc.message
            self.status.value = (
                f"<b style='color:#b35900'>Not saved.</b> {exc.message}<br>"
                "Press the button to compute it now (stored in the runs/ caches)."
            )
            self.button.layout.display = None
            self.image.layout.display = "none"  # no blank space
            self.last_update_s = time.perf_counter() - t0
            return
        self.view = v
        self.message = ""
        self.button.layout.display = "none"
        self.panels.draw(v)
        self.image.value = self.panels.png()
        self.image.layout.display = None
        self.last_update_s = time.perf_counter() - t0
        self.status.value = (
            f"PSNR {v.psnr_clean:.2f} → {v.psnr:.2f} dB, SSIM {v.ssim_clean:.3f} → "
            f"{v.ssim:.3f}<br><small>{v.origin}; updated in "
            f"{1000 * self.last_update_s:.0f} ms</small>"
        )

    def sweep(self, control: str = "eps") -> list[float]:
        """Move one control (``"eps"``, ``"slice_id"``, ``"source"`` or ``"target"``) through
        all its values, as a user would, and back; returns the seconds of each update that
        drew panels (a latency measurement; entries that are not saved are skipped)."""
        widgets = {
            "eps": self.eps,
            "slice_id": self.slice,
            "source": self.source,
            "target": self.target,
        }
        if control not in widgets:
            raise ExplorerError(f"unknown control {control!r}; use {sorted(widgets)}")
        c = widgets[control]
        start = c.value
        times = []
        for _label, value in list(c.options):
            if value == start:
                continue
            c.value = value
            if self.view is not None:
                times.append(self.last_update_s)
        c.value = start
        return times

    def run_missing(self, progress: bool | None = None) -> View:
        """Compute the missing entry of the current setting (progress bar in :attr:`log`)."""
        self.button.disabled = True
        try:
            self.log.clear_output()
            with self.log:
                v = self.study.compute(**self.settings(), progress=progress)
        finally:
            self.button.disabled = False
        self.update()
        return v


def explore(profile: str = "quick", **kw: Any) -> Explorer:
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
    "Bundle",
    "BundleMismatch",
    "Explorer",
    "ExplorerError",
    "Missing",
    "Panels",
    "RANDOM",
    "SOURCES",
    "SliceScroller",
    "Study",
    "TARGETS",
    "View",
    "explore",
    "export_bundle",
    "load_study",
    "slice_scroller",
]
