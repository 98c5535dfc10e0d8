"""The join check (user_may_join_room): who is refused at join, and how the endpoint answers.

Real: the rule index and rule parsing, the endpoint on a loopback aiohttp server, the
audit in SQLite. Nothing of ours is stubbed; Synapse's module is played by the test's POSTs,
in the format synapse-http-antispam 0.5.1 sends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.intake.antispam import AntispamEndpoint
from bot.joincheck import REFUSED_JOIN, JoinChecker, decide_join
from bot.policylists.index import RuleIndex
from bot.policylists.rules import PolicyRule, entity_hash, parse_rule
from bot.presend import PresendCounts
from bot.record.db import create_engine, migrate
from bot.record.store import Store

LIST = "!list:example.org"
PROTECTED = "!protected:example.org"
MANAGEMENT = "!management:example.org"
ELSEWHERE = "!elsewhere:example.org"
BOT = "@modbot:example.org"
SECRET = "the-antispam-secret-0123456789"
AUTH = {"Authorization": f"Bearer {SECRET}"}
PREFIX = "/_modbot/antispam"


def rule(entity: str | None, *, key: str, type: str = "m.policy.rule.user", **content: Any) -> PolicyRule:
    body: dict[str, Any] = {"recommendation": "m.ban", "reason": "spam", **content}
    if entity is not None:
        body["entity"] = entity
    parsed = parse_rule({"type": type, "state_key": key, "content": body, "room_id": LIST, "event_id": f"${key}"})
    assert isinstance(parsed, PolicyRule)
    return parsed


def index() -> RuleIndex:
    return RuleIndex([
        rule("@spammer:evil.org", key="literal"),
        rule("@bot*:spam.example", key="glob"),
        rule(None, key="hashed", hashes={"sha256": entity_hash("@hidden:evil.org")}),
        rule("@maybe:evil.org", key="soft", recommendation="org.example.watch"),  # not m.ban: not acted on
        rule("!badroom:evil.org", key="room", type="m.policy.rule.room"),
        rule("!bad*:glob.example", key="roomglob", type="m.policy.rule.room"),
        rule(PROTECTED, key="protectedroom", type="m.policy.rule.room"),
        rule(MANAGEMENT, key="managementroom", type="m.policy.rule.room"),
    ])


def decide(user: str, room: str, *, block_rooms: bool = True) -> bool:
    return decide_join(
        user, room, index=INDEX, is_protected=lambda r: r == PROTECTED, management_room=MANAGEMENT,
        bot_user_id=BOT, block_rooms=block_rooms,
    ).allow


INDEX = index()


@pytest.mark.parametrize(
    ("user", "room", "allowed"),
    [
        ("@spammer:evil.org", PROTECTED, False),  # literal user rule
        ("@bot42:spam.example", PROTECTED, False),  # glob
        ("@hidden:evil.org", PROTECTED, False),  # MSC4205 hash
        ("@maybe:evil.org", PROTECTED, True),  # a recommendation modbot does not act on
        ("@alice:example.org", PROTECTED, True),
        ("@spammer:evil.org", ELSEWHERE, True),  # user rules guard protected rooms only
        ("@alice:example.org", "!badroom:evil.org", False),  # a room rule, opted in
        ("@alice:example.org", "!bad1:glob.example", False),  # a glob room rule
        ("@alice:example.org", PROTECTED, True),  # a room rule never closes a protected room
        ("@alice:example.org", MANAGEMENT, True),  # nor the management room
        (BOT, "!badroom:evil.org", True),  # nor keeps the bot out
    ],
)
def test_who_is_refused_at_join(user: str, room: str, allowed: bool) -> None:
    assert decide(user, room) is allowed


def test_room_rules_refuse_nothing_unless_opted_in() -> None:
    assert decide("@alice:example.org", "!badroom:evil.org", block_rooms=False)
    assert not decide("@spammer:evil.org", PROTECTED, block_rooms=False)


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Store, PresendCounts, AntispamEndpoint]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    store = Store(engine)
    counts = PresendCounts(None)

    async def audit(outcome: str, message: str) -> None:
        await store.audit("presend", outcome, message)

    app = web.Application()
    endpoint = AntispamEndpoint(
        prefix=PREFIX, secret=SECRET, max_body_bytes=256 * 1024, max_json_depth=256, counts=counts, audit=audit
    )
    endpoint.add_routes(app)
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    try:
        yield test_client, store, counts, endpoint
    finally:
        if endpoint.joins is not None:
            await endpoint.joins.stop()
        await test_client.close()
        await engine.dispose()


def attach(endpoint: AntispamEndpoint, store: Store, counts: PresendCounts) -> None:
    async def audit_join(answer: Any, user: str, room: str) -> None:
        await store.audit("presend", answer.outcome, f"{user} refused at join into {room}: {answer.why}", sender=user)

    endpoint.joins = JoinChecker(
        index=INDEX, is_protected=lambda r: r == PROTECTED, management_room=lambda: MANAGEMENT, bot_user_id=BOT,
        block_rooms=lambda: True, audit=audit_join, note=counts.note,
    )


async def join(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post(f"{PREFIX}/user_may_join_room", data=data, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.text()


async def test_a_banned_user_is_refused_with_m_forbidden_and_audited_others_get_2xx(client: Any) -> None:
    test_client, store, counts, endpoint = client
    attach(endpoint, store, counts)
    status, text = await join(test_client, {"user": "@spammer:evil.org", "room": PROTECTED, "is_invited": False})
    assert status == 403 and json.loads(text) == {"errcode": "M_FORBIDDEN", "error": REFUSED_JOIN}
    status, text = await join(test_client, {"user": "@alice:example.org", "room": PROTECTED, "is_invited": True})
    assert status == 200 and json.loads(text) == {}
    await endpoint.joins.stop()  # the audit is written beside the answer
    [row] = [e for e in await store.audit_log(category="presend") if e.outcome == "join_refused"]
    assert row.sender == "@spammer:evil.org" and "user @spammer:evil.org (m.ban)" in row.message
    assert counts.since_start["join_refused"] == 1 and counts.since_start["join_allowed"] == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[1, 2]", 400),
        ({"user": 5, "room": PROTECTED}, 400),
        ({"user": "@a:b", "room": "!" + "x" * 300}, 400),
        ({"user": "@a:b"}, 400),
        (b'{"user": "' + b"a" * 5000 + b'"}', 413),
        (b"[" * 50 + b"]" * 50, 400),
    ],
)
async def test_hostile_join_bodies_get_plain_text_so_the_module_fails_open(client: Any, body: Any, status: int) -> None:
    test_client, store, counts, endpoint = client
    attach(endpoint, store, counts)
    got, text = await join(test_client, body)
    assert got == status
    with pytest.raises(ValueError):
        json.loads(text)  # not JSON: synapse-http-antispam falls back to its fail_open
    assert any(e.outcome == "refused" for e in await store.audit_log(category="presend"))


async def test_a_wrong_secret_or_a_checker_not_started_gets_plain_text(client: Any) -> None:
    test_client, store, counts, endpoint = client
    body = {"user": "@spammer:evil.org", "room": PROTECTED, "is_invited": False}
    assert (await join(test_client, body))[0] == 503  # not started yet
    attach(endpoint, store, counts)
    status, text = await join(test_client, body, headers={"Authorization": "Bearer wrong"})
    assert status == 401 and text == "wrong or missing secret"
