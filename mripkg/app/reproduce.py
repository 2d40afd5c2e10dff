"""Run the notebooks headless, in order, and write a manifest of the figures.

    python -m mripkg.reproduce --profile quick            # every notebooks/NN_*.ipynb
    python -m mripkg.reproduce --profile smoke --only 01  # just notebook 01
    python -m mripkg.reproduce --only 03 --param diffusion_whitebox=True
    python -m mripkg.reproduce --list

Each notebook is executed with papermill (kernel ``python3``, per-cell timeout
``profile.cell_timeout_s``, parameter ``profile=<name>``; ``$MRIPKG_PROFILE`` is set for the
kernel too) into ``build/<profile>/``.  ``--param NAME=VALUE`` sets a further parameter (a
Python literal, else a string) in every selected notebook whose ``parameters`` cell declares
``NAME``; a name no selected notebook declares is an error.  The first failing notebook stops
the run with a message naming the notebook and the cell, and a non-zero exit status.  At the
end ``MANIFEST.md`` is written beside the figures (``figures/`` for quick,
``runs/<profile>/figures/`` otherwise) and the summary results (``runs/<profile>/metrics_*``)
are copied to ``results/<profile>/`` (not for ``--data-dir``: the README's tables describe the
embedded data).  Progress: one bar per notebook (cells done / total, elapsed), quiet when
``$CI`` or ``$TQDM_DISABLE`` is set.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..io import atomic_write_text, copy_file
from ..paths import (
    HOME_ENV,
    NOTEBOOKS_DIR,
    PUBLISH_ENV,
    REPO_ROOT,
    ROOT_ENV,
    RUNS_DIR,
    build_dir,
    figures_dir,
    is_checkout,
    results_dir,
    results_dirs,
    run_dir,
)
from ..profiles import (
    PROFILE_ENV,
    PROFILES,
    Profile,
    check_profile,
    cli_profile,
    parse_eps_grid,
    progress_disabled,
)
from ..report.figures import FIGURE_CLAIMS, figure_files

NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_\-]+\.ipynb$")
KERNEL = "python3"


class NotebookFailed(RuntimeError):
    """A notebook raised (or timed out); the message names the notebook and the cell."""


@dataclass
class RunRecord:
    notebook: str
    seconds: float
    figures: list[str] = field(default_factory=list)
    peak_rss_gb: float | None = None  # the kernel's peak resident memory, sampled
    params: dict[str, object] = field(default_factory=dict)  # set by --param


class MemoryWatch:
    """Sample the summed resident memory of this process's children (the papermill kernel)
    every ``interval_s`` in a background thread; ``peak_gb`` is the largest sample.  Children
    that already ran when the watch started (e.g. a multiprocessing resource tracker left by
    earlier work) are not counted.  Needs psutil (an ipykernel dependency); without it
    ``peak_gb`` stays ``None``."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak_gb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._before: set[int] = set()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                if child.pid in self._before:
                    continue
                try:
                    total += child.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            gb = total / 1e9
            if total and (self.peak_gb is None or gb > self.peak_gb):
                self.peak_gb = gb
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MemoryWatch:
        try:
            import psutil
        except ImportError:
            return self
        self._before = {p.pid for p in psutil.Process().children(recursive=True)}
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def quiet() -> bool:
    """Progress output is suppressed under CI: ``$CI`` or ``$TQDM_DISABLE`` set to anything
    but '', 0, false, no (the rule of :func:`mripkg.profiles.progress_disabled`)."""
    return progress_disabled()


def progress_bar(nb_path: Path, profile: Profile) -> dict[str, object] | bool:
    """papermill's per-notebook bar (cells done / total, elapsed, remaining), named after the
    notebook; ``False`` under CI.  Off a terminal (a log file) it updates every 30 s."""
    if quiet():
        return False
    bar: dict[str, object] = {"desc": f"[{profile.name}] {nb_path.stem}"}
    if not sys.stderr.isatty():
        bar.update(mininterval=30.0, ascii=True)
    return bar


def discover(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """``NN_*.ipynb`` in ``notebooks_dir``, sorted by their two-digit number."""
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"notebooks folder not found: {notebooks_dir}")
    found = [p for p in notebooks_dir.iterdir() if p.is_file() and NOTEBOOK_RE.match(p.name)]
    numbers: dict[str, Path] = {}
    for p in sorted(found):
        num = p.name[:2]
        if num in numbers:
            raise ValueError(f"two notebooks share number {num}: {numbers[num].name}, {p.name}")
        numbers[num] = p
    return [numbers[k] for k in sorted(numbers)]


