"""YAML loading that remembers line numbers, so configuration errors can point at them.

`parse_yaml` composes the document (keeping every node's position), records the line of
each key and list item under its path, then builds plain Python objects with PyYAML's safe
constructor. `validate` runs a pydantic model over the data and turns every failure into
one line such as::

    policy.yaml:14: rules[0].actions[1]: unknown action 'bann' (expected one of quarantine, redact, ban, notify)
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

YamlPath = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigError(Exception):
    """Invalid configuration; `messages` holds one "file:line: what is wrong" per problem."""

    def __init__(self, messages: str | Iterable[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(self.messages)


class LocatedValueError(ValueError):
    """A validator's error about a part of its value, e.g. the second of two duplicate items.

    Pydantic reports a validator's error at the validated field; `subpath` (relative to
    that field) lets the message point at the offending item's own line.
    """

    def __init__(self, message: str, subpath: YamlPath) -> None:
        super().__init__(message)
        self.subpath = subpath


@dataclass(frozen=True)
class LineMap:
    """Line numbers (1-based) of the keys and list items of a YAML document, by path.

    `prefix` makes a view of a sub-document: paths given to it are relative to the prefix,
    and messages still name the full path (`policy.rules[0]` for an inline policy).
    """

    lines: Mapping[YamlPath, int]
    prefix: YamlPath = ()

    def line_of(self, path: YamlPath) -> int:
        """The line of `path`, or of its nearest ancestor that has one (1 if none does)."""
        full = self.prefix + tuple(path)
        for end in range(len(full), -1, -1):
            line = self.lines.get(full[:end])
            if line is not None:
                return line
        return 1

    def sub(self, *keys: str | int) -> LineMap:
        return LineMap(self.lines, self.prefix + keys)


@dataclass(frozen=True)
class YamlDocument:
    source: str  # the file name used in messages
    data: Any  # plain Python objects: dict, list, str, int, float, bool, None
    lines: LineMap


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document safely, keeping the line of every key and list item."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(source, None, LineMap({(): 1}))
        problems = list(_duplicate_keys(node, source))
        if problems:
            raise ConfigError(problems)
        data = loader.construct_document(node)
        lines: dict[YamlPath, int] = {(): node.start_mark.line + 1}
        # construct_document has flattened merge keys (<<) in place: the walk sees merged entries.
        _record_lines(loader, node, (), lines, set())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = "; ".join(part for part in (e.context, e.problem) if part)
        raise ConfigError(f"{source}:{line}: YAML syntax error: {what}") from None
    except yaml.YAMLError as e:  # not positioned (e.g. a reader error on control characters)
        raise ConfigError(f"{source}: YAML syntax error: {e}") from None
    finally:
        loader.dispose()
    return YamlDocument(source, data, LineMap(lines))


def load_yaml(path: str | Path) -> YamlDocument:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read: {e}") from None
    return parse_yaml(text, source)


def _record_lines(
    loader: yaml.SafeLoader, node: yaml.Node, path: YamlPath, lines: dict[YamlPath, int], seen: set[int]
) -> None:
    # An aliased node is walked once, under its anchor; elsewhere its entries get the alias's line.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int):
                continue
            child = (*path, key)
            # A key's line, not its value's: for a nested mapping that is the "key:" line.
            # Merged entries come first, so a key given locally ends with the local line.
            lines[child] = key_node.start_mark.line + 1
            _record_lines(loader, value_node, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(loader, item, (*path, index), lines, seen)


def _duplicate_keys(node: yaml.Node, source: str, seen_nodes: set[int] | None = None) -> Iterable[str]:
    """PyYAML silently keeps the last of two equal keys; a config typo deserves an error."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # aliases can make the graph recursive
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                line = key_node.start_mark.line + 1
                earlier = first.setdefault((key_node.tag, key_node.value), line)
                if earlier != line:
                    yield f"{source}:{line}: duplicate key {key_node.value!r} (first given on line {earlier})"
            yield from _duplicate_keys(value_node, source, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item, source, seen_nodes)


def format_path(path: YamlPath) -> str:
    """`("rules", 0, "actions", 1)` -> `rules[0].actions[1]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def located(source: str, lines: LineMap, path: YamlPath, message: str) -> str:
    """One error line: `file:line: full.path: message`."""
    full = format_path(lines.prefix + tuple(path))
    return f"{source}:{lines.line_of(path)}: {full + ': ' if full else ''}{message}"


def validate(
    model: type[M],
    data: Any,
    *,
    source: str,
    lines: LineMap | None = None,
    context: dict[str, Any] | None = None,
) -> M:
    """`model.model_validate(data)`, raising ConfigError with file:line messages."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        raise ConfigError(validation_messages(e, source, lines or LineMap({}), model)) from None


def validation_messages(
    error: ValidationError, source: str, lines: LineMap, model: type[BaseModel] | None = None
) -> list[str]:
    """Turn pydantic's errors into `file:line: path: message` lines, in file order."""
    located_errors: list[tuple[int, str]] = []
    for entry in error.errors():
        # Dict keys are validated under a "[key]" marker; the key's own line is the one to show.
        loc: YamlPath = tuple(part for part in entry["loc"] if part != "[key]")
        path, message = _describe(entry, loc, model)
        located_errors.append((lines.line_of(path), located(source, lines, path, message)))
    located_errors.sort(key=lambda item: item[0])
    return [message for _, message in located_errors]


def _describe(entry: Any, loc: YamlPath, model: type[BaseModel] | None) -> tuple[YamlPath, str]:
    kind = entry["type"]
    given = entry.get("input")
    if kind == "missing" and loc:
        return loc[:-1], f"missing required key {loc[-1]!r}"
    if kind == "extra_forbidden" and loc:
        return loc, _unknown_key(str(loc[-1]), _known_keys(model, loc[:-1]))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping, got {_yaml_type(given)}"
    if kind in ("list_type", "tuple_type"):
        return loc, f"expected a list, got {_yaml_type(given)}"
    if kind in ("too_short", "string_too_short") and entry.get("ctx", {}).get("min_length") == 1:
        return loc, "must not be empty"
    if kind == "value_error":
        cause = entry.get("ctx", {}).get("error")
        if isinstance(cause, LocatedValueError):
            return loc + cause.subpath, str(cause)
        if cause is not None:
            return loc, str(cause)
    message = entry["msg"]
    secret = bool(loc) and str(loc[-1]).endswith(("token", "password", "secret"))
    if not secret and (isinstance(given, str | int | float | bool) or given is None):
        message += f" (got {given!r})"
    return loc, message


def _unknown_key(key: str, known: list[str] | None) -> str:
    if not known:
        return f"unknown key {key!r}"
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (expected one of {', '.join(known)})"


def _known_keys(model: type[BaseModel] | None, loc: YamlPath) -> list[str] | None:
    """The field names of the model found at `loc` under `model`, if it can be worked out."""
    tp: Any = model
    for part in loc:
        tp = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) in (tuple, list, Sequence):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (dict, Mapping):
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return None


def _strip(tp: Any) -> Any:
    """Annotated[X, ...] -> X; X | None -> X."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]
            continue
        return tp


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    return type(value).__name__
