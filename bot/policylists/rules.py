"""Matrix policy rules (MSC2313, MSC4205 hashes, MSC4207 media) as values, and matching them (pure).

A policy room holds one state event per rule: `m.policy.rule.user|room|server` (or the
legacy `m.room.rule.*` and `org.matrix.mjolnir.rule.*` types Mjolnir wrote), with an
`entity` that may be a glob (`*`, `?`), or (MSC4205) `hashes.sha256`, the base64 SHA-256
of the literal entity, and a `recommendation`. Content `{}` (or without an entity) removes
the rule. MSC4207's `m.policy.rule.mxc` names media by the SHA-256 of its mxc URI.

Everything here comes from rooms other people write: an entity is bounded in length and
matched with a linear, backtracking-free matcher, so a glob like `*****...*a` costs
O(len(glob) * len(text)) at worst, never exponential time.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from ..senders import host_of

USER, ROOM, SERVER, MXC = "user", "room", "server", "mxc"

# The state event types that carry rules, and the kind of entity each names.
RULE_TYPES: dict[str, str] = {
    "m.policy.rule.user": USER,
    "m.policy.rule.room": ROOM,
    "m.policy.rule.server": SERVER,
    "m.policy.rule.mxc": MXC,
    # Mjolnir's older names, still found in long-lived lists.
    "m.room.rule.user": USER,
    "m.room.rule.room": ROOM,
    "m.room.rule.server": SERVER,
    "org.matrix.mjolnir.rule.user": USER,
    "org.matrix.mjolnir.rule.room": ROOM,
    "org.matrix.mjolnir.rule.server": SERVER,
}

BAN, TAKEDOWN = "m.ban", "m.takedown"
# Older spellings of the same recommendations.
_RECOMMENDATIONS = {BAN: BAN, "org.matrix.mjolnir.ban": BAN, TAKEDOWN: TAKEDOWN, "org.matrix.msc4204.takedown": TAKEDOWN}

# A Matrix user id is at most 255 bytes; an entity (a glob of one) longer than this is refused.
MAX_ENTITY = 255
MAX_REASON = 500
MAX_STATE_KEY = 255


@dataclass(frozen=True)
class PolicyRule:
    """One rule of one policy room, as modbot keeps it."""

    list_room: str
    event_type: str
    state_key: str
    kind: str  # USER | ROOM | SERVER | MXC
    recommendation: str  # BAN | TAKEDOWN (normalised) or what the list said
    entity: str | None  # literal or glob; None when only hashed
    sha256: str | None  # MSC4205: base64 SHA-256 of the literal entity
    reason: str
    event_id: str

    @property
    def is_glob(self) -> bool:
        return self.entity is not None and ("*" in self.entity or "?" in self.entity)

    @property
    def bans(self) -> bool:
        """A rule modbot acts on: m.ban (and m.takedown, which asks for at least as much)."""
        return self.recommendation in (BAN, TAKEDOWN)

    def matches(self, value: str) -> bool:
        """Whether the rule names `value` (a user id, a server name, an mxc URI)."""
        if self.entity is not None and glob_match(self.entity, value):
            return True
        return self.sha256 is not None and entity_hash(value) == self.sha256

    def describe(self) -> str:
        target = self.entity if self.entity is not None else f"sha256:{self.sha256}"
        return f"{self.kind} {target} ({self.recommendation})"


@dataclass(frozen=True)
class Refused:
    """A rule event that could not be read, and why (audited, never acted on)."""

    why: str


@dataclass(frozen=True)
class Removed:
    """A rule event that removes the rule at its state key."""

    list_room: str
    event_type: str
    state_key: str


# Words a published reason must not contain: other servers read it, and it must neither
# classify the media nor repeat modbot's internal labels (README: Policy lists).
_UNPUBLISHABLE = ("csam", "csem", "child", "minor", "abuse imagery", "ncmec", "iwf", "hash", "pdq", "sha256", "md5")


def neutral_reason(value: str) -> str:
    """The config's check of a reason to publish (policy_lists.publish.reason)."""
    if any(word in value.lower() for word in _UNPUBLISHABLE):
        raise ValueError(f"a published reason must be neutral; {value!r} names the kind of material or a hash")
    return value


