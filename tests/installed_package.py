"""Whether the installed `simplane` package is this checkout's, file for file.

The strict editable install (docs/development.md) links each source file into `build/__editable__*/simplane/`
once, at install time: a module added or renamed since is missing from the installed package until the install
is run again, and the tests would then fail far from the cause. `stale_files` lists what an install would link
(every .py under the folders `[tool.setuptools] package-dir` maps, and the package data) that the installed
package lacks or that is not the same file there. The tests refuse to start on such a tree (conftest.py); CI
runs `python tests/installed_package.py` before them.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stale_files(root: Path, installed: Path) -> list[str]:
    """Source files under `root` (relative paths) with no counterpart in the installed package at `installed`."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders: dict[str, str] = setuptools["package-dir"]

    def installed_folder(package: str) -> Path:
        return installed.joinpath(*package.split(".")[1:])

    def source_folder(package: str) -> Path:
        mapped = max((name for name in folders if package == name or package.startswith(name + ".")), key=len)
        return root / folders[mapped] / Path(*package.split(".")[len(mapped.split(".")) :])

    pairs = [
        (path, installed_folder(package) / path.relative_to(root / folder))
        for package, folder in folders.items()
        for path in (root / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    ]
    for package, patterns in setuptools.get("package-data", {}).items():
        source = source_folder(package)
        pairs += [
            (path, installed_folder(package) / path.relative_to(source))
            for pattern in patterns
            for path in source.glob(pattern)
            if path.is_file()
        ]
    return sorted(
        str(path.relative_to(root))
        for path, counterpart in set(pairs)
        if not (counterpart.exists() and counterpart.samefile(path))
    )


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
