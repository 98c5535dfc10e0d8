"""Hash list files read straight into arrays: how large lists load. PURE but for the file read.

`bot.lists.format` defines the format and parses it line by line into `HashEntry` objects,
which costs ~16 s and gigabytes per million lines. Here the same format is read into one
(n, words) uint64 array per hash type (see `bot.lists.index`) plus a small label table:

- lines in the canonical forms — `type:hex` in a plain list; `type,hex`, `type,hex,` or
  `type,hex,label` in a CSV list, with a lower-case type and a label of plain characters —
  are recognised with numpy over the whole file (10M lines in a few seconds);
- every other line (comments, blank lines, upper-case types, quoted labels, spaces, bad
  lines) goes through `bot.lists.format`' own line parser, so both readers accept and reject
  exactly the same lines, with the same messages and line numbers.

vPDQ rows (a whole video's frames, `bot.lists.vpdq`) are never canonical in that sense: they
go through the line parser and are kept as `VideoEntry`s beside the arrays; so do low-frequency
signatures (`lowfreq` rows, few: one per image added with `hashes add-image`), as `SignatureEntry`s.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bot.lists.format import HashEntry, _csv_row, _is_csv_header, _plain_line
from bot.lists.index import bytes_to_codes, code_to_hex, hex_to_codes
from bot.lists.sigindex import SignatureEntry
from bot.lists.videoindex import VideoEntry
from bot.lists.vpdq import DEFAULT_MAX_FRAMES
from bot.model import HASH_HEX_LENGTH, HASH_TYPES, SIGNATURE_HASH_TYPE, VIDEO_HASH_TYPE

# Lines handled per numpy pass: bounds the temporary arrays (~100 bytes a line).
_BLOCK_LINES = 1 << 20
# Label bytes the fast path takes as they are; anything else goes to the line parser.
_LABEL_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/+@")
_MAX_FAST_LABEL = 32
_BOM = b"\xef\xbb\xbf"
# Zero bytes after the data: fixed-width reads from a line's start never leave the buffer.
_PAD = 256


Progress = Callable[[int, int], None]  # (lines done, lines in all)


@dataclass(frozen=True)
class TypedHashes:
    """One hash type's entries: rows of words and, per row, an index into the labels."""

    codes: np.ndarray  # (n, words) uint64
    labels: np.ndarray  # (n,) int32
    # (n,) int32 index into HashColumns.derivations (0: the image's own hash); None when no
    # row of the type is derived (most lists: no array for them).
    derived: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.codes)


@dataclass(frozen=True)
class HashColumns:
    """A parsed list as arrays. Entries are not deduplicated here (the index does that)."""

    by_type: Mapping[str, TypedHashes]
    labels: tuple[str, ...]
    errors: tuple[tuple[int, str], ...] = ()
    lines: int = 0
    # (inode, size, mtime_ns) of the file read, to tell later whether it changed.
    signature: tuple[int, int, int] | None = field(default=None, compare=False)
    # SHA-256 of the bytes read: what `modbot hashes accept` records (bot.lists.guard).
    digest: str | None = field(default=None, compare=False)
    # vPDQ entries (whole videos), in file order.
    videos: tuple[VideoEntry, ...] = ()
    # Low-frequency signatures (smooth images), in file order.
    signatures: tuple[SignatureEntry, ...] = ()
    # What derived rows are of (bot.lists.format: the `derived` column); [0] is "" (own hashes).
    derivations: tuple[str, ...] = ("",)

    @property
    def counts(self) -> dict[str, int]:
        counts = {t: len(self.by_type[t]) if t in self.by_type else 0 for t in HASH_TYPES}
        if self.videos:
            counts[VIDEO_HASH_TYPE] = len(self.videos)
        if self.signatures:
            counts[SIGNATURE_HASH_TYPE] = len(self.signatures)
        return counts

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_type.values()) + len(self.videos) + len(self.signatures)

    def entries(self) -> Iterator[HashEntry]:
        """Every entry as a HashEntry: for small lists, tests and exports."""
        for hash_type, typed in self.by_type.items():
            length = HASH_HEX_LENGTH[hash_type]
            derived = typed.derived if typed.derived is not None else np.zeros(len(typed), dtype=np.int32)
            for code, label, what in zip(typed.codes, typed.labels, derived):
                yield HashEntry(hash_type, code_to_hex(code, length), self.labels[label], self.derivations[what])  # type: ignore[arg-type]
        for video in self.videos:
            yield HashEntry(VIDEO_HASH_TYPE, video.text, video.label)
        for signature in self.signatures:
            yield HashEntry(SIGNATURE_HASH_TYPE, signature.text, signature.label)

    @classmethod
    def from_entries(cls, entries: Sequence[HashEntry] | Iterator[HashEntry], errors: Sequence[tuple[int, str]] = ()) -> HashColumns:
        labels: dict[str, int] = {}
        derivations: dict[str, int] = {"": 0}
        grouped: dict[str, tuple[list[str], list[int], list[int]]] = {}
        videos: list[VideoEntry] = []
        signatures: list[SignatureEntry] = []
        for e in entries:
            if e.type == VIDEO_HASH_TYPE:
                videos.append(VideoEntry(e.hash, e.label))
                continue
            if e.type == SIGNATURE_HASH_TYPE:
                signatures.append(SignatureEntry(e.hash, e.label))
                continue
            hexes, ids, derived = grouped.setdefault(e.type, ([], [], []))
            hexes.append(e.hash.lower())
            ids.append(labels.setdefault(e.label, len(labels)))
            derived.append(derivations.setdefault(e.derived, len(derivations)))
        by_type = {
            t: TypedHashes(
                hex_to_codes(hexes, HASH_HEX_LENGTH[t]), np.array(ids, dtype=np.int32),
                np.array(derived, dtype=np.int32) if any(derived) else None,
            )
            for t, (hexes, ids, derived) in grouped.items()
        }
        return cls(
            by_type, tuple(labels), tuple(errors), videos=tuple(videos), signatures=tuple(signatures),
            derivations=tuple(derivations),
        )


