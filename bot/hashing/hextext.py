"""Lower-case hex texts, checked in C: what a sandbox worker sends is checked before use.

A set lookup per digit (`frozenset(...).issuperset(text)`) cost ~25 us of the bot's CPU for
the 2,816 digits of an image's crop guesses, ~50 for their tiers' 5,632 (issue 16); the
same check through bytes.fromhex and str.lower takes a few.

Pure: strings in, bytes out.
"""

from __future__ import annotations

from collections.abc import Sequence


def hex_bytes(texts: Sequence[str], length: int) -> bytes | None:
    """The bytes `texts` spell when each is `length` lower-case hex digits; None otherwise."""
    if not all(isinstance(t, str) for t in texts) or not set(map(len, texts)) <= {length}:
        return None
    joined = "".join(texts)
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    # fromhex skips whitespace and reads upper case: neither is what a worker writes.
    return raw if len(raw) * 2 == len(joined) and joined.lower() == joined else None
