"""The database schema. Hashes and metadata only: there is deliberately no column for media bytes."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class TransactionRow(Base):
    """Appservice transactions received, by id (first arrival). Not used to drop repeats: Synapse
    reuses ids after a restart on SQLite; events are deduplicated by event id."""

    __tablename__ = "transactions"
    txn_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[float] = mapped_column(Float)
    event_count: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    """Every event received, with its processing state; the durable work queue."""

    __tablename__ = "events"
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), index=True)
    sender: Mapped[str] = mapped_column(String(255), index=True)
    type: Mapped[str] = mapped_column(String(255))
    # The event JSON as received, so that work can resume after a restart. Events carry
    # mxc references, never the media itself.
    event_json: Mapped[str] = mapped_column(Text)
    txn_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | done | failed | ignored
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[float] = mapped_column(Float, index=True)  # retention finds the oldest
    processed_at: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # "blocked": rejected by the pre-send check (bot/presend.py), never delivered.
    presend: Mapped[str | None] = mapped_column(String(16))


class PresendStatRow(Base):
    """What the pre-send endpoint has answered, per outcome: how often and when last."""

    __tablename__ = "presend_stats"
    outcome: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[float] = mapped_column(Float)


class MediaRow(Base):
    """What modbot remembers of a piece of media: hashes and metadata, never content."""

    __tablename__ = "media"
    mxc: Mapped[str] = mapped_column(String(512), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # hashed | not_scanned | encrypted
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    md5: Mapped[str | None] = mapped_column(String(32), index=True)
    # Computed since migration 0004 (NCMEC-style lists); NULL for media hashed before.
    sha1: Mapped[str | None] = mapped_column(String(40), index=True)
    pdq: Mapped[str | None] = mapped_column(String(64))
    pdq_quality: Mapped[int | None] = mapped_column(Integer)
    phash: Mapped[str | None] = mapped_column(String(16))
    # The rotated/flipped/trimmed PDQ variants, comma-separated, so that a re-post of the
    # same mxc (which may already be quarantined and undownloadable) can be matched again.
    pdq_queries: Mapped[str | None] = mapped_column(Text)
    # An animation's or a video's sampled frames, `number:pdq:quality` joined by `;` (since
    # migration 0012), so that retroactive matching sees every frame.
    frame_pdqs: Mapped[str | None] = mapped_column(Text)
    # A smooth image's low-frequency signatures (72 hex digits each) joined by `,` (since
    # migration 0014), for re-posts and retroactive matching of `lowfreq` list entries.
    lowfreq: Mapped[str | None] = mapped_column(Text)
    # Under PDQ quality 50, PDQ's DCT coefficients (1024 hex digits each) joined by `,`
    # (since migration 0015), so that re-posts and retro match the same reliable bits.
    pdq_coefficients: Mapped[str | None] = mapped_column(Text)
    # PDQ of the image padded back by each crop guess (bot/hashing/uncrop.py), 64 hex
    # digits each joined by `,` in the guesses' order (since migration 0016).
    pdq_uncropped: Mapped[str | None] = mapped_column(Text)
    # Under PDQ quality 50, the low-frequency signature of each crop guess (72 hex digits
    # each, joined by `,` in the guesses' order; since migration 0017).
    lowfreq_uncropped: Mapped[str | None] = mapped_column(Text)
    # How reliable each bit of each crop guess is (bot/hashing/pdqtiers.py: 128 hex digits
    # each, joined by `,` in the guesses' order; since migration 0018).
    pdq_uncropped_tiers: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    mimetype: Mapped[str | None] = mapped_column(String(255))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[float] = mapped_column(Float)
    last_scanned: Mapped[float] = mapped_column(Float)


class EventMediaRow(Base):
    __tablename__ = "event_media"
    event_id: Mapped[str] = mapped_column(ForeignKey("events.event_id"), primary_key=True)
    mxc: Mapped[str] = mapped_column(String(512), primary_key=True)
    source: Mapped[str] = mapped_column(String(255))


class VerdictRow(Base):
    __tablename__ = "verdicts"
    __table_args__ = (
        UniqueConstraint("event_id", "mxc", "classifier", "list_name", "label", name="uq_verdict"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(255), index=True)
    mxc: Mapped[str] = mapped_column(String(512), index=True)
    classifier: Mapped[str] = mapped_column(String(64))
    # "no_match" rows record that a scan found nothing; "exact"/"near" are matches.
    kind: Mapped[str] = mapped_column(String(16))
    list_name: Mapped[str] = mapped_column(String(255), default="")
    label: Mapped[str] = mapped_column(String(255), default="")
    hash_type: Mapped[str | None] = mapped_column(String(16))
    distance: Mapped[int | None] = mapped_column(Integer)
    matched_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float, index=True)  # retention finds the oldest


class ActionRow(Base):
    """One row per action, keyed so that the same action is never carried out twice."""

    __tablename__ = "actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(1024), unique=True)
    event_id: Mapped[str | None] = mapped_column(String(255), index=True)
    room_id: Mapped[str | None] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))  # pending | ok | failed | given_up | dry_run
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # The claim (bot/record/actions.py): who is carrying the action out, and until when
    # the claim holds; NULL when nobody is.
    owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[float | None] = mapped_column(Float)
    # A pending action's next retry; how to redo it (JSON, bot/act/operations.py).
    next_attempt_at: Mapped[float | None] = mapped_column(Float, index=True)
    operation: Mapped[str | None] = mapped_column(Text)


class AuditRow(Base):
    """Append-only log of everything modbot decided and did, and of what it could not scan."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_ts", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    category: Mapped[str] = mapped_column(String(32))  # intake | scan | verdict | decision | action
    outcome: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str | None] = mapped_column(String(255), index=True)
    room_id: Mapped[str | None] = mapped_column(String(255))
    sender: Mapped[str | None] = mapped_column(String(255))
    mxc: Mapped[str | None] = mapped_column(String(512))
    message: Mapped[str] = mapped_column(Text)


