"""The moderation policy: what to do when media matches something known. PURE.

A policy is parsed from YAML (inline under `policy:` in the config, or a file of its own)
into frozen models, and `decide` maps a set of verdicts about one event to a Decision.
Parsing takes text or objects already loaded; nothing here touches the clock, the network
or the logs.

    dry_run: false                  # only notify; record the rest as dry-run
    exempt:
      users: ["@trusted:example.org"]
      power_level: 100              # senders at or above this power level (creators too) are not banned
    rules:                          # ordered; the first rule matching any verdict wins
      - name: known-csam
        match: {lists: [csam], kind: [exact, near], max_distance: 31}
        actions: [quarantine, redact, {ban: all}, notify]
    rooms:                          # per-room overrides; each key given replaces the global one
      "!abc:example.org": {dry_run: true}
    on_failure: fail_open           # what a failed scan means when no rule says
    presend: fail_open              # a pre-send check that cannot decide in time: allow (or fail_closed: reject)

A failed scan (a classifier that answered with an error: a service down, a timeout, a
refused login) is matched to rules by classifier only, since it has no verdict to compare
with the other fields: the first rule, in order, that sets `on_failure` and whose
`match.classifier` is absent or names the failed classifier decides; if none does, the
policy's (or the room's) `on_failure` does. `fail_open` lets the media through (the
failure is audited), `review` flags it for a moderator (the media stays up), and
`fail_closed` holds it: the media is quarantined and the event redacted until a later
scan succeeds. When several classifiers fail, the strictest wins (fail_closed > review >
fail_open), and a hold adds to whatever a matching rule does. `presend` is bot/presend.py's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from bot.model import (
    CREATOR_POWER, ActionKind, Classification, Decision, EventContext,
    ACCOUNT_ACTIONS, FailureMode, MatchKind, PlannedAction, Verdict,
)
from bot.policy_actions import Action, names as _names, planned_text
from bot.senders import RemoteSenders, for_sender
from bot.yamlload import ConfigError, LineMap, LocatedValueError, load_yaml, validate

# Room version 12 IDs have no server part: "!opaque" as well as "!local:server".
_ROOM_ID = re.compile(r"^![^:\s]+(:\S+)?$")
_USER_ID = re.compile(r"^@[^:\s]+:\S+$")
E = TypeVar("E", bound=Enum)
PresendMode = Literal["fail_open", "fail_closed"]


def _enum_parser(enum: type[E], what: str) -> Callable[[Any], E]:
    def parse(value: Any) -> E:
        try:
            return enum(value)
        except ValueError:
            raise ValueError(f"unknown {what} {value!r} (expected one of {_names(list(enum))})") from None

    return parse


_parse_kind = _enum_parser(MatchKind, "match kind")
_parse_failure_mode = _enum_parser(FailureMode, "on_failure")


def _one_or_many(value: Any) -> Any:
    """`classifier: hashlist` is short for `classifier: [hashlist]`."""
    return [value] if isinstance(value, str | MatchKind) else value


def _nonempty(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    if values is not None and not values:
        raise ValueError("must not be empty; leave the field out to match anything")
    return values


def _user_id(value: str) -> str:
    if not _USER_ID.match(value):
        raise ValueError(f"not a Matrix user ID (like @name:example.org): {value!r}")
    return value


def _room_id(value: str) -> str:
    if not _ROOM_ID.match(value):
        raise ValueError(f"room overrides are keyed by room ID (like !abc:example.org), got {value!r}")
    return value


Kind = Annotated[MatchKind, BeforeValidator(_parse_kind)]
OnFailure = Annotated[FailureMode, BeforeValidator(_parse_failure_mode)]
Names = Annotated[tuple[str, ...] | None, BeforeValidator(_one_or_many), AfterValidator(_nonempty)]
Kinds = Annotated[tuple[Kind, ...] | None, BeforeValidator(_one_or_many), AfterValidator(_nonempty)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exempt(_Model):
    """Senders the bot never acts against as people (no ban); their matched media is still
    quarantined and redacted, and the management room told."""

    users: tuple[Annotated[str, AfterValidator(_user_id)], ...] = ()
    # Senders with this power level or more are exempt; None: nobody is exempt by power.
    power_level: int | None = 100

    def reason(self, ctx: EventContext) -> str | None:
        """Why the sender is exempt, in words a moderator reads in a notice; None if not."""
        if ctx.sender in self.users:
            return "listed in exempt.users"
        if self.power_level is not None and ctx.sender_power >= self.power_level:
            if ctx.sender_power >= CREATOR_POWER:
                # Room version 12: creators have unlimited power, and cannot be banned anyway.
                return f"a creator of the room (unlimited power in room version 12; exempt.power_level is {self.power_level})"
            return f"power level {ctx.sender_power} >= exempt.power_level {self.power_level}"
        return None


class Match(_Model):
    """Which verdicts a rule applies to: every given field must match; omitted ones match anything."""

    classifier: Names = None
    lists: Names = None
    labels: Names = None
    kind: Kinds = None
    # Near matches farther than this (Hamming distance) don't match; exact matches always do.
    # A near match of unknown distance doesn't satisfy a given bound.
    max_distance: int | None = Field(default=None, ge=0)
    # Verdicts that carry a score below this don't match; verdicts without one are not held
    # to it (hash matches have no score).
    min_score: float | None = None

    def matches(self, verdict: Verdict) -> bool:
        if self.classifier is not None and verdict.classifier not in self.classifier:
            return False
        if self.lists is not None and verdict.list_name not in self.lists:
            return False
        if self.labels is not None and verdict.label not in self.labels:
            return False
        if self.kind is not None and verdict.kind not in self.kind:
            return False
        if self.min_score is not None and verdict.score is not None and verdict.score < self.min_score:
            return False
        if self.max_distance is not None and verdict.kind is MatchKind.NEAR:
            return verdict.distance is not None and verdict.distance <= self.max_distance
        return True

    def covers_failure_of(self, classifier: str) -> bool:
        """Whether a failed scan by `classifier` falls under this match (by classifier only)."""
        return self.classifier is None or classifier in self.classifier


class Rule(_Model):
    name: str = Field(min_length=1)
    match: Match = Match()
    actions: tuple[Action, ...]
    # What a failed scan by a classifier this rule covers means; None: this rule says
    # nothing about failures (the next rule, or the policy's on_failure, decides).
    on_failure: OnFailure | None = None

    @field_validator("actions")
    @classmethod
    def _each_action_once(cls, actions: tuple[PlannedAction, ...]) -> tuple[PlannedAction, ...]:
        # Checked here, not with min_length, which would also count the items that failed.
        if not actions:
            raise ValueError("must not be empty")
        seen: set[ActionKind] = set()
        for index, action in enumerate(actions):
            if action.kind in seen:
                raise LocatedValueError(f"action {action.kind.value!r} is given twice", (index,))
            seen.add(action.kind)
        return actions


def _unique_rule_names(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.name in seen:
            raise LocatedValueError(f"duplicate rule name {rule.name!r}", (index, "name"))
        seen.add(rule.name)
    return rules


Rules = Annotated[tuple[Rule, ...], AfterValidator(_unique_rule_names)]

# The policy used when none is configured, and the rules of a policy that gives none:
# any verdict at all quarantines the media, redacts the event, bans the sender from the
# room and notifies the management room. Room admins (power level 100) and, in room version
# 12, creators are exempt: they are not banned, but their media is removed all the same.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        name="known-media",
        actions=(
            PlannedAction(ActionKind.QUARANTINE),
            PlannedAction(ActionKind.REDACT),
            PlannedAction(ActionKind.BAN, "room"),
            PlannedAction(ActionKind.NOTIFY),
        ),
    ),
)


class RoomPolicy(_Model):
    """A room's overrides; each key given replaces the global one for that room."""

    dry_run: bool | None = None
    exempt: Exempt | None = None
    rules: Rules | None = None
    on_failure: OnFailure | None = None
    presend: PresendMode | None = None


