"""A bot for commands alone, after maubot's TestBot: commands run as the runner runs them,
against the services a handler is given (bot/commands/context.py), and everything they
would send or do is recorded.

Real: the storage (SQLite), the moderators' controls (bot/controls.py), the hash lists and
the command framework. Fake, and recording: the homeserver (every call, every message
sent), the room power levels, the action executor (each action, with what its `do` said),
the enforcer, the anchors and the media analysis (hashes and verdicts set by the test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.act.homeserver import HomeserverError, RoomPower
from bot.act.notices import ActionResult
from bot.commands.context import BotStatus, CommandContext, CommandServices, Reply
from bot.commands.framework import bind
from bot.commands.handlers import build_commands
from bot.commands.parse import Addressing
from bot.commands.runner import CommandRunner
from bot.config import load_config
from bot.controls import Controls
from bot.lists.registry import ListRegistry
from bot.model import Hashes, MatchKind, MediaRef, Outcome, Verdict
from bot.record.chain import Anchor
from bot.record.db import create_engine, migrate
from bot.record.evidence import AnchorResult
from bot.record.liststate import ListStateRepo
from bot.record.moderation import ModerationStore
from bot.record.store import Store, StoredEvent

BOT = "@modbot:example.org"
MOD = "@mod:example.org"  # in the management room, power 100 there
ROOM_MOD = "@roommod:example.org"  # power 50 in the protected room only
SPAMMER = "@spammer:evil.example"
MGMT = "!mgmt:example.org"
ROOM = "!room:example.org"
OTHER = "!other:example.org"
SHA = "ab" * 32
PDQ = "f0" * 32

CONFIG = """\
homeserver:
  url: http://127.0.0.1:9
  domain: example.org
appservice:
  as_token: secret-as
  hs_token: secret-hs
database:
  url: sqlite+aiosqlite:///{db}
rooms:
  management_room: "{mgmt}"
hash_lists:
  - name: known
    path: {path}
    label: csam
"""


class FakeHomeserver:
    """Records every call as (name, *args); answers from what the test set."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.sent: list[tuple[str, dict[str, Any], str]] = []  # (room, content, event type)
        self.events: dict[str, dict[str, Any]] = {}
        self.members: dict[str, set[str]] = {MGMT: {BOT, MOD}}
        self.aliases: dict[str, str] = {}
        self.powers: dict[str, RoomPower] = {}
        self.server_admin = True
        self.unjoinable: set[str] = set()  # join refused: the bot was not invited

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == name]

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))

    async def get_event(self, room_id: str, event_id: str) -> dict[str, Any]:
        self._record("get_event", room_id, event_id)
        return self.events[event_id]

    async def resolve_room(self, room: str) -> str:
        return self.aliases.get(room, room)

    async def join(self, room: str) -> str:
        self._record("join", room)
        if room in self.unjoinable:
            raise HomeserverError("HTTP 403 M_FORBIDDEN: You are not invited to this room.", status=403)
        return self.aliases.get(room, room)

    async def joined_members(self, room_id: str) -> set[str]:
        return self.members.get(room_id, set())

    async def room_power(self, room_id: str) -> RoomPower:
        return self.powers.get(room_id) or power()

    async def send_message(
        self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = "m.room.message"
    ) -> str:
        self.sent.append((room_id, content, event_type))
        return f"$sent{len(self.sent)}"

    async def send_notice(self, room_id: str, body: str, html: str, txn_id: str) -> str:
        return await self.send_message(room_id, {"msgtype": "m.notice", "body": body}, txn_id)

    async def ban(self, room_id: str, user_id: str, reason: str) -> None:
        self._record("ban", room_id, user_id, reason)

    async def unban(self, room_id: str, user_id: str, reason: str) -> None:
        self._record("unban", room_id, user_id, reason)

    async def kick(self, room_id: str, user_id: str, reason: str) -> None:
        self._record("kick", room_id, user_id, reason)

    async def quarantine(self, server: str, media_id: str) -> None:
        self._record("quarantine", server, media_id)

    async def quarantine_user_media(self, user_id: str) -> int:
        self._record("quarantine_user_media", user_id)
        return 3

    async def quarantine_room_media(self, room_id: str) -> int:
        self._record("quarantine_room_media", room_id)
        return 5

    async def is_server_admin(self) -> bool:
        return self.server_admin

    async def redact_user_events(self, user_id: str, rooms: list[str], reason: str, limit: int | None) -> str:
        self._record("redact_user_events", user_id, rooms, reason, limit)
        return "job1"

    async def redact_status(self, job: str) -> dict[str, Any]:
        return {"status": "complete", "failed_redactions": {}}

    async def messages(self, room_id: str, *, limit: int, from_token: str | None = None) -> dict[str, Any]:
        return {"chunk": [], "end": None}

    async def redact(self, room_id: str, event_id: str, reason: str, txn_id: str) -> str:
        self._record("redact", room_id, event_id, reason)
        return "$redaction"


