"""The live state moderators change at run time, and the operations that change it.

Protected rooms, the dry-run switches over the configured policy, the allowlist, and the
hash lists' reload and acceptance. The pipeline reads this state through getters; commands
change it through these methods, each audited. Rooms protected or unprotected and dry-run
switches are kept in the database, so a restart keeps them (`restore`, `join_protected`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from .act.executor import txn_id_for
from .act.homeserver import Homeserver, HomeserverError
from .act.notices import notice_text
from .allowlist import Allowlist
from .lists.loaded import ListLoadReport
from .config import Config, ConfigError, load_config
from .lists.accept import AcceptError, record_acceptance
from .lists.registry import ListRegistry, ReloadResult
from .policy import Policy, with_dry_run
from .record.liststate import ListStateRepo
from .record.moderation import ModerationStore
from .record.store import Store

log = logging.getLogger("modbot")


class Controls:
    """What moderators switch while modbot runs; the homeserver and the management room
    are read through getters, as they exist only once the bot has started."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None,
        store: Store,
        moderation: ModerationStore,
        lists: ListRegistry,
        list_states: ListStateRepo,
        homeserver: Callable[[], Homeserver | None],
        management_room: Callable[[], str | None],
        bot_user_id: str,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.store = store
        self.moderation = moderation
        self.lists = lists
        self.list_states = list_states
        self._homeserver = homeserver
        self._management_room = management_room
        self.bot_user_id = bot_user_id
        self.base_policy: Policy = config.policy
        self.policy: Policy = config.policy
        self.dry_run_overrides: dict[str | None, bool] = {}
        self.allowlist = Allowlist()
        self.protected: set[str] = set()
        # False until start-up has joined the protected rooms: the intake opens before, and
        # what arrives in between cannot be told to be in a protected room or not.
        self.rooms_known = False

    @property
    def homeserver(self) -> Homeserver:
        hs = self._homeserver()
        assert hs is not None, "the homeserver client exists once the bot has started"
        return hs

    def is_protected(self, room_id: str) -> bool:
        return room_id in self.protected

    # --- at start ----------------------------------------------------------------------------

    async def restore(self) -> None:
        """The allowlist and the dry-run switches, from the database."""
        await self.refresh_allowlist()
        await self._load_overrides()

    async def join_protected(self) -> None:
        """Join the protected rooms: the configured ones, less those unprotected by command,
        plus those protected by command."""
        overrides = await self.moderation.protection_overrides()
        rooms = [r for r in self.config.rooms.protected if overrides.get(r, True)]
        rooms += [r for r, on in overrides.items() if on and r not in rooms]
        for room in rooms:
            room_id = await self.join(room)
            if room_id and overrides.get(room_id, True):
                self.protected.add(room_id)
        self.rooms_known = True

    async def join(self, room: str) -> str | None:
        """The room's ID once joined, or None (logged and audited) when it cannot be joined."""
        try:
            return await self.homeserver.join(room)
        except HomeserverError as e:
            log.error("could not join %s (invite %s first): %s", room, self.bot_user_id, e)
            await self.store.audit("rooms", "failed", f"could not join {room}: {e}", room_id=room)
            return None

    # --- rooms -------------------------------------------------------------------------------

    async def protect_room(self, room: str, *, by: str) -> str:
        """Join and protect a room; a HomeserverError when it cannot be joined."""
        room_id = await self.homeserver.join(room)
        await self.moderation.set_protected(room_id, True, by)
        self.protected.add(room_id)
        await self.store.audit("rooms", "protected", f"{by}: protect {room_id}", room_id=room_id, sender=by)
        return room_id

    async def unprotect_room(self, room: str, *, by: str) -> str:
        room_id = await self.homeserver.resolve_room(room)
        await self.moderation.set_protected(room_id, False, by)
        self.protected.discard(room_id)
        await self.store.audit("rooms", "unprotected", f"{by}: unprotect {room_id}", room_id=room_id, sender=by)
        return room_id

    # --- policy and allowlist --------------------------------------------------------------

    async def refresh_allowlist(self) -> None:
        self.allowlist = Allowlist.of((a.hash_type, a.hash) for a in await self.moderation.allowlist())

    async def _load_overrides(self) -> None:
        settings = await self.moderation.settings("dry_run")
        self.dry_run_overrides = {
            (None if k == "dry_run" else k.split(":", 1)[1]): bool(v) for k, v in settings.items()
        }
        self.policy = with_dry_run(self.base_policy, self.dry_run_overrides)

    async def set_dry_run(self, on: bool, room_id: str | None, *, by: str) -> None:
        await self.moderation.set_setting("dry_run" if room_id is None else f"dry_run:{room_id}", on, by)
        await self.store.audit(
            "policy", "dry_run", f"{by}: dry run {'on' if on else 'off'} {room_id or 'everywhere'}",
            room_id=room_id, sender=by,
        )
        await self._load_overrides()

    async def reload_policy(self, *, by: str) -> tuple[bool, str]:
        """Re-read the policy from the config; an invalid one is refused and the old one kept."""
        if self.config_path is None:
            return False, "modbot was not started from a config file; nothing to reload"
        try:
            config = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as e:
            await self.store.audit("policy", "rejected", f"{by}: reload refused: {e}", sender=by)
            return False, f"The policy was not reloaded; the old one stays in force:\n{e}"
        self.base_policy = config.policy
        self.policy = with_dry_run(self.base_policy, self.dry_run_overrides)
        rules = len(config.policy.rules)
        await self.store.audit("policy", "reloaded", f"{by}: policy reloaded ({rules} rules)", sender=by)
        return True, f"Policy reloaded: {rules} rules."

    # --- hash lists ----------------------------------------------------------------------------

    @property
    def list_reports(self) -> tuple[ListLoadReport, ...]:
        return self.lists.reports

    async def reload_lists(self) -> ReloadResult:
        """Reload the lists whose file changed; a list that fails to load keeps its old version."""
        return await self.lists.reload()

    async def accept_list(self, name: str, *, by: str) -> None:
        """Accept a list file the bot itself has just edited, if it would be held (see lists/accept.py)."""
        config = next(c for c in self.config.hash_lists if c.name == name)
        try:
            await record_acceptance(
                self.list_states, self.store, config, Path.cwd(),
                by=by, max_drop_share=self.config.hashlist.max_drop_share, only_if_held=True,
            )
        except AcceptError as e:  # a disabled or unreadable list: the reload that follows says so
            log.warning("%s", e)

    async def report_reload(self, result: ReloadResult) -> None:
        """Audit a reload; a list kept or held is also told to the management room."""
        for change in result.changes:
            outcome = change.outcome if change.outcome in ("kept", "held") else "reloaded"
            await self.store.audit("lists", outcome, change.describe())
            if outcome != "reloaded":
                await self.tell_management(
                    f"Hash list {change.name} not reloaded", change.describe(), f"lists:{outcome}:{change.name}"
                )

    async def tell_management(self, title: str, text: str, key: str) -> None:
        """A notice in the management room; a failure is logged and audited, never raised."""
        room, hs = self._management_room(), self._homeserver()
        if room is None or hs is None:
            return
        body, formatted = notice_text(title, [text])
        try:
            await hs.send_notice(room, body, formatted, txn_id_for(f"{key}:{time.time_ns()}"))
        except HomeserverError as e:
            log.warning("could not send a notice to %s: %s", room, e)
            await self.store.audit("notify", "failed", f"{title}: notice not sent: {e}", room_id=room)
