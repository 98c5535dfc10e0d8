"""modbot's configuration: one typed, validated model loaded from YAML.

`load_config` reports every problem at once as `file:line: path: what is wrong`, resolves
relative paths against the config file's directory and loads the policy (inline or from
`policy_file`). `EXAMPLE_CONFIG` is the documented example, kept identical to
config.example.yaml at the repository root (a unit test checks it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.policy import DEFAULT_POLICY, Policy, load_policy_file
from bot.yamlload import ConfigError, LocatedValueError, load_yaml, located, validate

__all__ = [
    "EXAMPLE_CONFIG",
    "AppserviceConfig",
    "CircuitBreakerConfig",
    "ClassifierConfig",
    "CommandsConfig",
    "IncidentsConfig",
    "RetentionConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "HashListConfig",
    "HealthConfig",
    "HashlistSettings",
    "HomeserverConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ProcessingConfig",
    "RoomsConfig",
    "ThresholdsConfig",
    "default_config_text",
    "load_config",
]

_SERVER_NAME = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$")


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context or {}


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's directory (when loaded from a file)."""
    path = path.expanduser()
    base = _context(info).get("base_dir")
    return base / path if base is not None and not path.is_absolute() else path


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _server_name(value: str) -> str:
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
ResolvedPath = Annotated[Path, AfterValidator(_resolve)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HomeserverConfig(_Section):
    url: BaseUrl  # client-server API base URL
    domain: Annotated[str, AfterValidator(_server_name)]  # server_name, the part after ":" in user IDs


class AppserviceConfig(_Section):
    id: str = Field(default="modbot", min_length=1)
    bind_address: str = "127.0.0.1"
    port: int = Field(default=29330, ge=1, le=65535)
    public_url: BaseUrl  # defaults to http://<bind_address>:<port>
    # validate_default: a missing token gets the same advice as a placeholder.
    as_token: str = Field(default="", validate_default=True, repr=False)
    hs_token: str = Field(default="", validate_default=True, repr=False)
    bot_localpart: str = Field(default="modbot", min_length=1)
    bot_displayname: str = "modbot"
    # Largest transaction body accepted. Synapse sends up to 100 events of up to 64 KiB (as
    # a PDU) each, and a state event in client format repeats the previous content in
    # unsigned.prev_content: 16 MiB holds 100 of those with margin. A refused transaction
    # is retried by Synapse for ever with nothing sent after it, so this must stay above
    # anything Synapse can send.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024)
    # Deepest JSON nesting accepted in a transaction. Synapse refuses events nested more
    # than 127 levels (serde_json's limit in its Rust event class); the transaction adds 2.
    # At most 900, so that parsing stays below Python's recursion limit.
    max_json_depth: int = Field(default=256, ge=130, le=900)

    @model_validator(mode="before")
    @classmethod
    def _default_public_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("public_url") is None:
            host = str(data.get("bind_address", "127.0.0.1"))
            host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            host = f"[{host}]" if ":" in host else host
            data = {**data, "public_url": f"http://{host}:{data.get('port', 29330)}"}
        return data

    @field_validator("as_token", "hs_token")
    @classmethod
    def _not_placeholder(cls, token: str, info: ValidationInfo) -> str:
        # Forbidden default: the example's tokens would let anyone who read it talk to the bot.
        if not token or token.startswith("CHANGE"):
            config = _context(info).get("source", "FILE")
            raise ValueError(
                f"{'not set' if not token else 'still the placeholder ' + repr(token)}; "
                f"run `modbot generate-registration -c {config}` to generate tokens"
            )
        return token


class DatabaseConfig(_Section):
    # SQLAlchemy URL; a relative SQLite path is resolved against the config's directory.
    url: str = "sqlite+aiosqlite:///modbot.db"

    @field_validator("url")
    @classmethod
    def _resolve_sqlite_path(cls, url: str, info: ValidationInfo) -> str:
        scheme, sep, rest = url.partition(":///")
        if not url.startswith("sqlite") or not sep:
            if "://" not in url:
                raise ValueError(f"expected an SQLAlchemy URL like sqlite+aiosqlite:///modbot.db, got {url!r}")
            return url
        file, query_sep, query = rest.partition("?")
        if not file or file.startswith((":memory:", "file:")):
            return url
        return f"{scheme}:///{_resolve(Path(file), info)}{query_sep}{query}"


class RoomsConfig(_Section):
    management_room: RoomRef | None = None
    protected: tuple[RoomRef, ...] = ()


class ProcessingConfig(_Section):
    enabled: bool = True  # false: queue events durably, process nothing
    concurrency: int = Field(default=4, ge=1)
    max_media_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    download_timeout: float = Field(default=30, gt=0)  # seconds
    max_image_pixels: int = Field(default=64_000_000, ge=1)
    max_attempts: int = Field(default=5, ge=1)
    action_retries: int = Field(default=4, ge=0)
    # An action the homeserver could not take (no answer, 429, 5xx) stays pending and is
    # retried after action_retry_delay seconds, doubling up to action_retry_max_delay, until
    # it succeeds or a moderator gives it up (`actions giveup`). Survives restarts.
    action_retry_delay: float = Field(default=30, gt=0)
    action_retry_max_delay: float = Field(default=3600, gt=0)
    # Seconds a process's claim on an action holds; a crashed claimer's actions are taken
    # over by another process (or the restarted one) after this. A call gets half of it.
    action_lease: float = Field(default=300, ge=2)
    # Niceness (0-19) of the processes that hash media: on a machine shared with the
    # homeserver, a flood of media slows modbot's scanning, not the homeserver.
    hash_nice: int = Field(default=10, ge=0, le=19)
    # The hashing sandbox (bot/hashing/pool.py): each worker process may grow by
    # hash_memory_mb beyond its idle size and use hash_cpu_seconds of CPU per media; past
    # either it is killed and replaced, and the media is audited "not scanned: resource
    # limit". Checked before decoding (bot/hashing/limits.py): decoded size in bytes, and
    # the scans of a progressive JPEG.
    hash_memory_mb: int = Field(default=256, ge=64)
    hash_cpu_seconds: float = Field(default=10, gt=0)
    max_decoded_bytes: int = Field(default=192 * 1024 * 1024, ge=1)
    max_jpeg_scans: int = Field(default=100, ge=1)
    # Media held because a scan failed (on_failure: fail_closed) is scanned again after
    # rescan_delay seconds, doubling up to rescan_max_delay, until a scan succeeds or
    # rescan_give_up_after seconds have passed (the media then stays held).
    rescan_delay: float = Field(default=60, gt=0)
    rescan_max_delay: float = Field(default=3600, gt=0)
    rescan_give_up_after: float = Field(default=7 * 24 * 3600, gt=0)
    # Bounded work per event: references scanned per event (the rest audited as not
    # scanned), seconds for all of them (the rest are failed scans for on_failure), and how
    # many of one event are downloaded and scanned at once.
    max_refs_per_event: int = Field(default=20, ge=1)
    event_deadline: float = Field(default=60, gt=0)
    fetch_concurrency: int = Field(default=4, ge=1)
    # Media bodies downloaded and held at once across all events (bounds the bytes in memory).
    max_downloads: int = Field(default=4, ge=1)
    # Seconds the homeserver waits for media created but not uploaded yet (MSC2246 timeout_ms).
    pending_upload_wait: float = Field(default=1, ge=0, le=60)
    # Seconds a dead reference (timed out, never uploaded) is answered from memory.
    failure_memory: float = Field(default=300, ge=0)


class HashlistSettings(_Section):
    pdq_min_quality: int = Field(default=50, ge=0, le=100)
    # Seconds between checks of the list files for changes (reloaded without a restart).
    reload_interval: float = Field(default=5.0, gt=0)
    # A reloaded list that loses more than this share of its entries is held until fixed or
    # accepted (`modbot hashes accept NAME`), as is one left empty or mostly rejected lines.
    max_drop_share: float = Field(default=0.25, gt=0, le=1)


class ThresholdsConfig(_Section):
    """Greatest Hamming distance counted as a near match, per perceptual hash type."""

    pdq: int = Field(default=31, ge=0, le=256)
    phash: int = Field(default=8, ge=0, le=64)


class HashListConfig(_Section):
    name: str = Field(min_length=1)
    path: ResolvedPath
    label: str = Field(min_length=1)  # for entries without a label; defaults to the name
    enabled: bool = True
    thresholds: ThresholdsConfig = ThresholdsConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_label(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("label") is None and "name" in data:
            data = {**data, "label": data["name"]}
        return data


def _unique_list_names(lists: tuple[HashListConfig, ...]) -> tuple[HashListConfig, ...]:
    seen: set[str] = set()
    for index, hash_list in enumerate(lists):
        if hash_list.name in seen:
            raise LocatedValueError(f"duplicate hash list name {hash_list.name!r}", (index, "name"))
        seen.add(hash_list.name)
    return lists


class CircuitBreakerConfig(_Section):
    failures: int = Field(default=5, ge=1)  # failures in a row that open the circuit
    reset_after: float = Field(default=60, gt=0)  # seconds before a probe is let through


_CLASSIFIER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ClassifierConfig(_Section):
    """One classifier: a registered type, its own `settings:`, and how to treat its service."""

    # Unique; verdicts, policy rules (match.classifier), the audit and notices use it.
    name: str = Field(min_length=1, max_length=64)
    # A type registered in the `modbot.classifiers` entry point group; default: the name.
    type: str = Field(min_length=1)
    enabled: bool = True
    timeout: float = Field(default=10, gt=0)  # seconds per request
    retries: int = Field(default=2, ge=0, le=10)  # of timeouts, 429 and 5xx
    backoff: float = Field(default=0.5, ge=0)  # first retry delay; doubles, with jitter
    max_backoff: float = Field(default=30, ge=0)  # longest wait between retries
    concurrency: int = Field(default=4, ge=1)  # requests in flight at once
    rate_limit: float | None = Field(default=None, gt=0)  # requests a second; null: no limit
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    # Seconds a verdict is reused for the same file (SHA-256); 0: never. Default: a day
    # for services, none for the hash-list classifier.
    cache_ttl: float | None = Field(default=None, ge=0)
    settings: dict[str, Any] = {}  # validated by the type's own settings model

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") is None and "name" in data:
            data = {**data, "type": data["name"]}
        if isinstance(data, dict) and data.get("settings") is None and "settings" in data:
            data = {**data, "settings": {}}
        return data

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _CLASSIFIER_NAME.match(name):
            raise ValueError(f"use letters, digits, '.', '_' and '-' only, got {name!r}")
        return name


def _unique_classifier_names(classifiers: tuple[ClassifierConfig, ...]) -> tuple[ClassifierConfig, ...]:
    seen: set[str] = set()
    for index, classifier in enumerate(classifiers):
        if classifier.name in seen:
            raise LocatedValueError(f"duplicate classifier name {classifier.name!r}", (index, "name"))
        seen.add(classifier.name)
    return classifiers


class CommandsConfig(_Section):
    prefix: str = Field(default="!mod", min_length=1)  # or mention the bot
    # Members of the management room at or above this power level may run every command.
    management_power: int = 50
    # A user who may not run commands is told so at most once per this many seconds (the
    # bot is exempt from rate limits); every attempt is audited. 0: answer every attempt.
    refusal_reply_interval: float = Field(default=300, ge=0)


class IncidentsConfig(_Section):
    # Incidents older than this many days are purged (the hash chain stays verifiable);
    # null keeps them for ever.
    retention_days: int | None = Field(default=None, ge=1)
    # The key of the incident chain (HMAC-SHA256), kept outside the database; made 0600 on
    # the first start. validate_default: a relative default is resolved like a given path.
    chain_key_file: ResolvedPath = Field(default=Path("modbot-chain.key"), validate_default=True)
    # Append-only file of the chain's head after each incident and each anchor (0600).
    anchor_file: ResolvedPath = Field(default=Path("modbot-anchors.jsonl"), validate_default=True)
    # Seconds between two anchors posted to the management room (a day).
    anchor_interval: float = Field(default=86400, ge=60)


class RetentionConfig(_Section):
    # Days to keep each kind of row (null: for ever); bot/retention.py, README "Retention".
    events_days: int | None = Field(default=90, ge=1)  # finished events only
    verdicts_days: int | None = Field(default=90, ge=1)  # "no match" verdicts
    audit_days: int | None = Field(default=90, ge=1)  # routine audit rows
    evidence_days: int | None = Field(default=None, ge=1)  # matches, decisions, actions...
    interval: float = Field(default=3600, gt=0)  # seconds between runs, monotonic
    max_rows_per_run: int = Field(default=10_000, ge=1)  # per kind of row
    # A wall clock that moved this much more (or less) than the monotonic clock since the
    # last run skips the run: a clock set a year ahead must not purge a year of evidence.
    max_clock_jump: float = Field(default=300, gt=0)


class MetricsConfig(_Section):
    enabled: bool = True
    # With a port, /metrics gets a listener of its own (e.g. on an address a Prometheus
    # server reaches while the appservice port stays on loopback) and leaves the appservice
    # port; null: served on the appservice port. bind_address null: 127.0.0.1.
    bind_address: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    # When set, /metrics requires `Authorization: Bearer <token>`.
    token: str | None = Field(default=None, min_length=16, repr=False)

    @model_validator(mode="after")
    def _address_needs_port(self) -> MetricsConfig:
        if self.bind_address is not None and self.port is None:
            raise LocatedValueError("bind_address needs a port of its own (metrics.port)", ("bind_address",))
        return self


class HealthConfig(_Section):
    """When /health answers 503 (bot/health.py)."""

    # Seconds the homeserver's transactions may keep being refused or failing, with none
    # accepted, before /health fails: the bot is blind.
    stall_after: float = Field(default=60, gt=0)
    # Seconds an error answered to an authenticated transaction (4xx, 5xx) keeps /health failing.
    error_window: float = Field(default=300, gt=0)
    # Seconds the oldest pending event may wait for processing.
    max_pending_age: float = Field(default=600, gt=0)
    # Hashing-sandbox worker restarts (resource limits hit) tolerated within the window.
    max_sandbox_restarts: int = Field(default=3, ge=0)
    sandbox_restart_window: float = Field(default=600, gt=0)


class LoggingConfig(_Section):
    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda level: level.upper() if isinstance(level, str) else level),
    ] = "INFO"


