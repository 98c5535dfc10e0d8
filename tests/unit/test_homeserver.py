"""Homeserver: retries and backoff over mautrix's HTTPAPI, error mapping, power levels.

The HTTPAPI is replaced by a fake that answers from a script: mautrix errors (built as
mautrix builds them) or JSON bodies, in order. asyncio.sleep is patched to record the
delays the client asked for, so nothing here waits.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from mautrix.api import Method
from mautrix.errors import MatrixConnectionError, MatrixRequestError, make_request_error

from bot.act.homeserver import CREATOR_POWER, Homeserver, HomeserverError, RoomPower, room_power
from bot.errors import MForbidden, MNotFound

BOT = "@modbot:example.org"
ROOM = "!room:example.org"
EVENT = "$event1:example.org"


@dataclass(frozen=True)
class Call:
    method: Method
    path: str
    content: Any
    query: dict[str, str] | None


class FakeAPI:
    """Stands in for mautrix.api.HTTPAPI: answers each request with the next scripted reply."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.calls: list[Call] = []

    async def request(
        self, method: Method, path: str, content: Any = None, query_params: dict[str, str] | None = None
    ) -> Any:
        self.calls.append(Call(method, path, content, query_params))
        assert self.replies, f"unexpected request {method} {path}"
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply


def error(status: int, errcode: str | None = None, message: str = "error", **body: Any) -> MatrixRequestError:
    """The exception mautrix raises for an HTTP error answer with this JSON body."""
    text = json.dumps({"errcode": errcode, "error": message, **body})
    return make_request_error(http_status=status, text=text, errcode=errcode, message=message)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays asked of asyncio.sleep, which returns at once."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        recorded.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return recorded


def homeserver(api: FakeAPI, **kwargs: Any) -> Homeserver:
    kwargs.setdefault("retries", 3)
    kwargs.setdefault("base_delay", 0.01)
    return Homeserver(api, BOT, **kwargs)  # type: ignore[arg-type]


# --- retries ---------------------------------------------------------------------------------


async def test_a_5xx_is_retried_and_the_answer_returned(sleeps: list[float]) -> None:
    api = FakeAPI(error(502, None, "Bad Gateway"), {"joined_rooms": [ROOM]})
    assert await homeserver(api).joined_rooms() == [ROOM]
    assert len(api.calls) == 2
    assert api.calls[0] == api.calls[1]  # the same request again
    assert len(sleeps) == 1


async def test_a_lost_connection_is_retried(sleeps: list[float]) -> None:
    api = FakeAPI(MatrixConnectionError("Cannot connect to host"), {"user_id": BOT})
    assert await homeserver(api).whoami() == BOT
    assert len(api.calls) == 2 and len(sleeps) == 1


async def test_backoff_grows_and_is_capped(sleeps: list[float]) -> None:
    api = FakeAPI(*[error(503, "M_UNKNOWN")] * 5, {"joined_rooms": []})
    await homeserver(api, retries=5, base_delay=0.01, max_delay=0.05).joined_rooms()
    assert len(sleeps) == 5
    # base * 2**attempt with +-20% jitter: 0.01, 0.02, 0.04, then the cap.
    assert 0.008 <= sleeps[0] <= 0.012
    assert sleeps[0] < sleeps[1] < sleeps[2]
    assert all(d <= 0.05 * 1.2 for d in sleeps)


async def test_a_rate_limit_waits_as_long_as_the_server_says(sleeps: list[float]) -> None:
    limited = error(429, "M_LIMIT_EXCEEDED", "Too Many Requests")
    limited.retry_after_ms = 1500  # type: ignore[attr-defined]
    api = FakeAPI(limited, {"joined_rooms": []})
    await homeserver(api, base_delay=0.01).joined_rooms()
    assert sleeps == [1.5]


