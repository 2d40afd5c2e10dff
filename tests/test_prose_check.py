"""The README says only what the files say (issue 17): lost table cells, required columns and
numbers in prose checked against the result files."""

import json
from pathlib import Path

from mripkg import paths
from mripkg.report import prose_check, readme

RESULTS = paths.REPO_ROOT / "results" / "quick"
#: Prose numbers that are not a value of a result file, each with where it comes from.
ALLOWED = {
    "4.29": "i-RIM's loss at intensity x 0.5: a difference of two rows of "
    "metrics_out_of_domain.json (the lead may template it)",
}


def test_lost_cells_sees_a_lost_column_and_a_lost_row():
    old = "| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n| 4 | 5 | 6 |\n"
    assert prose_check.lost_cells(old, old) == []
    no_col = "| a | c |\n|---|---|\n| 1 | 3 |\n| 4 | 6 |\n"
    assert "lost column(s) ['b']" in prose_check.lost_cells(old, no_col)[0]
    no_row = "| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n"
    assert "1 row(s) lost" in prose_check.lost_cells(old, no_row)[0]
    assert prose_check.lost_cells(old, "no table") == ["1 table(s) lost"]


def test_out_of_domain_table_has_every_model_column():
    md = readme.out_of_domain_table(RESULTS)
    head, n = prose_check.table_shapes(md)[0]
    assert [h.split(" (")[0] for h in head] == [
        "condition", "zero-filled", "ResUNet++", "i-RIM", "diffusion", "TV"
    ]  # fmt: skip
    assert n == 7
    assert readme.check_block("out_of_domain", md, md) == []
    only_diffusion = "| condition | diffusion (4 slices) |\n|---|---|\n| x | 1 / 2 |\n"
    problems = readme.check_block("out_of_domain", only_diffusion, only_diffusion)
    assert problems and "required column(s) missing" in problems[0]


def test_readme_check_fails_when_a_generated_table_loses_a_column(tmp_path, capsys):
    text = (paths.REPO_ROOT / "docs" / "out-of-domain.md").read_text(encoding="utf-8")
    start = text.index("<!-- results:out_of_domain -->")
    end = text.index("<!-- /results:out_of_domain -->")
    block = text[start:end]
    wider = block.replace("| condition |", "| condition | extra |").replace("|---|", "|---|---|", 1)
    bad = tmp_path / "out-of-domain.md"
    bad.write_text(text.replace(block, wider), encoding="utf-8")
    assert readme.main(["--check", "--readme", str(bad)]) == 1
    assert "lost column(s) ['extra']" in capsys.readouterr().err


def test_a_number_in_prose_must_match_a_result():
    values = prose_check.result_values([RESULTS])
    text = "The drop is 6.47 dB.\n<!-- results:x -->\n9999.99\n<!-- /results:x -->\n"
    v = sorted({*values, 6.4712})
    assert prose_check.unmatched_numbers(text, v) == []
    bad = prose_check.unmatched_numbers("It fell by 8765.43 dB (doi:10.1007/x).", v)
    assert [b[1] for b in bad] == ["8765.43"]


def test_readme_and_docs_prose_numbers_match_the_result_files():
    values = prose_check.result_values([RESULTS, paths.REPO_ROOT / "weights" / "quick"])
    docs = [paths.REPO_ROOT / "README.md", *sorted((paths.REPO_ROOT / "docs").glob("*.md"))]
    bad = []
    for p in docs:
        for line, tok, text in prose_check.unmatched_numbers(
            Path(p).read_text(encoding="utf-8"), values, ALLOWED
        ):
            bad.append(f"{Path(p).name}:{line}: {tok} in '{text[:120]}'")
    assert not bad, "numbers in prose that match no result file:\n" + "\n".join(bad)


def test_numbers_inside_formatted_result_cells_count(tmp_path):
    """A table stored as text ("0.48 [-0.13, 1.08]") backs the numbers in it, and only those."""
    f = tmp_path / "metrics_x.json"
    f.write_text(json.dumps({"rows": [{"drop": "0.48 [-0.13, 1.08]", "label": "eps 0.04"}]}))
    values = prose_check.result_values([f])
    assert prose_check.unmatched_numbers("It lost 0.48 dB (interval to 1.08).", values) == []
    bad = prose_check.unmatched_numbers("It lost 0.49 dB.", values)
    assert [b[1] for b in bad] == ["0.49"]


def test_a_pipe_inside_a_cell_does_not_split_it():
    from mripkg.report.tables import format_table

    md = format_table([{"statistic": "|kurtosis difference|", "value": 1.5}])
    head, n = prose_check.table_shapes(md)[0]
    assert n == 1 and "\\|kurtosis difference\\|" in md
    assert md.splitlines()[2].replace("\\|", "").count("|") == 3  # two cells, three bars
