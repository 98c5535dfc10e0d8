"""The appservice HTTP endpoint: store a transaction durably, then acknowledge it.

mautrix's AppService answers 200 even when handling failed and remembers transaction ids
only in memory; here the 200 is sent only after the events are committed to the database,
and an error answers 500 so that Synapse retries the transaction.

Synapse retries a refused transaction for ever and sends nothing after it, so every limit
here sits above what Synapse can send (bot/config.py says why each default is what it is);
what goes beyond is refused with a 4xx that says why, an audit row and a mark in /health.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore

from .jsondepth import exceeds_depth
from .monitor import IntakeMonitor

log = logging.getLogger("modbot.intake")

# Bodies up to this size are parsed on the event loop: a live transaction's few events take
# some ten microseconds to measure and parse, less than the trip to a thread and back that
# every transaction made (issue 16); a hostile body of this size (thousands of tiny strings
# among deep brackets) holds the loop ~4 ms on the 2-core test machine.
INLINE_PARSE_BYTES = 8 * 1024
TransactionHandler = Callable[[str, list[Any]], Awaitable[None]]
RefusalAudit = Callable[[str, str], Awaitable[None]]  # (txn_id, why)


@dataclass(frozen=True)
class IntakeLimits:
    max_body_bytes: int
    max_json_depth: int


class _MemoryStateStore(MemoryStateStore, ASStateStore):
    """mautrix's default state store is a JSON file in the working directory; we need none."""


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


class _Refused(Exception):
    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(message)
        self.status, self.errcode, self.message = status, errcode, message


def parse_transaction(body: bytes, max_json_depth: int) -> list[Any]:
    """The events of a transaction body; raises _Refused saying what is wrong with it."""
    if exceeds_depth(body, max_json_depth):
        raise _Refused(400, "M_BAD_JSON", f"JSON nested deeper than {max_json_depth} levels")
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        raise _Refused(400, "M_NOT_JSON", "body is not JSON") from None
    except RecursionError:  # not expected below the depth limit; never let it escape
        raise _Refused(400, "M_BAD_JSON", "JSON nested too deeply to parse") from None
    events = parsed.get("events") if isinstance(parsed, dict) else None
    if not isinstance(events, list):
        raise _Refused(400, "M_BAD_JSON", "missing events list")
    return events


class DurableAppService(AppService):
    def __init__(
        self,
        *args: Any,
        on_transaction: TransactionHandler,
        limits: IntakeLimits,
        monitor: IntakeMonitor | None = None,
        audit_refusal: RefusalAudit | None = None,
        **kwargs: Any,
    ) -> None:
        # aiohttp's default body limit is 1 MiB, below what Synapse sends after downtime
        # (up to 100 events of 64 KiB). +1: aiohttp refuses a body that reaches the limit.
        params = {"client_max_size": limits.max_body_bytes + 1}
        super().__init__(*args, state_store=_MemoryStateStore(), aiohttp_params=params, **kwargs)
        self._on_transaction = on_transaction
        self.limits = limits
        self.monitor = monitor or IntakeMonitor()
        self._audit_refusal = audit_refusal

    def _check_token(self, request: web.Request) -> bool:
        """The hs_token, from the Authorization header only, compared in constant time.

        Synapse always sends `Authorization: Bearer` (the `?access_token=` it adds with
        `use_appservice_legacy_authorization` comes with the header). A token in the URL
        ends up in access logs and proxies' logs, so it is not accepted at all. Used by
        mautrix's other routes (ping, user and alias queries) too.
        """
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return False
        return hmac.compare_digest(token.strip().encode(), self.hs_token.encode())

    async def _http_handle_transaction(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["transaction_id"]
        if not self._check_token(request):
            missing = "Authorization" not in request.headers
            self.monitor.refused(401 if missing else 403, "hs_token", txn_id, authenticated=False)
            if missing:
                return _error(401, "M_UNAUTHORIZED", "missing hs_token (Authorization: Bearer)")
            return _error(403, "M_FORBIDDEN", "invalid hs_token")
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise _Refused(
                    413, "M_TOO_LARGE", f"transaction body larger than {self.limits.max_body_bytes} bytes "
                    "(appservice.max_body_bytes)",
                ) from None
            if len(body) <= INLINE_PARSE_BYTES:
                events = parse_transaction(body, self.limits.max_json_depth)
            else:
                # In a thread: a 16 MiB body takes a moment to measure and parse, and the
                # endpoint keeps answering /health meanwhile.
                events = await asyncio.to_thread(parse_transaction, body, self.limits.max_json_depth)
        except _Refused as refused:
            await self._refuse(txn_id, refused)
            return _error(refused.status, refused.errcode, refused.message)
        try:
            await self._on_transaction(txn_id, events)
        except Exception:
            log.exception("could not store transaction %s; the homeserver will retry it", txn_id)
            self.monitor.refused(500, "not stored", txn_id, authenticated=True)
            return _error(500, "M_UNKNOWN", "transaction not stored, retry later")
        self.monitor.accepted()
        return web.json_response({})

    async def _refuse(self, txn_id: str, refused: _Refused) -> None:
        log.error("refused transaction %s: %s (%d); the homeserver will retry it", txn_id, refused.message, refused.status)
        self.monitor.refused(refused.status, refused.message, txn_id, authenticated=True)
        if self._audit_refusal is None:
            return
        try:
            await self._audit_refusal(txn_id, f"transaction {txn_id} refused ({refused.status}): {refused.message}")
        except Exception:
            log.exception("could not audit the refusal of transaction %s", txn_id)
