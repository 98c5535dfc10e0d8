"""A policy action as data: what to ask of the homeserver, stored with the action's row.

The executor carries out an action through its Operation, and stores it (as JSON) in the
`actions` table; after a transient failure the retry loop (bot/act/retry.py) reads it back
and does the same again, also after a restart. Moderators' commands are not stored this
way: they report a failure in their reply, and the moderator runs them again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MNotFound
from .homeserver import Homeserver

Perform = Callable[[Homeserver, dict[str, str]], Awaitable[str]]


@dataclass(frozen=True)
class Operation:
    op: str  # one of OPERATIONS
    args: dict[str, str] = field(default_factory=dict)
    sender: str | None = None  # whose event it answers: named in the audit rows of a retry

    def to_json(self) -> str:
        return json.dumps({"op": self.op, "args": self.args, "sender": self.sender}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Operation:
        data: Any = json.loads(text)
        if not isinstance(data, dict) or data.get("op") not in OPERATIONS or not isinstance(data.get("args"), dict):
            raise ValueError(f"not a stored operation: {text[:80]!r}")
        return cls(data["op"], {str(k): str(v) for k, v in data["args"].items()}, data.get("sender"))


async def _quarantine(hs: Homeserver, a: dict[str, str]) -> str:
    await hs.quarantine(a["server"], a["media_id"])
    return f"quarantined mxc://{a['server']}/{a['media_id']}"


async def _redact(hs: Homeserver, a: dict[str, str]) -> str:
    # The same txn id on every attempt: a retry of a redaction that did reach the server
    # is a no-op there.
    redaction = await hs.redact(a["room_id"], a["event_id"], a["reason"], a["txn_id"])
    return f"redacted {a['event_id']} ({redaction})"


async def _ban(hs: Homeserver, a: dict[str, str]) -> str:
    await hs.ban(a["room_id"], a["user_id"], a["reason"])
    return f"banned {a['user_id']} from {a['room_id']}"


async def _unban(hs: Homeserver, a: dict[str, str]) -> str:
    await hs.unban(a["room_id"], a["user_id"], a["reason"])
    return f"unbanned {a['user_id']} from {a['room_id']}"


async def _state(hs: Homeserver, a: dict[str, str]) -> str:
    # Setting a state event to the same content twice is harmless: a retry is safe.
    event_id = await hs.put_state(a["room_id"], a["type"], a["state_key"], json.loads(a["content"]))
    return f"{a['type']} {a['state_key']} set in {a['room_id']} ({event_id})"


async def _server_acl(hs: Homeserver, a: dict[str, str]) -> str:
    """Add (`deny`) or take out (`allow_again`) one entry of the room's server ACL, reading
    the ACL at the time: a retry, or an edit by someone else meanwhile, is not undone."""
    try:
        acl = await hs.state_event(a["room_id"], "m.room.server_acl")
    except MNotFound:
        acl = {"allow": ["*"], "deny": [], "allow_ip_literals": True}
    deny = [d for d in acl.get("deny", []) if isinstance(d, str)]
    entry = a["entry"]
    if a["change"] == "deny" and entry not in deny:
        deny.append(entry)
    elif a["change"] == "allow_again":
        deny = [d for d in deny if d != entry]
    else:
        return f"server ACL of {a['room_id']} already {'denies' if entry in deny else 'allows'} {entry}"
    await hs.put_state(a["room_id"], "m.room.server_acl", "", {**acl, "deny": deny})
    return f"server ACL of {a['room_id']}: {a['change']} {entry}"


async def _notice(hs: Homeserver, a: dict[str, str]) -> str:
    notice = await hs.send_notice(a["room_id"], a["body"], a["html"], a["txn_id"])
    return f"notice {notice} in {a['room_id']}"


OPERATIONS: dict[str, Perform] = {
    "quarantine": _quarantine, "redact": _redact, "ban": _ban, "notice": _notice,
    "unban": _unban, "state": _state, "server_acl": _server_acl,
}


async def perform(hs: Homeserver, operation: Operation) -> str:
    """Ask the homeserver; returns what was done. Raises HomeserverError."""
    return await OPERATIONS[operation.op](hs, operation.args)
