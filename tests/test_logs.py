"""Task logs: every line exactly once and in order, streams apart, tails, files, chunks with offsets, resume."""

from __future__ import annotations

import time

import pytest
from collector import BackgroundCollector
from programs import numbered_lines, python
from tcp_proxy import TcpProxy
from waiting import eventually

import simplane
from simplane._api.v1 import task_pb2, task_pb2_grpc

STDOUT, STDERR, FILE = task_pb2.LOG_STREAM_STDOUT, task_pb2.LOG_STREAM_STDERR, task_pb2.LOG_STREAM_FILE


def texts(lines, stream: str = "stdout") -> list[str]:
    return [line.text for line in lines if line.stream == stream]


def tail(cluster, task_id: str, **request) -> list[task_pb2.TailLogsResponse]:
    """Every frame of one TailLogs call."""
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    frames = stub.TailLogs(
        task_pb2.TailLogsRequest(task_id=task_id, **request), metadata=cluster.metadata(), timeout=60
    )
    return list(frames)


def stream_bytes(frames, stream: int) -> bytes:
    """The stream's bytes rebuilt from its chunks, checking that each chunk starts where the last ended."""
    data = b""
    chunks = [frame.chunk for frame in frames if frame.WhichOneof("frame") == "chunk" and frame.chunk.stream == stream]
    if chunks:
        data = b"\0" * chunks[0].offset
    for chunk in chunks:
        assert chunk.offset == len(data), (chunk.offset, len(data))
        data += chunk.data
    return data


def test_twenty_thousand_lines_each_exactly_once_in_order(cluster) -> None:
    task = cluster.client().tasks.submit(numbered_lines(20_000))
    expected = [f"line {i}" for i in range(20_000)]
    followed = list(task.logs(follow=True))
    assert texts(followed) == expected
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert texts(task.logs()) == expected  # and again from the stored log


def test_stdout_and_stderr_are_separate(cluster) -> None:
    task = cluster.client().tasks.submit(
        python("import sys\nfor i in range(100):\n    print(f'out {i}')\n    print(f'err {i}', file=sys.stderr)")
    )
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    both = list(task.logs())
    assert texts(both, "stdout") == [f"out {i}" for i in range(100)]
    assert texts(both, "stderr") == [f"err {i}" for i in range(100)]
    assert [line.text for line in task.logs(stream="stdout")] == [f"out {i}" for i in range(100)]
    assert [line.text for line in task.logs(stream="stderr")] == [f"err {i}" for i in range(100)]
    assert all(line.timestamp is not None for line in both)


def test_line_offsets_are_byte_offsets(cluster) -> None:
    task = cluster.client().tasks.submit(python("print('ab'); print('é'); print('c')"))
    task.wait(timeout=30)
    assert [(line.offset, line.text) for line in task.logs(stream="stdout")] == [(0, "ab"), (3, "é"), (6, "c")]


def test_final_line_without_newline_is_delivered(cluster) -> None:
    task = cluster.client().tasks.submit(python("import sys; sys.stdout.write('first\\nlast without newline')"))
    assert texts(task.logs(follow=True)) == ["first", "last without newline"]
    assert texts(task.logs()) == ["first", "last without newline"]


def test_tail_returns_only_the_last_lines(cluster) -> None:
    task = cluster.client().tasks.submit(numbered_lines(5000))
    task.wait(timeout=30)
    assert [line.text for line in task.logs(stream="stdout", lines=3)] == ["line 4997", "line 4998", "line 4999"]

    frames = tail(cluster, task.id, cursors=[task_pb2.LogCursor(stream=STDOUT)], tail_lines=2)
    chunks = [frame.chunk for frame in frames if frame.WhichOneof("frame") == "chunk"]
    assert b"".join(chunk.data for chunk in chunks) == b"line 4998\nline 4999\n"
    assert chunks[0].offset == sum(len(f"line {i}\n") for i in range(4998))


def test_tail_from_an_offset(cluster) -> None:
    task = cluster.client().tasks.submit(numbered_lines(1000))
    task.wait(timeout=30)
    whole = stream_bytes(tail(cluster, task.id, cursors=[task_pb2.LogCursor(stream=STDOUT)]), STDOUT)
    assert whole == b"".join(f"line {i}\n".encode() for i in range(1000))
    middle = len(whole) // 2
    frames = tail(cluster, task.id, cursors=[task_pb2.LogCursor(stream=STDOUT, offset=middle)])
    assert stream_bytes(frames, STDOUT)[middle:] == whole[middle:]


