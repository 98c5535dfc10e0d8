"""What a command handler is given: the services it may use, the command's context, its reply.

`CommandServices` holds the narrow parts of the bot a handler needs (storage, the action
executor, the homeserver, the moderators' controls...), built by the composition root
(bot/app.py); handlers never see the bot itself. `CommandContext` adds the command's own
event, room, sender and scope, with the helpers most commands share (the replied-to
message, its media, the rooms a scope names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..act.enforcer import Enforcer, media_ref
from ..act.executor import Executor
from ..act.homeserver import Homeserver, HomeserverError
from ..act.powers import PowerCache
from ..config import HashListConfig
from ..controls import Controls
from ..extract import extract_media_refs
from ..intake.reports import ReportDesk
from ..model import Hashes, MediaRef, Verdict
from ..policylists.service import PolicyLists
from ..record.evidence import ChainAnchors
from ..record.moderation import ModerationStore
from ..record.store import Store, StoredEvent


class CommandError(Exception):
    """A command could not be done; the message is the reply."""


@dataclass
class Reply:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def add(self, line: str) -> Reply:
        self.lines.append(line)
        return self


class ImageCrops(Protocol):
    """What `hash add` lists of an image besides its own hashes (bot/commands/imagecrops.py)."""

    async def crops_of(self, ref: MediaRef, sha256: str) -> tuple[tuple[tuple[str, str], ...], str | None]: ...


class MediaAnalysis(Protocol):
    """Hashing and hash-only classification of one piece of media (the pipeline's)."""

    async def hashes_for(self, ref: MediaRef) -> tuple[Hashes | None, str | None, bool]: ...

    async def classify_hashes(self, hashes: Hashes) -> tuple[list[Verdict], list[str]]: ...


@dataclass(frozen=True)
class BotStatus:
    """What `status` reports beyond the controls: uptime, the queue, the classifiers."""

    started_at: float
    queue_depth: Callable[[], int]
    recent_errors: Callable[[], Sequence[str]]
    classifiers: Sequence[Any]  # each has a name, and may have health() -> str
    presend: Callable[[], Mapping[str, int]] | None = None  # pre-send outcomes since start, when enabled


@dataclass(frozen=True)
class CommandServices:
    """The parts of modbot command handlers use; built once the bot has started."""

    prefix: str
    bot_user_id: str
    management_room: str | None
    store: Store
    moderation: ModerationStore
    homeserver: Homeserver
    powers: PowerCache
    executor: Executor
    enforcer: Enforcer
    anchors: ChainAnchors
    controls: Controls
    media: MediaAnalysis
    hash_lists: Sequence[HashListConfig]
    status: BotStatus
    policylists: PolicyLists | None = None  # the Matrix policy lists followed (bot/policylists/)
    reports: ReportDesk | None = None  # users' reports (bot/intake/reports.py); None before start
    crops: ImageCrops | None = None  # an image's crops, for `hash add`; None: own hashes only


@dataclass
class CommandContext:
    services: CommandServices
    event: StoredEvent
    room_id: str
    sender: str
    scope: str  # "management" | "room"
    reply_to: str | None

    @property
    def event_id(self) -> str:
        return self.event.event_id

    async def replied_event(self) -> dict[str, Any]:
        if not self.reply_to:
            raise CommandError("reply to a message, or name the target")
        try:
            return await self.services.homeserver.get_event(self.room_id, self.reply_to)
        except HomeserverError as e:
            raise CommandError(f"cannot read the message replied to: {e}") from e

    async def user_or_reply(self, user: str | None) -> str:
        if user:
            return user
        return (await self.replied_event())["sender"]

    async def media_or_reply(self, mxc: str | None) -> list[MediaRef]:
        """The media named, or that of the replied-to message (also after it was redacted)."""
        if mxc:
            ref = media_ref(mxc)
            if ref is None:
                raise CommandError(f"invalid mxc URI {mxc!r}")
            return [ref]
        if not self.reply_to:
            raise CommandError("reply to a message with media, or give an mxc:// URI")
        event = await self.replied_event()
        refs = [r for r in extract_media_refs(event).refs if not r.encrypted]
        if not refs:
            # Redacted already: modbot remembers which media the event carried.
            refs = [r for r in (media_ref(m) for m in await self.services.store.media_of_event(self.reply_to)) if r]
        if not refs and self.services.reports is not None:
            # A report's card: the reported event's media.
            refs = [r for r in (media_ref(m) for m in await self.services.reports.media_of_card(self.reply_to)) if r]
        if not refs:
            raise CommandError("the message replied to has no media modbot can read")
        return refs

    async def hashes_of(self, ref: MediaRef) -> Hashes:
        hashes, error, _ = await self.services.media.hashes_for(ref)
        if hashes is None:
            raise CommandError(f"cannot hash {ref.mxc}: {error}")
        return hashes

    def target_room(self, room: str | None) -> str | None:
        """In a protected room, room moderators act in their room only."""
        if self.scope == "room":
            if room not in (None, "room", self.room_id):
                raise CommandError("in a protected room, commands act on this room only; use the management room")
            return self.room_id
        return None if room == "room" else room

    async def rooms_for(self, scope: str | None) -> list[str]:
        """`all` (every protected room), a named room, or this room."""
        protected = self.services.controls.protected
        if scope == "all":
            if self.scope == "room":
                raise CommandError("`all` works in the management room only")
            if not protected:
                # Never passed on empty: Synapse's admin redact API reads no rooms as every room.
                raise CommandError("`all` names no room: modbot protects no rooms yet (`rooms protect <room>`)")
            return sorted(protected)
        room = self.target_room(scope)
        if room is None:
            if self.room_id in protected:
                return [self.room_id]
            raise CommandError("name a room, or `all`")
        return [await self.services.homeserver.resolve_room(room)]
