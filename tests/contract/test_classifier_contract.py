"""Every shipped classifier, and the example plugin, kept to the shared contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.classify.base import MediaInput
from bot.classify.registry import ClassifierRegistry, ClassifierSlot, build_classifiers
from bot.config import ClassifierConfig
from bot.demo.waiting import free_port
from bot.hashing import compute_hashes
from bot.lists.format import HashEntry
from bot.lists.loaded import LoadedList
from classifier_contract import ClassifierContract
from classifier_kit import CLEAN, KNOWN, PLUGINS_DIR, build, install_example_plugin, media, start_case


@pytest.fixture
def known() -> MediaInput:
    return media(KNOWN)


@pytest.fixture
def unknown() -> MediaInput:
    return media(CLEAN)


class TestHashList(ClassifierContract):
    @pytest.fixture
    async def built(self) -> AsyncIterator[ClassifierSlot]:
        hashes = compute_hashes(KNOWN)
        lists = (LoadedList.from_entries("known", [HashEntry("pdq", hashes.pdq or "", "csam-test")], label="csam-test"),)
        (slot,) = build_classifiers([ClassifierConfig(name="lists", type="hashlist")], ClassifierRegistry.discover(), hash_lists=lists)
        yield slot


class RemoteContract(ClassifierContract):
    case_id = ""

    @pytest.fixture
    async def case(self):  # type: ignore[no-untyped-def]
        case = await start_case(self.case_id)
        case.teach(KNOWN)
        try:
            yield case
        finally:
            await case.fake.stop()

    @pytest.fixture
    async def built(self, case) -> AsyncIterator[ClassifierSlot]:  # type: ignore[no-untyped-def]
        self.secrets = (case.secret,)
        slot = case.build()
        await slot.classifier.start()
        try:
            yield slot
        finally:
            await slot.classifier.close()

    @pytest.fixture
    async def unreachable(self, case) -> AsyncIterator[ClassifierSlot]:  # type: ignore[no-untyped-def]
        self.secrets = (case.secret,)
        settings = dict(case.settings, url=f"http://127.0.0.1:{free_port()}/scan")
        slot = build(case.type_name, settings, name=case.id, environ=case.environ, retries=0, timeout=2)
        await slot.classifier.start()
        try:
            yield slot
        finally:
            await slot.classifier.close()


class TestArachnidMedia(RemoteContract):
    case_id = "arachnid-media"


class TestArachnidPdq(RemoteContract):
    case_id = "arachnid-pdq"


class TestHmaHashes(RemoteContract):
    case_id = "hma-hashes"


class TestHmaMedia(RemoteContract):
    case_id = "hma-media"


class TestHttpHashes(RemoteContract):
    case_id = "http-hashes"


class TestHttpMedia(RemoteContract):
    case_id = "http-media"


class TestPhotoDna(RemoteContract):
    case_id = "photodna-media"


class TestGoogleContentSafety(RemoteContract):
    case_id = "contentsafety-media"


class TestHive(RemoteContract):
    case_id = "hive-media"


class TestExamplePlugin(ClassifierContract):
    """The tiny third-party plugin, installed for the test through its entry point."""

    @pytest.fixture
    async def built(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ClassifierSlot]:
        monkeypatch.syspath_prepend(str(install_example_plugin(tmp_path / "site")))
        monkeypatch.syspath_prepend(str(PLUGINS_DIR))
        entry = ClassifierConfig(name="big", type="dimensions", settings={"max_pixels": 400_000})
        (slot,) = build_classifiers([entry], ClassifierRegistry.discover())
        yield slot

    @pytest.fixture
    def unknown(self) -> MediaInput:
        from bot.demo.samples import encode, make_photo

        return media(encode(make_photo(seed=8, size=(400, 300)), "PNG"))
