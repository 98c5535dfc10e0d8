"""`modbot hashes accept NAME`: put a held version of a hash list in use as it is.

A reload that would empty a list, is mostly rejected lines or drops too many entries is
held (bot/lists/guard.py). Accepting records the SHA-256 of the list file as it is now in
the database (`hash_list_state.accepted_digest`): the running bot, which reads that row
while a list is held, loads the file within `hashlist.reload_interval` seconds; a bot
that is not running loads it at its next start. Only that exact content is accepted: a
file changed again after `accept` is judged again. Each acceptance is an audit row.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
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


def cmd_accept(args: argparse.Namespace) -> int:
    from ..cli.hashes import ProgressBar, _list_config, _load

    config = _load(args)
    target = _list_config(config, args.name)
    bar = ProgressBar(f"reading {target.name}")
    try:
        acceptance = asyncio.run(_accept(config, target, bar))
    except AcceptError as e:
        print(f"modbot: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(acceptance.describe())
    print(
        f"The running bot loads it within {config.hashlist.reload_interval:g} s; a stopped one at its next start. "
        "A file changed after this is judged again."
    )
    return 0


async def _accept(config: Any, target: Any, progress: Progress) -> Acceptance:
    from ..record.db import create_engine, migrate
    from ..record.liststate import ListStateRepo
    from ..record.store import Store

    engine = create_engine(config.database.url)
    try:
        await migrate(engine)
        return await record_acceptance(
            ListStateRepo(engine), Store(engine), target, Path.cwd(),
            by=f"{_user()} (command line)", max_drop_share=config.hashlist.max_drop_share, progress=progress,
        )
    finally:
        await engine.dispose()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "unknown user"


def add_command(hashes: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    h = hashes.add_parser("accept", help="load a held list version as it is (one that would empty the list, "
                          "is mostly rejected lines or drops more than hashlist.max_drop_share)")
    h.add_argument("name", help="name of a list in the config's hash_lists")
    h.add_argument("-c", "--config", required=True)
    h.set_defaults(func=cmd_accept)
