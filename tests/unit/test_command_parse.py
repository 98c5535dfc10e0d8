"""Command parsing (PURE): the targets a moderator names, the words of a command, and the
relations (reply, thread) of the message that carries it."""

from __future__ import annotations

from typing import Any

import pytest

from bot.commands.parse import (
    Addressing,
    Target,
    command_tokens,
    event_command_tokens,
    parse_target,
    replied_event_id,
    thread_root,
)

BOT = "@modbot:example.org"

# A room-v3 event ID: standard base64, so it may hold "/" and "+".
V3_EVENT = "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk"


# --- targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        # bare identifiers
        ("@alice:example.org", Target("user", "@alice:example.org")),
        ("@alice:example.org:8448", Target("user", "@alice:example.org:8448")),
        ("@a.b_c=d-e/f+g:[::1]:8448", Target("user", "@a.b_c=d-e/f+g:[::1]:8448")),
        ("!room:example.org", Target("room", "!room:example.org")),
        ("!opaqueV12RoomIdBase64Url_-9", Target("room", "!opaqueV12RoomIdBase64Url_-9")),
        ("#lobby:example.org", Target("alias", "#lobby:example.org")),
        ("$event:example.org", Target("event", "$event:example.org")),
        ("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", Target("event", "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg")),
        (V3_EVENT, Target("event", V3_EVENT)),
        ("mxc://example.org/abcDEF123_-", Target("mxc", "mxc://example.org/abcDEF123_-")),
        ("mxc://127.0.0.1:8008/media", Target("mxc", "mxc://127.0.0.1:8008/media")),
        # clients wrap links in <>; copy-paste brings whitespace
        ("<@alice:example.org>", Target("user", "@alice:example.org")),
        ("  !room:example.org\n", Target("room", "!room:example.org")),
        # matrix.to links to one identifier, with or without ?via=
        ("https://matrix.to/#/@alice:example.org", Target("user", "@alice:example.org")),
        ("http://matrix.to/#/@alice:example.org", Target("user", "@alice:example.org")),
        ("https://matrix.to/#/!room:example.org?via=example.org", Target("room", "!room:example.org")),
        ("https://matrix.to/#/!room:example.org?via=a.org&via=b.org", Target("room", "!room:example.org")),
        ("https://matrix.to/#/!opaqueV12?via=example.org", Target("room", "!opaqueV12")),
        ("https://matrix.to/#/#lobby:example.org", Target("alias", "#lobby:example.org")),
        ("<https://matrix.to/#/@alice:example.org>", Target("user", "@alice:example.org")),
        # percent-encoded identifiers, as the matrix.to spec writes them
        ("https://matrix.to/#/%40alice%3Aexample.org", Target("user", "@alice:example.org")),
        ("https://matrix.to/#/%23lobby%3Aexample.org?via=example.org", Target("alias", "#lobby:example.org")),
        ("https://matrix.to/#/%21room%3Aexample.org", Target("room", "!room:example.org")),
        # event permalinks: the event, and the room it is in
        (
            "https://matrix.to/#/!room:example.org/$event:example.org",
            Target("event", "$event:example.org", room="!room:example.org"),
        ),
        (
            "https://matrix.to/#/!room:example.org/$event?via=example.org&via=other.org",
            Target("event", "$event", room="!room:example.org"),
        ),
        (
            "https://matrix.to/#/#lobby:example.org/$event?via=example.org",
            Target("event", "$event", room="#lobby:example.org"),
        ),
        ("https://matrix.to/#/!opaqueV12/$ev42", Target("event", "$ev42", room="!opaqueV12")),
        (
            "https://matrix.to/#/%21room%3Aexample.org/%24event%3Aexample.org",
            Target("event", "$event:example.org", room="!room:example.org"),
        ),
        # a room-v3 event's "/" is percent-encoded in a permalink
        (
            "https://matrix.to/#/!room:example.org/" + V3_EVENT.replace("$", "%24").replace("/", "%2F") + "?via=example.org",
            Target("event", V3_EVENT, room="!room:example.org"),
        ),
    ],
)
def test_a_target_is_recognised_in_every_form(token: str, expected: Target) -> None:
    assert parse_target(token) == expected


@pytest.mark.parametrize(
    "token",
    [
        "",
        "   ",
        "alice",
        "@",
        "@alice",  # no server name
        "@:example.org",
        "!",
        "#lobby",  # an alias needs its server
        "$",
        "mxc://",
        "mxc://example.org",
        "mxc://example.org/",
        "mxc://example.org/a/b",
        "mxc://example.org/abc?download=1",
        "mxc://exa mple.org/abc",
        "https://example.org/#/@alice:example.org",  # not matrix.to
        "matrix.to/#/@alice:example.org",  # no scheme
        "https://matrix.to/#/",
        "https://matrix.to/#/alice",
        "https://matrix.to/#/@alice:example.org/extra",  # a user has no sub-path
        "https://matrix.to/#/@alice:example.org/$event",  # an event lives in a room, not a user
        "https://matrix.to/#/!room:example.org/notanevent",
        "https://matrix.to/#/!room:example.org/$event/more",
        "https://matrix.to/#/mxc://example.org/abc",
        "https://matrix.to/@alice:example.org",  # no fragment
        "ban",
        "--act",
        "12",
    ],
)
def test_junk_is_no_target(token: str) -> None:
    assert parse_target(token) is None


