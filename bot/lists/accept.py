"""Accepting a held version of a hash list: put it in use as it is (`modbot hashes accept`, list edits).

A reload that would empty a list, is mostly rejected lines or drops too many entries is
held (bot/lists/guard.py). Accepting records the SHA-256 of the list file as it is now in
the database (`hash_list_state.accepted_digest`): the running bot, which reads that row
while a list is held, loads the file within `hashlist.reload_interval` seconds; a bot
that is not running loads it at its next start. Only that exact content is accepted: a
file changed again after `accept` is judged again. Each acceptance is an audit row.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .guard import ListRecord, judge

if TYPE_CHECKING:  # numpy and SQLAlchemy: loaded by the command that runs, not by `modbot --help`
    from .columns import Progress
    from ..record.liststate import ListStateRepo
    from ..record.store import Store


class AcceptError(Exception):
    """The list cannot be accepted (unreadable file, disabled list); the message says why."""


@dataclass(frozen=True)
class Acceptance:
    name: str
    path: Path
    digest: str
    entries: int
    rejected: int
    previous: ListRecord | None  # what the list last loaded
    held_because: str | None  # None: the file would have loaded without acceptance
    recorded: bool

    def describe(self) -> str:
        was = self.previous.entries if self.previous is not None and self.previous.entries is not None else None
        text = (
            f"hash list {self.name}: {self.path} (sha256 {self.digest[:16]}…) with {self.entries} entries"
            + (f" (last loaded: {was})" if was is not None else "")
            + f", {self.rejected} lines rejected"
        )
        if self.held_because is None:
            return text + "; it loads as it is" + ("" if self.recorded else ", nothing to accept")
        return text + f"; accepted although {self.held_because}"


async def record_acceptance(
    repo: ListStateRepo,
    store: Store,
    config: Any,
    base_dir: Path,
    *,
    by: str,
    max_drop_share: float,
    only_if_held: bool = False,
    progress: Progress | None = None,
) -> Acceptance:
    """Accept `config`'s list file as it is now; with `only_if_held`, only if it needs it.

    Raises AcceptError when the file cannot be read or the list is disabled.
    """
    from ..lists.loaded import load_list

    if not config.enabled:
        raise AcceptError(f"hash list {config.name} is disabled: it is not loaded at all")
    _, report, columns = await asyncio.to_thread(load_list, config, base_dir, progress)
    if report.failed or columns.digest is None:
        raise AcceptError(f"hash list {config.name}: {report.errors[0][1] if report.errors else 'cannot read the file'}")
    previous = (await repo.records()).get(config.name)
    hold = judge(report, columns.digest, previous, max_drop_share)
    rejected = sum(1 for line, _ in report.errors if line)
    record = hold is not None or not only_if_held
    reason = hold.reason if hold is not None else None
    acceptance = Acceptance(config.name, report.path, columns.digest, report.entries, rejected, previous, reason, record)
    if record:
        await repo.accept(config.name, columns.digest, by)
        await store.audit("lists", "accepted", f"{by}: {acceptance.describe()}", sender=by)
    return acceptance
