"""The static site (make site) and the notebook copier (python -m mripkg.lab)."""

from __future__ import annotations

import base64
import json

import nbformat
import pytest

from mripkg import paths
from mripkg.app import lab, site

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2213b5f0000000049454e44ae426082"
    )
).decode()


def _notebook(widget: bool) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# 01 · A title"))
    code = nbformat.v4.new_code_cell("plot()")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
        nbformat.v4.new_output("stream", name="stdout", text="PSNR 25.0 dB\n"),
    ]
    nb.cells.append(code)
    if widget:
        w = nbformat.v4.new_code_cell("explore()")
        view = {"model_id": "box", "version_major": 2, "version_minor": 0}
        bar = {"model_id": "bar", "version_major": 2, "version_minor": 0}
        w.outputs = [
            nbformat.v4.new_output(
                "display_data",
                data={site.WIDGET_VIEW: bar, "text/plain": "attack: 100%|###| 5/5"},
            ),
            nbformat.v4.new_output(
                "display_data", data={site.WIDGET_VIEW: view, "text/plain": "VBox(...)"}
            ),
        ]
        nb.cells.append(w)
        nb.metadata["widgets"] = {
            site.WIDGET_STATE: {
                "state": {
                    "bar": {"model_name": "HBoxModel", "state": {"children": []}},
                    "box": {
                        "model_name": "VBoxModel",
                        "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_img"]},
                    },
                    "slider": {
                        "model_name": "SelectionSliderModel",
                        "state": {
                            "description": "eps",
                            "_options_labels": ["0", "0.04"],
                            "index": 1,
                        },
                    },
                    "img": {
                        "model_name": "ImageModel",
                        "state": {"format": "png"},
                        "buffers": [{"path": ["value"], "encoding": "base64", "data": PNG}],
                    },
                },
                "version_major": 2,
                "version_minor": 0,
            }
        }
    return nb


CLAIMS = {
    "profile": "smoke",
    "evidence": False,
    "claims": [
        {
            "claim": "2",
            "text": "perturbations transfer",
            "statistic": "drop minus control",
            "threshold": "interval > 0",
            "verdict": "not evidence",
            "rows": [
                {"label": "A -> B", "value": 0.5, "low": 0.1, "high": 0.9, "holds": True, "n": 4}
            ],
            "slices": [0, 1],
            "seeds": [0],
        }
    ],
}


@pytest.fixture
def tree(tmp_path):
    build = tmp_path / "build"
    (build / "smoke").mkdir(parents=True)
    nbformat.write(_notebook(False), build / "smoke" / "01_data.ipynb")
    nbformat.write(_notebook(True), build / "smoke" / "06_explorer.ipynb")
    results = tmp_path / "results" / "smoke"
    results.mkdir(parents=True)
    (results / "claims.json").write_text(json.dumps(CLAIMS), encoding="utf-8")
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "fig5_transfer_curves.png").write_bytes(base64.b64decode(PNG))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text("# Results\n\nA table.\n", encoding="utf-8")
    return tmp_path


