"""A tiny third-party classifier plugin, written as a plugin author would.

It flags images with more pixels than a configured limit, from the hashes' metadata alone
(so it never sees the media's bytes). A real package declares it in its pyproject.toml:

    [project.entry-points."modbot.classifiers"]
    dimensions = "modbot_example_plugin:DimensionsClassifier"
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bot.classify.base import Classifier, ClassifierContext, MediaInput
from bot.model import Classification, MatchKind, Verdict


class DimensionsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_pixels: int = Field(ge=1)
    label: str = "oversized"


class DimensionsClassifier(Classifier):
    Settings = DimensionsSettings

    def __init__(self, settings: DimensionsSettings) -> None:
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: DimensionsSettings, context: ClassifierContext) -> DimensionsClassifier:
        instance = cls(settings)
        instance.name = context.name
        return instance

    async def classify(self, media: MediaInput) -> Classification:
        hashes = media.hashes
        if hashes.width is None or hashes.height is None:
            return Classification(self.name, skipped="not an image")
        pixels = hashes.width * hashes.height
        if pixels <= self.settings.max_pixels:
            return Classification(self.name)
        verdict = Verdict(
            classifier=self.name,
            label=self.settings.label,
            kind=MatchKind.EXACT,
            details={"pixels": pixels, "max_pixels": self.settings.max_pixels},
        )
        return Classification(self.name, (verdict,))
