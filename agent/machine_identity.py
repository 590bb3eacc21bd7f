"""The machine an agent is: it joins its group once with a join token, then uses the credential it was given.

The machine's id and credential are kept in `machine.json` in the agent's work directory (mode 0600), so a
restarted agent is the same machine and the server settles its tasks with it at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from simplane._api.v1 import agent_pb2, agent_pb2_grpc
from simplane._protocol.backoff import Backoff

log = logging.getLogger(__name__)

FILE_NAME = "machine.json"
# Retrying cannot fix these: the token or the request is wrong, or the address is not a simplane server.
REFUSED = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


class MachineIdentityError(Exception):
    """The machine cannot join, or its stored identity cannot be read; the agent stops with this message."""


@dataclass(frozen=True)
class MachineIdentity:
    machine_id: str
    machine_group: str
    credential: str  # `sp_<machine id>_<secret>`


def path(work_dir: Path) -> Path:
    return work_dir / FILE_NAME


def load(work_dir: Path) -> MachineIdentity | None:
    """The stored identity, or None before the machine has joined."""
    try:
        fields = json.loads(path(work_dir).read_text())
        return MachineIdentity(fields["machine_id"], fields["machine_group"], fields["credential"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise MachineIdentityError(f"cannot read the machine's identity from {path(work_dir)}: {err}") from None


def forget(work_dir: Path) -> None:
    """Drops the stored identity: the agent joins again as a new machine."""
    path(work_dir).unlink(missing_ok=True)


def store(work_dir: Path, identity: MachineIdentity) -> None:
    """Writes the identity readable by this user only, replacing any other at once."""
    temporary = path(work_dir).with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(identity), file)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path(work_dir))


async def join(
    channel: grpc.aio.Channel, server: str, token: str, machine_group: str, hostname: str, version: str
) -> MachineIdentity:
    """Joins `machine_group` with the join token, retrying while the server cannot be reached."""
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    request = agent_pb2.JoinRequest(machine_group=machine_group, hostname=hostname, version=version)
    backoff = Backoff()
    outage_reported = False
    while True:
        try:
            response = await stub.Join(request, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
            return MachineIdentity(response.machine_id, machine_group, response.credential)
        except grpc.aio.AioRpcError as err:
            if err.code() in REFUSED:
                raise MachineIdentityError(
                    f"the server at {server} refused to let this machine join: {err.code().name}: {err.details()}"
                ) from err
            if not outage_reported:
                log.warning("cannot join through %s (%s: %s); retrying", server, err.code().name, err.details())
                outage_reported = True
        await asyncio.sleep(backoff.next_delay())
