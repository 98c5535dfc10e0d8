"""extract_media_refs: every place a Matrix event can reference media, and every way it can lie."""

from __future__ import annotations

from typing import Any

import pytest

from bot.extract import extract_media_refs, parse_mxc
from bot.model import MediaRef

ROOM = "!room:example.org"


def message(content: Any, event_type: str = "m.room.message", **extra: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "room_id": ROOM,
        "sender": "@alice:example.org",
        "event_id": "$event",
        "origin_server_ts": 1_700_000_000_000,
        "content": content,
        "unsigned": {"age": 12},
        **extra,
    }


def member(content: dict[str, Any], prev_content: dict[str, Any] | None) -> dict[str, Any]:
    event = message(content, "m.room.member", state_key="@alice:example.org")
    if prev_content is not None:
        event["unsigned"] = {"prev_content": prev_content, "replaces_state": "$old"}
    return event


def ref(mxc: str, source: str, mimetype: str | None = None, encrypted: bool = False) -> MediaRef:
    server, media_id = mxc.removeprefix("mxc://").split("/")
    return MediaRef(mxc, server, media_id, source, mimetype, encrypted)


IMAGE = message(
    {
        "msgtype": "m.image",
        "body": "cat.jpg",
        "url": "mxc://example.org/cat",
        "info": {
            "mimetype": "image/jpeg",
            "size": 31037,
            "w": 394,
            "h": 398,
            "thumbnail_url": "mxc://example.org/catthumb",
            "thumbnail_info": {"mimetype": "image/png", "w": 300, "h": 300, "size": 46144},
        },
    }
)

