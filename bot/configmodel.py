"""modbot's typed configuration: every section of the config file and the `Config` root.

pydantic models, frozen and strict about unknown keys. Validators resolve relative paths
against the config file's directory (passed in the validation context as `base_dir`) and
refuse the example's placeholder tokens. Loading a file is `bot.config.load_config`; this
module imports nothing of the classifiers, so they (and the storage layer) can import it.
The hash-list and classifier sections are in bot/configdetect.py (re-exported here). The
decoding limits' defaults (`processing.max_image_pixels` and the like) are not repeated here:
they are read from `MediaLimits` (bot/hashing/limits.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from bot.configtypes import BaseUrl, ResolvedPath, RoomRef, Section, context_of, resolve_path, server_name
from bot.hashing.limits import MediaLimits
from bot.hashing.video import MAX_VIDEO_FRAMES
from bot.policy import DEFAULT_POLICY, Policy
from bot.policylists.rules import neutral_reason
from bot.configdetect import (
    CircuitBreakerConfig,
    ClassifierConfig,
    HashListConfig,
    HashlistSettings,
    ThresholdsConfig,
    unique_classifier_names,
    unique_list_names,
)
from bot.yamlload import LocatedValueError

__all__ = [
    "AppserviceConfig",
    "CircuitBreakerConfig",
    "ClassifierConfig",
    "CommandsConfig",
    "Config",
    "DatabaseConfig",
    "HashListConfig",
    "HashlistSettings",
    "HealthConfig",
    "HomeserverConfig",
    "IncidentsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PolicyListsConfig",
    "PolicyPublishConfig",
    "PresendConfig",
    "ProcessingConfig",
    "RetentionConfig",
    "RoomsConfig",
    "ThresholdsConfig",
]

class HomeserverConfig(Section):
    url: BaseUrl  # client-server API base URL
    domain: Annotated[str, AfterValidator(server_name)]  # server_name, the part after ":" in user IDs


class AppserviceConfig(Section):
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
            config = context_of(info).get("source", "FILE")
            raise ValueError(
                f"{'not set' if not token else 'still the placeholder ' + repr(token)}; "
                f"run `modbot generate-registration -c {config}` to generate tokens"
            )
        return token


class DatabaseConfig(Section):
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
        return f"{scheme}:///{resolve_path(Path(file), info)}{query_sep}{query}"


class RoomsConfig(Section):
    management_room: RoomRef | None = None
    protected: tuple[RoomRef, ...] = ()


class PolicyPublishConfig(Section):
    room: RoomRef | None = None  # the operator's own policy room; modbot needs power to send state there
    users: bool = False  # each incident's sender, as m.policy.rule.user m.ban
    media: bool = False  # each incident's media, as MSC4207 m.policy.rule.mxc m.takedown (hashed mxc)
    reason: Annotated[str, AfterValidator(neutral_reason)] = Field(default="spam", min_length=1, max_length=100)


class PolicyListsConfig(Section):
    """Matrix policy rooms (MSC2313): followed with `watch`, written with `publish`."""

    watch: tuple[RoomRef, ...] = ()  # policy rooms to follow, besides those watched by command
    server_acl: bool = False  # server rules add m.room.server_acl deny entries in protected rooms
    ban_reason: str = Field(default="policy list", min_length=1, max_length=100)  # shown on the bans
    # A glob or hashed rule matching more members than this is refused (audited), not acted on.
    max_bans_per_rule: int = Field(default=100, ge=1)
    # Rules kept per watched room; further new rules are refused and audited.
    max_rules_per_list: int = Field(default=100_000, ge=1)
    # m.ban room rules: `record` keeps them (status, policylist list) and does nothing;
    # `block` blocks the named rooms on this server (admin API, undone when the rule goes)
    # and refuses local users' joins to them. Never a protected room or the management room.
    room_rules: Literal["record", "block"] = "record"
    publish: PolicyPublishConfig = PolicyPublishConfig()


# What compute_hashes checks before decoding when given no limits: the `processing:` limits
# below default to these, so a bare caller (`modbot hashes add-image`, a test) and the bot
# decode the same media, and bot/hashing/limits.py alone holds the figures.
_MEDIA_LIMITS = MediaLimits()


class ProcessingConfig(Section):
    enabled: bool = True  # false: queue events durably, process nothing
    concurrency: int = Field(default=4, ge=1)
    max_media_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    download_timeout: float = Field(default=30, gt=0)  # seconds
    max_image_pixels: int = Field(default=_MEDIA_LIMITS.max_pixels, ge=1)
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
    # limit (memory|cpu): ...". Checked before decoding (bot/hashing/limits.py): decoded
    # size in bytes (of a video's frames too: bot/hashing/video.py), and the scans of a
    # progressive JPEG.
    hash_memory_mb: int = Field(default=256, ge=64)
    hash_cpu_seconds: float = Field(default=10, gt=0)
    max_decoded_bytes: int = Field(default=_MEDIA_LIMITS.max_decoded_bytes, ge=1)
    max_jpeg_scans: int = Field(default=_MEDIA_LIMITS.max_jpeg_scans, ge=1)
    # Videos: a frame a second for the first max_video_frames seconds, decoding no more than
    # max_video_decoded_pixels pixels (bot/hashing/video.py); either limit hit is audited.
    max_video_frames: int = Field(default=_MEDIA_LIMITS.video_frames, ge=1, le=MAX_VIDEO_FRAMES)
    max_video_decoded_pixels: int = Field(default=_MEDIA_LIMITS.video_pixel_budget, ge=1)
    # PDQ of each image padded back by 44 crop guesses (bot/hashing/uncrop.py), so that a
    # cropped copy finds an original listed by its PDQ alone; false saves their CPU.
    crop_guesses: bool = _MEDIA_LIMITS.crop_guesses
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


class PresendConfig(Section):
    """Pre-send checks: Synapse's check_event_for_spam, forwarded by synapse-http-antispam."""

    enabled: bool = False
    path_prefix: str = Field(default="/_modbot/antispam", pattern=r"^/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$")
    # The module's `authorization`; generate-registration writes a random one.
    antispam_secret: str = Field(default="", repr=False)
    # Seconds for extract + fetch + hash + classify; later, the event is allowed (or rejected
    # where the policy says `presend: fail_closed`) and the appservice path acts on it.
    deadline: float = Field(default=2.0, gt=0, le=30)
    # The module's fail_open for check_event_for_spam: what Synapse does when modbot is down.
    fail_open: bool = True
    # Media referenced before its upload completed (MSC2246): reject the event, or allow it
    # and let the appservice path fetch again until the upload comes (processing.rescan_*).
    pending_upload: Literal["reject", "allow"] = "reject"
    max_body_bytes: int = Field(default=256 * 1024, ge=70 * 1024)  # an event is at most 64 KiB
    # Also ask Synapse to forward user_may_join_room (bot/joincheck.py): users a watched
    # policy list bans are refused at join into protected rooms. Always fails open.
    check_joins: bool = True

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> PresendConfig:
        if self.enabled and (len(self.antispam_secret) < 16 or self.antispam_secret.startswith("CHANGE")):
            raise LocatedValueError(
                "not set or a placeholder; run `modbot generate-registration` to generate one", ("antispam_secret",)
            )
        return self


