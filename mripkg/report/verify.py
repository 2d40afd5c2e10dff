"""Does a run reproduce the committed results?  Every number, within a measured tolerance.

    python -m mripkg.report.verify               # runs/quick against git HEAD's results/quick
    python -m mripkg.report.verify --run DIR --reference DIR
    make verify [PROFILE=quick]

Compares the summary results a run wrote (``metrics_*.json``, ``claims.json``; the clean
per-slice CSV) with the committed ones, number by number (:func:`mripkg.report.moved.
moved_numbers`, the machinery of ``tools/moved_numbers.py``), each against the tolerance of its
kind, read from ``results/<profile>/tolerances.json`` (measured by ``python -m
mripkg.app.tolerances``; see ``docs/reproducibility.md``):

* **clean** (``metrics_clean.json``, ``metrics_zero_filled.json``,
  ``metrics_out_of_domain.json``, ``metrics_clean_per_slice.csv``): the largest difference
  seen between runs (float rounding); anything more means a different install or data;
* **attack**: PSNRs and drops in dB, SSIMs, amplifications (relative);
* **claim**: each claim's statistic in its unit (dB for claim 2, a relative tolerance for the
  energy ratios of claims 1 and 3, twice the artifact statistic's for claim 4's differences);
* **artifact**: per statistic (kurtosis, skewness, correlations, flatness, RMS).

Interval bounds (``low`` / ``high``) get ``interval_factor`` times their kind's tolerance.
Counts and settings (``n``, eps, slice ids, seeds) and text must be equal; verdicts must be
identical; timings and the machine fingerprint are not compared; numbers without a known unit
(e.g. AUCs, p values, rank statistics) are listed as not toleranced, not compared.  One line
sums it up::

    3040 numbers compared, 0 outside tolerance; every claim's verdict identical: yes

Exit status: 0 when every compared number is within tolerance and every verdict identical; 1
otherwise (a flipped verdict, a clean metric that differs, a number outside tolerance, a key
missing on one side); 2 when a file is missing or unreadable.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fingerprint import KEY as MACHINE_KEY
from ..fingerprint import SIDECAR_SUFFIX, differences
from .moved import moved_numbers

#: the result files a run writes (as :func:`mripkg.app.reproduce.export_results` copies them)
RESULT_PATTERNS: tuple[str, ...] = ("metrics_*.json", "claims.json")
CLEAN_FILES = frozenset(
    {"metrics_clean.json", "metrics_zero_filled.json", "metrics_out_of_domain.json"}
)
CLEAN_CSV = "metrics_clean_per_slice.csv"
#: leaf keys that are timings or cache counters, never compared
SKIP_LEAVES = frozenset(
    {"seconds", "computed", "reconstructions_run", "date", "cpu_time_s", "wall_s", "elapsed_s"}
)
#: leaf keys that are counts or settings: equal or not
EXACT_LEAVES = frozenset(
    {
        "n",
        "n_slices",
        "eps",
        "slices",
        "seeds",
        "seed",
        "slice",
        "claim",
        "confidence",
        "iters",
        "samples",
        "tv_iters",
        "image_size",
        "n_lines",
        "acceleration",
        "center_fraction",
        "step_ratio",
        "z",
    }
)
ARTIFACT_STATS = (
    "rms",
    "skewness",
    "excess_kurtosis",
    "neighbour_corr",
    "edge_corr",
    "spectral_flatness",
)
NOTEBOOK_OF = {
    "metrics_zero_filled.json": "01",
    "metrics_clean.json": "02",
    "metrics_out_of_domain.json": "02",
    "metrics_white_box.json": "03",
    "metrics_transfer.json": "04",
    "metrics_artifacts.json": "05",
    "claims.json": "05",
    "metrics_open_questions.json": "07",
    "metrics_sampler_sensitivity.json": "04",
}


class VerifyError(Exception):
    """A result file is missing or unreadable (exit status 2)."""


# --------------------------------------------------------------------------------------------
# reading


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise VerifyError(f"{path}: missing") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise VerifyError(f"{path}: not valid JSON ({err})") from err


def read_folder(folder: str | Path) -> dict[str, Any]:
    """``{file name: parsed JSON}`` of the result files in ``folder``; the clean per-slice CSV
    as a list of rows under its name.  :class:`VerifyError` for an unreadable file or a folder
    without any result file."""
    d = Path(folder)
    if not d.is_dir():
        raise VerifyError(f"{d}: no such folder")
    out: dict[str, Any] = {}
    for pattern in RESULT_PATTERNS:
        for p in sorted(d.glob(pattern)):
            if p.name.endswith(SIDECAR_SUFFIX):
                continue
            out[p.name] = _load_json(p)
    if (d / CLEAN_CSV).is_file():
        out[CLEAN_CSV] = parse_csv((d / CLEAN_CSV).read_text(encoding="utf-8"), d / CLEAN_CSV)
    if not out:
        raise VerifyError(f"{d}: no result files ({', '.join(RESULT_PATTERNS)})")
    return out


def parse_csv(text: str, where: Path | str) -> list[dict[str, Any]]:
    """Rows of a per-slice CSV, numbers as floats; :class:`VerifyError` when rows are ragged."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise VerifyError(f"{where}: empty CSV")
    head = rows[0]
    out = []
    for i, r in enumerate(rows[1:], 2):
        if len(r) != len(head):
            raise VerifyError(f"{where}: line {i} has {len(r)} fields, the header {len(head)}")
        out.append({h: _num(v) for h, v in zip(head, r, strict=True)})
    return out


