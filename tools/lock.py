"""Write requirements-lock.txt: exact versions of everything mripkg[test,docs] needs, as
installed.

    .venv/bin/python tools/lock.py          # (make lock) after changing pyproject.toml

Reads mripkg's own requirements (dependencies and the extras in :data:`EXTRAS`) from
pyproject.toml, so that an older installed copy of mripkg's metadata cannot hide a new extra,
then walks their dependency tree through the installed distributions' metadata (so unrelated
packages in the environment are left out), pins each at its installed version, and leaves out
mripkg itself and torch (installed first, from $(TORCH_INDEX) when given, and pinned in
pyproject.toml).  A requirement that is not installed is an error naming it.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"mripkg", "torch"}
EXTRAS = ("test", "docs")


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(pyproject: Path, extras: tuple[str, ...]) -> list[Requirement]:
    """The dependencies and the ``extras`` of the project in ``pyproject``."""
    import tomllib

    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    texts = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"error: pyproject.toml has no extra {extra!r}")
        texts += optional[extra]
    return [Requirement(t) for t in texts]


def closure(roots: list[Requirement]) -> dict[str, str]:
    """{distribution name: installed version} of ``roots`` and all they require."""
    seen: dict[str, str] = {}
    done: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(r.name, tuple(sorted(r.extras))) for r in roots]
    while todo:
        name, ex = todo.pop()
        if (canon(name), ex) in done:
            continue
        done.add((canon(name), ex))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"error: {name} is required but not installed") from None
        seen[canon(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in ex] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in envs):
                continue
            todo.append((req.name, tuple(sorted(req.extras))))
    return seen


def main() -> int:
    pins = closure(project_requirements(ROOT / "pyproject.toml", EXTRAS))
    lines = [
        f"# Exact versions of mripkg[{','.join(EXTRAS)}]'s dependency tree (python tools/lock.py;"
        " make lock).",
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