def read_hash_columns(
    path: str | os.PathLike[str], default_label: str, progress: Progress | None = None,
    max_vpdq_frames: int = DEFAULT_MAX_FRAMES,
) -> HashColumns:
    """Read a list file; an unreadable file is an empty list with one error (line 0). A vPDQ
    entry of more than `max_vpdq_frames` frames is a rejected line."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            # Read into a padded array: no copy of a file that may be gigabytes.
            buf = np.zeros(stat.st_size + _PAD, dtype=np.uint8)
            size = f.readinto(memoryview(buf)[: stat.st_size])
            buf = buf[: size + _PAD]
    except FileNotFoundError:
        return HashColumns({}, (), ((0, f"file not found: {path}"),))
    except OSError as e:
        return HashColumns({}, (), ((0, f"cannot read {path}: {e.strerror or e}"),))
    parsed = _parse(buf, size, default_label, progress, max_vpdq_frames)
    # Digest of the very bytes parsed, so that it names the version loaded, not a later one.
    digest = hashlib.sha256(memoryview(buf)[:size]).hexdigest()
    return HashColumns(
        parsed.by_type, parsed.labels, parsed.errors, parsed.lines, (stat.st_ino, stat.st_size, stat.st_mtime_ns), digest,
        parsed.videos, parsed.signatures, parsed.derivations,
    )


def file_digest(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a file's bytes (the `HashColumns.digest` it would load with), None if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def file_signature(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of a file, None if it cannot be read: what the watcher compares."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class _Builder:
    def __init__(self, default_label: str) -> None:
        self.labels: dict[str, int] = {default_label: 0}
        self.codes: dict[str, list[np.ndarray]] = {}
        self.label_ids: dict[str, list[np.ndarray]] = {}
        # Per block of rows, its derivation ids, or None for a block of own hashes.
        self.derived: dict[str, list[np.ndarray | None]] = {}
        self.derivations: dict[str, int] = {"": 0}
        self.errors: list[tuple[int, str]] = []
        self.videos: list[VideoEntry] = []
        self.signatures: list[SignatureEntry] = []

    def label(self, name: str) -> int:
        return self.labels.setdefault(name, len(self.labels))

    def add(self, hash_type: str, codes: np.ndarray, label_ids: np.ndarray, derived: str = "") -> None:
        if len(codes):
            self.codes.setdefault(hash_type, []).append(codes)
            self.label_ids.setdefault(hash_type, []).append(label_ids.astype(np.int32))
            what = self.derivations.setdefault(derived, len(self.derivations))
            self.derived.setdefault(hash_type, []).append(np.full(len(codes), what, dtype=np.int32) if what else None)

    def _derived(self, hash_type: str) -> np.ndarray | None:
        blocks = self.derived[hash_type]
        if all(b is None for b in blocks):
            return None
        return np.concatenate([np.zeros(len(c), dtype=np.int32) if b is None else b
                               for b, c in zip(blocks, self.codes[hash_type])])

    def build(self, lines: int) -> HashColumns:
        by_type = {
            t: TypedHashes(np.concatenate(self.codes[t]), np.concatenate(self.label_ids[t]), self._derived(t))
            for t in HASH_TYPES
            if t in self.codes
        }
        used = sorted({int(i) for typed in by_type.values() for i in np.unique(typed.labels)})
        # Keep the default label out of the table when nothing uses it.
        remap = np.zeros(len(self.labels), dtype=np.int32)
        names = list(self.labels)
        for new, old in enumerate(used):
            remap[old] = new
        by_type = {t: TypedHashes(v.codes, remap[v.labels], v.derived) for t, v in by_type.items()}
        errors = tuple(sorted(self.errors))
        return HashColumns(
            by_type, tuple(names[i] for i in used), errors, lines, videos=tuple(self.videos), signatures=tuple(self.signatures),
            derivations=tuple(self.derivations),
        )


def parse_hash_columns(
    data: bytes, default_label: str, progress: Progress | None = None, max_vpdq_frames: int = DEFAULT_MAX_FRAMES
) -> HashColumns:
    """Parse a list file's bytes (UTF-8); the same result as `bot.lists.format.parse_hash_list`."""
    buf = np.zeros(len(data) + _PAD, dtype=np.uint8)
    buf[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return _parse(buf, len(data), default_label, progress, max_vpdq_frames)


def _parse(
    padded: np.ndarray, size: int, default_label: str, progress: Progress | None, max_vpdq_frames: int
) -> HashColumns:
    """`padded` holds the file's `size` bytes then _PAD zeros, so fixed-width reads never overrun."""
    skip = len(_BOM) if padded[: len(_BOM)].tobytes() == _BOM else 0
    padded = padded[skip:]
    size -= skip
    buf = padded[:size]
    windows = {}  # width -> sliding window view of the padded buffer

    def gather(starts: np.ndarray, width: int) -> np.ndarray:
        if width not in windows:
            windows[width] = np.lib.stride_tricks.sliding_window_view(padded, width)
        return windows[width][starts]

    newlines = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buf)]))
    if len(buf) and buf[-1] == 10:  # a final newline ends the last line; it starts none
        starts, ends = starts[:-1], ends[:-1]
    elif not len(buf):
        starts, ends = starts[:0], ends[:0]
    del newlines
    # "\r\n" line endings: the "\r" is not part of the line.
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
    ends = ends - cr
    total = len(starts)
    builder = _Builder(default_label)

    def line_text(i: int) -> str:
        return buf[starts[i] : ends[i]].tobytes().decode("utf-8", errors="replace")

    # The format is decided by the first meaningful line, as in bot.lists.format.
    is_csv = False
    header: int | None = None
    for i in range(total):
        line = line_text(i).strip()
        if line and not line.startswith("#"):
            is_csv = _is_csv_header(line)
            header = i if is_csv else None
            break

    for block in range(0, total, _BLOCK_LINES):
        s = starts[block : block + _BLOCK_LINES]
        e = ends[block : block + _BLOCK_LINES]
        claimed = _fast_block(buf, gather, s, e, is_csv, builder)
        lengths = e - s
        first = buf[np.minimum(s, max(len(buf) - 1, 0))] if len(buf) else np.zeros(len(s), dtype=np.uint8)
        rest = np.flatnonzero(~claimed & (lengths > 0) & (first != ord("#")))
        for j in rest:
            i = block + int(j)
            if i == header:
                continue
            line = line_text(i).strip()
            if not line or line.startswith("#"):
                continue
            try:
                entry = (_csv_row if is_csv else _plain_line)(line, default_label, max_vpdq_frames)
            except ValueError as err:
                builder.errors.append((i + 1, str(err)))
            else:
                if entry.type == VIDEO_HASH_TYPE:
                    builder.videos.append(VideoEntry(entry.hash, entry.label))
                    continue
                if entry.type == SIGNATURE_HASH_TYPE:
                    builder.signatures.append(SignatureEntry(entry.hash, entry.label))
                    continue
                builder.add(
                    entry.type,
                    hex_to_codes([entry.hash], HASH_HEX_LENGTH[entry.type]),
                    np.array([builder.label(entry.label)]),
                    entry.derived,
                )
        if progress is not None:
            progress(min(block + _BLOCK_LINES, total), total)
    return builder.build(total)