async def test_the_server_given_wait_is_capped_by_max_delay(sleeps: list[float]) -> None:
    limited = error(429, "M_LIMIT_EXCEEDED", "Too Many Requests")
    limited.retry_after_ms = 3_600_000  # type: ignore[attr-defined]
    api = FakeAPI(limited, {"joined_rooms": []})
    await homeserver(api, max_delay=2.0).joined_rooms()
    assert sleeps == [2.0]


@pytest.mark.xfail(
    strict=True,
    reason="mautrix's make_request_error drops the JSON body (and headers) of an "
    "M_LIMIT_EXCEEDED answer, so retry_after_ms never reaches Homeserver: it falls back "
    "to its own backoff",
)
async def test_a_rate_limit_as_mautrix_raises_it_waits_as_long_as_the_server_says(sleeps: list[float]) -> None:
    api = FakeAPI(error(429, "M_LIMIT_EXCEEDED", "Too Many Requests", retry_after_ms=1500), {"joined_rooms": []})
    await homeserver(api, base_delay=0.01).joined_rooms()
    assert sleeps == [1.5]


async def test_a_rate_limit_without_a_wait_backs_off(sleeps: list[float]) -> None:
    api = FakeAPI(error(429, "M_LIMIT_EXCEEDED", "Too Many Requests"), {"joined_rooms": []})
    await homeserver(api, base_delay=0.01).joined_rooms()
    assert len(sleeps) == 1 and 0.008 <= sleeps[0] <= 0.012


async def test_forbidden_is_not_retried(sleeps: list[float]) -> None:
    api = FakeAPI(error(403, "M_FORBIDDEN", "You don't have permission to ban"))
    with pytest.raises(HomeserverError) as caught:
        await homeserver(api).ban(ROOM, "@spammer:example.org", "modbot: rule")
    assert caught.value.status == 403
    assert caught.value.errcode == "M_FORBIDDEN"
    assert "permission to ban" in str(caught.value)
    assert isinstance(caught.value.__cause__, MatrixRequestError)
    assert len(api.calls) == 1 and sleeps == []


async def test_an_error_answer_is_raised_as_the_class_of_its_errcode(sleeps: list[float]) -> None:
    api = FakeAPI(error(403, "M_FORBIDDEN", "no"), error(404, "M_NOT_FOUND", "no"), error(400, "M_EXCLUSIVE", "no"))
    hs = homeserver(api)
    with pytest.raises(MForbidden):
        await hs.ban(ROOM, "@spammer:example.org", "modbot: rule")
    with pytest.raises(MNotFound):
        await hs.get_event(ROOM, EVENT)
    with pytest.raises(HomeserverError) as caught:
        await hs.register_bot("somebody")
    assert type(caught.value) is HomeserverError


async def test_an_error_without_errcode_keeps_its_status(sleeps: list[float]) -> None:
    api = FakeAPI(make_request_error(http_status=400, text="not json", errcode=None, message=None))
    with pytest.raises(HomeserverError) as caught:
        await homeserver(api).joined_rooms()
    assert caught.value.status == 400 and caught.value.errcode is None
    assert sleeps == []


async def test_retries_exhausted_on_server_errors(sleeps: list[float]) -> None:
    api = FakeAPI(*[error(500, "M_UNKNOWN", "Internal server error")] * 3)
    with pytest.raises(HomeserverError) as caught:
        await homeserver(api, retries=2).joined_rooms()
    assert caught.value.status == 500
    assert len(api.calls) == 3 and len(sleeps) == 2


async def test_retries_exhausted_on_connection_errors(sleeps: list[float]) -> None:
    api = FakeAPI(*[MatrixConnectionError("Connection refused")] * 3)
    with pytest.raises(HomeserverError, match="unreachable") as caught:
        await homeserver(api, retries=2).joined_rooms()
    assert caught.value.status is None
    assert len(api.calls) == 3 and len(sleeps) == 2


# --- calls that interpret errors -----------------------------------------------------------


