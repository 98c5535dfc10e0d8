"""The allowlist (PURE): an exact SHA-256, or a PDQ within 16 bits, is never acted on."""

from __future__ import annotations

import pytest

from bot.allowlist import ALLOW_PDQ_DISTANCE, Allowlist
from bot.hashing import hamming
from bot.model import Hashes

SHA = "5a" * 32
OTHER_SHA = "6b" * 32
PDQ = "c3" * 32  # an allowlisted PDQ


def flip(hex_hash: str, bits: int) -> str:
    """`hex_hash` with its lowest `bits` bits flipped: exactly `bits` away."""
    return f"{int(hex_hash, 16) ^ ((1 << bits) - 1):0{len(hex_hash)}x}"


def media(sha256: str = OTHER_SHA, pdq: str | None = None) -> Hashes:
    return Hashes(sha256=sha256, md5=None, size=1024, pdq=pdq)


ALLOW = Allowlist.of([("sha256", SHA), ("pdq", PDQ)])


def test_flip_makes_the_distance_it_says() -> None:
    assert [hamming(PDQ, flip(PDQ, n)) for n in (0, 1, 16, 17, 256)] == [0, 1, 16, 17, 256]


@pytest.mark.parametrize(
    ("hashes", "reason"),
    [
        (media(SHA), f"allowlisted sha256 {SHA}"),
        (media(SHA, pdq=flip(PDQ, 200)), f"allowlisted sha256 {SHA}"),  # the exact hash wins
        (media(pdq=PDQ), f"allowlisted pdq {PDQ} (distance 0)"),
        (media(pdq=flip(PDQ, 1)), f"allowlisted pdq {PDQ} (distance 1)"),
        (media(pdq=flip(PDQ, ALLOW_PDQ_DISTANCE)), f"allowlisted pdq {PDQ} (distance 16)"),
        (media(pdq=flip(PDQ, ALLOW_PDQ_DISTANCE + 1)), None),
        (media(pdq=flip(PDQ, 31)), None),  # close enough to match a list, too far to be excused
        (media(pdq=flip(PDQ, 256)), None),
        (media(), None),
        (media(pdq=None), None),
        (media(SHA.upper()), None),  # hashes are lower-case hex throughout; the store folds case
    ],
)
def test_what_the_allowlist_excuses(hashes: Hashes, reason: str | None) -> None:
    assert ALLOW.reason(hashes) == reason


def test_the_distance_is_tighter_than_matching() -> None:
    assert ALLOW_PDQ_DISTANCE == 16


def test_the_nearest_entry_is_not_required_any_within_reach_will_do() -> None:
    near, far = flip(PDQ, 3), flip(PDQ, 100)
    allow = Allowlist.of([("pdq", far), ("pdq", near)])
    assert allow.reason(media(pdq=PDQ)) == f"allowlisted pdq {near} (distance 3)"


def test_a_sha256_entry_never_matches_a_pdq_and_the_reverse() -> None:
    allow = Allowlist.of([("sha256", PDQ), ("pdq", SHA)])
    assert allow.reason(media(OTHER_SHA, pdq=PDQ)) is None
    assert allow.reason(media(SHA)) is None


def test_built_from_entries() -> None:
    allow = Allowlist.of([("sha256", SHA), ("sha256", SHA), ("pdq", PDQ), ("md5", "ab" * 16)])
    assert allow.sha256 == frozenset({SHA})
    assert allow.pdq == (PDQ,)
    assert len(allow) == 2  # kinds it does not know are left out
    assert len(Allowlist()) == 0
    assert Allowlist().reason(media(SHA, pdq=PDQ)) is None
