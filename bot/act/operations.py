"""A policy action as data: what to ask of the homeserver, stored with the action's row.

The executor carries out an action through its Operation, and stores it (as JSON) in the
`actions` table; after a transient failure the retry loop (bot/act/retry.py) reads it back
and does the same again, also after a restart. Moderators' commands are not stored this
way: they report a failure in their reply, and the moderator runs them again.
"""

from __future__ import annotations

import asyncio
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


async def _suspend(hs: Homeserver, a: dict[str, str]) -> str:
    on = a.get("suspend", "true") == "true"
    await hs.suspend(a["user_id"], on)
    return f"{'suspended' if on else 'unsuspended'} {a['user_id']}"


async def _deactivate(hs: Homeserver, a: dict[str, str]) -> str:
    erase = a.get("erase") == "true"
    await hs.deactivate(a["user_id"], erase)
    return f"deactivated {a['user_id']}" + (" and erased" if erase else "")


async def _quarantine_user_media(hs: Homeserver, a: dict[str, str]) -> str:
    count = await hs.quarantine_user_media(a["user_id"])
    return f"quarantined {count} media of {a['user_id']}"


async def _redact_user(hs: Homeserver, a: dict[str, str]) -> str:
    rooms = [r for r in a.get("rooms", "").split("\n") if r]
    if a.get("scope") == "all":
        # Never an empty list: Synapse reads it as "every room". The rooms are those the user
        # is in now, asked at the time of the attempt.
        rooms = await hs.user_joined_rooms(a["user_id"])
    if not rooms:
        return f"no room to redact {a['user_id']}'s events in"
    job = await hs.redact_user_events(a["user_id"], rooms, a["reason"], None)
    status = await wait_redaction(hs, job)
    return f"redacting {a['user_id']}'s events in {len(rooms)} room(s): job {job} {status}"


async def wait_redaction(hs: Homeserver, job: str, *, polls: int = 60, interval: float = 1.0) -> str:
    """Follow Synapse's background redaction a while, so that the outcome says how it went."""
    for _ in range(polls):
        answer = await hs.redact_status(job)
        if answer.get("status") in ("complete", "failed"):
            failed = answer.get("failed_redactions") or {}
            return f"{answer['status']}" + (f", {len(failed)} failed" if failed else "")
        await asyncio.sleep(interval)
    return "still running"


async def _block_room(hs: Homeserver, a: dict[str, str]) -> str:
    on = a.get("block", "true") == "true"
    await hs.block_room(a["room_id"], on)
    return f"{'blocked' if on else 'unblocked'} {a['room_id']}"


async def _purge_room(hs: Homeserver, a: dict[str, str]) -> str:
    job = await hs.delete_room(a["room_id"], block=True, purge=True, message=a.get("message"))
    return f"taking {a['room_id']} down (blocked and purged, job {job})"


OPERATIONS: dict[str, Perform] = {
    "quarantine": _quarantine, "redact": _redact, "ban": _ban, "notice": _notice,
    "unban": _unban, "state": _state,
    "suspend": _suspend, "deactivate": _deactivate, "quarantine_user_media": _quarantine_user_media,
    "redact_user": _redact_user, "block_room": _block_room, "purge_room": _purge_room, "server_acl": _server_acl,
}


async def perform(hs: Homeserver, operation: Operation) -> str:
    """Ask the homeserver; returns what was done. Raises HomeserverError."""
    return await OPERATIONS[operation.op](hs, operation.args)
