"""Profile choice, per-run overrides, progress switches, install-aware paths, the package
surface (lazy submodules, load_dataset by name) and the README generator."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import mripkg
from mripkg import paths, profiles
from mripkg.app import bench, reproduce
from mripkg.data import load_dataset
from mripkg.profiles import (
    PROFILE_ENV,
    QUICK,
    SMOKE,
    cli_profile,
    get_profile,
    progress_disabled,
    with_overrides,
)
from mripkg.report import readme
from mripkg.training import train

# ------------------------------------------------------------------------------------------
# progress


@pytest.mark.parametrize(
    ("env", "hidden"),
    [
        ({}, False),
        ({"CI": "1"}, True),
        ({"CI": "true"}, True),
        ({"CI": "0"}, False),
        ({"TQDM_DISABLE": "1"}, True),
        ({"TQDM_DISABLE": ""}, False),
    ],
)
def test_progress_shown_unless_ci_or_tqdm_disable(monkeypatch, env, hidden):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert progress_disabled() is hidden
    assert reproduce.quiet() is hidden
    assert (reproduce.progress_bar(Path("01_data.ipynb"), SMOKE) is False) is hidden
    assert progress_disabled(True) is False and progress_disabled(False) is True


# ------------------------------------------------------------------------------------------
# which profile runs


def test_explicit_profile_wins_over_the_environment(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert get_profile().name == "quick"
    assert get_profile("").name == "quick"
    assert get_profile("smoke").name == "smoke"
    monkeypatch.setenv(PROFILE_ENV, "smoke")
    assert get_profile("").name == "smoke"  # a notebook's default: the environment decides
    assert get_profile(None).name == "smoke"
    assert get_profile("quick").name == "quick"  # explicit beats $MRIPKG_PROFILE
    assert get_profile("paper").name == "paper"


def test_unknown_profile_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setenv(PROFILE_ENV, "bogus")
    with pytest.raises(ValueError, match=r"'bogus' \(from \$MRIPKG_PROFILE\).*smoke, quick, paper"):
        get_profile()
    assert get_profile("smoke").name == "smoke"  # an explicit choice does not read the variable
    with pytest.raises(ValueError, match="'nope' .from argument"):
        get_profile("nope")
    for main in (reproduce.main, train.main, bench.main):
        with pytest.raises(SystemExit) as exc:
            main([])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "bogus" in err and "smoke, quick, paper" in err
    with pytest.raises(SystemExit):
        cli_profile("")


def test_overrides_replace_only_what_is_given():
    assert with_overrides(QUICK) == QUICK
    assert with_overrides(QUICK, eps_grid=[], n_slices=0, attack_steps=0, sampler_steps=0) == QUICK
    p = with_overrides(QUICK, eps_grid=[0.08, 0.0, 0.04], n_slices=4, attack_steps=7)
    assert p.name == "quick" and p.attack.eps_grid == (0.0, 0.04, 0.08)
    assert p.attack.n_slices == 4 and p.attack.steps == 7
    assert p.attack.diffusion_slices == 4 and p.attack.diffusion_whitebox_slices == 4
    assert p.ddpm == QUICK.ddpm and p.data == QUICK.data
    assert QUICK.attack.steps == 100  # the profile itself is untouched
    s = with_overrides(SMOKE, sampler_steps=3)
    assert s.ddpm.sampler_steps == 3 and s.attack == SMOKE.attack
    assert dataclasses.replace(s, ddpm=SMOKE.ddpm) == SMOKE
    for bad in ({"n_slices": -1}, {"attack_steps": 2.5}, {"sampler_steps": True}):
        with pytest.raises(ValueError, match="non-negative integer"):
            with_overrides(SMOKE, **bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        with_overrides(SMOKE, eps_grid=[0.0, 1.5])


# ------------------------------------------------------------------------------------------
# paths: checkout or installed


def test_output_root_checkout_home_or_cwd(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "mripkg").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'mripkg'\n")
    site = tmp_path / "site-packages"
    (site / "mripkg").mkdir(parents=True)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    pkg_c, pkg_s = checkout / "mripkg", site / "mripkg"

    assert paths.is_checkout(pkg_c) and not paths.is_checkout(pkg_s)
    assert paths.output_root(pkg_c, {}, cwd) == checkout
    assert paths.output_root(pkg_c, {"MRIPKG_HOME": str(home)}, cwd) == checkout
    assert paths.output_root(pkg_s, {"MRIPKG_HOME": str(home)}, cwd) == home.resolve()
    assert paths.output_root(pkg_s, {}, cwd) == cwd.resolve()
    forced = {"MRIPKG_ROOT": str(tmp_path / "r"), "MRIPKG_HOME": str(home)}
    assert paths.output_root(pkg_c, forced, cwd) == (tmp_path / "r").resolve()
    assert paths.source_root(pkg_c) == checkout and paths.source_root(pkg_s) == pkg_s
    assert paths.results_dir("quick") == paths.REPO_ROOT / "results" / "quick"


def test_missing_shipped_weights_is_an_error_not_a_retrain(monkeypatch, tmp_path):
    monkeypatch.setattr(train, "shipped_weights_dir", lambda profile: tmp_path / profile)
    monkeypatch.setattr(train, "train_model", lambda *a, **k: pytest.fail("would train"))
    with pytest.raises(FileNotFoundError, match="shipped resunetpp weights .*retrain=True"):
        train.load_or_train("resunetpp", QUICK)


def test_export_results_copies_the_summary_files(monkeypatch, tmp_path):
    runs, res = tmp_path / "runs", tmp_path / "results"
    runs.mkdir()
    (runs / "metrics_clean.json").write_text("{}")
    (runs / "metrics_clean_per_slice.csv").write_text("a,b\n")
    (runs / "bench.json").write_text("{}")
    monkeypatch.setattr(reproduce, "run_dir", lambda profile: runs)
    monkeypatch.setattr(reproduce, "results_dir", lambda profile: res)
    copied = reproduce.export_results(QUICK)
    assert sorted(p.name for p in copied) == ["metrics_clean.json", "metrics_clean_per_slice.csv"]
    assert sorted(p.name for p in res.iterdir()) == sorted(p.name for p in copied)


# ------------------------------------------------------------------------------------------
# package surface


def test_import_is_lazy_and_exposes_submodules():
    code = "import sys, mripkg; assert 'torch' not in sys.modules; print(mripkg.physics.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "mripkg.physics"
    assert mripkg.readme is readme and "attacks" in dir(mripkg)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mripkg.nope  # noqa: B018


def test_a_profile_name_is_resolved_at_the_edge_only():
    """Below the command line and the notebook parameter everything takes a Profile: a name
    passed by mistake is refused with a message saying how to resolve it."""
    from mripkg.attacks import AttackCache
    from mripkg.profiles import check_profile

    assert check_profile(SMOKE) is SMOKE
    for call in (lambda: load_dataset("smoke"), lambda: AttackCache("smoke")):
        with pytest.raises(TypeError, match="get_profile"):
            call()


# ------------------------------------------------------------------------------------------
# README tables generated from results/quick


def test_committed_readme_matches_committed_results(capsys):
    assert readme.main(["--check"]) == 0, capsys.readouterr().out[-3000:]


def test_readme_check_fails_on_a_hand_edited_number(tmp_path, capsys):
    text = (paths.REPO_ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    start = text.index("<!-- results:clean -->")
    end = text.index("<!-- /results:clean -->")
    block = text[start:end]
    row = next(ln for ln in block.splitlines() if ln.startswith("| ResUNet++"))
    cells = row.split(" | ")
    cells[3] = f"{float(cells[3]) + 0.001:.3f}"  # SSIM
    edited = text[:start] + block.replace(row, " | ".join(cells)) + text[end:]
    path = tmp_path / "results.md"
    path.write_text(edited, encoding="utf-8")
    assert readme.main(["--check", str(path)]) == 1
    assert "results.md out of date" in capsys.readouterr().err
    assert readme.main([str(path)]) == 0
    assert path.read_text(encoding="utf-8") == text
    capsys.readouterr()


def test_readme_markers_are_validated(tmp_path):
    results = paths.results_dir("quick")
    with pytest.raises(ValueError, match="unknown results sections"):
        readme.render("<!-- results:nope -->\n<!-- /results:nope -->\n", results)
    with pytest.raises(ValueError, match="without"):
        readme.render("<!-- results:clean -->\nno end\n", results)
    calls = []
    readme.SECTIONS["demo"] = lambda d: calls.append(d) or "| a |\n|---|"
    try:
        out = readme.render("x\n<!-- results:demo -->\nold\n<!-- /results:demo -->\ny", results)
    finally:
        del readme.SECTIONS["demo"]
    assert out == "x\n<!-- results:demo -->\n| a |\n|---|\n<!-- /results:demo -->\ny"
    assert calls == [results]
    empty = tmp_path / "results"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="mripkg.reproduce"):
        readme.clean_table(empty)


def test_results_quick_is_small_json_and_csv():
    """Committed results: small JSON/CSV tables, plus the explorer's bundle (under 20 MB)."""
    files = [f for f in paths.results_dir("quick").iterdir() if f.name != "explorer.npz"]
    assert {f.suffix for f in files} <= {".json", ".csv"} and files
    assert sum(f.stat().st_size for f in files) < 5e6
    bundle = paths.results_dir("quick") / "explorer.npz"
    assert not bundle.exists() or bundle.stat().st_size < 20e6
    for f in files:
        if f.suffix == ".json":
            assert json.loads(f.read_text())  # valid, non-empty


