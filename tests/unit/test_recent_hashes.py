"""The hashes the pipeline remembers (bot/record/media.py RecentHashes): what the intake read
of an event's media answers for it only while the cache has forgotten nothing since, so that
media hashed after that read is never taken for unknown."""

from __future__ import annotations

from bot.model import Hashes
from bot.record.journal import MediaSeen
from bot.record.media import RecentHashes

ONE, TWO = "mxc://example.org/one", "mxc://example.org/two"


def hashes(n: int) -> Hashes:
    return Hashes(sha256=f"{n:064x}", md5=None, size=n)


def test_the_cache_answers_first_then_the_intakes_read_then_nobody() -> None:
    recent = RecentHashes(4)
    seen = MediaSeen({ONE: hashes(1), TWO: None}, forgotten=recent.forgotten)
    assert recent.lookup(ONE, seen) == (True, hashes(1))
    assert recent.lookup(TWO, seen) == (True, None)  # unknown at intake: hash it
    assert recent.lookup("mxc://example.org/other", seen) == (False, None)  # not read: ask the database
    assert recent.lookup(ONE, None) == (False, None)
    recent.put(TWO, hashes(2))  # hashed since the intake read it
    assert recent.lookup(TWO, seen) == (True, hashes(2))


def test_once_the_cache_forgets_anything_an_older_read_is_not_trusted() -> None:
    recent = RecentHashes(2)
    seen = MediaSeen({ONE: None}, forgotten=recent.forgotten)
    recent.put(ONE, hashes(1))  # hashed by another event after the intake's read
    recent.put("mxc://example.org/a", hashes(3))
    assert recent.lookup(ONE, seen) == (True, hashes(1))
    recent.put("mxc://example.org/b", hashes(4))  # the cache is full: ONE is forgotten
    assert len(recent) == 2 and recent.forgotten == 1 and recent.get(ONE) is None
    # The read said "unknown" but ONE has been hashed since: only the database knows now.
    assert recent.lookup(ONE, seen) == (False, None)
    fresh = MediaSeen({ONE: hashes(1)}, forgotten=recent.forgotten)
    assert recent.lookup(ONE, fresh) == (True, hashes(1))
