"""Where mripkg reads and writes; never the working directory of a notebook kernel.

Two layouts:

* **checkout** (``pyproject.toml`` beside the package, ``pip install -e .`` or ``PYTHONPATH``):
  everything lives in the checkout: ``notebooks/``, ``weights/``, and the outputs ``runs/``,
  ``build/``, ``figures/``, ``results/``.
* **installed** (``pip install .``, the package in site-packages): the notebooks and the quick
  weights are read from the package (``mripkg/notebooks/``, ``mripkg/weights/``, shipped as
  package data); outputs go under ``$MRIPKG_HOME``, else the current working directory, never
  into site-packages.

``$MRIPKG_ROOT`` forces the output root in both layouts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PACKAGE_DIR: Path = Path(__file__).resolve().parent
ROOT_ENV = "MRIPKG_ROOT"
HOME_ENV = "MRIPKG_HOME"


def is_checkout(package_dir: Path = PACKAGE_DIR) -> bool:
    """Whether the package sits in a source checkout (``pyproject.toml`` beside it)."""
    return (package_dir.parent / "pyproject.toml").is_file()


def output_root(
    package_dir: Path = PACKAGE_DIR,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """Root of the outputs: ``$MRIPKG_ROOT``; else the checkout; else ``$MRIPKG_HOME``; else
    the current working directory."""
    env = os.environ if environ is None else environ
    if env.get(ROOT_ENV):
        return Path(env[ROOT_ENV]).expanduser().resolve()
    if is_checkout(package_dir):
        return package_dir.parent
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser().resolve()
    return (Path.cwd() if cwd is None else cwd).resolve()


def source_root(package_dir: Path = PACKAGE_DIR) -> Path:
    """Where ``notebooks/`` and ``weights/`` are read from: the checkout, else the package."""
    return package_dir.parent if is_checkout(package_dir) else package_dir


#: Root of the outputs (the checkout, or $MRIPKG_HOME / the working directory when installed).
REPO_ROOT: Path = output_root()
NOTEBOOKS_DIR: Path = source_root() / "notebooks"
WEIGHTS_DIR: Path = source_root() / "weights"
FIGURES_DIR: Path = REPO_ROOT / "figures"
BUILD_DIR: Path = REPO_ROOT / "build"
RUNS_DIR: Path = REPO_ROOT / "runs"
RESULTS_DIR: Path = REPO_ROOT / "results"
SOURCE_RESULTS_DIR: Path = source_root() / "results"


def run_dir(profile: str) -> Path:
    """Artifacts of one profile: ``runs/<profile>/`` (created on demand)."""
    d = RUNS_DIR / profile
    d.mkdir(parents=True, exist_ok=True)
    return d


def results_dir(profile: str) -> Path:
    """Summary results of one profile (small JSON/CSV; ``results/quick`` is committed)."""
    return RESULTS_DIR / profile


def shipped_results_dir(profile: str) -> Path:
    """The committed results of a profile as shipped: ``results/<profile>/`` of the checkout,
    or ``mripkg/results/<profile>/`` of the installed package (quick only)."""
    return SOURCE_RESULTS_DIR / profile


def results_dirs(profile: str) -> list[Path]:
    """Where to *read* a profile's results, in order: :func:`results_dir` (this run's copy),
    then the shipped ones when they are elsewhere (an installed package).  Readers such as the
    explorer look for ``explorer.npz`` and the per-slice CSVs here."""
    dirs = [results_dir(profile)]
    shipped = shipped_results_dir(profile)
    if shipped.resolve() != dirs[0].resolve():
        dirs.append(shipped)
    return dirs


#: Set to 1 by ``python -m mripkg.reproduce`` (``make figures``) for itself and its kernels:
#: only such a run writes the quick profile's figures into the committed ``figures/``.
PUBLISH_ENV = "MRIPKG_PUBLISH_FIGURES"


def figures_dir(profile: str, publish: bool | None = None) -> Path:
    """Where figures go: ``figures/`` for the quick profile when publishing (``make figures``;
    ``publish`` defaults to ``$MRIPKG_PUBLISH_FIGURES == "1"``), else
    ``runs/<profile>/figures/``, so that a notebook run by hand in JupyterLab, tests and GPU
    runs never rewrite the committed figures."""
    if publish is None:
        publish = os.environ.get(PUBLISH_ENV, "") == "1"
    d = FIGURES_DIR if (profile == "quick" and publish) else RUNS_DIR / profile / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


def build_dir(profile: str) -> Path:
    """Executed notebooks: ``build/<profile>/``."""
    d = BUILD_DIR / profile
    d.mkdir(parents=True, exist_ok=True)
    return d


def checkpoint_dir(profile: str) -> Path:
    """Checkpoints written by training: ``runs/<profile>/checkpoints/``."""
    d = RUNS_DIR / profile / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    return d


def shipped_weights_dir(profile: str) -> Path:
    """Shipped weights: ``weights/<profile>/`` of the checkout, or of the installed package."""
    return WEIGHTS_DIR / profile