def select(notebooks: list[Path], only: str | None) -> list[Path]:
    """Keep the notebooks whose numbers are listed in ``only`` ("01,03"); all when None."""
    if not only:
        return notebooks
    wanted = [s.strip() for s in only.split(",") if s.strip()]
    wanted = [w.zfill(2) if w.isdigit() else w for w in wanted]
    have = {p.name[:2]: p for p in notebooks}
    missing = [w for w in wanted if w not in have]
    if missing:
        raise ValueError(f"--only {only!r}: no notebook numbered {missing}; have {sorted(have)}")
    return [have[k] for k in sorted(set(wanted))]


RESERVED_PARAMS = ("profile", "data_dir")  # set by --profile / --data-dir
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_params(items: list[str] | None) -> dict[str, object]:
    """``["name=value", ...]`` -> ``{name: value}``; a value is a Python literal
    (``True``, ``3``, ``0.5``, ``[1, 2]``, ``'x'``) or else taken as a string."""
    out: dict[str, object] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not PARAM_NAME_RE.match(name):
            raise ValueError(f"--param {item!r}: expected NAME=VALUE with a Python identifier")
        if name in RESERVED_PARAMS:
            raise ValueError(f"--param {name}: use --{name.replace('_', '-')} instead")
        if name in out:
            raise ValueError(f"--param {name} given twice")
        try:
            out[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            out[name] = text.strip()
    return out


#: notebook number -> (the notebooks whose outputs it reads, what holds them instead)
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "06": (("03", "04"), "explorer.npz"),  # the explorer: attack caches, else the bundle
}


def missing_inputs(selected: list[Path], profile: str) -> str | None:
    """One line naming the notebooks to run first when a selected notebook reads outputs that
    neither this selection, nor ``runs/<profile>/``, nor a shipped bundle provides; else
    ``None``.  (Notebook 06 at quick reads the committed bundle; at smoke and paper a clean
    clone has none.)"""
    names = [p.name[:2] for p in selected]
    for nb, (before, bundle) in NEEDS.items():
        if nb not in names or all(b in names[: names.index(nb)] for b in before):
            continue
        if any((d / bundle).is_file() for d in results_dirs(profile)):
            continue
        attacks = RUNS_DIR / profile / "attacks"
        if attacks.is_dir() and any(attacks.iterdir()):
            continue
        first = ",".join(sorted({*before, *names}))
        return (
            f"notebook {nb} at profile {profile} reads the outputs of notebooks "
            f"{' and '.join(before)} (runs/{profile}/attacks) or a bundle "
            f"results/{profile}/{bundle}, and neither exists: run them first, e.g. "
            f"python -m mripkg.reproduce --profile {profile} --only {first}"
        )
    return None


def declared_params(nb_path: Path) -> set[str]:
    """Names assigned in the notebook's ``parameters``-tagged cell (empty without one).
    Parsed with :mod:`ast`, which also sees what ``papermill.inspect_notebook`` skips (a line
    with two ``=``, an annotation such as ``str | None``)."""
    import nbformat

    nb = nbformat.read(str(nb_path), as_version=4)
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    names.add(node.target.id)
                elif isinstance(node, ast.Assign):
                    names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def params_per_notebook(
    notebooks: list[Path], params: dict[str, object]
) -> dict[Path, dict[str, object]]:
    """The subset of ``params`` each notebook declares; ``ValueError`` for a name that no
    notebook declares (a typo would otherwise be ignored silently)."""
    declared = {nb: declared_params(nb) for nb in notebooks}
    unused = [n for n in params if not any(n in d for d in declared.values())]
    if unused:
        names = ", ".join(nb.name for nb in notebooks)
        raise ValueError(f"--param {', '.join(unused)}: not a parameter of {names}")
    types: dict[str, str] = {}
    for nb in notebooks:
        types.update(declared_types(nb))
    checked = {k: check_param(k, v, types.get(k, "")) for k, v in params.items()}
    return {nb: {k: v for k, v in checked.items() if k in declared[nb]} for nb in notebooks}


