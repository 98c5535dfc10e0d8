"""The policy lists modbot follows: watching rooms, reading their rules, and the events that change them.

Rules arrive two ways: the room's state, read when a room is watched and at each start
(`sync`: what changed while modbot was away), and the state events the appservice
transactions bring. Those events, and the joins to protected rooms while there are user
rules, are stored by the intake like commands (`wants`), so none is lost to a crash; the
work queue hands them to `handle`. The rules live in the database (record/policyrules.py)
and in memory (index.py) for the look-up on each join. The members already in a protected
room are checked against the rules when the room is protected and at each start
(`check_members`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..act.homeserver import Homeserver, HomeserverError
from ..configmodel import PolicyListsConfig
from ..extract import extract_media_refs
from ..record.policyrules import PolicyRuleRepo, WatchedList
from ..record.store import Store, StoredEvent
from .enforce import MemberCheck, RuleEnforcer
from .index import RuleIndex, key_of
from .rules import RULE_TYPES, PolicyRule, Refused, Removed, parse_rule

log = logging.getLogger("modbot.policylists")


@dataclass(frozen=True)
class ListStatus:
    """One watched list as `status` and `policylist list` show it."""

    room_id: str
    source: str
    rules: int
    last_update: float | None
    error: str | None

    def describe(self, now: float | None = None) -> str:
        """One line: its rules, when it last changed, and its last error."""
        now = time.time() if now is None else now
        when = "never read" if self.last_update is None else f"updated {_ago(now - self.last_update)} ago"
        line = f"`{self.room_id}` ({self.source}): {self.rules} rules, {when}"
        return line + (f"; last read failed: {self.error}" if self.error else "")


class PolicyLists:
    def __init__(
        self, config: PolicyListsConfig, repo: PolicyRuleRepo, store: Store, *,
        is_protected: Callable[[str], bool], rooms_known: Callable[[], bool],
    ) -> None:
        self.config = config
        self.repo = repo
        self.store = store
        self.is_protected = is_protected
        # False until start-up has joined the protected rooms (Controls.rooms_known): see wants.
        self.rooms_known = rooms_known
        self.index = RuleIndex()
        self.watched: set[str] = set()
        self.hs: Homeserver | None = None
        self.enforcer: RuleEnforcer | None = None
        self._applying = asyncio.Lock()
        # Watched rooms whose state the last attempt could not read (see watch_configured).
        self._unread: set[str] = set()

    async def load(self) -> None:
        """The rules as last stored: known before the intake opens, so a join is judged at once."""
        self.watched = {w.room_id for w in await self.repo.lists()}
        # In place: the enforcer holds the same index.
        for key in list(self.index.rules):
            self.index.remove(key)
        for rule in await self.repo.rules():
            self.index.put(rule)

    def bind(self, homeserver: Homeserver, enforcer: RuleEnforcer) -> None:
        self.hs = homeserver
        self.enforcer = enforcer
        enforcer.index = self.index

    # --- what the intake keeps -----------------------------------------------------------------

    def wants(self, event: dict[str, Any]) -> bool:
        """Rule events (from any room: cheap, rare, and a room watched later is read whole anyway),
        and joins to protected rooms while some user rule bans."""
        kind = event.get("type")
        if kind in RULE_TYPES:
            return "state_key" in event
        if kind == "m.room.member" and self.index.has_user_bans():
            content = event.get("content")
            # Until start-up knows the protected rooms every join is kept, and judged when
            # processed (_joined): a join Synapse delivered in that window, after modbot was
            # down, was dropped as not in a protected room (seen in CI).
            return (
                isinstance(content, dict) and content.get("membership") == "join"
                and (not self.rooms_known() or self.is_protected(str(event.get("room_id"))))
            )
        return False

    async def handle(self, event: StoredEvent) -> bool:
        """Act on an event the work queue hands over; False if it is not the policy lists' own
        (the pipeline takes it), after taking down media a rule names."""
        raw = event.event
        if event.type in RULE_TYPES:
            if event.room_id in self.watched:
                current = await self._current(raw)
                await self.apply(parse_rule(current), current)
            return True
        if event.type == "m.room.member":
            await self._joined(event)
        if self.index.has_takedowns() and await self._media_event(event):
            return True
        if event.type == "m.room.member":
            # A join with a new avatar is the pipeline's too; a plain join is only ours.
            extracted = extract_media_refs(event.event, max_refs=1)
            return not (extracted.refs or extracted.problems or extracted.dropped)
        return False

    async def _current(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The rule as the room holds it now. Events of one transaction are worked on side by side
        and a later one may finish first: acting on the current state makes the order harmless."""
        assert self.hs is not None
        try:
            now = await self.hs.state_as_event(str(raw["room_id"]), str(raw["type"]), str(raw.get("state_key")))
        except HomeserverError as e:
            log.warning("cannot read the current rule %s in %s, using the event: %s", raw.get("state_key"), raw.get("room_id"), e)
            return raw
        if now is None or not isinstance(now, dict):
            return raw
        return {**now, "room_id": raw["room_id"], "type": raw["type"], "state_key": raw.get("state_key")}

    async def _joined(self, event: StoredEvent) -> None:
        assert self.enforcer is not None
        content = event.event.get("content") or {}
        user = event.event.get("state_key")
        if content.get("membership") != "join" or not isinstance(user, str) or not self.is_protected(event.room_id):
            return
        self.enforcer.joined(event.room_id)  # before the rules are asked: see RuleEnforcer.joined
        for rule in self.index.bans(user)[:1]:  # one rule is enough to ban
            await self.store.audit(
                "policylist", "join_matched", f"{user} joined {event.room_id}: {rule.describe()} from {rule.list_room}",
                event_id=event.event_id, room_id=event.room_id, sender=user,
            )
            await self.enforcer.ban_everywhere(rule, user, trigger=event.event_id)

    async def _media_event(self, event: StoredEvent) -> bool:
        assert self.enforcer is not None
        acted = False
        for ref in extract_media_refs(event.event).refs:
            for rule in self.index.takedowns(ref.mxc)[:1]:
                await self.store.link_event_media(event.event_id, [ref])
                await self.enforcer.takedown(rule, ref.mxc)
                acted = True
        return acted

    # --- rules -------------------------------------------------------------------------------------

    async def apply(self, parsed: PolicyRule | Removed | Refused | None, raw: dict[str, Any]) -> None:
        """A rule set, changed or removed in a watched room: stored, indexed, acted on, audited.
        One at a time: a rule's removal must not overtake its arrival."""
        async with self._applying:
            await self._apply(parsed, raw)

    async def _apply(self, parsed: PolicyRule | Removed | Refused | None, raw: dict[str, Any]) -> None:
        assert self.enforcer is not None
        room = str(raw.get("room_id", ""))
        if parsed is None:
            return
        if isinstance(parsed, Refused):
            await self.store.audit(
                "policylist", "refused", f"rule {raw.get('type')} {str(raw.get('state_key'))[:80]!r} in {room}: {parsed.why}",
                event_id=raw.get("event_id"), room_id=room,
            )
            return
        key = (parsed.list_room, parsed.event_type, parsed.state_key)
        current = self.index.rules.get(key)
        if isinstance(parsed, PolicyRule) and current is not None and current.event_id == parsed.event_id:
            return  # seen already (a replay, or a sync after the event came)
        if isinstance(parsed, Removed):
            if current is None:
                return
            self.index.remove(key)
            await self.repo.drop_rule(key)
            await self.store.audit("policylist", "rule_removed", f"{current.describe()} removed from {room}",
                                   event_id=raw.get("event_id"), room_id=room)
            await self.enforcer.lift(current)
        else:
            if current is None and self.index.size_of(room) >= self.config.max_rules_per_list:
                await self.store.audit(
                    "policylist", "refused", f"{parsed.describe()} in {room}: the list already has "
                    f"policy_lists.max_rules_per_list ({self.config.max_rules_per_list}) rules", event_id=parsed.event_id,
                    room_id=room,
                )
                return
            self.index.put(parsed)
            await self.repo.put_rule(parsed)
            what = "changed" if current is not None else "added"
            await self.store.audit("policylist", f"rule_{what}", f"{parsed.describe()} in {room}: {parsed.reason[:200]}",
                                   event_id=parsed.event_id, room_id=room)
            if current is not None:
                await self.enforcer.lift(current)
            await self.enforcer.enforce(parsed)
        await self.repo.mark(room)

    async def sync(self, room_id: str) -> int:
        """Read a watched room's whole state and bring the rules up to it; returns the rule count."""
        assert self.hs is not None
        try:
            state = await self.hs.room_state(room_id)
        except HomeserverError as e:
            self._unread.add(room_id)
            await self.repo.mark(room_id, error=str(e)[:500], updated=False)
            await self.store.audit("policylist", "failed", f"cannot read {room_id}: {e}", room_id=room_id)
            return self.index.size_of(room_id)
        seen = set()
        for raw in state:
            if not isinstance(raw, dict) or raw.get("type") not in RULE_TYPES:
                continue
            raw = {**raw, "room_id": room_id}
            parsed = parse_rule(raw)
            if isinstance(parsed, PolicyRule):
                seen.add(key_of(parsed))
            await self.apply(parsed, raw)
        for old in self.index.of_list(room_id):
            if key_of(old) not in seen:  # gone while modbot was away
                await self.apply(Removed(*key_of(old)), {"room_id": room_id, "type": old.event_type})
        await self.repo.mark(room_id)
        self._unread.discard(room_id)
        return self.index.size_of(room_id)

    # --- watching ------------------------------------------------------------------------------------

    async def watch(self, room: str, *, by: str | None, source: str = "command") -> tuple[str, int]:
        """Join a policy room, follow it, and act on its rules; returns its id and rule count."""
        assert self.hs is not None
        room_id = await self.hs.join(room)
        if await self.repo.watch(room_id, source=source, by=by):
            await self.store.audit("policylist", "watched", f"{by or 'config'}: watch {room_id}", room_id=room_id, sender=by)
        self.watched.add(room_id)
        return room_id, await self.sync(room_id)

    async def unwatch(self, room: str, *, by: str) -> str:
        """Stop following a room: its rules are forgotten; bans they made stay (lift them by hand)."""
        assert self.hs is not None
        room_id = await self.hs.resolve_room(room)
        if room_id not in self.watched:
            raise KeyError(room_id)
        for rule in self.index.of_list(room_id):
            self.index.remove(key_of(rule))
        self.watched.discard(room_id)
        await self.repo.unwatch(room_id)
        await self.store.audit("policylist", "unwatched", f"{by}: unwatch {room_id}", room_id=room_id, sender=by)
        return room_id

    async def watch_configured(self, only: Collection[str] | None = None) -> set[str]:
        """The configured rooms, and a sync of every watched room (changes missed while down);
        with `only`, just the rooms named there (what an earlier call returned). Returns the
        rooms not caught up: a configured room that could not be joined, a watched room whose
        state could not be read (bot/policylists/catchup.py tries them again)."""
        synced: set[str] = set()
        failed: set[str] = set()
        for room in self.config.watch:
            if only is not None and room not in only:
                continue
            try:
                synced.add((await self.watch(room, by=None, source="config"))[0])
            except HomeserverError as e:
                failed.add(room)
                log.warning("cannot watch policy room %s: %s", room, e)
                await self.store.audit("policylist", "failed", f"cannot watch {room}: {e}")
        for room_id in sorted(self.watched - synced):
            if only is None or room_id in only:
                await self.sync(room_id)
        return failed | (self._unread & self.watched)

    async def check_members(self, rooms: Iterable[str]) -> list[MemberCheck]:
        """Ban the current members of `rooms` whom a user rule names (RuleEnforcer.check_members);
        nothing to do, and no request, while no user rule bans."""
        assert self.enforcer is not None
        if not self.index.has_user_bans():
            return []
        async with self._applying:  # not beside a rule's arrival or removal
            return [await self.enforcer.check_members(room) for room in rooms]

    async def status(self) -> Sequence[ListStatus]:
        counts = self.index.counts()
        return [list_status(w, counts.get(w.room_id, 0)) for w in await self.repo.lists()]


def list_status(w: WatchedList, rules: int | None = None) -> ListStatus:
    """A watched list's status; `rules` as counted in memory, else as stored."""
    return ListStatus(w.room_id, w.source, w.rules if rules is None else rules, w.last_update, w.error)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"
