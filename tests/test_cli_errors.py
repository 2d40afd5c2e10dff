"""Every command-line entry point exits non-zero, with a line naming the problem, on bad
input or a failed measurement (issue 19: no silent surprises)."""

from __future__ import annotations

import pytest

from mripkg.app import bench, lab, paper_gpu, reproduce, site
from mripkg.report import readme
from mripkg.training import train


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--profile", "smoke", "--models", "resunetpp,nope"], "unknown model 'nope'"),
        (["--profile", "smoke", "--levers", "turbo"], "unknown lever 'turbo'"),
        (["--profile", "smoke", "--sampler-steps", "10,x"], "--sampler-steps"),
        (["--profile", "smoke", "--sampler-steps", "0"], "--sampler-steps"),
        (["--profile", "smoke", "--lever-slices", "0", "--levers", "base"], "slices"),
    ],
)
def test_bench_bad_input(argv, needle, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err


def test_bench_failed_measurement_exits_non_zero(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bench, "run_dir", lambda name: tmp_path)
    monkeypatch.setattr(
        bench, "_in_subprocess", lambda fn, *a: {"error": "RuntimeError: out of memory"}
    )
    assert bench.main(["--profile", "smoke", "--models", "irim", "--sampler-steps", ""]) == 1
    assert "error: model irim: RuntimeError: out of memory" in capsys.readouterr().err
    ok = {"rows": [{"lever": "bf16", "error": "boom"}, {"lever": "base", "s_per_slice": 1.0}]}
    assert bench._errors({"models": {}, "levers": ok}) == [("levers bf16", "boom")]


@pytest.mark.parametrize(
    "argv",
    [
        ["--profile", "nope"],
        ["--train-seconds", "0"],
        ["--batch-size", "-1"],
        ["--attack-slices", "-2"],
        ["--costs-from", "/no/such/paper_gpu.json"],
    ],
)
def test_paper_gpu_bad_input(argv):
    with pytest.raises(SystemExit) as exc:
        paper_gpu.main(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--profile", "smoke", "--model", "irim", "--threads", "0"],
        ["--profile", "smoke", "--model", "irim", "--max-minutes", "-1"],
        ["--profile", "smoke", "--model", "irim", "--steps", "0"],
        ["--profile", "smoke"],
    ],
)
def test_train_bad_input(argv):
    with pytest.raises(SystemExit) as exc:
        train.main(argv)
    assert exc.value.code == 2


def test_reproduce_bad_eps_param_is_one_line(capsys):
    for value in ("[nan]", "0.04", "[0.01,", "[2]"):
        assert reproduce.main(["--profile", "smoke", "--param", f"eps_grid={value}"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("error: eps_grid"), err


def test_readme_site_lab_exit_non_zero(tmp_path, capsys):
    bad = tmp_path / "x.md"
    bad.write_text("<!-- results:nope -->\n<!-- /results:nope -->\n", encoding="utf-8")
    assert readme.main([str(bad)]) == 2
    assert site.main(["--profile", "nope"]) == 2
    assert lab.main([str(tmp_path), "--only", "42", "--copy-only"]) == 2
    err = capsys.readouterr().err
    assert (
        "unknown results sections" in err and "unknown profile" in err and "no notebook 42" in err
    )