Gather = Callable[[np.ndarray, int], np.ndarray]  # (starts, width) -> (len(starts), width) bytes


def _fast_block(
    buf: np.ndarray, gather: Gather, starts: np.ndarray, ends: np.ndarray, is_csv: bool, builder: _Builder
) -> np.ndarray:
    """Take the canonical lines of a block; returns which lines were taken."""
    claimed = np.zeros(len(starts), dtype=bool)
    if not len(buf):
        return claimed
    lengths = ends - starts
    separator = b"," if is_csv else b":"
    for hash_type in HASH_TYPES:
        prefix = hash_type.encode() + separator
        hex_length = HASH_HEX_LENGTH[hash_type]
        after = len(prefix) + hex_length
        fits = lengths == after
        if is_csv:
            fits |= lengths >= after + 1
        candidates = np.flatnonzero(fits & ~claimed)
        if not len(candidates):
            continue
        head = gather(starts[candidates], len(prefix))
        candidates = candidates[(head == np.frombuffer(prefix, dtype=np.uint8)).all(axis=1)]
        if not len(candidates):
            continue
        if is_csv:
            # After the hash: the end of the line or a comma and the label.
            at_end = lengths[candidates] == after
            comma = buf[np.minimum(starts[candidates] + after, len(buf) - 1)] == ord(",")
            candidates = candidates[at_end | comma]
        hexes = gather(starts[candidates] + len(prefix), hex_length)
        good = _all_hex(hexes)
        candidates, hexes = candidates[good], hexes[good]
        labels = np.zeros(len(candidates), dtype=np.int64)  # the default label
        if is_csv and len(candidates):
            ok, labels = _labels(gather, starts[candidates] + after + 1, ends[candidates], builder)
            candidates, hexes, labels = candidates[ok], hexes[ok], labels[ok]
        if not len(candidates):
            continue
        digests = np.frombuffer(bytes.fromhex(hexes.tobytes().decode("ascii")), dtype=np.uint8)
        builder.add(hash_type, bytes_to_codes(digests.reshape(len(candidates), hex_length // 2)), labels)
        claimed[candidates] = True
    return claimed


def _all_hex(chars: np.ndarray) -> np.ndarray:
    """Per row of (n, k) bytes: whether every byte is a hex digit (either case)."""
    digit = (chars - np.uint8(48)) < 10
    letter = ((chars | np.uint8(0x20)) - np.uint8(97)) < 6
    bad = ~(digit | letter)
    return ~bad.any(axis=1)


# Row r: 0xFF over the first r bytes of a 32-byte label window, 0 after.
_LABEL_MASKS = np.array([[0xFF if i < r else 0 for i in range(_MAX_FAST_LABEL)] for r in range(_MAX_FAST_LABEL + 1)], dtype=np.uint8)
_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93, 0xA0761D6478BD642F)


def _labels(gather: Gather, label_starts: np.ndarray, label_ends: np.ndarray, builder: _Builder) -> tuple[np.ndarray, np.ndarray]:
    """(taken, label id) per line for CSV labels; an empty label is the default one.

    Labels up to 32 bytes are grouped by a 64-bit fingerprint of their bytes; each line's
    label is then checked byte for byte against its group's first, and the group's label
    against the allowed characters, so neither a collision nor an unusual label is
    guessed at: such lines go to the line parser.
    """
    lengths = np.maximum(label_ends - label_starts, 0)
    taken = lengths <= _MAX_FAST_LABEL
    window = gather(label_starts, _MAX_FAST_LABEL) & _LABEL_MASKS[np.minimum(lengths, _MAX_FAST_LABEL)]
    words = window.view(np.uint64)  # (n, 4)
    ids = np.zeros(len(lengths), dtype=np.int64)
    named = np.flatnonzero(taken & (lengths > 0))
    if not len(named):
        return taken, ids
    words = words[named]
    fingerprint = lengths[named].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for k, mult in enumerate(_MIX):
        fingerprint ^= words[:, k] * np.uint64(mult)
        fingerprint = (fingerprint << np.uint64(29)) | (fingerprint >> np.uint64(35))
    _, first, inverse = np.unique(fingerprint, return_index=True, return_inverse=True)
    same = (words == words[first][inverse]).all(axis=1)
    label_of = np.full(len(first), -1, dtype=np.int64)
    for group, row in enumerate(first):
        raw = window[named[row], : lengths[named[row]]].tobytes()
        if _LABEL_BYTES.issuperset(raw):
            label_of[group] = builder.label(raw.decode("ascii"))
    ids[named] = label_of[inverse]
    taken[named[~same | (ids[named] < 0)]] = False
    return taken, ids


__all__ = [
    "HashColumns",
    "TypedHashes",
    "file_digest",
    "file_signature",
    "parse_hash_columns",
    "read_hash_columns",
]
