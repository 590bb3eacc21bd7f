"""The development install: `import simplane` from any folder, and the guard against a stale link tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import installed_package

import simplane

PYPROJECT = """
[tool.setuptools]
package-dir = { "simplane" = "client", "simplane.server" = "server" }
"""


def test_import_simplane_from_a_folder_holding_a_clone_named_simplane(tmp_path: Path) -> None:
    # A clone named simplane is a folder without __init__.py: a namespace package, which the installed
    # (regular) package beats even though the current folder comes first on sys.path.
    for folder in ("client", "server", "agent", "cli"):
        (tmp_path / "simplane" / folder).mkdir(parents=True)
        (tmp_path / "simplane" / folder / "__init__.py").write_text("")
    result = subprocess.run(
        [sys.executable, "-c", "import simplane; print(simplane.__file__); print(simplane.Client.__name__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == [simplane.__file__, "Client"]


def test_a_module_added_after_the_install_is_reported(tmp_path: Path) -> None:
    root, installed = tmp_path / "checkout", tmp_path / "installed" / "simplane"
    sources = ["client/__init__.py", "client/_api/__init__.py", "server/__init__.py", "server/store/models.py"]
    for name in sources:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
        link = installed / name.removeprefix("client/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(root / name)
    (root / "pyproject.toml").write_text(PYPROJECT)
    assert installed_package.stale_files(root, installed) == []

    # New modules, and a copy instead of this checkout's file.
    (root / "server" / "tasks.py").write_text("")
    (root / "server" / "store" / "database.py").write_text("")
    (installed / "__init__.py").unlink()
    (installed / "__init__.py").write_text("")
    assert installed_package.stale_files(root, installed) == [
        "client/__init__.py",
        "server/store/database.py",
        "server/tasks.py",
    ]
