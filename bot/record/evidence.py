"""The incident chain's evidence kept outside the database: the chain key and the anchors.

- The **chain key** (a file, 0600) keys every new incident row (HMAC-SHA256). It is made
  on the first start (or by `modbot generate-registration`); a database that already holds
  keyed rows with the key file missing, or with a key that does not match them, is refused.
- **Anchors** (the head's id and hash, and the row count) are appended to an append-only
  file (0600) after every new incident, and posted to the management room daily and on
  demand (`!mod audit anchor`), so that deleting the newest rows, or every row, is caught
  by `modbot audit verify` (bot/cli/audit.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .chain import KEY_BYTES, Anchor, Link, RetentionMark, anchor_notice, keyed_hash, mark_is_authentic
from .moderation import ChainHead, Incident, ModerationStore

log = logging.getLogger("modbot.evidence")

NOTICE_KEY = "modbot.anchor"  # the machine-readable anchor in the management room's notice


class ChainKeyError(Exception):
    """The chain key cannot be used: the message says why and what to do."""


# --- the chain key ------------------------------------------------------------------------------


def read_chain_key(path: Path) -> bytes | None:
    """The key in `path` (64 hex digits), None when there is no such file. Raises ChainKeyError."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ChainKeyError(f"cannot read the chain key file {path}: {e}") from e
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ChainKeyError(f"the chain key file {path} does not hold a key ({KEY_BYTES * 2} hex digits)")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the chain key file %s is readable by others (mode %o): chmod 600 it", path, path.stat().st_mode & 0o777)
    return key


def create_chain_key(path: Path) -> bytes:
    """Write a fresh random key to `path`, created 0600; an existing file is never replaced."""
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key


def key_matches(key: bytes, evidence: Link | RetentionMark) -> bool:
    if isinstance(evidence, RetentionMark):
        return mark_is_authentic(evidence, key)
    expected = keyed_hash(key, evidence.prev_hash, evidence.id, evidence.event_id, evidence.created_at, evidence.record_json)
    return secrets.compare_digest(expected, evidence.row_hash)


async def open_chain_key(path: Path, moderation: ModerationStore) -> bytes:
    """The key for the running bot: read it, or make it while the database holds no keyed row.

    Refuses (ChainKeyError) a missing key file when keyed rows exist — a new key would
    start a chain nobody could check against the old one — and a key that does not
    verify the newest keyed row.
    """
    key = read_chain_key(path)
    evidence = await moderation.keyed_evidence()
    if key is None:
        if evidence is not None:
            raise ChainKeyError(
                f"the chain key file {path} is missing, but the database holds incidents keyed with it. "
                "Restore the key file from your backup (incidents.chain_key_file); modbot will not start "
                "a new key over a keyed chain."
            )
        key = create_chain_key(path)
        log.info("created the incident chain key %s (mode 0600); back it up with the database", path)
        return key
    if evidence is not None and not key_matches(key, evidence):
        what = f"incident {evidence.id}" if isinstance(evidence, Link) else "the retention mark"
        raise ChainKeyError(
            f"the chain key in {path} does not verify {what}, the newest keyed evidence: either the key file is not "
            "the one the chain was written with (restore it), or that row was altered (run `modbot audit verify`)."
        )
    return key


# --- the anchor file -----------------------------------------------------------------------------


class AnchorFile:
    """An append-only file of anchors, one JSON object per line, created 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, anchor: Anchor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(anchor.to_json(), sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> tuple[list[Anchor], list[int]]:
        """The anchors, and the numbers of the lines that are not one (a torn last line after
        a crash, or tampering)."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return [], []
        anchors, bad = [], []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                anchor = Anchor.from_json(json.loads(line))
            except ValueError:
                anchor = None
            if anchor is None:
                bad.append(number)
            else:
                anchors.append(anchor)
        return anchors, bad

    def last(self) -> Anchor | None:
        anchors, _ = self.read()
        return anchors[-1] if anchors else None


# --- anchoring ---------------------------------------------------------------------------------


class Sender(Protocol):
    async def send_message(self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = ...) -> str: ...


class Auditor(Protocol):
    async def audit(self, category: str, outcome: str, message: str, **kw: Any) -> None: ...


@dataclass(frozen=True)
class AnchorResult:
    anchor: Anchor
    event_id: str | None  # the management room's notice, when posted
    problems: tuple[str, ...]  # what could not be done (no room, homeserver error, file error)


