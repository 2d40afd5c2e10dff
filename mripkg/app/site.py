"""Build the companion's static web site from executed notebooks and the result files.

    python -m mripkg.app.site --profile quick        # (make site) -> build/site/quick/index.html
    python -m mripkg.app.site --profile smoke        # from a smoke run, e.g. to check the build

Nothing runs: the pages are made from what a run left behind.

* ``build/<profile>/NN_*.ipynb`` (executed by ``python -m mripkg.reproduce``): one page each,
  with every figure and table of its outputs (rendered by myst-nb, never re-executed);
* ``results/<profile>/claims.json``: the scorecard page and one page per paper claim, with the
  claim's rule, its comparisons and the figures and notebooks that test it (from
  :data:`mripkg.figures.FIGURE_CLAIMS`);
* ``docs/*.md``: the long sections of the README (results, benchmarks, deviations, profiles,
  package, ...), their generated tables filled by ``python -m mripkg.report.readme``;
* the figures of the profile (``figures/`` for quick, ``runs/<profile>/figures/`` otherwise).

The source tree is assembled in ``build/site-src/<profile>/`` and rendered by Sphinx (myst-nb,
the ``docs`` extra) into ``build/site/<profile>/``; warnings fail the build.  A missing
``build/<profile>/`` is a one-line error that says which command makes it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..paths import BUILD_DIR, REPO_ROOT, RUNS_DIR, source_root

DOCS_DIR: Path = REPO_ROOT / "docs"
NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_\-]+\.ipynb$")
CLAIM_RE = re.compile(r"^\s*Claims?\s+((?:\d+)(?:\s*(?:,|and)\s*\d+)*)")


class SiteError(RuntimeError):
    """The site cannot be built; the message says why and what to run."""


def executed_notebooks(profile: str, build: Path = BUILD_DIR) -> list[Path]:
    """``build/<profile>/NN_*.ipynb`` in order; :class:`SiteError` naming the command that
    makes them when there are none."""
    d = Path(build) / profile
    found = sorted(p for p in d.glob("*.ipynb") if NOTEBOOK_RE.match(p.name)) if d.is_dir() else []
    if not found:
        raise SiteError(
            f"{d} has no executed notebooks: run `make figures PROFILE={profile}` "
            f"(python -m mripkg.reproduce --profile {profile}) first"
        )
    return found


def missing_notebooks(found: Sequence[Path], notebooks_dir: Path | None = None) -> list[str]:
    """Names of ``notebooks/NN_*.ipynb`` with no executed copy among ``found``."""
    nb_dir = notebooks_dir or source_root() / "notebooks"
    have = {p.name for p in found}
    return sorted(
        p.name for p in nb_dir.glob("*.ipynb") if NOTEBOOK_RE.match(p.name) and p.name not in have
    )


def claims_of_figure(text: str) -> list[str]:
    """The claim numbers a :data:`~mripkg.figures.FIGURE_CLAIMS` text starts with:
    ``"Claims 2 and 5: ..."`` -> ``["2", "5"]``; ``"Setting: ..."`` -> ``[]``."""
    m = CLAIM_RE.match(text)
    return re.findall(r"\d+", m.group(1)) if m else []


def figures_by_claim(figure_claims: Mapping[str, tuple[str, str]]) -> dict[str, list[str]]:
    """{claim number: [figure names that illustrate it]} from ``FIGURE_CLAIMS``."""
    out: dict[str, list[str]] = {}
    for name, (_nb, text) in figure_claims.items():
        for c in claims_of_figure(text):
            out.setdefault(c, []).append(name)
    return out


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e-2 and x != 0 else f"{x:.2f}"
    return str(x)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])


def claim_page(
    claim: Mapping[str, Any],
    figures: Sequence[str],
    figure_claims: Mapping[str, tuple[str, str]],
    figure_files: set[str],
    profile: str,
    evidence: bool,
    notebooks: set[str] | None = None,
) -> str:
    """Markdown of one claim's page: statement, rule, verdict, every comparison with its
    interval, and the figures (with the notebooks that made them) that test it."""
    n = claim["claim"]
    lines = [f"# Claim {n}: {claim.get('text', '')}", ""]
    lines += [f"**Verdict ({profile} profile): {claim.get('verdict', '?')}**", ""]
    if not evidence:
        lines += [
            f"Profile `{profile}`: tiny models trained for seconds; these numbers test the code, "
            "they are not evidence about the paper.",
            "",
        ]
    known = {"claim", "text", "verdict", "rows", "slices", "seeds"}
    for key in ("rule", "statistic", "threshold", "seed_to_seed", "rule_verdict"):
        if key in claim:
            known.add(key)
            lines.append(f"- **{key.replace('_', ' ')}**: {claim[key]}")
    for key, value in claim.items():  # fields a newer claims.json adds show up too
        if key not in known and isinstance(value, str | int | float):
            lines.append(f"- **{key.replace('_', ' ')}**: {value}")
    slices = claim.get("slices") or []
    seeds = claim.get("seeds") or []
    lines.append(
        f"- **rests on**: {len(slices)} test slices ({', '.join(map(str, slices)) or '-'}), "
        f"sampler seeds {', '.join(map(str, seeds)) or '-'}"
    )
    rows = claim.get("rows") or []
    if rows:
        lines += ["", "## Comparisons", ""]
        table = [
            [
                str(r.get("label", "")),
                _fmt(r.get("value", "")),
                f"[{_fmt(r.get('low', ''))}, {_fmt(r.get('high', ''))}]",
                "yes" if r.get("holds") else "no",
                str(r.get("n", "")),
            ]
            for r in rows
        ]
        lines.append(_md_table(["comparison", "value", "95 % interval", "holds", "n"], table))
    lines += ["", "## Tested by", ""]
    if not figures:
        lines.append("No figure names this claim; see the [scorecard](../scorecard.md).")
    for fig in figures:
        nb, text = figure_claims[fig]
        nb_stem = Path(nb.split(" ")[0]).stem
        lines += [f"### `{fig}`", "", text, ""]
        if f"{fig}.png" in figure_files:
            lines += [f"![{fig}](../run-figures/{fig}.png)", ""]
        else:
            lines += [f"(`{fig}.png` was not made in this run.)", ""]
        if notebooks is None or f"{nb_stem}.ipynb" in notebooks:
            lines += [f"Made by notebook [{nb_stem}](../notebooks/{nb_stem}.ipynb).", ""]
        else:
            lines += [f"Made by notebook `{nb_stem}` (not executed in this build).", ""]
    return "\n".join(lines).rstrip() + "\n"


def scorecard_page(claims: Mapping[str, Any], profile: str) -> str:
    """The scorecard page: the generated table, then a link per claim."""
    from ..report.scorecard import card_markdown

    lines = [
        "# Scorecard: the paper's claims",
        "",
        f"Profile `{profile}`; from `results/{profile}/claims.json` (notebook 05).",
        "",
        card_markdown(claims),
        "",
        "## One page per claim",
        "",
    ]
    for c in claims["claims"]:
        lines.append(f"- [Claim {c['claim']}: {c.get('text', '')}](claims/claim-{c['claim']}.md)")
    return "\n".join(lines) + "\n"


def index_page(profile: str, notebooks: Sequence[str], pages: Sequence[str], claims: Any) -> str:
    """The landing page: what this is, and the table of contents."""
    doc_pages = [p for p in pages if p != "index"]
    lines = [
        "# mripkg: instabilities of diffusion models in MRI reconstruction",
        "",
        "A reproducible companion to Han et al., *On Instabilities of Unsupervised Denoising "
        "Diffusion Models in Magnetic Resonance Imaging Reconstruction* (MICCAI 2024, "
        "doi:10.1007/978-3-031-72104-5_49, arXiv:2406.16983). These pages are rendered from the "
        f"notebooks as executed under the `{profile}` profile and from `results/{profile}/`; "
        "nothing on them runs.",
        "",
        "```{toctree}",
        ":caption: Findings",
        ":maxdepth: 1",
        "",
        "scorecard",
        *(f"claims/claim-{c['claim']}" for c in claims["claims"]),
        "```",
        "",
        "```{toctree}",
        ":caption: Notebooks (executed)",
        ":maxdepth: 1",
        "",
        *(f"notebooks/{Path(n).stem}" for n in notebooks),
        "```",
    ]
    if doc_pages:
        lines += [
            "",
            "```{toctree}",
            ":caption: Details",
            ":maxdepth: 1",
            "",
            *(f"docs/{p}" for p in doc_pages),
            "```",
        ]
    return "\n".join(lines) + "\n"


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
STATIC_NOTE = (
    "*A static snapshot of an interactive widget, as the run left it; open the notebook in "
    "JupyterLab (`make lab`, `python -m mripkg.app.lab DIR`) or on Binder to use it.*"
)


def _reachable(state: Mapping[str, Any], model_id: str) -> list[str]:
    """Model ids reachable from ``model_id`` through ``IPY_MODEL_`` references, depth first
    in the order the children are laid out."""
    seen: list[str] = []
    todo = [model_id]
    while todo:
        mid = todo.pop(0)
        if mid in seen or mid not in state:
            continue
        seen.append(mid)
        refs = []
        for key, v in state[mid].get("state", {}).items():
            if key in ("layout", "style"):
                continue
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, str) and item.startswith("IPY_MODEL_"):
                    refs.append(item[len("IPY_MODEL_") :])
        todo[:0] = refs
    return seen


def _control_text(model: Mapping[str, Any]) -> str | None:
    """``"description = value"`` of a slider, dropdown or toggle, else ``None``."""
    s = model.get("state", {})
    labels = s.get("_options_labels")
    if labels is not None and s.get("index") is not None:
        value: Any = labels[s["index"]] if 0 <= s["index"] < len(labels) else s["index"]
    elif "value" in s and model.get("model_name", "").endswith(
        ("SliderModel", "CheckboxModel", "ToggleButtonModel", "TextModel")
    ):
        value = s["value"]
    else:
        return None
    return f"{s.get('description') or '?'} = {value}"


def static_widgets(nb: dict[str, Any]) -> int:
    """Replace each widget view in an executed notebook (JSON) by what a reader without a
    kernel can see: a progress bar by its text, a widget layout (the explorer, the slice
    scroller) by its saved images and HTML with the controls' settings and a note.  Drops the
    notebook's widget state (which would need JavaScript from a CDN).  Returns how many views
    were replaced."""
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    n = 0
    for cell in nb.get("cells", []):
        new_outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                new_outputs.append(out)
                continue
            n += 1
            plain = data.get("text/plain", "")
            plain = "".join(plain) if isinstance(plain, list) else plain
            model_id = data[WIDGET_VIEW].get("model_id", "")
            models = [state[m] for m in _reachable(state, model_id)]
            if not any(m.get("model_name") in ("ImageModel", "OutputModel") for m in models):
                if plain.strip():  # a progress bar: its final text
                    new_outputs.append({"output_type": "stream", "name": "stdout", "text": plain})
                continue
            new_outputs.append(_display({"text/markdown": STATIC_NOTE}))
            controls = [c for c in (_control_text(m) for m in models) if c]
            if controls:
                new_outputs.append(
                    _display(
                        {"text/markdown": "Settings: " + "; ".join(f"`{c}`" for c in controls)}
                    )
                )
            for m in models:
                name = m.get("model_name")
                if name == "ImageModel":
                    for b in m.get("buffers", []):
                        if b.get("path") == ["value"] and b.get("encoding") == "base64":
                            fmt = m.get("state", {}).get("format", "png")
                            new_outputs.append(_display({f"image/{fmt}": b["data"]}))
                elif name == "HTMLModel" and m.get("state", {}).get("value", "").strip():
                    new_outputs.append(_display({"text/html": m["state"]["value"]}))
                elif name == "OutputModel":
                    new_outputs.extend(m.get("state", {}).get("outputs", []))
        if "outputs" in cell:
            cell["outputs"] = new_outputs
    nb.get("metadata", {}).pop("widgets", None)
    return n


def _display(data: dict[str, Any]) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _copy_tree_files(src: Path, dst: Path, pattern: str) -> list[str]:
    dst.mkdir(parents=True, exist_ok=True)
    names = []
    if src.is_dir():
        for p in sorted(src.glob(pattern)):
            if p.is_file():
                shutil.copy2(p, dst / p.name)
                names.append(p.name)
    return names


def assemble(
    profile: str,
    src: Path,
    build: Path = BUILD_DIR,
    results: Path | None = None,
    docs: Path = DOCS_DIR,
    run_figures: Path | None = None,
    repo_figures: Path | None = None,
) -> dict[str, Any]:
    """Write the Sphinx source tree for ``profile`` into ``src`` (emptied first).  Returns a
    summary: notebooks, claims, doc pages, missing notebooks."""
    from ..report.figures import FIGURE_CLAIMS

    notebooks = executed_notebooks(profile, build)
    results = Path(results) if results is not None else REPO_ROOT / "results" / profile
    claims_file = results / "claims.json"
    if not claims_file.is_file():
        raise SiteError(
            f"{claims_file} not found: run notebook 05 (python -m mripkg.reproduce --profile "
            f"{profile}), which writes the scorecard there"
        )
    claims = json.loads(claims_file.read_text(encoding="utf-8"))
    if run_figures is None:
        run_figures = (
            REPO_ROOT / "figures" if profile == "quick" else RUNS_DIR / profile / "figures"
        )
    repo_figures = repo_figures or REPO_ROOT / "figures"

    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    (src / "notebooks").mkdir()
    for nb in notebooks:
        doc = json.loads(nb.read_text(encoding="utf-8"))
        static_widgets(doc)
        (src / "notebooks" / nb.name).write_text(json.dumps(doc), encoding="utf-8")
    figs = set(_copy_tree_files(run_figures, src / "run-figures", "*.png"))
    _copy_tree_files(repo_figures, src / "figures", "*.png")
    pages = [p.stem for p in sorted(docs.glob("*.md"))] if docs.is_dir() else []
    _copy_tree_files(docs, src / "docs", "*.md")

    by_claim = figures_by_claim(FIGURE_CLAIMS)
    evidence = bool(claims.get("evidence", True))
    (src / "claims").mkdir()
    for c in claims["claims"]:
        text = claim_page(
            c,
            by_claim.get(str(c["claim"]), []),
            FIGURE_CLAIMS,
            figs,
            profile,
            evidence,
            {n.name for n in notebooks},
        )
        (src / "claims" / f"claim-{c['claim']}.md").write_text(text, encoding="utf-8")
    (src / "scorecard.md").write_text(scorecard_page(claims, profile), encoding="utf-8")
    (src / "index.md").write_text(
        index_page(profile, [n.name for n in notebooks], pages, claims), encoding="utf-8"
    )
    return {
        "notebooks": [n.name for n in notebooks],
        "missing": missing_notebooks(notebooks),
        "claims": [str(c["claim"]) for c in claims["claims"]],
        "pages": pages,
    }


def build_html(src: Path, out: Path, conf_dir: Path = DOCS_DIR, quiet: bool = True) -> int:
    """Render ``src`` with Sphinx (config ``docs/conf.py``) into ``out``; warnings are errors.
    Returns Sphinx's exit status."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError as err:  # the docs extra is not installed
        raise SiteError(
            "Sphinx is not installed: pip install -e '.[docs]' (make site installs it)"
        ) from err
    args = ["-b", "html", "-c", str(conf_dir), "-W", "--keep-going", "-E"]
    args += ["-q"] if quiet else []
    args += ["-d", str(out.parent / f".doctrees-{out.name}"), str(src), str(out)]
    return build_main(args)


def main(argv: list[str] | None = None) -> int:
    from ..profiles import PROFILES

    ap = argparse.ArgumentParser(
        prog="python -m mripkg.app.site", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--profile", default="quick", help=f"one of {', '.join(PROFILES)}")
    ap.add_argument("--out", type=Path, default=None, help="default build/site/<profile>")
    args = ap.parse_args(argv)
    if args.profile not in PROFILES:
        print(
            f"error: unknown profile {args.profile!r}; valid: {', '.join(PROFILES)}",
            file=sys.stderr,
        )
        return 2
    out = args.out or BUILD_DIR / "site" / args.profile
    src = BUILD_DIR / "site-src" / args.profile
    try:
        info = assemble(args.profile, src)
        if info["missing"]:
            print(
                f"warning: no executed copy of {', '.join(info['missing'])} in "
                f"build/{args.profile}/: those pages are left out",
                file=sys.stderr,
            )
        rc = build_html(src, out)
    except SiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rc != 0:
        print(f"error: Sphinx failed (exit {rc}); see the messages above", file=sys.stderr)
        return 1
    print(
        f"site: {out / 'index.html'} ({len(info['notebooks'])} notebooks, "
        f"{len(info['claims'])} claims, {len(info['pages'])} pages)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