def _num(v: str) -> Any:
    try:
        return float(v)
    except ValueError:
        return v


def read_git(rev: str, folder: str, repo: Path) -> dict[str, Any]:
    """The result files of ``folder`` (relative to the repository root) as committed at
    ``rev``; :class:`VerifyError` outside a git checkout or for an unknown revision."""
    try:
        ls = subprocess.run(
            ["git", "ls-tree", "--name-only", f"{rev}:{folder}"],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:
        msg = getattr(err, "stderr", "") or str(err)
        raise VerifyError(
            f"cannot read {folder} at git revision {rev!r} in {repo}: {msg.strip()} "
            "(outside a git checkout, pass --reference DIR)"
        ) from err
    names = ls.stdout.split()
    out: dict[str, Any] = {}
    for name in names:
        wanted = any(Path(name).match(p) for p in RESULT_PATTERNS) or name == CLEAN_CSV
        if not wanted or name.endswith(SIDECAR_SUFFIX):
            continue
        text = subprocess.run(
            ["git", "show", f"{rev}:{folder}/{name}"],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        where = f"{rev}:{folder}/{name}"
        if name.endswith(".csv"):
            out[name] = parse_csv(text, where)
            continue
        try:
            out[name] = json.loads(text)
        except json.JSONDecodeError as err:
            raise VerifyError(f"{where}: not valid JSON ({err})") from err
    if not out:
        raise VerifyError(f"{rev}:{folder}: no committed result files")
    return out


def load_tolerances(path: str | Path) -> dict[str, Any]:
    """The ``tolerances`` block of a ``tolerances.json`` (:mod:`mripkg.app.tolerances`), checked."""
    p = Path(path)
    if not p.is_file():
        raise VerifyError(
            f"{p}: missing; measure the tolerances with `python -m mripkg.app.tolerances` "
            "(make tolerances)"
        )
    doc = _load_json(p)
    tol = doc.get("tolerances") if isinstance(doc, Mapping) else None
    need = ("clean", "attack_psnr_db", "attack_ssim", "attack_ratio_log", "claim_log_ratio")
    if not isinstance(tol, Mapping) or any(k not in tol for k in need) or "artifact" not in tol:
        raise VerifyError(f"{p}: no complete 'tolerances' block (needs {need} and 'artifact')")
    return dict(tol)


# --------------------------------------------------------------------------------------------
# what each number is


@dataclass(frozen=True)
class Rule:
    """How one number is compared: ``kind`` (for the summary), ``how`` (``"abs"``: |b - a| <=
    tol; ``"rel"``: |b - a| <= tol * max(|a|, |b|); ``"exact"``; ``"skip"``; ``"none"``: no
    tolerance known, not compared) and ``tol``."""

    kind: str
    how: str
    tol: float = 0.0


_NUMERIC = re.compile(r"-?\d+(\.\d+)?")
#: path components that say which summary, not which quantity
_SUMMARY_PARTS = frozenset({"mean", "low", "high", "value", "sd", "seeds", "per_seed"})


def _leaf(key: str) -> str:
    """The last non-numeric component of a key path."""
    parts = [p for p in key.split("/") if not _NUMERIC.fullmatch(p)]
    return parts[-1] if parts else key


def _quantity(key: str) -> str:
    """The component naming the quantity: the last one that is neither a number (an index, an
    eps) nor a summary word (``mean``, ``low``, ...)."""
    parts = [p for p in key.split("/") if not _NUMERIC.fullmatch(p) and p not in _SUMMARY_PARTS]
    return parts[-1] if parts else key


def _bound(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in ("low", "high")


def _claim_of(card: Mapping[str, Any], key: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    m = re.match(r"claims/(\d+)/(?:rows/(\d+)/)?", key)
    if not m:
        return {}, {}
    claims = card.get("claims", []) if isinstance(card, Mapping) else []
    i = int(m.group(1))
    c = claims[i] if i < len(claims) and isinstance(claims[i], Mapping) else {}
    rows = c.get("rows", []) if isinstance(c, Mapping) else []
    r = rows[int(m.group(2))] if m.group(2) and int(m.group(2)) < len(rows) else {}
    return c, (r if isinstance(r, Mapping) else {})


def _r(kind: str, how: str, t: float | None, factor: float = 1.0) -> Rule:
    """A rule with tolerance ``factor * t``; not compared (``"none"``) where ``t`` is ``None``
    (a kind of number whose spread was not measured)."""
    return Rule(kind, "none") if t is None else Rule(kind, how, factor * float(t))


def _unit_rule(kind: str, key: str, tol: Mapping[str, Any]) -> Rule | None:
    """dB / SSIM / ratio / artifact-statistic rule from the key's name, ``None`` if unknown."""
    leaf = _quantity(key)
    low = leaf.lower()
    f = float(tol.get("interval_factor", 2.0)) if _bound(key) else 1.0
    base = leaf[:-3] if leaf.endswith("_sd") else leaf
    if base in ARTIFACT_STATS and base in tol["artifact"]:
        return _r("artifact", "rel" if base == "rms" else "abs", tol["artifact"][base], f)
    if "auc" in low or low in ("p", "p_value"):
        return None
    if "ssim" in low:
        return _r(kind, "abs", tol["attack_ssim"], f)
    if "amplification" in low:
        return _r(kind, "rel", tol["attack_ratio_log"], f)
    if "psnr" in low or "drop" in low:
        return _r(kind, "abs", tol["attack_psnr_db"], f)
    if "energy" in low or "excess_over_seed" in low:
        return _r(kind, "rel", tol["claim_log_ratio"], f)
    return None


def _csv_model(obj: Any, key: str) -> str:
    m = re.match(r"rows/(\d+)/", key)
    if not m or not isinstance(obj, Mapping):
        return ""
    rows = obj.get("rows", [])
    i = int(m.group(1))
    return str(rows[i].get("model", "")) if i < len(rows) else ""


def rule_for(
    file: str, key: str, tol: Mapping[str, Any], card: Mapping[str, Any], obj: Any = None
) -> Rule:
    """The comparison rule of number ``key`` of result file ``file`` (``card``: the reference's
    claims.json, to look up what a claim's statistic is; ``obj``: the reference's parsed file,
    to look up a per-slice row's model).  Clean numbers of the diffusion model get
    ``clean_diffusion`` (its sampler's U-Net may run in bfloat16), the others ``clean``."""
    leaf = _leaf(key)
    top = key.split("/", 1)[0]
    if top == MACHINE_KEY or leaf in SKIP_LEAVES:
        return Rule("skip", "skip")
    if file in CLEAN_FILES or file == CLEAN_CSV:
        diffusion = "diffusion" in key or (
            file == CLEAN_CSV and _csv_model(obj, key) == "diffusion"
        )
        t = tol.get("clean_diffusion", tol["clean"]) if diffusion else tol["clean"]
        return Rule("clean", "abs", float(t))
    parts = set(key.split("/"))
    if leaf in EXACT_LEAVES or leaf in ("lam", "tv_weight") or parts & {"slices", "lams", "seeds"}:
        return Rule("setting", "exact")
    if file == "claims.json":
        claim, row = _claim_of(card, key)
        f = float(tol.get("interval_factor", 2.0)) if _bound(key) else 1.0
        last = key.rsplit("/", 1)[-1]
        if row and last in ("value", "low", "high"):
            stat = str(claim.get("statistic", "")).lower()
            rstat = str(row.get("statistic", ""))
            if rstat in ARTIFACT_STATS and rstat in tol["artifact"]:  # a difference of two
                return _r("claim", "abs", tol["artifact"][rstat], 2 * f)
            if "geometric mean" in stat or "/ equal-norm" in stat or "ratio" in stat:
                return _r("claim", "rel", tol["claim_log_ratio"], f)
            if "db" in stat or "drop" in stat:
                return _r("claim", "abs", tol["claim_excess_db"], f)
            return Rule("claim", "none")  # e.g. claim 5's rank correlation
        return _unit_rule("claim", key, tol) or Rule("claim", "none")
    if file == "metrics_artifacts.json":
        return _unit_rule("artifact", key, tol) or Rule("artifact", "none")
    unit = _unit_rule("attack", key, tol)
    if unit is None and file == "metrics_open_questions.json" and key.startswith("table/"):
        if parts & {"white_box", "transfer", "control"}:  # PSNR drops (dB)
            return _r("attack", "abs", tol["attack_psnr_db"])
    return unit or Rule("attack", "none")


# --------------------------------------------------------------------------------------------
# comparing


@dataclass
class Report:
    """Outcome of :func:`compare`."""

    compared: int = 0
    outside: list[dict[str, Any]] = field(default_factory=list)
    not_toleranced: list[dict[str, Any]] = field(default_factory=list)
    verdict_flips: list[dict[str, Any]] = field(default_factory=list)
    holds_flips: list[dict[str, Any]] = field(default_factory=list)
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [compared, outside]
    machine: dict[str, Any] = field(default_factory=dict)
    files_not_in_run: list[str] = field(default_factory=list)  # opt-in results, not compared

    @property
    def verdicts_identical(self) -> bool:
        return not self.verdict_flips

    @property
    def clean_differs(self) -> bool:
        return any(r["kind"] == "clean" for r in self.outside)

    @property
    def ok(self) -> bool:
        return not self.outside and self.verdicts_identical

    def line(self) -> str:
        """The one-line verdict."""
        return (
            f"{self.compared} numbers compared, {len(self.outside)} outside tolerance; "
            f"every claim's verdict identical: {'yes' if self.verdicts_identical else 'no'}"
        )


def _csv_as_tree(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"rows": [dict(r) for r in rows]}


def _verdicts(card: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(card, Mapping):
        return out
    for c in card.get("claims", []) or []:
        if not isinstance(c, Mapping):
            continue
        name = str(c.get("claim", "?"))
        for k in ("verdict", "rule_verdict"):
            if k in c:
                out[f"claim {name} {k}"] = c[k]
        for j, r in enumerate(c.get("rows", []) or []):
            if isinstance(r, Mapping) and isinstance(r.get("holds"), bool):
                out[f"claim {name} row {j} ({r.get('label', '')}) holds"] = r["holds"]
    return out


def compare(
    reference: Mapping[str, Any], run: Mapping[str, Any], tolerances: Mapping[str, Any]
) -> Report:
    """Compare two result sets (``{file name: parsed}``, as :func:`read_folder` gives).  A file
    of the reference that the run lacks raises :class:`VerifyError`; a file only in the run is
    reported as outside tolerance (its numbers have nothing to match)."""
    missing = sorted(set(reference) - set(run))
    required = [m for m in missing if m in NOTEBOOK_OF]  # what every `make figures` writes
    if required:
        nbs = sorted({NOTEBOOK_OF[m] for m in required})
        raise VerifyError(
            f"the run has no {', '.join(required)} (written by notebook(s) {', '.join(nbs)}); "
            "run them first (make figures)"
        )
    rep = Report()
    # opt-in results (adaptive attacks, the authors' protocol, attack checks, ...) that this
    # run did not make: listed, not compared
    rep.files_not_in_run = [m for m in missing if m not in NOTEBOOK_OF]
    reference = {k: v for k, v in reference.items() if k in run}
    ref = {k: (_csv_as_tree(v) if k.endswith(".csv") else v) for k, v in reference.items()}
    new = {k: (_csv_as_tree(v) if k.endswith(".csv") else v) for k, v in run.items()}
    card = reference.get("claims.json", {})
    for r in moved_numbers(ref, new, text=True):
        file, key, a, b = r["file"], r["key"], r["before"], r["after"]
        rule = rule_for(file, key, tolerances, card, ref.get(file))
        if rule.how == "skip":
            continue
        if file == "claims.json" and key.endswith(("/verdict", "/rule_verdict")):
            if a != b:
                rep.verdict_flips.append({"key": key, "reference": a, "run": b})
            continue
        row = {"file": file, "key": key, "reference": a, "run": b, "kind": rule.kind}
        counts = rep.by_kind.setdefault(rule.kind, [0, 0])
        if a is None or b is None or isinstance(a, str) or isinstance(b, str):
            rep.compared += 1
            counts[0] += 1
            if a != b:
                rep.outside.append({**row, "why": _why_text(a, b)})
                counts[1] += 1
            continue
        if rule.how == "none":
            rep.not_toleranced.append(row)
            continue
        rep.compared += 1
        counts[0] += 1
        diff = abs(float(b) - float(a))
        if rule.how == "exact":
            bad, allowed = diff != 0, 0.0
        elif rule.how == "rel":
            allowed = rule.tol * max(abs(float(a)), abs(float(b)))
            bad = diff > allowed
        else:
            allowed = rule.tol
            bad = diff > allowed
        if bad or (math.isnan(diff) and not (math.isnan(float(a)) and math.isnan(float(b)))):
            rep.outside.append({**row, "why": f"|change| {diff:.3g} > {allowed:.3g}"})
            counts[1] += 1
    va, vb = _verdicts(reference.get("claims.json")), _verdicts(run.get("claims.json"))
    for k in sorted(set(va) | set(vb)):
        if k.endswith(" holds") and va.get(k) != vb.get(k):
            rep.holds_flips.append({"key": k, "reference": va.get(k), "run": vb.get(k)})
    ma = reference.get("claims.json", {}).get(MACHINE_KEY) if isinstance(card, Mapping) else None
    mb = run.get("claims.json", {}).get(MACHINE_KEY) if "claims.json" in run else None
    if isinstance(ma, Mapping) and isinstance(mb, Mapping):
        rep.machine = {"differences": differences(ma, mb)}
    return rep


def _why_text(a: Any, b: Any) -> str:
    if a is None:
        return "only in the run"
    if b is None:
        return "missing in the run"
    return "differs"


# --------------------------------------------------------------------------------------------
# the tolerance table (docs/reproducibility.md)

#: tolerance name -> (what it applies to, unit, the quantities it was measured from)
TOLERANCE_ROWS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "clean",
        "clean metrics of zero-filled, ResUNet++, i-RIM; data, masks",
        "largest difference",
        ("clean_psnr", "clean_ssim"),
    ),
    (
        "clean_diffusion",
        "clean metrics of the diffusion model (bfloat16 U-Net in its sampler)",
        "largest difference",
        ("clean_psnr", "clean_ssim"),
    ),
    (
        "attack_psnr_db",
        "attack PSNRs and PSNR drops (white-box, transfer, open questions)",
        "dB",
        ("psnr", "excess_drop"),
    ),
    ("attack_ssim", "attack SSIMs", "SSIM", ("ssim",)),
    ("attack_ratio_log", "amplifications", "relative", ("amplification",)),
    ("claim_excess_db", "claim 2: transferred drop - control drop", "dB", ("psnr", "excess_drop")),
    (
        "claim_log_ratio",
        "claims 1 and 3: grey-matter energy ratio; energies",
        "relative",
        ("grey_matter_log_ratio",),
    ),
)


def tolerances_markdown(doc: Mapping[str, Any]) -> str:
    """The tolerances of a ``tolerances.json`` as a Markdown table, with how each was measured
    (the quantity, condition and model pair that gave the largest spread)."""
    tol, sp = doc["tolerances"], doc["spread"]
    lines = [
        "| kind of number | tolerance | unit | largest spread seen in |",
        "|---|---|---|---|",
    ]

    def where(qs: Sequence[str]) -> str:
        q = max(
            qs,
            key=lambda k: float(
                sp[k]["rms" if k not in ("clean_psnr", "clean_ssim") else "max_abs"]
            ),
        )
        s = sp[q]
        return f"{q}: {s['condition'] or '-'}, {s['series'] or '-'}"

    def cell(v: float | None, qs: Sequence[str]) -> str:
        if v is None:
            return "not measured (not compared) | -"
        return f"{float(v):.3g} | {where(qs)}"

    clean_conds = ", ".join(c for c in doc["conditions"] if c != "ref") or "-"
    for name, what, unit, qs in TOLERANCE_ROWS:
        if name in tol:
            t, seen = cell(tol[name], qs).split(" | ", 1)
            if name in ("clean", "clean_diffusion"):  # largest over these conditions
                who = "diffusion" if name == "clean_diffusion" else ""
                who += "" if name == "clean_diffusion" else "ResUNet++, i-RIM"
                seen = f"{who} (clean PSNR / SSIM): {clean_conds}"
            lines.append(f"| {what} | {t} | {unit} | {seen} |")
    for stat, v in tol["artifact"].items():
        unit = "relative" if stat == "rms" else "absolute"
        t, seen = cell(v, [stat]).split(" | ", 1)
        lines.append(f"| artifact {stat} | {t} | {unit} | {seen} |")
    conds = ", ".join(
        f"{c} ({v['seconds'] / 60:.1f} min, oneDNN {v.get('onednn_isa') or '?'})"
        for c, v in doc["conditions"].items()
    )
    st = doc["settings"]
    mach = doc.get("measured_on") or {}
    att = st.get("attack", {})
    lines += [
        "",
        f"Measured with `python -m mripkg.app.tolerances --profile {doc['profile']}` on "
        f"{len(doc['slice_ids'])} validation slices {doc['slice_ids']} at eps "
        f"{', '.join(f'{e:g}' for e in doc['eps'])}: white-box attack of ResUNet++ and i-RIM "
        f"({att.get('steps')} Adam steps, lr_rel {att.get('lr_rel')}, {att.get('precision')}), "
        f"transfer to the other supervised model and to the diffusion model "
        f"({st.get('sampler') or '?'}). Conditions: {conds}; CPU "
        f"{mach.get('cpu', '?')}, torch {mach.get('torch', '?')}, "
        f"oneDNN {mach.get('onednn', '?')}. Interval bounds get "
        f"{float(tol['interval_factor']):g} x the tolerance.",
    ]
    if doc.get("note"):
        lines += ["", f"Note: {doc['note']}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command line


def _root() -> Path:
    from ..paths import REPO_ROOT

    return REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    from ..paths import RESULTS_DIR, RUNS_DIR

    ap = argparse.ArgumentParser(
        prog="python -m mripkg.report.verify", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--run", type=Path, default=None, help="default runs/<profile>")
    ap.add_argument(
        "--reference", type=Path, default=None, help="a folder (default: git REV:results/<profile>)"
    )
    ap.add_argument("--rev", default="HEAD", help="git revision of the committed results")
    ap.add_argument("--tolerances", type=Path, default=None, help="default results/<profile>/")
    ap.add_argument("--show", type=int, default=15, help="list this many numbers outside")
    args = ap.parse_args(argv)
    run_dir = args.run if args.run is not None else RUNS_DIR / args.profile
    tol_path = (
        args.tolerances
        if args.tolerances is not None
        else RESULTS_DIR / args.profile / "tolerances.json"
    )
    try:
        tol = load_tolerances(tol_path)
        run = read_folder(run_dir)
        if args.reference is not None:
            reference = read_folder(args.reference)
            where = str(args.reference)
        else:
            rel = (RESULTS_DIR / args.profile).resolve().relative_to(_root().resolve())
            reference = read_git(args.rev, rel.as_posix(), _root())
            where = f"{args.rev}:{rel.as_posix()}"
        rep = compare(reference, run, tol)
    except VerifyError as err:
        print(f"verify: error: {err}", file=sys.stderr)
        return 2
    print(f"verify: {run_dir} against {where} (tolerances: {tol_path})")
    for kind, (n, m) in sorted(rep.by_kind.items()):
        print(f"  {kind:9s} {n:5d} compared, {m:4d} outside")
    if rep.not_toleranced:
        print(f"  {len(rep.not_toleranced)} numbers without a measured tolerance, not compared")
    if rep.files_not_in_run:
        print(f"  opt-in results this run did not make, not compared: {rep.files_not_in_run}")
    for r in rep.outside[: args.show]:
        print(f"  outside: {r['file']} {r['key']}: {r['reference']} -> {r['run']} ({r['why']})")
    if len(rep.outside) > args.show:
        print(f"  ... and {len(rep.outside) - args.show} more")
    for r in rep.verdict_flips:
        print(f"  VERDICT FLIP: {r['key']}: {r['reference']!r} -> {r['run']!r}")
    for r in rep.holds_flips:
        print(
            f"  comparison flip (verdict unchanged unless listed above): {r['key']}: "
            f"{r['reference']} -> {r['run']}"
        )
    if rep.machine.get("differences"):
        diffs = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in rep.machine["differences"].items())
        print(f"  machine: {diffs}")
    print(rep.line())
    return 0 if rep.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
