"""Runs chat commands: who may, parsing, replies, progress markers, audit."""

from __future__ import annotations

import html
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..act.executor import txn_id_for
from ..act.homeserver import HomeserverError
from ..act.enforcer import media_ref
from ..extract import extract_media_refs
from ..model import Hashes, MediaRef
from ..record.store import StoredEvent
from .framework import CommandSet, UsageError, bind
from .parse import Addressing, event_command_tokens, replied_event_id, thread_root
from .refusals import RefusalThrottle

if TYPE_CHECKING:
    from ..app import ModBot

log = logging.getLogger("modbot.commands")

# Characters of a command's words kept in its audit row.
_AUDIT_QUOTE_LIMIT = 500


class CommandError(Exception):
    """A command could not be done; the message is the reply."""


@dataclass
class Reply:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def add(self, line: str) -> Reply:
        self.lines.append(line)
        return self


@dataclass
class CommandContext:
    bot: ModBot
    event: StoredEvent
    room_id: str
    sender: str
    scope: str  # "management" | "room"
    reply_to: str | None

    @property
    def event_id(self) -> str:
        return self.event.event_id

    async def replied_event(self) -> dict[str, Any]:
        if not self.reply_to:
            raise CommandError("reply to a message, or name the target")
        try:
            return await self.bot.homeserver.get_event(self.room_id, self.reply_to)
        except HomeserverError as e:
            raise CommandError(f"cannot read the message replied to: {e}") from e

    async def user_or_reply(self, user: str | None) -> str:
        if user:
            return user
        return (await self.replied_event())["sender"]

    async def media_or_reply(self, mxc: str | None) -> list[MediaRef]:
        """The media named, or that of the replied-to message (also after it was redacted)."""
        if mxc:
            ref = media_ref(mxc)
            if ref is None:
                raise CommandError(f"invalid mxc URI {mxc!r}")
            return [ref]
        if not self.reply_to:
            raise CommandError("reply to a message with media, or give an mxc:// URI")
        event = await self.replied_event()
        refs = [r for r in extract_media_refs(event).refs if not r.encrypted]
        if not refs:
            # Redacted already: modbot remembers which media the event carried.
            refs = [r for r in (media_ref(m) for m in await self.bot.store.media_of_event(self.reply_to)) if r]
        if not refs:
            raise CommandError("the message replied to has no media modbot can read")
        return refs

    async def hashes_of(self, ref: MediaRef) -> Hashes:
        hashes, error, _ = await self.bot.pipeline.hashes_for(ref)
        if hashes is None:
            raise CommandError(f"cannot hash {ref.mxc}: {error}")
        return hashes

    def target_room(self, room: str | None) -> str | None:
        """In a protected room, room moderators act in their room only."""
        if self.scope == "room":
            if room not in (None, "room", self.room_id):
                raise CommandError("in a protected room, commands act on this room only; use the management room")
            return self.room_id
        return None if room == "room" else room

    async def rooms_for(self, scope: str | None) -> list[str]:
        """`all` (every protected room), a named room, or this room."""
        if scope == "all":
            if self.scope == "room":
                raise CommandError("`all` works in the management room only")
            if not self.bot.protected:
                # Never passed on empty: Synapse's admin redact API reads no rooms as every room.
                raise CommandError("`all` names no room: modbot protects no rooms yet (`rooms protect <room>`)")
            return sorted(self.bot.protected)
        room = self.target_room(scope)
        if room is None:
            if self.room_id in self.bot.protected:
                return [self.room_id]
            raise CommandError("name a room, or `all`")
        return [await self.bot.homeserver.resolve_room(room)]


