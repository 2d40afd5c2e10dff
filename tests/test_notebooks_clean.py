"""Committed notebooks carry no outputs, take parameters and end by checking their results."""

from __future__ import annotations

import ast
import json

import pytest

from mripkg.paths import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert any(p.name.startswith("01_") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_outputs(path):
    nb = _load(path)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name}: cell {i + 1} has outputs"
        assert cell.get("execution_count") is None, f"{path.name}: cell {i + 1} has a count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_parameters_cell(path):
    cells = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "profile" in "".join(tagged[0]["source"]), f"{path.name}: no profile parameter"


def _tree(path, i: int, cell) -> ast.Module:
    src = "".join(cell["source"])
    lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines), filename=f"{path.name} cell {i + 1}")


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_last_code_cell_asserts(path):
    """The last code cell checks the results: an assert, or a call of a ``check`` function of
    mripkg (``wb.check(...)``, ``claims.check_scorecard(...)``), which asserts."""
    cells = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    assert cells, f"{path.name}: no code cells"
    tree = _tree(path, len(cells) - 1, cells[-1])
    checks = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Assert) or (isinstance(n, ast.Call) and "check" in _call_name(n))
    ]
    assert checks, f"{path.name}: last code cell has no assert and calls no check"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_define_no_functions(path):
    """Logic lives in mripkg: a notebook code cell defines no function or class."""
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        tree = ast.parse("\n".join(lines), filename=f"{path.name} cell {i + 1}")
        defined = [
            node.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        assert not defined, f"{path.name}: cell {i + 1} defines {defined}; move it into mripkg"


#: calls whose arguments are only shown, never computed on
DISPLAY_CALLS = {"display", "print", "Markdown", "format_table", "show"}


def loop_problems(tree: ast.Module) -> list[str]:
    """The loops a notebook cell may not hold: every ``for`` / ``while`` statement, and every
    comprehension that is neither inside an ``assert`` nor inside the arguments of a
    display-only call (:data:`DISPLAY_CALLS`)."""
    parent = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            out.append(f"line {node.lineno}: a {type(node).__name__.lower()} loop")
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            p, shown = parent.get(node), False
            while p is not None and not shown:
                shown = isinstance(p, ast.Assert) or (
                    isinstance(p, ast.Call) and _call_name(p) in DISPLAY_CALLS
                )
                p = parent.get(p)
            if not shown:
                out.append(f"line {node.lineno}: a comprehension outside display or assert")
    return out


def test_loop_rule_catches_loops():
    """The rule can fail: a loop over eps and a computing comprehension are caught; a
    comprehension that is only printed is not."""
    bad = ast.parse("for e in eps:\n    run(e)\nx = [f(e) for e in eps]\n")
    assert len(loop_problems(bad)) == 2
    ok = ast.parse("print([f'{e:g}' for e in eps])\nassert all(v > 0 for v in vals)\n")
    assert loop_problems(ok) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_hold_no_loops(path):
    """No notebook holds a loop: each cell is a call into mripkg (data loading, experiments/,
    report/), and the only comprehensions are display-only or inside an assert (see
    :func:`loop_problems`)."""
    assert len(NOTEBOOKS) >= 7
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        problems = loop_problems(_tree(path, i, cell))
        assert not problems, f"{path.name}: cell {i + 1}: {problems}; move it into mripkg"


#: the notebook metadata JupyterLab (ipykernel) keeps after the filter of `make hooks`
LAB_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_metadata_is_what_lab_keeps(path):
    assert _load(path)["metadata"] == LAB_METADATA, f"{path.name}: notebook metadata"


def _makefile_extra_keys() -> str:
    """The extra keys ``make hooks`` gives the nbstripout filter (read from the Makefile)."""
    import re

    text = (NOTEBOOKS_DIR.parent / "Makefile").read_text(encoding="utf-8")
    m = re.search(r'git config filter\.nbstripout\.extrakeys "([^"]+)"', text)
    assert m, "make hooks sets no filter.nbstripout.extrakeys"
    return m.group(1)


def test_a_notebook_saved_in_lab_is_filtered_back_to_the_committed_bytes(tmp_path):
    """Run in Lab: outputs, counts, widget state and Lab's language_info; the git filter of
    `make hooks` (nbstripout with its extra keys) gives back the committed file byte for byte,
    so git status stays clean."""
    import subprocess
    import sys

    pytest.importorskip("nbstripout")
    path = NOTEBOOKS_DIR / "06_explorer.ipynb"
    committed = path.read_text(encoding="utf-8")
    nb = json.loads(committed)
    for n, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = n + 1
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["ran\n"]}]
    nb["metadata"]["language_info"] = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3.11.7",
    }
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    saved = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    assert saved != committed
    out = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--extra-keys", _makefile_extra_keys()],
        input=saved,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # no git repository: only the keys given here count
    )
    assert out.stdout == committed
