"""PURE parsing of chat commands: the invocation, its arguments, and the targets they name."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
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


def command_tokens(
    content: Any, *, prefix: str, bot_user_id: str, bot_names: Sequence[str] = ()
) -> list[str] | None:
    """The words of a command in a message, or None when the message is not one.

    A command starts with the prefix (`!mod ban @x:y`) or a mention of the bot
    (`modbot: ban @x:y`, `@modbot:example.org ban ...`, or a pill).
    """
    # Never m.notice: the spec forbids answering notices automatically, so bots cannot loop.
    if not isinstance(content, dict) or content.get("msgtype") != "m.text":
        return None
    body = content.get("body")
    if not isinstance(body, str):
        return None
    text = _strip_reply_fallback(body).strip()
    rest: str | None = None
    if text == prefix or text.startswith(prefix + " "):
        rest = text[len(prefix) :]
    else:
        for name in (bot_user_id, *bot_names):
            for sep in (": ", ":", ", ", " "):
                if name and text.lower().startswith((name + sep).lower()):
                    rest = text[len(name) + len(sep) :]
                    break
            if rest is not None:
                break
    if rest is None:
        return None
    try:
        return shlex.split(rest)
    except ValueError:  # an unbalanced quote: fall back to plain words
        return rest.split()


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