class CommandRunner:
    def __init__(
        self,
        bot: ModBot,
        commands: CommandSet,
        *,
        prefix: str,
        management_power: int,
        refusal_reply_interval: float = 300.0,
    ) -> None:
        self.bot = bot
        self.commands = commands
        self.prefix = prefix
        self.management_power = management_power
        self.refusals = RefusalThrottle(refusal_reply_interval)

    @property
    def addressing(self) -> Addressing:
        appservice = self.bot.config.appservice
        return Addressing(self.prefix, self.bot.bot_user_id, appservice.bot_localpart, appservice.bot_displayname)

    def tokens(self, event: Any) -> list[str] | None:
        return event_command_tokens(event, self.addressing)

    def is_command(self, event: Any) -> bool:
        return self.tokens(event) is not None

    async def handle(self, event: StoredEvent) -> None:
        tokens = self.tokens(event.event) or []
        room_id, sender = event.room_id, event.sender
        scope = await self._scope(room_id, sender)
        if scope is None:
            if room_id == self.bot.management_room or room_id in self.bot.protected:
                await self._refuse(event, tokens, "You are not permitted to run modbot commands here.")
            return
        if not tokens:
            tokens = ["help"]
        command, rest = self.commands.find(tokens)
        if command is None:
            group = self.commands.group(tokens[0])
            text = f"Unknown command {' '.join(tokens[:2])!r}."
            if group:
                text += " Try: " + "; ".join(c.usage() for c in group)
            else:
                text += f" `{self.prefix} help` lists the commands."
            await self._reply(event, Reply([text], ok=False))
            return
        if command.scope == "management" and scope != "management":
            await self._refuse(event, tokens, f"`{command.name}` is not permitted here: use the management room.")
            return
        content = event.event.get("content") or {}
        ctx = CommandContext(self.bot, event, room_id, sender, scope, replied_event_id(content))
        if command.long_running:
            await self._react(event, "⏳")
        try:
            values = bind(command, rest, reply_available=ctx.reply_to is not None)
            reply = await command.handler(ctx, **values)
            outcome = "ok" if reply.ok else "failed"
        except UsageError as e:
            reply, outcome = Reply([str(e)], ok=False), "usage"
        except CommandError as e:
            reply, outcome = Reply([str(e)], ok=False), "failed"
        except HomeserverError as e:
            reply, outcome = Reply([f"The homeserver refused: {e}"], ok=False), "failed"
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("command %r failed (reference %s)", tokens, ref)
            reply, outcome = Reply([f"Something went wrong (reference {ref}; see the bot's log)."], ok=False), "error"
        await self._audit(event, outcome, tokens)
        await self._reply(event, reply)
        if command.long_running:
            await self._react(event, "✅" if reply.ok else "❌")

    async def _scope(self, room_id: str, sender: str) -> str | None:
        if sender == self.bot.bot_user_id:
            return None
        try:
            mgmt = self.bot.management_room
            # The safety team may run every command, in the management room or in a
            # protected room (e.g. replying to the message in question).
            if mgmt and (room_id == mgmt or room_id in self.bot.protected):
                power = await self.bot.powers.get(mgmt)
                if power.of(sender) >= self.management_power and sender in await self.bot.homeserver.joined_members(mgmt):
                    return "management"
            if room_id in self.bot.protected:
                power = await self.bot.powers.get(room_id)
                return "room" if power.of(sender) >= power.ban else None
        except HomeserverError as e:
            log.warning("cannot read power levels in %s: %s", room_id, e)
        return None

    async def _refuse(self, event: StoredEvent, tokens: list[str], text: str) -> None:
        """A "not permitted": audited every time, answered at most once per user per interval."""
        answer = self.refusals.should_answer(event.sender, time.monotonic())
        note = "" if answer else f" (not answered: refused less than {self.refusals.interval:g} s ago)"
        await self._audit(event, "denied", tokens, note)
        if answer:
            await self._reply(event, Reply([text], ok=False))

    async def _audit(self, event: StoredEvent, outcome: str, tokens: list[str], note: str = "") -> None:
        words = " ".join(tokens)
        if len(words) > _AUDIT_QUOTE_LIMIT:  # anyone may send 64 KiB; the audit keeps the gist
            words = words[:_AUDIT_QUOTE_LIMIT] + "..."
        await self.bot.store.audit(
            "command", outcome, f"{event.sender}: {self.prefix} {words}".strip() + note,
            event_id=event.event_id, room_id=event.room_id, sender=event.sender,
        )

    async def _reply(self, event: StoredEvent, reply: Reply) -> None:
        body = "\n".join(reply.lines)
        formatted = "<br>".join(_inline_code(line) for line in reply.lines)
        content: dict[str, Any] = {
            "msgtype": "m.notice",
            "body": body,
            "format": "org.matrix.custom.html",
            "formatted_body": formatted,
            "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
        }
        root = thread_root(event.event.get("content"))
        if root:
            content["m.relates_to"] = {
                "rel_type": "m.thread", "event_id": root, "is_falling_back": False,
                "m.in_reply_to": {"event_id": event.event_id},
            }
        try:
            await self.bot.homeserver.send_message(event.room_id, content, txn_id_for(f"reply:{event.event_id}"))
        except HomeserverError as e:
            log.warning("cannot reply in %s: %s", event.room_id, e)

    async def _react(self, event: StoredEvent, key: str) -> None:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event.event_id, "key": key}}
        try:
            await self.bot.homeserver.send_message(
                event.room_id, content, txn_id_for(f"react:{key}:{event.event_id}"), event_type="m.reaction"
            )
        except HomeserverError as e:
            log.warning("cannot react in %s: %s", event.room_id, e)


def _inline_code(line: str) -> str:
    # `text` in a reply line becomes <code>text</code>; everything else is escaped.
    parts = line.split("`")
    out = []
    for i, part in enumerate(parts):
        out.append(f"<code>{html.escape(part)}</code>" if i % 2 else html.escape(part))
    return "".join(out)
