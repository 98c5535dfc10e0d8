"""The hash list file format: reading, validating and appending.

Two forms, told apart by the first line that is neither blank nor a `#` comment:

    type,hash,label                 # CSV: this header, then one row per hash;
    sha256,9f86d0...,csam           #   label optional (empty -> the list's default)
    pdq,f8f8f0cee0f4...,            #
                                    #
    sha256:9f86d0...                # plain: `type:hex` per line, all with the default label

Types are sha256, md5, sha1, pdq and phash; hex is case-insensitive and stored lower-case.
A `vpdq` row holds a whole video's vPDQ instead of a hex digest (`vpdq,<frames>,label`,
`<frames>` as `bot.lists.vpdq.canonical` writes them), checked and stored in that form.
A `lowfreq` row holds a smooth image's low-frequency signature (`lowfreq,<72 hex>,label`,
bot/hashing/smoothsig.py: 36 signed bytes, the largest +-127), as `hashes add-image` writes it.
A CSV row may have a fourth column, `derived`: what the hash is of when it is not the listed
image itself (`pdq,<hex>,label,crop to 95%, top left`, `...,brightened x1.3`), as `hashes
add-image` and `hash add` write the crops and brightened copies they list, naming the image
they came from by its SHA-256 (`crop to 95%, top left; of sha256:<hex>`, at most 160
characters): removing that image removes them too (`remove_entries(images=)`, the chat
command `hash remove`). Such a row matches like any
other within the list's threshold; the rules that lean on an image's own hash (a pHash match
confirmed by the label's PDQ, a smooth image's most reliable bits) skip it
(bot/classify/hashlist.py, bot/classify/reliablematch.py). A plain list cannot mark them.
A bad line never aborts loading and is never dropped silently: it is returned in
`ParsedList.errors` with its 1-based line number (0 for problems with the file as a whole).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, cast

from bot.hashing.smoothsig import parse as parse_signature
from bot.lists.vpdq import DEFAULT_MAX_FRAMES, MAX_FRAMES_CEILING, canonical, parse_vpdq
from bot.model import HASH_HEX_LENGTH, HASH_TYPES, SIGNATURE_HASH_TYPE, VIDEO_HASH_TYPE, HashType

CSV_HEADER = ("type", "hash", "label")
CSV_HEADER_DERIVED = (*CSV_HEADER, "derived")
# Room for what a row is of and the SHA-256 of the image it came from (derived_of).
MAX_DERIVED_LENGTH = 160
# How a derived row names the image it came from: `crop to 95%, top left; of sha256:<hex>`.
DERIVED_OF = "; of sha256:"
_HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class HashEntry:
    type: HashType
    hash: str  # lower-case hex
    label: str
    # What the hash is of when not the listed image itself ("crop to 95%, top left"); "" if it is.
    derived: str = ""


@dataclass(frozen=True)
class ParsedList:
    entries: tuple[HashEntry, ...]
    errors: tuple[tuple[int, str], ...] = ()  # (line number, reason)


def parse_hash_list(text: str, default_label: str, max_vpdq_frames: int = DEFAULT_MAX_FRAMES) -> ParsedList:
    """Parse a list file's text; see the module docstring for the format. A vPDQ entry of
    more than `max_vpdq_frames` frames is a rejected line."""
    entries: list[HashEntry] = []
    errors: list[tuple[int, str]] = []
    is_csv: bool | None = None  # decided by the first meaningful line
    for line_no, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if is_csv is None:
            is_csv = _is_csv_header(line)
            if is_csv:
                continue
        try:
            entry = (_csv_row if is_csv else _plain_line)(line, default_label, max_vpdq_frames)
        except ValueError as e:
            errors.append((line_no, str(e)))
        else:
            entries.append(entry)
    return ParsedList(entries=tuple(entries), errors=tuple(errors))


def read_hash_list(path: str | os.PathLike[str], default_label: str) -> ParsedList:
    """Read and parse a list file; an unreadable file is an empty list with one error."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ParsedList(entries=(), errors=((0, f"file not found: {path}"),))
    except OSError as e:
        return ParsedList(entries=(), errors=((0, f"cannot read {path}: {e.strerror or e}"),))
    return parse_hash_list(text, default_label)