def test_tables_of_attack_results_from_synthetic_files(tmp_path):
    """The white-box, transfer and artifact tables put each number in its cell."""

    def wb(clean, top, rnd, amp, n=16):
        return {
            "0.00": {"psnr_mean": clean, "n_slices": n},
            "0.04": {"psnr_mean": (clean + top) / 2},
            "0.08": {"psnr_mean": top, "random_psnr_mean": rnd, "amplification": amp},
        }

    white = {m: wb(20.0 + i, 18.0 + i, 19.5 + i, 1.5 + i) for i, m in enumerate(readme.LABELS)}
    del white["diffusion_image_route"]
    white["diffusion"] = {k: v for k, v in wb(24.0, 22.0, 23.0, 1.2, n=4).items()}
    (tmp_path / "metrics_white_box.json").write_text(json.dumps(white))
    rows = readme.white_box_table(tmp_path).splitlines()
    assert rows[0] == (
        "| model | eps 0 | eps 0.04 | eps 0.08 | random control, eps 0.08 | amplification |"
    )
    assert rows[3] == "| ResUNet++ | 21.00 | 20.00 | 19.00 | 20.50 | 2.50 |"
    assert rows[5].startswith("| diffusion, 4 slices (opt-in") and rows[5].endswith("| 1.20 |")

    cell = {"0.04": {"psnr_drop": 0.5, "random_psnr_drop": -0.001, "n_slices": 8}}
    transfer = {s: {t: cell for t in readme.LABELS} for s in ("resunetpp", "irim")}
    (tmp_path / "metrics_transfer.json").write_text(json.dumps(transfer))
    lines = readme.transfer_table(tmp_path).splitlines()
    assert lines[0] == "PSNR drop in dB at eps = 0.04"
    assert (
        lines[4]
        == "| ResUNet++ | 0.50 (0.00) | 0.50 (0.00) white-box | "
        + " | ".join(["0.50 (0.00)"] * 3)
        + " |"
    )

    stats = {"excess_kurtosis": 4.0, "neighbour_corr": 0.7, "edge_corr": 0.2}
    art = {
        key: {"0.04": stats, "0.08": {**stats, "detection_auc": 0.9}}
        for key, _ in readme.ARTIFACT_ROWS[:5]
    }
    art["diffusion, other seed"] = {"0.00": {"spectral_flatness": 0.1}}
    art["white Gaussian noise"] = {"0.00": {"spectral_flatness": 0.56}}
    (tmp_path / "metrics_artifacts.json").write_text(json.dumps(art))
    lines = readme.artifacts_table(tmp_path).splitlines()
    assert lines[0].endswith("at eps = 0.08; white Gaussian noise: - / - / - / 0.56")
    assert lines[4] == "| ResUNet++, white-box | 4.00 | 0.70 | 0.20 | - | 0.90 |"
    assert (
        lines[-1] == "| diffusion, another sampler seed (no perturbation) | - | - | - | 0.10 | - |"
    )