class ProtectedRoomRow(Base):
    """Rooms protected or unprotected by command; overrides rooms.protected of the config."""

    __tablename__ = "protected_rooms"
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    protected: Mapped[bool] = mapped_column(Boolean)
    changed_by: Mapped[str] = mapped_column(String(255))
    changed_at: Mapped[float] = mapped_column(Float)


class SettingRow(Base):
    """Runtime settings changed by command (dry run per room or global), kept across restarts."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(255))
    changed_at: Mapped[float] = mapped_column(Float)


class AllowRow(Base):
    """Known false positives: media with these hashes is never acted on."""

    __tablename__ = "allowlist"
    __table_args__ = (UniqueConstraint("hash_type", "hash", name="uq_allow_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hash_type: Mapped[str] = mapped_column(String(16))  # sha256 | pdq
    hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[float] = mapped_column(Float)


class ReviewRow(Base):
    """A match held for a moderator's decision."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    room_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255))
    rule: Mapped[str] = mapped_column(String(255))
    # The match as JSON: media refs, their hashes and verdicts, and the deferred actions.
    detail_json: Mapped[str] = mapped_column(Text)
    held: Mapped[bool] = mapped_column(Boolean)  # quarantined and redacted while open
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | approved | rejected
    created_at: Mapped[float] = mapped_column(Float)
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    resolved_at: Mapped[float | None] = mapped_column(Float)
    card_event_id: Mapped[str | None] = mapped_column(String(255))


