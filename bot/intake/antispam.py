"""The pre-send endpoint: Synapse's check_event_for_spam and user_may_join_room, forwarded by synapse-http-antispam.

The module (PyPI `synapse-http-antispam`, loaded by Synapse from homeserver.yaml's
`modules:`) POSTs `<base_url>/check_event_for_spam` with `{"event": <client-format event>}`
and `Authorization: Bearer <secret>`; a 2xx allows the event, any other status with a JSON
body rejects it with the body's `errcode` and `error`. An answer that is not JSON, or no
answer, lets the module's `fail_open` decide. It also POSTs `<base_url>/ping {"id"}` and
expects `{"id", "status": "ok"}`.

So every refusal of ours that is not a decision about the event (wrong secret, a body too
large or too deep, not started yet) answers plain text: the module then does what the
operator configured for modbot being unreachable, instead of rejecting messages in every
room because of a configuration mistake. The decisions are bot/presend.py's (events) and
bot/joincheck.py's (joins: `POST <base_url>/user_may_join_room {"user", "room",
"is_invited"}`, same answers; module_block sets the module's fail_open for it, which it
otherwise lacks, so joins keep working while modbot is down).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..configmodel import Config
from ..joincheck import REFUSED_JOIN, JoinChecker
from ..presend import PresendChecker, PresendCounts
from .jsondepth import exceeds_depth

log = logging.getLogger("modbot.presend")

MODULE = "synapse_http_antispam.HTTPAntispam"
CALLBACK = "check_event_for_spam"
JOIN_CALLBACK = "user_may_join_room"
MAX_JOIN_BODY = 4096  # {"user", "room", "is_invited"}: ids of at most 255 bytes each
Audit = Callable[[str, str], Awaitable[None]]  # (outcome, message)


def module_block(config: Config) -> dict[str, Any]:
    """The `modules:` entry for homeserver.yaml that sends Synapse's checks to this endpoint."""
    presend = config.presend
    callbacks = [CALLBACK] + ([JOIN_CALLBACK] if presend.check_joins else [])
    # The module fails closed for every callback but check_event_for_spam unless told: joins
    # must keep working while modbot is down (the appservice path bans after the join).
    fail_open = {CALLBACK: presend.fail_open} | ({JOIN_CALLBACK: True} if presend.check_joins else {})
    return {
        "module": MODULE,
        "config": {
            "base_url": str(config.appservice.public_url).rstrip("/") + presend.path_prefix,
            "authorization": presend.antispam_secret,
            "do_ping": True,
            "enabled_callbacks": callbacks,
            "fail_open": fail_open,
        },
    }


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_offer(body: bytes, max_json_depth: int) -> dict[str, Any]:
    """The event of a check_event_for_spam body; raises _Refused saying what is wrong."""
    if exceeds_depth(body, max_json_depth):
        raise _Refused(400, f"JSON nested deeper than {max_json_depth} levels")
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _Refused(400, "body is not JSON") from None
    event = parsed.get("event") if isinstance(parsed, dict) else None
    if not isinstance(event, dict):
        raise _Refused(400, "no event object")
    for key in ("event_id", "room_id", "sender", "type"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise _Refused(400, f"event without a valid {key!r}")
    return event


def parse_join(body: bytes) -> tuple[str, str]:
    """The (user, room) of a user_may_join_room body; raises _Refused saying what is wrong."""
    try:
        parsed = json.loads(body) if not exceeds_depth(body, 4) else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if not isinstance(parsed, dict):
        raise _Refused(400, "body is not a JSON object")
    user, room = parsed.get("user"), parsed.get("room")
    for name, value in (("user", user), ("room", room)):
        if not isinstance(value, str) or not 0 < len(value) <= 255:
            raise _Refused(400, f"no valid {name!r}")
    return str(user), str(room)


class AntispamEndpoint:
    """Routes under `presend.path_prefix` on the appservice's HTTP server."""

    def __init__(
        self, *, prefix: str, secret: str, max_body_bytes: int, max_json_depth: int, counts: PresendCounts,
        audit: Audit,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self._secret = secret.encode()
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.counts = counts
        self._audit = audit
        self.checker: PresendChecker | None = None  # set once the pipeline runs
        self.joins: JoinChecker | None = None  # set with it

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"{self.prefix}/ping", self._ping)
        app.router.add_post(f"{self.prefix}/{CALLBACK}", self._check)
        app.router.add_post(f"{self.prefix}/{JOIN_CALLBACK}", self._join)
        # Callbacks not enabled in the module block: allowed, never rejected by accident.
        app.router.add_post(f"{self.prefix}/{{callback}}", self._other)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and hmac.compare_digest(token.strip().encode(), self._secret)

    async def _body(self, request: web.Request, limit: int | None = None) -> bytes:
        limit = self.max_body_bytes if limit is None else limit
        if request.content_length is not None and request.content_length > limit:
            raise _Refused(413, f"body larger than {limit} bytes")
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise _Refused(413, f"body larger than {limit} bytes")
        return bytes(body)

    async def _ping(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        try:
            body = await self._body(request)
            parsed = json.loads(body) if not exceeds_depth(body, 4) else None
        except (_Refused, ValueError, UnicodeDecodeError):
            parsed = None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str) or len(parsed["id"]) > 255:
            return web.Response(status=400, text="expected {\"id\": \"...\"}")
        self.counts.note("ping")
        log.info("pinged by synapse-http-antispam (id %s)", parsed["id"])
        return web.json_response({"id": parsed["id"], "status": "ok"})

    async def _check(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        try:
            body = await self._body(request)
            # A 64 KiB event parses in well under a millisecond: no thread needed.
            event = parse_offer(body, self.max_json_depth)
        except _Refused as refused:
            return await self._refused("check_event_for_spam", refused)
        if self.checker is None:
            self.counts.note("not_ready")
            return web.Response(status=503, text="modbot is starting")
        answer = await self.checker.check(event)
        if answer.allow:
            return web.json_response({})
        return web.json_response({"errcode": "M_FORBIDDEN", "error": answer.message}, status=403)

    async def _join(self, request: web.Request) -> web.Response:
        """user_may_join_room: a refusal is 403 M_FORBIDDEN; anything we cannot judge answers
        plain text, and the module's fail_open (set in module_block) lets the join through."""
        if not self._authorized(request):
            return self._unauthorized(request)
        try:
            user, room = parse_join(await self._body(request, MAX_JOIN_BODY))
        except _Refused as refused:
            return await self._refused("user_may_join_room", refused)
        if self.joins is None:
            self.counts.note("not_ready")
            return web.Response(status=503, text="modbot is starting")
        if self.joins.check(user, room).allow:
            return web.json_response({})
        return web.json_response({"errcode": "M_FORBIDDEN", "error": REFUSED_JOIN}, status=403)

    async def _refused(self, callback: str, refused: _Refused) -> web.Response:
        """A request we will not read (too large, malformed): counted, audited, and answered in
        plain text, so that the module's fail_open for `callback` decides."""
        self.counts.note("refused")
        message = f"{callback} refused ({refused.status}): {refused}; the module's fail_open decided"
        log.warning(message)
        try:
            await self._audit("refused", message)
        except Exception:
            log.exception("could not audit a refused %s request", callback)
        return web.Response(status=refused.status, text=str(refused))

    async def _other(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        return web.json_response({})

    def _unauthorized(self, request: web.Request) -> web.Response:
        self.counts.note("unauthorized")
        log.warning("pre-send request to %s without the right secret (presend.antispam_secret)", request.path)
        return web.Response(status=401, text="wrong or missing secret")


async def stop_checker(endpoint: AntispamEndpoint) -> None:
    checker, endpoint.checker = endpoint.checker, None
    joins, endpoint.joins = endpoint.joins, None
    if checker is not None:
        await checker.stop()
    if joins is not None:
        await joins.stop()
    await asyncio.gather(endpoint.counts.stop(), return_exceptions=True)
