"""The classifier interface: what every way of recognising known media looks like.

A classifier is a configured instance with an async `classify(media)`. It receives a
`MediaInput` rather than bare `Hashes` so that classifiers needing the bytes (a remote
scanning service, a model) fit the same interface as those working from hashes alone:
the pipeline passes `data` only to classifiers that declare `needs_data = True`, and drops
the bytes as soon as those are done.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from bot.model import Classification, Hashes


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


class Classifier(ABC):
    """Recognises known media.

    `name` defaults to the class name without its "Classifier" suffix, lower-cased
    (`HashListClassifier` -> "hashlist"); it appears in verdicts, config and logs.

    `classify` must not raise for anything about the media or a remote service: it returns
    a `Classification` whose `error` says what went wrong (verdicts found before the error
    may still be returned alongside it).
    """

    name: ClassVar[str]
    # True if `classify` needs `MediaInput.data`; hash-only classifiers never see the bytes.
    needs_data: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = re.sub(r"Classifier$", "", cls.__name__).lower()

    @abstractmethod
    async def classify(self, media: MediaInput) -> Classification:
        """Return the verdicts for `media` (none when nothing is recognised)."""
