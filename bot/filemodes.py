"""Files that hold secrets or user data: written private (0600), and checked for looser modes.

Which files, and why:

- the config (`as_token`, which is an admin token once the bot is server admin; classifier
  passwords given inline): only modbot reads it, 0600;
- the registration (both tokens): Synapse must read it too, often through its group, so
  group read is accepted (0640), nothing for others;
- the SQLite database and its `-wal`, `-shm` and `-journal` files (events as received,
  with user IDs and message text; media hashes; the audit trail): 0600. SQLite gives the
  files it creates beside a database the database file's mode, so creating the database
  0600 before SQLAlchemy opens it makes them 0600 too;
- hash lists: no secret, but perceptual hashes of abuse imagery are sensitive (they can be
  partly inverted, and shared lists come under use agreements), and whoever can write a
  list can empty it and disable matching: group read at most (0640);
- the policy file: whoever can write it decides what the bot does: 0644 at most;
- reports written by `modbot report export -o` (user IDs, rooms, hashes): created 0600.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .configmodel import Config

PRIVATE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 0600, never readable by others even for a moment.

    An existing file is tightened before its old content is replaced, and written in
    place (a symlinked config stays a symlink, its owner stays the owner).
    """
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE)
    except FileExistsError:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        try:
            os.fchmod(fd, PRIVATE)  # also when the umask or an old file made it looser
        except PermissionError:
            pass  # someone else's file we may write: its owner chose its mode (`modbot check` warns)
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def create_private(path: Path) -> None:
    """Create an empty file 0600 if there is none (a new SQLite database, before it is opened)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE))
    except FileExistsError:
        pass


@dataclass(frozen=True)
class LooseMode:
    path: Path
    what: str  # "config", "registration", ...
    mode: int
    allowed: int

    def describe(self) -> str:
        return (
            f"{self.what} {self.path} is mode {self.mode:04o}, looser than {self.allowed:04o}: "
            f"{_who(self.mode & ~self.allowed)} can {_how(self.mode & ~self.allowed)} it"
        )

    @property
    def fix(self) -> str:
        return f"chmod {self.mode & self.allowed:o} {self.path}"


def _who(extra: int) -> str:
    return " and ".join(name for name, bits in (("its group", 0o070), ("everyone", 0o007)) if extra & bits)


def _how(extra: int) -> str:
    bits = (extra | extra >> 3) & 0o7
    return "/".join(name for name, bit in (("read", 4), ("write", 2), ("execute", 1)) if bits & bit)


def loose_mode(path: Path, what: str, allowed: int) -> LooseMode | None:
    """The file's mode if it grants more than `allowed`; None if it does not (or is absent)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    return LooseMode(path, what, mode, allowed) if mode & ~allowed & 0o777 else None


def loose_files(
    config: Config, *, config_path: Path | None, registration_path: Path | None, database: Path | None
) -> list[LooseMode]:
    """Every file of this setup whose mode is looser than what it holds allows.

    `database`: the SQLite database file (`bot.record.db.sqlite_database_path`), if any.
    """
    files: list[tuple[Path, str, int]] = []
    if config_path is not None:
        files.append((config_path, "config", PRIVATE))
    if registration_path is not None:
        files.append((registration_path, "registration", 0o640))
    if database is not None:
        files += [(database.with_name(database.name + suffix), "database", PRIVATE) for suffix in ("", "-wal", "-shm", "-journal")]
    files += [(entry.path, f"hash list {entry.name}", 0o640) for entry in config.hash_lists]
    if config.policy_file is not None:
        files.append((config.policy_file, "policy file", 0o644))
    # The incident chain's key signs the evidence; the anchor file is what a rewrite is
    # checked against (bot/record/evidence.py): both private.
    files.append((config.incidents.chain_key_file, "incident chain key", PRIVATE))
    files.append((config.incidents.anchor_file, "incident anchor file", PRIVATE))
    return [found for path, what, allowed in files if (found := loose_mode(path, what, allowed))]