def power(users: dict[str, int] | None = None, *, ban: int = 50) -> RoomPower:
    return RoomPower(
        users={BOT: 100, ROOM_MOD: 50, **(users or {})}, users_default=0, ban=ban, redact=50, kick=50,
        creators=frozenset(),
    )


class FakePowers:
    def __init__(self, hs: FakeHomeserver) -> None:
        self.hs = hs

    async def get(self, room_id: str) -> RoomPower:
        return await self.hs.room_power(room_id)

    def invalidate(self, room_id: str) -> None:
        pass


@dataclass
class Action:
    kind: str
    target: str
    room_id: str | None
    by: str
    detail: str


class FakeExecutor:
    """Runs a command's action at once and records it, as the executor would audit it."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    async def manual(
        self, kind: str, target: str, room_id: str | None, *, by: str, command_event_id: str,
        do: Callable[[], Awaitable[str]],
    ) -> ActionResult:
        detail = await do()
        self.actions.append(Action(kind, target, room_id, by, detail))
        return ActionResult(kind, target, room_id, Outcome.OK, detail)

    async def unquarantine(self, ref: MediaRef, *, by: str, reason_event_id: str) -> ActionResult:
        detail = f"unquarantined {ref.mxc}"
        self.actions.append(Action("unquarantine", ref.mxc, None, by, detail))
        return ActionResult("unquarantine", ref.mxc, None, Outcome.OK, detail)


@dataclass
class FakeEnforcer:
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    answer: Any = None  # what approve/reject return

    async def enforce(self, decision: Any, ctx: Any, matched: Any, *, retroactive: bool = False) -> list[ActionResult]:
        self.calls.append(("enforce", decision.rule, ctx.sender))
        return [ActionResult(a.kind, ctx.sender, ctx.room_id, Outcome.OK, a.kind) for a in decision.actions]

    async def approve(self, review_id: int, *, by: str, command_event_id: str) -> Any:
        self.calls.append(("approve", review_id, by))
        return self.answer

    async def reject(self, review_id: int, *, by: str, command_event_id: str, tell_room: bool) -> Any:
        self.calls.append(("reject", review_id, by, tell_room))
        return self.answer


class FakeAnchors:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def anchor(self, reason: str, *, by: str | None = None) -> AnchorResult:
        self.calls.append((reason, by or ""))
        return AnchorResult(Anchor(7, "cd" * 32, 7, 0.0, reason), "$anchor", ())


class FakeMedia:
    """Hashes and verdicts by mxc, as the test sets them."""

    def __init__(self) -> None:
        self.hashes: dict[str, Hashes] = {}
        self.verdicts: dict[str, list[Verdict]] = {}

    async def hashes_for(self, ref: MediaRef) -> tuple[Hashes | None, str | None, bool]:
        found = self.hashes.get(ref.mxc)
        return found, None if found else "not found", False

    async def classify_hashes(self, hashes: Hashes) -> tuple[list[Verdict], list[str]]:
        return self.verdicts.get(hashes.sha256, []), []


def known(sha256: str = SHA) -> Verdict:
    return Verdict("hashlist", "csam", MatchKind.EXACT, list_name="known", hash_type="sha256", matched_hash=sha256)


class CommandKit:
    """The services, the commands and a runner; `run` calls one handler, `send` goes
    through the runner (permissions, parsing, reply) as a message in a room would."""

    def __init__(self, store: Store, moderation: ModerationStore, controls: Controls, list_path: Path) -> None:
        self.store, self.moderation, self.controls, self.list_path = store, moderation, controls, list_path
        self.homeserver = FakeHomeserver()
        self.executor = FakeExecutor()
        self.enforcer = FakeEnforcer()
        self.anchors = FakeAnchors()
        self.media = FakeMedia()
        self.queue_errors: list[str] = []
        self.services = CommandServices(
            prefix="!mod", bot_user_id=BOT, management_room=MGMT, store=store, moderation=moderation,
            homeserver=self.homeserver,  # type: ignore[arg-type]
            powers=FakePowers(self.homeserver),  # type: ignore[arg-type]
            executor=self.executor,  # type: ignore[arg-type]
            enforcer=self.enforcer,  # type: ignore[arg-type]
            anchors=self.anchors,  # type: ignore[arg-type]
            controls=controls, media=self.media, hash_lists=controls.config.hash_lists,
            status=BotStatus(0.0, queue_depth=lambda: 2, recent_errors=lambda: self.queue_errors, classifiers=()),
        )
        self.commands = build_commands()
        self.runner = CommandRunner(
            self.services, self.commands, addressing=Addressing("!mod", BOT, "modbot", "modbot"),
            management_power=100,
        )
        self.homeserver.powers[MGMT] = power({MOD: 100})
        self._events = 0

    def event(self, body: str, *, room: str = MGMT, sender: str = MOD, reply_to: str | None = None) -> StoredEvent:
        self._events += 1
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        event = {"type": "m.room.message", "room_id": room, "sender": sender, "content": content}
        return StoredEvent(f"$cmd{self._events}", room, sender, "m.room.message", event, "pending", 0, 0.0)

    async def run(
        self, words: str, *, room: str = MGMT, sender: str = MOD, scope: str = "management", reply_to: str | None = None
    ) -> Reply:
        """One command's handler, called as the runner calls it (CommandErrors are raised)."""
        command, rest = self.commands.find(words.split())
        assert command is not None, words
        event = self.event(f"!mod {words}", room=room, sender=sender, reply_to=reply_to)
        ctx = CommandContext(self.services, event, room, sender, scope, reply_to)
        reply: Reply = await command.handler(ctx, **bind(command, rest, reply_available=reply_to is not None))
        return reply

    async def send(self, body: str, *, room: str = MGMT, sender: str = MOD, reply_to: str | None = None) -> list[str]:
        """A message through the runner; the lines of the replies it sent (reactions left out)."""
        before = len(self.homeserver.sent)
        await self.runner.handle(self.event(body, room=room, sender=sender, reply_to=reply_to))
        return [
            content["body"] for _, content, kind in self.homeserver.sent[before:] if kind == "m.room.message"
        ]

    def image_message(self, event_id: str, mxc: str, sender: str = SPAMMER, room: str = ROOM) -> None:
        """A message with an image the homeserver will hand out, and its hashes."""
        self.homeserver.events[event_id] = {
            "type": "m.room.message", "room_id": room, "sender": sender, "event_id": event_id,
            "origin_server_ts": 1, "content": {"msgtype": "m.image", "body": "x.png", "url": mxc},
        }
        self.media.hashes[mxc] = Hashes(sha256=SHA, md5="cd" * 16, size=10, pdq=PDQ)


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[CommandKit]:
    db = tmp_path / "modbot.db"
    list_path = tmp_path / "known.csv"
    list_path.write_text("type,hash,label\nsha256," + "01" * 32 + ",csam\n", encoding="utf-8")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(CONFIG.format(db=db, mgmt=MGMT, path=list_path), encoding="utf-8")
    config = load_config(config_path)
    engine = create_engine(config.database.url)
    await migrate(engine)
    store, moderation, states = Store(engine), ModerationStore(engine), ListStateRepo(engine)
    lists = ListRegistry(config.hash_lists, tmp_path, history=states)
    lists.load()
    hs: list[FakeHomeserver] = []
    controls = Controls(
        config, config_path=config_path, store=store, moderation=moderation, lists=lists, list_states=states,
        homeserver=lambda: hs[0] if hs else None,  # type: ignore[arg-type,return-value]
        management_room=lambda: MGMT, bot_user_id=BOT,
    )
    kit = CommandKit(store, moderation, controls, list_path)
    hs.append(kit.homeserver)
    controls.protected.add(ROOM)
    try:
        yield kit
    finally:
        await engine.dispose()
