"""scheduler: first come, first served per machine group, on the machine with the most free CPUs."""

from __future__ import annotations

import itertools

from simplane.server.scheduler import MachineCapacity, Scheduler
from simplane.server.task_record import TaskRecord

_ids = itertools.count(1)


def task(cpus: int = 1, group: str = "local") -> TaskRecord:
    return TaskRecord(
        id=f"t-{next(_ids):04d}",
        owner="alice",
        machine_group=group,
        command=["true"],
        created_at=0.0,
        updated_at=0.0,
        cpus=cpus,
    )


def placed_on(scheduler: Scheduler, group: str = "local") -> list[tuple[str, str]]:
    """place(), as (task id, machine id) pairs; the caller records the machine on the task, as the task core does."""
    pairs = []
    for record, machine in scheduler.place(group):
        record.machine_id = machine.machine_id
        pairs.append((record.id, machine.machine_id))
    return pairs


def test_nothing_is_placed_without_a_machine_and_the_queue_is_kept() -> None:
    scheduler = Scheduler()
    first, second = task(), task()
    scheduler.enqueue(first)
    scheduler.enqueue(second)
    assert scheduler.place("local") == []
    assert scheduler.queued("local") == 2
    scheduler.add_machine("m1", "local", slots=4, running=[])
    assert placed_on(scheduler) == [(first.id, "m1"), (second.id, "m1")]
    assert scheduler.queued("local") == 0


def test_an_empty_queue_places_nothing() -> None:
    scheduler = Scheduler()
    scheduler.add_machine("m1", "local", slots=4, running=[])
    assert scheduler.place("local") == []
    assert scheduler.place("elsewhere") == []


def test_tasks_are_placed_in_the_order_they_came() -> None:
    scheduler = Scheduler()
    tasks = [task() for _ in range(5)]
    for record in tasks:
        scheduler.enqueue(record)
    scheduler.add_machine("m1", "local", slots=5, running=[])
    assert [task_id for task_id, _ in placed_on(scheduler)] == [record.id for record in tasks]


def test_a_machine_takes_no_more_cpus_than_it_has() -> None:
    scheduler = Scheduler()
    tasks = [task() for _ in range(3)]
    for record in tasks:
        scheduler.enqueue(record)
    scheduler.add_machine("m1", "local", slots=2, running=[])
    assert placed_on(scheduler) == [(tasks[0].id, "m1"), (tasks[1].id, "m1")]
    machine = scheduler.machine("m1")
    assert machine is not None
    assert (machine.used, machine.free, machine.task_ids) == (2, 0, {tasks[0].id, tasks[1].id})
    assert scheduler.queued("local") == 1
    assert scheduler.place("local") == []


def test_a_released_slot_takes_the_next_queued_task() -> None:
    scheduler = Scheduler()
    first, second = task(), task()
    scheduler.enqueue(first)
    scheduler.enqueue(second)
    scheduler.add_machine("m1", "local", slots=1, running=[])
    assert placed_on(scheduler) == [(first.id, "m1")]
    scheduler.release(first)
    assert placed_on(scheduler) == [(second.id, "m1")]


def test_tasks_spread_to_the_machine_with_the_most_free_cpus() -> None:
    scheduler = Scheduler()
    scheduler.add_machine("small", "local", slots=2, running=[])
    scheduler.add_machine("big", "local", slots=4, running=[])
    tasks = [task() for _ in range(4)]
    for record in tasks:
        scheduler.enqueue(record)
    # Each task goes where most CPUs are free: big (4), big (3), then a tie at 2 goes to the machine that joined
    # first, then big (2 against 1).
    assert [machine for _, machine in placed_on(scheduler)] == ["big", "big", "small", "big"]
    assert [scheduler.machine(m).free for m in ("small", "big")] == [1, 1]  # type: ignore[union-attr]  # both exist


def test_a_task_that_fits_nowhere_now_is_skipped_and_keeps_its_place() -> None:
    scheduler = Scheduler()
    scheduler.add_machine("m1", "local", slots=2, running=[task()])
    large, small, later = task(cpus=2), task(), task(cpus=2)
    for record in (large, small, later):
        scheduler.enqueue(record)
    assert placed_on(scheduler) == [(small.id, "m1")]
    assert scheduler.queued("local") == 2
    scheduler.remove_machine("m1")
    scheduler.add_machine("m1", "local", slots=4, running=[])
    # The skipped tasks are still first come, first served.
    assert placed_on(scheduler) == [(large.id, "m1"), (later.id, "m1")]


