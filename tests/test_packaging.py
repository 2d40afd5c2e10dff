"""What the wheel ships: within its size budget, and enough to open the explorer from an empty
folder (notebooks, quick weights, the explorer bundle and the per-slice results)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: the wheel's budget (compressed); measured 20.5 MiB on 2026-12-06 after the quick re-run
#: (explorer bundle 8.0 MiB, weights 6.3, assets 6.2)
WHEEL_BUDGET_MB = 30.0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a checkout")
    out = tmp_path_factory.mktemp("wheel")
    work = tmp_path_factory.mktemp("wheel-build")
    env = dict(os.environ, PIP_NO_INDEX="1")
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    src = work / "src"
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for f in filter(None, files):
        p = ROOT / f.decode()
        if p.is_file():
            (src / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            (src / f.decode()).write_bytes(p.read_bytes())
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip().splitlines()[-1:]}")
    return next(out.glob("mripkg-*.whl"))


def test_wheel_within_budget_and_ships_what_the_explorer_needs(wheel):
    size_mb = wheel.stat().st_size / 2**20
    print(f"wheel: {size_mb:.1f} MiB (budget {WHEEL_BUDGET_MB:g})")
    assert size_mb <= WHEEL_BUDGET_MB
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "mripkg/results/quick/explorer.npz",
        "mripkg/results/quick/metrics_white_box_per_slice.csv",
        "mripkg/results/quick/metrics_transfer_per_slice.csv",
        "mripkg/notebooks/06_explorer.ipynb",
        "mripkg/weights/quick/ddpm.safetensors",
        "mripkg/app/lab.py",
        "mripkg/app/site.py",
    ):
        assert needed in names, needed
    assert not any(n.startswith("mripkg/results/smoke") for n in names)


def test_installed_package_opens_the_explorer_from_an_empty_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import mripkg.paths as p, mripkg.app.explorer as e\n"
        "from mripkg.profiles import get_profile\n"
        "assert not p.is_checkout()\n"
        "print(p.results_dirs('quick'))\n"
        "ex = e.explore(get_profile('quick'))\n"
        "assert ex.view is not None, ex.message\n"
        "print('view ok', ex.view.numbers()['psnr'])\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site), MRIPKG_THREADS="1")
    for k in ("MRIPKG_ROOT", "MRIPKG_HOME", "MRIPKG_PROFILE"):
        env.pop(k, None)
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0 and "the bundle is ignored" in r.stderr:
        # the shipped bundle no longer matches the quick settings (e.g. a changed sampler):
        # `make figures` re-exports it; until then the packaging path cannot be checked
        pytest.skip("results/quick/explorer.npz is stale for the current quick settings")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "view ok" in r.stdout
    assert str(site / "mripkg" / "results" / "quick") in r.stdout
    # nothing was written into the package; outputs only under the working directory
    assert not (site / "mripkg" / "runs").exists()
