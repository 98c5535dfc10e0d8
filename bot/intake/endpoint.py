"""The appservice HTTP endpoint: store a transaction durably, then acknowledge it.

mautrix's AppService answers 200 even when handling failed and remembers transaction ids
only in memory; here the 200 is sent only after the events are committed to the database,
and an error answers 500 so that Synapse retries the transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore

log = logging.getLogger("modbot.intake")

TransactionHandler = Callable[[str, list[Any]], Awaitable[None]]


class _MemoryStateStore(MemoryStateStore, ASStateStore):
    """mautrix's default state store is a JSON file in the working directory; we need none."""


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


class DurableAppService(AppService):
    def __init__(self, *args: Any, on_transaction: TransactionHandler, **kwargs: Any) -> None:
        super().__init__(*args, state_store=_MemoryStateStore(), **kwargs)
        self._on_transaction = on_transaction

    async def _http_handle_transaction(self, request: web.Request) -> web.Response:
        if not self._check_token(request):
            if "Authorization" not in request.headers and "access_token" not in request.rel_url.query:
                return _error(401, "M_UNAUTHORIZED", "missing hs_token")
            return _error(403, "M_FORBIDDEN", "invalid hs_token")
        txn_id = request.match_info["transaction_id"]
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "M_NOT_JSON", "body is not JSON")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return _error(400, "M_BAD_JSON", "missing events list")
        try:
            await self._on_transaction(txn_id, events)
        except Exception:
            log.exception("could not store transaction %s; the homeserver will retry it", txn_id)
            return _error(500, "M_UNKNOWN", "transaction not stored, retry later")
        return web.json_response({})