def append_entries(
    path: str | os.PathLike[str],
    entries: Iterable[HashEntry],
    *,
    default_label: str | None = None,
    max_vpdq_frames: int = DEFAULT_MAX_FRAMES,
) -> int:
    """Append the entries whose (type, hash) the file does not hold yet; return how many.

    A missing file is created as CSV with its header. Rows are written in the file's own
    form. A plain-form file cannot record labels, so its entries take the list's default
    label: pass `default_label` to refuse (ValueError, nothing written) entries that would
    lose theirs. A vPDQ entry of more than `max_vpdq_frames` frames is refused (ValueError).
    A derived entry (a crop's hash) is written with its `derived` column in a CSV file, and
    as a plain row in a plain file, where it counts as an image's own hash.
    """
    path = Path(path)
    existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    present = {(e.type, e.hash) for e in parse_hash_list(existing, "", MAX_FRAMES_CEILING).entries}
    new: list[HashEntry] = []
    for entry in entries:
        key = _check_hash(entry.type.lower(), entry.hash.lower(), max_vpdq_frames)
        if any(c in entry.label for c in "\r\n"):
            raise ValueError(f"label {entry.label!r} spans lines")
        _check_derived(entry.derived)
        if key not in present:
            present.add(key)
            new.append(HashEntry(type=key[0], hash=key[1], label=entry.label, derived=entry.derived))
    if not new:
        return 0

    is_csv = _detect_csv(existing)
    if not is_csv and default_label is not None:
        lost = sorted({e.label for e in new if e.label != default_label})
        if lost:
            raise ValueError(f"{path} is a plain `type:hex` list and cannot record labels {lost}")
    out = io.StringIO()
    if existing and not existing.endswith("\n"):
        out.write("\n")
    if is_csv:
        writer = csv.writer(out, lineterminator="\n")
        if _first_meaningful_line(existing) is None:
            writer.writerow(CSV_HEADER_DERIVED if any(e.derived for e in new) else CSV_HEADER)
        writer.writerows((e.type, e.hash, e.label, e.derived) if e.derived else (e.type, e.hash, e.label) for e in new)
    else:
        out.writelines(f"{e.type}:{e.hash}\n" for e in new)
    with path.open("a", encoding="utf-8") as f:
        f.write(out.getvalue())
    return len(new)


def derived_of(what: str, sha256: str) -> str:
    """The `derived` column of a row derived from the image whose SHA-256 is `sha256`."""
    return f"{what}{DERIVED_OF}{sha256.lower()}"


def split_derived(derived: str) -> tuple[str, str | None]:
    """(what a derived row is of, the SHA-256 of the image it names (lower-case hex) or None)."""
    what, of, sha = derived.rpartition(DERIVED_OF)
    sha = sha.strip().lower()
    return (what, sha) if of and what and len(sha) == 64 and _HEX_DIGITS.issuperset(sha) else (derived, None)


def source_of(derived: str) -> str | None:
    """The SHA-256 a derived row names as its image, None if it names none."""
    return split_derived(derived)[1]


def describe_entry(what: str, image: str | None) -> str:
    """How a notice or `hashes check` says what a derived row is of (split_derived's parts)."""
    return f"of the image's {what}" + (f" (listed image sha256:{image})" if image else "")


def remove_entries(path: str | os.PathLike[str], hashes: Iterable[str], *, images: Iterable[str] = ()) -> int:
    """Drop the entries whose hash is in `hashes`, and the derived rows that name one of
    `images` (SHA-256s) as their image; return how many. Comments, the header and lines that
    don't parse are kept as they are. The file is replaced atomically, so a reader (the
    running bot) sees the old list or the new one, never half of it."""
    path = Path(path)
    if not path.exists():
        return 0
    wanted = {h.lower() for h in hashes}
    sources = {i.lower() for i in images}
    text = path.read_text(encoding="utf-8", errors="replace")
    is_csv = _detect_csv(text)
    kept: list[str] = []
    removed = 0
    for raw in text.splitlines(keepends=True):
        line = raw.strip()
        if line and not line.startswith("#") and not (is_csv and _is_csv_header(line)):
            try:
                entry = (_csv_row if is_csv else _plain_line)(line, "", MAX_FRAMES_CEILING)
            except ValueError:
                entry = None
            if entry is not None and (entry.hash in wanted or (entry.derived and source_of(entry.derived) in sources)):
                removed += 1
                continue
        kept.append(raw)
    if removed:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)
    return removed


