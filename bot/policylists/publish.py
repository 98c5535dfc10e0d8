"""Publishing incidents to the operator's policy room, for other servers' moderation bots to follow.

Off by default. When on, each incident recorded (record/moderation.py calls `incident_recorded`)
becomes, through the executor (keyed, retried, audited):
- `m.policy.rule.user` `m.ban` for its sender, with the configured neutral reason, when modbot
  banned that sender (an exempt sender, or a rule that does not ban, is not published);
- MSC4207 `m.policy.rule.mxc` `m.takedown` for each of its media: only the SHA-256 of the mxc
  URI, and no reason, as the MSC asks.
Never the label modbot used, never a hash of the media's content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from ..act.executor import Executor
from ..act.operations import Operation
from ..configmodel import PolicyPublishConfig
from ..model import Decision, EventContext
from ..record.moderation import Incident
from .rules import BAN, TAKEDOWN, entity_hash

USER_RULE, MXC_RULE = "m.policy.rule.user", "m.policy.rule.mxc"


def user_rule(user_id: str, reason: str) -> tuple[str, dict[str, Any]]:
    """The state key and content of the rule published for a user."""
    return _state_key(user_id), {"entity": user_id, "recommendation": BAN, "reason": reason}


def mxc_rule(mxc: str) -> tuple[str, dict[str, Any]]:
    """The state key and content of the MSC4207 rule published for a piece of media."""
    return _state_key(mxc), {"hashes": {"sha256": entity_hash(mxc)}, "recommendation": TAKEDOWN}


def _state_key(entity: str) -> str:
    # Opaque (MSC2313 leaves it to the sender), stable per entity (publishing again replaces,
    # never duplicates), and without the entity itself (an mxc must not appear in clear).
    return "modbot." + hashlib.sha256(entity.encode()).hexdigest()[:40]


def banned_sender(record: dict[str, Any]) -> bool:
    sender = record.get("reported_user")
    return any(
        a.get("kind") == "ban" and a.get("target") == sender and a.get("outcome") in ("ok", "skipped")
        for a in record.get("actions") or ()
    )


class Publisher:
    def __init__(self, config: PolicyPublishConfig, executor: Callable[[], Executor | None]) -> None:
        self.config = config
        self._executor = executor
        self.room_id: str | None = None  # resolved (joined) at start

    @property
    def enabled(self) -> bool:
        return self.config.room is not None and (self.config.users or self.config.media)

    async def incident_recorded(self, incident: Incident) -> None:
        executor = self._executor()
        if not self.enabled or self.room_id is None or executor is None:
            return
        record = incident.record
        sender = str(record.get("reported_user") or "")
        ctx = EventContext(event_id=incident.event_id, room_id=str(record.get("room_id") or ""), sender=sender, sender_power=0)
        decision = Decision(rule=f"publish incident #{incident.id}")
        rules: list[tuple[str, str, dict[str, Any], str]] = []
        if self.config.users and sender and banned_sender(record):
            rules.append((USER_RULE, *user_rule(sender, self.config.reason), sender))
        if self.config.media:
            for m in record.get("media") or ():
                if isinstance(m.get("mxc"), str):
                    rules.append((MXC_RULE, *mxc_rule(m["mxc"]), "media of incident #%d" % incident.id))
        for event_type, state_key, content, target in rules:
            args = {"room_id": self.room_id, "type": event_type, "state_key": state_key,
                    "content": json.dumps(content, separators=(",", ":"), sort_keys=True)}
            await executor.perform(
                f"policy-publish:{self.room_id}:{event_type}:{state_key}", Operation("state", args, sender or None),
                target=target, room_id=self.room_id, ctx=ctx, decision=decision,
            )