@dataclass(frozen=True)
class EffectivePolicy:
    """The settings that apply in one room, overrides applied."""

    dry_run: bool
    exempt: Exempt
    rules: tuple[Rule, ...]
    on_failure: FailureMode = FailureMode.FAIL_OPEN

    def failure_mode(self, classifier: str) -> tuple[FailureMode, str]:
        """What a failed scan by `classifier` means, and the rule that says so."""
        for rule in self.rules:
            if rule.on_failure is not None and rule.match.covers_failure_of(classifier):
                return rule.on_failure, rule.name
        return self.on_failure, FAILURE_DEFAULT_RULE


class Policy(_Model):
    dry_run: bool = False  # only notify; the executor records the other actions as dry-run
    exempt: Exempt = Exempt()
    rules: Rules = DEFAULT_RULES
    rooms: dict[Annotated[str, AfterValidator(_room_id)], RoomPolicy] = {}
    # What a failed scan means when no rule with `on_failure` covers the failed classifier.
    on_failure: OnFailure = FailureMode.FAIL_OPEN
    # Servers whose users are local (account actions apply); None: the homeserver's own.
    local_servers: tuple[str, ...] | None = None
    remote_senders: RemoteSenders = RemoteSenders()  # instead of account actions (bot/senders.py)
    presend: PresendMode = "fail_open"  # a pre-send check that cannot decide: allow, or reject (fail_closed)

    def for_room(self, room_id: str) -> EffectivePolicy:
        room = self.rooms.get(room_id, RoomPolicy())
        return EffectivePolicy(
            dry_run=self.dry_run if room.dry_run is None else room.dry_run,
            exempt=self.exempt if room.exempt is None else room.exempt,
            rules=self.rules if room.rules is None else room.rules,
            on_failure=self.on_failure if room.on_failure is None else room.on_failure,
        )