# --- the words of a command -------------------------------------------------------------------


ADDRESSING = Addressing(prefix="!mod", bot_user_id=BOT, localpart="modbot", display_name="ModBot Display")
PILL = f'<a href="https://matrix.to/#/{BOT}">ModBot Display</a>'


def text(body: str, msgtype: str = "m.text", **extra: Any) -> dict[str, Any]:
    return {"msgtype": msgtype, "body": body, **extra}


def mention(body: str, formatted: str | None = None, *, user_ids: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A message as a client sends it when the bot's name was picked from the member list."""
    content = text(body, **extra)
    content["m.mentions"] = {"user_ids": [BOT] if user_ids is None else user_ids}
    if formatted is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = formatted
    return content


def tokens(content: Any, addressing: Addressing = ADDRESSING) -> list[str] | None:
    return command_tokens(content, addressing)


REPLY_FALLBACK = "> <@alice:example.org> look at this\n> second quoted line\n\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # the prefix
        ("!mod status", ["status"]),
        ("!mod ban @spam:example.org all being rude", ["ban", "@spam:example.org", "all", "being", "rude"]),
        ("  !mod   rooms   list  ", ["rooms", "list"]),
        ("!mod", []),  # the runner answers with help
        ("!mod   ", []),
        # quoting keeps a reason in one word; an unbalanced quote falls back to plain words
        ('!mod ban @spam:example.org "spamming links"', ["ban", "@spam:example.org", "spamming links"]),
        ("!mod ban @spam:example.org don't", ["ban", "@spam:example.org", "don't"]),
        # "#" starts an alias, not a comment
        ("!mod rooms protect #lobby:example.org", ["rooms", "protect", "#lobby:example.org"]),
        # the localpart and a colon: typed on purpose, in any case
        ("modbot: status", ["status"]),
        ("modbot:status", ["status"]),
        ("ModBot: ban @x:example.org", ["ban", "@x:example.org"]),
        # the command may be a reply: the quoted fallback is not part of it
        (REPLY_FALLBACK + "!mod scan --act", ["scan", "--act"]),
        (REPLY_FALLBACK + "modbot: ban", ["ban"]),
        # plain talk that merely starts with the bot's name is not a command (anyone could
        # make the bot answer, and it is exempt from rate limits)
        ("modbot status", None),
        ("modbot is down again", None),
        ("Modbot, status", None),
        ("MODBOT status", None),
        ("ModBot Display: review list", None),  # a display name typed without a pill
        ("@modbot:example.org ban @x:example.org", None),  # no m.mentions, no pill
        ("@modbot:example.org: status", None),
        # plain text
        ("hello", None),
        ("", None),
        ("!moderation is great", None),  # the prefix is a whole word
        ("!modstatus", None),
        ("!MOD status", None),
        ("please !mod status", None),
        ("I asked modbot: status", None),
        ("modbotty: status", None),
        ("modbot", None),
        ("@modbot:example.organisation status", None),
        # a reply whose quote holds a command is not a command
        ("> <@mod:example.org> !mod ban @x:example.org\n\nthanks!", None),
        ("> !mod ban @x:example.org", None),
    ],
)
def test_command_words(body: str, expected: list[str] | None) -> None:
    assert tokens(text(body)) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # a pill: the body holds the display name, formatted_body the link to the bot
        (mention("ModBot Display: review list", f"{PILL}: review list"), ["review", "list"]),
        (mention("ModBot Display status", f"{PILL} status"), ["status"]),
        (mention("ModBot Display", PILL), []),  # the runner answers with help
        # a pill without m.mentions (older clients), the link percent-encoded or single-quoted
        (text("ModBot Display: status", formatted_body=f"{PILL}: status"), ["status"]),
        (
            text("ModBot Display: status", formatted_body='<a href="https://matrix.to/#/%40modbot%3Aexample.org">ModBot Display</a>: status'),
            ["status"],
        ),
        (text("@modbot:example.org status", formatted_body=f"<a href='https://matrix.to/#/{BOT}'>@modbot:example.org</a> status"), ["status"]),
        # m.mentions naming the bot, without a pill
        (mention("@modbot:example.org ban @x:example.org"), ["ban", "@x:example.org"]),
        (mention("@modbot:example.org: status"), ["status"]),
        (mention("modbot status"), ["status"]),
        (mention("ModBot Display, status"), ["status"]),
        # the name must start the message, and be the whole name
        (mention("hey ModBot Display, status", f"hey {PILL}, status"), None),
        (mention("ModBotDisplayed status"), None),
        # a mention of someone else
        (mention("modbot status", user_ids=["@alice:example.org"]), None),
        (text("ModBot Display: status", formatted_body='<a href="https://matrix.to/#/@alice:example.org">ModBot Display</a>: status'), None),
        # in a reply, clients put the replied-to sender in m.mentions by themselves: replying
        # to one of the bot's notices is not addressing it, unless with a pill
        (mention("modbot is broken", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$notice"}}}), None),
        (
            mention("ModBot Display: status", f"{PILL}: status", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$notice"}}}),
            ["status"],
        ),
        # hostile shapes of m.mentions and formatted_body are no mention
        (text("modbot status", **{"m.mentions": {"user_ids": BOT}}), None),
        (text("modbot status", **{"m.mentions": [BOT]}), None),
        (text("modbot status", **{"m.mentions": {"user_ids": [[BOT], {"id": BOT}]}}), None),
        (text("modbot status", formatted_body=["https://matrix.to/#/" + BOT]), None),
        (text("modbot status", formatted_body=f"https://matrix.to/#/{BOT}"), None),  # a bare URL, not a link
    ],
)
def test_a_mention_starts_a_command_only_when_it_is_real(content: dict[str, Any], expected: list[str] | None) -> None:
    assert tokens(content) == expected


@pytest.mark.parametrize(
    "content",
    [
        # m.notice is never answered automatically (Matrix spec), so bots cannot loop
        text("!mod status", "m.notice"),
        text("modbot: status", "m.notice"),
        text("!mod status", "m.emote"),
        text("!mod status", "m.image", url="mxc://example.org/abc"),
        text("!mod status", "m.file"),
        {"body": "!mod status"},  # no msgtype
        {"msgtype": "m.text"},  # no body
        {"msgtype": "m.text", "body": ["!mod", "status"]},
        {"msgtype": "m.text", "body": None},
        None,
        "!mod status",
        ["!mod status"],
    ],
)
def test_only_text_messages_are_commands(content: Any) -> None:
    assert tokens(content) is None


def test_an_empty_bot_name_does_not_make_every_message_a_command() -> None:
    nameless = Addressing(prefix="!mod", bot_user_id=BOT, localpart="", display_name="")
    assert tokens(text("hello there"), nameless) is None
    assert tokens(text(": status"), nameless) is None
    assert tokens(mention("hello there"), nameless) is None
    assert tokens(mention("@modbot:example.org status"), nameless) == ["status"]


def test_another_prefix() -> None:
    safety = Addressing(prefix="!safety", bot_user_id=BOT, localpart="modbot")
    assert tokens(text("!safety ban @x:y"), safety) == ["ban", "@x:y"]
    assert tokens(text("!mod ban @x:y"), safety) is None


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"type": "m.room.message", "sender": "@alice:example.org", "content": text("!mod status")}, ["status"]),
        # the bot's own messages, other event types, and what is not an event
        ({"type": "m.room.message", "sender": BOT, "content": text("!mod status")}, None),
        ({"type": "m.sticker", "sender": "@alice:example.org", "content": text("!mod status")}, None),
        ({"type": ["m.room.message"], "sender": "@alice:example.org", "content": text("!mod status")}, None),
        ({"sender": "@alice:example.org", "content": text("!mod status")}, None),
        ({"type": "m.room.message", "sender": "@alice:example.org"}, None),
        (None, None),
        ("!mod status", None),
        ([{"type": "m.room.message"}], None),
    ],
)
def test_only_others_room_messages_are_commands(event: Any, expected: list[str] | None) -> None:
    assert event_command_tokens(event, ADDRESSING) == expected


