"""Places queued tasks on machines with free CPUs: first come, first served, skipping a task that fits nowhere."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from simplane.server.task_record import TaskRecord


@dataclass
class MachineCapacity:
    machine_id: str
    machine_group: str
    slots: int
    used: int = 0
    task_ids: set[str] = field(default_factory=set)

    @property
    def free(self) -> int:
        return self.slots - self.used


class Scheduler:
    def __init__(self) -> None:
        self._queues: dict[str, deque[TaskRecord]] = {}
        self._machines: dict[str, MachineCapacity] = {}

    def enqueue(self, task: TaskRecord) -> None:
        self._queues.setdefault(task.machine_group, deque()).append(task)

    def dequeue(self, task: TaskRecord) -> None:
        queue = self._queues.get(task.machine_group)
        if queue is not None and task in queue:
            queue.remove(task)

    def queued(self, machine_group: str) -> int:
        return len(self._queues.get(machine_group, ()))

    def machine(self, machine_id: str) -> MachineCapacity | None:
        return self._machines.get(machine_id)

    def add_machine(self, machine_id: str, machine_group: str, slots: int, running: list[TaskRecord]) -> None:
        capacity = MachineCapacity(machine_id, machine_group, max(1, slots))
        for task in running:
            capacity.used += task.cpus
            capacity.task_ids.add(task.id)
        self._machines[machine_id] = capacity

    def remove_machine(self, machine_id: str) -> None:
        self._machines.pop(machine_id, None)

    def release(self, task: TaskRecord) -> None:
        capacity = self._machines.get(task.machine_id)
        if capacity is not None and task.id in capacity.task_ids:
            capacity.task_ids.discard(task.id)
            capacity.used -= task.cpus

    def place(self, machine_group: str) -> list[tuple[TaskRecord, MachineCapacity]]:
        """Takes the queued tasks that fit now off the queue, each with the machine it goes to."""
        queue = self._queues.get(machine_group)
        machines = [m for m in self._machines.values() if m.machine_group == machine_group]
        if not queue or not machines:
            return []
        placed = []
        kept: deque[TaskRecord] = deque()
        while queue:
            task = queue.popleft()
            target = max(machines, key=lambda m: m.free)
            if target.free >= task.cpus or (target.used == 0 and task.cpus > target.slots):
                # A task larger than any machine still runs, alone, on an idle one.
                target.used += task.cpus
                target.task_ids.add(task.id)
                placed.append((task, target))
            else:
                kept.append(task)
                if all(m.free <= 0 for m in machines):
                    break
        kept.extend(queue)
        self._queues[machine_group] = kept
        return placed
