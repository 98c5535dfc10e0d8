"""The join check: whether Synapse may let a local user join a room, asked before the join.

Synapse asks spam-checker modules `user_may_join_room(user, room, is_invited)` before a
local user joins (server admins are not asked about); synapse-http-antispam forwards it
to bot/intake/antispam.py. modbot refuses two kinds of join, both from watched policy
lists (bot/policylists/):
- into a protected room, a user an `m.ban` user rule names (literal, glob or MSC4205 hash):
  the ban the appservice path would make after the join, made unnecessary;
- into a room an `m.ban` room rule names, when the operator opted in to acting on room
  rules (`policy_lists.room_rules: block`); never a protected room or the management room.

Everything else is allowed at once: the answer is a few dictionary look-ups (and the globs
of user rules), never a homeserver or database call; refusals are audited beside the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .policylists.index import RuleIndex
from .policylists.rules import ROOM, PolicyRule

# What the refused user reads: it names neither the list nor the rule.
REFUSED_JOIN = "You cannot join this room."


@dataclass(frozen=True)
class JoinAnswer:
    allow: bool
    outcome: str  # join_allowed | join_refused
    rule: PolicyRule | None = None  # the rule that refused
    why: str = ""  # for the audit, never for the user


ALLOW = JoinAnswer(True, "join_allowed")


def room_rule_for(index: RuleIndex, room_id: str) -> PolicyRule | None:
    """The first active m.ban room rule naming `room_id` (literal, glob or hash)."""
    found = [r for r in index.matching(ROOM, room_id) if r.bans]
    return found[0] if found else None


def decide_join(
    user: str, room: str, *, index: RuleIndex, is_protected: Callable[[str], bool], management_room: str | None,
    bot_user_id: str, block_rooms: bool,
) -> JoinAnswer:
    """Allow or refuse a join (pure: reads the index and the protected rooms only)."""
    if user == bot_user_id:
        return ALLOW
    protected = is_protected(room)
    if protected and index.has_user_bans():
        rules = index.bans(user)
        if rules:
            return JoinAnswer(False, "join_refused", rules[0], f"{rules[0].describe()} from {rules[0].list_room}")
    if block_rooms and not protected and room != management_room:
        rule = room_rule_for(index, room)
        if rule is not None:
            return JoinAnswer(False, "join_refused", rule, f"room blocked by {rule.describe()} from {rule.list_room}")
    return ALLOW


class JoinChecker:
    """decide_join for the endpoint, with the counts and the audit of each refusal."""

    def __init__(
        self, *, index: RuleIndex, is_protected: Callable[[str], bool], management_room: Callable[[], str | None],
        bot_user_id: str, block_rooms: Callable[[], bool], audit: Callable[[JoinAnswer, str, str], Awaitable[None]],
        note: Callable[[str], None],
    ) -> None:
        self.index = index
        self._is_protected = is_protected
        self._management_room = management_room
        self.bot_user_id = bot_user_id
        self._block_rooms = block_rooms
        self._audit = audit
        self._note = note
        self._audits: set[asyncio.Task[None]] = set()

    def check(self, user: str, room: str) -> JoinAnswer:
        answer = decide_join(
            user, room, index=self.index, is_protected=self._is_protected, management_room=self._management_room(),
            bot_user_id=self.bot_user_id, block_rooms=self._block_rooms(),
        )
        self._note(answer.outcome)
        if not answer.allow:
            # Written beside the answer: the user waits on Synapse, not on our database.
            task = asyncio.create_task(self._audit(answer, user, room), name=f"join refused {user} {room}")
            self._audits.add(task)
            task.add_done_callback(self._audits.discard)
        return answer

    async def stop(self) -> None:
        await asyncio.gather(*list(self._audits), return_exceptions=True)