def test_readme_generator_covers_readme_and_docs_pages():
    files = readme.markdown_files()
    assert files[0].name == "README.md"
    names = {p.name for p in files}
    assert {"results.md", "benchmarks.md", "out-of-domain.md"} <= names
    # every generated block of the old long README is still somewhere
    text = "".join(p.read_text(encoding="utf-8") for p in files)
    for name in ("claims", "clean", "white_box", "transfer", "artifacts", "open_questions"):
        assert f"<!-- results:{name} -->" in text, name
    for name in ("sampler_levers", "moved", "paper_gpu", "out_of_domain", "links"):
        assert f"<!-- results:{name} -->" in text, name


def test_readme_is_a_front_page():
    text = (paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert text.count("![fig") == 3
    assert "06_explorer.ipynb" in text and "make site" in text and "CITATION.cff" in text


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://github.com/someone/mripkg.git\n", "someone/mripkg"),
        ("git@github.com:some-one/mri.pkg.git", "some-one/mri.pkg"),
        ("https://github.com/a/b/", "a/b"),
        ("https://gitlab.com/a/b.git", None),
    ],
)
def test_binder_slug_from_git_remote(url, slug):
    assert readme.slug_from_remote(url) == slug


def test_binder_badge_opens_the_explorer(monkeypatch):
    monkeypatch.setattr(readme, "repo_slug", lambda root=None: "someone/mripkg")
    block = readme.links_block(paths.results_dir("quick"))
    assert (
        "mybinder.org/v2/gh/someone/mripkg/HEAD?urlpath=lab/tree/notebooks/06_explorer.ipynb"
        in block
    )
    assert "https://someone.github.io/mripkg/" in block and "OWNER" not in block


