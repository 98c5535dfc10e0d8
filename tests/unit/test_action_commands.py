"""The `actions` commands: list what is not done, give an action up, retry a failed one.
Real store (SQLite); the handlers are called as the command runner calls them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bot.commands.actions import register_action_commands
from bot.commands.framework import CommandSet, bind
from bot.commands.runner import CommandContext, CommandError, Reply
from bot.record.store import Store, StoredEvent

MOD = "@mod:example.org"
ROOM = "!room:example.org"


async def run(store: Store, words: str) -> Reply:
    commands = CommandSet()
    register_action_commands(commands)
    command, rest = commands.find(words.split())
    assert command is not None and command.scope == "management"
    event = StoredEvent("$cmd", "!mods:example.org", MOD, "m.room.message", {}, "pending", 0, 0.0)
    ctx = CommandContext(SimpleNamespace(store=store), event, event.room_id, MOD, "management", None)  # type: ignore[arg-type]
    return await command.handler(ctx, **bind(command, rest, reply_available=False))


async def action(store: Store, key: str, status: str, detail: str, **finish: Any) -> int:
    await store.claim_action(key, kind="ban", target="@spammer:evil.example", event_id="$e1", room_id=ROOM,
                             decided_by="known", operation='{"op":"ban","args":{}}')
    await store.finish_action(key, status, 1, detail, **finish)
    [record] = [a for a in await store.actions() if a.key == key]
    return record.id


async def test_actions_lists_pending_and_failed_with_their_reasons(store: Store) -> None:
    pending = await action(store, "ban:a", "pending", "ban not done yet: HTTP 502: Bad Gateway", next_attempt_at=9e12)
    failed = await action(store, "ban:b", "failed", "ban failed: HTTP 403 M_FORBIDDEN: You don't have permission to ban this user")
    await action(store, "ban:c", "ok", "banned")
    reply = await run(store, "actions")
    text = "\n".join(reply.lines)
    assert reply.lines[0] == "2 open actions (newest first):"
    assert f"#{pending} ban `@spammer:evil.example` in {ROOM} (pending, 1 attempts, next in" in text
    assert "HTTP 502: Bad Gateway" in text
    assert f"#{failed} ban" in text and "M_FORBIDDEN: You don't have permission to ban this user" in text
    assert "banned" not in text.replace("ban this user", "")
    assert (await run(store, "actions given_up")).lines == ["No given_up actions."]
    with pytest.raises(CommandError, match="say open"):
        await run(store, "actions everything")


async def test_giving_up_stops_the_retries_and_is_audited(store: Store) -> None:
    pending = await action(store, "ban:a", "pending", "HTTP 502", next_attempt_at=0.0)
    reply = await run(store, f"actions giveup {pending} the user is gone anyway")
    assert reply.lines == [f"Gave up action #{pending}: ban @spammer:evil.example. It will not be retried."]
    assert await store.action_repo.due() == []
    [audit] = await store.audit_log(category="action")
    assert (audit.outcome, audit.sender, audit.event_id) == ("given_up", MOD, "$e1")
    assert "the user is gone anyway" in audit.message and f"#{pending}" in audit.message
    with pytest.raises(CommandError, match="given up already"):
        await run(store, f"actions giveup {pending}")
    assert "given_up" in "\n".join((await run(store, "actions given_up")).lines)


async def test_retry_puts_a_failed_action_back_in_the_queue(store: Store) -> None:
    failed = await action(store, "ban:b", "failed", "HTTP 403 M_FORBIDDEN")
    done = await action(store, "ban:c", "ok", "banned")
    reply = await run(store, f"actions retry {failed}")
    assert "will be tried again" in reply.lines[0]
    assert [a.key for a in await store.action_repo.due()] == ["ban:b"]
    [audit] = await store.audit_log(category="action")
    assert audit.outcome == "requeued" and MOD in audit.message
    with pytest.raises(CommandError, match="pending already"):
        await run(store, f"actions retry {failed}")
    with pytest.raises(CommandError, match="done already"):
        await run(store, f"actions retry {done}")
    with pytest.raises(CommandError, match="No action #999"):
        await run(store, "actions giveup 999")