DEFAULT_POLICY = Policy()


def parse_policy(data: Any, *, source: str = "<policy>", lines: LineMap | None = None) -> Policy:
    """Validate a loaded policy document; `lines` (from yamlload) lets errors name lines.

    `None` (an empty document) is the default policy. Raises ConfigError.
    """
    if data is None:
        return DEFAULT_POLICY
    return validate(Policy, data, source=source, lines=lines)


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises ConfigError naming the file and lines."""
    doc = load_yaml(path)
    return parse_policy(doc.data, source=doc.source, lines=doc.lines)


# The rule name a decision carries when the policy's own `on_failure` applied.
FAILURE_DEFAULT_RULE = "on_failure"
# What each failure mode does. A review of a failed scan only flags the media: holding it
# until a scan succeeds is what fail_closed is for.
FAILURE_ACTIONS: dict[FailureMode, tuple[PlannedAction, ...]] = {
    FailureMode.FAIL_OPEN: (),
    FailureMode.REVIEW: (PlannedAction(ActionKind.REVIEW, "flag"),),
    FailureMode.FAIL_CLOSED: (
        PlannedAction(ActionKind.QUARANTINE),
        PlannedAction(ActionKind.REDACT),
        PlannedAction(ActionKind.NOTIFY),
    ),
}
_STRICTNESS = (FailureMode.FAIL_OPEN, FailureMode.REVIEW, FailureMode.FAIL_CLOSED)
# Actions against a person, which an exemption spares; every other action is on the media
# (or tells the moderators) and is taken whoever posted it.
PERSON_ACTIONS: frozenset[ActionKind] = frozenset({ActionKind.BAN, ActionKind.SERVER_ACL, *ACCOUNT_ACTIONS})


def with_dry_run(policy: Policy, overrides: Mapping[str | None, bool]) -> Policy:
    """The policy with dry-run switched by moderators: key None for everywhere, else a room ID.

    Dry run switched on everywhere (the emergency stop) also covers rooms whose config says
    `dry_run: false`; switched off everywhere, rooms configured to dry-run keep doing so. A
    switch for one room beats the one for everywhere.
    """
    rooms = dict(policy.rooms)
    if overrides.get(None) is True:
        rooms = {room: room_policy.model_copy(update={"dry_run": None}) for room, room_policy in rooms.items()}
    for room, on in overrides.items():
        if room is not None:
            rooms[room] = rooms.get(room, RoomPolicy()).model_copy(update={"dry_run": on})
    dry_run = overrides.get(None, policy.dry_run)
    return policy.model_copy(update={"dry_run": dry_run, "rooms": rooms})


def decide(
    verdicts: Sequence[Verdict],
    ctx: EventContext,
    policy: Policy,
    failures: Sequence[Classification] = (),
    *,
    home_server: str | None = None,
) -> Decision:
    """What to do about one event: the first rule (in order) matching any verdict fires.

    `failures` are classifications that ended in an error; each gets the `on_failure` of
    the first rule covering its classifier (see the module docstring), the strictest wins,
    and its actions are added to the fired rule's. An exempt sender is spared the actions
    against the person (a ban) but not those on the media (quarantine, redaction, a hold,
    a review); when a rule fired on a verdict the management room is always told, so the
    exempt sender's match gets a notice even under a rule without `notify`.
    """
    effective = policy.for_room(ctx.room_id)
    fired: Rule | None = None
    matching: tuple[Verdict, ...] = ()
    for rule in effective.rules:
        matching = tuple(verdict for verdict in verdicts if rule.match.matches(verdict))
        if matching:
            fired = rule
            break
    failed = tuple(f for f in failures if f.error)
    mode: FailureMode | None = None
    failure_rule = None
    for failure in failed:
        this_mode, this_rule = effective.failure_mode(failure.classifier)
        if mode is None or _STRICTNESS.index(this_mode) > _STRICTNESS.index(mode):
            mode, failure_rule = this_mode, this_rule
    if fired is None and mode is None:
        return Decision(rule=None)
    actions = fired.actions if fired is not None else ()
    if mode is not None:
        kinds = {action.kind for action in actions}
        actions += tuple(a for a in FAILURE_ACTIONS[mode] if a.kind not in kinds)
    # A remote sender has no account here: the policy's remote_senders actions instead.
    local = policy.local_servers if policy.local_servers is not None else (home_server,) if home_server else None
    sender = for_sender(actions, ctx.sender, local, policy.remote_senders)
    actions = sender.actions
    exempt_reason = effective.exempt.reason(ctx)
    spared: tuple[PlannedAction, ...] = ()
    if exempt_reason:
        spared = tuple(a for a in actions if a.kind in PERSON_ACTIONS)
        actions = tuple(a for a in actions if a.kind not in PERSON_ACTIONS)
        if fired is not None and all(a.kind is not ActionKind.NOTIFY for a in actions):
            actions += (PlannedAction(ActionKind.NOTIFY),)
    return Decision(
        rule=fired.name if fired is not None else failure_rule,
        actions=actions,
        dry_run=effective.dry_run,
        exempt_reason=exempt_reason,
        spared=spared,
        verdicts=matching if fired is not None else (),
        failures=failed,
        on_failure=mode,
        remote_server=sender.remote_server,
        replaced=sender.replaced,
        server_acl_after=sender.server_acl_after,
    )


def outcome(d: Decision) -> str:
    """A decision's audit outcome: no_rule, exempt, act, dry_run, or the failure mode of one on failed scans alone."""
    if d.rule is None:
        return "no_rule"
    if d.exempt_reason:
        return "exempt"
    if not d.verdicts and d.on_failure is not None:
        return "dry_run" if d.dry_run and d.acts else d.on_failure.value
    return "dry_run" if d.dry_run else "act"