def test_repo_slug_from_pyproject_when_no_github_remote(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.mripkg]\ngithub = "me/mripkg"\n', encoding="utf-8"
    )
    assert readme.repo_slug(tmp_path) == "me/mripkg"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert readme.repo_slug(tmp_path) == readme.DEFAULT_SLUG


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[nan]", "not a finite number"),
        ([float("nan"), 0.04], "not a finite number"),
        (0.04, "must be a list"),
        ("0.04", "must be a list"),
        ("[0.01, x]", "'x' is not a number"),
        ("[0.01, 0.04", "unbalanced brackets"),
        ([0.01, 2.0], r"must lie in \[0, 1\]"),
        ([True], "is not a number"),
        ({"a": 1}, "must be a list"),
    ],
)
def test_eps_grid_is_parsed_strictly(value, message):
    with pytest.raises(ValueError, match=message) as exc:
        profiles.parse_eps_grid(value)
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match=message):
        with_overrides(profiles.SMOKE, eps_grid=value)


def test_eps_grid_accepts_lists_and_their_text():
    assert profiles.parse_eps_grid("[0.04, 0, 0.04]") == (0.0, 0.04)
    assert profiles.parse_eps_grid("0,0.04") == (0.0, 0.04)
    assert profiles.parse_eps_grid((0.08, 0.01)) == (0.01, 0.08)
    assert profiles.parse_eps_grid([]) == () == profiles.parse_eps_grid(None)
    assert with_overrides(profiles.SMOKE, eps_grid="[0, 0.5]").attack.eps_grid == (0.0, 0.5)
