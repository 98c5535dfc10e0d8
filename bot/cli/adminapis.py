"""`modbot check`'s part on server-admin APIs: which of the Synapse admin APIs modbot can use
the running Synapse offers, and which of them the policy (and the report intake) uses.

Each API is probed with a GET that changes nothing: an endpoint Synapse has answers
something (the status, 405 for a method it does not take, 404 M_NOT_FOUND for an unknown
id); one it lacks answers 404 M_UNRECOGNIZED.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from mautrix.api import Method

from ..act.homeserver import Homeserver, HomeserverError
from ..config import Config
from ..model import ActionKind
from ..policy import Policy


@dataclass(frozen=True)
class AdminApi:
    name: str
    probe: str  # a GET path; {bot} is the bot's user ID, {room} a room ID
    since: str  # the Synapse version that added it
    kinds: frozenset[ActionKind] = frozenset()


APIS = (
    AdminApi("suspend", "/_synapse/admin/v1/suspend/{bot}", "1.122", frozenset({ActionKind.SUSPEND})),
    AdminApi("deactivate", "/_synapse/admin/v1/deactivate/{bot}", "any", frozenset({ActionKind.DEACTIVATE})),
    AdminApi("user media quarantine", "/_synapse/admin/v1/user/{bot}/media/quarantine", "1.48", frozenset({ActionKind.QUARANTINE_USER_MEDIA})),
    AdminApi("redact a user's events", "/_synapse/admin/v1/user/redact_status/modbot-probe", "1.116", frozenset({ActionKind.REDACT_USER})),
    AdminApi("block a room", "/_synapse/admin/v1/rooms/{room}/block", "1.48", frozenset({ActionKind.TAKEDOWN_ROOM})),
    AdminApi("delete a room", "/_synapse/admin/v2/rooms/delete_status/modbot-probe", "1.48", frozenset({ActionKind.TAKEDOWN_ROOM})),
    AdminApi("event reports", "/_synapse/admin/v1/event_reports", "1.20"),
    AdminApi("user reports", "/_synapse/admin/v1/user_reports", "1.152"),
    AdminApi("fetch any event", "/_synapse/admin/v1/fetch_event/$modbot-probe", "1.130"),
)


def policy_kinds(policy: Policy) -> set[ActionKind]:
    """Every action kind a rule (global or a room's) or the remote-sender settings name."""
    rules = list(policy.rules) + [r for room in policy.rooms.values() for r in room.rules or ()]
    kinds = {a.kind for rule in rules for a in rule.actions}
    kinds.update(a.kind for a in policy.remote_senders.actions)
    return kinds


def users_of(api: AdminApi, config: Config) -> list[str]:
    """Who relies on the API: the policy's actions, and the report intake."""
    users = sorted(kind.value for kind in api.kinds & policy_kinds(config.policy))
    if api.name in ("event reports", "fetch any event") and config.reports.enabled:
        users.append("reports")
    if api.name == "user reports" and config.reports.enabled:
        users.append("reports (optional)")
    return users


async def offered(hs: Homeserver, api: AdminApi, room: str) -> bool:
    path = api.probe.format(bot=quote(hs.bot_user_id, safe=""), room=quote(room, safe=""))
    try:
        await hs.probe(Method.GET, path)
    except HomeserverError as e:
        return not (e.status == 404 and e.errcode == "M_UNRECOGNIZED")
    return True


async def check_admin_apis(hs: Homeserver, config: Config, ok: Callable[[str], None], bad: Callable[[str, str], None], note: Callable[[str], None]) -> None:
    room = config.rooms.management_room or "!modbot-probe:invalid"
    if room.startswith("#"):
        try:
            room = await hs.resolve_room(room)
        except HomeserverError:
            room = "!modbot-probe:invalid"
    for api in APIS:
        users = users_of(api, config)
        used = f" (used by: {', '.join(users)})" if users else " (not used by the policy)"
        if await offered(hs, api, room):
            ok(f"admin API {api.name}: offered{used}")
        elif users and users != ["reports (optional)"]:
            bad(f"admin API {api.name}: not offered by this Synapse{used}", f"upgrade Synapse to {api.since} or later, or change the policy")
        else:
            note(f"admin API {api.name}: not offered by this Synapse (Synapse {api.since}+){used}")
