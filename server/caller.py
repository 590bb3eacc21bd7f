"""Who makes a call: the kinds of key a caller can hold, and the caller as the core sees it.

Kept apart from auth.py (which checks keys) and from the gRPC edge (which carries them), so that the task core,
accounts and the watch code know who calls without knowing how the call arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_KEY = "user"
AGENT_KEY = "agent"  # a machine group's join token: it can only make new machines (AgentService.Join)
MACHINE_KEY = "machine"  # one machine's own credential, made by Join


@dataclass(frozen=True)
class Caller:
    """Who made an RPC: a user (with their key), a join token of a machine group, or one machine."""

    user: str
    admin: bool
    key_id: str
    kind: str = USER_KEY
    machine_group: str = ""

    @property
    def machine_id(self) -> str:
        """The calling machine's id; empty unless the caller holds a machine credential."""
        return self.key_id if self.kind == MACHINE_KEY else ""
