"""The policy lists' test kit: a recording fake homeserver with rooms' members and a policy
room's state, rule events as a curator writes them, and the real rule service around them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.act.executor import Executor
from bot.act.homeserver import HomeserverError
from bot.configmodel import PolicyListsConfig
from bot.errors import MNotFound
from bot.metrics import Metrics
from bot.policylists.enforce import RuleEnforcer, Surroundings
from bot.policylists.service import PolicyLists
from bot.record.policyrules import PolicyRuleRepo
from bot.record.store import Store

from action_kit import BOT, MANAGEMENT, OTHER, ROOM, FakeHomeserver

LIST = "!list:example.org"
MOD = "@mod:example.org"
SPAMMER = "@spammer:evil.org"
SPAMMER2 = "@spammer2:evil.org"
BYSTANDER = "@alice:example.org"


class PolicyHomeserver(FakeHomeserver):
    """The fake homeserver, with rooms' members and a policy room's state."""

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, set[str]] = {ROOM: {BYSTANDER, SPAMMER}, OTHER: {SPAMMER2}, MANAGEMENT: {MOD, BOT}}
        self.state: dict[str, list[dict[str, Any]]] = {LIST: []}
        self.acl: dict[str, dict[str, Any]] = {}

    async def unban(self, room_id: str, user_id: str, reason: str) -> None:
        await self._record("unban", room_id, user_id, reason)

    async def joined_members(self, room_id: str) -> set[str]:
        return set(self.members.get(room_id, set()))

    async def join(self, room: str) -> str:
        return room

    async def resolve_room(self, room: str) -> str:
        return room

    async def room_state(self, room_id: str) -> list[dict[str, Any]]:
        if room_id not in self.state:
            raise HomeserverError("HTTP 403 M_FORBIDDEN: not in room")
        return list(self.state[room_id])

    async def state_as_event(self, room_id: str, event_type: str, state_key: str) -> dict[str, Any] | None:
        """The room's current rule at the key: the last one `send` put there (the test's room state)."""
        found = [e for e in self.state.get(room_id, []) if (e["type"], e["state_key"]) == (event_type, state_key)]
        return found[-1] if found else None

    async def state_event(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        if room_id not in self.acl:
            raise MNotFound("HTTP 404 M_NOT_FOUND", status=404, errcode="M_NOT_FOUND")
        return self.acl[room_id]

    async def put_state(self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]) -> str:
        await self._record("state", room_id, event_type, state_key, content)
        if event_type == "m.room.server_acl":
            self.acl[room_id] = content
        return "$state"

    def bans(self) -> set[tuple[str, str]]:
        return {(c[1], c[2]) for c in self.calls if c[0] == "ban"}

    def unbans(self) -> set[tuple[str, str]]:
        return {(c[1], c[2]) for c in self.calls if c[0] == "unban"}


def rule_event(entity: str | None, *, key: str, n: int, type: str = "m.policy.rule.user", **content: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"recommendation": "m.ban", "reason": "spam", **content}
    if entity is not None:
        body["entity"] = entity
    return {"type": type, "state_key": key, "content": body, "room_id": LIST, "event_id": f"$rule{n}",
            "sender": "@curator:example.org"}


def removal(key: str, n: int, type: str = "m.policy.rule.user") -> dict[str, Any]:
    return {"type": type, "state_key": key, "content": {}, "room_id": LIST, "event_id": f"$gone{n}",
            "sender": "@curator:example.org"}


class Kit:
    def __init__(self, store: Store, hs: PolicyHomeserver, config: PolicyListsConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.hs = store, hs
        self.protected = [ROOM, OTHER]
        self.repo = PolicyRuleRepo(store.engine)
        self.rooms_known = True  # as once start-up has joined the protected rooms
        self.lists = PolicyLists(config, self.repo, store, is_protected=lambda r: r in self.protected,
                                 rooms_known=lambda: self.rooms_known)
        executor = Executor(hs, store, Metrics(), protected_rooms=lambda: self.protected,  # type: ignore[arg-type]
                            management_room=lambda: MANAGEMENT)
        around = Surroundings(protected=lambda: self.protected, dry_run=lambda room: False,
                              management_room=lambda: MANAGEMENT, bot_user_id=BOT, own_server="example.org")
        self.lists.bind(hs, RuleEnforcer(  # type: ignore[arg-type]
            executor, hs, store, self.repo, self.lists.index, around,  # type: ignore[arg-type]
            ban_reason=config.ban_reason, server_acl=config.server_acl, max_bans_per_rule=config.max_bans_per_rule,
            block_rooms=config.room_rules == "block", clock=clock,
        ))

    async def send(self, raw: dict[str, Any]) -> bool:
        """A rule event sent to the policy room (its state changes) and then delivered."""
        room = self.hs.state.setdefault(raw["room_id"], [])
        room[:] = [e for e in room if (e["type"], e["state_key"]) != (raw["type"], raw["state_key"])] + [raw]
        return await self.deliver(raw)

    async def deliver(self, raw: dict[str, Any]) -> bool:
        """An event as the work queue hands it over after the intake stored it."""
        result = await self.store.store_transaction(f"txn-{raw['event_id']}", [raw], wanted=self.lists.wants)
        assert result.queued, f"the intake did not keep {raw['type']}"
        return await self.lists.handle(result.queued[0])
