"""How deeply a JSON document nests, measured without parsing it and without recursion.

Python's JSON parser recurses once per level: a body of 100,000 `[` raises RecursionError
inside it. The intake measures the nesting of a transaction's bytes first and parses only
documents it knows to be shallow enough. Linear in the size of the body and mostly at C
speed: strings are skipped with one anchored regex each (so a hostile run of quotes and
backslashes cannot make it quadratic), and the brackets between two strings are counted
with bytes methods, or summed with numpy when they might go past the limit.
"""

from __future__ import annotations

import re

import numpy as np

# The rest of a string after its opening quote, up to and including the closing quote
# (the "unrolled loop" form: no backtracking on long strings).
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Everything but brackets, deleted to leave a segment's brackets in order.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Brackets to steps: an opening one +1, a closing one -1.
_STEP = np.zeros(256, dtype=np.int64)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


def exceeds_depth(body: bytes, limit: int) -> bool:
    """Whether `body` nests arrays and objects more than `limit` levels deep.

    Brackets inside strings do not count. Malformed input is measured as far as it goes
    (an unterminated string ends the scan); the parser reports what else is wrong with it.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # nothing nests deeper than it opens: the usual transaction, at C speed
    depth = 0
    pos = 0
    while True:
        quote = body.find(b'"', pos)
        segment = body[pos:] if quote < 0 else body[pos:quote]
        opens = segment.count(b"[") + segment.count(b"{")
        if depth + opens > limit:
            brackets = np.frombuffer(segment.translate(None, _NOT_BRACKETS), dtype=np.uint8)
            if depth + int(np.cumsum(_STEP[brackets]).max()) > limit:
                return True
        depth += opens - segment.count(b"]") - segment.count(b"}")
        if quote < 0:
            return False
        rest = _STRING_REST.match(body, quote + 1)
        if rest is None:
            return False
        pos = rest.end()
