"""The classifier interface: what every way of recognising known media looks like.

A classifier is a configured instance with an async `classify(media)`. It receives a
`MediaInput` rather than bare `Hashes` so that classifiers needing the bytes (a remote
scanning service, a model) fit the same interface as those working from hashes alone:
the pipeline passes `data` only to classifiers that declare `needs_data = True`, and drops
the bytes as soon as those are done.

A classifier is a plugin: it declares its settings as a pydantic model (`Settings`), is
built from them by `from_settings` with a `ClassifierContext` (its configured name, the
ServiceGuard that gives it timeouts, retries, a circuit breaker and limits, the
environment for secrets), and is found by the registry through the `modbot.classifiers`
entry point group. See docs/classifiers.md.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from bot.classify.resilience import ServiceGuard
from bot.configdetect import DEFAULT_PDQ_MIN_QUALITY
from bot.model import Classification, Hashes, Verdict

if TYPE_CHECKING:
    from bot.lists.loaded import LoadedList


@dataclass(frozen=True)
class MediaInput:
    """What a classifier is given about one piece of media."""

    hashes: Hashes
    # The downloaded bytes; None unless the classifier declared `needs_data`.
    data: bytes | None = None
    mimetype: str | None = None

    def __repr__(self) -> str:  # never put media bytes in logs or tracebacks
        size = None if self.data is None else len(self.data)
        return (
            f"MediaInput(sha256={self.hashes.sha256!r}, data={size} bytes,"
            f" mimetype={self.mimetype!r})"
        )


class ClassifierSetupError(Exception):
    """A classifier cannot be built from its configuration (a missing secret, a bad value)."""


class NoSettings(BaseModel):
    """The settings of a classifier that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ClassifierContext:
    """What a classifier is given, besides its settings, when it is built."""

    name: str  # the configured name: verdicts, policy rules and the audit use it
    guard: ServiceGuard  # timeouts, retries, circuit breaker, concurrency and rate limits
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)  # for *_env secrets
    base_dir: Path = Path(".")  # relative paths in settings are relative to this
    hash_lists: tuple[LoadedList, ...] = ()  # the loaded `hash_lists:` of the config
    pdq_min_quality: int = DEFAULT_PDQ_MIN_QUALITY  # the config's `hashlist.pdq_min_quality`
    # Where the running bot keeps its lists (a ListRegistry, reloaded while running) and
    # its allowlist; when set they take the place of `hash_lists`.
    list_source: Any = None
    allowlist: Any = None
    # The hashing sandbox (bot/hashing/pool.py), for a classifier that must decode media to
    # send it (re-encode, resize); None where there is none (then it must not decode).
    sandbox: Any = None


def resolve_secret(value: SecretStr | None, env: str | None, environ: Mapping[str, str], key: str) -> str | None:
    """A secret given inline (`key`) or by environment variable name (`key_env`)."""
    if value is not None and env is not None:
        raise ClassifierSetupError(f"give either {key} or {key}_env, not both")
    if env is not None:
        secret = environ.get(env)
        if not secret:
            raise ClassifierSetupError(f"{key}_env: the environment variable {env} is not set")
        return secret
    return value.get_secret_value() if value is not None else None


class Classifier(ABC):
    """Recognises known media.

    `name` defaults to the class name without its "Classifier" suffix, lower-cased
    (`HashListClassifier` -> "hashlist"); an instance built from the config takes the
    configured name, which appears in verdicts, policy rules, the audit and logs.

    `classify` must not raise for anything about the media or a remote service: it returns
    a `Classification` whose `error` says what went wrong (verdicts found before the error
    may still be returned alongside it), or whose `skipped` says why there was nothing to
    check. Errors must never contain credentials.
    """

    name: str
    # True if `classify` needs `MediaInput.data`; hash-only classifiers never see the bytes.
    # An instance may set its own (a service used in upload mode or in hash-only mode).
    needs_data: bool = False
    # The settings model: the `settings:` mapping of the classifier's config entry.
    Settings: ClassVar[type[BaseModel]] = NoSettings
    # How long a verdict is reused for the same SHA-256 unless the config says otherwise.
    # 0 for local classifiers (matching again is cheaper than a database read).
    default_cache_ttl: ClassVar[float] = 0
    # Requests a second when the config's `rate_limit` is null: a service's documented limit.
    default_rate_limit: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = re.sub(r"Classifier$", "", cls.__name__).lower()

    @classmethod
    def review_only_verdicts(cls, settings: Any, name: str) -> tuple[Verdict, ...]:
        """The verdicts of this classifier that may only lead to a review (a hold or a flag),
        never to an action taken without a person: a service whose terms require human
        review, a model's score. Each is a template with the fields policy rules match on
        (classifier, label, kind, list); the config refuses a policy rule that could act on
        one otherwise (bot/reviewonly.py). Default: none."""
        return ()

    @classmethod
    def from_settings(cls, settings: Any, context: ClassifierContext) -> Classifier:
        """Build an instance from validated `Settings`. The default takes no arguments."""
        instance = cls()
        instance.name = context.name
        return instance

    async def start(self) -> None:
        """Open what `classify` needs (HTTP sessions...); called once, in the event loop."""

    async def close(self) -> None:
        """Release what `start` opened."""

    @abstractmethod
    async def classify(self, media: MediaInput) -> Classification:
        """Return the verdicts for `media` (none when nothing is recognised)."""
