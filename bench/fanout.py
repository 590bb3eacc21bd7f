"""Fan-out under load, as JSON: `python bench/fanout.py [--quick] [--only logs,watch,snapshot]`.

Starts `simplane up` (SQLite) on temporary directories like bench/bench.py, then loads it from separate worker
processes, each holding many streams with grpc.aio in one event loop (one channel per stream, as separate
clients would):

- **logs**: `--followers` TailLogs(follow) streams of one task printing `--rate` lines/s for `--seconds`; each
  line carries its number and its print time, so every follower reports each line's latency (arrival minus print
  time) and whether it got every line exactly once, in order.
- **watch**: `--watchers` WatchTasks streams (all the user's tasks) while `--tasks` tasks are submitted over
  `--submit-seconds` and each runs `sleep --task-seconds` on an agent with a slot for each; the latency of a
  status change is its arrival minus the task's update time (when the server moved it), and every watcher must
  see every task's every status.
- **snapshot**: the time for one WatchTasks stream to deliver its snapshot, with `--snapshot-sizes` tasks stored
  (written straight into the stopped server's database), of every task and of the default (active tasks and the
  100 latest ended ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

import simplane
from bench import Up, ms, percentile
from simplane._api.v1 import task_pb2, task_pb2_grpc

W = task_pb2.WatchEventType
SUCCEEDED = task_pb2.TASK_STATUS_SUCCEEDED
LOG_PROGRAM = (
    "import os, time\n"
    "print('start', flush=True)\n"
    "while not os.path.exists({go!r}):\n"
    "    time.sleep(0.01)\n"
    "begin = time.time()\n"
    "for i in range({lines}):\n"
    "    print(i, time.time_ns(), flush=True)\n"
    "    time.sleep(max(0, begin + (i + 1) / {rate} - time.time()))\n"
)


def _metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


async def _follow(address: str, api_key: str, task_id: str, lines: int, ready) -> dict:
    """One follower: latencies of numbered lines, and whether it got each exactly once in order."""
    latencies: list[float] = []
    expected = 0
    in_order = True
    buffered = b""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = task_pb2_grpc.TaskServiceStub(channel)
        call = stub.TailLogs(
            task_pb2.TailLogsRequest(
                task_id=task_id, follow=True, cursors=[task_pb2.LogCursor(stream=task_pb2.LOG_STREAM_STDOUT)]
            ),
            metadata=_metadata(api_key),
        )
        async for frame in call:
            if not frame.HasField("chunk"):
                continue
            now = time.time_ns()
            buffered += frame.chunk.data
            *complete, buffered = buffered.split(b"\n")
            for line in complete:
                if line == b"start":
                    ready()
                    continue
                number, printed = line.split()
                if int(number) != expected:
                    in_order = False
                expected = int(number) + 1
                latencies.append((now - int(printed)) / 1e9)
    return {"latencies": latencies, "complete": in_order and expected == lines and len(latencies) == lines}


async def _watch(address: str, api_key: str, ready, ids: asyncio.Future[list[str]], result: dict) -> None:
    """One watcher, until it saw each of `ids` end: latencies of status changes, and each task's statuses seen."""
    latencies: list[float] = result.setdefault("latencies", [])
    seen: dict[str, list[int]] = result.setdefault("seen", {})
    ended: set[str] = set()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = task_pb2_grpc.TaskServiceStub(channel)
        call = stub.WatchTasks(task_pb2.WatchTasksRequest(), metadata=_metadata(api_key))
        async for event in call:
            if event.type == W.WATCH_EVENT_TYPE_SNAPSHOT_END:
                ready()
            elif event.type == W.WATCH_EVENT_TYPE_CHANGE:
                now = time.time_ns()
                statuses = seen.setdefault(event.task.id, [])
                if not statuses or statuses[-1] != event.task.status:
                    statuses.append(event.task.status)
                    latencies.append((now - event.task.update_time.ToNanoseconds()) / 1e9)
                if event.task.status == SUCCEEDED:
                    ended.add(event.task.id)
            if ids.done() and ended.issuperset(ids.result()):
                break
        call.cancel()


async def _worker(kind: str, address: str, api_key: str, count: int, task_id: str, lines: int) -> None:
    """A load process: `count` streams in one event loop; says "ready" once all are live.

    A watch ends once it saw every task named on stdin end, or a minute after they were named."""
    pending = count

    def ready() -> None:
        nonlocal pending
        pending -= 1
        if pending == 0:
            print("ready", flush=True)

    results: list[dict]
    if kind == "logs":
        results = await asyncio.gather(*(_follow(address, api_key, task_id, lines, ready) for _ in range(count)))
    else:
        loop = asyncio.get_running_loop()
        ids: asyncio.Future[list[str]] = loop.create_future()

        def take_ids() -> None:
            if not ids.done():
                ids.set_result(json.loads(sys.stdin.readline()))

        loop.add_reader(sys.stdin.fileno(), take_ids)
        results = [{} for _ in range(count)]
        watches = [asyncio.ensure_future(_watch(address, api_key, ready, ids, result)) for result in results]
        await ids
        _, late = await asyncio.wait(watches, timeout=60)
        for watch in late:
            watch.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
    print(json.dumps({"streams": results, "cpu_seconds": time.process_time()}), flush=True)


