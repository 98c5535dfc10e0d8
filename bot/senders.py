"""Local and remote senders, PURE: what the policy does instead of account actions for a
sender of another server.

Synapse's admin API suspends, deactivates, quarantines the media of and redacts the events
of its own users only. When a rule names such an action and the sender belongs to another
server, the policy's `remote_senders` say what to do instead (by default: ban the sender in
every protected room), and optionally — after `server_acl.after` incidents from one server
within `server_acl.within` seconds — deny that server in the protected rooms'
`m.room.server_acl`:

    local_servers: null            # whose users are local; null: this homeserver's
    remote_senders:
      actions: [{ban: all}]
      server_acl: {after: 3, within: 86400}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.model import ACCOUNT_ACTIONS, ActionKind, PlannedAction
from bot.policy_actions import Action


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerAcl(_Model):
    """Deny a server in the protected rooms once it has had this many incidents this recently."""

    after: int = Field(ge=1)
    within: float = Field(gt=0)


class RemoteSenders(_Model):
    actions: tuple[Action, ...] = (PlannedAction(ActionKind.BAN, "all"),)
    server_acl: ServerAcl | None = None  # opt-in

    @field_validator("actions")
    @classmethod
    def _no_account_actions(cls, actions: tuple[PlannedAction, ...]) -> tuple[PlannedAction, ...]:
        for action in actions:
            if action.kind in ACCOUNT_ACTIONS or action.kind in (ActionKind.REVIEW, ActionKind.SERVER_ACL):
                raise ValueError(f"{action.kind.value!r} cannot be done instead of an account action for a remote sender")
        return actions


@dataclass(frozen=True)
class SenderActions:
    """The actions for this sender, and what was replaced because the sender is remote."""

    actions: tuple[PlannedAction, ...]
    remote_server: str | None = None
    replaced: tuple[PlannedAction, ...] = ()
    server_acl_after: tuple[int, float] | None = None


def server_of(user_id: str) -> str:
    """The server part of a user ID (`@a:example.org:8448` -> `example.org:8448`)."""
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def host_of(server_name: str) -> str:
    """The host of a server name (`example.org:8448` -> `example.org`, `[::1]:8448` -> `[::1]`):
    what `m.room.server_acl` entries match, since Synapse ignores the port when it checks one."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    return server_name.partition(":")[0]


def for_sender(
    actions: tuple[PlannedAction, ...], sender: str, local_servers: Iterable[str] | None, remote: RemoteSenders
) -> SenderActions:
    """The actions as they apply to `sender`: unchanged for a local one (or when nothing says
    which servers are local), the account actions replaced for a remote one."""
    if local_servers is None:
        return SenderActions(actions)
    server = server_of(sender)
    replaced = tuple(a for a in actions if a.kind in ACCOUNT_ACTIONS)
    if server in set(local_servers) or not replaced:
        return SenderActions(actions)
    kept = [a for a in actions if a.kind not in ACCOUNT_ACTIONS]
    for extra in remote.actions:
        index = next((i for i, a in enumerate(kept) if a.kind is extra.kind), None)
        if index is None:
            kept.append(extra)
        elif extra.kind is ActionKind.BAN and extra.scope == "all":
            kept[index] = extra  # the wider ban wins
    acl = None
    if remote.server_acl is not None:
        kept.append(PlannedAction(ActionKind.SERVER_ACL))
        acl = (remote.server_acl.after, remote.server_acl.within)
    return SenderActions(tuple(kept), server, replaced, acl)
