"""simplane's speed on this machine, as JSON: `python bench/bench.py [--quick]`.

Starts `simplane up` (SQLite, one local agent) on temporary directories and measures what a user feels:
trivial-task latency, task throughput, log latency and throughput (beside a plain pipe as the floor), storage
transfers (beside a durable local copy), idle memory and start-up time. Targets are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import simplane

READY = re.compile(r"simplane is up: grpc=(\S+) console=(\S+)")


class Up:
    """`simplane up` in a subprocess, on temporary directories."""

    def __init__(self, root: Path, agents: int = 1) -> None:
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "XDG_DATA_HOME": str(root / "data")}
        for name in ("SIMPLANE_ADDRESS", "SIMPLANE_API_KEY"):
            self.env.pop(name, None)
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simplane.cli",
                "up",
                "--address",
                "127.0.0.1:0",
                "--http-address",
                "127.0.0.1:0",
                "--data-dir",
                str(root / "server"),
                "--agents",
                str(agents),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        assert self.process.stdout is not None  # started with stdout=PIPE
        for line in self.process.stdout:
            match = READY.search(line)
            if match:
                self.address, self.console_url = match.group(1), match.group(2)
                break
        else:
            raise RuntimeError(f"simplane up exited with {self.process.wait()}")
        self.ready_seconds = time.perf_counter() - started
        config = (root / "config" / "simplane" / "config.toml").read_text()
        key = re.search(r'api_key = "([^"]+)"', config)
        if key is None:
            raise RuntimeError(f"no api_key in the config simplane up wrote:\n{config}")
        self.api_key = key.group(1)

    def client(self) -> simplane.Client:
        return simplane.Client(address=self.address, api_key=self.api_key)

    def async_client(self) -> simplane.AsyncClient:
        return simplane.AsyncClient(address=self.address, api_key=self.api_key)

    def pss_bytes(self) -> int:
        """Proportional set size of the server and its agents."""
        pids = [self.process.pid, *_children(self.process.pid)]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        return total

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for thread in Path(f"/proc/{pid}/task").iterdir():
        for child in (thread / "children").read_text().split():
            found.append(int(child))
            found.extend(_children(int(child)))
    return found


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def trivial_latency(client: simplane.Client, count: int) -> dict:
    for _ in range(5):  # warm up connections and code paths
        client.tasks.submit(["true"]).wait()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        status = client.tasks.submit(["true"]).wait()
        samples.append(time.perf_counter() - started)
        assert status == simplane.TaskStatus.SUCCEEDED, status
    return {"tasks": count, "p50_ms": ms(percentile(samples, 0.5)), "p99_ms": ms(percentile(samples, 0.99))}


async def _throughput(up: Up, count: int) -> dict:
    async with up.async_client() as client:
        started = time.perf_counter()
        tasks = await asyncio.gather(*(client.tasks.submit(["true"], project="throughput") for _ in range(count)))
        submitted = time.perf_counter() - started
        statuses = await asyncio.gather(*(task.wait() for task in tasks))
        elapsed = time.perf_counter() - started
    failed = [s for s in statuses if s != simplane.TaskStatus.SUCCEEDED]
    assert not failed, failed[:5]
    return {
        "tasks": count,
        "seconds": round(elapsed, 3),
        "submit_seconds": round(submitted, 3),
        "tasks_per_second": round(count / elapsed, 1),
    }


LATENCY_PROGRAM = (
    "import time, sys\n"
    "end = time.time() + {seconds}\n"
    "while time.time() < end:\n"
    "    print(time.time_ns(), flush=True)\n"
    "    time.sleep(0.01)\n"
)


def log_latency(client: simplane.Client, seconds: float) -> dict:
    task = client.tasks.submit([sys.executable, "-c", LATENCY_PROGRAM.format(seconds=seconds)])
    samples = []
    for line in task.logs(follow=True):
        samples.append((time.time_ns() - int(line.text)) / 1e9)
    assert task.wait() == simplane.TaskStatus.SUCCEEDED
    return {"lines": len(samples), "p50_ms": ms(percentile(samples, 0.5)), "p99_ms": ms(percentile(samples, 0.99))}


THROUGHPUT_PROGRAM = (
    "import sys\n"
    "write = sys.stdout.buffer.write\n"
    "pad = b'x' * 89 + b'\\n'\n"
    "for start in range(0, {lines}, 1000):\n"
    "    write(b''.join(b'%09d ' % i + pad for i in range(start, min({lines}, start + 1000))))\n"
)


def log_throughput(client: simplane.Client, lines: int) -> dict:
    program = THROUGHPUT_PROGRAM.format(lines=lines)
    started = time.perf_counter()
    generator = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE)
    subprocess.run(["cat"], stdin=generator.stdout, stdout=subprocess.DEVNULL, check=True)
    assert generator.stdout is not None  # started with stdout=PIPE
    generator.stdout.close()
    generator.wait()
    floor = time.perf_counter() - started

    started = time.perf_counter()
    task = client.tasks.submit([sys.executable, "-c", program])
    expected = 0
    for line in task.logs(follow=True):
        assert int(line.text[:9]) == expected, (line.text[:20], expected)
        expected += 1
    elapsed = time.perf_counter() - started
    assert expected == lines, (expected, lines)
    return {
        "lines": lines,
        "line_bytes": 100,
        "seconds": round(elapsed, 3),
        "lines_per_second": round(lines / elapsed),
        "exactly_once_in_order": True,
        "floor_pipe_seconds": round(floor, 3),
        "floor_pipe_lines_per_second": round(lines / floor),
    }


def _durable_copy(source: Path, target: Path) -> None:
    """The floor for a transfer: each file copied on this disk and fsynced, as a store that keeps what it
    acknowledges must do at least."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            copy = target / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as reader, copy.open("wb") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
                writer.flush()
                os.fsync(writer.fileno())


