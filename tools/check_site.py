"""Check the built site in headless Chromium: every page loads, every image is present, no
error output.  Screenshots of a few pages go to build/site-check/<profile>/.

    python tools/check_site.py --profile quick [--chromium /usr/bin/chromium-headless-shell]

Needs Playwright (``pip install playwright``; not a dependency of mripkg) and a Chromium
binary (e.g. Debian's ``chromium-headless-shell``); Playwright's own browser download is not
needed.  The pages are served from a local HTTP server on 127.0.0.1, as GitHub Pages would.
Checks per page: the HTTP status, JavaScript errors and console errors, requests that failed,
every ``<img>`` decoded with a non-zero size, and no Python traceback or error output rendered
from a notebook.  Exit status 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ERROR_MARKERS = re.compile(r"Traceback \(most recent call last\)|\b\w+Error: |\bException: ")
SHOTS = (
    "index.html",
    "scorecard.html",
    "claims/claim-1.html",
    "notebooks/02_training.html",
    "notebooks/06_explorer.html",
    "docs/results.html",
)


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))

    class Quiet(handler.func):  # type: ignore[misc,name-defined]
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def check(site: Path, chromium: str, shots_dir: Path, width: int, height: int) -> list[str]:
    from playwright.sync_api import sync_playwright

    pages = sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not p.name.startswith(("genindex", "search")) and "_static" not in p.parts
    )
    problems: list[str] = []
    server, base = serve(site)
    shots_dir.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            for rel in pages:
                page = browser.new_page(viewport={"width": width, "height": height})
                errors: list[str] = []
                page.on("pageerror", lambda e, errors=errors: errors.append(f"js: {e}"))
                page.on(
                    "console",
                    lambda m, errors=errors: (
                        errors.append(f"console: {m.text}") if m.type == "error" else None
                    ),
                )
                page.on(
                    "requestfailed",
                    lambda r, errors=errors: errors.append(f"request failed: {r.url}"),
                )
                resp = page.goto(base + rel, wait_until="load")
                if resp is None or resp.status != 200:
                    problems.append(f"{rel}: HTTP {resp.status if resp else 'no response'}")
                imgs = page.eval_on_selector_all(
                    "img",
                    "els => els.map(e => [e.getAttribute('src') || '', e.complete, "
                    "e.naturalWidth])",
                )
                for src, complete, w in imgs:
                    if not complete or not w:
                        problems.append(f"{rel}: image not shown: {src[:80]}")
                text = page.inner_text("article") if page.query_selector("article") else ""
                m = ERROR_MARKERS.search(text)
                if m:
                    problems.append(f"{rel}: error output: {m.group(0)!r}")
                problems += [f"{rel}: {e}" for e in errors]
                if rel in SHOTS:
                    out = shots_dir / (rel.replace("/", "_").replace(".html", ".png"))
                    page.screenshot(path=str(out), full_page=True)
                print(f"ok  {rel}: {len(imgs)} images" if not errors else f"bad {rel}")
                page.close()
            browser.close()
    finally:
        server.shutdown()
    print(f"{len(pages)} pages checked; screenshots in {shots_dir}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--site", type=Path, default=None, help="default build/site/<profile>")
    ap.add_argument("--chromium", default="/usr/bin/chromium-headless-shell")
    ap.add_argument("--width", type=int, default=1366)
    ap.add_argument("--height", type=int, default=768)
    args = ap.parse_args(argv)
    site = args.site or ROOT / "build" / "site" / args.profile
    if not (site / "index.html").is_file():
        print(f"error: {site}/index.html not found: run make site PROFILE={args.profile}")
        return 2
    problems = check(
        site, args.chromium, ROOT / "build" / "site-check" / args.profile, args.width, args.height
    )
    for p in problems:
        print(f"problem: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