class CommandsConfig(Section):
    prefix: str = Field(default="!mod", min_length=1)  # or mention the bot
    # Members of the management room at or above this power level may run every command.
    management_power: int = 50
    # A user who may not run commands is told so at most once per this many seconds (the
    # bot is exempt from rate limits); every attempt is audited. 0: answer every attempt.
    refusal_reply_interval: float = Field(default=300, ge=0)


class IncidentsConfig(Section):
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


class RetentionConfig(Section):
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


class MetricsConfig(Section):
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


class HealthConfig(Section):
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


class ReportsConfig(Section):
    """Users' reports read from Synapse's admin API and carded (bot/intake/reports.py)."""

    enabled: bool = True
    interval: float = Field(default=30, ge=1)  # seconds between polls
    page_size: int = Field(default=50, ge=1, le=1000)
    # Reasons containing one of these (case-insensitive) are flagged as abuse imagery, as
    # MSC3215's `org.matrix.msc3215.abuse.nature.csam` always is.
    csam_reasons: tuple[str, ...] = ()
    act_on_match: bool = True  # media that matches a list is acted on by the policy at once


class SuspendedUploadsConfig(Section):
    """Uploads of users modbot suspended, quarantined while they stay suspended (bot/act/uploadwatch.py)."""

    enabled: bool = True
    interval: float = Field(default=10, ge=1, le=3600)  # seconds between polls
    page_size: int = Field(default=100, ge=1, le=1000)
    max_pages: int = Field(default=10, ge=1, le=100)  # per user and poll
    max_users: int = Field(default=500, ge=1)


class LoggingConfig(Section):
    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda level: level.upper() if isinstance(level, str) else level),
    ] = "INFO"


class Config(Section):
    homeserver: HomeserverConfig
    appservice: AppserviceConfig
    database: DatabaseConfig = DatabaseConfig()
    rooms: RoomsConfig = RoomsConfig()
    processing: ProcessingConfig = ProcessingConfig()
    presend: PresendConfig = PresendConfig()
    hashlist: HashlistSettings = HashlistSettings()
    hash_lists: Annotated[tuple[HashListConfig, ...], AfterValidator(unique_list_names)] = ()
    # Classifiers besides (or configuring) the hash lists: see docs/classifiers.md.
    classifiers: Annotated[tuple[ClassifierConfig, ...], AfterValidator(unique_classifier_names)] = ()
    commands: CommandsConfig = CommandsConfig()
    policy_lists: PolicyListsConfig = PolicyListsConfig()
    # Validated even when absent, so that its default file paths are resolved like given ones.
    incidents: IncidentsConfig = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    retention: RetentionConfig = RetentionConfig()
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    reports: ReportsConfig = ReportsConfig()
    suspended_uploads: SuspendedUploadsConfig = SuspendedUploadsConfig()
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
