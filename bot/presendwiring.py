"""Wiring of the pre-send check for the composition root (bot/app.py): its endpoint's routes
while the bot is built, its checkers (events, joins) once the pipeline runs, and its stop."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from .act.powers import PowerCache
from .configmodel import Config
from .controls import Controls
from .fetch import MediaFetcher
from .intake.antispam import AntispamEndpoint, stop_checker
from .joincheck import JoinAnswer, JoinChecker
from .pipeline import Pipeline
from .policylists.index import RuleIndex
from .presend import PresendChecker, PresendCounts
from .record.presend import PresendStatsRepo
from .record.store import StoredEvent, Store

log = logging.getLogger("modbot.presend")


class Presend:
    """The pre-send check's parts. Built only when `presend.enabled`."""

    def __init__(self, config: Config, engine: AsyncEngine, store: Store, app: web.Application) -> None:
        self.config = config
        self.store = store
        self.counts = PresendCounts(PresendStatsRepo(engine))

        async def audit(outcome: str, message: str) -> None:
            await store.audit("presend", outcome, message)

        self.endpoint = AntispamEndpoint(
            prefix=config.presend.path_prefix, secret=config.presend.antispam_secret,
            max_body_bytes=config.presend.max_body_bytes, max_json_depth=config.appservice.max_json_depth,
            counts=self.counts, audit=audit,
        )
        self.endpoint.add_routes(app)

    def start(
        self, *, pipeline: Pipeline, session: aiohttp.ClientSession, powers: PowerCache, controls: Controls,
        bot_user_id: str, submit: Callable[[Sequence[StoredEvent]], Any], rules: RuleIndex,
        management_room: Callable[[], str | None],
    ) -> None:
        cfg = self.config
        # Its own downloads: never waiting for an upload (MSC2246), never queued behind the
        # appservice path's.
        fetcher = MediaFetcher(
            session, homeserver_url=str(cfg.homeserver.url), as_token=cfg.appservice.as_token, user_id=bot_user_id,
            max_bytes=cfg.processing.max_media_bytes, timeout=cfg.presend.deadline, pending_upload_wait=0,
            max_downloads=cfg.processing.max_downloads,
        )
        self.endpoint.checker = PresendChecker(
            pipeline=pipeline.with_fetcher(fetcher), store=self.store, powers=powers,
            policy=lambda: controls.policy, is_protected=controls.is_protected, bot_user_id=bot_user_id,
            deadline=cfg.presend.deadline, pending_upload=cfg.presend.pending_upload, submit=submit,
            counts=self.counts,
        )
        if cfg.presend.check_joins:
            self.endpoint.joins = JoinChecker(
                index=rules, is_protected=controls.is_protected, management_room=management_room,
                bot_user_id=bot_user_id, block_rooms=lambda: cfg.policy_lists.room_rules == "block",
                audit=self._audit_join, note=self.counts.note,
            )
        self.counts.start()

    async def _audit_join(self, answer: JoinAnswer, user: str, room: str) -> None:
        rule = answer.rule
        try:
            await self.store.audit(
                "presend", answer.outcome, f"{user} refused at join into {room}: {answer.why}",
                event_id=rule.event_id if rule is not None and rule.event_id else None, room_id=room, sender=user,
            )
        except Exception:
            log.exception("could not audit the refused join of %s into %s", user, room)

    def stop(self) -> Awaitable[None]:
        return stop_checker(self.endpoint)
