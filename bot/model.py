"""The values that flow between modbot's stages.

Every stage hands the next one frozen dataclasses; none of them holds a database row,
an HTTP response or any other live object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Literal

HashType = Literal["sha256", "md5", "sha1", "pdq", "phash", "vpdq", "lowfreq"]
# The power level that stands for "unlimited": in room version 12 a room's creators outrank
# everyone and cannot be banned. A sender with this power is a creator of the room.
CREATOR_POWER = 2**53
# sha1 is what NCMEC-style lists carry besides md5.
HASH_TYPES: tuple[HashType, ...] = ("sha256", "md5", "sha1", "pdq", "phash")
# Hex length of each hash type, used to validate list entries and user input.
HASH_HEX_LENGTH: dict[str, int] = {"sha256": 64, "md5": 32, "sha1": 40, "pdq": 64, "phash": 16}
# A whole video's vPDQ (bot/lists/vpdq.py): a list entry of many frames, not a fixed-width digest.
VIDEO_HASH_TYPE: Literal["vpdq"] = "vpdq"
# A smooth image's low-frequency signature (bot/hashing/smoothsig.py): add-image lists only.
SIGNATURE_HASH_TYPE: Literal["lowfreq"] = "lowfreq"
PERCEPTUAL: frozenset[str] = frozenset({"pdq", "phash"})
CRYPTOGRAPHIC: tuple[HashType, ...] = ("sha256", "md5", "sha1")


@dataclass(frozen=True)
class MediaRef:
    """A reference to a piece of media found in an event."""

    mxc: str  # mxc://server/media_id, validated
    server: str
    media_id: str
    # Where in the event the reference was found, e.g. "content.url",
    # "content.info.thumbnail_url", "content.formatted_body", "content.m.new_content.url".
    source: str
    mimetype: str | None = None
    # End-to-end encrypted attachments (content.file.url) cannot be scanned by a server.
    encrypted: bool = False


@dataclass(frozen=True)
class ExtractResult:
    refs: tuple[MediaRef, ...]
    # Human-readable reasons for references that were present but invalid (bad mxc URI...).
    problems: tuple[str, ...] = ()
    # References beyond the per-event cap (`max_refs`): counted, not parsed into refs.
    dropped: int = 0
    # Problem lines beyond the cap on problems: counted, not written out.
    problems_dropped: int = 0


@dataclass(frozen=True)
class Hashes:
    """Everything modbot keeps about a piece of media: hashes and metadata, never bytes."""

    sha256: str
    # None when only the homeserver's own record of the file (its SHA-256) could be had.
    md5: str | None
    size: int
    pdq: str | None = None  # 64 hex chars, of the image as decoded (no trimming or rotation)
    pdq_quality: int | None = None
    phash: str | None = None  # 16 hex chars (imagehash.phash, 8x8)
    width: int | None = None
    height: int | None = None
    image_format: str | None = None  # Pillow's format name: "JPEG", "PNG"...
    # PDQ hashes tried when matching: the 8 rotations/flips of the image, and of the image
    # with uniform borders trimmed. Includes `pdq` itself. Empty when not an image.
    pdq_queries: tuple[str, ...] = ()
    # Why perceptual hashes are missing, if they are (not an image, decode failed, bomb...).
    perceptual_error: str | None = None
    # Matched against NCMEC-style lists; None for media hashed before modbot computed it.
    sha1: str | None = None
    # Animations: (frame number, PDQ, PDQ quality) of frames sampled across the animation
    # after the first (which is `pdq`); videos: (second, PDQ, quality) a frame a second.
    # Kept by the journal (media.frame_pdqs, migration 0012): re-posts and retro see them.
    frame_pdqs: tuple[tuple[int, str, int], ...] = ()
    # Why a video's sampling stopped before its end (a frame or decoded-pixel limit), if it did.
    sampling_limit: str | None = None
    # Low-frequency signatures (bot/hashing/smoothsig.py) of the image as decoded and of its
    # border-trimmed image: matched under PDQ quality 50 against add-image lists' entries.
    lowfreq: tuple[str, ...] = ()
    # Under PDQ quality 50: PDQ's DCT coefficients (bot/hashing/pdqcoef.py) of the image as
    # decoded (one text, or none), whose most reliable bits are matched.
    pdq_coefficients: tuple[str, ...] = ()
    # PDQ of the image as decoded padded back as if cut from a larger one, one hash per
    # guess of bot/hashing/uncrop.HYPOTHESES in its order (or none): matched against hash
    # lists so that a cropped copy finds its original. Not sent to scanning services.
    pdq_uncropped: tuple[str, ...] = ()
    # Under PDQ quality 50: the low-frequency signature of each of those guesses (or none),
    # matched against add-image lists' `lowfreq` entries.
    lowfreq_uncropped: tuple[str, ...] = ()
    # How reliable each bit of those guesses is (bot/hashing/pdqtiers.py: 128 hex digits a
    # guess, or none): a guess a few bits over its bound still matches a listed image's own
    # hash when it differs from it only in bits its coefficients say are unreliable.
    pdq_uncropped_tiers: tuple[str, ...] = ()


class MatchKind(str, Enum):
    EXACT = "exact"
    NEAR = "near"


@dataclass(frozen=True)
class Verdict:
    """One classifier's finding that a piece of media matches something known."""

    classifier: str  # e.g. "hashlist"
    label: str  # e.g. "csam"
    kind: MatchKind
    list_name: str | None = None
    hash_type: str | None = None
    distance: int | None = None  # Hamming distance for near matches, 0 for exact
    matched_hash: str | None = None  # the list entry that matched
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # A confidence a service reported (0..1 by convention), for classifiers that give one.
    score: float | None = None


