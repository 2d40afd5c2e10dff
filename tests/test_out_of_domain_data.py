"""Notebook 02's out-of-domain section names its data, and with a user folder it is skipped
with a sentence saying so instead of labelling Colin27's numbers as the user's."""

from __future__ import annotations

import json

from mripkg.experiments import out_of_domain
from mripkg.paths import NOTEBOOKS_DIR
from mripkg.profiles import SMOKE
from mripkg.report import tables


def test_user_folder_skips_the_section_and_says_why(tmp_path):
    res = out_of_domain.out_of_domain_table({}, SMOKE, data_dir=str(tmp_path))
    assert set(res) == {"data", "skipped"} and str(tmp_path) in res["data"]
    text = tables.format_out_of_domain(res, ["zero_filled"])
    assert text.startswith("Out-of-domain section skipped: data_dir is set")
    assert "Colin27" in text


def test_the_table_names_the_data():
    res = {
        "data": out_of_domain.DATA_LABEL.format(n=4),
        "rows": [
            {
                "condition": "test",
                "description": "as trained",
                "zero_filled_psnr": 17.0,
                "zero_filled_ssim": 0.4,
            }
        ],
        "diffusion": {"slices": 0},
    }
    text = tables.format_out_of_domain(res, ["zero_filled"])
    assert text.splitlines()[0] == f"Data: {res['data']}."
    del res["data"]  # results written before the field existed still render
    assert tables.format_out_of_domain(res, ["zero_filled"]).startswith("| condition")


def test_notebook_02_passes_its_data_dir():
    nb = json.loads((NOTEBOOKS_DIR / "02_training.ipynb").read_text(encoding="utf-8"))
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "out_of_domain_table(" in code and "data_dir=data_dir" in code
    assert 'if "skipped" not in ood:' in code