def describe(d: Decision) -> str:
    """A decision in one audit line: rule, actions (a ban's or review's scope), what was spared, failed scans."""
    failed = ""
    if d.failures:
        mode = d.on_failure.value if d.on_failure else ""
        failed = f"; scan failed ({mode}): " + "; ".join(f"{f.classifier}: {f.error}" for f in d.failures)
    if d.rule is None:
        return "matches found but no policy rule applies"
    exempt = ""
    if d.exempt_reason:
        spared = ", ".join(a.kind.value for a in d.spared) or "nothing"
        exempt = f"; the sender is exempt ({d.exempt_reason}), spared: {spared}"
    if not d.actions:
        return f"rule {d.rule}: nothing to do, the media is let through{failed}"
    actions = ", ".join(planned_text(a) for a in d.actions)
    if d.replaced:
        exempt += f"; remote sender ({d.remote_server}) instead of: " + ", ".join(planned_text(a) for a in d.replaced)
    return f"rule {d.rule}{' [dry run]' if d.dry_run else ''}: {actions}{exempt}{failed}"


__all__ = [
    "DEFAULT_POLICY", "DEFAULT_RULES", "FAILURE_ACTIONS", "FAILURE_DEFAULT_RULE", "PERSON_ACTIONS", "ConfigError",
    "EffectivePolicy", "Exempt", "Match", "Policy", "PresendMode", "RoomPolicy", "Rule", "decide", "describe",
    "load_policy_file", "outcome", "parse_policy", "with_dry_run",
]