def test_follow_sends_chunks_and_ends_with_the_exit_status(cluster) -> None:
    task = cluster.client().tasks.submit(
        python("import sys\nfor i in range(20000): print(i)\nprint('bye', file=sys.stderr)\nsys.exit(4)")
    )
    frames = tail(cluster, task.id, follow=True)
    kinds = [frame.WhichOneof("frame") for frame in frames]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    assert frames[-1].end.status == task_pb2.TASK_STATUS_FAILED
    assert frames[-1].end.exit_code == 4
    assert stream_bytes(frames, STDOUT) == b"".join(f"{i}\n".encode() for i in range(20000))
    assert stream_bytes(frames, STDERR) == b"bye\n"
    assert kinds.count("chunk") < 2000  # chunks, not one message per line


def test_follow_of_an_ended_task_ends_at_once(cluster) -> None:
    task = cluster.client().tasks.submit(["true"])
    task.wait(timeout=30)
    frames = tail(cluster, task.id, follow=True)
    assert frames[-1].WhichOneof("frame") == "end"
    assert frames[-1].end.status == task_pb2.TASK_STATUS_SUCCEEDED


def test_a_file_in_the_working_dir_is_tailable_while_running(cluster) -> None:
    writer = python(
        "import time\n"
        "with open('progress.log', 'w') as log:\n"
        "    for i in range(3):\n"
        "        log.write(f'step {i}\\n'); log.flush()\n"
        "    print('written', flush=True)\n"
        "    time.sleep(60)\n"
    )
    task = cluster.client().tasks.submit(writer)
    eventually(lambda: task.info().status == simplane.TaskStatus.RUNNING, timeout=30)
    eventually(lambda: any(file.path == "progress.log" for file in task.list_files()), timeout=30)
    eventually(
        lambda: [line.text for line in task.logs(file="progress.log")] == ["step 0", "step 1", "step 2"], timeout=30
    )
    assert [line.text for line in task.logs(file="progress.log", lines=1)] == ["step 2"]
    task.kill()
    assert task.wait(timeout=30) == simplane.TaskStatus.KILLED


def test_follower_resumes_after_the_connection_drops(cluster) -> None:
    proxy = TcpProxy(cluster.address)
    try:
        client = cluster.client(address=proxy.address)
        task = client.tasks.submit(numbered_lines(150, every=0.02))
        follower = BackgroundCollector(task.logs(follow=True))
        eventually(lambda: len(follower) >= 20, timeout=30)
        proxy.drop()
        eventually(lambda: proxy.connections >= 2, timeout=30)  # the client came back
        assert texts(follower.join(timeout=60)) == [f"line {i}" for i in range(150)]
        assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    finally:
        proxy.close()


def test_logs_of_a_running_task_snapshot_then_follow(cluster) -> None:
    task = cluster.client().tasks.submit(python("import time\nprint('early', flush=True)\ntime.sleep(60)"))
    eventually(lambda: texts(task.logs()) == ["early"], timeout=30)
    task.kill()
    assert texts(task.logs(follow=True)) == ["early"]
    assert task.wait(timeout=30) == simplane.TaskStatus.KILLED


def test_a_stalled_reader_blocks_neither_the_task_nor_other_readers(cluster, tmp_path) -> None:
    go = tmp_path / "go"
    count, padding = 50_000, "x" * 90  # about 5 MB: far more than the stalled stream's flow-control windows
    task = cluster.client().tasks.submit(
        python(
            "import os, sys, time\n"
            f"deadline = time.monotonic() + 30\n"
            f"while not os.path.exists({str(go)!r}):\n"
            "    if time.monotonic() > deadline: sys.exit('no go')\n"
            "    time.sleep(0.005)\n"
            f"sys.stdout.write(''.join(f'line {{i}} {padding}\\n' for i in range({count})))\n"
        )
    )
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    stalled = stub.TailLogs(
        task_pb2.TailLogsRequest(task_id=task.id, follow=True), metadata=cluster.metadata(), timeout=60
    )  # never read
    try:
        follower = BackgroundCollector(task.logs(follow=True, stream="stdout"))
        go.touch()  # both readers are there before the task prints
        assert [line.text for line in follower.join(timeout=60)] == [f"line {i} {padding}" for i in range(count)]
        assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
        assert stalled.running()  # it really did stay open and unread all along
    finally:
        stalled.cancel()
    assert task.info().exit_code == 0  # the server serves on after the stalled call went away


