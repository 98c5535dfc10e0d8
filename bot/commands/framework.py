"""Commands declared with their arguments; usage text and parsing come from the declaration."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .parse import Target, parse_target

ArgKind = Literal["user", "room", "scope", "mxc", "target", "int", "word", "text", "flag", "onoff", "hash"]
Scope = Literal["management", "room"]
ROOM: Scope = "room"  # a command room moderators may run in their protected room

_HASH = re.compile(r"^(?:(sha256|pdq):)?([0-9a-fA-F]{64})$")


class UsageError(Exception):
    """The command's arguments don't fit its declaration."""


@dataclass(frozen=True)
class Arg:
    name: str
    kind: ArgKind
    optional: bool = False
    help: str = ""
    # user/mxc/target arguments may be given by replying to a message instead.
    from_reply: bool = False
    keyword: str | None = None  # e.g. "limit" for `limit N`

    def usage(self) -> str:
        if self.kind == "flag":
            return f"[--{self.name}]"
        text = f"{self.keyword} <{self.name}>" if self.keyword else f"<{self.name}>"
        if self.kind == "scope":
            text = "<room|all>"
        if self.kind == "onoff":
            text = "<on|off>"
        if self.kind == "text":
            text = f"<{self.name}...>"
        if self.from_reply:
            return text[:-1] + "|reply>"
        return f"[{text}]" if self.optional else text


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    name: str  # may be two words: "rooms protect"
    help: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    # "room": room moderators may run it in their protected room; "management": the
    # management room's members only.
    scope: Scope = "management"
    long_running: bool = False
    section: str = "general"

    def usage(self) -> str:
        return " ".join([self.name, *(a.usage() for a in self.args)])


@dataclass
class CommandSet:
    commands: dict[str, Command] = field(default_factory=dict)

    def add(self, command: Command) -> None:
        if command.name in self.commands:
            raise ValueError(f"command {command.name!r} declared twice")
        self.commands[command.name] = command

    def command(
        self, name: str, help: str, *args: Arg,
        scope: Scope = "management", long_running: bool = False, section: str = "general",
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(Command(name, help, handler, tuple(args), scope, long_running, section))
            return handler

        return register

    def find(self, tokens: Sequence[str]) -> tuple[Command | None, list[str]]:
        """The command the tokens name (longest name first) and the remaining tokens."""
        for words in (2, 1):
            if len(tokens) >= words:
                name = " ".join(t.lower() for t in tokens[:words])
                if name in self.commands:
                    return self.commands[name], list(tokens[words:])
        return None, list(tokens)

    def group(self, word: str) -> list[Command]:
        return [c for name, c in self.commands.items() if name.split()[0] == word.lower()]


def bind(command: Command, tokens: Sequence[str], *, reply_available: bool) -> dict[str, Any]:
    """Parse `tokens` against the command's declared arguments. Raises UsageError.

    Arguments that may come from a replied-to message and are absent are bound to None;
    the handler then takes them from the reply.
    """
    rest = list(tokens)
    values: dict[str, Any] = {}
    for arg in command.args:
        if arg.kind == "flag":
            flag = f"--{arg.name}"
            values[arg.name] = flag in rest
            rest = [t for t in rest if t != flag]
    for arg in command.args:
        if arg.kind == "flag":
            continue
        if arg.kind == "text":
            values[arg.name] = " ".join(rest) or None
            rest = []
            if values[arg.name] is None and not arg.optional:
                raise UsageError(f"missing {arg.name}. Usage: {command.usage()}")
            continue
        if arg.keyword:
            if rest and rest[0].lower() == arg.keyword:
                # A bad value is an error, never ignored: `limit ten` must not mean "no limit".
                value = _convert(arg, rest[1]) if len(rest) >= 2 else None
                if value is None:
                    raise UsageError(f"{arg.keyword} needs {_describe(arg)}. Usage: {command.usage()}")
                values[arg.name] = value
                rest = rest[2:]
            elif arg.optional:
                values[arg.name] = None
            else:
                raise UsageError(f"missing {arg.name}. Usage: {command.usage()}")
            continue
        value = _convert(arg, rest[0]) if rest else None
        if value is not None:
            values[arg.name] = value
            rest = rest[1:]
        elif arg.optional or (arg.from_reply and reply_available):
            values[arg.name] = None
        elif rest:
            raise UsageError(f"{rest[0]!r} is not a valid {arg.name} ({_describe(arg)}). Usage: {command.usage()}")
        else:
            raise UsageError(f"missing {arg.name}. Usage: {command.usage()}")
    if rest:
        raise UsageError(f"unexpected {' '.join(rest)!r}. Usage: {command.usage()}")
    return values


def _describe(arg: Arg) -> str:
    return {
        "user": "a user ID or matrix.to link",
        "room": "a room ID, alias or matrix.to link",
        "scope": "'room', 'all' or a room",
        "mxc": "an mxc:// URI",
        "target": "an mxc URI, user or room",
        "int": "a number",
        "onoff": "on or off",
        "hash": "a 64-hex sha256 or pdq:<hex>",
    }.get(arg.kind, "a word")


def _convert(arg: Arg, token: str) -> Any:
    """The token as the argument's kind, or None when it isn't one."""
    kind = arg.kind
    if kind in ("word",):
        return token
    if kind == "int":
        # Not "²"; and not beyond 18 digits: int() refuses more than 4300, and no count or
        # id modbot takes is that large.
        return int(token) if token.isascii() and token.isdigit() and len(token) <= 18 else None
    if kind == "onoff":
        return token.lower() if token.lower() in ("on", "off") else None
    if kind == "hash":
        m = _HASH.match(token)
        return (m.group(1) or "sha256", m.group(2).lower()) if m else None
    if kind == "scope" and token.lower() in ("room", "all"):
        return token.lower()
    target: Target | None = parse_target(token)
    if target is None:
        return None
    if kind == "user":
        return target.value if target.kind == "user" else None
    if kind in ("room", "scope"):
        return target.value if target.kind in ("room", "alias") else None
    if kind == "mxc":
        return target.value if target.kind == "mxc" else None
    if kind == "target":
        return target if target.kind in ("mxc", "user", "room", "alias") else None
    return None