CASES: list[tuple[str, dict[str, Any], list[MediaRef]]] = [
    (
        "m.image: the attachment and its thumbnail",
        IMAGE,
        [
            ref("mxc://example.org/cat", "content.url", "image/jpeg"),
            ref("mxc://example.org/catthumb", "content.info.thumbnail_url", "image/png"),
        ],
    ),
    (
        "m.video, m.audio and m.file attachments",
        message({"msgtype": "m.video", "body": "v.mp4", "url": "mxc://example.org/v",
                 "info": {"mimetype": "video/mp4"}}),
        [ref("mxc://example.org/v", "content.url", "video/mp4")],
    ),
    (
        "m.audio without info",
        message({"msgtype": "m.audio", "body": "a.ogg", "url": "mxc://example.org/a"}),
        [ref("mxc://example.org/a", "content.url")],
    ),
    (
        "m.file",
        message({"msgtype": "m.file", "body": "x.zip", "url": "mxc://example.org/f",
                 "info": {"mimetype": "application/zip"}}),
        [ref("mxc://example.org/f", "content.url", "application/zip")],
    ),
    (
        "m.sticker: url and thumbnail",
        message(
            {
                "body": "Landing",
                "url": "mxc://matrix.org/sticker",
                "info": {
                    "mimetype": "image/png",
                    "thumbnail_url": "mxc://matrix.org/stickerthumb",
                    "thumbnail_info": {"mimetype": "image/png"},
                },
            },
            "m.sticker",
        ),
        [
            ref("mxc://matrix.org/sticker", "content.url", "image/png"),
            ref("mxc://matrix.org/stickerthumb", "content.info.thumbnail_url", "image/png"),
        ],
    ),
    (
        "m.location preview thumbnail",
        message({"msgtype": "m.location", "body": "Here", "geo_uri": "geo:51.5,-0.1",
                 "info": {"thumbnail_url": "mxc://example.org/map"}}),
        [ref("mxc://example.org/map", "content.info.thumbnail_url")],
    ),
    (
        "formatted_body <img> tags, each once, with entities decoded",
        message(
            {
                "msgtype": "m.text",
                "body": "look :cat: :cat: :dog:",
                "format": "org.matrix.custom.html",
                "formatted_body": (
                    'look <img data-mx-emoticon src="mxc://example.org/cat" alt=":cat:">'
                    ' <IMG SRC="mxc://example.org/cat"/>'
                    ' <p><img src="mxc://example.org/d&#111;g"></p>'
                ),
            }
        ),
        [
            ref("mxc://example.org/cat", "content.formatted_body"),
            ref("mxc://example.org/dog", "content.formatted_body"),
        ],
    ),
    (
        "edit: the replacement's attachment is found in m.new_content",
        message(
            {
                "msgtype": "m.text",
                "body": "* edited",
                "m.new_content": {
                    "msgtype": "m.image",
                    "body": "new.png",
                    "url": "mxc://example.org/new",
                    "info": {"mimetype": "image/png"},
                },
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"},
            }
        ),
        [ref("mxc://example.org/new", "content.m.new_content.url", "image/png")],
    ),
    (
        "edit: the fallback and the new content name the same image; the first source wins",
        message(
            {
                "msgtype": "m.image",
                "body": "* new.png",
                "url": "mxc://example.org/new",
                "m.new_content": {
                    "msgtype": "m.image",
                    "body": "new.png",
                    "url": "mxc://example.org/new",
                    "info": {"thumbnail_url": "mxc://example.org/newthumb"},
                },
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"},
            }
        ),
        [
            ref("mxc://example.org/new", "content.url"),
            ref("mxc://example.org/newthumb", "content.m.new_content.info.thumbnail_url"),
        ],
    ),
    (
        "edit: an <img> added in the new formatted_body",
        message(
            {
                "msgtype": "m.text",
                "body": "* hi",
                "m.new_content": {
                    "msgtype": "m.text",
                    "body": "hi",
                    "format": "org.matrix.custom.html",
                    "formatted_body": 'hi <img src="mxc://example.org/sneaky">',
                },
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"},
            }
        ),
        [ref("mxc://example.org/sneaky", "content.m.new_content.formatted_body")],
    ),
    (
        "encrypted attachment and thumbnail",
        message(
            {
                "msgtype": "m.image",
                "body": "secret.jpg",
                "file": {
                    "v": "v2",
                    "url": "mxc://example.org/enc",
                    "key": {
                        "alg": "A256CTR",
                        "ext": True,
                        "k": "qcHVMSgYg-71CauWBezXI5qkaRb0LuIy-Wx5kIaHMIA",
                        "key_ops": ["encrypt", "decrypt"],
                        "kty": "oct",
                    },
                    "iv": "X85+XgHN+HEAAAAAAAAAAA",
                    "hashes": {"sha256": "5qG4fFnbbVdlAB1Q72JDKwCagV6Dbkx9uds4rSak37c"},
                },
                "info": {
                    "mimetype": "image/jpeg",
                    "thumbnail_file": {"v": "v2", "url": "mxc://example.org/encthumb"},
                    "thumbnail_info": {"mimetype": "image/jpeg"},
                },
            }
        ),
        [
            ref("mxc://example.org/enc", "content.file.url", "image/jpeg", encrypted=True),
            ref("mxc://example.org/encthumb", "content.info.thumbnail_file.url", "image/jpeg",
                encrypted=True),
        ],
    ),
    (
        "member: joining with an avatar counts as a change",
        member({"membership": "join", "displayname": "Alice", "avatar_url": "mxc://example.org/me"},
               None),
        [ref("mxc://example.org/me", "content.avatar_url")],
    ),
    (
        "member: avatar changed",
        member({"membership": "join", "avatar_url": "mxc://example.org/new"},
               {"membership": "join", "avatar_url": "mxc://example.org/old"}),
        [ref("mxc://example.org/new", "content.avatar_url")],
    ),
    (
        "member: displayname-only change does not rescan the avatar",
        member(
            {"membership": "join", "displayname": "Al", "avatar_url": "mxc://example.org/me"},
            {"membership": "join", "displayname": "Alice", "avatar_url": "mxc://example.org/me"},
        ),
        [],
    ),
    (
        "member: avatar removed",
        member({"membership": "join", "avatar_url": ""},
               {"membership": "join", "avatar_url": "mxc://example.org/me"}),
        [],
    ),
    (
        "member: prev_content at the top level (old servers)",
        {**member({"membership": "join", "avatar_url": "mxc://example.org/me"}, None),
         "prev_content": {"membership": "join", "avatar_url": "mxc://example.org/me"}},
        [],
    ),
    (
        "m.room.avatar: the image and its thumbnail",
        message(
            {
                "url": "mxc://example.org/roomavatar",
                "info": {"mimetype": "image/png", "thumbnail_url": "mxc://example.org/roomthumb"},
            },
            "m.room.avatar",
            state_key="",
        ),
        [
            ref("mxc://example.org/roomavatar", "content.url", "image/png"),
            ref("mxc://example.org/roomthumb", "content.info.thumbnail_url"),
        ],
    ),
    (
        "m.text has no attachment even if it carries a url",
        message({"msgtype": "m.text", "body": "hi", "url": "mxc://example.org/ignored"}),
        [],
    ),
    (
        "other event types are not scanned",
        message({"topic": "mxc://example.org/x"}, "m.room.topic", state_key=""),
        [],
    ),
    (
        "redacted event",
        {**message({}), "unsigned": {"redacted_because": {"type": "m.room.redaction"}}},
        [],
    ),
    ("event without content", {"type": "m.room.message", "event_id": "$e"}, []),
]


