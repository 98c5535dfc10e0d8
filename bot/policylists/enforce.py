"""What a policy rule makes modbot do, through the executor: bans, unbans, server ACL entries, takedowns,
room blocks (opt-in).

Every action goes through `Executor.perform`: keyed (a replayed rule event or a restart
does not act twice), retried when the homeserver cannot answer now, audited. Each ban a
rule makes is recorded (record/policyrules.py) so that removing the rule lifts exactly
what it did; a user still banned by another rule stays banned, and the ban passes to it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..act.executor import Executor, txn_id_for
from ..act.homeserver import Homeserver, HomeserverError
from ..act.operations import Operation
from ..model import Decision, EventContext, Outcome
from ..record.policyrules import PolicyRuleRepo
from ..record.store import Store
from .index import RuleIndex, RuleKey, key_of
from .rules import MXC, ROOM, SERVER, USER, PolicyRule, acl_entry, bans_user

log = logging.getLogger("modbot.policylists")

# Outcomes after which the user is banned (or was already, by this same action).
_BANNED = (Outcome.OK, Outcome.SKIPPED)
# The user id recorded (record/policyrules.py) for a room a room rule blocked, not a ban.
BLOCKED_ROOM = ""
# How long a protected room's member list is reused for matching rules, seconds. A list read
# or followed brings its rules one after another, and each glob or hashed rule asked for the
# members of every protected room: rules x rooms requests. A join processed meanwhile drops
# its room's list (`joined`), so the next rule sees the joiner.
MEMBERS_TTL = 30.0


@dataclass(frozen=True)
class Surroundings:
    """What enforcement reads from the running bot, each at the moment it acts."""

    protected: Callable[[], Sequence[str]]
    dry_run: Callable[[str], bool]  # per protected room
    management_room: Callable[[], str | None]
    bot_user_id: str
    own_server: str


@dataclass(frozen=True)
class MemberCheck:
    """What a check of one room's current members against the user rules found and did."""

    room_id: str
    members: int
    banned: tuple[str, ...]  # banned now (or pending) by a rule
    refused: int  # rules that matched more members than max_bans_per_rule: not acted on
    error: str | None = None  # the members could not be listed

    def describe(self) -> str:
        if self.error is not None:
            return f"`{self.room_id}`: cannot list its members ({self.error})"
        line = f"`{self.room_id}`: {self.members} members, {len(self.banned)} banned by a policy list"
        return line + (f", {self.refused} rules refused (too many members)" if self.refused else "")