def _first_meaningful_line(text: str) -> str | None:
    for raw in text.removeprefix("\ufeff").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            return line
    return None


def _detect_csv(text: str) -> bool:
    first = _first_meaningful_line(text)
    return first is None or _is_csv_header(first)


def _is_csv_header(line: str) -> bool:
    columns = tuple(c.strip().lower() for c in line.split(","))
    return columns in (CSV_HEADER_DERIVED, CSV_HEADER, CSV_HEADER[:2])


def _csv_row(line: str, default_label: str, max_vpdq_frames: int = DEFAULT_MAX_FRAMES) -> HashEntry:
    # Unquoted (nearly every line): a plain split, which is what the reader would do, and has
    # no field limit (a vPDQ row of an hour's frames is ~270 kB; csv's limit is 128 kB).
    try:
        row = line.split(",") if '"' not in line else next(csv.reader([line]))
    except csv.Error as e:
        raise ValueError(f"malformed CSV: {e}") from None
    if len(row) not in (2, 3, 4):
        raise ValueError(f"expected 2 to 4 columns (type,hash,label,derived), got {len(row)}")
    hash_type, hex_hash = _check_hash(row[0].strip().lower(), row[1].strip().lower(), max_vpdq_frames)
    label = row[2].strip() if len(row) >= 3 else ""
    derived = row[3].strip() if len(row) == 4 else ""
    _check_derived(derived)
    return HashEntry(type=hash_type, hash=hex_hash, label=label or default_label, derived=derived)


def _check_derived(derived: str) -> None:
    if len(derived) > MAX_DERIVED_LENGTH or any(c in derived for c in "\r\n"):
        raise ValueError(f"a derived column is one line of at most {MAX_DERIVED_LENGTH} characters")


def _plain_line(line: str, default_label: str, max_vpdq_frames: int = DEFAULT_MAX_FRAMES) -> HashEntry:
    hash_type, colon, hex_hash = line.partition(":")
    if not colon or "," in line or any(c.isspace() for c in line):
        hint = " (a CSV list needs the header 'type,hash,label')" if "," in line else ""
        raise ValueError(f"expected 'type:hex'{hint}")
    hash_type, hex_hash = _check_hash(hash_type.lower(), hex_hash.lower(), max_vpdq_frames)
    return HashEntry(type=hash_type, hash=hex_hash, label=default_label)


def _check_hash(hash_type: str, hex_hash: str, max_vpdq_frames: int = DEFAULT_MAX_FRAMES) -> tuple[HashType, str]:
    """Validate a lower-cased (type, hex) pair; raise ValueError with the reason. A vPDQ
    (type `vpdq`, at most `max_vpdq_frames` frames) comes back in its canonical form."""
    if hash_type == VIDEO_HASH_TYPE:
        return VIDEO_HASH_TYPE, canonical(parse_vpdq(hex_hash, max_vpdq_frames))
    if hash_type == SIGNATURE_HASH_TYPE:
        parse_signature(hex_hash)
        return SIGNATURE_HASH_TYPE, hex_hash
    if hash_type not in HASH_TYPES:
        raise ValueError(
            f"unknown hash type {hash_type!r} (expected {', '.join(HASH_TYPES)}, {VIDEO_HASH_TYPE} or {SIGNATURE_HASH_TYPE})"
        )
    expected = HASH_HEX_LENGTH[hash_type]
    if len(hex_hash) != expected:
        raise ValueError(f"{hash_type} hash must be {expected} hex digits, got {len(hex_hash)}")
    if not _HEX_DIGITS.issuperset(hex_hash):
        raise ValueError(f"{hash_type} hash is not hexadecimal")
    return cast(HashType, hash_type), hex_hash
