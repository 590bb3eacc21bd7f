"""StorageService: a tree goes up and comes back byte for byte; a path that climbs out of its root, or puts a file
where a directory is (or the reverse), is refused."""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest

import simplane
from simplane._api.v1 import storage_pb2, storage_pb2_grpc
from simplane._protocol.transfer import INCOMING_PREFIX

MIB = 1024 * 1024


def tree(root) -> dict[str, tuple[bytes, int]]:
    """Each file under root: its relative path, bytes and permission bits."""
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), path.stat().st_mode & 0o777)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_upload_then_download_gives_the_same_bytes(cluster, tmp_path) -> None:
    source = tmp_path / "case"
    (source / "mesh").mkdir(parents=True)
    (source / "big.bin").write_bytes(os.urandom(2 * MIB + 12345))  # three chunks, the last one short
    (source / "mesh" / "exact.bin").write_bytes(os.urandom(MIB))  # exactly one chunk
    (source / "empty.txt").write_bytes(b"")
    (source / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (source / "run.sh").chmod(0o755)
    client = cluster.client()

    prefix = client.storage.upload(str(source))
    stored = {file.path: file for file in client.storage.list(prefix)}
    assert set(stored) == {prefix + path for path in tree(source)}
    assert stored[prefix + "empty.txt"].size == 0
    big = (source / "big.bin").read_bytes()
    assert stored[prefix + "big.bin"].sha256 == hashlib.sha256(big).hexdigest()

    target = tmp_path / "back"
    client.storage.download(prefix, str(target))
    assert tree(target) == tree(source)


def test_a_path_with_dotdot_is_invalid_argument_naming_the_field(cluster) -> None:
    storage = cluster.stub(storage_pb2_grpc.StorageServiceStub)
    data = b"escaped\n"

    def upload(prefix: str, path: str) -> None:
        chunk = storage_pb2.FileChunk(path=path, offset=0, data=data, sha256=hashlib.sha256(data).hexdigest())
        requests = [storage_pb2.UploadFilesRequest(prefix=prefix), storage_pb2.UploadFilesRequest(chunk=chunk)]
        storage.UploadFiles(iter(requests), metadata=cluster.metadata(), timeout=10)

    for prefix, path, field in (
        ("inputs/escape/", "../../escaped.txt", "chunk.path"),
        ("inputs/escape/", "sub/../../escaped.txt", "chunk.path"),
        ("../", "escaped.txt", "prefix"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            upload(prefix, path)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, raised.value.details())
        assert field in (raised.value.details() or ""), (path, raised.value.details())

    # Nothing was written anywhere, and the service still works.
    assert list(cluster.root.rglob("escaped.txt")) == []
    assert cluster.client().storage.list() == []
    upload("inputs/fine/", "kept.txt")
    assert [file.path for file in cluster.client().storage.list()] == ["inputs/fine/kept.txt"]


def test_a_file_where_a_directory_is_or_the_reverse_is_invalid_argument(cluster, tmp_path) -> None:
    storage = cluster.stub(storage_pb2_grpc.StorageServiceStub)
    data = b"content\n"

    def upload(prefix: str, *paths: str) -> None:
        requests = [storage_pb2.UploadFilesRequest(prefix=prefix)]
        for path in paths:
            chunk = storage_pb2.FileChunk(path=path, offset=0, data=data, sha256=hashlib.sha256(data).hexdigest())
            requests.append(storage_pb2.UploadFilesRequest(chunk=chunk))
        storage.UploadFiles(iter(requests), metadata=cluster.metadata(), timeout=10)

    upload("inputs/clash/", "d", "g/h")
    for prefix, paths in (
        ("inputs/clash/", ["d/f"]),  # under a stored file
        ("inputs/clash/", ["d/e/f"]),  # deeper under it
        ("inputs/clash/", ["g"]),  # onto a stored directory
        ("inputs/together/", ["e", "e/f"]),  # both in one upload
    ):
        with pytest.raises(grpc.RpcError) as raised:
            upload(prefix, *paths)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (paths, raised.value.details())
        details = raised.value.details() or ""
        assert "chunk.path" in details and paths[-1] in details, paths

    # The same through the client: a second tree laid over the first.
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    (first / "d").write_text("a file\n")
    (second / "d").mkdir(parents=True)
    (second / "d" / "f").write_text("under it\n")
    client = cluster.client()
    client.storage.upload(first, prefix="inputs/trees/")
    with pytest.raises(simplane.InvalidArgument, match=r"chunk\.path"):
        client.storage.upload(second, prefix="inputs/trees/")

    # What was stored is intact, no temporary file is left behind, and the service still works. (Whether the
    # refused upload kept its first file, "e", is left open.)
    stored = {file.path for file in client.storage.list("inputs/")} - {"inputs/together/e"}
    assert stored == {"inputs/clash/d", "inputs/clash/g/h", "inputs/trees/d"}
    assert list(cluster.data_dir.rglob(f"{INCOMING_PREFIX}*")) == []
    upload("inputs/fine/", "kept.txt")
    client.storage.download("inputs/clash/", tmp_path / "back")
    assert tree(tmp_path / "back") == {"d": (data, 0o644), "g/h": (data, 0o644)}


def test_upload_file_stores_one_whole_file_in_a_single_message(cluster, tmp_path) -> None:
    stub = cluster.stub(storage_pb2_grpc.StorageServiceStub)
    data = os.urandom(100_000)
    chunk = storage_pb2.FileChunk(path="mesh/a.bin", data=data, sha256=hashlib.sha256(data).hexdigest(), mode=0o600)
    response = stub.UploadFile(
        storage_pb2.UploadFileRequest(prefix="inputs/web/", chunk=chunk), metadata=cluster.metadata(), timeout=10
    )
    assert (response.file.path, response.file.size) == ("inputs/web/mesh/a.bin", len(data))

    cluster.client().storage.download("inputs/web/", str(tmp_path / "back"))
    assert tree(tmp_path / "back") == {"mesh/a.bin": (data, 0o600)}


@pytest.mark.parametrize(
    ("chunk", "field"),
    [
        (storage_pb2.FileChunk(path="a", data=b"x"), "chunk.sha256"),
        (storage_pb2.FileChunk(path="a", data=b"x", offset=5, sha256=hashlib.sha256(b"x").hexdigest()), "chunk.offset"),
        (storage_pb2.FileChunk(path="a", data=b"x", sha256="0" * 64), "chunk.sha256"),
        (storage_pb2.FileChunk(path="../a", data=b"x", sha256=hashlib.sha256(b"x").hexdigest()), "chunk.path"),
    ],
)
def test_upload_file_refuses_a_bad_chunk_naming_the_field(cluster, chunk, field) -> None:
    stub = cluster.stub(storage_pb2_grpc.StorageServiceStub)
    with pytest.raises(grpc.RpcError) as raised:
        stub.UploadFile(
            storage_pb2.UploadFileRequest(prefix="in/", chunk=chunk), metadata=cluster.metadata(), timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")
    assert cluster.client().storage.list("in/") == []
