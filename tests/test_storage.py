"""StorageService: a tree goes up and comes back byte for byte; a path that climbs out of its root is refused."""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest

from simplane._api.v1 import storage_pb2, storage_pb2_grpc

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
        assert field in raised.value.details(), (path, raised.value.details())

    # Nothing was written anywhere, and the service still works.
    assert list(cluster.root.rglob("escaped.txt")) == []
    assert cluster.client().storage.list() == []
    upload("inputs/fine/", "kept.txt")
    assert [file.path for file in cluster.client().storage.list()] == ["inputs/fine/kept.txt"]
