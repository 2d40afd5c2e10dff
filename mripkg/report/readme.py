"""Generate the result tables of README.md and docs/*.md from the committed results, so
numbers never drift.

    python -m mripkg.report.readme              # rewrite README.md and docs/*.md between markers
    python -m mripkg.report.readme --check      # exit 1 if any differs from what the files give
    python -m mripkg.report.readme docs/x.md    # only the files named

Each generated block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in a
Markdown file; ``NAME`` is a key of :data:`SECTIONS`, a function ``results_dir -> markdown`` that
reads the notebooks' summary JSON in ``results/<profile>/`` (copied there by
``python -m mripkg.reproduce``; see :func:`mripkg.paths.results_dir`).  Add a table by
registering a function with :func:`section` and putting its markers in README.md or a page
under docs/ (docs/generated-tables.md says how, step by step).  The block ``links`` holds the
Binder badge and the site's address, made from :func:`repo_slug` (one place: the git remote,
else ``[tool.mripkg] github`` in pyproject.toml).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..fingerprint import strip
from ..io import atomic_write_text
from ..models import LEARNED, MODEL_LABELS, NAMES
from ..paths import REPO_ROOT, results_dir, shipped_weights_dir

PROFILE = "quick"
#: name -> function(results_dir) -> markdown (without the markers)
SECTIONS: dict[str, Callable[[Path], str]] = {}
# markers count only at the start of a line (an indented or inline mention is documentation)
MARKER_RE = re.compile(
    r"^(<!-- results:(?P<name>[A-Za-z0-9_\-]+) -->\n)(?P<body>.*?)^(<!-- /results:(?P=name) -->)",
    re.DOTALL | re.MULTILINE,
)
OPEN_RE = re.compile(r"^<!-- results:([A-Za-z0-9_\-]+) -->", re.MULTILINE)

#: the README's labels: the four models' (mripkg.models.LABELS) and the image route; models
#: beyond the paper keep their keys here (the committed README shows "tv", "tv_diffusion")
LABELS = {
    **{m: MODEL_LABELS[m] for m in NAMES},
    "diffusion_image_route": "diffusion, authors' image route",
}


#: Models of the out-of-domain table (TV joins when the results have it).
OUT_OF_DOMAIN_MODELS = NAMES
#: Columns a generated block must have (``--check`` fails without them).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "out_of_domain": ("condition", *(MODEL_LABELS[m] for m in (*NAMES, "tv"))),
}


def check_block(name: str, old: str, new: str) -> list[str]:
    """Problems of a regenerated block ``new`` against the README's ``old``: a table that lost a
    column or a row (:func:`mripkg.prose_check.lost_cells`), or a required column missing
    (:data:`REQUIRED_COLUMNS`, matched as a prefix of a header cell)."""
    from .prose_check import lost_cells, table_shapes

    problems = [f"{name}: {p}" for p in lost_cells(old, new)]
    req = REQUIRED_COLUMNS.get(name, ())
    if req:
        shapes = table_shapes(new)
        heads = shapes[0][0] if shapes else []
        miss = [c for c in req if not any(h.startswith(c) for h in heads)]
        if miss:
            problems.append(f"{name}: required column(s) missing {miss}")
    return problems


def section(name: str) -> Callable[[Callable[[Path], str]], Callable[[Path], str]]:
    """Register ``fn(results_dir) -> markdown`` as the generator of block ``name``."""

    def register(fn: Callable[[Path], str]) -> Callable[[Path], str]:
        SECTIONS[name] = fn
        return fn

    return register


def read_result(results: Path, name: str) -> dict[str, Any]:
    """``results/<profile>/<name>`` as JSON; a clear error naming the notebook to run."""
    path = Path(results) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run the notebooks (python -m mripkg.reproduce --profile "
            f"{Path(results).name}), which copy runs/<profile>/metrics_*.json there"
        )
    return strip(json.loads(path.read_text(encoding="utf-8")))


DEFAULT_SLUG = "OWNER/mripkg"
GITHUB_RE = re.compile(r"github\.com[:/](?P<slug>[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+?)(?:\.git)?/?$")


def slug_from_remote(url: str) -> str | None:
    """``owner/name`` of a GitHub remote URL (https or ssh), else ``None``."""
    m = GITHUB_RE.search(url.strip())
    return m.group("slug") if m else None


def repo_slug(root: Path = REPO_ROOT) -> str:
    """The GitHub ``owner/name`` the badges and the site's address use: the ``origin`` remote
    of the checkout when it is on GitHub, else ``[tool.mripkg] github`` in pyproject.toml,
    else ``OWNER/mripkg``."""
    try:
        url = subprocess.run(
            ["git", "-C", str(root), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        url = ""
    slug = slug_from_remote(url) if url else None
    if slug:
        return slug
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        m = re.search(
            r'^\[tool\.mripkg\][^\[]*?^github\s*=\s*"([^"]+)"',
            pyproject.read_text(encoding="utf-8"),
            re.MULTILINE | re.DOTALL,
        )
        slug = m.group(1) if m else None
    return slug or DEFAULT_SLUG


@section("links")
def links_block(results: Path) -> str:
    """The Binder badge (opens the explorer, notebook 06) and the site's GitHub Pages address,
    for the repository :func:`repo_slug` names."""
    slug = repo_slug()
    owner, name = slug.split("/", 1)
    binder = f"https://mybinder.org/v2/gh/{slug}/HEAD?urlpath=lab/tree/notebooks/06_explorer.ipynb"
    site = f"https://{owner.lower()}.github.io/{name}/"
    out = (
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder}) "
        f"(opens the explorer, notebook 06) · [the rendered companion]({site})"
    )
    if slug == DEFAULT_SLUG:
        out += (
            "\n\n(`OWNER`: set `[tool.mripkg] github` in pyproject.toml, or add the GitHub "
            "remote `origin`, then `make readme`.)"
        )
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _f(x: float | None, digits: int = 2) -> str:
    """``x`` rounded (no "-0.00"); "-" for a missing value."""
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if round(x, digits) != 0 else f"{0:.{digits}f}"


def _eps_keys(d: dict[str, Any]) -> list[str]:
    return sorted(d, key=float)


def param_count(weights_file: Path) -> int:
    """Trainable parameters in a safetensors file (read from its header; running statistics
    of batch norm excluded)."""
    with open(weights_file, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return sum(
        math.prod(v["shape"])
        for k, v in header.items()
        if k != "__metadata__" and not k.endswith(skip)
    )


def _count(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def _training(profile_name: str, name: str) -> tuple[str, str]:
    """(``"162 k"``, ``"1500 steps, 17 CPU-min"``) from the shipped weights and sidecar."""
    d = shipped_weights_dir(profile_name)
    if not (d / f"{name}.json").is_file():
        return "?", "trained in the run"
    meta = json.loads((d / f"{name}.json").read_text(encoding="utf-8"))
    params = _count(param_count(d / f"{name}.safetensors"))
    return params, f"{meta['step']} steps, {meta['cpu_time_s'] / 60:.0f} CPU-min"


@section("clean")
def clean_table(results: Path) -> str:
    """Table 1, clean part: PSNR/SSIM of each model on the Colin27 test set and test_id."""
    m = read_result(results, "metrics_clean.json")
    profile = m.get("profile", PROFILE)
    # the sampler that made the numbers, from the file: the profile's current sampler may differ
    sampler = m.get("diffusion_sampler", "not recorded in metrics_clean.json")
    rows = []
    for key in NAMES:
        if key == "zero_filled":
            label, training = MODEL_LABELS["zero_filled"], "-"
        else:
            params, training = _training(profile, "ddpm" if key == "diffusion" else key)
            label = (
                f"diffusion: DDPM ({params} params), sampler: {sampler}"
                if key == "diffusion"
                else f"{LABELS[key]} ({params} params)"
            )
        r, rid = m[key], m["test_id"][key]
        rows.append(
            [
                label,
                training,
                f"{r['psnr_mean']:.2f} ± {r['psnr_sd']:.2f}",
                _f(r["ssim_mean"], 3),
                _f(r["ssim_head_mean"], 3),
                _f(rid["psnr_mean"]),
            ]
        )
    header = ["model", "training", "PSNR dB", "SSIM", "SSIM head", "PSNR dB, test_id"]
    out = _table(header, rows)
    spread = m.get("diffusion_seed_spread")
    if spread:
        out += (
            f"\n\nThe diffusion reconstruction varies with the sampler seed: PSNR SD "
            f"{spread['psnr_sd_across_seeds']:.2f} dB over {len(spread['seeds'])} seeds, "
            f"pixel RMS {spread['pixel_rms_across_seeds']:.3f}."
        )
    return out


@section("white_box")
def white_box_table(results: Path) -> str:
    """White-box attacks: PSNR at eps 0 / 0.04 / max, the equal-norm random control at max,
    and the amplification at max."""
    m = read_result(results, "metrics_white_box.json")
    keys = _eps_keys(m["resunetpp"])
    cols = [keys[0], *(["0.04"] if "0.04" in keys[1:-1] else []), keys[-1]]
    top = cols[-1]
    header = ["model", *(f"eps {float(k):g}" for k in cols)]
    header += [f"random control, eps {float(top):g}", "amplification"]
    rows = []
    for key in NAMES:
        if key not in m:
            continue
        r = m[key]
        label = LABELS[key]
        if key == "diffusion":
            n = r[_eps_keys(r)[0]].get("n_slices", "?")
            label = f"diffusion, {n} slices (opt-in, beyond the paper; `fig3_white_box_diffusion`)"
        at_top = r.get(top, {})
        rows.append(
            [
                label,
                *(_f(r.get(k, {}).get("psnr_mean")) for k in cols),
                _f(at_top.get("random_psnr_mean")),
                _f(at_top.get("amplification")),
            ]
        )
    return _table(header, rows)


@section("transfer")
def transfer_table(results: Path) -> str:
    """Black-box transfer: PSNR drop (dB) at the route eps, random control in brackets."""
    from ..profiles import PROFILES

    m = read_result(results, "metrics_transfer.json")
    any_cell = next(iter(m["resunetpp"].values()))
    eps_keys = _eps_keys(any_cell)
    quick_eps = f"{PROFILES[PROFILE].attack.route_eps:.2f}"
    eps = quick_eps if quick_eps in eps_keys else eps_keys[-1]
    targets = [*NAMES, "diffusion_image_route"]
    rows = []
    for src in LEARNED:
        if src not in m:
            continue
        label = LABELS[src]
        if src == "diffusion":
            n = m[src]["zero_filled"][eps].get("n_slices", "?")
            label = f"diffusion (opt-in white-box, {n} slices)"
        row = [label]
        for tgt in targets:
            cell = m[src].get(tgt, {}).get(eps)
            if cell is None:
                row.append("-")
                continue
            text = f"{_f(cell['psnr_drop'])} ({_f(cell['random_psnr_drop'])})"
            row.append(text + (" white-box" if tgt == src else ""))
        rows.append(row)
    header = ["source \\ target", *(LABELS[t] for t in targets)]
    return f"PSNR drop in dB at eps = {float(eps):g}\n\n" + _table(header, rows)


ARTIFACT_ROWS = (
    ("ResUNet++ white-box", "ResUNet++, white-box"),
    ("i-RIM white-box", "i-RIM, white-box"),
    ("diffusion <- ResUNet++", "diffusion <- ResUNet++"),
    ("diffusion <- i-RIM", "diffusion <- i-RIM"),
    ("diffusion, random control", "diffusion, random control"),
    ("diffusion, other seed", "diffusion, another sampler seed (no perturbation)"),
)
ARTIFACT_STATS = (
    ("excess_kurtosis", "excess kurtosis"),
    ("neighbour_corr", "adjacent-pixel corr."),
    ("edge_corr", "edge corr."),
    ("spectral_flatness", "spectral flatness"),
    ("detection_auc", "detection AUC"),
)


@section("artifacts")
def artifacts_table(results: Path) -> str:
    """Artifact statistics inside the head at the largest diffusion eps (mean over slices)."""
    m = read_result(results, "metrics_artifacts.json")
    top = _eps_keys(m["diffusion <- ResUNet++"])[-1]
    rows = []
    for key, label in ARTIFACT_ROWS:
        if key not in m:
            continue
        r = m[key].get(top) or m[key][_eps_keys(m[key])[-1]]
        rows.append([label, *(_f(r.get(s)) for s, _ in ARTIFACT_STATS)])
    noise = m.get("white Gaussian noise")
    caption = f"f(y + Mδ) − f(y) at eps = {float(top):g}"
    if noise:
        w = next(iter(noise.values()))
        caption += "; white Gaussian noise: " + " / ".join(
            _f(w.get(s)) for s, _ in ARTIFACT_STATS[:4]
        )
    return caption + "\n\n" + _table(["artifact", *(t for _, t in ARTIFACT_STATS)], rows)


@section("claims")
def claims_table(results: Path) -> str:
    """The scorecard of the paper's five claims (notebook 05, ``claims.json``): issue 17's
    card (header, rule sentences from the file) when the file has it, else the older one."""
    from .scorecard import card_markdown

    return card_markdown(read_result(results, "claims.json"))


@section("sampler_sensitivity")
def sampler_sensitivity_table(results: Path) -> str:
    """Notebook 04 (issue 17): transferred and control PSNR drops under the paper's sampler
    and the DDS ablation, with dependence-aware 95 % intervals over slices."""
    m = read_result(results, "metrics_sampler_sensitivity.json")
    rows = m["rows"]
    if not rows:
        raise ValueError("metrics_sampler_sensitivity.json has no rows")
    head = list(rows[0])
    return "PSNR drops in dB, 95 % intervals over slices\n\n" + _table(
        head, [[str(r[k]) for k in head] for r in rows]
    )


@section("out_of_domain")
def out_of_domain_table(results: Path) -> str:
    """PSNR / SSIM of every model under the out-of-domain conditions of notebook 02."""
    from .tables import format_out_of_domain

    m = read_result(results, "metrics_out_of_domain.json")
    # model columns from the rows' keys ("{model}_psnr"), not the JSON's top level
    keys = set().union(*(r.keys() for r in m["rows"])) if m["rows"] else set()
    models = [k for k in (*OUT_OF_DOMAIN_MODELS, "tv") if f"{k}_psnr" in keys]
    return "PSNR dB / SSIM\n\n" + format_out_of_domain(m, models)


@section("open_questions")
def open_questions_table(results: Path) -> str:
    """Notebook 07: clean PSNR, white-box, transferred and control drops per model."""
    from ..experiments.open_questions import add_adaptive, defence_status, table_rows
    from .tables import format_table

    m = read_result(results, "metrics_open_questions.json")
    table = m["table"]
    if not any("status" in r for r in table.values()):  # written before adaptive attacks
        table = add_adaptive(table, None)
    sources = [s for s in ("resunetpp", "irim", "tv") if s in table]
    eps = sorted({float(e) for t in table.values() for e in t.get("control", {})})
    return (
        "PSNR drop in dB (positive: damage); adaptive: white-box through the model's own "
        "sampler, mean [95 % interval] over its slices\n\n"
        + format_table(table_rows(table, LABELS, sources, eps))
        + "\n\n"
        + "\n".join(defence_status(table, LABELS))
    )


@section("adaptive")
def adaptive_table(results: Path) -> str:
    """Notebook 07's adaptive attacks (``metrics_adaptive.json``): per model and eps the
    adaptive drop, the control, the excess over it, convergence, the comparison with the
    undefended model and the verdict of the fixed rule; then settings and cost."""
    from ..experiments.open_questions import fmt_interval
    from .tables import format_table

    if not (Path(results) / "metrics_adaptive.json").is_file():  # opt-in: may be absent
        return (
            "No adaptive result in this profile's results (notebook 07 with `adaptive=True` "
            "writes `metrics_adaptive.json`): every diffusion row is transfer only."
        )
    m = read_result(results, "metrics_adaptive.json")
    key = m["key"]
    rows = []
    for d in ("diffusion", "tv_diffusion", "diffusion_mean"):
        if d not in m:
            continue
        for k, r in m[d]["eps"].items():
            iv, ex, conv = r["psnr_drop"], r["excess_over_control"], r["convergence"]
            vs = m.get("verdicts", {}).get(d, {}).get(k)
            rows.append(
                {
                    "model": LABELS.get(d, d),
                    "eps": k,
                    "slices": str(len(m[d]["slice_ids"])),
                    "clean PSNR": f"{r['clean_psnr']:.2f}",
                    "adaptive drop": fmt_interval(iv),
                    "control": f"{r['control_drop']['mean']:.2f}",
                    "excess": fmt_interval({**ex, "mean": ex["excess"]}),
                    "drop by Adam step": " / ".join(
                        f"{s}: {v:.2f}"
                        for s, v in zip(conv["steps"], conv["full_sampler_drop"], strict=True)
                        if v is not None
                    ),
                    "surrogate damage / final, by step": " / ".join(
                        f"{s}: {v:.2f}" for s, v in r["surrogate_curve"].items()
                    ),
                    "minus undefended": (
                        "-" if vs is None else fmt_interval(vs["drop_minus_undefended"])
                    ),
                    "verdict": "-" if vs is None else vs["verdict"],
                }
            )
    cfg = key["config"]
    cost = {d: m[d]["cost"] for d in ("diffusion", "tv_diffusion", "diffusion_mean") if d in m}
    total = sum(c["cpu_s_total"] for c in cost.values())
    per = ", ".join(f"{LABELS.get(d, d)} {c['cpu_s_per_pair_step']:.0f}" for d, c in cost.items())
    tuning = ""
    val_path = Path(results) / "metrics_adaptive_validation.json"
    if val_path.is_file():  # the step count's check on validation slices (tools/adaptive_run.py)
        v = read_result(results, val_path.name)
        vk = v["key"]
        parts = []
        for k, r in v["diffusion"]["eps"].items():
            c = r["convergence"]
            steps = " / ".join(
                f"{s_}: {d:.2f}"
                for s_, d in zip(c["steps"], c["full_sampler_drop"], strict=True)
                if d is not None
            )
            parts.append(
                f"eps {k}: full-sampler drop by Adam step {steps} dB (control "
                f"{r['control_drop']['mean']:.2f})"
            )
        tuning = (
            f"\n\nValidation check of the step count (undefended model, {vk['split']} slices "
            f"{vk['slice_ids']}, {vk['config']['steps']} Adam steps): " + "; ".join(parts) + "."
        )
    return (
        f"Sampler {key['sampler']['describe']} (evaluation); surrogate: {cfg['surrogate_steps']} "
        f"steps, {cfg['eot_samples']} noise draws, {cfg['steps']} Adam steps; {key['split']} "
        f"slices {key['slice_ids']}; TV-diffusion weight {key['tv_diffusion']['tv_weight']:g}, "
        f"mean of {key['diffusion_mean']['samples']} draws. PSNR drops in dB, mean [95 % t "
        "interval] over slices.\n\n"
        + format_table(rows)
        + f"\n\nAttack cost: {total / 60:.0f} CPU-min in all (1 thread); CPU-s per (pair, "
        f"Adam step): {per}. Rule: {m['rule']}" + tuning
    )


@section("paper_gpu")
def paper_gpu_table(results: Path) -> str:
    """The time-boxed paper-profile run on one GPU (``results/paper/paper_gpu.json``)."""
    m = read_result(results.parent / "paper", "paper_gpu.json")
    rows = []
    for name in ("resunetpp", "irim", "ddpm"):
        c = m["costs"][name]
        t = m.get("training", {}).get(name)
        rows.append(
            [
                LABELS[name if name != "ddpm" else "diffusion"],
                _count(c["params"]),
                f"{c['train_step_s'] * 1e3:.0f} ms",
                f"{c['train_hours_profile_est']:.1f} h ({c['train_steps_profile']} steps)",
                (
                    f"{c['sampler_s_per_slice_est']:.1f} s ({c['sampler_steps']} steps, est.)"
                    if name == "ddpm"
                    else f"{c['recon_s_per_slice'] * 1e3:.1f} ms"
                ),
                (
                    f"{t['steps_done']} steps, {t['wall_s']:.0f} s: {_f(t['best_val_psnr'])} dB / "
                    f"{_f(t['best_val_ssim'], 3)}"
                    if t
                    else "not trained"
                ),
            ]
        )
    header = [
        "model",
        "params",
        f"train step (batch {m['costs']['resunetpp']['batch']})",
        "full schedule",
        "reconstruction per slice",
        "trained here: validation PSNR / SSIM",
    ]
    return f"{m['device']}, torch {m['torch']}, {m['data']['image_size']} px\n\n" + _table(
        header, rows
    )


@section("sampler_levers")
def sampler_levers_table(results: Path) -> str:
    """Speed levers of the diffusion sampler (``python -m mripkg.bench --levers ...``):
    seconds per slice, speed-up against the first row, PSNR against the paper's 1000-step
    projection sampler; the profile's default marked; then the attack's step time in float32
    and bfloat16 when measured."""
    m = read_result(results, "bench_levers.json")
    lv = m["levers"]
    base = lv["rows"][0]["s_per_slice"]
    rows = [
        [
            f"**{r['lever']}** (default)" if r.get("default") else r["lever"],
            f"{r['s_per_slice']:.2f}",
            f"{base / r['s_per_slice']:.1f}x",
            _f(r["psnr"]),
            "-" if r.get("psnr_vs_1000") is None else f"{r['psnr_vs_1000']:+.2f}",
        ]
        for r in lv["rows"]
        if "error" not in r
    ]
    # runs before issue 12's end: shared; newer files record it (load average at the end)
    shared = lv.get("shared_cpu", "default" not in lv)
    # older files measured the levers on test slices; newer ones on validation slices, with
    # one final test row for the chosen setting
    split = {"val": "validation"}.get(lv.get("split", "test"), lv.get("split", "test"))
    head = (
        f"{m['profile']} profile, {len(lv.get('slices', [])) or 2} {split} slices"
        + (" (the last row: the chosen setting on test slices)" if "test_slices" in lv else "")
        + ", "
        f"{lv.get('threads', m['threads'])} thread(s) on "
        f"{'a shared' if shared else 'an otherwise idle'} CPU, {m['date']}; "
        f"paper's projection sampler at 1000 steps: {_f(lv['psnr_1000'])} dB"
    )
    out = (
        head
        + "\n\n"
        + _table(
            ["lever", "s / slice", "speed-up", "PSNR dB", "vs 1000 steps dB"],
            rows,
        )
    )
    ap = m.get("attack_precision")
    if ap and "rows" in ap:
        arows = [
            [
                r["model"],
                r["precision"],
                f"{r['ms_per_pair_step']:.1f}",
                f"{r['damage_vs_fp32']:.3f}",
            ]
            for r in ap["rows"]
        ]
        out += (
            f"\n\nAttack step ({ap['pairs']} (slice, eps) pairs per batch, eps "
            f"{', '.join(f'{e:g}' for e in ap['eps'])}, {ap['steps']} Adam steps; damage measured "
            "in float32)\n\n"
            + _table(["model", "precision", "ms per pair and step", "damage / float32's"], arows)
        )
    return out


#: (label, file, key) of the numbers the "what moved" table shows first
MOVED_HEADLINES: tuple[tuple[str, str, str], ...] = (
    ("clean PSNR, zero-filled", "metrics_clean.json", "zero_filled/psnr_mean"),
    ("clean PSNR, ResUNet++", "metrics_clean.json", "resunetpp/psnr_mean"),
    ("clean PSNR, i-RIM", "metrics_clean.json", "irim/psnr_mean"),
    ("clean PSNR, diffusion", "metrics_clean.json", "diffusion/psnr_mean"),
    ("clean SSIM, diffusion", "metrics_clean.json", "diffusion/ssim_mean"),
    (
        "white-box drop, ResUNet++, eps 0.04",
        "metrics_white_box.json",
        "resunetpp/0.04/psnr_drop_mean",
    ),
    (
        "white-box drop, ResUNet++, eps 0.08",
        "metrics_white_box.json",
        "resunetpp/0.08/psnr_drop_mean",
    ),
    ("white-box drop, i-RIM, eps 0.04", "metrics_white_box.json", "irim/0.04/psnr_drop_mean"),
    ("white-box drop, i-RIM, eps 0.08", "metrics_white_box.json", "irim/0.08/psnr_drop_mean"),
    (
        "transfer ResUNet++ -> i-RIM, eps 0.04",
        "metrics_transfer.json",
        "resunetpp/irim/0.04/psnr_drop",
    ),
    (
        "transfer i-RIM -> ResUNet++, eps 0.04",
        "metrics_transfer.json",
        "irim/resunetpp/0.04/psnr_drop",
    ),
    (
        "transfer ResUNet++ -> diffusion, eps 0.04",
        "metrics_transfer.json",
        "resunetpp/diffusion/0.04/psnr_drop",
    ),
    (
        "transfer i-RIM -> diffusion, eps 0.04",
        "metrics_transfer.json",
        "irim/diffusion/0.04/psnr_drop",
    ),
    (
        "transfer ResUNet++ -> diffusion, eps 0.08",
        "metrics_transfer.json",
        "resunetpp/diffusion/0.08/psnr_drop",
    ),
    (
        "transfer i-RIM -> diffusion, eps 0.08",
        "metrics_transfer.json",
        "irim/diffusion/0.08/psnr_drop",
    ),
    (
        "control -> diffusion, eps 0.04",
        "metrics_transfer.json",
        "resunetpp/diffusion/0.04/random_psnr_drop",
    ),
)


@section("moved")
def moved_table(results: Path) -> str:
    """What a change of defaults moved (``tools/moved_numbers.py`` -> ``moved_numbers.csv``):
    the headline numbers before and after, every claim's verdict, and per result file how many
    numbers moved by more than 0.01."""
    import csv

    path = Path(results) / "moved_numbers.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run tools/moved_numbers.py --before REV")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    by_key = {(r["file"], r["key"]): r for r in rows}

    def num(v: str) -> float | None:
        try:
            return float(v)
        except ValueError:
            return None

    head = []
    for label, file, key in MOVED_HEADLINES:
        r = by_key.get((file, key))
        if r is None:
            continue
        a, b = num(r["before"]), num(r["after"])
        change = f"{b - a:+.2f}" if a is not None and b is not None else "-"
        head.append([label, _f(a), _f(b), change])
    verdicts = []
    for (file, key), r in by_key.items():
        if file == "claims.json" and key.endswith("/verdict"):
            claim = by_key.get((file, key.rsplit("/", 1)[0] + "/claim"), {}).get("after", "?")
            verdicts.append([f"claim {claim}", r["before"] or "-", r["after"] or "-"])
    counts = []
    for name in sorted({r["file"] for r in rows}):
        mine = [r for r in rows if r["file"] == name]
        both = [(num(r["before"]), num(r["after"])) for r in mine]
        nums = [(a, b) for a, b in both if a is not None and b is not None]
        moved = sum(abs(b - a) > 0.01 for a, b in nums)
        new = sum(r["before"] == "" for r in mine)
        gone = sum(r["after"] == "" for r in mine)
        counts.append([f"`{name}`", str(len(nums)), str(moved), str(new), str(gone)])
    return (
        _table(["number", "before", "after", "change"], head)
        + "\n\n"
        + _table(["claim", "verdict before", "verdict after"], verdicts)
        + "\n\n"
        + _table(
            ["result file", "numbers in both", "moved by > 0.01", "new", "gone"],
            counts,
        )
    )


@section("authors_protocol")
def authors_protocol_table(results: Path) -> str:
    """The authors' attack protocol next to the default, white-box, on the same test slices
    (``metrics_authors_protocol.json``, :mod:`mripkg.experiments.authors_protocol`)."""
    d = read_result(results, "metrics_authors_protocol.json")

    def name(proto: str, st: dict[str, Any]) -> str:
        if proto == "authors":
            return "authors' (PAPER.md addendum)"
        return (
            f"ours: cold {st.get('steps')} steps, lr_rel {st.get('lr_rel', 1.0):g}, "
            f"{st.get('precision', 'fp32')}"
        )

    rows = []
    for m, per in d["models"].items():
        for e in d["eps"]:
            k = next(k for k in per["authors"]["eps"] if math.isclose(float(k), e))
            for proto in ("default", "authors"):
                v = per[proto]["eps"][k]
                rows.append(
                    [
                        LABELS.get(m, m),
                        k,
                        name(proto, per[proto].get("settings", {})),
                        _f(v["psnr_clean"]),
                        _f(v["psnr"]),
                        f"{_f(v['psnr_drop'])} ({_f(v['psnr_drop_random'])})",
                        f"{v['added_mse'] * 1e4:.2f} ({v['added_mse_random'] * 1e4:.2f})",
                        _f(v["amplification_over_control"], 1),
                        f"{v['steps_used_mean']:.0f}",
                        _minutes(per[proto].get("attack_cpu_s")),
                    ]
                )
    header = [
        "model",
        "eps",
        "protocol",
        "PSNR clean",
        "PSNR attacked",
        "dB drop (random)",
        "added MSE x1e4 (random)",
        "amplification over control",
        "Adam steps per pair",
        "attack CPU-min (all pairs)",
    ]
    note = (
        f"Test slices {d['test_slices']} ({d['slices_note']}). Added MSE: MSE(perturbed) - "
        "MSE(clean) against the ground truth, images in [0, 1]; amplification: ||f(y + M delta) "
        "- f(y)|| of the attack over that of the equal-norm random control; random control in "
        "brackets."
    )
    return _table(header, rows) + "\n\n" + note


def _minutes(seconds: float | None) -> str:
    """CPU seconds as minutes with one decimal; "-" when not recorded (None or NaN)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"{seconds / 60:.1f}"


