"""ids: task ids are ULIDs that sort by creation, even within one millisecond."""

from __future__ import annotations

import time

from simplane.server.ids import new_task_id

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def test_a_task_id_is_t_and_26_crockford_characters() -> None:
    task_id = new_task_id()
    assert task_id.startswith("t-")
    assert len(task_id) == 28
    assert set(task_id[2:]) <= set(ALPHABET)


def test_ids_made_in_a_burst_are_unique_and_sorted() -> None:
    ids = [new_task_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_an_id_starts_with_its_creation_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    task_id = new_task_id()
    after = time.time_ns() // 1_000_000
    value = 0
    for char in task_id[2:]:
        value = value * 32 + ALPHABET.index(char)
    assert before <= value >> 80 <= after