def test_scanning_stops_once_every_machine_is_full_and_the_rest_stay_in_order() -> None:
    scheduler = Scheduler()
    scheduler.add_machine("m1", "local", slots=1, running=[])
    tasks = [task() for _ in range(4)]
    for record in tasks:
        scheduler.enqueue(record)
    assert placed_on(scheduler) == [(tasks[0].id, "m1")]
    scheduler.release(tasks[0])
    assert placed_on(scheduler) == [(tasks[1].id, "m1")]
    scheduler.release(tasks[1])
    assert placed_on(scheduler) == [(tasks[2].id, "m1")]


def test_a_task_larger_than_any_machine_runs_alone_on_an_idle_one() -> None:
    scheduler = Scheduler()
    busy = task()
    scheduler.add_machine("m1", "local", slots=2, running=[busy])
    busy.machine_id = "m1"
    huge = task(cpus=8)
    scheduler.enqueue(huge)
    assert scheduler.place("local") == []
    scheduler.release(busy)
    assert placed_on(scheduler) == [(huge.id, "m1")]
    machine = scheduler.machine("m1")
    assert machine is not None
    assert (machine.used, machine.free) == (8, -6)
    follower = task()
    scheduler.enqueue(follower)
    assert scheduler.place("local") == []


def test_machine_groups_do_not_share_machines_or_queues() -> None:
    scheduler = Scheduler()
    scheduler.add_machine("cpu-1", "cpu", slots=4, running=[])
    gpu_task, cpu_task = task(group="gpu"), task(group="cpu")
    scheduler.enqueue(gpu_task)
    scheduler.enqueue(cpu_task)
    assert (scheduler.queued("gpu"), scheduler.queued("cpu")) == (1, 1)
    assert placed_on(scheduler, "gpu") == []
    assert placed_on(scheduler, "cpu") == [(cpu_task.id, "cpu-1")]
    scheduler.add_machine("gpu-1", "gpu", slots=1, running=[])
    assert placed_on(scheduler, "gpu") == [(gpu_task.id, "gpu-1")]


def test_a_machine_that_rejoins_counts_the_tasks_it_still_runs() -> None:
    scheduler = Scheduler()
    running = [task(cpus=2), task()]
    scheduler.add_machine("m1", "local", slots=4, running=running)
    machine = scheduler.machine("m1")
    assert machine is not None
    assert (machine.used, machine.free, machine.task_ids) == (3, 1, {r.id for r in running})


def test_a_machine_with_no_slots_still_takes_one_cpu() -> None:
    scheduler = Scheduler()
    scheduler.add_machine("m1", "local", slots=0, running=[])
    assert scheduler.machine("m1") == MachineCapacity("m1", "local", slots=1)


def test_dequeue_takes_a_task_off_its_queue() -> None:
    scheduler = Scheduler()
    kept, killed = task(), task()
    scheduler.enqueue(kept)
    scheduler.enqueue(killed)
    scheduler.dequeue(killed)
    scheduler.dequeue(killed)  # twice: nothing more happens
    scheduler.dequeue(task(group="nowhere"))
    assert scheduler.queued("local") == 1
    scheduler.add_machine("m1", "local", slots=4, running=[])
    assert placed_on(scheduler) == [(kept.id, "m1")]


def test_release_frees_a_task_once_and_only_on_its_machine() -> None:
    scheduler = Scheduler()
    record = task(cpus=2)
    scheduler.add_machine("m1", "local", slots=4, running=[record])
    record.machine_id = "m1"
    scheduler.release(record)
    scheduler.release(record)
    machine = scheduler.machine("m1")
    assert machine is not None
    assert (machine.used, machine.task_ids) == (0, set())
    stranger = task()
    stranger.machine_id = "m1"
    scheduler.release(stranger)
    assert machine.used == 0


def test_a_removed_machine_takes_nothing_and_releases_on_it_are_ignored() -> None:
    scheduler = Scheduler()
    record = task()
    scheduler.add_machine("m1", "local", slots=1, running=[record])
    record.machine_id = "m1"
    scheduler.remove_machine("m1")
    scheduler.remove_machine("m1")
    assert scheduler.machine("m1") is None
    scheduler.release(record)
    scheduler.enqueue(task())
    assert scheduler.place("local") == []
    assert scheduler.queued("local") == 1