class RuleEnforcer:
    def __init__(
        self, executor: Executor, homeserver: Homeserver, store: Store, repo: PolicyRuleRepo,
        index: RuleIndex, around: Surroundings, *, ban_reason: str, server_acl: bool, max_bans_per_rule: int,
        block_rooms: bool = False, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.executor = executor
        self.hs = homeserver
        self.store = store
        self.repo = repo
        self.index = index
        self.around = around
        self.ban_reason = ban_reason
        self.server_acl = server_acl
        self.max_bans_per_rule = max_bans_per_rule
        self.block_rooms = block_rooms  # policy_lists.room_rules: block
        self._clock = clock
        self._members: dict[str, tuple[float, set[str]]] = {}  # room -> (when read, joined members)
        self._joins: dict[str, int] = {}  # room -> joins processed: a list read across one is not kept

    # --- a rule arrives ----------------------------------------------------------------------

    async def enforce(self, rule: PolicyRule) -> None:
        """Act on a rule now in the index: ban the users it names, add its ACL entry, take its media down."""
        if not rule.bans:
            return
        if rule.kind == USER:
            await self._ban_named(rule)
        elif rule.kind == SERVER and self.server_acl:
            await self._acl(rule, "deny")
        elif rule.kind == MXC:
            await self._takedown_seen(rule)
        elif rule.kind == ROOM and self.block_rooms:
            await self._block(rule)

    async def _ban_named(self, rule: PolicyRule) -> None:
        # A literal entity is banned everywhere at once, member or not (like `ban all`);
        # globs and hashes can only be matched against people modbot can see.
        targets: set[str] = set()
        if rule.entity is not None and not rule.is_glob:
            targets.add(rule.entity)
        if rule.is_glob or rule.sha256 is not None:
            for room in self.around.protected():
                try:
                    members = await self._members_of(room)
                except HomeserverError as e:
                    await self._audit("failed", f"cannot list the members of {room} for {rule.describe()}: {e}", rule)
                    continue
                targets.update(u for u in members if bans_user(rule, u))
        if self.around.bot_user_id in targets or (rule.is_glob and bans_user(rule, self.around.bot_user_id)):
            await self._audit("refused", f"{rule.describe()} names modbot itself: not acted on", rule)
            return
        if not targets:
            return
        spared = await self._untouchable()
        targets -= spared
        if len(targets) > self.max_bans_per_rule:
            await self._audit(
                "refused", f"{rule.describe()} matches {len(targets)} users, more than "
                f"policy_lists.max_bans_per_rule ({self.max_bans_per_rule}): not acted on", rule,
            )
            return
        for user in sorted(targets):
            await self.ban_everywhere(rule, user, trigger=rule.event_id, spared=spared)

    async def ban_everywhere(self, rule: PolicyRule, user: str, *, trigger: str, spared: set[str] | None = None) -> None:
        """Ban `user` in every protected room for `rule`; `trigger` (the rule's event, or a join)
        makes the action key, so the same trigger never bans twice. `spared`: _untouchable()
        when the caller has it already."""
        if user == self.around.bot_user_id or user in (spared if spared is not None else await self._untouchable()):
            return
        for room in self.around.protected():
            op = Operation("ban", {"room_id": room, "user_id": user, "reason": self._reason(rule)}, user)
            # The rule's event and the trigger, hashed: the key stays within its column whatever their length.
            cause = hashlib.sha256(f"{rule.event_id}\0{trigger}".encode()).hexdigest()[:32]
            result = await self.executor.perform(
                f"policy-ban:{cause}:{room}:{user}", op, target=user, room_id=room,
                ctx=self._ctx(trigger, room, user), decision=self._decision(rule, room),
            )
            if result.outcome in _BANNED or result.outcome is Outcome.PENDING:
                # Pending: the retry loop will ban; the removal of the rule must know to unban.
                await self.repo.record_ban(key_of(rule), user, room)

    # --- the members already in a room ------------------------------------------------------

    async def check_members(self, room: str) -> MemberCheck:
        """Ban the current members of a protected room that a user rule names.

        Joins are judged as they arrive, and a rule when it arrives; this covers the rest: a
        room just protected (its members joined before), and at start the joins Synapse never
        delivered. The rule's event is the trigger, as when the rule arrived: a check repeated
        after a crash or at the next start does not act twice."""
        try:
            members = await self._members_of(room, fresh=True)
        except HomeserverError as e:
            await self.store.audit("policylist", "failed", f"cannot list the members of {room} to check them: {e}", room_id=room)
            return MemberCheck(room, 0, (), 0, error=str(e)[:300])
        spared = await self._untouchable()
        named: dict[RuleKey, list[str]] = {}
        for user in sorted(members - spared):
            found = self.index.bans(user)
            if found:  # one rule is enough to ban, as at join
                named.setdefault(key_of(found[0]), []).append(user)
        banned: list[str] = []
        refused = 0
        for key, users in named.items():
            rule = self.index.rules[key]
            if len(users) > self.max_bans_per_rule:
                refused += 1
                await self._audit("refused", f"{rule.describe()} matches {len(users)} members of {room}, more than "
                                  f"policy_lists.max_bans_per_rule ({self.max_bans_per_rule}): not acted on", rule)
                continue
            for user in users:
                await self.store.audit("policylist", "member_matched", f"{user}, a member of {room}: {rule.describe()} "
                                       f"from {rule.list_room}", room_id=room, sender=user)
                await self.ban_everywhere(rule, user, trigger=rule.event_id, spared=spared)
                banned.append(user)
        check = MemberCheck(room, len(members), tuple(banned), refused)
        await self.store.audit("policylist", "members_checked", check.describe().replace("`", ""), room_id=room)
        return check

    # --- a rule goes -------------------------------------------------------------------------

    async def lift(self, old: PolicyRule) -> None:
        """Undo what a rule no longer in the index did (removed, or replaced by new content)."""
        key = key_of(old)
        bans = await self.repo.bans_of(key)
        kept = []
        for ban in bans:
            if ban.user_id == BLOCKED_ROOM:
                if await self._unblock(old, ban.room_id):
                    kept.append(ban)
                continue
            # `old` is out of the index; a new version of it at the same key counts like any other rule.
            still = self.index.bans(ban.user_id)
            if still:
                # Another rule bans the same user: the ban stays, and is now that rule's.
                if key_of(still[0]) == key:
                    kept.append(ban)
                else:
                    await self.repo.record_ban(key_of(still[0]), ban.user_id, ban.room_id)
                await self._audit("kept", f"{ban.user_id} stays banned in {ban.room_id}: {still[0].describe()}", old)
                continue
            op = Operation("unban", {"room_id": ban.room_id, "user_id": ban.user_id, "reason": "policy rule removed"}, ban.user_id)
            await self.executor.perform(
                f"policy-unban:{old.event_id}:{ban.room_id}:{ban.user_id}", op, target=ban.user_id, room_id=ban.room_id,
                ctx=self._ctx(old.event_id, ban.room_id, ban.user_id), decision=self._decision(old, ban.room_id),
            )
        await self.repo.forget_bans(key, [b for b in bans if b not in kept])
        if old.kind == SERVER and self.server_acl and old.bans:
            entry = acl_entry(old, self.around.own_server)
            if entry is not None and not any(acl_entry(r, self.around.own_server) == entry for r in self.index.rules.values()):
                await self._acl(old, "allow_again")
        if old.kind == MXC and old.bans:
            await self._audit("kept", f"{old.describe()} removed; media it took down stays quarantined", old)

    # --- rooms (opt-in: policy_lists.room_rules: block) ----------------------------------------

    async def _block(self, rule: PolicyRule) -> None:
        """Block the room a literal room rule names on this server (reversible: unblocked when the
        rule goes). Globs and hashes name no room to block: they refuse joins only (bot/joincheck.py)."""
        if rule.entity is None or rule.is_glob:
            await self._audit("recorded", f"{rule.describe()}: names no single room; local joins to matching rooms "
                              "are refused at join (presend.check_joins)", rule)
            return
        room = rule.entity
        if room.startswith("#"):
            try:
                room = await self.hs.resolve_room(room)
            except HomeserverError as e:
                await self._audit("failed", f"{rule.describe()}: cannot resolve the alias: {e}; not blocked", rule)
                return
        if not room.startswith("!"):
            await self._audit("refused", f"{rule.describe()}: not a room id or alias; not blocked", rule)
            return
        if room in self.around.protected() or room == self.around.management_room():
            await self._audit("refused", f"{rule.describe()} names {room}, a room modbot protects or is managed from: "
                              "never blocked", rule)
            return
        op = Operation("block_room", {"room_id": room, "block": "true"}, None)
        result = await self.executor.perform(
            f"policy-block:{rule.event_id}:{room}", op, target=room, room_id=room,
            ctx=self._ctx(rule.event_id, room, ""), decision=self._decision(rule, room),
        )
        if result.outcome in _BANNED or result.outcome is Outcome.PENDING:
            await self.repo.record_ban(key_of(rule), BLOCKED_ROOM, room)

    async def _unblock(self, old: PolicyRule, room: str) -> bool:
        """Unblock a room `old` blocked, unless another room rule still names it (then the block
        passes to that rule); True when the block stays with `old`'s key."""
        still = [r for r in self.index.matching(ROOM, room) if r.bans]
        if still:
            if key_of(still[0]) != key_of(old):
                await self.repo.record_ban(key_of(still[0]), BLOCKED_ROOM, room)
            await self._audit("kept", f"{room} stays blocked: {still[0].describe()}", old)
            return key_of(still[0]) == key_of(old)
        op = Operation("block_room", {"room_id": room, "block": "false"}, None)
        await self.executor.perform(
            f"policy-unblock:{old.event_id}:{room}", op, target=room, room_id=room,
            ctx=self._ctx(old.event_id, room, ""), decision=self._decision(old, room),
        )
        return False

    # --- server ACL and media ----------------------------------------------------------------------

    async def _acl(self, rule: PolicyRule, change: str) -> None:
        entry = acl_entry(rule, self.around.own_server)
        if entry is None:
            await self._audit("refused", f"{rule.describe()}: no server ACL entry modbot may write", rule)
            return
        for room in self.around.protected():
            op = Operation("server_acl", {"room_id": room, "change": change, "entry": entry}, None)
            await self.executor.perform(
                f"policy-acl:{rule.event_id}:{change}:{room}", op, target=entry, room_id=room,
                ctx=self._ctx(rule.event_id, room, ""), decision=self._decision(rule, room),
            )

    async def _takedown_seen(self, rule: PolicyRule) -> None:
        """Find the media modbot has seen that the rule names (hashing each mxc), and take it down."""
        after: str | None = None
        found: list[str] = []
        while page := await self.repo.seen_mxcs(after, 1000):
            found += [mxc for mxc in page if rule.matches(mxc)]
            after = page[-1]
        for mxc in found:
            await self.takedown(rule, mxc)

    async def takedown(self, rule: PolicyRule, mxc: str) -> None:
        """Quarantine the media and redact the events known to carry it (the pipeline's keys:
        media it already dealt with is not dealt with twice)."""
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        events = await self.store.events_with_media([mxc])
        room = events[0].room_id if events else ""
        op = Operation("quarantine", {"server": server, "media_id": media_id}, None)
        await self.executor.perform(
            f"quarantine:{mxc}", op, target=mxc, room_id=room or None,
            ctx=self._ctx(rule.event_id, room, ""), decision=self._decision(rule, room),
        )
        for e in events:
            key = f"redact:{e.event_id}"
            args = {"room_id": e.room_id, "event_id": e.event_id, "reason": "modbot: policy list takedown",
                    "txn_id": txn_id_for(key)}
            await self.executor.perform(
                key, Operation("redact", args, e.sender), target=e.event_id, room_id=e.room_id,
                ctx=self._ctx(e.event_id, e.room_id, e.sender), decision=self._decision(rule, e.room_id),
            )

    # --- helpers -------------------------------------------------------------------------------

    async def _untouchable(self) -> set[str]:
        """The safety team (the management room's members) and the bot: never banned by a list."""
        spared = {self.around.bot_user_id}
        room = self.around.management_room()
        if room:
            try:
                spared |= await self.hs.joined_members(room)  # never cached: a new moderator is spared at once
            except HomeserverError as e:
                log.warning("cannot read the management room's members: %s", e)
        return spared

    def joined(self, room: str) -> None:
        """A join to `room` is being processed: its cached member list may lack the joiner."""
        self._joins[room] = self._joins.get(room, 0) + 1
        self._members.pop(room, None)

    async def _members_of(self, room: str, *, fresh: bool = False) -> set[str]:
        """A protected room's joined members, read at most once per MEMBERS_TTL unless `fresh`."""
        now = self._clock()
        cached = self._members.get(room)
        if fresh or cached is None or now - cached[0] >= MEMBERS_TTL:
            joins = self._joins.get(room, 0)
            members = set(await self.hs.joined_members(room))
            # Rooms come and go (protected, unprotected): the expired entries go with each read.
            self._members = {r: v for r, v in self._members.items() if now - v[0] < MEMBERS_TTL}
            if self._joins.get(room, 0) == joins:  # no join processed while it was read
                self._members[room] = (now, members)
            return members
        return set(cached[1])

    def _reason(self, rule: PolicyRule) -> str:
        return f"{self.ban_reason}: {rule.reason}"[:300] if rule.reason else self.ban_reason

    def _decision(self, rule: PolicyRule, room: str) -> Decision:
        dry = self.around.dry_run(room) if room else False
        return Decision(rule=f"policy list {rule.list_room} rule {rule.state_key}", dry_run=dry)

    @staticmethod
    def _ctx(event_id: str, room: str, user: str) -> EventContext:
        return EventContext(event_id=event_id, room_id=room, sender=user, sender_power=0)

    async def _audit(self, outcome: str, message: str, rule: PolicyRule) -> None:
        log.info("policy list %s: %s", rule.list_room, message)
        await self.store.audit("policylist", outcome, message, event_id=rule.event_id or None, room_id=rule.list_room)