@section("attack_speed")
def attack_speed_table(results: Path) -> str:
    """Attack variants on validation slices (``bench_attack.json``,
    :mod:`mripkg.app.attack_bench`)."""
    d = read_result(results, "bench_attack.json")
    rows = []
    for r in d["rows"]:
        if r["variant"] == "long reference":
            continue
        long = [v for per in r.get("damage_vs_long_reference", {}).values() for v in per.values()]
        rows.append(
            [
                r["variant"],
                f"{r['settings'].get('lr_rel', 1.0):g}",
                f"{r['ms_per_pair_step']:.0f}",
                f"{r['mean_steps_used']:.0f}",
                f"{r.get('min_damage_vs_reference', 1.0):.3f}",
                f"{min(long):.3f}" if long else "-",
                f"{r['notebook03_attack_cpu_s_est'] / 60:.1f}",
            ]
        )
    header = [
        "variant",
        "lr_rel",
        "ms per (pair, step)",
        "mean steps per pair",
        "damage vs cold 100 steps (worst model, eps)",
        f"damage vs cold {(d.get('long_reference') or {}).get('steps', '-')} steps",
        "notebook 03 attack CPU-min (est.)",
    ]
    note = (
        f"Validation slices {d['val_slices']}, eps {d['eps']}, {d['threads']} thread(s); damage "
        "summed over slices per (model, eps), float32; rule: >= 0.99 at every (model, eps)."
    )
    return _table(header, rows) + "\n\n" + note


