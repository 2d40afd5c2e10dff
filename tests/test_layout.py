"""The package's layout: stages on floors, imports only downward, no cycle; old names alias."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mripkg
from mripkg import _aliases

PKG = Path(mripkg.__file__).resolve().parent
#: the floor of each stage (root modules on floor 0); see mripkg/__init__.py
FLOORS = {stage: floor for floor, stages in enumerate(mripkg.STAGES) for stage in stages}
FLOORS["assets"] = 0  # package data (the embedded volumes), no code
ROOT_MODULES = mripkg.STAGES[0]
#: files that may import anything of the package: the package's face, the alias table
EXEMPT = {"mripkg", "mripkg._aliases"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def floor_of(mod: str) -> int:
    parts = mod.split(".")
    if len(parts) == 1:
        return -1  # the package itself
    return FLOORS[parts[1]]


def imports_of(mod: str, path: Path, known: set[str]) -> set[str]:
    """Every mripkg module that ``mod`` imports, at module level or inside a function."""
    is_pkg = path.name == "__init__.py"
    package = mod if is_pkg else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "mripkg"]
            out.update(n for n in names if n != "mripkg")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "mripkg":
                base = node.module
            else:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known or sub.rpartition(".")[2] in _aliases.ALIASES:
                    out.add(sub)  # a module imported from its package
                elif base != "mripkg":
                    out.add(base)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def test_every_module_sits_on_a_known_stage():
    for mod in modules():
        if mod in EXEMPT:
            continue
        stage = mod.split(".")[1]
        assert stage in FLOORS, f"{mod}: {stage!r} is no stage of mripkg.STAGES"


def test_imports_run_only_downward_and_never_through_old_names():
    problems = []
    known = set(modules())
    for mod, deps in graph().items():
        if mod in EXEMPT:
            continue
        for dep in deps:
            if dep not in known:
                problems.append(f"{mod} imports {dep}, which is an old alias or no module")
                continue
            if dep == "mripkg":
                if mod.split(".")[1] not in ROOT_MODULES:
                    problems.append(f"{mod} imports the package face mripkg")
                continue
            if floor_of(dep) > floor_of(mod):
                problems.append(
                    f"{mod} (floor {floor_of(mod)}) imports {dep} (floor {floor_of(dep)}), "
                    "a higher stage"
                )
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    known = set(modules())
    g = {m: {d for d in deps if d in known} for m, deps in graph().items()}
    # a package's __init__ importing its own submodules is no cycle of the code's flow
    for m in g:
        g[m] = {d for d in g[m] if not d.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_walker_sees_an_upward_import(tmp_path):
    """The check above can fail: a lazy import of report/ inside evaluation/ is caught."""
    fake = PKG / "evaluation" / "selection.py"
    src = fake.read_text() + "\n\ndef _f():\n    from ..report import claims\n"
    p = tmp_path / "selection.py"
    p.write_text(src)
    deps = imports_of("mripkg.evaluation.selection", p, set(modules()))
    assert "mripkg.report.claims" in deps
    assert floor_of("mripkg.report.claims") > floor_of("mripkg.evaluation.selection")


def test_stage_docstrings_say_what_they_receive_and_hand_on():
    for stage in FLOORS.keys() - {"assets"}:
        path = PKG / stage / "__init__.py"
        if not path.exists():
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "Receives" in doc and "hands on" in doc, f"{stage}/__init__.py docstring"


def test_old_module_names_still_import():
    from mripkg import claims, robustness, train
    from mripkg.training import train as new_train

    assert train is new_train
    assert robustness.Evaluation is importlib.import_module("mripkg.evaluation.scoring").Evaluation
    assert claims.whitebox_summary.__module__ == "mripkg.evaluation.summaries"
    assert claims.scorecard.__module__ == "mripkg.report.claims"
    for old, target in _aliases.ALIASES.items():
        mod = importlib.import_module(f"mripkg.{old}")
        if isinstance(target, dict):
            for names in target.values():
                for n in names:
                    old_name = n.partition(":")[0]
                    assert hasattr(mod, old_name), f"mripkg.{old}.{old_name}"


def test_old_command_runs_the_new_main():
    out = subprocess.run(
        [sys.executable, "-m", "mripkg.readme", "--help"],
        capture_output=True,
        text=True,
        cwd=PKG.parent,
        check=True,
    )
    assert "README" in out.stdout