class Config(_Section):
    homeserver: HomeserverConfig
    appservice: AppserviceConfig
    database: DatabaseConfig = DatabaseConfig()
    rooms: RoomsConfig = RoomsConfig()
    processing: ProcessingConfig = ProcessingConfig()
    hashlist: HashlistSettings = HashlistSettings()
    hash_lists: Annotated[tuple[HashListConfig, ...], AfterValidator(_unique_list_names)] = ()
    # Classifiers besides (or configuring) the hash lists: see docs/classifiers.md.
    classifiers: Annotated[tuple[ClassifierConfig, ...], AfterValidator(_unique_classifier_names)] = ()
    commands: CommandsConfig = CommandsConfig()
    # Validated even when absent, so that its default file paths are resolved like given ones.
    incidents: IncidentsConfig = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    retention: RetentionConfig = RetentionConfig()
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    logging: LoggingConfig = LoggingConfig()
    # A separate policy file, or the policy inline; neither: the default policy.
    # load_config reads policy_file into `policy`.
    policy_file: ResolvedPath | None = None
    policy: Policy = DEFAULT_POLICY

    @model_validator(mode="before")
    @classmethod
    def _empty_policy_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict) and "policy" in data and data["policy"] is None:
            data = {key: value for key, value in data.items() if key != "policy"}
        return data

    @model_validator(mode="after")
    def _one_policy_source(self) -> Config:
        if self.policy_file is not None and "policy" in self.model_fields_set:
            raise LocatedValueError("give either policy_file or an inline policy, not both", ("policy_file",))
        return self


