"""Regenerate the API code from protos/ (one command, reproducible; CI checks the result).

Python stubs go to client/_api: protoc writes modules that import each other as `simplane.v1.*`; they are
installed as the private package `simplane._api.v1`, so the imports are rewritten on the way.
TypeScript for the console goes to console/src/gen, by buf and protoc-gen-es from console/node_modules
(`npm ci` in console/ first); without them that step is skipped with a note. Beside the API it holds
google.rpc.BadRequest, from the error_details.proto that googleapis-common-protos installs (pinned in the dev
extras, so the output is the same everywhere).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PYTHON_OUT = ROOT / "client" / "_api"
CONSOLE = ROOT / "console"

_PROTO_MODULE = re.compile(r"\bsimplane\.v1(?=\.\w+_pb2\b| import )")


def generate_python() -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTOS}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                f"--mypy_out={tmp}",
                f"--mypy_grpc_out={tmp}",
                *sources,
            ],
            check=True,
        )
        shutil.rmtree(PYTHON_OUT, ignore_errors=True)
        (PYTHON_OUT / "v1").mkdir(parents=True)
        (PYTHON_OUT / "__init__.py").write_text('"""Generated protobuf and gRPC stubs. Do not edit."""\n')
        (PYTHON_OUT / "v1" / "__init__.py").write_text("")
        for generated in sorted((Path(tmp) / "simplane" / "v1").iterdir()):
            text = _PROTO_MODULE.sub("simplane._api.v1", generated.read_text())
            (PYTHON_OUT / "v1" / generated.name).write_text(text)


def generate_typescript() -> bool:
    """False when the console's npm packages are not installed, so there is nothing to generate with."""
    buf = CONSOLE / "node_modules" / ".bin" / "buf"
    if not (buf.exists() and (CONSOLE / "node_modules" / ".bin" / "protoc-gen-es").exists()):
        return False
    subprocess.run([str(buf), "generate", "--template", str(CONSOLE / "buf.gen.yaml")], cwd=ROOT, check=True)
    generate_typescript_error_details(buf)
    return True


def generate_typescript_error_details(buf: Path) -> None:
    """google/rpc/error_details.proto, after the API (whose template empties console/src/gen first)."""
    from google.rpc import error_details_pb2

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "google" / "rpc").mkdir(parents=True)
        shutil.copy(Path(error_details_pb2.__file__).with_name("error_details.proto"), Path(tmp) / "google" / "rpc")
        template = CONSOLE / "buf.gen.google-rpc.yaml"
        subprocess.run([str(buf), "generate", tmp, "--template", str(template)], cwd=ROOT, check=True)


if __name__ == "__main__":
    generate_python()
    if not generate_typescript():
        print("skipped console/src/gen: run 'npm ci' in console/ first", file=sys.stderr)
