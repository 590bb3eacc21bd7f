"""log_store: appends idempotent by offset, reads split at the agent's chunks, tails, and followers that lose and
repeat nothing. Each test keeps its store in its own temporary directory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from own_loop import run

from simplane.server import log_store
from simplane.server.disk_space import DataDirSpace
from simplane.server.log_store import MAX_FRAME, RECENT_BYTES, LogStore, Piece, tail_offset


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    logs = LogStore(tmp_path / "logs", DataDirSpace(tmp_path))
    try:
        yield logs
    finally:
        logs.close()


def pieces_of(pieces: list[Piece]) -> list[tuple[int, bytes, int]]:
    return [(piece.offset, piece.data, piece.time_ns) for piece in pieces]


def read_all(logs: LogStore, task_id: str, stream: str, offset: int = 0, limit: int = MAX_FRAME) -> bytes:
    """Reads from offset to the end as a reader does, frame by frame; checks the pieces follow on each other."""
    data = b""
    while pieces := logs.read(task_id, stream, offset, limit):
        for piece in pieces:
            assert piece.offset == offset, "a gap or an overlap between pieces"
            data += piece.data
            offset = piece.end
    return data


def test_appends_are_stored_and_read_back_split_at_the_chunks(store: LogStore) -> None:
    assert store.append("t-1", "stdout", 0, b"hello ", 10) == 6
    assert store.append("t-1", "stdout", 6, b"world\n", 20) == 12
    assert store.size("t-1", "stdout") == 12
    assert pieces_of(store.read("t-1", "stdout", 0)) == [(0, b"hello ", 10), (6, b"world\n", 20)]


def test_a_read_from_inside_a_chunk_starts_there_with_the_chunks_time(store: LogStore) -> None:
    store.append("t-1", "stdout", 0, b"abcdef", 10)
    store.append("t-1", "stdout", 6, b"ghij", 20)
    assert pieces_of(store.read("t-1", "stdout", 3)) == [(3, b"def", 10), (6, b"ghij", 20)]
    assert pieces_of(store.read("t-1", "stdout", 8)) == [(8, b"ij", 20)]
    assert store.read("t-1", "stdout", 10) == []
    assert store.read("t-1", "stdout", 99) == []


def test_a_resent_chunk_is_stored_once(store: LogStore) -> None:
    store.append("t-1", "stdout", 0, b"line 1\n", 10)
    # The agent did not hear the acknowledgement and sends again from 0, with more.
    assert store.append("t-1", "stdout", 0, b"line 1\nline 2\n", 20) == 14
    assert store.append("t-1", "stdout", 0, b"line 1\n", 30) == 14
    assert store.append("t-1", "stdout", 7, b"line 2\n", 40) == 14
    assert pieces_of(store.read("t-1", "stdout", 0)) == [(0, b"line 1\n", 10), (7, b"line 2\n", 20)]


def test_a_chunk_past_the_end_is_refused_and_says_where_to_resend_from(store: LogStore) -> None:
    store.append("t-1", "stdout", 0, b"12345", 10)
    assert store.append("t-1", "stdout", 9, b"lost", 20) == 5
    assert read_all(store, "t-1", "stdout") == b"12345"
    assert store.append("t-1", "stdout", 5, b"6789", 30) == 9
    assert read_all(store, "t-1", "stdout") == b"123456789"


def test_streams_and_tasks_are_kept_apart(store: LogStore) -> None:
    store.append("t-1", "stdout", 0, b"out", 1)
    store.append("t-1", "stderr", 0, b"error", 2)
    store.append("t-2", "stdout", 0, b"other task", 3)
    assert (read_all(store, "t-1", "stdout"), read_all(store, "t-1", "stderr")) == (b"out", b"error")
    assert read_all(store, "t-2", "stdout") == b"other task"
    assert store.size("t-2", "stderr") == 0
    assert store.read("t-3", "stdout", 0) == []


def test_an_empty_append_stores_nothing(store: LogStore) -> None:
    store.append("t-1", "stdout", 0, b"abc", 1)
    assert store.append("t-1", "stdout", 3, b"", 2) == 3
    assert pieces_of(store.read("t-1", "stdout", 0)) == [(0, b"abc", 1)]


def test_a_store_opened_again_continues_where_it_stopped(tmp_path: Path) -> None:
    first = LogStore(tmp_path / "logs", DataDirSpace(tmp_path))
    first.append("t-1", "stdout", 0, b"before ", 10)
    first.append("t-1", "stdout", 7, b"restart\n", 20)
    first.close()
    again = LogStore(tmp_path / "logs", DataDirSpace(tmp_path))
    try:
        assert again.size("t-1", "stdout") == 15
        assert again.append("t-1", "stdout", 7, b"restart\nafter\n", 30) == 21
        assert pieces_of(again.read("t-1", "stdout", 0)) == [
            (0, b"before ", 10),
            (7, b"restart\n", 20),
            (15, b"after\n", 30),
        ]
    finally:
        again.close()
    assert sorted(os.listdir(tmp_path / "logs" / "t-1")) == ["stdout", "stdout.idx"]


def test_frame_by_frame_reads_return_every_byte_once(store: LogStore) -> None:
    written = b""
    for i in range(300):
        chunk = f"line {i} ".encode() * (i % 7 + 1) + b"\n"
        store.append("t-1", "stdout", len(written), chunk, i)
        written += chunk
    for limit in (1, 100, 4096, MAX_FRAME):
        for start in (0, 1, 5000, len(written) - 1):
            assert read_all(store, "t-1", "stdout", start, limit) == written[start:]


def test_a_read_is_bounded_by_its_limit_but_never_empty_before_the_end(store: LogStore) -> None:
    store.append("t-1", "stdout", 0, b"x" * 1000, 1)
    store.append("t-1", "stdout", 1000, b"y" * 1000, 2)
    assert pieces_of(store.read("t-1", "stdout", 0, limit=10)) == [(0, b"x" * 10, 1)]
    assert pieces_of(store.read("t-1", "stdout", 995, limit=10)) == [(995, b"xxxxx", 1), (1000, b"yyyyy", 2)]


def test_the_newest_bytes_kept_in_memory_agree_with_the_disk(tmp_path: Path) -> None:
    """A follower reads every append as it comes (served from memory); a late reader reads the same bytes, times
    and splits from disk."""
    follower = LogStore(tmp_path / "logs", DataDirSpace(tmp_path))
    written, seen, offset = b"", [], 0
    for i in range(200):
        chunk = bytes([65 + i % 26]) * (1000 + i)
        follower.append("t-1", "stdout", len(written), chunk, i)
        written += chunk
        pieces = follower.read("t-1", "stdout", offset)
        seen.extend(pieces_of(pieces))
        offset = pieces[-1].end
    assert len(written) > 4 * RECENT_BYTES
    assert b"".join(data for _, data, _ in seen) == written
    late = LogStore(tmp_path / "logs", DataDirSpace(tmp_path))
    try:
        from_disk = []
        offset = 0
        while pieces := late.read("t-1", "stdout", offset):
            from_disk.extend(pieces_of(pieces))
            offset = pieces[-1].end
        assert from_disk == seen
        # And from memory, for any offset still held there.
        recent_start = len(written) - RECENT_BYTES
        assert read_all(follower, "t-1", "stdout", recent_start) == written[recent_start:]
    finally:
        late.close()
        follower.close()


def test_streams_closed_to_bound_open_files_are_reopened_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_store, "MAX_OPEN_STREAMS", 8)
    logs = LogStore(tmp_path / "logs", DataDirSpace(tmp_path))
    try:
        for round_ in range(3):
            for task in range(20):
                logs.append(f"t-{task}", "stdout", round_ * 4, f"r{round_}t{task % 10}".encode(), round_)
            open_files = [link for link in Path("/proc/self/fd").iterdir() if _points_into(link, tmp_path / "logs")]
            assert 0 < len(open_files) <= 2 * 8  # a data file and an index per open stream
        for task in range(20):
            assert read_all(logs, f"t-{task}", "stdout") == "".join(f"r{r}t{task % 10}" for r in range(3)).encode()
    finally:
        logs.close()


def _points_into(link: Path, folder: Path) -> bool:
    try:
        return Path(os.readlink(link)).is_relative_to(folder)
    except OSError:  # the descriptor was closed between listing and reading
        return False


@pytest.mark.parametrize(
    ("content", "lines", "expected"),
    [
        (b"", 3, 0),
        (b"a\nb\nc\n", 0, 6),
        (b"a\nb\nc\n", 1, 4),
        (b"a\nb\nc\n", 2, 2),
        (b"a\nb\nc\n", 3, 0),
        (b"a\nb\nc\n", 10, 0),
        (b"a\nb\nc", 1, 4),  # a last line without its newline still counts
        (b"a\nb\nc", 2, 2),
        (b"\n\n\n", 2, 1),
        (b"one line", 1, 0),
    ],
)
def test_tail_offset(store: LogStore, content: bytes, lines: int, expected: int) -> None:
    store.append("t-1", "stdout", 0, content, 1)
    assert store.tail_offset("t-1", "stdout", lines) == expected


def test_tail_offset_across_read_blocks(tmp_path: Path) -> None:
    line = b"x" * 999 + b"\n"
    path = tmp_path / "big"
    path.write_bytes(line * 300 + b"partial")
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        assert tail_offset(fd, size, 1) == 300 * len(line)
        assert tail_offset(fd, size, 201) == 100 * len(line)
        assert tail_offset(fd, size, 301) == 0
        # Only the first `size` bytes count: what is written after a size was taken is not part of the tail.
        assert tail_offset(fd, 100 * len(line), 1) == 99 * len(line)
    finally:
        os.close(fd)


def test_changed_is_one_future_for_all_followers_resolved_by_the_next_append(store: LogStore) -> None:
    async def scenario() -> None:
        first = store.changed("t-1", "stdout")
        assert store.changed("t-1", "stdout") is first
        store.append("t-1", "stderr", 0, b"other stream", 1)
        assert not first.done()
        store.append("t-1", "stdout", 0, b"x", 1)
        assert first.done()
        second = store.changed("t-1", "stdout")
        assert second is not first and not second.done()
        store.append("t-1", "stdout", 0, b"x", 2)  # stores nothing new: wakes nobody
        assert not second.done()
        store.close_task("t-1")
        assert second.done()

    run(scenario())


async def collect(
    logs: LogStore, offsets: dict[str, int], ended: list[bool], idle: float = 30.0
) -> list[tuple[str, list[tuple[int, bytes, int]]]]:
    return [(name, pieces_of(pieces)) async for name, pieces in logs.follow("t-1", offsets, lambda: ended[0], idle)]


def test_follow_of_an_ended_task_reads_everything_then_stops(store: LogStore) -> None:
    store.append("t-1", "stdout", 0, b"out", 1)
    store.append("t-1", "stderr", 0, b"err", 2)
    got = run(collect(store, {"stdout": 0, "stderr": 0}, [True]))
    assert got == [("stdout", [(0, b"out", 1)]), ("stderr", [(0, b"err", 2)])]


def test_follow_resumes_from_its_offsets_without_loss_or_repeat(store: LogStore) -> None:
    store.append("t-1", "stdout", 0, b"0123456789", 1)
    store.append("t-1", "stderr", 0, b"abc", 2)
    got = run(collect(store, {"stdout": 4, "stderr": 3}, [True]))
    assert got == [("stdout", [(4, b"456789", 1)])]


def test_follow_wakes_on_each_append_until_the_task_ends(store: LogStore) -> None:
    async def scenario() -> None:
        ended = False
        follower = store.follow("t-1", {"stdout": 0}, lambda: ended, idle=30)
        offset = 0
        for i in range(5):
            upcoming = asyncio.ensure_future(anext(follower))
            await asyncio.sleep(0)  # one turn of the loop (no time passes): the follower finds nothing and waits
            assert not upcoming.done()
            line = f"line {i}\n".encode()
            store.append("t-1", "stdout", offset, line, i)
            name, pieces = await upcoming
            assert (name, pieces_of(pieces)) == ("stdout", [(offset, line, i)])
            offset += len(line)
        ending = asyncio.ensure_future(anext(follower))
        await asyncio.sleep(0)
        ended = True
        store.close_task("t-1")
        with pytest.raises(StopAsyncIteration):
            await ending

    run(scenario())


def test_follow_yields_a_heartbeat_when_no_data_came(store: LogStore) -> None:
    async def first_frame() -> tuple[str, list[Piece]]:
        async for frame in store.follow("t-1", {"stdout": 0}, lambda: False, idle=0.01):
            return frame  # the follower is closed when the loop ends
        raise AssertionError("the follow ended")

    assert run(first_frame()) == ("", [])


def test_follow_takes_turns_between_streams_a_frame_at_a_time(store: LogStore) -> None:
    big = b"o" * (MAX_FRAME + 10)
    store.append("t-1", "stdout", 0, big, 1)
    store.append("t-1", "stderr", 0, b"e", 2)
    got = run(collect(store, {"stdout": 0, "stderr": 0}, [True]))
    assert [(name, sum(len(data) for _, data, _ in pieces)) for name, pieces in got] == [
        ("stdout", MAX_FRAME),
        ("stderr", 1),
        ("stdout", 10),
    ]
