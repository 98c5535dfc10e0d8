"""The appservice endpoint under hostile and heavy input: what Synapse can send is accepted
and stored, what it cannot is refused with a 4xx that says why and an audit row.

A real endpoint (aiohttp test server) in front of a real Store on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.intake.endpoint import INLINE_PARSE_BYTES, DurableAppService, IntakeLimits
from bot.intake.jsondepth import exceeds_depth
from bot.record.db import create_engine, migrate
from bot.record.store import Store

HS_TOKEN = "the-homeserver-token-0123456789"
MIB = 1024 * 1024
TXN = "/_matrix/app/v1/transactions"
AUTH = {"Authorization": f"Bearer {HS_TOKEN}"}


@dataclass
class Intake:
    client: TestClient
    store: Store
    service: DurableAppService

    async def put(self, txn_id: str, body: bytes | Any, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, dict[str, Any]]:
        # Synapse sends canonical JSON: UTF-8, not \u escapes.
        data = json.dumps(body, ensure_ascii=False).encode() if isinstance(body, (dict, list)) else body
        async with self.client.put(f"{TXN}/{txn_id}", data=data, headers=AUTH if headers is None else headers, **kw) as r:
            return r.status, await r.json()

    async def refusals(self) -> list[str]:
        return [a.message for a in await self.store.audit_log(category="intake") if a.outcome == "refused"]


def everything(_event: dict[str, Any]) -> bool:
    return True


async def _intake(tmp_path: Path, limits: IntakeLimits) -> AsyncIterator[Intake]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    store = Store(engine)

    async def on_transaction(txn_id: str, events: list[Any]) -> None:
        await store.store_transaction(txn_id, events, everything)

    service = DurableAppService(
        server="http://127.0.0.1:9", domain="example.org", as_token="the-as-token", hs_token=HS_TOKEN,
        bot_localpart="modbot", id="modbot", on_transaction=on_transaction, limits=limits,
        audit_refusal=lambda txn_id, why: store.audit("intake", "refused", why),
    )
    client = TestClient(TestServer(service.app))
    await client.start_server()
    try:
        yield Intake(client, store, service)
    finally:
        await client.close()
        await engine.dispose()


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[Intake]:
    """With the defaults of the config (16 MiB, 256 levels)."""
    async for i in _intake(tmp_path, IntakeLimits(max_body_bytes=16 * MIB, max_json_depth=256)):
        yield i


@pytest.fixture
async def small_intake(tmp_path: Path) -> AsyncIterator[Intake]:
    async for i in _intake(tmp_path, IntakeLimits(max_body_bytes=1 * MIB, max_json_depth=256)):
        yield i


def event(n: int, *, body: str = "hello", **content: Any) -> dict[str, Any]:
    return {
        "event_id": f"$e{n}", "room_id": "!room:example.org", "sender": "@u:example.org",
        "type": "m.room.message", "origin_server_ts": 1_700_000_000_000 + n,
        "content": {"msgtype": "m.text", "body": body, **content}, "unsigned": {"age": 1},
    }


def nested(levels: int) -> Any:
    value: Any = "x"
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


# --- size ---------------------------------------------------------------------------------


async def test_a_full_transaction_of_100_events_of_64_kib_is_accepted_and_stored(intake: Intake) -> None:
    # What Synapse sends after downtime: over six times aiohttp's default 1 MiB limit.
    events = [event(n, body="é" * 32_000 + "x" * 400) for n in range(100)]
    status, answer = await intake.put("1", {"events": events})
    assert (status, answer) == (200, {})
    assert len(await intake.store.pending_event_ids()) == 100
    assert intake.service.monitor.state().accepted == 1


async def test_a_body_over_the_limit_is_refused_with_a_clear_error_and_an_audit_row(small_intake: Intake) -> None:
    events = [event(n, body="x" * 60_000) for n in range(20)]  # ~1.2 MiB
    status, answer = await small_intake.put("7", {"events": events})
    assert status == 413
    assert answer["errcode"] == "M_TOO_LARGE" and "appservice.max_body_bytes" in answer["error"]
    assert await small_intake.store.pending_event_ids() == []
    [refusal] = await small_intake.refusals()
    assert "transaction 7 refused (413)" in refusal
    [error] = small_intake.service.monitor.state().errors
    assert (error.status, error.txn_id) == (413, "7")


async def test_a_chunked_body_without_length_is_held_to_the_same_limit(small_intake: Intake) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ["'
        for _ in range(40):
            yield b"x" * 32 * 1024
        yield b'"]}'

    status, answer = await small_intake.put("8", chunks())  # type: ignore[arg-type]
    assert status == 413 and answer["errcode"] == "M_TOO_LARGE"


# --- nesting ------------------------------------------------------------------------------


async def test_a_body_of_100k_open_brackets_is_refused_without_a_recursion_error(intake: Intake) -> None:
    status, answer = await intake.put("9", b"[" * 100_000)
    assert status == 400
    assert answer["errcode"] == "M_BAD_JSON" and "nested deeper than 256" in answer["error"]
    assert "nested deeper than 256" in (await intake.refusals())[0]


async def test_an_event_nested_as_deep_as_synapse_allows_is_accepted(intake: Intake) -> None:
    # Synapse 1.163 accepts event content nested 125 levels under content (127 in all).
    status, _ = await intake.put("10", {"events": [event(1, deep=nested(125))]})
    assert status == 200
    assert await intake.store.pending_event_ids() == ["$e1"]


async def test_brackets_inside_strings_do_not_count_as_nesting(intake: Intake) -> None:
    body = "[" * 5000 + '\\"{{{' + "]" * 10
    status, _ = await intake.put("11", {"events": [event(1, body=body)]})
    assert status == 200


@pytest.mark.parametrize(
    "body, limit, expected",
    [
        (b"[]", 1, False),
        (b"[[]]", 1, True),
        (b'{"a": "[[[[[["}', 1, False),
        (b'{"a": "\\\\"}, [[[', 2, True),  # an escaped backslash ends before the quote
        (b'{"a": "\\"[[[[["}', 1, False),  # an escaped quote does not end the string
        (b'"unterminated [[[[[[', 1, False),
        (b"[" * 100_000, 900, True),
        (b'"\\' * 1_000_000, 5, False),  # a run of quotes and backslashes stays linear
        (b"[" * 300 + b"]" * 300, 300, False),
    ],
)
def test_depth_is_measured_outside_strings(body: bytes, limit: int, expected: bool) -> None:
    assert exceeds_depth(body, limit) is expected


async def test_a_body_that_is_not_json_is_refused_and_audited(intake: Intake) -> None:
    status, answer = await intake.put("12", b"\xff\xfe not json")
    assert (status, answer["errcode"]) == (400, "M_NOT_JSON")
    status, answer = await intake.put("13", {"no_events": []})
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    assert len(await intake.refusals()) == 2


@pytest.mark.parametrize("size", [INLINE_PARSE_BYTES, INLINE_PARSE_BYTES + 1], ids=["on the loop", "in a thread"])
async def test_bodies_parsed_on_the_loop_or_in_a_thread_are_held_to_the_same_limits(intake: Intake, size: int) -> None:
    too_deep = b"[" * 257 + b"1" + b"]" * 257
    status, answer = await intake.put("14", too_deep + b" " * (size - len(too_deep)))
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON") and "nested deeper than 256" in answer["error"]
    # Thousands of tiny strings among brackets: the costliest body to measure, still refused.
    hostile = b"[" * 300 + b'"",' * ((size - 600) // 3)
    status, answer = await intake.put("15", hostile + b"]" * (size - len(hostile)))
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    not_json = b"\xff" * size
    status, answer = await intake.put("16", not_json)
    assert (status, answer["errcode"]) == (400, "M_NOT_JSON")
    padded = json.dumps({"events": [event(1)]}).encode()
    status, _ = await intake.put("17", padded + b" " * (size - len(padded)))
    assert status == 200 and await intake.store.pending_event_ids() == ["$e1"]
    assert len(await intake.refusals()) == 3


# --- the token ----------------------------------------------------------------------------


async def test_the_token_in_the_query_string_is_not_accepted(intake: Intake) -> None:
    status, answer = await intake.put("20", {"events": [event(1)]}, headers={}, params={"access_token": HS_TOKEN})
    assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED")
    assert await intake.store.pending_event_ids() == []
    assert intake.service.monitor.state().unauthorized == 1


@pytest.mark.parametrize(
    "header",
    [f"Bearer {HS_TOKEN[:-1]}", f"Bearer {HS_TOKEN}x", f"Basic {HS_TOKEN}", HS_TOKEN, "Bearer ", "Bearer ☃"],
)
async def test_a_wrong_token_is_forbidden(intake: Intake, header: str) -> None:
    status, answer = await intake.put("21", {"events": [event(1)]}, headers={"Authorization": header})
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")
    assert await intake.store.pending_event_ids() == []


async def test_legacy_query_token_alongside_the_header_works_through_the_header(intake: Intake) -> None:
    # What Synapse sends with use_appservice_legacy_authorization: both.
    status, _ = await intake.put("22", {"events": [event(1)]}, params={"access_token": "anything"})
    assert status == 200


async def test_the_ping_route_checks_the_header_too(intake: Intake) -> None:
    async with intake.client.post("/_matrix/app/v1/ping", json={}, params={"access_token": HS_TOKEN}) as r:
        assert r.status == 401
    async with intake.client.post("/_matrix/app/v1/ping", json={}, headers=AUTH) as r:
        assert r.status == 200


# --- deduplication --------------------------------------------------------------------------


async def test_a_repeated_transaction_id_with_new_events_stores_them(intake: Intake) -> None:
    assert (await intake.put("1", {"events": [event(1), event(2)]}))[0] == 200
    # Synapse restarted (SQLite): its transaction ids start again from 1.
    assert (await intake.put("1", {"events": [event(3)]}))[0] == 200
    assert await intake.store.pending_event_ids() == ["$e1", "$e2", "$e3"]
    # A true resend stores nothing twice.
    assert (await intake.put("1", {"events": [event(3)]}))[0] == 200
    assert await intake.store.pending_event_ids() == ["$e1", "$e2", "$e3"]
