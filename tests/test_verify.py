"""Tests of the reproducibility check: the machine fingerprint in results files, `make verify`
(mripkg.report.verify) on synthetic pairs of result folders, the tolerance arithmetic of
mripkg.app.tolerances and the claim-spread rows of mripkg.report.run_spread."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import pytest

from mripkg import fingerprint
from mripkg.app import tolerances
from mripkg.io import read_json, write_csv, write_json
from mripkg.report import run_spread, verify

TOL = {
    "clean": 1e-5,
    "attack_psnr_db": 0.2,
    "attack_ssim": 0.01,
    "attack_ratio_log": 0.05,
    "claim_excess_db": 0.2,
    "claim_log_ratio": 0.1,
    "artifact": {k: 0.5 for k in verify.ARTIFACT_STATS},
    "interval_factor": 2.0,
}


def _results() -> dict:
    """A small, internally consistent set of result files."""
    clean = {
        "profile": "quick",
        "resunetpp": {"psnr_mean": 22.5, "psnr_sd": 0.8, "ssim_mean": 0.71},
        "diffusion": {"psnr_mean": 24.0, "psnr_sd": 1.1, "ssim_mean": 0.75},
    }
    white_box = {
        "irim": {
            "0.04": {
                "psnr_mean": 20.53,
                "psnr_sd": 0.9,
                "ssim_mean": 0.6,
                "amplification": 3.0,
                "n_slices": 16,
            },
        }
    }
    artifacts_ = {
        "i-RIM white-box": {
            "0.04": {"excess_kurtosis": 30.0, "edge_corr": 0.2, "detection_auc": 0.8, "n": 16}
        }
    }
    card = {
        "profile": "quick",
        "claims": [
            {
                "claim": "1",
                "statistic": "grey-matter artifact energy / equal-norm control's (geometric "
                "mean over slices)",
                "threshold": "interval > 1 and mean excess energy > seed-to-seed energy",
                "verdict": "partly reproduced",
                "rows": [
                    {
                        "label": "ResUNet++ -> diffusion, eps 0.01",
                        "value": 1.97,
                        "low": 1.64,
                        "high": 2.53,
                        "holds": False,
                        "n": 8,
                        "excess_energy": 0.1,
                    },
                ],
            },
            {
                "claim": "2",
                "statistic": "transferred PSNR drop - control drop at eps 0.04 (dB, mean over "
                "slices)",
                "threshold": "interval > 0 for every source-target pair",
                "verdict": "partly reproduced",
                "rows": [
                    {
                        "label": "i-RIM -> diffusion",
                        "value": 0.88,
                        "low": 0.3,
                        "high": 1.46,
                        "holds": True,
                        "n": 8,
                        "p": 0.03,
                    },
                    {
                        "label": "ResUNet++ -> i-RIM",
                        "value": 0.12,
                        "low": -0.035,
                        "high": 0.28,
                        "holds": False,
                        "n": 16,
                    },
                ],
            },
            {
                "claim": "5",
                "statistic": "Spearman(eps, PSNR) per slice, mean over slices",
                "threshold": "interval < 0 for every model and pair",
                "verdict": "reproduced",
                "rows": [
                    {
                        "label": "i-RIM",
                        "value": -0.98,
                        "low": -0.99,
                        "high": -0.97,
                        "holds": True,
                        "n": 16,
                    }
                ],
            },
        ],
    }
    return {
        "metrics_clean.json": clean,
        "metrics_white_box.json": white_box,
        "metrics_artifacts.json": artifacts_,
        "claims.json": card,
    }


def _write(folder: Path, files: dict, csv_rows: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in files.items():
        write_json(folder / name, obj)
    rows = (
        csv_rows
        if csv_rows is not None
        else [
            {"split": "test", "model": "irim", "slice": 0, "psnr": 22.1},
            {"split": "test", "model": "irim", "slice": 1, "psnr": 23.4},
        ]
    )
    write_csv(folder / verify.CLEAN_CSV, rows)
    return folder


def _tol_file(path: Path) -> Path:
    path.write_text(json.dumps({"tolerances": TOL}))
    return path


def _main(tmp_path: Path, ref: dict, run: dict, **kw) -> int:
    a = _write(tmp_path / "ref", ref)
    b = _write(tmp_path / "run", run, kw.get("run_csv"))
    t = _tol_file(tmp_path / "tol.json")
    return verify.main(["--run", str(b), "--reference", str(a), "--tolerances", str(t)])


# --------------------------------------------------------------------------------------------
# fingerprint


def test_isa_ladder_follows_flags_and_cap():
    amx = {
        "amx_tile",
        "amx_bf16",
        "amx_int8",
        "avx512_bf16",
        "avx512_vnni",
        "avx512bw",
        "avx512vl",
        "avx512f",
        "avx512dq",
        "avx2",
        "fma",
        "avx",
        "sse4_1",
    }
    assert fingerprint.onednn_isa(amx) == "avx512_core_amx"
    assert fingerprint.onednn_isa(amx - {"amx_tile"}) == "avx512_core_bf16"
    assert fingerprint.onednn_isa(amx, cap="AVX512_CORE") == "avx512_core"
    assert fingerprint.onednn_isa({"avx2", "fma", "avx"}) == "avx2"
    assert fingerprint.onednn_isa(set()) == "unknown"


def test_results_json_carries_the_fingerprint_and_readers_see_the_results(tmp_path):
    from mripkg.profiles import get_profile, setup_torch

    setup_torch(get_profile("smoke"))
    p = write_json(tmp_path / "metrics_x.json", {"irim": {"psnr_mean": 1.0}})
    raw = json.loads(p.read_text())
    fp = raw[fingerprint.KEY]
    for field in (
        "cpu",
        "onednn_isa",
        "bf16_native",
        "torch",
        "onednn",
        "threads",
        "profile",
        "sampler",
        "attack",
    ):
        assert field in fp, field
    assert fp["profile"] == "smoke" and "steps" in fp["sampler"]
    assert read_json(p) == {"irim": {"psnr_mean": 1.0}}  # results only, as before
    assert fingerprint.KEY in read_json(p, machine=True)
    cache = write_json(tmp_path / "cache.json", {"a": 1}, machine=False)
    assert json.loads(cache.read_text()) == {"a": 1}


def test_csv_gets_a_sidecar_and_stays_plain(tmp_path):
    p = write_csv(tmp_path / "metrics_y_per_slice.csv", [{"slice": 0, "psnr": 20.5}])
    with p.open() as f:
        assert list(csv.DictReader(f)) == [{"slice": "0", "psnr": "20.5"}]
    side = fingerprint.sidecar_path(p)
    assert side.name == "metrics_y_per_slice.csv.machine.json"
    assert "onednn_isa" in json.loads(side.read_text())


# --------------------------------------------------------------------------------------------
# verify on synthetic pairs of folders


def test_equal_folders_pass(tmp_path, capsys):
    assert _main(tmp_path, _results(), _results()) == 0
    out = capsys.readouterr().out
    assert "0 outside tolerance; every claim's verdict identical: yes" in out


def test_a_different_machine_alone_is_not_a_difference():
    ref, run = _results(), _results()
    ref["claims.json"][fingerprint.KEY] = {"cpu": "A", "threads": 1}
    run["claims.json"][fingerprint.KEY] = {"cpu": "B", "threads": 2}
    rep = verify.compare(ref, run, TOL)
    assert rep.ok and rep.machine["differences"]["cpu"] == ("A", "B")


def test_moves_within_tolerance_pass():
    run = _results()
    run["metrics_white_box.json"]["irim"]["0.04"]["psnr_mean"] += 0.15  # tol 0.2 dB
    run["metrics_artifacts.json"]["i-RIM white-box"]["0.04"]["excess_kurtosis"] += 0.4
    run["claims.json"]["claims"][1]["rows"][0]["low"] += 0.35  # bound: 2 x 0.2
    run["claims.json"]["claims"][0]["rows"][0]["value"] *= 1.08  # relative 0.1
    run["metrics_clean.json"]["resunetpp"]["psnr_mean"] += 5e-6
    rep = verify.compare(_results(), run, TOL)
    assert rep.ok, rep.outside
    assert rep.compared > 20


@pytest.mark.parametrize(
    ("file", "path", "delta", "kind"),
    [
        ("metrics_white_box.json", ("irim", "0.04", "psnr_mean"), 0.25, "attack"),
        ("metrics_white_box.json", ("irim", "0.04", "ssim_mean"), 0.02, "attack"),
        ("metrics_artifacts.json", ("i-RIM white-box", "0.04", "excess_kurtosis"), 0.6, "artifact"),
        ("metrics_clean.json", ("diffusion", "psnr_mean"), 1e-4, "clean"),
        ("metrics_white_box.json", ("irim", "0.04", "n_slices"), 1, "setting"),
    ],
)
def test_one_number_beyond_its_tolerance_fails(tmp_path, capsys, file, path, delta, kind):
    run = _results()
    d = run[file]
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] += delta
    rep = verify.compare(_results(), run, TOL)
    assert len(rep.outside) == 1 and rep.outside[0]["kind"] == kind
    assert rep.clean_differs == (kind == "clean")
    assert _main(tmp_path, _results(), run) == 1
    assert "1 outside tolerance" in capsys.readouterr().out


def test_claim_statistic_tampered_beyond_its_tolerance_fails():
    run = _results()
    run["claims.json"]["claims"][1]["rows"][0]["value"] += 0.3  # claim 2, dB, tol 0.2
    rep = verify.compare(_results(), run, TOL)
    assert [r["key"] for r in rep.outside] == ["claims/1/rows/0/value"]
    run = _results()
    run["claims.json"]["claims"][0]["rows"][0]["value"] *= 1.2  # claim 1, relative, tol 0.1
    assert len(verify.compare(_results(), run, TOL).outside) == 1


def test_a_flipped_verdict_fails(tmp_path, capsys):
    run = _results()
    run["claims.json"]["claims"][1]["verdict"] = "not reproduced"
    run["claims.json"]["claims"][1]["rows"][0]["holds"] = False
    rep = verify.compare(_results(), run, TOL)
    assert not rep.verdicts_identical and not rep.ok and len(rep.holds_flips) == 1
    assert _main(tmp_path, _results(), run) == 1
    assert "every claim's verdict identical: no" in capsys.readouterr().out


def test_numbers_without_a_measured_spread_are_listed_not_compared():
    run = _results()
    run["claims.json"]["claims"][1]["rows"][0]["p"] = 0.5
    run["metrics_artifacts.json"]["i-RIM white-box"]["0.04"]["detection_auc"] = 0.1
    rep = verify.compare(_results(), run, TOL)
    assert rep.ok
    assert {r["key"].rsplit("/", 1)[-1] for r in rep.not_toleranced} >= {"p", "detection_auc"}


def test_missing_and_corrupt_files_are_clear_errors(tmp_path, capsys):
    run = _results()
    del run["claims.json"]
    assert _main(tmp_path, _results(), run) == 2
    err = capsys.readouterr().err
    assert "claims.json" in err and "notebook" in err
    bad = tmp_path / "bad"
    _write(bad, _results())
    (bad / "metrics_white_box.json").write_text("{ not json")
    t = _tol_file(tmp_path / "tol.json")
    code = verify.main(
        ["--run", str(bad), "--reference", str(tmp_path / "ref"), "--tolerances", str(t)]
    )
    assert code == 2 and "metrics_white_box.json: not valid JSON" in capsys.readouterr().err
    (bad / "metrics_white_box.json").unlink()
    (bad / verify.CLEAN_CSV).write_text("a,b\n1,2,3\n")
    with pytest.raises(verify.VerifyError, match="line 2 has 3 fields"):
        verify.read_folder(bad)
    with pytest.raises(verify.VerifyError, match="tolerances"):
        verify.load_tolerances(tmp_path / "nowhere.json")


def test_clean_per_slice_csv_is_compared(tmp_path):
    rows = [
        {"split": "test", "model": "irim", "slice": 0, "psnr": 22.1},
        {"split": "test", "model": "irim", "slice": 1, "psnr": 23.5},
    ]
    assert _main(tmp_path, _results(), _results(), run_csv=rows) == 1


def test_committed_results_match_themselves():
    root = Path(verify.__file__).resolve().parents[2]
    if not (root / ".git").exists() or not (root / "results/quick/tolerances.json").is_file():
        pytest.skip("needs a git checkout with results/quick/tolerances.json")
    ref = verify.read_git("HEAD", "results/quick", root)
    tol = verify.load_tolerances(root / "results/quick/tolerances.json")
    rep = verify.compare(ref, copy.deepcopy(ref), tol)
    assert rep.ok and rep.compared > 1000


# --------------------------------------------------------------------------------------------
# tolerance arithmetic and the claim spread


def _raw(cond: str, psnr: list[list[float]], kurt: list[list[float]], clean: list[float]):
    values = {q: {} for q in tolerances.QUANTITIES}
    values["psnr"]["irim->irim"] = psnr
    values["excess_kurtosis"]["irim->irim"] = kurt
    values["clean_psnr"]["irim"] = clean
    values["amplification"]["irim->irim"] = [[2.0, 2.0]]
    return {"condition": cond, "values": values}


def test_spread_is_the_rms_of_per_slice_differences():
    ref = _raw("ref", [[20.0, 21.0], [18.0, 19.0]], [[30.0, 40.0], [30.0, 40.0]], [22.0, 23.0])
    a = _raw("a", [[20.3, 20.6], [18.0, 19.0]], [[30.0, 40.0], [33.0, 44.0]], [22.0, 23.0])
    b = _raw("b", [[20.1, 21.1], [18.0, 19.0]], [[30.0, 40.0], [30.0, 40.0]], [22.0, 23.00001])
    b["values"]["amplification"]["irim->irim"] = [[2.0 * math.e**0.1, 2.0]]
    sp = tolerances.spreads(ref, [a, b])
    assert sp["psnr"]["rms"] == pytest.approx(math.sqrt((0.3**2 + 0.4**2) / 2))
    assert sp["psnr"]["condition"] == "a" and sp["psnr"]["max_abs"] == pytest.approx(0.4)
    assert sp["excess_kurtosis"]["rms"] == pytest.approx(math.sqrt((9 + 16) / 2))
    assert sp["amplification"]["rms"] == pytest.approx(math.sqrt(0.1**2 / 2))
    assert sp["clean_psnr"]["max_abs"] == pytest.approx(1e-5, rel=1e-3)
    tol = tolerances.tolerances_from(sp)
    assert tol["attack_psnr_db"] == pytest.approx(sp["psnr"]["rms"])
    assert tol["artifact"]["excess_kurtosis"] == pytest.approx(sp["excess_kurtosis"]["rms"])
    assert tol["clean"] == pytest.approx(1e-5, rel=1e-3)


def test_claim_spread_rows_compare_interval_and_spread():
    rows = run_spread.claim_spread(_results()["claims.json"], TOL)
    by = {(r["claim"], r["label"]): r for r in rows}
    wide = by[("2", "i-RIM -> diffusion")]  # half-width 0.58 dB > 0.2 dB
    assert wide["spread"] == pytest.approx(0.2) and wide["interval_wider"]
    assert wide["decision_same"] is True
    narrow = by[("2", "ResUNet++ -> i-RIM")]  # low -0.035: still below 0 when widened
    assert narrow["low_with_spread"] == pytest.approx(-0.235) and narrow["decision_same"]
    ratio = by[("1", "ResUNet++ -> diffusion, eps 0.01")]
    assert ratio["spread"] == pytest.approx(0.197)  # relative 0.1 of 1.97
    assert by[("5", "i-RIM")]["spread"] is None  # rank statistic: no measured spread
    card = _results()["claims.json"]
    card["claims"][1]["rows"][0]["low"] = 0.1  # holds, but not by more than the spread
    flip = {r["label"]: r for r in run_spread.claim_spread(card, TOL)}["i-RIM -> diffusion"]
    assert flip["decision_same"] is False
    assert "1 decision(s) change" in run_spread.summary_line(run_spread.claim_spread(card, TOL))
    assert "| 2 | i-RIM -> diffusion |" in run_spread.spread_markdown(rows)


def test_reproducibility_page_matches_the_committed_results(capsys):
    from mripkg.report import readme

    root = Path(verify.__file__).resolve().parents[2]
    page = root / "docs" / "reproducibility.md"
    if not (root / "results/quick/tolerances.json").is_file() or not page.is_file():
        pytest.skip("needs docs/reproducibility.md and results/quick/tolerances.json")
    assert readme.main(["--check", "--readme", str(page)]) == 0, capsys.readouterr().out[-2000:]


def test_a_clean_only_condition_counts_for_the_clean_spread_only():
    ref = _raw("ref", [[20.0, 21.0]], [[30.0, 40.0]], [22.0, 23.0])
    clean_only = {"condition": "isa_clean", "values": {"clean_psnr": {"irim": [22.0, 23.001]}}}
    sp = tolerances.spreads(ref, [clean_only])
    assert sp["clean_psnr"]["max_abs"] == pytest.approx(1e-3, rel=1e-6)
    assert sp["psnr"]["n"] == 0 and sp["psnr"]["rms"] == 0.0


def test_the_diffusion_models_clean_numbers_have_their_own_tolerance():
    tol = {**TOL, "clean_diffusion": 0.05}
    run = _results()
    run["metrics_clean.json"]["diffusion"]["psnr_mean"] += 0.03
    assert verify.compare(_results(), run, tol).ok
    run["metrics_clean.json"]["resunetpp"]["psnr_mean"] += 0.03
    rep = verify.compare(_results(), run, tol)
    assert [r["key"] for r in rep.outside] == ["resunetpp/psnr_mean"] and rep.clean_differs


def test_claim_spread_uses_the_rules_threshold_when_the_card_has_no_threshold_text():
    """The current card (issue 17) states its rules in words, not as 'interval > c'."""
    card = {
        "claims": [
            {
                "claim": "1",
                "statistic": "grey-matter artifact energy / equal-norm control's",
                "rows": [{"label": "a", "value": 1.5, "low": 1.05, "high": 2.0}],
            },
            {
                "claim": "2",
                "statistic": "transferred PSNR drop - control drop at eps 0.04 (dB)",
                "rows": [{"label": "b", "value": 0.3, "low": 0.2, "high": 0.4}],
            },
        ]
    }
    by = {r["label"]: r for r in run_spread.claim_spread(card, TOL)}
    assert by["a"]["decision_same"] is False  # 1.05 - 0.1 * 1.5 falls below the threshold 1
    assert by["b"]["decision_same"] is False  # 0.2 - 0.2 reaches 0
    card["claims"][1]["rows"][0]["low"] = 0.5
    assert run_spread.claim_spread(card, TOL)[1]["decision_same"] is True


def test_opt_in_results_the_run_lacks_are_listed_not_required():
    ref = _results()
    ref["metrics_adaptive.json"] = {"diffusion": {"eps": {"0.08": {"psnr_drop": 1.0}}}}
    rep = verify.compare(ref, _results(), TOL)
    assert rep.files_not_in_run == ["metrics_adaptive.json"] and rep.ok
    run = _results()
    del run["metrics_white_box.json"]  # what every `make figures` writes: still an error
    with pytest.raises(verify.VerifyError, match="metrics_white_box.json.*notebook"):
        verify.compare(_results(), run, TOL)