def test_missing_build_is_one_line_naming_the_command(tmp_path, capsys, monkeypatch):
    with pytest.raises(site.SiteError) as exc:
        site.executed_notebooks("quick", tmp_path / "build")
    msg = str(exc.value)
    assert "\n" not in msg and "make figures PROFILE=quick" in msg
    monkeypatch.setattr(site, "BUILD_DIR", tmp_path / "build")
    assert site.main(["--profile", "quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")


def test_claims_of_figure():
    assert site.claims_of_figure("Claims 2 and 5: perturbations ...") == ["2", "5"]
    assert site.claims_of_figure("Claim 1 (first half): ...") == ["1"]
    assert site.claims_of_figure("Claims 1, 3 and 5: x") == ["1", "3", "5"]
    assert site.claims_of_figure("Setting: the mask") == []
    assert site.claims_of_figure("Beyond the paper: claim 2 again") == []


def test_every_paper_claim_has_a_figure():
    from mripkg.report.figures import FIGURE_CLAIMS

    by_claim = site.figures_by_claim(FIGURE_CLAIMS)
    assert set(by_claim) >= {"1", "2", "3", "4", "5"}


def test_static_widgets_keep_bars_as_text_and_snapshot_the_explorer():
    nb = json.loads(nbformat.writes(_notebook(True)))
    assert site.static_widgets(nb) == 2
    outs = nb["cells"][2]["outputs"]
    assert outs[0] == {"output_type": "stream", "name": "stdout", "text": "attack: 100%|###| 5/5"}
    kinds = [next(iter(o.get("data", {"stream": 0}))) for o in outs[1:]]
    assert kinds == ["text/markdown", "text/markdown", "image/png"]
    assert "`eps = 0.04`" in outs[2]["data"]["text/markdown"]
    assert "widgets" not in nb["metadata"]
    assert site.WIDGET_VIEW not in json.dumps(nb)


def test_site_pages_from_a_build(tree):
    src = tree / "src"
    info = site.assemble(
        "smoke",
        src,
        build=tree / "build",
        results=tree / "results" / "smoke",
        docs=tree / "docs",
        run_figures=tree / "figs",
        repo_figures=tree / "figs",
    )
    assert info["notebooks"] == ["01_data.ipynb", "06_explorer.ipynb"]
    assert info["claims"] == ["2"] and info["pages"] == ["results"]
    claim = (src / "claims" / "claim-2.md").read_text(encoding="utf-8")
    assert "Claim 2: perturbations transfer" in claim
    assert "![fig5_transfer_curves](../run-figures/fig5_transfer_curves.png)" in claim
    assert "notebook `04_black_box_transfer` (not executed in this build)" in claim
    assert "| A -> B | 0.50 | [0.10, 0.90] | yes | 4 |" in claim
    assert "not evidence" in claim
    index = (src / "index.md").read_text(encoding="utf-8")
    for entry in ("scorecard", "claims/claim-2", "notebooks/06_explorer", "docs/results"):
        assert entry in index
    assert "Claim 2" in (src / "scorecard.md").read_text(encoding="utf-8")


def test_site_needs_the_scorecard(tree):
    (tree / "results" / "smoke" / "claims.json").unlink()
    with pytest.raises(site.SiteError, match="claims.json not found"):
        site.assemble(
            "smoke", tree / "src", build=tree / "build", results=tree / "results" / "smoke"
        )


# ------------------------------------------------------------------------------------------
# python -m mripkg.lab DIR


def test_lab_copies_the_packaged_notebooks(tmp_path, capsys):
    dest = tmp_path / "mine"
    assert lab.main([str(dest), "--copy-only"]) == 0
    names = sorted(p.name for p in dest.glob("*.ipynb"))
    assert names == sorted(p.name for p in lab.available_notebooks().values())
    assert len(names) >= 7
    assert "06_explorer.ipynb" in names
    # a second run keeps the user's edits unless --force
    (dest / "06_explorer.ipynb").write_text("mine", encoding="utf-8")
    assert lab.main([str(dest), "--only", "06", "--copy-only"]) == 0
    assert (dest / "06_explorer.ipynb").read_text(encoding="utf-8") == "mine"
    assert "kept your copies of 06_explorer.ipynb" in capsys.readouterr().out
    assert lab.main([str(dest), "--only", "06", "--copy-only", "--force"]) == 0
    assert (dest / "06_explorer.ipynb").read_text(encoding="utf-8") != "mine"


def test_lab_refuses_bad_input(tmp_path, capsys):
    assert lab.main([str(tmp_path), "--only", "99", "--copy-only"]) == 2
    assert "no notebook 99" in capsys.readouterr().err
    afile = tmp_path / "f"
    afile.write_text("x")
    assert lab.main([str(afile), "--copy-only"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_lab_command_opens_the_one_notebook(tmp_path):
    cmd = lab.lab_command(tmp_path, 8890, ["--no-browser"], "06_explorer.ipynb")
    assert cmd[1:3] == ["-m", "jupyterlab"]
    assert f"--notebook-dir={tmp_path}" in cmd and "--port=8890" in cmd
    assert cmd[-2:] == ["--no-browser", "06_explorer.ipynb"]


def test_site_renders_with_sphinx(tree):
    pytest.importorskip("myst_nb")
    src, out = tree / "src", tree / "html"
    site.assemble(
        "smoke",
        src,
        build=tree / "build",
        results=tree / "results" / "smoke",
        docs=tree / "docs",
        run_figures=tree / "figs",
        repo_figures=tree / "figs",
    )
    assert site.build_html(src, out) == 0  # warnings are errors
    page = (out / "notebooks" / "06_explorer.html").read_text(encoding="utf-8")
    assert "A static snapshot" in page and "PSNR 25.0 dB" in page
    assert "cdn.jsdelivr" not in page and "require.js" not in page  # works offline
    assert (out / "claims" / "claim-2.html").is_file()


def test_site_scorecard_page_renders_the_current_card():
    """The site's scorecard page takes issue 17's card (no per-claim 'threshold' text)."""
    card_path = paths.REPO_ROOT / "results" / "quick" / "claims.json"
    page = site.scorecard_page(json.loads(card_path.read_text(encoding="utf-8")), "quick")
    assert "Rules (fixed before the results)" in page and "claims/claim-5.md" in page