async def test_register_bot_accepts_an_existing_user(sleeps: list[float]) -> None:
    api = FakeAPI(error(400, "M_USER_IN_USE", "User ID already taken."))
    await homeserver(api).register_bot("modbot")
    [call] = api.calls
    assert call.method == Method.POST and call.path == "/_matrix/client/v3/register"
    assert call.content == {"type": "m.login.application_service", "username": "modbot", "inhibit_login": True}


async def test_register_bot_raises_other_errors(sleeps: list[float]) -> None:
    api = FakeAPI(error(400, "M_EXCLUSIVE", "not in the appservice namespace"))
    with pytest.raises(HomeserverError) as caught:
        await homeserver(api).register_bot("somebody")
    assert caught.value.errcode == "M_EXCLUSIVE"


async def test_is_server_admin(sleeps: list[float]) -> None:
    api = FakeAPI({"admin": True}, {"admin": False}, error(403, "M_FORBIDDEN", "You are not a server admin"))
    hs = homeserver(api)
    assert await hs.is_server_admin() is True
    assert await hs.is_server_admin() is False
    assert await hs.is_server_admin() is False  # 403: not an admin, not an error
    assert api.calls[0].path == f"/_synapse/admin/v1/users/{quote(BOT, safe='')}/admin"


async def test_is_server_admin_raises_on_other_errors(sleeps: list[float]) -> None:
    api = FakeAPI(error(404, "M_UNRECOGNIZED", "Unrecognized request"))
    with pytest.raises(HomeserverError):
        await homeserver(api).is_server_admin()


async def test_membership_is_none_when_there_is_no_member_event(sleeps: list[float]) -> None:
    api = FakeAPI(error(404, "M_NOT_FOUND", "Event not found."), {"membership": "ban"})
    hs = homeserver(api)
    assert await hs.membership(ROOM, "@x:example.org") is None
    assert await hs.membership(ROOM, "@x:example.org") == "ban"


# --- write calls -----------------------------------------------------------------------------


async def test_redact_puts_with_the_txn_id_so_a_retry_is_the_same_request(sleeps: list[float]) -> None:
    api = FakeAPI(error(504, None, "Gateway Timeout"), {"event_id": "$redaction"})
    got = await homeserver(api).redact(ROOM, EVENT, "modbot: known media", "modbot.txn123")
    assert got == "$redaction"
    first, second = api.calls
    assert first == second
    assert first.method == Method.PUT
    assert first.path == (
        f"/_matrix/client/v3/rooms/{quote(ROOM, safe='')}/redact/{quote(EVENT, safe='')}/modbot.txn123"
    )
    assert first.content == {"reason": "modbot: known media"}


async def test_ban_sends_user_and_reason(sleeps: list[float]) -> None:
    api = FakeAPI({})
    await homeserver(api).ban(ROOM, "@spammer:example.org", "modbot: rule")
    [call] = api.calls
    assert call.method == Method.POST
    assert call.path == f"/_matrix/client/v3/rooms/{quote(ROOM, safe='')}/ban"
    assert call.content == {"user_id": "@spammer:example.org", "reason": "modbot: rule"}


async def test_send_notice_puts_an_html_notice_with_the_txn_id(sleeps: list[float]) -> None:
    api = FakeAPI({"event_id": "$notice"})
    assert await homeserver(api).send_notice(ROOM, "plain", "<b>html</b>", "txn-1") == "$notice"
    [call] = api.calls
    assert call.method == Method.PUT
    assert call.path.endswith("/send/m.room.message/txn-1")
    assert call.content["msgtype"] == "m.notice"
    assert (call.content["body"], call.content["formatted_body"]) == ("plain", "<b>html</b>")


async def test_quarantine_uses_the_synapse_admin_api(sleeps: list[float]) -> None:
    api = FakeAPI({"num_quarantined": 1})
    await homeserver(api).quarantine("example.org", "abc/def")
    [call] = api.calls
    assert call.method == Method.POST
    assert call.path == "/_synapse/admin/v1/media/quarantine/example.org/abc%2Fdef"


