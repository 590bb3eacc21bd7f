"""The machine's load and memory, as reported in heartbeats."""

from __future__ import annotations

import os

from simplane._api.v1 import agent_pb2


def heartbeat() -> agent_pb2.AgentHeartbeat:
    total, available = _memory()
    return agent_pb2.AgentHeartbeat(
        load=os.getloadavg()[0], memory_total_bytes=total, memory_used_bytes=total - available
    )


def _memory() -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo; zeros where there is none."""
    fields: dict[str, int] = {}
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            for line in meminfo:
                name, _, value = line.partition(b":")
                if name in (b"MemTotal", b"MemAvailable"):
                    fields[name.decode()] = int(value.split()[0]) * 1024
    except OSError:
        return 0, 0
    return fields.get("MemTotal", 0), fields.get("MemAvailable", 0)
