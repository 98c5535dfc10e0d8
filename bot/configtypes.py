"""The building blocks of modbot's config models: the strict section base, URL, server-name,
room and path types, and the validation context that resolves relative paths.

Kept apart from `bot.configmodel` so that its sections stay readable and any module that
defines a config section of its own can build on the same types.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

_SERVER_NAME = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$")


def context_of(info: ValidationInfo) -> dict[str, Any]:
    return info.context or {}


def resolve_path(path: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's directory (when loaded from a file)."""
    path = path.expanduser()
    base = context_of(info).get("base_dir")
    return base / path if base is not None and not path.is_absolute() else path


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def server_name(value: str) -> str:
    if not _SERVER_NAME.match(value):
        raise ValueError(f"expected a server name like example.org, got {value!r}")
    return value


def _room_ref(value: str) -> str:
    # Room IDs of room version 12 have no server part (!opaque); aliases always do.
    room_id = value[:1] == "!" and len(value) > 1 and not any(c.isspace() for c in value)
    alias = value[:1] == "#" and ":" in value[2:]
    if not (room_id or alias):
        raise ValueError(f"expected a room ID (!id or !id:server) or alias (#alias:server), got {value!r}")
    return value


BaseUrl = Annotated[str, AfterValidator(_http_url)]
RoomRef = Annotated[str, AfterValidator(_room_ref)]
ResolvedPath = Annotated[Path, AfterValidator(resolve_path)]


class Section(BaseModel):
    """A config section: frozen, and unknown keys are an error (a typo must not pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