# --- power levels ------------------------------------------------------------------------------

LEVELS = {"users": {"@mod:example.org": 50, "@owner:example.org": 100}, "users_default": 0, "ban": 60, "redact": 40}


def create_event(version: str, sender: str = "@owner:example.org", **content: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"room_version": version, **content}
    if version in {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}:
        body.setdefault("creator", sender)
    return {"type": "m.room.create", "state_key": "", "sender": sender, "content": body, "event_id": "$create"}


async def test_room_v12_creators_have_unlimited_power(sleeps: list[float]) -> None:
    create = create_event("12", additional_creators=["@co:example.org", 7])
    api = FakeAPI(LEVELS, create)
    power = await homeserver(api).room_power(ROOM)

    assert power.creators == frozenset({"@owner:example.org", "@co:example.org"})
    assert power.of("@owner:example.org") == CREATOR_POWER
    assert power.of("@co:example.org") == CREATOR_POWER
    assert power.of("@mod:example.org") == 50
    assert power.of("@nobody:example.org") == 0
    levels_call, create_call = api.calls
    assert levels_call.path == f"/_matrix/client/v3/rooms/{quote(ROOM, safe='')}/state/m.room.power_levels/"
    # The whole event, because from v11 on its sender (not its content) names the creator.
    assert create_call.path.endswith("/state/m.room.create/")
    assert create_call.query == {"format": "event"}


async def test_room_v10_creator_is_not_special(sleeps: list[float]) -> None:
    api = FakeAPI(LEVELS, create_event("10"))
    power = await homeserver(api).room_power(ROOM)
    assert power.creators == frozenset()
    assert power.of("@owner:example.org") == 100


def test_a_v12_creator_outranks_a_listed_power_level() -> None:
    power = room_power({"users": {"@owner:example.org": 100}}, {"room_version": "12"}, "@owner:example.org")
    assert power.of("@owner:example.org") == CREATOR_POWER > 100


def test_power_levels_are_parsed_with_defaults() -> None:
    power = room_power(LEVELS, {"room_version": "10"}, "@owner:example.org")
    assert (power.ban, power.redact, power.kick, power.users_default) == (60, 40, 50, 0)

    empty = room_power({}, {}, None)
    assert empty == RoomPower(users={}, users_default=0, ban=50, redact=50, kick=50, creators=frozenset())

    odd = room_power(
        {"users": {"@a:x": "75", "@b:x": None}, "users_default": "10", "ban": "junk", "redact": None},
        {"room_version": "9"},
        None,
    )
    assert odd.of("@a:x") == 75  # old rooms may hold levels as strings
    assert odd.of("@b:x") == 0
    assert odd.of("@c:x") == 10
    assert (odd.ban, odd.redact) == (50, 50)


@pytest.mark.parametrize(
    ("version", "special"),
    [("1", False), ("11", False), ("12", True), ("13", True), ("org.matrix.hydra.11", True), ("custom", False)],
)
def test_which_room_versions_give_creators_unlimited_power(version: str, special: bool) -> None:
    power = room_power({}, {"room_version": version}, "@owner:example.org")
    assert (power.of("@owner:example.org") == CREATOR_POWER) is special


async def test_redacting_a_users_events_in_no_room_is_never_sent(sleeps: list[float]) -> None:
    """Synapse's admin redact API reads an empty room list as every room the user is in."""
    api = FakeAPI()  # any request fails the test
    with pytest.raises(ValueError, match="at least one room"):
        await homeserver(api).redact_user_events("@spam:example.org", [], "spam", None)
    assert api.calls == []
    api = FakeAPI({"redact_id": "job1"})
    assert await homeserver(api).redact_user_events("@spam:example.org", [ROOM], "spam", 10) == "job1"
    assert api.calls[0].content == {"rooms": [ROOM], "reason": "spam", "limit": 10}