@pytest.mark.parametrize("catch_up", ["while-running", "after-the-end"])
def test_a_slow_follower_of_a_fast_written_file_gets_every_byte_once(cluster, tmp_path, catch_up) -> None:
    # 20 MiB of numbered 16-byte records: far more than the server holds for one reader (64 frames of 64 KiB)
    # plus the flow-control windows, so the server must drop the agent's read and restart it further on.
    go, release, records = tmp_path / "go", tmp_path / "release", 20 * 1024 * 1024 // 16
    size = records * 16
    if catch_up == "after-the-end":
        release.touch()  # the task exits as soon as it has written the file
    writer = python(
        "import os, sys, time\n"
        "def wait_for(path):\n"
        "    deadline = time.monotonic() + 30\n"
        "    while not os.path.exists(path):\n"
        "        if time.monotonic() > deadline: sys.exit(f'no {path}')\n"
        "        time.sleep(0.005)\n"
        "with open('big.bin', 'w') as out:\n"
        "    out.write(''.join(f'{i:015d}\\n' for i in range(4096))); out.flush()\n"
        f"    wait_for({str(go)!r})\n"
        f"    for start in range(4096, {records}, 65536):\n"
        f"        out.write(''.join(f'{{i:015d}}\\n' for i in range(start, min(start + 65536, {records}))))\n"
        "        out.flush()\n"
        "print('written', flush=True)\n"
        f"wait_for({str(release)!r})\n"
    )
    task = cluster.client().tasks.submit(writer)
    eventually(lambda: any(f.path == "big.bin" and f.size >= 4096 * 16 for f in task.list_files()), timeout=30)
    request = task_pb2.TailLogsRequest(
        task_id=task.id, cursors=[task_pb2.LogCursor(stream=FILE)], file="big.bin", follow=True
    )
    call = cluster.stub(task_pb2_grpc.TaskServiceStub).TailLogs(request, metadata=cluster.metadata(), timeout=60)
    try:
        frames = [next(call)]
        while frames[-1].WhichOneof("frame") != "chunk":  # the first block, relayed from the agent
            frames.append(next(call))
        go.touch()
        # The follower reads nothing more while the task writes the rest, then catches up ...
        if catch_up == "while-running":
            eventually(lambda: texts(task.logs()) == ["written"], timeout=30)  # ... while the task still runs
            resumed = time.time_ns()
            for frame in call:
                frames.append(frame)
                if frame.chunk.offset + len(frame.chunk.data) >= size:
                    break
            release.touch()
            assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
        else:
            assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED  # ... or once it has ended
            resumed = time.time_ns()
        frames += list(call)
    finally:
        call.cancel()

    assert frames[-1].WhichOneof("frame") == "end" and frames[-1].end.status == task_pb2.TASK_STATUS_SUCCEEDED
    task.download_outputs(tmp_path / "outputs")
    written = (tmp_path / "outputs" / "big.bin").read_bytes()
    assert len(written) == size
    assert stream_bytes(frames, FILE) == written
    # Most of the file was read for the follower only after it caught up: the server did not hold it all.
    late = sum(
        len(f.chunk.data) for f in frames if f.WhichOneof("frame") == "chunk" and f.chunk.time.ToNanoseconds() > resumed
    )
    assert late > size // 4, f"only {late} of {size} bytes were read after the follower caught up"


def test_many_followers_of_one_task_each_get_every_byte_once(cluster) -> None:
    """Followers share the store's newest pieces: each still gets every chunk once, where it started, whether it
    joined before the output, during it, or from an offset inside a chunk (the shared piece is cut for it)."""
    task = cluster.client().tasks.submit(
        python(
            "import sys, time\n"
            "for i in range(300):\n"
            "    print(f'line {i}', flush=True)\n"
            "    print(f'err {i}', file=sys.stderr, flush=True)\n"
            "    time.sleep(0.01)\n"
        )
    )
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)

    def follow(offset: int = 0) -> BackgroundCollector:
        cursors = [task_pb2.LogCursor(stream=STDOUT, offset=offset), task_pb2.LogCursor(stream=STDERR)]
        request = task_pb2.TailLogsRequest(task_id=task.id, follow=True, cursors=cursors)
        return BackgroundCollector(stub.TailLogs(request, metadata=cluster.metadata(), timeout=60))

    early = [follow() for _ in range(20)]
    eventually(lambda: any(frame.HasField("chunk") for frame in early[0].items), timeout=30)
    late = [follow(), follow(3)]
    out = "".join(f"line {i}\n" for i in range(300)).encode()
    err = "".join(f"err {i}\n" for i in range(300)).encode()
    for follower in [*early, *late]:
        frames = follower.join(timeout=60)
        assert frames[-1].end.status == task_pb2.TASK_STATUS_SUCCEEDED
        assert stream_bytes(frames, STDERR) == err
    for follower in [*early, late[0]]:
        assert stream_bytes(follower.items, STDOUT) == out
    assert stream_bytes(late[1].items, STDOUT) == b"\0" * 3 + out[3:]