def transfer(client: simplane.Client, root: Path, small_files: int, large_mib: int) -> dict:
    """Storage upload and download through the client: many small files (what each file costs: its temporary
    file, fsync, rename and row) and one large file (bytes per second), beside a durable local copy of each."""
    trees = {"small_files": root / "small", "large_file": root / "large"}
    for tree in trees.values():
        tree.mkdir()
    for index in range(small_files):
        (trees["small_files"] / f"f{index:05}.dat").write_bytes(os.urandom(4096))
    with (trees["large_file"] / "large.dat").open("wb") as large:
        for _ in range(large_mib):
            large.write(os.urandom(1 << 20))
    results: dict = {}
    for name, tree in trees.items():
        files = sum(1 for path in tree.rglob("*") if path.is_file())
        size = sum(path.stat().st_size for path in tree.rglob("*") if path.is_file())
        started = time.perf_counter()
        client.storage.upload(tree, prefix=f"bench/{name}/")
        uploaded = time.perf_counter()
        client.storage.download(f"bench/{name}/", root / f"{name}-downloaded")
        downloaded = time.perf_counter()
        _durable_copy(tree, root / f"{name}-copied")
        copied = time.perf_counter()
        results[name] = {
            "files": files,
            "mib": round(size / 2**20, 1),
            "upload_seconds": round(uploaded - started, 3),
            "download_seconds": round(downloaded - uploaded, 3),
            "floor_durable_copy_seconds": round(copied - downloaded, 3),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = parser.parse_args()
    quick = args.quick
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    with tempfile.TemporaryDirectory() as root:
        up = Up(Path(root))
        try:
            results["up_ready_seconds"] = round(up.ready_seconds, 3)
            with up.client() as client:
                client.tasks.submit(["true"]).wait()
                idle_started = time.monotonic()
                while time.monotonic() - idle_started < 2:  # let start-up garbage settle before measuring
                    time.sleep(0.1)
                results["idle_pss_mib"] = round(up.pss_bytes() / 2**20, 1)
                results["trivial_task"] = trivial_latency(client, 10 if quick else 50)
                results["throughput"] = asyncio.run(_throughput(up, 50 if quick else 500))
                results["log_latency"] = log_latency(client, 1 if quick else 5)
                results["log_throughput"] = log_throughput(client, 20_000 if quick else 200_000)
                transfers = Path(root) / "transfers"
                transfers.mkdir()
                results["transfer"] = transfer(client, transfers, 100 if quick else 1000, 16 if quick else 256)
        finally:
            up.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
