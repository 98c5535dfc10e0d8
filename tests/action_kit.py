"""A fake homeserver that records what the executor asks of it, and the values the executor
tests share (tests/unit/test_executor.py, tests/unit/test_action_retry.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from bot.act.homeserver import HomeserverError
from bot.act.notices import ActionResult, MatchedMedia
from bot.model import ActionKind, Decision, EventContext, MatchKind, MediaRef, Outcome, PlannedAction, Verdict

BOT = "@modbot:example.org"
ROOM = "!room:example.org"
OTHER = "!other:example.org"
THIRD = "!third:example.org"
MANAGEMENT = "!mods:example.org"
SPAMMER = "@spammer:evil.example"


class FakeHomeserver:
    """Records every call; raises HomeserverError for the kinds told to fail."""

    bot_user_id = BOT

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, HomeserverError] = {}

    async def _record(self, kind: str, *args: Any) -> None:
        self.calls.append((kind, *args))
        await asyncio.sleep(0)  # give concurrent callers a chance to interleave
        if kind in self.fail:
            raise self.fail[kind]

    async def quarantine(self, server: str, media_id: str) -> None:
        await self._record("quarantine", server, media_id)

    async def redact(self, room_id: str, event_id: str, reason: str, txn_id: str) -> str | None:
        await self._record("redact", room_id, event_id, reason, txn_id)
        return "$redaction"

    async def ban(self, room_id: str, user_id: str, reason: str) -> None:
        await self._record("ban", room_id, user_id, reason)

    async def send_notice(self, room_id: str, body: str, html: str, txn_id: str) -> str:
        await self._record("notify", room_id, body, html, txn_id)
        return "$notice"

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]

    def notices(self) -> list[str]:
        return [c[2] for c in self.calls if c[0] == "notify"]


def ctx(n: int = 1, sender: str = SPAMMER, room: str = ROOM) -> EventContext:
    return EventContext(event_id=f"$event{n}:example.org", room_id=room, sender=sender, sender_power=0)


def media(n: int = 1) -> MatchedMedia:
    ref = MediaRef(f"mxc://example.org/media{n}", "example.org", f"media{n}", "content.url", "image/png")
    return MatchedMedia(
        ref,
        (
            Verdict("hashlist", "test-label", MatchKind.NEAR, list_name="benign-list", hash_type="pdq", distance=12),
            Verdict("hashlist", "other-label", MatchKind.EXACT, list_name="exact-list", hash_type="sha256", distance=0),
        ),
    )


def decision(*kinds: ActionKind | tuple[ActionKind, str], dry_run: bool = False, exempt: str | None = None) -> Decision:
    actions = tuple(
        PlannedAction(k[0], k[1]) if isinstance(k, tuple) else PlannedAction(k)  # type: ignore[arg-type]
        for k in kinds
    )
    return Decision("known-media", actions, dry_run=dry_run, exempt_reason=exempt)


ALL = (ActionKind.QUARANTINE, ActionKind.REDACT, ActionKind.BAN, ActionKind.NOTIFY)


def outcomes(results: Sequence[ActionResult]) -> list[tuple[str, Outcome]]:
    return [(r.kind, r.outcome) for r in results]
