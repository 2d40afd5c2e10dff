"""Write requirements-lock.txt: exact versions of everything mripkg[test] needs, as installed.

    .venv/bin/python tools/lock.py          # (make lock) after changing pyproject.toml

Walks the dependency tree of ``mripkg[test]`` through the installed distributions' metadata
(so unrelated packages in the environment are left out), pins each at its installed version,
and leaves out mripkg itself and torch (installed first, from $(TORCH_INDEX) when given, and
pinned in pyproject.toml).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"mripkg", "torch"}


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    """{distribution name: installed version} of ``root[extras]`` and all it requires."""
    seen: dict[str, str] = {}
    done: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while todo:
        name, ex = todo.pop()
        if (canon(name), ex) in done:
            continue
        done.add((canon(name), ex))
        dist = metadata.distribution(name)
        seen[canon(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in ex] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in envs):
                continue
            todo.append((req.name, tuple(sorted(req.extras))))
    return seen


def main() -> int:
    pins = closure("mripkg", ("test",))
    lines = [
        "# Exact versions of mripkg[test]'s dependency tree (python tools/lock.py; make lock).",
        f"# Python {sys.version.split()[0]}; torch is installed first (pinned in pyproject.toml).",
        *(f"{k}=={v}" for k, v in sorted(pins.items()) if k not in SKIP),
    ]
    out = ROOT / "requirements-lock.txt"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"{out.name}: {len(lines) - 2} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