def declared_types(nb_path: Path) -> dict[str, str]:
    """{name: annotation as written} of the annotated assignments in the ``parameters``
    cell (``eps_grid: list[float] = []`` -> ``{"eps_grid": "list[float]"}``)."""
    import nbformat

    nb = nbformat.read(str(nb_path), as_version=4)
    out: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    out[node.target.id] = ast.unparse(node.annotation)
    return out


def check_param(name: str, value: object, annotation: str) -> object:
    """``value`` of parameter ``name`` checked strictly where a wrong one would fail late or
    silently: an eps list (``list[float]``, name with ``eps``) through
    :func:`mripkg.profiles.parse_eps_grid`, a single eps as a finite number in [0, 1].
    ``ValueError`` with one line naming the problem."""
    if "eps" not in name:
        return value
    if annotation.startswith(("list", "tuple")):
        return list(parse_eps_grid(value, name))
    if annotation in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a finite number in [0, 1], got {value!r}")
    return value


def with_run_defaults(
    extra: dict[Path, dict[str, object]], data_dir: str | None
) -> dict[Path, dict[str, object]]:
    """``extra`` plus what a run sets unless given: ``make_bundle=True`` for a notebook that
    declares it (06 writes the explorer bundle ``results/<profile>/explorer.npz`` of this run's
    caches, so it always matches them); nothing with a user folder (``data_dir``)."""
    out = {nb: dict(p) for nb, p in extra.items()}
    if data_dir is None:
        for nb, p in out.items():
            if "make_bundle" in declared_params(nb):
                p.setdefault("make_bundle", True)
    return out


def _cell_position(source_nb: Path, err) -> str:
    """Human-readable position of the failing cell in the *source* notebook (papermill's
    ``cell_index`` counts the injected parameters cell too)."""
    import nbformat

    index = None
    try:
        nb = nbformat.read(source_nb, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and cell.source == err.source:
                index = i
                break
        n_cells = len(nb.cells)
    except Exception:  # noqa: BLE001 - best effort; fall back to papermill's index
        n_cells = None
    if index is None:
        return f"cell index {err.cell_index} of the executed notebook"
    first = next((ln for ln in err.source.splitlines() if ln.strip()), "").strip()
    if len(first) > 70:
        first = first[:67] + "..."
    return f"cell {index + 1} of {n_cells} (execution count {err.exec_count}; starts {first!r})"


def resolve_data_dir(data_dir: str | os.PathLike, cwd: str | os.PathLike | None = None) -> Path:
    """``data_dir`` as an absolute path: a relative one is taken from ``cwd`` (default: the
    caller's working directory), before the kernel, which runs in ``notebooks/``, sees it.
    ``FileNotFoundError`` naming both forms when it is not a folder."""
    p = Path(data_dir).expanduser()
    if not p.is_absolute():
        p = Path(cwd if cwd is not None else os.getcwd()) / p
    p = p.resolve()
    if not p.is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir}: not a folder ({p})")
    return p


