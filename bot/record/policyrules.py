"""The policy list repository: watched policy rooms, their rules, and the bans the rules made."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..policylists.rules import PolicyRule
from .db import dialect_insert, session_factory
from .tables import EventMediaRow, PolicyBanRow, PolicyListRow, PolicyRuleRow

RuleKey = tuple[str, str, str]  # (list room, event type, state key)


@dataclass(frozen=True)
class WatchedList:
    room_id: str
    source: str  # config | command
    added_by: str | None
    added_at: float
    last_update: float | None
    error: str | None
    rules: int


@dataclass(frozen=True)
class RuleBan:
    user_id: str
    room_id: str


def rule_key(rule: PolicyRule) -> RuleKey:
    return (rule.list_room, rule.event_type, rule.state_key)


class PolicyRuleRepo:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert = dialect_insert(engine)

    # --- watched rooms ---------------------------------------------------------------------

    async def watch(self, room_id: str, *, source: str, by: str | None) -> bool:
        """Record a watched room; False if it was watched already."""
        stmt = self._insert(PolicyListRow).values(
            room_id=room_id, source=source, added_by=by, added_at=self._clock()
        ).on_conflict_do_nothing(index_elements=["room_id"])
        async with self.sessions.begin() as s:
            return ((await s.execute(stmt)).rowcount or 0) == 1

    async def unwatch(self, room_id: str) -> bool:
        """Forget a room, its rules and the record of its bans (the bans themselves stay)."""
        async with self.sessions.begin() as s:
            gone = (await s.execute(delete(PolicyListRow).where(PolicyListRow.room_id == room_id))).rowcount or 0
            await s.execute(delete(PolicyRuleRow).where(PolicyRuleRow.list_room == room_id))
            await s.execute(delete(PolicyBanRow).where(PolicyBanRow.list_room == room_id))
        return gone == 1

    async def lists(self) -> list[WatchedList]:
        async with self.sessions() as s:
            counts = dict(
                (await s.execute(select(PolicyRuleRow.list_room, func.count()).group_by(PolicyRuleRow.list_room))).all()
            )
            rows = (await s.execute(select(PolicyListRow).order_by(PolicyListRow.room_id))).scalars()
            return [
                WatchedList(r.room_id, r.source, r.added_by, r.added_at, r.last_update, r.error, counts.get(r.room_id, 0))
                for r in rows
            ]

    async def mark(self, room_id: str, *, error: str | None = None, updated: bool = True) -> None:
        values: dict[str, object] = {"error": error}
        if updated:
            values["last_update"] = self._clock()
        async with self.sessions.begin() as s:
            await s.execute(update(PolicyListRow).where(PolicyListRow.room_id == room_id).values(**values))

    # --- rules -------------------------------------------------------------------------------

    async def rules(self) -> list[PolicyRule]:
        async with self.sessions() as s:
            rows = (await s.execute(select(PolicyRuleRow).join(
                PolicyListRow, PolicyListRow.room_id == PolicyRuleRow.list_room
            ))).scalars()
            return [_rule(r) for r in rows]

    async def put_rule(self, rule: PolicyRule) -> None:
        values = {
            "kind": rule.kind, "recommendation": rule.recommendation, "entity": rule.entity,
            "sha256": rule.sha256, "reason": rule.reason, "event_id": rule.event_id, "updated_at": self._clock(),
        }
        stmt = self._insert(PolicyRuleRow).values(
            list_room=rule.list_room, event_type=rule.event_type, state_key=rule.state_key, **values
        ).on_conflict_do_update(index_elements=["list_room", "event_type", "state_key"], set_=values)
        async with self.sessions.begin() as s:
            await s.execute(stmt)

    async def drop_rule(self, key: RuleKey) -> None:
        async with self.sessions.begin() as s:
            await s.execute(delete(PolicyRuleRow).where(*_is_rule(PolicyRuleRow, key)))

    # --- the bans rules made -------------------------------------------------------------------

    async def record_ban(self, key: RuleKey, user_id: str, room_id: str) -> None:
        stmt = self._insert(PolicyBanRow).values(
            list_room=key[0], event_type=key[1], state_key=key[2], user_id=user_id, room_id=room_id,
            banned_at=self._clock(),
        ).on_conflict_do_nothing()
        async with self.sessions.begin() as s:
            await s.execute(stmt)

    async def bans_of(self, key: RuleKey) -> list[RuleBan]:
        async with self.sessions() as s:
            rows = (await s.execute(select(PolicyBanRow).where(*_is_rule(PolicyBanRow, key)))).scalars()
            return [RuleBan(r.user_id, r.room_id) for r in rows]

    async def forget_bans(self, key: RuleKey, bans: Sequence[RuleBan]) -> None:
        async with self.sessions.begin() as s:
            for ban in bans:
                await s.execute(delete(PolicyBanRow).where(
                    *_is_rule(PolicyBanRow, key), PolicyBanRow.user_id == ban.user_id, PolicyBanRow.room_id == ban.room_id
                ))


    async def seen_mxcs(self, after: str | None, limit: int) -> list[str]:
        """The mxcs of media modbot has seen in events, in order, page by page (MSC4207 rules
        name media by a hash of its mxc: the only way to find it is to hash each one)."""
        query = select(EventMediaRow.mxc).distinct().order_by(EventMediaRow.mxc).limit(limit)
        if after is not None:
            query = query.where(EventMediaRow.mxc > after)
        async with self.sessions() as s:
            return list((await s.execute(query)).scalars())


def _is_rule(table: type[PolicyRuleRow] | type[PolicyBanRow], key: RuleKey) -> tuple[object, ...]:
    return (table.list_room == key[0], table.event_type == key[1], table.state_key == key[2])


def _rule(r: PolicyRuleRow) -> PolicyRule:
    return PolicyRule(
        list_room=r.list_room, event_type=r.event_type, state_key=r.state_key, kind=r.kind,
        recommendation=r.recommendation, entity=r.entity, sha256=r.sha256, reason=r.reason, event_id=r.event_id,
    )
