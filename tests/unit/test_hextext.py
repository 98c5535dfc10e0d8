"""Hex texts from a sandbox worker (bot/hashing/hextext.py): lower-case hex digits of the
length asked, and nothing else, or no bytes at all."""

from __future__ import annotations

import pytest

from bot.hashing.hextext import hex_bytes


def test_lower_case_hex_texts_of_the_length_asked_give_their_bytes() -> None:
    assert hex_bytes(["00ff", "a1b2"], 4) == bytes([0, 255, 0xA1, 0xB2])
    assert hex_bytes([], 4) == b""


@pytest.mark.parametrize("texts", [
    ["00FF"],  # upper case
    ["00 f"],  # whitespace, which bytes.fromhex would skip
    ["0g0f"],  # not a digit
    ["00ff", "00f"],  # one short
    ["00ff0"],  # one long
    ["00ff", 12],  # not a text
])
def test_anything_else_gives_none(texts: list) -> None:  # type: ignore[type-arg]
    assert hex_bytes(texts, 4) is None
