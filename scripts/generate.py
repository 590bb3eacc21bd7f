"""Regenerate the Python stubs in client/_api from protos/ (one command, reproducible; CI checks the result).

protoc writes modules that import each other as `simplane.v1.*`; they are installed as the private package
`simplane._api.v1`, so the imports are rewritten on the way.
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


if __name__ == "__main__":
    generate_python()