def load_config(path: str | Path) -> Config:
    """Load and validate a config file, and the policy it names. Raises ConfigError."""
    path = Path(path)
    doc = load_yaml(path)
    context = {"base_dir": path.absolute().parent, "source": str(path)}
    config = validate(Config, doc.data, source=doc.source, lines=doc.lines, context=context)
    if config.classifiers:
        # Each type's settings model comes from its plugin: checked once the types are known.
        from bot.classify.registry import ClassifierRegistry, check_classifier_settings

        problems = check_classifier_settings(config.classifiers, ClassifierRegistry.discover(), doc.source, doc.lines)
        if problems:
            raise ConfigError(problems)
    if config.policy_file is None:
        return config
    if not config.policy_file.is_file():
        raise ConfigError(located(doc.source, doc.lines, ("policy_file",), f"no such file: {config.policy_file}"))
    return config.model_copy(update={"policy": load_policy_file(config.policy_file)})


def default_config_text() -> str:
    """The documented example configuration (config.example.yaml)."""
    return EXAMPLE_CONFIG


EXAMPLE_CONFIG = """\
# modbot configuration. Every option is listed with its default; only homeserver.url,
# homeserver.domain and the two appservice tokens have no default.
# Relative paths are resolved against the directory of this file.

homeserver:
  # Client-server API base URL the bot uses to reach the homeserver.
  url: http://127.0.0.1:8008
  # The homeserver's server_name: the part after the colon in user IDs.
  domain: example.org

appservice:
  # Application service ID, unique on the homeserver; goes into the registration file.
  id: modbot
  # Address and port the bot listens on for the homeserver's transactions (and /metrics).
  bind_address: 127.0.0.1
  # 1-65535.
  port: 29330
  # How the homeserver reaches the bot; goes into the registration file.
  # Default: http://<bind_address>:<port> (127.0.0.1 when bound to every address).
  public_url: http://127.0.0.1:29330
  # Secrets shared with the homeserver. `modbot generate-registration -c FILE` replaces
  # these placeholders with random tokens; modbot refuses to start while they remain.
  # The bot's token towards the homeserver (no comment after it: the command rewrites the line).
  as_token: CHANGE_ME
  # The homeserver's token towards the bot.
  hs_token: CHANGE_ME
  # The bot's Matrix user: @<bot_localpart>:<domain>.
  bot_localpart: modbot
  # The bot's display name.
  bot_displayname: modbot
  # Largest transaction body accepted, in bytes (16 MiB). Synapse sends up to 100 events of
  # up to 64 KiB each (state events carry their previous content too); a transaction
  # refused for its size is retried for ever and nothing after it arrives.
  max_body_bytes: 16777216
  # Deepest JSON nesting accepted in a transaction (130-900); Synapse refuses events nested
  # more than 127 levels.
  max_json_depth: 256

database:
  # SQLAlchemy URL. A relative SQLite path is resolved against this file's directory.
  # For production use PostgreSQL: postgresql+asyncpg://user:password@host/modbot
  url: sqlite+aiosqlite:///modbot.db

rooms:
  # Room ID or alias where the bot posts notices and accepts commands; null: none.
  management_room: null
  # Room IDs or aliases whose media is scanned.
  protected: []

processing:
  # false: keep queueing events durably but don't process them (maintenance).
  enabled: true
  # Events processed at once.
  concurrency: 4
  # Largest download accepted, in bytes (50 MiB).
  max_media_bytes: 52428800
  # Seconds allowed for one download.
  download_timeout: 30
  # Images with more pixels than this are not decoded (decompression bombs).
  max_image_pixels: 64000000
  # Attempts per event before it is marked failed.
  max_attempts: 5
  # Retries, with exponential backoff, of actions the homeserver answered with an error.
  action_retries: 4
  # After those, an action the homeserver could not take (no answer, 429, 5xx) stays
  # pending and is retried after action_retry_delay seconds, doubling up to
  # action_retry_max_delay, until it succeeds or a moderator gives it up (`actions giveup`).
  # A refusal (403, 404...) is not retried: the notice says why. Survives restarts.
  action_retry_delay: 30
  # Longest wait between two attempts of a pending action, in seconds.
  action_retry_max_delay: 3600
  # Seconds a process's claim on an action holds: a crashed process's actions are taken
  # over after this by another one (or by itself, restarted). A call gets half of it.
  action_lease: 300
  # Niceness (0-19, as nice(1)) of the processes that decode and hash media. On a machine
  # shared with the homeserver, a flood of media then slows modbot's scanning rather than
  # the homeserver itself; 0 hashes at the bot's own priority.
  hash_nice: 10
  # Decoding and hashing run in worker processes (as many as concurrency), each allowed
  # hash_memory_mb beyond its idle size and hash_cpu_seconds of CPU per media; one that
  # goes over is killed and replaced, and the media is audited "not scanned: resource
  # limit (memory|cpu)" (its exact hashes are still matched). Before decoding, images
  # whose decoded pixels would take more than max_decoded_bytes, and JPEGs with more than
  # max_jpeg_scans scans, are refused. Only JPEG, PNG/APNG, GIF and WebP are decoded.
  hash_memory_mb: 256
  hash_cpu_seconds: 10  # per media
  max_decoded_bytes: 201326592  # 192 MiB
  max_jpeg_scans: 100  # real JPEGs have 1 (baseline) to ~12 (progressive)
  # Media held because a scan failed (a policy rule's on_failure: fail_closed) is scanned
  # again after rescan_delay seconds, doubling up to rescan_max_delay, until a scan
  # succeeds or rescan_give_up_after seconds have passed (the media then stays held).
  rescan_delay: 60
  # Longest wait between two re-scans of held media, in seconds.
  rescan_max_delay: 3600
  # Seconds after which held media is no longer re-scanned (a week).
  rescan_give_up_after: 604800
  # Media references scanned per event; the rest (a hostile formatted_body can hold
  # thousands) are audited as not scanned.
  max_refs_per_event: 20
  # Seconds for all of an event's references; what is not scanned by then is a failed
  # scan, handled by the policy's on_failure (fail_closed holds and re-scans it).
  event_deadline: 60
  # References of one event downloaded and scanned at once.
  fetch_concurrency: 4
  # Media bodies downloaded and held (until hashed and scanned) at once, across all events:
  # media bytes in memory stay under max_downloads x max_media_bytes. Waiting for the
  # homeserver's answer takes no slot, so references that never answer starve nothing.
  max_downloads: 4
  # Seconds the homeserver waits for media created but not uploaded yet (MSC2246) before
  # answering M_NOT_YET_UPLOADED; such media is a failed scan, like a timeout, and the
  # event is re-scanned (as held media is) until the upload comes, whatever on_failure says.
  pending_upload_wait: 1
  # Seconds a dead reference (timed out, never uploaded) is answered from memory, so it
  # costs one timeout however many events, retries and re-scans name it. Media uploaded
  # late is seen by a re-scan at most this long after its upload (plus the re-scan delay).
  failure_memory: 300

hashlist:
  # PDQ hashes of uploaded images below this quality (0-100) are not used for near matches.
  pdq_min_quality: 50
  # Seconds between checks of the list files for changes; a changed list is reloaded
  # atomically and its new entries are matched against the media seen before.
  reload_interval: 5
  # A changed list file that would drop more than this share (0-1) of the list's entries
  # is held: the previous version stays in use, the management room and `modbot check`
  # are told, and `modbot hashes accept NAME` loads it. So is one that would leave the
  # list empty or whose lines are mostly rejected.
  max_drop_share: 0.25

# Lists of known hashes to match media against.
hash_lists: []
#  - name: csam                 # unique; shown in verdicts and notices
#    path: lists/csam.csv       # resolved against this file's directory
#    label: csam                # label of entries that have none (default: the name)
#    enabled: true              # false: don't match against this list
#    thresholds:                # greatest Hamming distance counted as a near match
#      pdq: 31                  # 0-256
#      phash: 8                 # 0-64

# Classifiers: scanning services and plugins, besides the hash lists (which get an
# implicit `hashlist` classifier). docs/classifiers.md describes each type's settings.
classifiers: []
#  - name: arachnid             # unique; policy rules name it in match.classifier
#    type: arachnid             # a registered type: hashlist, arachnid, hma, http, or a plugin's
#    enabled: true              # false: not built, not called
#    timeout: 10                # seconds per request
#    retries: 2                 # retries of timeouts, 429 and 5xx, with jittered backoff
#    backoff: 0.5               # first retry delay in seconds, doubling; Retry-After is honoured
#    max_backoff: 30            # longest wait between retries, in seconds
#    concurrency: 4             # requests in flight at once
#    rate_limit: null           # requests per second; null: no limit
#    circuit_breaker:
#      failures: 5              # failures in a row that stop calls to the service
#      reset_after: 60          # seconds before one probe request is let through
#    cache_ttl: null            # seconds a verdict is reused for the same file; default: a day
#    settings:                  # the type's own settings (a mapping)
#      mode: pdq                # pdq: only PDQ hashes leave the server; media: the file is sent
#      username: my-account     # the account's user name (HTTP Basic)
#      password_env: ARACHNID_PASSWORD   # secrets: inline (password:) or from the environment

commands:
  # Commands start with this prefix, with the bot's localpart and a colon ("modbot:"),
  # or with a real mention of the bot (a pill); "modbot, ..." in plain text is not one.
  prefix: "!mod"
  # Management room members with at least this power level may run every command.
  # In a protected room, users with the room's ban level may run that room's commands.
  management_power: 50
  # Seconds during which a user who may not run commands is not told so again (the bot is
  # exempt from rate limits, so it must not answer every attempt); each attempt is
  # audited. 0: answer every attempt.
  refusal_reply_interval: 300

incidents:
  # Days to keep incident records (the hash chain stays verifiable); null: for ever.
  retention_days: null
  # The incident chain's key (HMAC-SHA256), outside the database; created 0600 at the first
  # start. Back it up with the database: without it keyed incidents cannot be verified,
  # and modbot refuses to start on a database holding keyed incidents.
  chain_key_file: modbot-chain.key
  # Append-only file (0600) of the chain's head (id, hash, row count) after every incident
  # and every anchor; `modbot audit verify` checks the incident log against it.
  anchor_file: modbot-anchors.jsonl
  # Seconds between anchors (head and row count) posted to the management room.
  anchor_interval: 86400

retention:
  # Days to keep finished events as received (sender, room, message content). Retroactive
  # matching (a list gains a hash) can act only on events still kept. null: for ever.
  events_days: 90
  # Days to keep "no match" verdicts. Matches are evidence: see evidence_days.
  verdicts_days: 90
  # Days to keep routine audit rows: scans, "no match" verdicts, intake, list reloads,
  # retroactive runs.
  audit_days: 90
  # Days to keep evidence: matched verdicts and the audit rows of decisions, actions,
  # commands, reviews, incidents, policy and room changes and of retention itself.
  # null: for ever.
  evidence_days: null
  # Seconds between retention runs (measured on the monotonic clock); expired entries of
  # the classifiers' verdict cache are removed at each run too.
  interval: 3600
  # Most rows of each kind deleted in one run; what is left goes at the next run.
  max_rows_per_run: 10000
  # Seconds the wall clock may drift from the monotonic clock between two runs; a larger
  # jump (forward or back) skips that run, audited, so that a wrong clock purges nothing.
  max_clock_jump: 300

metrics:
  # Serve Prometheus metrics at /metrics on the appservice port.
  enabled: true
  # A port of its own for /metrics (then not served on the appservice port), e.g. on an
  # address your Prometheus reaches while the appservice stays on loopback; null: the
  # appservice port.
  port: null
  # The address of that listener; null: 127.0.0.1.
  bind_address: null
  # Require `Authorization: Bearer <token>` (at least 16 characters); null: no token.
  token: null

health:
  # /health answers 503 when any of these is exceeded.
  # Seconds the homeserver's transactions may keep being refused or failing, none accepted.
  stall_after: 60
  # Seconds an error answered to an authenticated transaction keeps /health failing.
  error_window: 300
  # Seconds the oldest pending event may wait for processing.
  max_pending_age: 600
  # Hashing-sandbox worker restarts (a media hit its memory or CPU limit) tolerated
  # within sandbox_restart_window seconds.
  max_sandbox_restarts: 3
  # Seconds over which sandbox restarts are counted.
  sandbox_restart_window: 600

logging:
  # DEBUG, INFO, WARNING, ERROR or CRITICAL.
  level: INFO

# The moderation policy: give it in a separate file (resolved against this file's
# directory), or inline under `policy:`, or neither for the default policy: any match
# quarantines the media, redacts the event, bans the sender from the room and notifies
# the management room; senders with power level 100 (and room creators) are exempt:
# not banned, but their matched media is quarantined and redacted and the room told.
policy_file: null
#policy:
#  # Only notify; record the other actions as dry-run.
#  dry_run: false
#  exempt:
#    # Users the bot never bans (their matched media is still removed, and notified).
#    users: ["@trusted:example.org"]
#    # Senders with this power level or more (creators too) are exempt; null: nobody is exempt by power.
#    power_level: 100
#  # Ordered: the first rule that matches any verdict wins.
#  rules:
#    - name: known-csam         # unique; named in notices and the audit log
#      # Every field given must match; omitted fields match anything. Each field takes
#      # one value or a list (any of).
#      match:
#        classifier: hashlist     # classifier names
#        lists: [csam]            # hash list names
#        labels: [csam]           # labels
#        kind: [exact, near]      # match kinds: exact, near
#        max_distance: 31         # near matches farther than this don't match the rule
#      # quarantine, redact, ban (or {ban: room}) in the event's room, {ban: all} in every
#      # protected room, notify. Each action at most once per rule.
#      actions: [quarantine, redact, {ban: all}, notify]
#      # What a failed scan by a classifier this rule covers (by match.classifier only)
#      # means: fail_open (let it through, audited), review (flag it for a moderator) or
#      # fail_closed (quarantine and redact until a scan succeeds). Unset: the next rule
#      # that sets it, or the policy's on_failure, decides.
#      on_failure: fail_closed
#    # A rule without `match` matches every verdict.
#    - name: other-known-media
#      actions: [quarantine, redact, notify]   # no ban for weaker matches
#  # What a failed scan means when no rule with on_failure covers the classifier.
#  on_failure: fail_open
#  # Per-room overrides, keyed by room ID: each key given replaces the global one.
#  rooms:
#    "!abc:example.org":
#      dry_run: true                          # only notify in this room
#      exempt: {users: [], power_level: 50}   # moderators are exempt here too
#      rules:
#        - name: report-only    # this room gets its own rules
#          actions: [notify]    # notices only
"""