@section("tolerances")
def tolerances_table(results: Path) -> str:
    """docs/reproducibility.md: the tolerances of `make verify` and how they were measured."""
    from .verify import tolerances_markdown

    return tolerances_markdown(read_result(results, "tolerances.json"))


@section("run_spread")
def run_spread_table(results: Path) -> str:
    """docs/reproducibility.md: each claim statistic's slice interval beside the measured
    machine-to-machine spread (:mod:`mripkg.report.run_spread`)."""
    from .run_spread import claim_spread, spread_markdown, summary_line
    from .verify import load_tolerances

    rows = claim_spread(
        read_result(results, "claims.json"), load_tolerances(Path(results) / "tolerances.json")
    )
    return f"{spread_markdown(rows)}\n\n{summary_line(rows)}."


def render(text: str, results: Path) -> str:
    """``text`` with every marked block regenerated from ``results``.  ``ValueError`` for a
    marker without its closing marker or with a name not in :data:`SECTIONS`."""
    opened = OPEN_RE.findall(text)
    closed = [mm.group("name") for mm in MARKER_RE.finditer(text)]
    if sorted(opened) != sorted(closed):
        unclosed = sorted(set(opened) - set(closed))
        raise ValueError(f"results markers without '<!-- /results:NAME -->': {unclosed}")
    unknown = sorted(set(opened) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown results sections {unknown}; known: {sorted(SECTIONS)}")

    def fill(mm: re.Match[str]) -> str:
        body = SECTIONS[mm.group("name")](results).strip("\n")
        return f"{mm.group(1)}{body}\n{mm.group(4)}"

    return MARKER_RE.sub(fill, text)


def shape_problems(old_text: str, new_text: str) -> list[str]:
    """:func:`check_block` for every marked block of the README before and after rendering."""
    old = {mm.group("name"): mm.group("body") for mm in MARKER_RE.finditer(old_text)}
    out = []
    for mm in MARKER_RE.finditer(new_text):
        out += check_block(mm.group("name"), old.get(mm.group("name"), ""), mm.group("body"))
    return out


def markdown_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files with generated blocks: README.md and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mripkg.report.readme", description=__doc__.split("\n")[0]
    )
    ap.add_argument("files", nargs="*", type=Path, help="default: README.md and docs/*.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    ap.add_argument("--readme", type=Path, default=None, help="only this file (old spelling)")
    ap.add_argument("--results", type=Path, default=results_dir(PROFILE))
    ap.add_argument(
        "--allow-shrink",
        action="store_true",
        help="write even when a generated table loses a column or a row",
    )
    args = ap.parse_args(argv)
    files = list(args.files) + ([args.readme] if args.readme else [])
    files = files or markdown_files()
    stale = []
    n_blocks = 0
    for path in files:
        try:
            old = path.read_text(encoding="utf-8")
            new = render(old, args.results)
        except (FileNotFoundError, ValueError, KeyError) as err:
            print(f"error: {path.name}: {err}", file=sys.stderr)
            return 2
        n_blocks += len(OPEN_RE.findall(new))
        problems = shape_problems(old, new)
        problems += [p for p in shape_problems(new, new) if "required" in p]
        if problems and not (args.allow_shrink and not args.check):
            print("\n".join(f"{path.name}: {p}" for p in problems), file=sys.stderr)
            print("a generated table lost a column or a row (see above)", file=sys.stderr)
            return 1
        if new == old:
            continue
        if args.check:
            diff = difflib.unified_diff(
                old.splitlines(), new.splitlines(), str(path), "generated", lineterm="", n=1
            )
            print("\n".join(diff))
            stale.append(path)
        else:
            atomic_write_text(path, new)
    if stale:
        names = ", ".join(p.name for p in stale)
        print(
            f"{names} out of date with {args.results}: run python -m mripkg.report.readme",
            file=sys.stderr,
        )
        return 1
    verb = "up to date with" if args.check else "generated from"
    print(f"{len(files)} files, {n_blocks} blocks {verb} {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
