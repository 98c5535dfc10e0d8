"""Find every media reference in a raw Matrix event.

Pure: event JSON in, `ExtractResult` out. Nothing here trusts the event's shape: content
that is not what the spec says is reported in `problems` or ignored, never raised.
"""

from __future__ import annotations

import ipaddress
import re
from html.parser import HTMLParser
from typing import Any

from bot.model import ExtractResult, MediaRef

# msgtypes whose `url` is the attachment itself (spec: m.room.message msgtypes).
_ATTACHMENT_MSGTYPES = frozenset({"m.image", "m.video", "m.audio", "m.file"})
# m.location carries no attachment but may carry a preview thumbnail that clients render.
_THUMBNAIL_MSGTYPES = _ATTACHMENT_MSGTYPES | {"m.location"}

# Server name grammar from the Matrix spec (appendices, "Server Name"), with dns-name
# tightened to well-formed labels so that "..", "." or "-x" are not accepted as hosts.
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_PORT = re.compile(r"[0-9]{1,5}")
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]+")
# Problem lines quote the offending value; an event can hold up to 64 KiB of it.
_QUOTE_LIMIT = 100
# Problem lines kept per event; each becomes an audit row, and one formatted_body can hold
# thousands of bad <img> tags. The rest are only counted.
MAX_PROBLEMS = 20


def parse_mxc(uri: object) -> tuple[str, str] | None:
    """Split `mxc://<server_name>/<media_id>` into (server_name, media_id), or None if invalid.

    Strict: no extra path segments, no query or fragment, media id `[A-Za-z0-9_-]+`, and a
    server name that is a hostname, IPv4 address or bracketed IPv6 address with optional port.
    """
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        return None
    server, sep, media_id = uri[len("mxc://") :].partition("/")
    if not sep or not _MEDIA_ID.fullmatch(media_id) or not _is_server_name(server):
        return None
    return server, media_id


def _is_server_name(server: str) -> bool:
    if server.startswith("["):
        host, bracket, rest = server[1:].partition("]")
        if not bracket or not _IPV6_CHARS.fullmatch(host):
            return False
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        if not rest:
            return True
        return rest.startswith(":") and bool(_PORT.fullmatch(rest[1:]))
    host, colon, port = server.partition(":")
    if colon and not _PORT.fullmatch(port):
        return False
    if len(host) > 255:
        return False
    return bool(_IPV4.fullmatch(host) or _DNS_NAME.fullmatch(host))


def extract_media_refs(event: object, *, max_refs: int | None = None) -> ExtractResult:
    """Every media reference in `event`, deduplicated by mxc URI (the first source wins).

    Sources: attachments and stickers (`content.url`, `content.file.url` for encrypted ones),
    thumbnails, `<img src>` in `content.formatted_body`, the same inside `m.new_content` of
    edits, a member's new avatar (only when it changed) and the room avatar.

    `max_refs` caps the references returned (attachments come first, so the cap only ever
    cuts into inline images); past it, further distinct mxc URIs are only counted in
    `dropped`, neither validated nor turned into refs, and the HTML of a body is no longer
    parsed but scanned for `src` values.
    """
    collector = _Collector(max_refs)
    if not isinstance(event, dict):
        return collector.result()
    unsigned = event.get("unsigned")
    if isinstance(unsigned, dict) and "redacted_because" in unsigned:
        return collector.result()
    content = event.get("content")
    if content is None:
        return collector.result()
    if not isinstance(content, dict):
        collector.problem("content", f"expected an object, got {_type_name(content)}")
        return collector.result()

    event_type = event.get("type")
    if event_type in ("m.room.message", "m.sticker"):
        _message_content(collector, content, "content", event_type)
        new_content = content.get("m.new_content")
        if isinstance(new_content, dict):
            _message_content(collector, new_content, "content.m.new_content", event_type)
        elif new_content is not None:
            collector.problem(
                "content.m.new_content", f"expected an object, got {_type_name(new_content)}"
            )
    elif event_type == "m.room.member":
        _member_avatar(collector, event, content)
    elif event_type == "m.room.avatar":
        info = collector.info(content, "content")
        collector.add(content.get("url"), "content.url", _mimetype(info), removable=True)
        _thumbnails(collector, info, "content.info")
    return collector.result()


def _message_content(
    collector: _Collector, content: dict[str, Any], path: str, event_type: str
) -> None:
    msgtype = content.get("msgtype")
    if not isinstance(msgtype, str):
        msgtype = None  # an unhashable msgtype would make the set lookups below raise
    info = collector.info(content, path)
    if event_type == "m.sticker" or msgtype in _ATTACHMENT_MSGTYPES:
        mimetype = _mimetype(info)
        collector.add(content.get("url"), f"{path}.url", mimetype)
        collector.add_encrypted_file(content.get("file"), f"{path}.file", mimetype)
    if event_type == "m.sticker" or msgtype in _THUMBNAIL_MSGTYPES:
        _thumbnails(collector, info, f"{path}.info")
    # Scanned whatever `format` says: a reference is worth checking even if no client shows it.
    body = content.get("formatted_body")
    if isinstance(body, str):
        _html_images(collector, body, f"{path}.formatted_body")


def _thumbnails(collector: _Collector, info: dict[str, Any], path: str) -> None:
    thumbnail_info = info.get("thumbnail_info")
    mimetype = _mimetype(thumbnail_info) if isinstance(thumbnail_info, dict) else None
    collector.add(info.get("thumbnail_url"), f"{path}.thumbnail_url", mimetype)
    collector.add_encrypted_file(info.get("thumbnail_file"), f"{path}.thumbnail_file", mimetype)