# Hashes fields kept out of summaries (a review item, `modbot scan --json`): the queries
# derived for matching, kilobytes of them, say nothing a reader needs.
DERIVED_QUERY_FIELDS = frozenset({"pdq_queries", "pdq_uncropped", "lowfreq_uncropped", "pdq_uncropped_tiers"})


def hashes_summary(hashes: Hashes) -> dict[str, Any]:
    """`hashes` as a dict, without DERIVED_QUERY_FIELDS."""
    return {k: v for k, v in asdict(hashes).items() if k not in DERIVED_QUERY_FIELDS}


def verdict_json(v: Verdict) -> dict[str, Any]:
    """A verdict as it is written to JSON (scan output, review items, incidents)."""
    return {
        "classifier": v.classifier,
        "list": v.list_name,
        "label": v.label,
        "kind": v.kind.value,
        "hash_type": v.hash_type,
        "distance": v.distance,
        "matched_hash": v.matched_hash,
    }


@dataclass(frozen=True)
class Classification:
    """What one classifier said of one piece of media: verdicts, or an error.

    `error` means the scan failed (the policy's `on_failure` decides what that means);
    `skipped` means the classifier had nothing to check, e.g. a PDQ-only service given a
    file that is not an image. A skipped scan is not a failure.
    """

    classifier: str
    verdicts: tuple[Verdict, ...] = ()
    error: str | None = None
    skipped: str | None = None
    # What a service was sent when it was not the file as posted (re-encoded to fit its
    # limits): the audit keeps it, since it bears on what a match or no match means.
    note: str | None = None


class ActionKind(str, Enum):
    QUARANTINE = "quarantine"
    REDACT = "redact"
    BAN = "ban"
    NOTIFY = "notify"
    # Hold the media for a moderator's decision (the review queue) instead of acting outright.
    REVIEW = "review"
    # Server-admin actions (Synapse's admin API). The first four act on the sender's account
    # and apply to local users only; a remote sender gets the policy's `remote_senders` instead.
    SUSPEND = "suspend"  # can read, cannot send or join (uploads: act/uploadwatch.py); reversible
    DEACTIVATE = "deactivate"  # {deactivate: erase} also erases; irreversible
    QUARANTINE_USER_MEDIA = "quarantine_user_media"  # every file the sender uploaded
    REDACT_USER = "redact_user"  # the sender's events: {redact_user: this|protected|all}
    TAKEDOWN_ROOM = "takedown_room"  # block the event's room; {takedown_room: purge} deletes it
    # Deny a remote sender's server in the protected rooms' m.room.server_acl, once it has
    # had `remote_senders.server_acl.after` incidents within `.within` seconds.
    SERVER_ACL = "server_acl"


# Actions on the sender's account: only a local user has one here.
ACCOUNT_ACTIONS: frozenset[ActionKind] = frozenset(
    {ActionKind.SUSPEND, ActionKind.DEACTIVATE, ActionKind.QUARANTINE_USER_MEDIA, ActionKind.REDACT_USER}
)


@dataclass(frozen=True)
class PlannedAction:
    kind: ActionKind
    # For ban: "room" (the room of the event) or "all" (every protected room).
    # For review: "hold" (quarantine and redact until decided) or "flag".
    scope: str = "room"


class FailureMode(str, Enum):
    """What a failed scan means, per policy rule (`on_failure`)."""

    FAIL_OPEN = "fail_open"  # let the media through; the failure is audited
    FAIL_CLOSED = "fail_closed"  # hold it (quarantine, redact) until a scan succeeds
    REVIEW = "review"  # hand it to a moderator (the review queue)


@dataclass(frozen=True)
class EventContext:
    """What the policy needs to know about where and by whom media was posted."""

    event_id: str
    room_id: str
    sender: str
    sender_power: int
    origin_server_ts: int | None = None
    # The pre-send check rejected the event (bot/presend.py): nobody received it, so there
    # is nothing to redact, and the notice and the incident say it was blocked.
    blocked_before_delivery: bool = False


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one event: which rule fired and what to do."""

    rule: str | None  # None when no rule matched
    actions: tuple[PlannedAction, ...] = ()
    dry_run: bool = False
    # Set when the sender is exempt: actions against the person (`spared`) are dropped,
    # those on the media stay, and the management room is told.
    exempt_reason: str | None = None
    spared: tuple[PlannedAction, ...] = ()  # what an exempt sender was spared (a ban)
    verdicts: tuple[Verdict, ...] = ()  # the verdicts that made the rule fire
    # Classifiers whose scan failed, and what the policy made of it (the strictest mode
    # among the failures); None when every scan succeeded.
    failures: tuple[Classification, ...] = ()
    on_failure: FailureMode | None = None
    # A sender of another server: the account actions the rule names (`replaced`) gave way
    # to the policy's `remote_senders` actions.
    remote_server: str | None = None
    replaced: tuple[PlannedAction, ...] = ()
    # For a server_acl action: (incidents, seconds) from one server before it is denied.
    server_acl_after: tuple[int, float] | None = None

    @property
    def acts(self) -> bool:
        return bool(self.actions)

    @property
    def holds(self) -> bool:
        """Whether the media is held until a scan succeeds (fail_closed; exempt senders too:
        an exemption spares people, not media)."""
        return self.on_failure is FailureMode.FAIL_CLOSED


class Outcome(str, Enum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # already done, or not applicable
    DRY_RUN = "dry_run"
    # Not done yet: the homeserver could not be reached or answered 429/5xx; the action is
    # retried later (bot/act/retry.py) until it succeeds or a moderator gives it up.
    PENDING = "pending"
