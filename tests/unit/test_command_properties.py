"""Command parsing on arbitrary input (property-based, hypothesis). Anyone can send the bot
any text in any event shape; none of it may raise out of the parsing: is it a command
(`event_command_tokens`, what the runner's tokens()/is_command call), which one (`find`),
with which arguments (`bind`, which may only say UsageError), and which targets
(`parse_target`), replies and threads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.commands.framework import CommandSet, UsageError, bind
from bot.commands.handlers import build_commands
from bot.commands.parse import Addressing, Target, command_tokens, event_command_tokens, parse_target, replied_event_id, thread_root

PROPERTY = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
BOT = "@modbot:example.org"
ADDRESSING = Addressing(prefix="!mod", bot_user_id=BOT, localpart="modbot", display_name="ModBot")
COMMANDS = build_commands()

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)

# Words a moderator (or an attacker) might type: every command word, every kind of target
# in valid and broken forms, numbers of any length, quotes, flags, and any text at all.
words = st.one_of(
    st.sampled_from(sorted({w for name in COMMANDS.commands for w in name.split()})),
    st.sampled_from([
        "all", "room", "limit", "--act", "--tell", "on", "off", "#1", "0", "-1", "²", "١٢", "1e9",
        "@spam:example.org", "@", "@:x", "!room:example.org", "!", "#lobby:example.org", "$event", "$",
        "mxc://example.org/abc", "mxc://", "mxc://[::1/x", "https://matrix.to/#/@spam:example.org",
        "https://matrix.to/#/%40spam%3Aexample.org", "https://matrix.to/#/!r:x/$e?via=x", "https://matrix.to/#/%ZZ",
        "https://matrix.to/#/!r/$e/x/y", "<@spam:example.org>", "sha256:" + "ab" * 32, "pdq:" + "f0" * 32, "ab" * 32,
        '"', "'", '"unclosed', "\\", "\x00", "\u202e", "İ",
    ]),
    st.integers(min_value=1, max_value=6000).map(lambda n: "7" * n),  # up to more digits than int() reads
    st.text(max_size=30),
)
texts = st.one_of(
    st.lists(words, max_size=12).map(" ".join),
    st.builds(lambda head, rest: head + " ".join(rest), st.sampled_from(["!mod ", "modbot: ", "ModBot: ", "@modbot:example.org ", "> quoted\n\n!mod "]), st.lists(words, max_size=10)),
    st.text(),
)
contents = st.fixed_dictionaries(
    {"msgtype": st.one_of(st.just("m.text"), json_values), "body": st.one_of(texts, json_values)},
    optional={
        "formatted_body": st.one_of(st.just(f'<a href="https://matrix.to/#/{BOT}">ModBot</a>: status'), texts, json_values),
        "m.mentions": st.one_of(st.fixed_dictionaries({"user_ids": st.one_of(st.just([BOT]), json_values)}), json_values),
        "m.relates_to": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "rel_type": st.one_of(st.sampled_from(["m.thread", "m.replace"]), json_values),
                    "event_id": json_values,
                    "is_falling_back": json_values,
                    "m.in_reply_to": st.one_of(st.fixed_dictionaries({"event_id": json_values}), json_values),
                },
            ),
            json_values,
        ),
    },
)
events = st.fixed_dictionaries(
    {
        "type": st.one_of(st.just("m.room.message"), json_values),
        "sender": st.one_of(st.sampled_from(["@mod:example.org", BOT]), json_values),
        "content": st.one_of(contents, json_values),
    }
)


def run_parsing(tokens: list[str] | None, commands: CommandSet, *, reply: bool) -> None:
    """What the runner does with a message's words: find the command, bind its arguments."""
    if tokens is None:
        return
    assert all(isinstance(t, str) for t in tokens)
    if not tokens:
        return
    command, rest = commands.find(tokens)
    if command is None:
        commands.group(tokens[0])
        return
    try:
        values = bind(command, rest, reply_available=reply)
    except UsageError as e:
        assert command.usage() in str(e)
        return
    assert set(values) == {a.name for a in command.args}


@PROPERTY
@given(events)
def test_any_event_is_a_command_or_not_without_raising(event: dict[str, Any]) -> None:
    tokens = event_command_tokens(event, ADDRESSING)
    assert tokens is None or isinstance(tokens, list)
    if event.get("sender") == BOT or event.get("type") != "m.room.message":
        assert tokens is None
    content = event.get("content")
    run_parsing(tokens, COMMANDS, reply=replied_event_id(content) is not None)
    thread_root(content)


@PROPERTY
@given(json_values)
def test_any_json_as_an_event_or_content_never_raises(value: Any) -> None:
    assert event_command_tokens(value, ADDRESSING) is None or isinstance(value, dict)
    command_tokens(value, ADDRESSING)
    replied_event_id(value)
    thread_root(value)


@PROPERTY
@given(texts, st.booleans())
def test_any_text_message_parses_or_says_its_usage(body: str, reply: bool) -> None:
    tokens = command_tokens({"msgtype": "m.text", "body": body}, ADDRESSING)
    run_parsing(tokens, COMMANDS, reply=reply)


@PROPERTY
@given(st.sampled_from(sorted(COMMANDS.commands)), st.lists(words, max_size=8), st.booleans())
def test_every_command_binds_any_words_or_says_its_usage(name: str, args: list[str], reply: bool) -> None:
    run_parsing([*name.split(), *args], COMMANDS, reply=reply)


@PROPERTY
@given(st.one_of(words, st.text()))
def test_any_token_is_a_target_or_none(token: str) -> None:
    target = parse_target(token)
    assert target is None or (isinstance(target, Target) and isinstance(target.value, str) and target.value)


@pytest.mark.parametrize(
    ("name", "args"),
    [("audit", ["9" * 5000]), ("redact", ["@spam:example.org", "limit", "9" * 5000]), ("review approve", ["9" * 19])],
)
def test_a_number_too_long_is_a_usage_error_not_a_crash(name: str, args: list[str]) -> None:
    """Found by the properties above: int() refuses strings of more than 4300 digits."""
    with pytest.raises(UsageError):
        bind(COMMANDS.commands[name], args, reply_available=False)


def test_a_number_of_eighteen_digits_is_still_a_number() -> None:
    assert bind(COMMANDS.commands["review approve"], ["9" * 18], reply_available=False) == {"id": 10**18 - 1}
