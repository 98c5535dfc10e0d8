"""The pre-send endpoint (synapse-http-antispam's side of the protocol) under ordinary and
hostile input. A real endpoint on an aiohttp test server, a real Store on SQLite.

Whatever is not a decision about an event (a wrong secret, a body too large or too deep,
not started yet) is answered in plain text, so that the module's `fail_open` decides, and
what came with the right secret leaves an audit row. The checks themselves run against a
real Synapse in tests/e2e/test_presend.py.
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

from bot.cli.check import presend_report
from bot.config import load_config
from bot.intake.antispam import AntispamEndpoint, module_block
from bot.intake.registration import set_presend_secret
from bot.presend import PresendCounts, presend_mode, removes_media
from bot.model import ActionKind, Decision, PlannedAction
from bot.policy import parse_policy
from bot.record.db import create_engine, migrate
from bot.record.presend import PresendStat, PresendStatsRepo
from bot.record.store import Store

SECRET = "the-antispam-secret-0123456789"
AUTH = {"Authorization": f"Bearer {SECRET}"}
PREFIX = "/_modbot/antispam"
EVENT = {"event_id": "$e", "room_id": "!r:x", "sender": "@u:x", "type": "m.room.message", "content": {"body": "hi"}}


@pytest_asyncio.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Store, PresendCounts]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    store = Store(engine)
    counts = PresendCounts(PresendStatsRepo(engine))

    async def audit(outcome: str, message: str) -> None:
        await store.audit("presend", outcome, message)

    app = web.Application()
    AntispamEndpoint(
        prefix=PREFIX, secret=SECRET, max_body_bytes=256 * 1024, max_json_depth=256, counts=counts, audit=audit
    ).add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, store, counts
    finally:
        await client.close()
        await engine.dispose()


async def post(client: TestClient, path: str, body: bytes | Any, headers: dict[str, str] | None = None) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post(f"{PREFIX}/{path}", data=data, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.text()


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


async def test_ping_is_answered_with_its_id_and_counted(endpoint: Any) -> None:
    client, _store, counts = endpoint
    status, text = await post(client, "ping", {"id": "abcdefgh"})
    assert status == 200 and json.loads(text) == {"id": "abcdefgh", "status": "ok"}
    assert counts.since_start["ping"] == 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {SECRET}"}])
async def test_a_wrong_or_missing_secret_gets_plain_text_so_the_module_fails_open(endpoint: Any, headers: dict[str, str]) -> None:
    client, _store, counts = endpoint
    for path in ("check_event_for_spam", "ping", "user_may_invite"):
        status, text = await post(client, path, {"event": EVENT}, headers)
        assert status == 401 and not is_json(text)
    assert counts.since_start["unauthorized"] == 3


@pytest.mark.parametrize(
    "body, status, why",
    [
        (b"x" * (256 * 1024 + 1), 413, "larger than"),
        (b'{"event":' + b"[" * 100_000, 400, "nested deeper"),
        (b'{"event":' + b"[" * 300 + b"]" * 300 + b"}", 400, "nested deeper"),
        (b"\xff\xfe not json", 400, "not JSON"),
        (b'{"event": []}', 400, "no event object"),
        (json.dumps({"event": {**EVENT, "room_id": 5}}).encode(), 400, "room_id"),
        (json.dumps({"event": {k: v for k, v in EVENT.items() if k != "event_id"}}).encode(), 400, "event_id"),
    ],
)
async def test_hostile_bodies_are_refused_in_plain_text_with_an_audit_row(endpoint: Any, body: bytes, status: int, why: str) -> None:
    client, store, _counts = endpoint
    got, text = await post(client, "check_event_for_spam", body)
    assert got == status and why in text and not is_json(text)
    audit = [a.message for a in await store.audit_log(category="presend")]
    assert len(audit) == 1 and why in audit[0]


async def test_before_the_checker_runs_a_check_is_answered_503_in_plain_text(endpoint: Any) -> None:
    client, _store, counts = endpoint
    status, text = await post(client, "check_event_for_spam", {"event": EVENT})
    assert status == 503 and not is_json(text)
    assert counts.since_start["not_ready"] == 1


async def test_callbacks_not_enabled_are_allowed(endpoint: Any) -> None:
    client, _store, _counts = endpoint
    assert await post(client, "user_may_invite", {"inviter": "@u:x", "invitee": "@v:x", "room_id": "!r:x"}) == (200, "{}")


async def test_counts_are_flushed_to_the_database_and_add_up(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    clock = iter([10.0, 11.0, 12.0, 13.0])
    counts = PresendCounts(PresendStatsRepo(engine), clock=lambda: next(clock))
    counts.note("allowed")
    counts.note("blocked")
    await counts.flush()
    counts.note("allowed")
    await counts.flush()
    stats = await PresendStatsRepo(engine).all()
    assert (stats["allowed"].count, stats["allowed"].last_at) == (2, 12.0)
    assert (stats["blocked"].count, stats["blocked"].last_at) == (1, 11.0)
    await engine.dispose()


def test_the_module_block_points_at_the_endpoint_with_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "homeserver: {url: 'http://127.0.0.1:8008', domain: example.org}\n"
        "appservice: {as_token: aaaaaaaaaaaaaaaa, hs_token: bbbbbbbbbbbbbbbb, public_url: 'http://10.0.0.5:29330'}\n"
        f"presend: {{enabled: true, antispam_secret: {SECRET}, fail_open: false}}\n"
    )
    block = module_block(load_config(path))
    assert block == {
        "module": "synapse_http_antispam.HTTPAntispam",
        "config": {
            "base_url": "http://10.0.0.5:29330/_modbot/antispam", "authorization": SECRET, "do_ping": True,
            "enabled_callbacks": ["check_event_for_spam", "user_may_join_room"],
            # Joins always fail open: the module would otherwise refuse every join while modbot is down.
            "fail_open": {"check_event_for_spam": False, "user_may_join_room": True},
        },
    }


def test_presend_enabled_without_a_real_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "homeserver: {url: 'http://127.0.0.1:8008', domain: example.org}\n"
        "appservice: {as_token: aaaaaaaaaaaaaaaa, hs_token: bbbbbbbbbbbbbbbb}\n"
        "presend: {enabled: true, antispam_secret: ''}\n"
    )
    with pytest.raises(Exception, match="antispam_secret"):
        load_config(path)


def test_generate_registration_rewrites_only_the_secret_value() -> None:
    text = "presend:\n  enabled: true\n  antispam_secret: \"\"\n  deadline: 2.0\n"
    assert set_presend_secret(text, "new-secret") == "presend:\n  enabled: true\n  antispam_secret: new-secret\n  deadline: 2.0\n"


def test_the_policy_and_a_room_say_what_an_undecided_check_does() -> None:
    policy = parse_policy({"presend": "fail_open", "rooms": {"!closed:x": {"presend": "fail_closed"}}})
    assert presend_mode(policy, "!closed:x") == "fail_closed"
    assert presend_mode(policy, "!other:x") == "fail_open"
    with pytest.raises(Exception):
        parse_policy({"presend": "maybe"})


@pytest.mark.parametrize(
    "actions, blocks",
    [
        ((ActionKind.QUARANTINE, ActionKind.NOTIFY), True),
        ((ActionKind.REDACT,), True),
        ((ActionKind.BAN, ActionKind.NOTIFY), False),
        ((ActionKind.NOTIFY,), False),
    ],
)
def test_only_a_decision_that_takes_the_media_down_blocks(actions: tuple[ActionKind, ...], blocks: bool) -> None:
    decision = Decision(rule="r", actions=tuple(PlannedAction(a) for a in actions))
    assert removes_media(decision) is blocks


def test_a_held_review_blocks_a_flag_does_not() -> None:
    assert removes_media(Decision(rule="r", actions=(PlannedAction(ActionKind.REVIEW, "hold"),)))
    assert not removes_media(Decision(rule="r", actions=(PlannedAction(ActionKind.REVIEW, "flag"),)))


def test_check_reports_when_synapse_last_called() -> None:
    stats = {
        "ping": PresendStat("ping", 1, 900.0),
        "allowed": PresendStat("allowed", 7, 990.0),
        "blocked": PresendStat("blocked", 2, 950.0),
    }
    lines = presend_report(stats, now=1000.0)
    assert all(good for good, _msg, _fix in lines)
    assert "last ping from synapse-http-antispam 100 s ago" in lines[0][1]
    assert "last check_event_for_spam 10 s ago; counts: allowed 7, blocked 2" in lines[1][1]


def test_check_fails_when_synapse_never_pinged_or_uses_a_wrong_secret() -> None:
    assert [good for good, _m, _f in presend_report(None, now=0.0)] == [False]
    never = presend_report({}, now=0.0)
    assert not never[0][0] and "never pinged" in never[0][1] and "modules:" in never[0][2]
    wrong = presend_report({"ping": PresendStat("ping", 1, 1.0), "unauthorized": PresendStat("unauthorized", 3, 5.0)}, now=9.0)
    assert not wrong[-1][0] and "wrong secret" in wrong[-1][1]