# --- reply and thread -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relates_to", "reply", "root"),
    [
        (None, None, None),
        ({"m.in_reply_to": {"event_id": "$parent"}}, "$parent", None),
        # a reply inside a thread
        (
            {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": False, "m.in_reply_to": {"event_id": "$parent"}},
            "$parent",
            "$root",
        ),
        # a plain thread message: its m.in_reply_to is only a fallback for clients without
        # threads, pointing at the thread's latest event; it is not a reply to that event
        (
            {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True, "m.in_reply_to": {"event_id": "$latest"}},
            None,
            "$root",
        ),
        ({"rel_type": "m.thread", "event_id": "$root"}, None, "$root"),
        # other relations and malformed ones
        ({"rel_type": "m.replace", "event_id": "$edited"}, None, None),
        ({"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}, None, None),
        ({"m.in_reply_to": "$parent"}, None, None),
        ({"m.in_reply_to": {"event_id": 42}}, None, None),
        ({"m.in_reply_to": {}}, None, None),
        ({"rel_type": "m.thread", "event_id": None}, None, None),
        ("$parent", None, None),
        (["$parent"], None, None),
    ],
)
def test_reply_and_thread_root(relates_to: Any, reply: str | None, root: str | None) -> None:
    content = text("!mod scan")
    if relates_to is not None:
        content["m.relates_to"] = relates_to
    assert replied_event_id(content) == reply
    assert thread_root(content) == root


@pytest.mark.parametrize("content", [None, "text", 42, []])
def test_reply_and_thread_of_no_content(content: Any) -> None:
    assert replied_event_id(content) is None
    assert thread_root(content) is None
