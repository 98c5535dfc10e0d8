"""PURE parsing of chat commands: the invocation, its arguments, and the targets they name."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from ..extract import parse_mxc

TargetKind = Literal["user", "room", "alias", "event", "mxc"]

_USER = re.compile(r"^@[^:\s]+:\S+$")
_ROOM = re.compile(r"^![^\s/]+$")
_ALIAS = re.compile(r"^#[^:\s]+:\S+$")
# Room v1-v3 event IDs are standard base64 and may hold "/" (a permalink percent-encodes it).
_EVENT = re.compile(r"^\$\S+$")
_MATRIX_TO = re.compile(r"^https?://matrix\.to/#/(?P<path>[^?\s]+)(\?\S*)?$")


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    value: str
    room: str | None = None  # for an event link: the room it is in


def parse_target(token: str) -> Target | None:
    """A user ID, room ID, alias, event ID, mxc URI, or a matrix.to link to one of them."""
    token = token.strip().strip("<>")
    link = _MATRIX_TO.match(token)
    if link:
        parts = [unquote(p) for p in link.group("path").split("/") if p]
        if len(parts) == 2 and _EVENT.match(parts[1]) and (_ROOM.match(parts[0]) or _ALIAS.match(parts[0])):
            return Target("event", parts[1], room=parts[0])
        if len(parts) == 1:
            token = parts[0]
        else:
            return None
    if _USER.match(token):
        return Target("user", token)
    if _ROOM.match(token):
        return Target("room", token)
    if _ALIAS.match(token):
        return Target("alias", token)
    if _EVENT.match(token):
        return Target("event", token)
    if token.startswith("mxc://") and parse_mxc(token):
        return Target("mxc", token)
    return None


def _strip_reply_fallback(body: str) -> str:
    # Clients quote the replied-to message as "> ..." lines before the reply itself.
    lines = body.splitlines()
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


@dataclass(frozen=True)
class Addressing:
    """How a message can address the bot, so that ordinary talk never starts a command."""

    prefix: str  # commands.prefix, e.g. "!mod"
    bot_user_id: str
    localpart: str  # "modbot": `modbot: status` addresses the bot
    display_name: str = ""  # the text of a pill; counts only with a real mention


# A pill: a link to a user's matrix.to permalink in formatted_body.
_PILL = re.compile(r"""href\s*=\s*["']?https?://matrix\.to/#/([^"'\s>?]+)""", re.IGNORECASE)
_SEPARATORS = (": ", ":", ", ", ",", " ")


def mentions_bot(content: dict[str, Any], bot_user_id: str) -> bool:
    """Whether the message really mentions the bot: a pill to it, or m.mentions naming it.

    In a reply, clients put the replied-to sender in m.mentions by themselves (the
    intentional-mentions rules), so there only a pill is proof that the bot was addressed:
    otherwise any reply to one of the bot's notices that starts with its name would be a
    command.
    """
    formatted = content.get("formatted_body")
    if isinstance(formatted, str) and any(unquote(link) == bot_user_id for link in _PILL.findall(formatted)):
        return True
    mentions = content.get("m.mentions")
    user_ids = mentions.get("user_ids") if isinstance(mentions, dict) else None
    return isinstance(user_ids, list) and bot_user_id in user_ids and replied_event_id(content) is None


def command_tokens(content: Any, addressing: Addressing) -> list[str] | None:
    """The words of a command in a message's content, or None when the message is not one.

    A command starts with the prefix (`!mod ban @x:y`), the bot's localpart and a colon
    (`modbot: ban @x:y`), or a real mention of the bot (a pill, or m.mentions) at the start:
    `@modbot:example.org ban ...`, `ModBot: ban ...`. Plain text that merely begins with the
    bot's name (`modbot is down again`) is not a command.
    """
    # Never m.notice: the spec forbids answering notices automatically, so bots cannot loop.
    if not isinstance(content, dict) or content.get("msgtype") != "m.text":
        return None
    body = content.get("body")
    if not isinstance(body, str):
        return None
    text = _strip_reply_fallback(body).strip()
    rest = _after_address(text, addressing, content)
    if rest is None:
        return None
    try:
        return shlex.split(rest)
    except ValueError:  # an unbalanced quote: fall back to plain words
        return rest.split()


def _after_address(text: str, addressing: Addressing, content: dict[str, Any]) -> str | None:
    prefix = addressing.prefix
    if prefix and (text == prefix or text.startswith(prefix + " ")):
        return text[len(prefix) :]
    localpart = addressing.localpart
    if localpart and _starts_with(text, localpart) and text[len(localpart) : len(localpart) + 1] == ":":
        return text[len(localpart) + 1 :]
    names = [n for n in (addressing.bot_user_id, addressing.display_name, localpart) if n]
    for name in sorted(names, key=len, reverse=True):  # "ModBot Display" before "ModBot"
        rest = text[len(name) :]
        if not _starts_with(text, name) or (rest and not rest.startswith(_SEPARATORS)):
            continue
        if not mentions_bot(content, addressing.bot_user_id):
            return None
        return rest[1:] if rest[:1] in (":", ",") else rest
    return None


def _starts_with(text: str, word: str) -> bool:
    # Compared slice to slice: lower() may change a string's length ("İ"), startswith on
    # lowered strings would then cut the text in the wrong place.
    return text[: len(word)].lower() == word.lower()


def event_command_tokens(event: Any, addressing: Addressing) -> list[str] | None:
    """The words of a command in a raw event, or None: only others' m.room.message events."""
    if not isinstance(event, dict) or event.get("type") != "m.room.message":
        return None
    if event.get("sender") == addressing.bot_user_id:
        return None
    return command_tokens(event.get("content"), addressing)


def replied_event_id(content: Any) -> str | None:
    relates = content.get("m.relates_to") if isinstance(content, dict) else None
    if not isinstance(relates, dict):
        return None
    if relates.get("rel_type") == "m.thread" and relates.get("is_falling_back") is True:
        return None  # a plain thread message: m.in_reply_to is a fallback, not a reply
    reply = relates.get("m.in_reply_to")
    if isinstance(reply, dict) and isinstance(reply.get("event_id"), str):
        return reply["event_id"]
    return None


def thread_root(content: Any) -> str | None:
    relates = content.get("m.relates_to") if isinstance(content, dict) else None
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread" and isinstance(relates.get("event_id"), str):
        return relates["event_id"]
    return None
