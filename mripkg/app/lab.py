"""Put the notebooks into a folder of yours and open JupyterLab there.

    python -m mripkg.app.lab ~/mri              # copy notebooks 01-07 to ~/mri, open Lab there
    python -m mripkg.app.lab ~/mri --only 06    # just the explorer, opened at once
    python -m mripkg.app.lab ~/mri --port 8890 -- --no-browser   # after --: Lab's own options
    python -m mripkg.app.lab ~/mri --copy-only  # copy, do not start Lab

Works from a checkout and from the installed wheel alike (the notebooks are package data).
Existing files in the folder are kept (say ``--force`` to overwrite them).  The Lab server runs
with ``$MRIPKG_HOME`` set to the folder, so an installed package writes its outputs
(``runs/``, ``build/``, figures) there, never into site-packages.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..paths import HOME_ENV, NOTEBOOKS_DIR

NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_\-]+\.ipynb$")


def available_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, Path]:
    """{``"01"``: path, ...} of the ``NN_*.ipynb`` notebooks in ``notebooks_dir``."""
    out = {}
    for p in sorted(Path(notebooks_dir).glob("*.ipynb")):
        m = NOTEBOOK_RE.match(p.name)
        if m:
            out[m.group(1)] = p
    return out


def select(only: str | None, available: dict[str, Path]) -> list[Path]:
    """The notebooks ``only`` names (``"06"``, ``"01,06"``; ``None``: all).  ``ValueError``
    naming an unknown number and the valid ones."""
    if not only:
        return list(available.values())
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in available]
    if unknown or not wanted:
        raise ValueError(
            f"--only {only!r}: no notebook {', '.join(unknown) or '(empty)'}; "
            f"valid: {', '.join(available)}"
        )
    return [available[w] for w in wanted]


def copy_notebooks(
    dest: Path, notebooks: Sequence[Path], force: bool = False
) -> tuple[list[Path], list[Path]]:
    """Copy ``notebooks`` into ``dest`` (created).  Returns (copied, kept): a file that is
    already there is kept unless ``force``.  ``NotADirectoryError`` when ``dest`` is a file."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"{dest} exists and is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for nb in notebooks:
        target = dest / nb.name
        if target.exists() and not force:
            kept.append(target)
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(nb, tmp)
        tmp.replace(target)
        copied.append(target)
    return copied, kept


def lab_command(
    dest: Path, port: int | None, extra: Sequence[str], open_file: str | None
) -> list[str]:
    """The ``jupyter lab`` command line for ``dest``."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={dest}"]
    if port:
        cmd.append(f"--port={port}")
    cmd += list(extra)
    if open_file:
        cmd.append(open_file)
    return cmd


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(
        prog="python -m mripkg.app.lab", description=__doc__.split("\n")[0]
    )
    ap.add_argument("dir", type=Path, help="folder to put the notebooks in (created)")
    ap.add_argument("--only", default=None, help="notebook numbers, e.g. 06 or 01,06")
    ap.add_argument("--port", type=int, default=None, help="Lab's port (default: Lab's own)")
    ap.add_argument("--force", action="store_true", help="overwrite notebooks already there")
    ap.add_argument("--copy-only", action="store_true", help="copy, do not start JupyterLab")
    args = ap.parse_args(argv)
    dest = args.dir.expanduser().resolve()
    try:
        chosen = select(args.only, available_notebooks())
        copied, kept = copy_notebooks(dest, chosen, force=args.force)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(copied)} notebooks copied to {dest}")
    if kept:
        print(f"kept your copies of {', '.join(p.name for p in kept)} (--force overwrites)")
    if args.copy_only:
        return 0
    open_file = chosen[0].name if len(chosen) == 1 else None
    cmd = lab_command(dest, args.port, extra, open_file)
    env = dict(os.environ)
    env.setdefault(HOME_ENV, str(dest))
    print(
        f"starting JupyterLab in {dest} (outputs under {env[HOME_ENV]} when installed); "
        "open the http://localhost:...?token=... address it prints; Ctrl-C stops it"
    )
    try:
        return subprocess.run(cmd, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