class ChainAnchors:
    """Keeps the chain's head outside the database: the anchor file and the management room."""

    def __init__(
        self,
        moderation: ModerationStore,
        file: AnchorFile,
        audit: Auditor,
        *,
        sender: Callable[[], Sender | None],
        management_room: Callable[[], str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.moderation = moderation
        self.file = file
        self._audit = audit
        self._sender = sender
        self._management_room = management_room
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def head(self, reason: str) -> Anchor:
        return self._anchor(await self.moderation.chain_head(), reason)

    def _anchor(self, head: ChainHead, reason: str) -> Anchor:
        return Anchor(head.head_id, head.head_hash, head.count, float(int(self._clock())), reason)

    async def _to_file(self, anchor: Anchor) -> str | None:
        try:
            await asyncio.to_thread(self.file.append, anchor)
        except OSError as e:
            log.error("cannot append to the anchor file %s: %s", self.file.path, e)
            await self._audit.audit("incident", "anchor_failed", f"anchor file {self.file.path}: {e}")
            return f"anchor file: {e}"
        return None

    async def incident_recorded(self, _incident: Incident, head: ChainHead) -> None:
        """After each new incident, with the head it made: the file learns it at once, so
        deleting the newest rows is caught even before the next daily anchor. Never raises:
        the incident is recorded already, and a failure here is logged and audited."""
        try:
            await self._to_file(self._anchor(head, "incident"))
        except Exception:
            log.exception("cannot anchor the new incident")

    async def anchor(self, reason: str, *, by: str = "modbot") -> AnchorResult:
        """Append the head to the file and post it to the management room."""
        anchor = await self.head(reason)
        problems = [p for p in [await self._to_file(anchor)] if p]
        event_id = None
        room, sender = self._management_room(), self._sender()
        if room is None or sender is None:
            problems.append("no management room: the anchor went to the file only")
        else:
            text, html = anchor_notice(anchor)
            content = {
                "msgtype": "m.notice", "body": text, "format": "org.matrix.custom.html", "formatted_body": html,
                NOTICE_KEY: anchor.to_json(),
            }
            try:
                event_id = await sender.send_message(room, content, f"modbot.anchor.{secrets.token_hex(8)}")
            except Exception as e:  # the homeserver's errors: the file still has the anchor
                log.warning("cannot post the evidence anchor to %s: %s", room, e)
                problems.append(f"management room: {e}")
        outcome = "anchored" if not problems else "anchor_partial"
        await self._audit.audit(
            "incident", outcome,
            f"{by}: anchor ({reason}) head #{anchor.head_id} {anchor.head_hash}, {anchor.count} rows"
            + (f"; {'; '.join(problems)}" if problems else ""),
            sender=by if by != "modbot" else None, room_id=room,
        )
        return AnchorResult(anchor, event_id, tuple(problems))

    def start(self, interval: float) -> None:
        self._task = asyncio.create_task(self._run(interval), name="evidence-anchors")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self, interval: float) -> None:
        """Daily (every `interval` s on the event loop's monotonic clock: a wall-clock jump
        neither skips nor repeats one); at start too when the head moved since the last
        anchor in the file, e.g. incidents recorded while the anchor file was unwritable."""
        try:
            last = await asyncio.to_thread(self.file.last)
            count, head_id, head_hash = await self.moderation.chain_head()
            due = head_id > 0 and (last is None or (last.head_id, last.head_hash) != (head_id, head_hash))
        except Exception:
            log.exception("cannot read the anchor file")
            due = True
        delay = 0.0 if due else interval
        while True:
            await asyncio.sleep(delay)
            delay = interval
            try:
                await self.anchor("start" if due else "daily")
            except Exception:
                log.exception("evidence anchoring failed")
            due = False


def anchor_from_event(event: dict[str, Any], bot_user_id: str) -> Anchor | None:
    """The anchor an event of the management room carries, if the bot posted it."""
    if event.get("sender") != bot_user_id or event.get("type") != "m.room.message":
        return None
    content = event.get("content")
    return Anchor.from_json(content.get(NOTICE_KEY)) if isinstance(content, dict) else None


async def read_room_anchors(
    messages: Callable[..., Awaitable[dict[str, Any]]], room_id: str, bot_user_id: str, *, max_events: int
) -> tuple[list[Anchor], int]:
    """The bot's anchors in the room, newest first, reading back at most `max_events` events;
    returns them and how many events were read."""
    anchors: list[Anchor] = []
    token: str | None = None
    read = 0
    while read < max_events:
        page = await messages(room_id, limit=min(100, max_events - read), from_token=token)
        chunk = page.get("chunk") or []
        read += len(chunk)
        anchors += [a for a in (anchor_from_event(e, bot_user_id) for e in chunk) if a is not None]
        token = page.get("end")
        if not chunk or not token:
            break
    return anchors, read
