"""Building classifiers against the fake services, with a clock and a sleep that the test
drives (retries and backoff never wait for real; only timeouts use real time)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.classify.base import MediaInput
from bot.classify.registry import ClassifierRegistry, ClassifierSlot, build_classifiers, guard_for
from bot.config import ClassifierConfig
from bot.hashing import compute_hashes
from bot.model import Hashes, MatchKind
from bot.demo.samples import encode, make_photo
from fake_services import FakeArachnid, FakeHma, FakeScanner, FakeService, KnownMedia
from fake_vendors import FakeContentSafety, FakeHive, FakePhotoDna

KNOWN_PHOTO = make_photo(seed=7)
KNOWN = encode(KNOWN_PHOTO, "PNG")
NEAR = encode(KNOWN_PHOTO, "JPEG", quality=60)  # other bytes, a PDQ a few bits away
CLEAN = encode(make_photo(seed=8), "PNG")
LABEL = "csam-test"  # benign stand-in: the "known" image is generated


@functools.cache
def _hashes(data: bytes) -> Hashes:
    return compute_hashes(data)


def media(data: bytes, mimetype: str | None = "image/png") -> MediaInput:
    return MediaInput(_hashes(data), data, mimetype)


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps (or the test says)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def build(
    type_name: str,
    settings: Mapping[str, Any],
    *,
    name: str | None = None,
    time: FakeTime | None = None,
    environ: Mapping[str, str] | None = None,
    registry: ClassifierRegistry | None = None,
    sandbox: Any = None,
    **config: Any,
) -> ClassifierSlot:
    """One classifier as the config would build it; guard timing from `time`."""
    entry = ClassifierConfig.model_validate({"name": name or type_name, "type": type_name, "settings": dict(settings), **config})
    fake_time = time or FakeTime()

    def guard_factory(c: Any) -> Any:
        return guard_for(c, clock=fake_time.clock, sleep=fake_time.sleep, rand=lambda: 1.0)

    (slot,) = build_classifiers(
        [entry], registry or ClassifierRegistry.discover(), environ=environ or {}, guard_factory=guard_factory,
        sandbox=sandbox,
    )
    return slot


@dataclass
class AdapterCase:
    """One adapter in one mode against its fake, and what it should say of the test images."""

    id: str
    fake: FakeService
    type_name: str
    settings: dict[str, Any]
    environ: dict[str, str]
    secret: str  # must never show in errors
    exact_kind: MatchKind  # the kind a verdict on KNOWN has
    sends_media: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self, time: FakeTime | None = None, *, settings: Mapping[str, Any] | None = None, **config: Any) -> ClassifierSlot:
        """The classifier; `settings` are added to the case's own."""
        merged = {**self.settings, **(settings or {})}
        return build(self.type_name, merged, name=self.id, time=time, environ=self.environ, **config)

    def teach(self, data: bytes) -> None:
        """Make the fake service know `data` (as LABEL)."""
        known = KnownMedia.of(data, LABEL)
        if isinstance(self.fake, FakeHma):
            self.fake.add_media(LABEL, known)
        elif isinstance(self.fake, FakeContentSafety):
            self.fake.priorities.append((known, "VERY_HIGH"))
        else:
            self.fake.known.append(known)  # type: ignore[attr-defined]


ADAPTERS = [
    "arachnid-media", "arachnid-pdq", "hma-hashes", "hma-media", "http-hashes", "http-media",
    "photodna-media", "contentsafety-media", "hive-media",
]  # fmt: skip


async def start_case(case_id: str) -> AdapterCase:
    vendor, mode = case_id.split("-")
    if vendor == "arachnid":
        arachnid = FakeArachnid()
        url = await arachnid.start()
        return AdapterCase(
            case_id, arachnid, "arachnid",
            {"url": url, "mode": mode, "username": arachnid.username, "password_env": "ARACHNID_PASSWORD"},
            {"ARACHNID_PASSWORD": arachnid.password}, arachnid.password,
            MatchKind.EXACT if mode == "media" else MatchKind.NEAR, mode == "media",
        )  # fmt: skip
    if vendor == "hma":
        hma = FakeHma()
        url = await hma.start()
        return AdapterCase(
            case_id, hma, "hma", {"url": url, "mode": mode, "token_env": "HMA_TOKEN"}, {"HMA_TOKEN": "hma-proxy-token"},
            "hma-proxy-token", MatchKind.EXACT if mode == "hashes" else MatchKind.NEAR, mode == "media",
        )  # fmt: skip
    if vendor == "photodna":
        photodna = FakePhotoDna()
        await photodna.start()
        return AdapterCase(
            case_id, photodna, "photodna", {"url": photodna.base, "subscription_key_env": "PHOTODNA_KEY", "label": LABEL},
            {"PHOTODNA_KEY": photodna.key}, photodna.key, MatchKind.NEAR, True,
        )  # fmt: skip
    if vendor == "contentsafety":
        safety = FakeContentSafety()
        url = await safety.start()
        return AdapterCase(
            case_id, safety, "google_content_safety", {"url": url + "/v1beta1", "api_key_env": "GCS_KEY", "label": LABEL},
            {"GCS_KEY": safety.key}, safety.key, MatchKind.NEAR, True,
        )  # fmt: skip
    if vendor == "hive":
        hive = FakeHive()
        url = await hive.start()
        return AdapterCase(
            case_id, hive, "hive", {"url": url, "api_key_env": "HIVE_KEY", "labels": {LABEL: LABEL}},
            {"HIVE_KEY": hive.key}, hive.key, MatchKind.EXACT, True,
        )  # fmt: skip
    scanner = FakeScanner()
    url = await scanner.start()
    return AdapterCase(
        case_id, scanner, "http", {"url": url + "/scan", "mode": mode, "token_env": "SCANNER_TOKEN"},
        {"SCANNER_TOKEN": scanner.token}, scanner.token, MatchKind.EXACT, mode == "media",
    )  # fmt: skip


PLUGINS_DIR = Path(__file__).parent / "plugins"


def install_example_plugin(site: Path, *, type_name: str = "dimensions", target: str = "modbot_example_plugin:DimensionsClassifier") -> Path:
    """Make tests/plugins/modbot_example_plugin an installed distribution, without pip.

    importlib.metadata finds distributions by scanning sys.path entries for
    `<name>-<version>.dist-info` directories, and reads entry points from their
    `entry_points.txt`: a directory written here and put on sys.path (or PYTHONPATH, for
    a child process) is an installed distribution as far as entry points are concerned,
    exactly what `pip install` would leave, in milliseconds instead of seconds.
    Returns `site`; the plugin's code is imported from PLUGINS_DIR, which must be on the
    path too.
    """
    dist = site / "modbot_example_plugin-1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: modbot-example-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[modbot.classifiers]\n{type_name} = {target}\n")
    return site
