"""The contract every classifier keeps, as a test suite to inherit.

A classifier's test class subclasses ClassifierContract and provides three fixtures:
`built` (a ClassifierSlot from its config, started; yielding it, closing it after),
`known` (a MediaInput it recognises) and `unknown` (one it does not). Remote classifiers
also override `unreachable` (a slot whose service does not answer). Plugin authors can copy
this file next to their tests and do the same.
"""

from __future__ import annotations

import dataclasses

import pytest

from bot.classify.base import Classifier, MediaInput
from bot.classify.registry import ClassifierSlot
from bot.model import Classification, MatchKind, Verdict

# What the database keeps of a verdict (bot/record/tables.py): longer values could not be stored.
_LIMITS = {"label": 255, "list_name": 255, "hash_type": 16, "matched_hash": 64}


def check_classification(result: Classification, name: str) -> None:
    assert isinstance(result, Classification)
    assert result.classifier == name
    assert not (result.error and result.skipped), "a scan either failed or was skipped"
    for verdict in result.verdicts:
        check_verdict(verdict, name)


def check_verdict(verdict: Verdict, name: str) -> None:
    assert verdict.classifier == name
    assert verdict.label
    assert isinstance(verdict.kind, MatchKind)
    for field, limit in _LIMITS.items():
        value = getattr(verdict, field)
        assert value is None or (isinstance(value, str) and len(value) <= limit), (field, value)
    assert verdict.distance is None or (isinstance(verdict.distance, int) and verdict.distance >= 0)
    assert verdict.score is None or isinstance(verdict.score, float | int)
    assert isinstance(verdict.details, dict)


class ClassifierContract:
    """Inherit, and provide the fixtures `built`, `known`, `unknown` (and `unreachable`)."""

    secrets: tuple[str, ...] = ()  # values that must never show in errors or reprs

    async def test_recognises_known_media(self, built: ClassifierSlot, known: MediaInput) -> None:
        result = await built.classifier.classify(known)
        check_classification(result, built.name)
        assert result.error is None and result.verdicts

    async def test_says_nothing_of_unknown_media(self, built: ClassifierSlot, unknown: MediaInput) -> None:
        result = await built.classifier.classify(unknown)
        check_classification(result, built.name)
        assert result.error is None and result.verdicts == ()

    async def test_a_hash_only_classifier_does_not_need_the_bytes(self, built: ClassifierSlot, known: MediaInput) -> None:
        if built.classifier.needs_data:
            pytest.skip("needs the bytes")
        with_bytes = await built.classifier.classify(known)
        without = await built.classifier.classify(dataclasses.replace(known, data=None))
        assert without.verdicts == with_bytes.verdicts and without.error is None

    async def test_missing_bytes_are_an_error_not_an_exception(self, built: ClassifierSlot, known: MediaInput) -> None:
        result = await built.classifier.classify(dataclasses.replace(known, data=None))
        check_classification(result, built.name)
        if built.classifier.needs_data:
            assert result.error or result.skipped

    @pytest.fixture
    def unreachable(self) -> ClassifierSlot | None:
        """Remote classifiers override this: a slot whose service does not answer."""
        return None

    async def test_never_raises_when_the_service_is_down(self, unreachable: ClassifierSlot | None, known: MediaInput) -> None:
        if unreachable is None:
            pytest.skip("no service")
        slot = unreachable
        result = await slot.classifier.classify(known)
        check_classification(result, slot.name)
        assert result.error and result.verdicts == ()
        for secret in self.secrets:
            assert secret not in result.error

    def test_its_settings_refuse_unknown_keys(self, built: ClassifierSlot) -> None:
        settings = type(built.classifier).Settings
        assert settings.model_config.get("extra") == "forbid", "a typo in a setting must be an error"

    def test_its_repr_holds_no_secret(self, built: ClassifierSlot) -> None:
        text = repr(built.classifier) + repr(vars(built.classifier))
        for secret in self.secrets:
            assert secret not in text

    def test_it_is_a_classifier_with_a_name(self, built: ClassifierSlot) -> None:
        assert isinstance(built.classifier, Classifier)
        assert built.name and type(built.classifier).name
