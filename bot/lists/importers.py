"""Reading hash lists in the formats they are shared in, and writing modbot's own.

Formats (`IMPORT_FORMATS`):

- `modbot`: modbot's list files, CSV (`type,hash,label`) or plain (`type:hex`), see
  `bot.lists.format`;
- `plain`: one hex hash per line, of the type given (`hash_type`);
- `te-csv`: python-threatexchange's `threatexchange dataset -P --csv` (columns
  `signal_type,signal_str,...`), and HMA exports in the same columns;
- `te-lines`: `threatexchange dataset -S` lines, `<signal_type> <hash> [...]`;
- `te-json`: ThreatExchange API results: a JSON document with a `data` list, a JSON list,
  or JSON lines, each item with `type` (HASH_PDQ, HASH_MD5, HASH_VIDEO_MD5, HASH_SHA1,
  HASH_SHA256) and `raw_indicator` or `indicator`; HMA's `{"signal_type", "signal"}` and
  `{"pdq": "<hex>"}` shapes are read too;
- `ncmec`: NCMEC-style CSV whose header names MD5 / SHA1 / SHA256 columns (any case,
  "SHA-1", "MD5 Hash"...), or headerless lines of MD5 (32) or SHA-1 (40) hex digits.

vPDQ (`bot.lists.vpdq`): HMA's `vpdq` signal in te-csv (also exported), te-lines and te-json;
`vpdq-file`: one video's hash file from Meta's `vpdq` tool, or a signal string, as one entry.

Unknown or malformed lines are never dropped silently and never abort an import: each is
counted under its reason, and the first few are kept with their line numbers. Signal
types modbot cannot match (video TMK, text...) are counted as unsupported.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bot.lists.format import CSV_HEADER, CSV_HEADER_DERIVED, HashEntry, _check_hash, _is_csv_header
from bot.lists.columns import HashColumns, TypedHashes, parse_hash_columns
from bot.lists.index import hex_to_codes
from bot.lists.videoindex import VideoEntry
from bot.lists.vpdq import DEFAULT_MAX_FRAMES, MAX_FRAMES_CEILING, leading_json, parse_vpdq, signal_string
from bot.model import HASH_HEX_LENGTH, HASH_TYPES, SIGNATURE_HASH_TYPE, VIDEO_HASH_TYPE

IMPORT_FORMATS = ("modbot", "plain", "te-csv", "te-lines", "te-json", "ncmec", "vpdq-file")
EXPORT_FORMATS = ("modbot", "plain", "te-csv")
# Problems kept with their line number; the rest are only counted.
KEPT_PROBLEMS = 50

# python-threatexchange signal type names and ThreatExchange indicator types -> modbot types.
_SIGNAL_TYPES = {
    "pdq": "pdq",
    "video_md5": "md5",
    "photo_md5": "md5",
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "phash": "phash",
    "hash_pdq": "pdq",
    "hash_md5": "md5",
    "hash_video_md5": "md5",
    "hash_photo_md5": "md5",
    "hash_sha1": "sha1",
    "hash_sha256": "sha256",
    "vpdq": "vpdq",
}
_HEX = re.compile(r"[0-9a-fA-F]+")

Progress = Callable[[int, int], None]  # (units done, units in all)


@dataclass
class ImportResult:
    """What an import read: the entries, and every line it could not take and why."""

    columns: HashColumns
    lines: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # the first KEPT_PROBLEMS
    problem_counts: Counter[str] = field(default_factory=Counter)  # reason -> lines

    @property
    def rejected(self) -> int:
        return sum(self.problem_counts.values())

    def reject(self, line: int, reason: str) -> None:
        self.problem_counts[_reason_kind(reason)] += 1
        if len(self.problems) < KEPT_PROBLEMS:
            self.problems.append((line, reason))


def _reason_kind(reason: str) -> str:
    """The reason without its particulars, to count lines by."""
    return re.sub(r"'[^']*'|\d+", "…", reason)


class _Collector:
    """Entries gathered line by line, kept as hex per type until the end."""

    def __init__(self, result: ImportResult, max_vpdq_frames: int) -> None:
        self.result = result
        self.max_vpdq_frames = max_vpdq_frames
        self.hexes: dict[str, list[str]] = {}
        self.label_ids: dict[str, list[int]] = {}
        self.labels: dict[str, int] = {}
        self.videos: list[VideoEntry] = []

    def add(self, line: int, hash_type: str, value: str, label: str) -> None:
        try:
            checked_type, checked = _check_hash(hash_type, value.strip().lower(), self.max_vpdq_frames)
        except ValueError as e:
            self.result.reject(line, str(e))
            return
        if checked_type == VIDEO_HASH_TYPE:
            self.videos.append(VideoEntry(checked, label))
            self.labels.setdefault(label, len(self.labels))
            return
        self.hexes.setdefault(checked_type, []).append(checked)
        self.label_ids.setdefault(checked_type, []).append(self.labels.setdefault(label, len(self.labels)))

    def finish(self) -> ImportResult:
        by_type = {
            t: TypedHashes(hex_to_codes(h, HASH_HEX_LENGTH[t]), np.array(self.label_ids[t], dtype=np.int32))
            for t, h in self.hexes.items()
        }
        self.result.columns = HashColumns(by_type, tuple(self.labels), videos=tuple(self.videos))
        return self.result


def read_import(
    path: str | os.PathLike[str],
    fmt: str,
    label: str,
    *,
    hash_type: str | None = None,
    progress: Progress | None = None,
    max_vpdq_frames: int = DEFAULT_MAX_FRAMES,
) -> ImportResult:
    """Read a file in format `fmt` (see IMPORT_FORMATS); entries without a label get `label`;
    a vPDQ of more than `max_vpdq_frames` frames (the target list's) is a rejected line."""
    data = Path(path).read_bytes()
    return parse_import(data, fmt, label, hash_type=hash_type, progress=progress, max_vpdq_frames=max_vpdq_frames)


def parse_import(
    data: bytes, fmt: str, label: str, *, hash_type: str | None = None, progress: Progress | None = None,
    max_vpdq_frames: int = DEFAULT_MAX_FRAMES,
) -> ImportResult:
    if fmt not in IMPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(IMPORT_FORMATS)})")
    if fmt == "modbot":
        columns = parse_hash_columns(data, label, progress, max_vpdq_frames)
        result = ImportResult(columns, columns.lines)
        for line, reason in columns.errors:
            result.reject(line, reason)
        return result
    if fmt == "plain" and hash_type not in HASH_TYPES:
        raise ValueError(f"the plain format needs --type ({', '.join(HASH_TYPES)})")
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    result = ImportResult(HashColumns({}, ()))
    collector = _Collector(result, max_vpdq_frames)
    readers = {"plain": _plain, "te-csv": _te_csv, "te-lines": _te_lines, "te-json": _te_json, "ncmec": _ncmec}
    reader = readers.get(fmt, _vpdq_file)
    lines = text.splitlines()
    result.lines = len(lines)
    step = max(1, len(lines) // 100)
    for done, (line_no, item) in enumerate(reader(lines, hash_type or "", result), start=1):
        if item is not None:
            collector.add(line_no, item[0], item[1], item[2] or label)
        if progress is not None and done % step == 0:
            progress(line_no, len(lines))
    if progress is not None:
        progress(len(lines), len(lines))
    return collector.finish()


Item = tuple[int, tuple[str, str, str | None] | None]  # (line, (type, hex, label) or None)


def _meaningful(lines: list[str]) -> Iterator[tuple[int, str]]:
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield n, line


def _plain(lines: list[str], hash_type: str, result: ImportResult) -> Iterator[Item]:
    for n, line in _meaningful(lines):
        yield n, (hash_type, line, None)


def _signal_type(name: str, line: int, result: ImportResult) -> str | None:
    found = _SIGNAL_TYPES.get(name.strip().lower())
    if found is None:
        result.reject(line, f"unsupported signal type {name.strip()!r}")
    return found


def _te_csv(lines: list[str], _: str, result: ImportResult) -> Iterator[Item]:
    header: list[str] | None = None
    for n, row in _csv_rows(lines, result):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            if "signal_type" not in header or not {"signal_str", "signal"} & set(header):
                result.reject(n, "expected a header with signal_type and signal_str columns")
                header = ["signal_type", "signal_str"]
                yield from _te_csv_row(n, row, header, result)
            continue
        yield from _te_csv_row(n, row, header, result)


def _csv_rows(lines: list[str], result: ImportResult) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) per line; a line csv refuses (a field over its 128 kB limit: a vPDQ
    signal of more than ~1,700 frames) is rejected, not the whole import."""
    for n, line in enumerate(lines, start=1):
        try:
            yield n, next(csv.reader([line]), [])
        except csv.Error as e:
            result.reject(n, f"malformed CSV: {e}")


def _te_csv_row(n: int, row: list[str], header: list[str], result: ImportResult) -> Iterator[Item]:
    if len(row) < 2:
        result.reject(n, f"expected {len(header)} columns, got {len(row)}")
        return
    values = dict(zip(header, row))
    hash_type = _signal_type(values.get("signal_type", ""), n, result)
    value = values.get("signal_str", values.get("signal", ""))
    if hash_type is not None:
        yield n, (hash_type, value, None)


def _te_lines(lines: list[str], _: str, result: ImportResult) -> Iterator[Item]:
    for n, line in _meaningful(lines):
        parts = line.split()
        if len(parts) < 2:
            result.reject(n, "expected '<signal_type> <hash>'")
            continue
        hash_type = _signal_type(parts[0], n, result)
        if hash_type == VIDEO_HASH_TYPE:  # the signal string is JSON, spaces and all
            try:
                yield n, (hash_type, leading_json(line[len(parts[0]) :]), None)
            except ValueError as e:
                result.reject(n, str(e))
        elif hash_type is not None:
            yield n, (hash_type, parts[1], None)


def _vpdq_file(lines: list[str], _: str, result: ImportResult) -> Iterator[Item]:
    """One video's vPDQ: the vpdq tool's hash file, or a signal string; one entry."""
    yield 1, (VIDEO_HASH_TYPE, "\n".join(lines), None)


def _te_json(lines: list[str], _: str, result: ImportResult) -> Iterator[Item]:
    text = "\n".join(lines).strip()
    items: Iterable[tuple[int, object]]
    try:
        doc = json.loads(text) if text else []
    except json.JSONDecodeError:
        items = _json_lines(lines, result)  # JSON lines
    else:
        if isinstance(doc, dict) and isinstance(doc.get("data"), list):
            doc = doc["data"]
        items = ((i + 1, x) for i, x in enumerate(doc)) if isinstance(doc, list) else [(1, doc)]
    for n, item in items:
        found = _json_item(item)
        if isinstance(found, str):
            result.reject(n, found)
            continue
        hash_type = _signal_type(found[0], n, result)
        if hash_type is not None:
            yield n, (hash_type, found[1], found[2])


def _json_lines(lines: list[str], result: ImportResult) -> Iterator[tuple[int, object]]:
    for n, line in _meaningful(lines):
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            result.reject(n, f"not JSON: {e.msg}")


def _json_item(item: object) -> tuple[str, str, str | None] | str:
    """(signal type, hash, label) of one JSON item, or why there is none."""
    if not isinstance(item, dict):
        return "expected a JSON object"
    if "type" in item and ("raw_indicator" in item or "indicator" in item):
        indicator = item.get("raw_indicator", item.get("indicator"))
        if isinstance(indicator, dict):  # threat_descriptors nest the indicator
            indicator = indicator.get("indicator")
        if not isinstance(indicator, str):
            return "indicator is not a string"
        return str(item["type"]), indicator, None
    if "signal_type" in item and isinstance(item.get("signal", item.get("signal_str")), str):
        return str(item["signal_type"]), item.get("signal", item.get("signal_str")), None  # type: ignore[return-value]
    known = [k for k in item if isinstance(k, str) and k.lower() in _SIGNAL_TYPES and isinstance(item[k], str)]
    if len(known) == 1:
        return known[0], item[known[0]], None
    return "no signal type and hash found in the object"


_NCMEC_COLUMNS = {"md5": "md5", "sha1": "sha1", "sha-1": "sha1", "sha256": "sha256", "sha-256": "sha256"}


def _ncmec_column(name: str) -> str | None:
    words = re.sub(r"[^a-z0-9-]+", " ", name.lower()).split()
    found = {_NCMEC_COLUMNS[w] for w in words if w in _NCMEC_COLUMNS}
    return found.pop() if len(found) == 1 else None


def _ncmec(lines: list[str], _: str, result: ImportResult) -> Iterator[Item]:
    columns: dict[int, str] | None = None
    for n, line in _meaningful(lines):
        cells = next(csv.reader([line], delimiter="\t" if "\t" in line else ","))
        if columns is None:
            header = {i: t for i, c in enumerate(cells) if (t := _ncmec_column(c))}
            if header:
                columns = header
                continue
            columns = {}  # no header: each cell's length tells its type
        if columns:
            took = False
            for i, hash_type in columns.items():
                if i < len(cells) and cells[i].strip():
                    took = True
                    yield n, (hash_type, cells[i], None)
            if not took:
                result.reject(n, "no hash in the MD5/SHA-1/SHA-256 columns")
            continue
        for cell in (c.strip() for c in cells if c.strip()):
            by_length = {32: "md5", 40: "sha1", 64: "sha256"}.get(len(cell))
            if by_length is None or not _HEX.fullmatch(cell):
                result.reject(n, f"not an MD5, SHA-1 or SHA-256 hex digest: {cell[:20]!r}")
            else:
                yield n, (by_length, cell, None)


# --- writing lists -------------------------------------------------------------------------------


def format_entries(columns: HashColumns, fmt: str = "modbot", *, header: bool = True) -> Iterator[str]:
    """Lines (with their newline) of `columns` in an export format."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(EXPORT_FORMATS)})")
    if header and fmt == "modbot":
        derived = any(t.derived is not None for t in columns.by_type.values())
        yield ",".join(CSV_HEADER_DERIVED if derived else CSV_HEADER) + "\n"
    if header and fmt == "te-csv":
        yield "signal_type,signal_str,collab,category,tags\n"
    te_names = {"md5": "video_md5"}
    for entry in (e for e in columns.entries() if fmt != "te-csv" or e.type != SIGNATURE_HASH_TYPE):  # not a TE signal
        if fmt == "plain":
            yield f"{entry.type}:{entry.hash}\n"
        elif fmt == "te-csv" and entry.type == VIDEO_HASH_TYPE:
            signal = _csv_cell(signal_string(parse_vpdq(entry.hash, MAX_FRAMES_CEILING)))  # checked when read
            yield f"{entry.type},{signal},,,{_csv_cell(entry.label)}\n"
        elif fmt == "te-csv":
            yield f"{te_names.get(entry.type, entry.type)},{entry.hash},,,{_csv_cell(entry.label)}\n"
        elif entry.derived:  # what the hash is of, when not the listed image itself
            yield f"{entry.type},{entry.hash},{_csv_cell(entry.label)},{_csv_cell(entry.derived)}\n"
        else:
            yield f"{entry.type},{entry.hash},{_csv_cell(entry.label)}\n"