def run_notebook(
    nb_path: Path,
    profile: Profile,
    out_dir: Path,
    data_dir: str | None = None,
    timeout_s: int | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    """Execute one notebook with papermill into ``out_dir`` (``extra``: further parameters);
    raise :class:`NotebookFailed`."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    prof = check_profile(profile)
    params: dict[str, object] = {**(extra or {}), "profile": prof.name}
    if data_dir is not None:
        # the kernel runs in notebooks/: a relative folder is meant from the caller's directory
        params["data_dir"] = str(resolve_data_dir(data_dir))
    out = out_dir / nb_path.name
    os.environ[PROFILE_ENV] = prof.name  # the kernel inherits it
    os.environ[PUBLISH_ENV] = "1"  # quick figures go to figures/ (a Lab session: runs/)
    if not is_checkout() and not os.environ.get(ROOT_ENV):
        os.environ[HOME_ENV] = str(REPO_ROOT)  # installed: the kernel writes where we do
    try:
        pm.execute_notebook(
            str(nb_path),
            str(out),
            parameters=params,
            kernel_name=KERNEL,
            progress_bar=progress_bar(nb_path, prof),
            log_output=False,
            execution_timeout=timeout_s if timeout_s is not None else prof.cell_timeout_s,
            cwd=str(nb_path.parent),
        )
    except PapermillExecutionError as err:
        where = _cell_position(nb_path, err)
        raise NotebookFailed(
            f"notebook {nb_path.name} failed at {where}: {err.ename}: {err.evalue}\n"
            f"  executed notebook with the traceback: {out}"
        ) from err
    except Exception as err:  # kernel death, cell timeout, missing kernel ...
        raise NotebookFailed(
            f"notebook {nb_path.name} failed: {type(err).__name__}: {err}\n"
            f"  partial executed notebook: {out}"
        ) from err
    return out


RESULT_PATTERNS = ("metrics_*.json", "metrics_*.csv", "claims.json")


def export_results(profile: Profile) -> list[Path]:
    """Copy the notebooks' summary results (``runs/<profile>/metrics_*.json``, the per-slice
    ``metrics_*.csv`` and the claims scorecard ``claims.json``; small) to
    ``results/<profile>/``, atomically.  The README's tables are generated from
    ``results/quick/`` (``python -m mripkg.readme``)."""
    src = run_dir(profile.name)
    dst = results_dir(profile.name)
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for pattern in RESULT_PATTERNS:
        for f in sorted(src.glob(pattern)):
            copy_file(f, dst / f.name)
            copied.append(dst / f.name)
    return copied


def _snapshot(profile: Profile) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in figure_files(profile)}


def write_manifest(
    profile: Profile,
    records: list[RunRecord],
    started: dt.datetime,
    total_s: float,
    data_dir: str | None = None,
    whole: bool = True,
) -> Path:
    """``MANIFEST.md`` beside the figures: every figure file present, the notebook that made
    it, the profile, the paper claim it illustrates, the date and the run time.

    The per-notebook records are merged into ``MANIFEST.json`` beside it (one entry per
    notebook, replaced when that notebook runs again), so a partial run (``--only``) updates
    its notebooks' lines and keeps the others'; the whole-run line (start, total time) changes
    only when every notebook ran (``whole``)."""
    fdir = figures_dir(profile.name)
    fdir.mkdir(parents=True, exist_ok=True)
    store_path = fdir / "MANIFEST.json"
    try:
        store = json.loads(store_path.read_text(encoding="utf-8"))
        if not isinstance(store, dict) or not isinstance(store.get("notebooks"), dict):
            store = {}
    except (OSError, ValueError):
        store = {}
    notebooks: dict[str, dict] = dict(store.get("notebooks", {}))
    when = started.isoformat(timespec="seconds")
    for r in records:
        notebooks[r.notebook] = {
            "seconds": round(r.seconds, 1),
            "peak_rss_gb": None if r.peak_rss_gb is None else round(r.peak_rss_gb, 2),
            "figures": list(r.figures),
            "params": {k: repr(v) for k, v in r.params.items()},
            "run_started": when,
            "whole_run": whole,
            "data": "embedded" if data_dir is None else data_dir,
            "mripkg": __version__,
        }
    whole_run = store.get("whole_run")
    if whole:
        whole_run = {"started": when, "total_s": round(total_s, 1), "mripkg": __version__}
    store = {
        "profile": profile.name,
        "whole_run": whole_run,
        "notebooks": dict(sorted(notebooks.items())),
    }
    made_by = {fig: nb for nb, rec in notebooks.items() for fig in rec.get("figures", [])}
    rows = []
    for path in figure_files(profile):
        nb_claim = FIGURE_CLAIMS.get(path.stem)
        claim = nb_claim[1] if nb_claim else "(no claim registered in mripkg.figures)"
        if path.name in made_by:
            notebook = made_by[path.name]
        else:
            mtime = dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
            notebook = (
                f"{nb_claim[0] if nb_claim else '?'} (not rebuilt by a recorded run; {mtime})"
            )
        rows.append((path.name, notebook, claim))
    given = [
        f"`{k}={v}` ({nb})"
        for nb, rec in notebooks.items()
        for k, v in rec.get("params", {}).items()
    ]
    if whole_run:
        whole_line = (
            f"- last whole run (every notebook): started {whole_run['started']}, total run time "
            f"{whole_run['total_s']:.1f} s ({whole_run['total_s'] / 60:.1f} min)"
        )
    else:
        whole_line = "- no whole run (every notebook) recorded yet"
    lines = [
        f"# Figures of profile `{profile.name}`",
        "",
        f"- written by `python -m mripkg.reproduce --profile {profile.name}` "
        f"(mripkg {__version__})",
        *([f"- parameters set with --param: {', '.join(given)}"] if given else []),
        whole_line,
        *(
            []
            if whole
            else [
                f"- this partial run (--only): started {when}, {total_s:.1f} s; "
                + ", ".join(f"`{r.notebook}`" for r in records)
            ]
        ),
        f"- data: {'embedded MNI152 / Colin27 volumes' if data_dir is None else data_dir}",
        "- notebooks, each from its latest run (wall time, peak memory of the kernel, run "
        "started): "
        + (
            ", ".join(
                f"`{nb}` ({rec['seconds']:.1f} s"
                + ("" if rec.get("peak_rss_gb") is None else f", {rec['peak_rss_gb']:.2f} GB")
                + f", {rec.get('run_started', '?')})"
                for nb, rec in notebooks.items()
            )
            or "none"
        ),
        "",
        "| file | notebook | profile | paper claim it illustrates |",
        "|---|---|---|---|",
    ]
    for name, notebook, claim in rows:
        lines.append(f"| `{name}` | `{notebook}` | {profile.name} | {claim} |")
    if not rows:
        lines.append("| (no figures) | | | |")
    path = fdir / "MANIFEST.md"
    atomic_write_text(store_path, json.dumps(store, indent=1) + "\n")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _gb(r: RunRecord) -> str:
    return "" if r.peak_rss_gb is None else f", {r.peak_rss_gb:.2f} GB"


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mripkg.reproduce",
        description="Run the notebooks in order with papermill and write MANIFEST.md.",
    )
    ap.add_argument("--profile", default=None, choices=sorted(PROFILES), help="default: quick")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,03")
    ap.add_argument("--data-dir", default=None, help="folder of your own NIfTI volumes")
    ap.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a notebook parameter, e.g. diffusion_whitebox=True (repeatable)",
    )
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    ap.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS_DIR, help="default: notebooks/")
    ap.add_argument(
        "--build-dir", type=Path, default=None, help="executed notebooks (default build/<profile>)"
    )
    args = ap.parse_args(argv)

    try:
        notebooks = discover(args.notebooks_dir)
        selected = select(notebooks, args.only)
        extra = with_run_defaults(
            params_per_notebook(selected, parse_params(args.param)), args.data_dir
        )
        data_dir = None if args.data_dir is None else str(resolve_data_dir(args.data_dir))
    except (FileNotFoundError, ValueError, SyntaxError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list:
        for p in notebooks:
            print(p.name)
        return 0
    if not selected:
        print(f"error: no NN_*.ipynb notebooks in {args.notebooks_dir}", file=sys.stderr)
        return 2

    prof = cli_profile(args.profile)  # the one place a name becomes a Profile
    profile = prof.name
    os.environ[PUBLISH_ENV] = "1"  # this run writes the quick figures into figures/
    missing = missing_inputs(selected, profile)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    out_dir = args.build_dir if args.build_dir is not None else build_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if quiet() else (lambda *a: print(*a, flush=True))
    started = dt.datetime.now()
    t0 = time.perf_counter()
    records: list[RunRecord] = []
    for i, nb in enumerate(selected, 1):
        say(f"[{profile}] notebook {i}/{len(selected)}: {nb.name} ...")
        before = _snapshot(prof)
        t = time.perf_counter()
        try:
            with MemoryWatch() as mem:
                run_notebook(nb, prof, out_dir, data_dir, extra=extra[nb])
        except NotebookFailed as err:
            print(f"FAILED: {err}", file=sys.stderr)
            print(
                f"stopped after {time.perf_counter() - t0:.1f} s; later notebooks not run",
                file=sys.stderr,
            )
            return 1
        after = _snapshot(prof)
        made = sorted(name for name, m in after.items() if before.get(name) != m)
        records.append(
            RunRecord(nb.name, time.perf_counter() - t, made, mem.peak_gb, params=extra[nb])
        )
        peak = "" if mem.peak_gb is None else f", kernel peak memory {mem.peak_gb:.2f} GB"
        say(
            f"[{profile}] {nb.name} done in {records[-1].seconds:.1f} s{peak}: "
            f"{len(made)} figure files; {time.perf_counter() - t0:.1f} s in all so far"
        )
    total = time.perf_counter() - t0
    whole = {p.name for p in selected} == {p.name for p in notebooks}
    manifest = write_manifest(prof, records, started, total, data_dir, whole=whole)
    exported = export_results(prof) if data_dir is None else []
    print(f"[{profile}] {len(records)} notebooks in {total:.1f} s; manifest: {_rel(manifest)}")
    if exported:
        print(f"[{profile}] {len(exported)} result files -> {_rel(results_dir(profile))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