def entity_hash(value: str) -> str:
    """MSC4205's hash of an entity: base64 (padded) SHA-256 of its UTF-8 bytes."""
    return base64.b64encode(hashlib.sha256(value.encode("utf-8")).digest()).decode("ascii")


def parse_rule(event: dict[str, Any]) -> PolicyRule | Removed | Refused | None:
    """The rule a state event sets or removes; None when the event is not a rule."""
    kind = RULE_TYPES.get(event.get("type", ""))
    state_key = event.get("state_key")
    if kind is None or not isinstance(state_key, str):
        return None
    room, event_type = str(event.get("room_id", "")), str(event["type"])
    if len(state_key) > MAX_STATE_KEY:
        return Refused(f"state key longer than {MAX_STATE_KEY} characters")
    content = event.get("content")
    if not isinstance(content, dict):
        return Refused("content is not an object")
    entity, hashes = content.get("entity"), content.get("hashes")
    sha = hashes.get("sha256") if isinstance(hashes, dict) else None
    if entity is None and sha is None:
        return Removed(room, event_type, state_key)
    if entity is not None and (not isinstance(entity, str) or not entity or len(entity) > MAX_ENTITY):
        return Refused(f"entity is not a string of 1 to {MAX_ENTITY} characters")
    if sha is not None and not _is_sha256_b64(sha):
        return Refused("hashes.sha256 is not a base64 SHA-256")
    recommendation = content.get("recommendation")
    if not isinstance(recommendation, str) or len(recommendation) > 255:
        return Refused("no recommendation")
    reason = content.get("reason")
    reason = reason[:MAX_REASON] if isinstance(reason, str) else ""
    return PolicyRule(
        list_room=room, event_type=event_type, state_key=state_key, kind=kind,
        recommendation=_RECOMMENDATIONS.get(recommendation, recommendation),
        entity=entity, sha256=sha, reason=reason, event_id=str(event.get("event_id", "")),
    )


def _is_sha256_b64(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        # Unpadded base64 is seen in the wild: pad before decoding.
        return len(base64.b64decode(value + "=" * (-len(value) % 4), validate=True)) == 32
    except ValueError:
        return False


def glob_match(pattern: str, text: str) -> bool:
    """Matrix glob matching (`*` any run, `?` one character), case-sensitive, whole string.

    The classic two-pointer matcher: on a mismatch it resumes after the last `*` only, so
    it never backtracks further and runs in O(len(pattern) * len(text)) at worst.
    """
    if len(pattern) > MAX_ENTITY:
        return False
    p = t = 0
    star = -1
    resume = 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            resume += 1
            t = resume
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def server_of(user_id: str) -> str:
    """The server name of a user id (`@a:b.org:8448` → `b.org:8448`)."""
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def bans_user(rule: PolicyRule, user_id: str) -> bool:
    """Whether a rule asks for `user_id` to be banned. Server rules ban nobody by themselves:
    they become server ACL entries, and only when the operator opted in."""
    return rule.kind == USER and rule.bans and rule.matches(user_id)


def acl_entry(rule: PolicyRule, own_server: str) -> str | None:
    """The `m.room.server_acl` deny entry a server rule asks for, or None when it asks for none
    modbot may write: hashed only (nothing to write), or one that would deny our own server."""
    if rule.kind != SERVER or not rule.bans or rule.entity is None:
        return None
    # Synapse matches an ACL entry against the host, port ignored: an entity's port is dropped,
    # and one matching our own host would deny our server whatever its port.
    entry = host_of(rule.entity)
    if glob_match(entry, host_of(own_server)) or entry in ("*", "?", ""):
        return None
    return entry