class Workers:
    """Load processes running `_worker`, spread evenly over `total` streams."""

    def __init__(self, processes: int, nice: int, total: int, *args: str) -> None:
        shares = [total // processes + (i < total % processes) for i in range(processes)]
        self.processes = [
            subprocess.Popen(
                ["nice", "-n", str(nice), sys.executable, __file__, "--worker", *args[:3], str(share), *args[3:]],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for share in shares
            if share
        ]

    def wait_ready(self, timeout: float) -> float:
        started = time.monotonic()
        for process in self.processes:
            assert process.stdout is not None  # started with stdout=PIPE
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a worker failed to start its streams: {line!r}")
            if time.monotonic() - started > timeout:
                raise RuntimeError("workers took too long to start their streams")
        return time.monotonic() - started

    def results(self, task_ids: list[str] | None = None) -> list[dict]:
        """What each stream saw; a watch stops once it saw every one of task_ids end (or after a minute)."""
        found = []
        self.cpu_seconds = 0.0
        for process in self.processes:
            assert process.stdin is not None and process.stdout is not None  # started with both piped
            if task_ids is not None:
                process.stdin.write(json.dumps(task_ids) + "\n")
            process.stdin.close()
            report = json.loads(process.stdout.readline())
            found.extend(report["streams"])
            self.cpu_seconds += report["cpu_seconds"]
            process.wait()
        return found


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(latencies: list[float]) -> dict:
    return {
        "samples": len(latencies),
        "p50_ms": ms(percentile(latencies, 0.5)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(max(latencies)),
    }


def logs(up: Up, root: Path, followers: int, rate: float, seconds: float, processes: int, nice: int) -> dict:
    lines = int(rate * seconds)
    go = root / "go"
    with up.client() as client:
        task = client.tasks.submit([sys.executable, "-c", LOG_PROGRAM.format(go=str(go), lines=lines, rate=rate)])
        workers = Workers(processes, nice, followers, "logs", up.address, up.api_key, task.id, str(lines))
        ready_seconds = workers.wait_ready(120)
        cpu = _cpu_seconds(up.process.pid)
        go.touch()
        results = workers.results()
        cpu = _cpu_seconds(up.process.pid) - cpu
        assert task.wait() == simplane.TaskStatus.SUCCEEDED
    latencies = [latency for result in results for latency in result["latencies"]]
    return {
        "followers": followers,
        "lines_per_second": rate,
        "lines": lines,
        "followers_started_seconds": round(ready_seconds, 2),
        "followers_with_every_line": sum(result["complete"] for result in results),
        "followers_with_no_line": sum(not result["latencies"] for result in results),
        "latency": _summary(latencies),
        "server_cpu_seconds": round(cpu, 2),
        "server_cpu_us_per_line_sent": round(cpu / max(1, len(latencies)) * 1e6, 1),
        "load_processes_cpu_seconds": round(workers.cpu_seconds, 2),
    }


async def _submit_spread(up: Up, count: int, seconds: float, task_seconds: float) -> list[str]:
    """Submits `count` tasks evenly over `seconds` and waits for them all to succeed."""
    began = time.perf_counter()
    async with up.async_client() as client:
        handles = []
        for i in range(count):
            handles.append(await client.tasks.submit(["sleep", str(task_seconds)], project="watch"))
            await asyncio.sleep(max(0.0, (i + 1) * seconds / count - (time.perf_counter() - began)))
        statuses = await asyncio.gather(*(handle.wait() for handle in handles))
    assert all(status == simplane.TaskStatus.SUCCEEDED for status in statuses), statuses
    return [handle.id for handle in handles]


def watch(
    up: Up, watchers: int, tasks: int, submit_seconds: float, task_seconds: float, processes: int, nice: int
) -> dict:
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simplane.cli",
            "agent",
            "--server",
            up.address,
            "--token",
            up.client().machine_groups.create_agent_token("local"),
            "--machine-group",
            "local",
            "--slots",
            str(tasks),
            "--work-dir",
            str(Path(up.env["XDG_DATA_HOME"]) / "bench-agent"),
        ],
        env=up.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers = Workers(processes, nice, watchers, "watch", up.address, up.api_key, "", "0")
        ready_seconds = workers.wait_ready(120)
        cpu = _cpu_seconds(up.process.pid)
        ids = asyncio.run(_submit_spread(up, tasks, submit_seconds, task_seconds))
        results = workers.results(ids)
        cpu = _cpu_seconds(up.process.pid) - cpu
    finally:
        agent.terminate()
        agent.wait()
    complete = 0
    for result in results:
        complete += all(result["seen"].get(task_id, [None])[-1] == SUCCEEDED for task_id in ids)
    latencies = [latency for result in results for latency in result["latencies"]]
    return {
        "watchers": watchers,
        "tasks": tasks,
        "submit_seconds": submit_seconds,
        "task_seconds": task_seconds,
        "watchers_started_seconds": round(ready_seconds, 2),
        "watchers_that_saw_every_task_end": complete,
        "status_changes_seen": len(latencies),
        "latency": _summary(latencies),
        "server_cpu_seconds": round(cpu, 2),
        "server_cpu_us_per_change_sent": round(cpu / max(1, len(latencies)) * 1e6, 1),
        "load_processes_cpu_seconds": round(workers.cpu_seconds, 2),
    }


def _store_tasks(database: Path, count: int) -> None:
    """Copies the one stored task `count - 1` times under new ids, ended, straight into SQLite."""
    connection = sqlite3.connect(database)
    columns = [row[1] for row in connection.execute("PRAGMA table_info(tasks)")]
    template = dict(zip(columns, connection.execute("SELECT * FROM tasks").fetchone(), strict=True))
    rows = []
    for i in range(count - 1):
        row = dict(template, id=f"{template['id'][:-8]}{i:08d}", request_id=None)
        rows.append(tuple(row[column] for column in columns))
    marks = ",".join("?" * len(columns))
    connection.executemany(f"INSERT INTO tasks VALUES ({marks})", rows)
    connection.commit()
    connection.close()


async def _snapshot_seconds(up: Up, limit: int) -> tuple[int, float]:
    async with grpc.aio.insecure_channel(up.address) as channel:
        stub = task_pb2_grpc.TaskServiceStub(channel)
        started = time.perf_counter()
        sent = 0
        async for event in stub.WatchTasks(
            task_pb2.WatchTasksRequest(snapshot_ended_limit=limit), metadata=_metadata(up.api_key)
        ):
            if event.type == W.WATCH_EVENT_TYPE_SNAPSHOT_END:
                return sent, time.perf_counter() - started
            sent += 1
    raise RuntimeError("the watch ended before its snapshot did")


def snapshots(root: Path, sizes: list[int]) -> list[dict]:
    found = []
    for size in sizes:
        folder = root / f"snapshot-{size}"
        up = Up(folder, agents=1)
        with up.client() as client:
            client.tasks.submit(["true"]).wait()
        up.stop()
        _store_tasks(folder / "server" / "simplane.db", size)
        up = Up(folder, agents=0)
        try:
            figures: dict = {"stored_tasks": size}
            for name, limit in (("every_task", size), ("default", 0)):
                runs = [asyncio.run(_snapshot_seconds(up, limit)) for _ in range(3)]
                figures[name] = {"sent": runs[0][0], "seconds": round(sorted(s for _, s in runs)[1], 3)}
            found.append(figures)
        finally:
            up.stop()
    return found


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, address, api_key, count, task_id, lines = sys.argv[2:8]
        asyncio.run(_worker(kind, address, api_key, int(count), task_id, int(lines)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--only", default="logs,watch,snapshot", help="which of logs,watch,snapshot to run")
    parser.add_argument("--processes", type=int, default=4, help="load processes per scenario")
    parser.add_argument(
        "--nice", type=int, default=0, help="niceness of the load processes (10: they yield the CPU to the server)"
    )
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="lines per second the followed task prints")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the followed task prints")
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--submit-seconds", type=float, default=10.0)
    parser.add_argument("--task-seconds", type=float, default=10.0)
    parser.add_argument("--snapshot-sizes", default="1000,10000,30000")
    args = parser.parse_args()
    if args.quick:
        args.followers, args.seconds, args.watchers, args.tasks = 100, 5.0, 50, 20
        args.submit_seconds, args.task_seconds, args.snapshot_sizes = 2.0, 2.0, "1000"
    only = set(args.only.split(","))
    results: dict = {
        "load_processes": {"per_scenario": args.processes, "nice": args.nice},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        if only & {"logs", "watch"}:
            up = Up(root / "load")
            try:
                if "logs" in only:
                    results["logs"] = logs(up, root, args.followers, args.rate, args.seconds, args.processes, args.nice)
                if "watch" in only:
                    results["watch"] = watch(
                        up,
                        args.watchers,
                        args.tasks,
                        args.submit_seconds,
                        args.task_seconds,
                        args.processes,
                        args.nice,
                    )
            finally:
                up.stop()
        if "snapshot" in only:
            results["snapshot"] = snapshots(root, [int(size) for size in args.snapshot_sizes.split(",")])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
