"""The papermill runner: notebook 01 end to end under the smoke profile, and a failing
notebook that must stop the run with a message naming the notebook and the cell."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mripkg.app.reproduce import (
    MemoryWatch,
    declared_params,
    discover,
    params_per_notebook,
    parse_params,
    select,
    with_run_defaults,
)
from mripkg.paths import REPO_ROOT, build_dir, figures_dir, run_dir
from mripkg.profiles import QUICK


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, CI="1")
    env.pop("MRIPKG_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "mripkg.reproduce", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _write_nb(path, cells):
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(nb, str(path))


def test_discover_and_select(tmp_path):
    for name in ("02_b.ipynb", "01_a.ipynb", "10_c.ipynb", "notes.ipynb", "3_x.ipynb"):
        _write_nb(tmp_path / name, [])
    found = discover(tmp_path)
    assert [p.name for p in found] == ["01_a.ipynb", "02_b.ipynb", "10_c.ipynb"]
    assert [p.name for p in select(found, "10,1")] == ["01_a.ipynb", "10_c.ipynb"]
    with pytest.raises(ValueError, match="07"):
        select(found, "07")


def test_params_parsed_and_routed_to_the_notebooks_that_declare_them(tmp_path):
    assert parse_params(["flag=True", "n=3", "x=0.5", "grid=[1, 2]", "name=abc", "s='q'"]) == {
        "flag": True,
        "n": 3,
        "x": 0.5,
        "grid": [1, 2],
        "name": "abc",
        "s": "q",
    }
    assert parse_params(None) == {}
    for bad, match in (("novalue", "NAME=VALUE"), ("1x=2", "NAME=VALUE"), ("profile=quick", "--")):
        with pytest.raises(ValueError, match=match):
            parse_params([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_params(["a=1", "a=2"])
    a, b = tmp_path / "01_a.ipynb", tmp_path / "02_b.ipynb"
    tag = {"tags": ["parameters"]}
    _write_nb(a, [new_code_cell("profile: str = 'quick'\nflag: bool = False", metadata=tag)])
    _write_nb(b, [new_code_cell("profile = 'quick'\nn = 2", metadata=tag), new_code_cell("m = 1")])
    assert declared_params(a) == {"profile", "flag"}
    assert declared_params(b) == {"profile", "n"}  # not m: outside the parameters cell
    routed = params_per_notebook([a, b], {"flag": True, "n": 5})
    assert routed == {a: {"flag": True}, b: {"n": 5}}
    with pytest.raises(ValueError, match="typo"):
        params_per_notebook([a, b], {"typo": 1})


def test_a_run_writes_the_explorer_bundle_unless_told_not_to(tmp_path):
    a, b = tmp_path / "06_a.ipynb", tmp_path / "07_b.ipynb"
    for path, src in ((a, "make_bundle: bool = False\n"), (b, "n: int = 1\n")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": ["parameters"]})]
        nbformat.write(nb, str(path))
    assert with_run_defaults({a: {}, b: {"n": 2}}, None) == {a: {"make_bundle": True}, b: {"n": 2}}
    assert with_run_defaults({a: {"make_bundle": False}}, None) == {a: {"make_bundle": False}}
    assert with_run_defaults({a: {}}, "/data") == {a: {}}  # a user folder: results/ untouched


def test_unknown_param_is_a_clear_error():
    res = _run("--profile", "smoke", "--only", "01", "--param", "no_such_parameter=1", timeout=120)
    assert res.returncode == 2
    assert "no_such_parameter" in res.stderr and "01_data.ipynb" in res.stderr


def test_list():
    res = _run("--list", timeout=120)
    assert res.returncode == 0, res.stderr
    assert "01_data.ipynb" in res.stdout.splitlines()


@pytest.mark.slow
def test_notebook_01_end_to_end_smoke():
    res = _run("--profile", "smoke", "--only", "01")
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    executed = build_dir("smoke") / "01_data.ipynb"
    assert executed.is_file()
    nb = nbformat.read(executed, as_version=4)
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    figs = figures_dir("smoke")
    for ext in ("png", "pdf"):
        assert (figs / f"fig1_data_and_mask.{ext}").stat().st_size > 0
    manifest = (figs / "MANIFEST.md").read_text()
    assert "fig1_data_and_mask.png" in manifest and "01_data.ipynb" in manifest
    assert "smoke" in manifest
    assert (run_dir("smoke") / "metrics_zero_filled.json").is_file()


@pytest.mark.slow
def test_failing_notebook_stops_the_run(tmp_path):
    nbdir, out = tmp_path / "notebooks", tmp_path / "build"
    nbdir.mkdir()
    param = new_code_cell('profile: str = "quick"', metadata={"tags": ["parameters"]})
    _write_nb(
        nbdir / "01_fails.ipynb",
        [
            new_markdown_cell("# a notebook that fails"),
            param,
            new_code_cell("x = 1"),
            new_code_cell("raise RuntimeError('deliberate failure for the test')"),
            new_code_cell("assert False, 'never reached'"),
        ],
    )
    _write_nb(nbdir / "02_after.ipynb", [param, new_code_cell("open('ran', 'w').close()")])
    res = _run("--profile", "smoke", "--notebooks-dir", str(nbdir), "--build-dir", str(out))
    assert res.returncode != 0
    assert "01_fails.ipynb" in res.stderr
    assert "cell 4 of 5" in res.stderr
    assert "RuntimeError" in res.stderr and "deliberate failure" in res.stderr
    assert (out / "01_fails.ipynb").is_file()  # kept, with the traceback
    assert not (out / "02_after.ipynb").exists()  # stopped at the first failure
    assert not (nbdir / "ran").exists()


def test_memory_watch_sees_a_child_process() -> None:
    pytest.importorskip("psutil")
    code = "import time; b = bytearray(300_000_000); b[::4096] = b'x' * 73243; time.sleep(1.5)"
    with MemoryWatch(interval_s=0.1) as mem:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert mem.peak_gb is not None and mem.peak_gb > 0.25
    with MemoryWatch(interval_s=0.1) as idle:
        pass
    assert idle.peak_gb is None  # no child, no sample


def test_relative_data_dir_is_taken_from_the_callers_directory(tmp_path):
    nbdir, out = tmp_path / "notebooks", tmp_path / "build"
    nbdir.mkdir()
    (tmp_path / "mydata").mkdir()
    param = new_code_cell(
        'profile: str = "quick"\ndata_dir: str | None = None', metadata={"tags": ["parameters"]}
    )
    check = new_code_cell(
        "import os\n"
        "assert os.path.isabs(data_dir) and os.path.isdir(data_dir), data_dir\n"
        "open(os.path.join(data_dir, 'seen'), 'w').close()"
    )
    _write_nb(nbdir / "01_data_dir.ipynb", [param, check])
    env = dict(os.environ, CI="1", PYTHONPATH=str(REPO_ROOT))
    env.pop("MRIPKG_PROFILE", None)
    args = ["--profile", "smoke", "--notebooks-dir", str(nbdir), "--build-dir", str(out)]
    cmd = [sys.executable, "-m", "mripkg.reproduce", *args]
    # the kernel runs in notebooks/, the caller in tmp_path: "mydata" means tmp_path/mydata
    res = subprocess.run(
        [*cmd, "--data-dir", "mydata"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "mydata" / "seen").is_file()
    # a folder that does not exist is a one-line error, before any notebook runs
    res = subprocess.run(
        [*cmd, "--data-dir", "nowhere"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: --data-dir nowhere: not a folder ({tmp_path / 'nowhere'})"


def test_partial_run_keeps_the_whole_run_record(tmp_path, monkeypatch):
    import datetime as dt

    from mripkg import reproduce

    monkeypatch.setattr(reproduce, "figures_dir", lambda profile: tmp_path)
    monkeypatch.setattr(reproduce, "figure_files", lambda profile: sorted(tmp_path.glob("*.png")))
    for name in ("fig1_data_and_mask.png", "fig3_white_box.png"):
        (tmp_path / name).write_bytes(b"png")
    t = dt.datetime(2026, 1, 1, 12, 0, 0)
    whole = [
        reproduce.RunRecord("01_data.ipynb", 10.0, ["fig1_data_and_mask.png"]),
        reproduce.RunRecord("03_white_box.ipynb", 500.0, ["fig3_white_box.png"]),
    ]
    reproduce.write_manifest(QUICK, whole, t, 510.0, whole=True)
    part = [reproduce.RunRecord("01_data.ipynb", 7.0, ["fig1_data_and_mask.png"])]
    md = reproduce.write_manifest(QUICK, part, t.replace(hour=13), 7.0, whole=False).read_text()
    assert "total run time 510.0 s" in md  # the whole run's record survives
    assert "this partial run" in md and "7.0 s" in md
    assert "`01_data.ipynb` (7.0 s" in md and "`03_white_box.ipynb` (500.0 s" in md
    assert "| `fig3_white_box.png` | `03_white_box.ipynb` |" in md  # still attributed
    # a new whole run replaces the record
    md = reproduce.write_manifest(QUICK, whole, t, 300.0, whole=True).read_text()
    assert "total run time 300.0 s" in md and "510.0" not in md


# ------------------------------------------------------------------------------------------
# --only 06 on a clean clone; figures of interactive runs stay out of figures/


def test_explorer_alone_needs_attacks_or_a_bundle(tmp_path, monkeypatch):
    from mripkg import reproduce

    nbs = [tmp_path / f"{n}_x.ipynb" for n in ("01", "03", "04", "06")]
    monkeypatch.setattr(reproduce, "RUNS_DIR", tmp_path / "runs")
    bundle_dir = tmp_path / "results" / "smoke"
    monkeypatch.setattr(reproduce, "results_dirs", lambda profile: [bundle_dir])
    msg = reproduce.missing_inputs([nbs[3]], "smoke")
    assert msg is not None and "\n" not in msg
    assert "notebooks 03 and 04" in msg and "--only 03,04,06" in msg
    assert reproduce.missing_inputs(nbs[1:], "smoke") is None  # 03 and 04 run first
    assert reproduce.missing_inputs(nbs[:1], "smoke") is None  # no 06
    bundle_dir.mkdir(parents=True)
    (bundle_dir / "explorer.npz").write_bytes(b"x")
    assert reproduce.missing_inputs([nbs[3]], "smoke") is None  # the bundle
    (bundle_dir / "explorer.npz").unlink()
    (tmp_path / "runs" / "smoke" / "attacks").mkdir(parents=True)
    (tmp_path / "runs" / "smoke" / "attacks" / "a.pt").write_bytes(b"x")
    assert reproduce.missing_inputs([nbs[3]], "smoke") is None  # caches of an earlier run


def test_only_06_on_a_clean_clone_says_what_to_run(tmp_path):
    env = dict(os.environ, CI="1", MRIPKG_ROOT=str(tmp_path))
    env.pop("MRIPKG_PROFILE", None)
    r = subprocess.run(
        [sys.executable, "-m", "mripkg.reproduce", "--profile", "paper", "--only", "06"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--only 03,04,06" in r.stderr


def test_quick_figures_go_to_figures_only_when_publishing(monkeypatch):
    from mripkg import paths

    monkeypatch.delenv(paths.PUBLISH_ENV, raising=False)
    assert paths.figures_dir("quick") == paths.RUNS_DIR / "quick" / "figures"  # e.g. in Lab
    assert paths.figures_dir("quick", publish=True) == paths.FIGURES_DIR
    monkeypatch.setenv(paths.PUBLISH_ENV, "1")  # python -m mripkg.reproduce sets it
    assert paths.figures_dir("quick") == paths.FIGURES_DIR
    assert paths.figures_dir("smoke") == paths.RUNS_DIR / "smoke" / "figures"


def test_memory_watch_ignores_children_that_ran_before_it() -> None:
    pytest.importorskip("psutil")
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    try:
        with MemoryWatch(interval_s=0.1) as idle:
            time.sleep(0.5)
        assert idle.peak_gb is None  # the older child is not this watch's kernel
    finally:
        old.kill()
        old.wait()