@pytest.mark.parametrize(
    ("event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_media_references(event: dict[str, Any], expected: list[MediaRef]) -> None:
    result = extract_media_refs(event)
    assert list(result.refs) == expected
    assert result.problems == ()


VALID_MXC = [
    ("mxc://example.org/abc_DEF-123", ("example.org", "abc_DEF-123")),
    ("mxc://matrix.example.org:8448/x", ("matrix.example.org:8448", "x")),
    ("mxc://localhost/x", ("localhost", "x")),
    ("mxc://1.2.3.4/x", ("1.2.3.4", "x")),
    ("mxc://[::1]/x", ("[::1]", "x")),
    ("mxc://[2001:db8::1]:8448/x", ("[2001:db8::1]:8448", "x")),
]

INVALID_MXC = [
    ("path traversal as server", "mxc://../x"),
    ("path traversal in media id", "mxc://example.org/../x"),
    ("extra path segment", "mxc://example.org/a/b"),
    ("missing media id", "mxc://example.org/"),
    ("missing slash", "mxc://example.org"),
    ("missing server", "mxc:///x"),
    ("query string", "mxc://example.org/x?allow_redirect=true"),
    ("fragment", "mxc://example.org/x#y"),
    ("bad server characters", "mxc://exa_mple.org/x"),
    ("non-ASCII server", "mxc://exämple.org/x"),
    ("label starting with a hyphen", "mxc://-example.org/x"),
    ("empty label", "mxc://example..org/x"),
    ("empty port", "mxc://example.org:/x"),
    ("port too long", "mxc://example.org:123456/x"),
    ("unclosed IPv6", "mxc://[::1/x"),
    ("not an IPv6 address", "mxc://[example]/x"),
    ("IPv6 scope id", "mxc://[fe80::1%eth0]/x"),
    ("userinfo", "mxc://user@example.org/x"),
    ("other scheme", "https://example.org/x"),
    ("upper-case scheme", "MXC://example.org/x"),
    ("trailing newline", "mxc://example.org/x\n"),
    ("space in media id", "mxc://example.org/x y"),
    ("non-ASCII media id", "mxc://example.org/ｘ"),
]


@pytest.mark.parametrize(("uri", "expected"), VALID_MXC)
def test_parse_mxc_accepts(uri: str, expected: tuple[str, str]) -> None:
    assert parse_mxc(uri) == expected


@pytest.mark.parametrize("uri", [u for _, u in INVALID_MXC], ids=[i for i, _ in INVALID_MXC])
def test_parse_mxc_rejects(uri: str) -> None:
    assert parse_mxc(uri) is None


@pytest.mark.parametrize("value", [None, 42, b"mxc://example.org/x", ["mxc://example.org/x"]])
def test_parse_mxc_rejects_non_strings(value: object) -> None:
    assert parse_mxc(value) is None


@pytest.mark.parametrize("uri", [u for _, u in INVALID_MXC], ids=[i for i, _ in INVALID_MXC])
def test_invalid_mxc_is_a_problem_not_a_reference(uri: str) -> None:
    result = extract_media_refs(message({"msgtype": "m.image", "body": "x", "url": uri}))
    assert result.refs == ()
    assert result.problems == (f"content.url: invalid mxc URI {uri!r}",)


def test_problem_lines_quote_long_values_truncated() -> None:
    uri = "mxc://example.org/" + "x" * 10_000 + "/"
    (problem,) = extract_media_refs(message({"msgtype": "m.image", "url": uri})).problems
    assert len(problem) < 200
    assert problem.endswith("...")


def image(**content: Any) -> dict[str, Any]:
    return message({"msgtype": "m.image", "body": "x", **content})


def html(body: Any) -> dict[str, Any]:
    return message({"msgtype": "m.text", "body": "x", "formatted_body": body})


MXC = "mxc://example.org/x"
MALFORMED: list[tuple[str, Any, list[str]]] = [
    ("event is a list", [], []),
    ("event is a string", "m.room.message", []),
    ("content is a list", message([]), ["content: expected an object, got list"]),
    ("content is a string", message(MXC), ["content: expected an object, got str"]),
    ("url is a number", image(url=42), ["content.url: expected a string, got int"]),
    ("url is an object", image(url={"mxc": MXC}), ["content.url: expected a string, got dict"]),
    ("url is empty", image(url=""), ["content.url: invalid mxc URI ''"]),
    ("info is a string", image(url=MXC, info="big"), ["content.info: expected an object, got str"]),
    (
        "thumbnail_url is a list",
        image(info={"thumbnail_url": [MXC]}),
        ["content.info.thumbnail_url: expected a string, got list"],
    ),
    ("thumbnail_info is a string", image(info={"thumbnail_info": "x"}), []),
    ("mimetype is a number", image(info={"mimetype": 7}), []),
    ("file is a string", image(file=MXC), ["content.file: expected an object, got str"]),
    ("file.url is null", image(file={"url": None}), []),
    ("msgtype is a list", message({"msgtype": ["m.image"], "url": MXC}), []),
    ("msgtype is an object", message({"msgtype": {"m.image": 1}, "url": MXC}), []),
    ("type is a list", {"type": ["m.room.message"], "content": {}}, []),
    ("formatted_body is a number", html(5), []),
    (
        "img src is not mxc",
        html('<img src="https://evil.example/x.png">'),
        ["content.formatted_body: img src is not an mxc URI 'https://evil.example/x.png'"],
    ),
    ("img without src", html("<img src><img>"), []),
    ("broken HTML", html("<img src='mxc://a/b' <<<![if x]> </"), []),
    (
        "m.new_content is a string",
        message({"msgtype": "m.text", "m.new_content": "x"}),
        ["content.m.new_content: expected an object, got str"],
    ),
    (
        "member avatar_url is a number",
        member({"membership": "join", "avatar_url": 1}, None),
        ["content.avatar_url: expected a string, got int"],
    ),
    ("unsigned is a string", {**image(url=MXC), "unsigned": "x"}, []),
]


@pytest.mark.parametrize(
    ("event", "problems"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_events_never_raise(event: Any, problems: list[str]) -> None:
    result = extract_media_refs(event)
    assert list(result.problems) == problems


def test_malformed_member_prev_content_counts_as_no_previous_avatar() -> None:
    event = member({"membership": "join", "avatar_url": "mxc://example.org/me"}, None)
    event["unsigned"] = {"prev_content": "garbage"}
    assert extract_media_refs(event).refs == (ref("mxc://example.org/me", "content.avatar_url"),)


def test_markup_that_python_chokes_on_does_not_hide_later_images() -> None:
    # html.parser raises AssertionError on `<![foo[...]]>`; a browser shows the image after it.
    body = '<img src="mxc://example.org/a"><![foo[x]]><img src="mxc://example.org/b">'
    result = extract_media_refs(message({"msgtype": "m.text", "formatted_body": body}))
    assert [r.mxc for r in result.refs] == ["mxc://example.org/a", "mxc://example.org/b"]
    assert result.problems == ()
