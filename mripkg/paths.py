"""Repository-rooted paths that never depend on the working directory."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR: Path = Path(__file__).resolve().parent
#: Root of the checkout (the folder holding pyproject.toml).  ``$MRIPKG_ROOT`` overrides it,
#: e.g. for an installed (non-editable) package.
REPO_ROOT: Path = Path(os.environ.get("MRIPKG_ROOT", PACKAGE_DIR.parent)).resolve()
NOTEBOOKS_DIR: Path = REPO_ROOT / "notebooks"
FIGURES_DIR: Path = REPO_ROOT / "figures"
BUILD_DIR: Path = REPO_ROOT / "build"
RUNS_DIR: Path = REPO_ROOT / "runs"
WEIGHTS_DIR: Path = REPO_ROOT / "weights"
RESULTS_DIR: Path = REPO_ROOT / "results"


def run_dir(profile: str) -> Path:
    """Artifacts of one profile: ``runs/<profile>/`` (created on demand)."""
    d = RUNS_DIR / profile
    d.mkdir(parents=True, exist_ok=True)
    return d


def figures_dir(profile: str) -> Path:
    """Where figures go: ``figures/`` for the quick profile (what the README shows), else
    ``runs/<profile>/figures/`` so that tests and GPU runs never overwrite committed figures."""
    d = FIGURES_DIR if profile == "quick" else RUNS_DIR / profile / "figures"
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
    """Weights committed to the repository: ``weights/<profile>/``."""
    return WEIGHTS_DIR / profile


def results_dir(profile: str) -> Path:
    """Committed results of a profile: ``results/<profile>/`` (not created here)."""
    return RESULTS_DIR / profile
