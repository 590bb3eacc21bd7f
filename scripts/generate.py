"""Regenerate all generated code (one command, reproducible; CI checks the result).

Python stubs go to client/_api: protoc writes modules that import each other as `simplane.v1.*`; they are
installed as the private package `simplane._api.v1`, so the imports are rewritten on the way.
The blocking client, client/_sync.py, is client/_async.py rewritten by unasync (docs/client.md).
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

import tokenize_rt
import unasync

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PYTHON_OUT = ROOT / "client" / "_api"
CONSOLE = ROOT / "console"
ASYNC_CLIENT = ROOT / "client" / "_async.py"
SYNC_CLIENT = ROOT / "client" / "_sync.py"

# Names unasync does not know (it turns any other AsyncX into SyncX); its own table covers __aenter__,
# AsyncIterator, AsyncGenerator and the like.
SYNC_NAMES = {
    "AsyncAccount": "Account",
    "AsyncClient": "Client",
    "AsyncMachineGroups": "MachineGroups",
    "AsyncStorage": "Storage",
    "AsyncTask": "Task",
    "AsyncTasks": "Tasks",
    "aclose": "close",
    "_io_async": "_io_sync",
}
_ASYNC_KEYWORD = re.compile(r"\b(?:async|await) ")
_ASYNC_NAME = re.compile(r"\b(?:" + "|".join(SYNC_NAMES) + r")\b")

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


def generate_sync_client() -> None:
    """client/_sync.py from client/_async.py: unasync drops async/await and renames (SYNC_NAMES); the same
    happens to the words of docstrings and comments, which unasync leaves alone; then ruff formats it."""
    unused = [name for name in SYNC_NAMES if not re.search(rf"\b{name}\b", ASYNC_CLIENT.read_text())]
    if unused:  # a stale rename would hide the next one that is needed
        raise SystemExit(f"error: SYNC_NAMES renames {', '.join(unused)}, which {ASYNC_CLIENT.name} no longer has")
    rule = unasync.Rule("/_async/", "/_sync/", additional_replacements=SYNC_NAMES)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "_async", ASYNC_CLIENT.name)
        source.parent.mkdir()
        shutil.copyfile(ASYNC_CLIENT, source)
        unasync.unasync_files([str(source)], [rule])
        tokens = tokenize_rt.src_to_tokens(Path(tmp, "_sync", ASYNC_CLIENT.name).read_text())
    for index, token in enumerate(tokens):
        if token.name in ("STRING", "COMMENT"):
            prose = _ASYNC_KEYWORD.sub("", token.src)
            tokens[index] = token._replace(src=_ASYNC_NAME.sub(lambda match: SYNC_NAMES[match[0]], prose))
    header = (
        f"# Generated from {ASYNC_CLIENT.relative_to(ROOT)} by scripts/generate.py (unasync). Do not edit:"
        " edit that file and rerun.\n"
    )
    text = header + tokenize_rt.tokens_to_src(tokens)
    for ruff in (["check", "--fix-only", "--select", "I"], ["format"]):  # renamed imports sort differently
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *ruff, "--stdin-filename", str(SYNC_CLIENT), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    SYNC_CLIENT.write_text(text)


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
    generate_sync_client()
    if not generate_typescript():
        print("skipped console/src/gen: run 'npm ci' in console/ first", file=sys.stderr)
