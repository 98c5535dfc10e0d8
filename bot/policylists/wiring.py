"""The policy lists' part of the composition root: built with the bot, bound once the executor runs.

bot/app.py stays wiring only; this module holds what the policy lists need from it: the
repository, the rule service, the enforcer and the publisher, and the background task
that watches the configured rooms, catches up with every watched one at start and then
checks the protected rooms' members against the rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ..act.executor import Executor
from ..act.homeserver import Homeserver, HomeserverError
from ..config import Config
from ..controls import Controls
from ..record.moderation import ChainHead, Incident, OnIncident
from ..record.policyrules import PolicyRuleRepo
from ..record.store import Store, StoredEvent
from .catchup import catch_up
from .enforce import RuleEnforcer, Surroundings
from .publish import Publisher
from .service import PolicyLists

log = logging.getLogger("modbot.policylists")

class PolicyListWiring:
    def __init__(self, config: Config, engine: AsyncEngine, store: Store, controls: Controls, bot_user_id: str) -> None:
        self.config = config
        self.store = store
        self.controls = controls
        self.bot_user_id = bot_user_id
        self.repo = PolicyRuleRepo(engine)
        self.lists = PolicyLists(
            config.policy_lists, self.repo, store,
            is_protected=controls.is_protected, rooms_known=lambda: controls.rooms_known,
        )
        self.executor: Executor | None = None
        self.publisher = Publisher(config.policy_lists.publish, lambda: self.executor)
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Before the intake opens: the stored rules, so that joins are judged from the first event."""
        await self.lists.load()

    async def start(self, executor: Executor, homeserver: Homeserver, management_room: Callable[[], str | None]) -> None:
        cfg = self.config.policy_lists
        self.executor = executor
        around = Surroundings(
            protected=lambda: sorted(self.controls.protected),
            dry_run=lambda room: self.controls.policy.for_room(room).dry_run,
            management_room=management_room, bot_user_id=self.bot_user_id, own_server=self.config.homeserver.domain,
        )
        self.lists.bind(homeserver, RuleEnforcer(
            executor, homeserver, self.store, self.repo, self.lists.index, around,
            ban_reason=cfg.ban_reason, server_acl=cfg.server_acl, max_bans_per_rule=cfg.max_bans_per_rule,
            block_rooms=cfg.room_rules == "block",
        ))
        if cfg.publish.room is not None:
            try:
                self.publisher.room_id = await homeserver.join(cfg.publish.room)
            except HomeserverError as e:
                log.warning("cannot join the policy room to publish to (%s): %s", cfg.publish.room, e)
        self._task = asyncio.create_task(self._catch_up(), name="policy-lists")

    async def _catch_up(self) -> None:
        # The lists first, then the members: joins Synapse never delivered (held too long, lost
        # with its queue) are judged there; rules that changed meanwhile were acted on before.
        # Whatever fails (Synapse not up yet) is tried again until done (catchup.py).
        await catch_up(self.lists, lambda: self.controls.protected)

    def wants(self, event: dict[str, Any]) -> bool:
        return self.lists.wants(event)

    async def handle(self, event: StoredEvent) -> bool:
        return await self.lists.handle(event)

    def after(self, first: OnIncident) -> OnIncident:
        """The incident callback: `first` (the evidence anchors), then publishing."""

        async def on_incident(incident: Incident, head: ChainHead) -> None:
            await first(incident, head)
            await self.publisher.incident_recorded(incident)

        return on_incident

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