def _csv_cell(value: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([value])
    return out.getvalue()


def write_list_file(
    path: str | os.PathLike[str],
    existing: HashColumns | None,
    added: HashColumns,
    *,
    default_label: str,
    replace: bool = False,
) -> int:
    """Add `added` to the list file at `path` (or, with `replace`, make it the whole list).

    The file is replaced atomically — written beside it, then renamed over it — so a bot
    watching it never reads it half written. Returns the entries written. A plain-form
    file (`type:hex`) cannot record labels: given entries labelled otherwise than
    `default_label`, it is rewritten as CSV, its own entries keeping the default label.
    """
    path = Path(path)
    old_text = ""
    body: Iterable[str]
    if replace or existing is None or not path.exists():
        body = format_entries(added, "modbot")
    else:
        old_text = path.read_text(encoding="utf-8", errors="replace")
        first = next((ln.strip() for ln in old_text.splitlines() if ln.strip() and not ln.strip().startswith("#")), None)
        if first is None or _is_csv_header(first):
            body = format_entries(added, "modbot", header=first is None)
        elif set(added.labels) <= {default_label}:
            body = format_entries(added, "plain")
        else:
            old_text = ""
            body = _chain(format_entries(existing, "modbot"), format_entries(added, "modbot", header=False))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if old_text:
                f.write(old_text if old_text.endswith("\n") else old_text + "\n")
            f.writelines(body)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(added)


def _chain(*parts: Iterable[str]) -> Iterator[str]:
    for part in parts:
        yield from part


__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "HashEntry",
    "ImportResult",
    "format_entries",
    "parse_import",
    "read_import",
    "write_list_file",
]
