"""The configuration of what modbot matches media against: hash lists and classifiers.

Sections of bot/configmodel.py's `Config` (`hashlist`, `hash_lists`, `classifiers`), kept apart
because they grow with every kind of hash and service. pydantic models, frozen and strict about
unknown keys, like the rest of the configuration.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from bot.configtypes import ResolvedPath, Section
from bot.lists.vpdq import DEFAULT_MAX_FRAMES, MAX_FRAMES_CEILING
from bot.yamlload import LocatedValueError


# The one default of `hashlist.pdq_min_quality`, for every matcher that has one (live
# matching, retroactive matching, the command line): no floor, low-quality hashes match
# within the stricter bounds of bot/classify/pdqrule.py. Two defaults drifted apart once
# (retroactive matching kept the old cliff of 50 while live matching had none).
DEFAULT_PDQ_MIN_QUALITY = 0


class HashlistSettings(Section):
    # Operator override: no PDQ near match below this quality (50: the old cliff).
    pdq_min_quality: int = Field(default=DEFAULT_PDQ_MIN_QUALITY, ge=0, le=100)
    # Seconds between checks of the list files for changes (reloaded without a restart).
    reload_interval: float = Field(default=5.0, gt=0)
    # A reloaded list that loses more than this share of its entries is held until fixed or
    # accepted (`modbot hashes accept NAME`), as is one left empty or mostly rejected lines.
    max_drop_share: float = Field(default=0.25, gt=0, le=1)


class ThresholdsConfig(Section):
    """Greatest Hamming distance counted as a near match, per perceptual hash type."""

    pdq: int = Field(default=31, ge=0, le=256)
    phash: int = Field(default=8, ge=0, le=64)
    # A video matches a vPDQ entry when at least this share (percent) of its frames (quality
    # >= 50, each hash once) is within `pdq` of one of the entry's, and at least
    # vpdq_compared_percent of the entry's frames are of one of the video's: HMA's defaults.
    vpdq_query_percent: float = Field(default=80.0, ge=0, le=100)
    vpdq_compared_percent: float = Field(default=0.0, ge=0, le=100)


class HashListConfig(Section):
    name: str = Field(min_length=1)
    path: ResolvedPath
    label: str = Field(min_length=1)  # for entries without a label; defaults to the name
    enabled: bool = True
    thresholds: ThresholdsConfig = ThresholdsConfig()
    # The most frames a vPDQ entry of this list may have (a frame a second: 3600 is an hour);
    # a longer entry is a rejected line, so one line cannot grow the index without bound.
    # Raise it for a list of longer videos.
    max_vpdq_frames: int = Field(default=DEFAULT_MAX_FRAMES, ge=1, le=MAX_FRAMES_CEILING)

    @model_validator(mode="before")
    @classmethod
    def _default_label(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("label") is None and "name" in data:
            data = {**data, "label": data["name"]}
        return data


def unique_list_names(lists: tuple[HashListConfig, ...]) -> tuple[HashListConfig, ...]:
    seen: set[str] = set()
    for index, hash_list in enumerate(lists):
        if hash_list.name in seen:
            raise LocatedValueError(f"duplicate hash list name {hash_list.name!r}", (index, "name"))
        seen.add(hash_list.name)
    return lists


class CircuitBreakerConfig(Section):
    failures: int = Field(default=5, ge=1)  # failures in a row that open the circuit
    reset_after: float = Field(default=60, gt=0)  # seconds before a probe is let through


_CLASSIFIER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ClassifierConfig(Section):
    """One classifier: a registered type, its own `settings:`, and how to treat its service."""

    # Unique; verdicts, policy rules (match.classifier), the audit and notices use it.
    name: str = Field(min_length=1, max_length=64)
    # A type registered in the `modbot.classifiers` entry point group; default: the name.
    type: str = Field(min_length=1)
    enabled: bool = True
    timeout: float = Field(default=10, gt=0)  # seconds per request
    retries: int = Field(default=2, ge=0, le=10)  # of timeouts, 429 and 5xx
    backoff: float = Field(default=0.5, ge=0)  # first retry delay; doubles, with jitter
    max_backoff: float = Field(default=30, ge=0)  # longest wait between retries
    concurrency: int = Field(default=4, ge=1)  # requests in flight at once
    rate_limit: float | None = Field(default=None, gt=0)  # requests a second; null: no limit
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    # Seconds a verdict is reused for the same file (SHA-256); 0: never. Default: a day
    # for services, none for the hash-list classifier.
    cache_ttl: float | None = Field(default=None, ge=0)
    settings: dict[str, Any] = {}  # validated by the type's own settings model

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") is None and "name" in data:
            data = {**data, "type": data["name"]}
        if isinstance(data, dict) and data.get("settings") is None and "settings" in data:
            data = {**data, "settings": {}}
        return data

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _CLASSIFIER_NAME.match(name):
            raise ValueError(f"use letters, digits, '.', '_' and '-' only, got {name!r}")
        return name


def unique_classifier_names(classifiers: tuple[ClassifierConfig, ...]) -> tuple[ClassifierConfig, ...]:
    seen: set[str] = set()
    for index, classifier in enumerate(classifiers):
        if classifier.name in seen:
            raise LocatedValueError(f"duplicate classifier name {classifier.name!r}", (index, "name"))
        seen.add(classifier.name)
    return classifiers
