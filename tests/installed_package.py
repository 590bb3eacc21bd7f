"""Whether the installed `simplane` package is this checkout's, file for file.

The strict editable install (docs/development.md) links each source file into `build/__editable__*/simplane/`
once, at install time: a module added or renamed since is missing from the installed package until the install
is run again, and the tests would then fail far from the cause. `stale_files` lists the modules (every .py under
the folders `[tool.setuptools] package-dir` maps) that the installed package lacks or holds another file for.
The tests refuse to start on such a tree (conftest.py); CI runs `python tests/installed_package.py` before them.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stale_files(root: Path, installed: Path) -> list[str]:
    """Modules under `root` (relative paths) that the installed package at `installed` lacks or holds another
    file for."""
    folders: dict[str, str] = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    stale = []
    for package, folder in folders.items():
        target = installed.joinpath(*package.split(".")[1:])
        for path in (root / folder).rglob("*.py"):
            counterpart = target / path.relative_to(root / folder)
            if "__pycache__" not in path.parts and not (counterpart.exists() and counterpart.samefile(path)):
                stale.append(str(path.relative_to(root)))
    return sorted(stale)


def problem() -> str | None:
    """One line saying what to run when the installed package is not this checkout's source tree, else None."""
    spec = importlib.util.find_spec("simplane")
    reinstall = f"{sys.executable} -m pip install --no-deps -e {ROOT} --config-settings editable_mode=strict"
    if spec is None or spec.origin is None or spec.submodule_search_locations is None:
        return f"simplane is not installed: run {reinstall}"
    stale = stale_files(ROOT, Path(spec.origin).parent)
    if not stale:
        return None
    shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
    return (
        f"the installed simplane package lacks {shown} (added since the install, or not a strict editable "
        f"install of this checkout): run {reinstall}"
    )


if __name__ == "__main__":
    message = problem()
    print(message or "the installed simplane package is this checkout's source tree", file=sys.stderr)
    sys.exit(1 if message else 0)