def _member_avatar(collector: _Collector, event: dict[str, Any], content: dict[str, Any]) -> None:
    avatar = content.get("avatar_url")
    if avatar is None:
        return
    # Appservices get prev_content in unsigned; very old servers put it at the top level.
    unsigned = event.get("unsigned")
    prev = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
    if prev is None:
        prev = event.get("prev_content")
    if isinstance(prev, dict) and prev.get("avatar_url") == avatar:
        return  # displayname change, re-join, power level... the avatar was already scanned
    collector.add(avatar, "content.avatar_url", None, removable=True)


def _html_images(collector: _Collector, html: str, path: str) -> None:
    if collector.full:
        collector.count_dropped(_MXC_SRC.findall(html))
        return
    finder = _ImageSources(collector, path)
    try:
        finder.feed(html)
        finder.close()
    except _Full:
        # The cap is reached: what is left of the body is only counted, with a scan for
        # mxc URIs that is linear in its length, not parsed tag by tag.
        collector.count_dropped(_MXC_SRC.findall(html, finder.stopped_at))
    except Exception:  # a backstop: html.parser has raised on malformed markup before
        collector.problem(path, "could not be parsed as HTML; images after the error not seen")


# An mxc URI in the text of a body whose references are past the cap: counted, never used.
_MXC_SRC = re.compile(r"mxc://[^\s\"'<>]+")


class _Full(Exception):
    """The per-event cap on references is reached; parsing stops."""


class _ImageSources(HTMLParser):
    """Hands each `<img src>` to the collector as the parser meets it, so parsing can stop
    as soon as the cap is reached."""

    def __init__(self, collector: _Collector, path: str) -> None:
        super().__init__(convert_charrefs=True)
        self._collector = collector
        self._path = path
        self.stopped_at = 0

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        # Python's parser raises on some `<![...]]>` forms, which would hide every image
        # after them; browsers read them as a bogus comment ending at the next ">".
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            end = self.rawdata.find(">", i)
            return -1 if end < 0 else end + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            return
        for name, value in attrs:
            if name == "src" and value:
                if not value.startswith("mxc://"):
                    self._collector.problem(self._path, f"img src is not an mxc URI {_quote(value)}")
                elif self._collector.full:
                    # This tag starts the part that is only counted (it is counted there).
                    self.stopped_at = self._tag_offset()
                    raise _Full
                else:
                    self._collector.add(value, self._path, None)

    def _tag_offset(self) -> int:
        """Offset in the fed text of the tag being handled."""
        line, column = self.getpos()
        offset = 0
        for _ in range(line - 1):
            offset = self.rawdata.index("\n", offset) + 1
        return offset + column


class _Collector:
    """Accumulates refs (first source of each mxc wins, up to `max_refs`) and problem lines."""

    def __init__(self, max_refs: int | None = None) -> None:
        self._refs: dict[str, MediaRef] = {}
        self._problems: list[str] = []
        self._problems_dropped = 0
        self._max_refs = max_refs
        self._dropped: set[str] = set()

    @property
    def full(self) -> bool:
        return self._max_refs is not None and len(self._refs) >= self._max_refs

    def result(self) -> ExtractResult:
        return ExtractResult(
            refs=tuple(self._refs.values()),
            problems=tuple(self._problems),
            dropped=len(self._dropped),
            problems_dropped=self._problems_dropped,
        )

    def problem(self, path: str, message: str) -> None:
        if len(self._problems) >= MAX_PROBLEMS:
            self._problems_dropped += 1
            return
        self._problems.append(f"{path}: {message}")

    def count_dropped(self, values: list[str]) -> None:
        """References past the cap: distinct ones counted, the ones kept not counted again."""
        self._dropped.update(v for v in values if v not in self._refs)

    def info(self, content: dict[str, Any], path: str) -> dict[str, Any]:
        info = content.get("info")
        if info is None:
            return {}
        if not isinstance(info, dict):
            self.problem(f"{path}.info", f"expected an object, got {_type_name(info)}")
            return {}
        return info

    def add(
        self,
        value: object,
        source: str,
        mimetype: str | None,
        *,
        encrypted: bool = False,
        removable: bool = False,
    ) -> None:
        """Record `value` as a reference found at `source`.

        `removable`: an empty string means "no avatar any more", not a broken reference.
        """
        if value is None or (removable and value == ""):
            return
        if not isinstance(value, str):
            self.problem(source, f"expected a string, got {_type_name(value)}")
            return
        if value in self._refs:
            return
        if self.full:
            self.count_dropped([value])  # not even validated: past the cap, nothing is used
            return
        parsed = parse_mxc(value)
        if parsed is None:
            self.problem(source, f"invalid mxc URI {_quote(value)}")
            return
        server, media_id = parsed
        self._refs[value] = MediaRef(
            mxc=value,
            server=server,
            media_id=media_id,
            source=source,
            mimetype=mimetype,
            encrypted=encrypted,
        )

    def add_encrypted_file(self, file: object, path: str, mimetype: str | None) -> None:
        if file is None:
            return
        if not isinstance(file, dict):
            self.problem(path, f"expected an object, got {_type_name(file)}")
            return
        self.add(file.get("url"), f"{path}.url", mimetype, encrypted=True)


def _mimetype(info: dict[str, Any]) -> str | None:
    mimetype = info.get("mimetype")
    return mimetype if isinstance(mimetype, str) and mimetype else None


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _quote(value: str) -> str:
    if len(value) > _QUOTE_LIMIT:
        return repr(value[:_QUOTE_LIMIT]) + "..."
    return repr(value)
