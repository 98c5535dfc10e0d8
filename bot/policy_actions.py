"""How a policy names its actions, PURE: `quarantine`, `{ban: all}`, `{redact_user: protected}`.

Parsing turns each into a PlannedAction (kind and scope, the scope defaulting to the first
of its options); dumping gives back the shortest form, so a dumped policy parses again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from bot.model import ActionKind, PlannedAction

# The options an action takes, the default first. A review holds the media (quarantined,
# event redacted) until a moderator decides, or only flags it. A takedown blocks the room;
# purging deletes it with its history (the evidence too), so only when written out.
SCOPES: dict[ActionKind, tuple[str, ...]] = {
    ActionKind.BAN: ("room", "all"),
    ActionKind.REVIEW: ("hold", "flag"),
    ActionKind.REDACT_USER: ("this", "protected", "all"),
    ActionKind.DEACTIVATE: ("keep", "erase"),
    ActionKind.TAKEDOWN_ROOM: ("block", "purge"),
}


# What a rule may name: a server ACL comes from `remote_senders.server_acl` only.
RULE_ACTIONS: tuple[ActionKind, ...] = tuple(k for k in ActionKind if k is not ActionKind.SERVER_ACL)


def names(values: Sequence[Any]) -> str:
    return ", ".join(getattr(value, "value", value) for value in values)


def parse_action(value: Any) -> PlannedAction:
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
    kind = next((k for k in RULE_ACTIONS if k.value == value), None)
    if kind is None:
        raise ValueError(f"unknown action {value!r} (expected one of {names(RULE_ACTIONS)})")
    scopes = SCOPES.get(kind)
    if scopes is None:
        if scope is not None:
            raise ValueError(f"action {value!r} takes no options")
        return PlannedAction(kind)
    scope = scopes[0] if scope is None else scope
    if scope not in scopes:
        what = "scope" if kind in (ActionKind.BAN, ActionKind.REDACT_USER) else "mode"
        raise ValueError(f"unknown {kind.value} {what} {scope!r} (expected one of {names(scopes)})")
    return PlannedAction(kind, scope)


def action_yaml(action: PlannedAction) -> str | dict[str, str]:
    """The inverse of parse_action, so a dumped policy is a valid policy document."""
    scopes = SCOPES.get(action.kind)
    if scopes and action.scope != scopes[0]:
        return {action.kind.value: action.scope}
    return action.kind.value


def planned_text(action: PlannedAction) -> str:
    """`ban (all)`, `redact_user (protected)`, `notify`: an action as a notice names it."""
    return f"{action.kind.value} ({action.scope})" if action.kind in SCOPES else action.kind.value


Action = Annotated[PlannedAction, BeforeValidator(parse_action), PlainSerializer(action_yaml)]
