"""The moderation policy: what to do when media matches something known. PURE.

A policy is parsed from YAML (inline under `policy:` in the config, or a file of its own)
into frozen models, and `decide` maps a set of verdicts about one event to a Decision.
Parsing takes text or objects already loaded; nothing here touches the clock, the network
or the logs.

    dry_run: false                  # only notify; record the rest as dry-run
    exempt:
      users: ["@trusted:example.org"]
      power_level: 100              # senders at or above this power level are exempt
    rules:                          # ordered; the first rule matching any verdict wins
      - name: known-csam
        match: {lists: [csam], kind: [exact, near], max_distance: 31}
        actions: [quarantine, redact, {ban: all}, notify]
    rooms:                          # per-room overrides; each key given replaces the global one
      "!abc:example.org": {dry_run: true}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)

from bot.model import ActionKind, Decision, EventContext, MatchKind, PlannedAction, Verdict
from bot.yamlload import ConfigError, LineMap, LocatedValueError, load_yaml, validate

# Room version 12 IDs have no server part: "!opaque" as well as "!local:server".
_ROOM_ID = re.compile(r"^![^:\s]+(:\S+)?$")
_USER_ID = re.compile(r"^@[^:\s]+:\S+$")
# The options an action takes, the default first. A review holds the media (quarantined,
# event redacted) until a moderator decides, or only flags it.
_SCOPES: dict[ActionKind, tuple[str, ...]] = {
    ActionKind.BAN: ("room", "all"),
    ActionKind.REVIEW: ("hold", "flag"),
}


def _names(values: Sequence[Any]) -> str:
    return ", ".join(getattr(value, "value", value) for value in values)


def _parse_action(value: Any) -> PlannedAction:
    """`quarantine`, `ban`, `{ban: room}`, `{ban: all}`, `review`, `{review: flag}` -> PlannedAction."""
    if isinstance(value, PlannedAction):
        return value
    scope: Any = None
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError("an action given as a mapping has exactly one key, like {ban: all}")
        ((value, scope),) = value.items()
    if not isinstance(value, str):
        raise ValueError(f"an action is a name or a one-key mapping, got {value!r}")
    try:
        kind = ActionKind(value)
    except ValueError:
        raise ValueError(f"unknown action {value!r} (expected one of {_names(ActionKind)})") from None
    scopes = _SCOPES.get(kind)
    if scopes is None:
        if scope is not None:
            raise ValueError(f"action {value!r} takes no options")
        return PlannedAction(kind)
    scope = scopes[0] if scope is None else scope
    if scope not in scopes:
        what = "scope" if kind is ActionKind.BAN else "mode"
        raise ValueError(f"unknown {kind.value} {what} {scope!r} (expected one of {_names(scopes)})")
    return PlannedAction(kind, scope)


def _action_yaml(action: PlannedAction) -> str | dict[str, str]:
    """The inverse of _parse_action, so a dumped policy is a valid policy document."""
    scopes = _SCOPES.get(action.kind)
    if scopes and action.scope != scopes[0]:
        return {action.kind.value: action.scope}
    return action.kind.value


def _parse_kind(value: Any) -> MatchKind:
    try:
        return MatchKind(value)
    except ValueError:
        raise ValueError(f"unknown match kind {value!r} (expected one of {_names(MatchKind)})") from None


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


Action = Annotated[PlannedAction, BeforeValidator(_parse_action), PlainSerializer(_action_yaml)]
Kind = Annotated[MatchKind, BeforeValidator(_parse_kind)]
Names = Annotated[tuple[str, ...] | None, BeforeValidator(_one_or_many), AfterValidator(_nonempty)]
Kinds = Annotated[tuple[Kind, ...] | None, BeforeValidator(_one_or_many), AfterValidator(_nonempty)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exempt(_Model):
    """Senders the bot never acts against."""

    users: tuple[Annotated[str, AfterValidator(_user_id)], ...] = ()
    # Senders with this power level or more are exempt; None: nobody is exempt by power.
    power_level: int | None = 100

    def reason(self, ctx: EventContext) -> str | None:
        if ctx.sender in self.users:
            return "exempt user"
        if self.power_level is not None and ctx.sender_power >= self.power_level:
            return f"power level {ctx.sender_power} >= {self.power_level}"
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

    def matches(self, verdict: Verdict) -> bool:
        if self.classifier is not None and verdict.classifier not in self.classifier:
            return False
        if self.lists is not None and verdict.list_name not in self.lists:
            return False
        if self.labels is not None and verdict.label not in self.labels:
            return False
        if self.kind is not None and verdict.kind not in self.kind:
            return False
        if self.max_distance is not None and verdict.kind is MatchKind.NEAR:
            return verdict.distance is not None and verdict.distance <= self.max_distance
        return True


class Rule(_Model):
    name: str = Field(min_length=1)
    match: Match = Match()
    actions: tuple[Action, ...]

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
# room and notifies the management room. Room admins (power level 100) are exempt.
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


@dataclass(frozen=True)
class EffectivePolicy:
    """The settings that apply in one room, overrides applied."""

    dry_run: bool
    exempt: Exempt
    rules: tuple[Rule, ...]


class Policy(_Model):
    dry_run: bool = False  # only notify; the executor records the other actions as dry-run
    exempt: Exempt = Exempt()
    rules: Rules = DEFAULT_RULES
    rooms: dict[Annotated[str, AfterValidator(_room_id)], RoomPolicy] = {}

    def for_room(self, room_id: str) -> EffectivePolicy:
        room = self.rooms.get(room_id, RoomPolicy())
        return EffectivePolicy(
            dry_run=self.dry_run if room.dry_run is None else room.dry_run,
            exempt=self.exempt if room.exempt is None else room.exempt,
            rules=self.rules if room.rules is None else room.rules,
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


def decide(verdicts: Sequence[Verdict], ctx: EventContext, policy: Policy) -> Decision:
    """What to do about one event: the first rule (in order) matching any verdict fires.

    An exempt sender gets the rule that would have fired, with no actions and the reason.
    """
    effective = policy.for_room(ctx.room_id)
    for rule in effective.rules:
        matching = tuple(verdict for verdict in verdicts if rule.match.matches(verdict))
        if not matching:
            continue
        exempt_reason = effective.exempt.reason(ctx)
        return Decision(
            rule=rule.name,
            actions=() if exempt_reason else rule.actions,
            dry_run=effective.dry_run,
            exempt_reason=exempt_reason,
            verdicts=matching,
        )
    return Decision(rule=None)


__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_RULES",
    "ConfigError",
    "EffectivePolicy",
    "Exempt",
    "Match",
    "Policy",
    "RoomPolicy",
    "Rule",
    "decide",
    "load_policy_file",
    "parse_policy",
]
