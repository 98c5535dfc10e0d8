"""Event extraction on arbitrary input (property-based, hypothesis): whatever JSON an event
holds — any type anywhere, nesting, hostile HTML, near-miss mxc URIs — `extract_media_refs`
returns a result and never raises, and every reference it returns is a valid mxc URI."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.extract import extract_media_refs, parse_mxc
from bot.model import ExtractResult

# No example database in the worktree; the machine is shared, so no per-example deadline.
PROPERTY = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Every value JSON can carry (floats as json.loads makes them, NaN and infinities included).
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)

# Server names and media ids near the grammar's edges: ports, IPv6, brackets, dots, unicode.
servers = st.one_of(
    st.sampled_from(["example.org", "example.org:8448", "127.0.0.1", "[::1]", "[::1]:8448", "[::1", "a..b", "-x", "", "xn--bcher-kva.example", "ex ample.org", "é.org", "[fe80::1%eth0]", "1.2.3.4:99999"]),
    st.text(alphabet="abc019.-:[]%é ", max_size=30),
)
media_ids = st.one_of(st.sampled_from(["abc", "a_b-C9", "", "a/b", "a?b", "a#b", "ä"]), st.text(alphabet="aZ09_-/?#. ", max_size=20))
valid_mxc = st.builds(
    lambda s, m: f"mxc://{s}/{m}",
    st.sampled_from(["example.org", "example.org:8448", "127.0.0.1", "[::1]:8448", "a-b.c0"]),
    st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
)
mxc_like = st.one_of(
    valid_mxc,
    valid_mxc,  # twice: half of all references are valid, so the tests see refs too
    st.builds(lambda s, m: f"mxc://{s}/{m}", servers, media_ids),
    st.sampled_from(["mxc://", "mxc:///", "MXC://example.org/abc", "mxc:/example.org/abc", "http://example.org/abc"]),
    st.text(max_size=40),
)
# HTML built from the pieces that have tripped parsers: unclosed tags, marked sections,
# charrefs, comments, stray quotes.
html_pieces = st.one_of(
    st.sampled_from(["<img src=", "<img src='", '<img src="', "<IMG SRC=", "<", ">", "'", '"', "<![", "]]>", "<![CDATA[", "<!--", "-->",
                     "&#", "&#x", ";", "&amp;", "</", "<?", "<!", "<a href=", " ", "=", "\x00", "<svg><img src=", "<img/src="]),
    mxc_like,
    st.builds(lambda uri, q: f"<img src={q}{uri}{q}>", mxc_like, st.sampled_from(['"', "'", ""])),
)
formatted_bodies = st.one_of(st.lists(html_pieces, max_size=25).map("".join), st.text())

msgtypes = st.one_of(
    st.sampled_from(["m.image", "m.video", "m.audio", "m.file", "m.text", "m.location", "m.notice"]),
    st.sampled_from(["m.image", "m.file"]),
    json_values,
)
infos = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "mimetype": st.one_of(st.sampled_from(["image/png", ""]), json_values),
            "thumbnail_url": st.one_of(mxc_like, json_values),
            "thumbnail_info": json_values,
            "thumbnail_file": st.one_of(st.fixed_dictionaries({"url": mxc_like}), json_values),
        },
    ),
    json_values,
)


def contents(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={
            "msgtype": msgtypes,
            "body": st.text(),
            "url": st.one_of(mxc_like, json_values),
            "file": st.one_of(st.fixed_dictionaries({"url": mxc_like}), json_values),
            "info": infos,
            "formatted_body": st.one_of(formatted_bodies, json_values),
            "avatar_url": st.one_of(mxc_like, json_values),
            "m.new_content": inner,
        },
    )


message_contents = st.recursive(json_values, contents, max_leaves=6)
events = st.fixed_dictionaries(
    {
        # Mostly the types and shapes that carry media, so that references are found too.
        "type": st.one_of(st.sampled_from(["m.room.message", "m.sticker", "m.room.member", "m.room.avatar"]), json_values),
        "content": st.one_of(contents(message_contents), contents(message_contents), message_contents, json_values),
    },
    optional={
        "unsigned": st.one_of(st.fixed_dictionaries({}, optional={"prev_content": message_contents, "redacted_because": json_values}), json_values),
        "prev_content": message_contents,
        "sender": json_values,
    },
)


def check(result: ExtractResult) -> None:
    assert isinstance(result, ExtractResult)
    assert len({r.mxc for r in result.refs}) == len(result.refs)  # deduplicated
    for ref in result.refs:
        assert parse_mxc(ref.mxc) == (ref.server, ref.media_id)
        assert ref.mimetype is None or isinstance(ref.mimetype, str)
    for problem in result.problems:
        # Problem lines quote offending values, capped: a 64 KiB value does not fill the audit.
        assert isinstance(problem, str) and len(problem) < 400


@PROPERTY
@given(events)
def test_event_shaped_input_never_raises(event: dict[str, Any]) -> None:
    result = extract_media_refs(event)
    check(result)
    assert extract_media_refs(json.loads(json.dumps(event, allow_nan=True))) == result  # pure and JSON-stable


@PROPERTY
@given(contents(message_contents), valid_mxc, st.sampled_from(["m.image", "m.video", "m.audio", "m.file"]))
def test_hostile_surroundings_do_not_hide_an_attachment(content: dict[str, Any], mxc: str, msgtype: str) -> None:
    result = extract_media_refs({"type": "m.room.message", "content": {**content, "msgtype": msgtype, "url": mxc}})
    check(result)
    assert mxc in [r.mxc for r in result.refs]


@PROPERTY
@given(json_values)
def test_any_json_value_never_raises(value: Any) -> None:
    check(extract_media_refs(value))


@PROPERTY
@given(st.sampled_from(["m.room.message", "m.sticker", "m.room.member", "m.room.avatar"]), json_values)
def test_any_content_of_every_scanned_type_never_raises(event_type: str, content: Any) -> None:
    check(extract_media_refs({"type": event_type, "content": content}))


@PROPERTY
@given(formatted_bodies)
def test_hostile_html_never_raises(html: str) -> None:
    check(extract_media_refs({"type": "m.room.message", "content": {"msgtype": "m.text", "body": "", "formatted_body": html}}))


@PROPERTY
@given(mxc_like)
def test_parse_mxc_accepts_only_what_it_can_split_back(uri: str) -> None:
    parsed = parse_mxc(uri)
    if parsed is not None:
        server, media_id = parsed
        assert f"mxc://{server}/{media_id}" == uri
        assert media_id and "/" not in media_id and "?" not in media_id


def test_deeply_nested_content_does_not_exhaust_the_stack() -> None:
    # Deeper than Python's recursion limit: a parser that recursed would raise here.
    deep: Any = "mxc://example.org/abc"
    for _ in range(100_000):
        deep = {"msgtype": "m.image", "url": "mxc://example.org/abc", "info": deep, "m.new_content": deep}
    result = extract_media_refs({"type": "m.room.message", "content": deep})
    check(result)
    assert [r.mxc for r in result.refs] == ["mxc://example.org/abc"]
