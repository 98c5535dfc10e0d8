"""Runs chat commands: who may, parsing, replies, progress markers, audit."""

from __future__ import annotations

import html
import logging
import secrets
import time
from typing import Any

from ..act.executor import txn_id_for
from ..act.homeserver import HomeserverError
from ..record.store import StoredEvent
from .context import CommandContext, CommandError, CommandServices, Reply
from .framework import CommandSet, UsageError, bind
from .parse import Addressing, event_command_tokens, replied_event_id, thread_root
from .refusals import RefusalThrottle

# Where handlers and tests have always found them.
__all__ = ["CommandContext", "CommandError", "CommandRunner", "Reply"]

log = logging.getLogger("modbot.commands")

# Characters of a command's words kept in its audit row.
_AUDIT_QUOTE_LIMIT = 500


class CommandRunner:
    """Answers the commands among the events: checks who may, parses, runs the handler with
    the services, replies; every command and every refusal is audited."""

    def __init__(
        self,
        services: CommandServices,
        commands: CommandSet,
        *,
        addressing: Addressing,
        management_power: int,
        refusal_reply_interval: float = 300.0,
    ) -> None:
        self.services = services
        self.commands = commands
        self.addressing = addressing
        self.prefix = addressing.prefix
        self.management_power = management_power
        self.refusals = RefusalThrottle(refusal_reply_interval)

    def tokens(self, event: Any) -> list[str] | None:
        return event_command_tokens(event, self.addressing)

    def is_command(self, event: Any) -> bool:
        return self.tokens(event) is not None

    async def handle(self, event: StoredEvent) -> None:
        tokens = self.tokens(event.event) or []
        room_id, sender = event.room_id, event.sender
        scope = await self._scope(room_id, sender)
        if scope is None:
            if room_id == self.services.management_room or room_id in self.services.controls.protected:
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
        ctx = CommandContext(self.services, event, room_id, sender, scope, replied_event_id(content))
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
        services = self.services
        protected = services.controls.protected
        if sender == services.bot_user_id:
            return None
        try:
            mgmt = services.management_room
            # The safety team may run every command, in the management room or in a
            # protected room (e.g. replying to the message in question).
            if mgmt and (room_id == mgmt or room_id in protected):
                power = await services.powers.get(mgmt)
                if power.of(sender) >= self.management_power:
                    if sender in await services.homeserver.joined_members(mgmt):
                        return "management"
            if room_id in protected:
                power = await services.powers.get(room_id)
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
        await self.services.store.audit(
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
            await self.services.homeserver.send_message(event.room_id, content, txn_id_for(f"reply:{event.event_id}"))
        except HomeserverError as e:
            log.warning("cannot reply in %s: %s", event.room_id, e)

    async def _react(self, event: StoredEvent, key: str) -> None:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event.event_id, "key": key}}
        try:
            await self.services.homeserver.send_message(
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