class IncidentRow(Base):
    """A confirmed match. Append-only; each row's hash (keyed) covers the previous row's hash."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    record_json: Mapped[str] = mapped_column(Text)  # the incident, canonical JSON
    created_at: Mapped[float] = mapped_column(Float, index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))
    # How row_hash was made: "sha256" (rows from before the key) or "hmac-sha256" (bot/record/chain.py).
    chain_scheme: Mapped[str] = mapped_column(String(16), server_default="sha256")


class VerdictCacheRow(Base):
    """What a classifier said of a file, by SHA-256, so that the same file is not sent twice.

    `fingerprint` is a digest of the classifier's type and settings: a changed setup misses.
    """

    __tablename__ = "classifier_verdict_cache"
    classifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    verdicts_json: Mapped[str] = mapped_column(Text)  # a JSON list of verdicts; [] is "no match"
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class ScanHoldRow(Base):
    """An event held (fail_closed) because a scan failed: re-scanned until one succeeds."""

    __tablename__ = "scan_holds"
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255))
    mxcs_json: Mapped[str] = mapped_column(Text)  # the media quarantined for the hold
    reason: Mapped[str] = mapped_column(Text)  # the last failure
    attempts: Mapped[int] = mapped_column(Integer)  # scans that failed so far
    held_at: Mapped[float] = mapped_column(Float)
    due_at: Mapped[float] = mapped_column(Float, index=True)  # the next re-scan


class HashListSeenRow(Base):
    """Which entries of a hash list modbot has already matched its media history against.

    Each entry (type, hash, label) is kept as a 64-bit digest, 16 hex digits, sorted and
    cut into chunks of up to 100,000 per row: ten million entries are 100 rows. Entries
    missing from here are new, and retroactive matching looks for them in the history.
    """

    __tablename__ = "hash_list_seen"
    list_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    digests: Mapped[str] = mapped_column(Text)
    entries: Mapped[int] = mapped_column(Integer)  # in this chunk
    updated_at: Mapped[float] = mapped_column(Float)


class RetroRunRow(Base):
    """One retroactive matching run: new entries of a list against the media history."""

    __tablename__ = "retro_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    list_name: Mapped[str] = mapped_column(String(255), index=True)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    new_entries: Mapped[int] = mapped_column(Integer)
    media_checked: Mapped[int] = mapped_column(Integer, default=0)
    media_matched: Mapped[int] = mapped_column(Integer, default=0)
    events_acted: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text)


class HashListStateRow(Base):
    """Per hash list: the version the bot last loaded, and the one an operator last accepted.

    A reloaded file that would empty a list, is mostly rejected lines or drops too many
    entries is held until `modbot hashes accept` records its digest here (bot/lists/guard.py).
    """

    __tablename__ = "hash_list_state"
    list_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    entries: Mapped[int | None] = mapped_column(Integer)  # of the version last loaded
    digest: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of its file
    loaded_at: Mapped[float | None] = mapped_column(Float)
    accepted_digest: Mapped[str | None] = mapped_column(String(64))
    accepted_by: Mapped[str | None] = mapped_column(String(255))
    accepted_at: Mapped[float | None] = mapped_column(Float)


class PolicyListRow(Base):
    """A policy room modbot follows (MSC2313): from the config or `policylist watch`."""

    __tablename__ = "policy_lists"
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # config | command
    added_by: Mapped[str | None] = mapped_column(String(255))
    added_at: Mapped[float] = mapped_column(Float)
    last_update: Mapped[float | None] = mapped_column(Float)  # last rule change read
    error: Mapped[str | None] = mapped_column(Text)  # why the last read failed, if it did


class PolicyRuleRow(Base):
    """The rules of the watched policy rooms, one per (room, event type, state key)."""

    __tablename__ = "policy_rules"
    list_room: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(255), primary_key=True)
    state_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # user | room | server | mxc
    recommendation: Mapped[str] = mapped_column(String(255))
    entity: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)  # MSC4205
    reason: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[float] = mapped_column(Float)


class PolicyBanRow(Base):
    """A ban a policy rule made, so that removing the rule lifts what it did and nothing else."""

    __tablename__ = "policy_bans"
    list_room: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(255), primary_key=True)
    state_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    banned_at: Mapped[float] = mapped_column(Float)
class UserReportRow(Base):
    """A user's report read from Synapse (event or user report): carded once, then resolved."""

    __tablename__ = "user_reports"
    __table_args__ = (UniqueConstraint("kind", "report_id", name="uq_user_reports_kind_report_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # event | user
    report_id: Mapped[str] = mapped_column(String(64))  # Synapse's id
    received_ts: Mapped[int | None] = mapped_column(BigInteger)
    detail_json: Mapped[str] = mapped_column(Text)  # the report as Synapse gave it, and what modbot found
    # new (read, not carded yet) | open | acted (policy, at once) | resolved (report act) | dismissed
    status: Mapped[str] = mapped_column(String(16), index=True)
    card_event_id: Mapped[str | None] = mapped_column(String(255))
    seen_at: Mapped[float] = mapped_column(Float)
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    resolved_at: Mapped[float | None] = mapped_column(Float)


class SuspendedUploadRow(Base):
    """A user modbot suspended, whose new uploads it quarantines (bot/act/uploadwatch.py)."""

    __tablename__ = "suspended_uploads"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    suspended_at: Mapped[float] = mapped_column(Float)
    watermark_ms: Mapped[int] = mapped_column(BigInteger)  # created_ts of the newest upload dealt with
    quarantined: Mapped[int] = mapped_column(Integer)
    stopped_at: Mapped[float | None] = mapped_column(Float)  # unsuspended: no longer watched
