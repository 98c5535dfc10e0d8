"""Uploads of suspended users, quarantined while modbot holds them suspended.

Synapse 1.163 refuses a suspended user's messages, joins, invites and profile changes, but
its media endpoints do not check suspension: a suspended user can still upload, and share
the mxc URI outside the server's rooms. So for every user modbot suspended (its latest
`suspend`/`unsuspend` carried out, by the policy or a command: the actions table), modbot
polls `GET /_synapse/admin/v1/users/<user_id>/media` (newest first, `page_size` a page, at
most `max_pages` pages with work a poll) every `interval` seconds and quarantines each upload created
since the suspension (less MARGIN) that is not quarantined yet, through the executor: keyed
by mxc like every quarantine (never twice, retried, audited). The newest upload dealt with
is stored (record/suspensions.py), so a restart resumes where the last poll was. The watch
stops when modbot unsuspends the user, or when Synapse no longer holds them suspended
(another admin lifted it), audited either way; a later suspension starts it again.

What this does not close: the upload itself succeeds and is served until the next poll
(at most `interval` seconds plus the poll's own time), and media created (MSC2246
`/create`) before the suspension but uploaded after it is older than the watermark.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..configmodel import SuspendedUploadsConfig
from ..model import Decision, EventContext, Outcome
from ..record.store import Store
from ..record.suspensions import SuspendedUploadRepo, WatchedUser
from ..senders import server_of
from .executor import Executor
from .homeserver import Homeserver, HomeserverError
from .operations import Operation

log = logging.getLogger("modbot.uploadwatch")

# Uploads created this long before the suspension was recorded count as new: the action is
# recorded after Synapse answered, and an upload can race the suspension.
MARGIN = 10.0
AUDIT = "suspension"
SKIP_FACTOR = 10


@dataclass(frozen=True)
class WatchSettings:
    interval: float
    page_size: int
    max_pages: int
    max_users: int


class UploadWatch:
    def __init__(
        self, homeserver: Homeserver, executor: Executor, repo: SuspendedUploadRepo, store: Store, *,
        own_server: str, settings: WatchSettings,
    ) -> None:
        self.hs = homeserver
        self.executor = executor
        self.repo = repo
        self.store = store
        self.own_server = own_server
        self.settings = settings
        self._task: asyncio.Task[None] | None = None
        self._over_users = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="upload-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # one failed poll must not end the watch
                log.exception("watching suspended users' uploads failed; trying again next poll")
            await asyncio.sleep(self.settings.interval)

    async def poll(self) -> int:
        """One round: follow the suspensions modbot made, then check each watched user's uploads.
        Returns how many uploads were quarantined."""
        watched = await self._follow_suspensions()
        active = [w for w in watched if w.active]
        if len(active) > self.settings.max_users and not self._over_users:
            self._over_users = True
            await self.store.audit(AUDIT, "limited", f"{len(active)} suspended users watched, more than "
                                   f"suspended_uploads.max_users ({self.settings.max_users}): the longest suspended first")
        total = 0
        for user in sorted(active, key=lambda w: w.suspended_at)[: self.settings.max_users]:
            try:
                total += await self._check(user)
            except HomeserverError as e:
                log.warning("cannot check the uploads of %s: %s", user.user_id, e)
        return total

    async def _follow_suspensions(self) -> Sequence[WatchedUser]:
        watched = {w.user_id: w for w in await self.repo.watched()}
        for change in await self.repo.latest_changes(limit=self.settings.max_users * 4):
            if server_of(change.user_id) != self.own_server:
                continue
            w = watched.get(change.user_id)
            if change.suspended and (w is None or change.at > w.suspended_at and not w.active):
                await self.repo.start(change.user_id, change.at, int((change.at - MARGIN) * 1000))
                await self.store.audit(AUDIT, "watching", f"{change.user_id} suspended by modbot: their new uploads "
                                       "are quarantined until they are unsuspended", sender=change.user_id)
            elif not change.suspended and w is not None and w.active:
                await self._stop(w, "unsuspended by modbot")
        return await self.repo.watched()

    async def _stop(self, user: WatchedUser, why: str) -> None:
        await self.repo.stop(user.user_id)
        await self.store.audit(AUDIT, "stopped", f"{user.user_id} {why}: their uploads are no longer quarantined "
                               f"({user.quarantined} were)", sender=user.user_id)

    async def _check(self, user: WatchedUser) -> int:
        if not await self.hs.is_suspended(user.user_id):
            await self._stop(user, "is no longer suspended on the homeserver")
            return 0
        newest, done, start = user.watermark_ms, [], 0
        complete = False
        # Pages with work count against max_pages; pages of uploads quarantined already (the
        # newest, after a poll that hit the bound) are skipped over, within ten times as many reads.
        worked = 0
        for _ in range(self.settings.max_pages * SKIP_FACTOR):
            if worked >= self.settings.max_pages:
                break
            media, token = await self.hs.user_media(user.user_id, start=start, limit=self.settings.page_size)
            fresh = [m for m in media if _created(m) > user.watermark_ms]
            newest = max([newest] + [_created(m) for m in fresh])
            todo = [m for m in fresh if isinstance(m.get("media_id"), str) and m["media_id"] and not m.get("quarantined_by")]
            worked += bool(todo)
            for m in todo:
                if await self._quarantine(user.user_id, m["media_id"]):
                    done.append(f"mxc://{self.own_server}/{m['media_id']}")
            if len(fresh) < len(media) or token is None:
                complete = True
                break
            start = token
        if not complete:
            await self.store.audit(AUDIT, "limited", f"{user.user_id}: more uploads since the last poll than "
                                   f"{self.settings.max_pages} pages of {self.settings.page_size}; the rest next poll",
                                   sender=user.user_id)
        # Only a poll that reached uploads older than the watermark may move it.
        await self.repo.advance(user.user_id, newest if complete else user.watermark_ms, len(done))
        if done:
            await self.store.audit(AUDIT, "upload_quarantined", f"{user.user_id} is suspended: quarantined "
                                   f"{len(done)} new upload(s): {', '.join(done[:10])}", sender=user.user_id)
        return len(done)

    async def _quarantine(self, user_id: str, media_id: str) -> bool:
        mxc = f"mxc://{self.own_server}/{media_id}"
        op = Operation("quarantine", {"server": self.own_server, "media_id": media_id}, user_id)
        result = await self.executor.perform(
            f"quarantine:{mxc}", op, target=mxc, room_id=None,
            ctx=EventContext(event_id="", room_id="", sender=user_id, sender_power=0),
            decision=Decision(rule="suspended by modbot: new uploads quarantined"),
        )
        return result.outcome in (Outcome.OK, Outcome.PENDING)


def _created(media: dict[str, object]) -> int:
    value = media.get("created_ts")
    return value if isinstance(value, int) else 0


def upload_watch(homeserver: Homeserver, executor: Executor, store: Store, config: SuspendedUploadsConfig, *,
                 own_server: str) -> UploadWatch:
    """The watch wired for the composition root (bot/app.py)."""
    settings = WatchSettings(config.interval, config.page_size, config.max_pages, config.max_users)
    return UploadWatch(homeserver, executor, SuspendedUploadRepo(store.engine), store, own_server=own_server, settings=settings)
