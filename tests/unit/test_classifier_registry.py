"""Finding classifier types (built-in and plugins), the `classifiers:` config, and building them."""

from __future__ import annotations

import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from bot.classify.arachnid import ArachnidClassifier
from bot.classify.base import ClassifierSetupError
from bot.classify.hashlist import HashListClassifier
from bot.lists.loaded import LoadedList
from bot.classify.hma import HmaClassifier
from bot.classify.http_scanner import HttpScannerClassifier
from bot.classify.registry import (
    ClassifierRegistry,
    UnknownClassifierType,
    build_classifiers,
    effective_classifier_configs,
)
from bot.classify.runner import ClassifierRunner
from bot.config import ClassifierConfig, ConfigError, load_config
from bot.lists.format import HashEntry
from bot.model import EventContext, MatchKind
from bot.policy import decide
from classifier_kit import CLEAN, KNOWN, PLUGINS_DIR, install_example_plugin, media

BASE = """\
homeserver: {url: "http://127.0.0.1:8008", domain: example.org}
appservice: {as_token: secret-as, hs_token: secret-hs}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + textwrap.dedent(text))
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.messages


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example plugin, installed for this test only (see install_example_plugin)."""
    site = install_example_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    return site


# --- the registry ------------------------------------------------------------------------


def test_the_built_in_types() -> None:
    registry = ClassifierRegistry.discover()
    assert {"hashlist", "arachnid", "hma", "http"} <= set(registry.names())
    assert registry.get("hashlist") is HashListClassifier
    assert registry.get("arachnid") is ArachnidClassifier
    assert registry.get("hma") is HmaClassifier
    assert registry.get("http") is HttpScannerClassifier


def test_every_built_in_type_is_declared_as_an_entry_point_in_pyproject() -> None:
    """The built-ins are found the way plugins are: through the entry points pip installs
    from pyproject.toml (BUILTIN only covers an install whose metadata predates a type)."""
    import tomllib

    from bot.classify.registry import BUILTIN, ENTRY_POINT_GROUP

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == BUILTIN
    # Installed metadata with exactly these entry points gives the same classes, no conflict.
    eps = [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in declared.items()]
    registry = ClassifierRegistry.discover(eps)
    for name in ("photodna", "google_content_safety", "hive"):
        assert registry.get(name).__module__ == f"bot.classify.{name}"


def test_an_unknown_type_gets_a_suggestion() -> None:
    with pytest.raises(UnknownClassifierType, match=r"unknown classifier type 'arachnd' \(did you mean 'arachnid'\?"):
        ClassifierRegistry.discover().get("arachnd")


def test_an_installed_plugin_is_found_through_its_entry_point(plugin: Path) -> None:
    registry = ClassifierRegistry.discover()
    assert "dimensions" in registry.names()
    assert registry.get("dimensions").__name__ == "DimensionsClassifier"


def test_a_plugin_may_not_take_a_built_in_name() -> None:
    squatter = EntryPoint("hashlist", "somewhere:Else", "modbot.classifiers")
    registry = ClassifierRegistry.discover([squatter])
    with pytest.raises(UnknownClassifierType, match="both claim the type 'hashlist'"):
        registry.get("hashlist")


def test_a_broken_plugin_is_reported_when_used() -> None:
    broken = EntryPoint("broken", "no_such_module_anywhere:Thing", "modbot.classifiers")
    registry = ClassifierRegistry.discover([broken])
    with pytest.raises(UnknownClassifierType, match="cannot load no_such_module_anywhere:Thing: ModuleNotFoundError"):
        registry.get("broken")
    not_a_classifier = EntryPoint("odd", "pathlib:Path", "modbot.classifiers")
    with pytest.raises(UnknownClassifierType, match="is not a Classifier subclass"):
        ClassifierRegistry.discover([not_a_classifier]).get("odd")


# --- the config ----------------------------------------------------------------------------


def test_a_classifier_entry_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        classifiers:
          - name: hma
            settings: {url: "http://hma.internal:5000"}
    """))
    (hma,) = config.classifiers
    assert (hma.name, hma.type, hma.enabled, hma.timeout, hma.retries, hma.concurrency) == ("hma", "hma", True, 10, 2, 4)
    assert (hma.rate_limit, hma.cache_ttl, hma.circuit_breaker.failures, hma.circuit_breaker.reset_after) == (None, None, 5, 60)


def test_unknown_types_and_bad_settings_are_reported_with_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path, """
        classifiers:
          - name: one
            type: arachnd
          - name: two
            type: arachnid
            settings:
              username: me
              mode: photo
              pasword_env: X
          - name: three
            type: hma
    """)
    assert errors(path) == [
        f"{path}:6: classifiers[0].type: unknown classifier type 'arachnd' (did you mean 'arachnid'?"
        " known: arachnid, google_content_safety, hashlist, hive, hma, http, photodna; plugins register in the 'modbot.classifiers' entry point group)",
        f"{path}:11: classifiers[1].settings.mode: Input should be 'media' or 'pdq' (got 'photo')",
        f"{path}:12: classifiers[1].settings.pasword_env: unknown key 'pasword_env' (did you mean 'password_env'?)",
        f"{path}:13: classifiers[2].settings: missing required key 'url'",
    ]


def test_a_password_given_inline_is_never_echoed_in_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, """
        classifiers:
          - name: arachnid
            settings: {username: me, password: [hunter2-secret]}
    """)
    (message,) = errors(path)
    assert "classifiers[0].settings.password" in message and "hunter2-secret" not in message


def test_classifier_names_are_unique_and_plain(tmp_path: Path) -> None:
    path = write(tmp_path, """
        classifiers:
          - {name: hma, settings: {url: "http://a"}}
          - {name: hma, settings: {url: "http://b"}}
    """)
    assert errors(path) == [f"{path}:6: classifiers[1].name: duplicate classifier name 'hma'"]
    path = write(tmp_path, """
        classifiers:
          - {name: "bad name", type: hma, settings: {url: "http://c"}}
    """)
    assert errors(path) == [f"{path}:5: classifiers[0].name: use letters, digits, '.', '_' and '-' only, got 'bad name'"]


def test_a_plugin_type_and_its_settings_are_checked_like_the_built_ins(tmp_path: Path, plugin: Path) -> None:
    good = load_config(write(tmp_path, """
        classifiers:
          - {name: big, type: dimensions, settings: {max_pixels: 1000}}
    """))
    assert good.classifiers[0].type == "dimensions"
    path = write(tmp_path, """
        classifiers:
          - name: big
            type: dimensions
            settings: {max_pixels: 0}
    """)
    assert errors(path) == [f"{path}:7: classifiers[0].settings.max_pixels: Input should be greater than or equal to 1 (got 0)"]


# --- building ---------------------------------------------------------------------------------


def lists() -> tuple[LoadedList, ...]:
    from bot.hashing import compute_hashes

    known = compute_hashes(KNOWN)
    return (
        LoadedList.from_entries("known", [HashEntry("sha256", known.sha256, "csam-test")], label="csam-test"),
        LoadedList.from_entries("other", [], label="other"),
    )


def test_hash_lists_give_an_implicit_hashlist_classifier(tmp_path: Path) -> None:
    (tmp_path / "known.csv").write_text("")
    config = load_config(write(tmp_path, """
        hash_lists: [{name: known, path: known.csv}]
        classifiers: [{name: hma, settings: {url: "http://hma"}}]
    """))
    assert [(c.name, c.type) for c in effective_classifier_configs(config)] == [("hashlist", "hashlist"), ("hma", "hma")]
    # Configured explicitly (here: disabled), the hash-list classifier is not added again.
    explicit = load_config(write(tmp_path, """
        hash_lists: [{name: known, path: known.csv}]
        classifiers: [{name: lists, type: hashlist, enabled: false}]
    """))
    assert [c.name for c in effective_classifier_configs(explicit)] == ["lists"]
    assert build_classifiers(effective_classifier_configs(explicit), ClassifierRegistry.discover()) == []
    no_lists = load_config(write(tmp_path, "classifiers: []\n"))
    assert effective_classifier_configs(no_lists) == []


async def test_an_explicit_hashlist_classifier_can_take_some_lists_and_its_own_quality() -> None:
    entry = ClassifierConfig(name="lists", type="hashlist", settings={"lists": ["known"], "pdq_min_quality": 70})
    (slot,) = build_classifiers([entry], ClassifierRegistry.discover(), hash_lists=lists(), pdq_min_quality=50)
    classifier = slot.classifier
    assert isinstance(classifier, HashListClassifier)
    assert [lst.name for lst in classifier.lists] == ["known"] and classifier.pdq_min_quality == 70
    assert slot.cache_ttl == 0  # local: not cached by default
    (verdict,) = (await classifier.classify(media(KNOWN))).verdicts
    assert (verdict.classifier, verdict.list_name) == ("lists", "known")

    missing = ClassifierConfig(name="lists", type="hashlist", settings={"lists": ["nope"]})
    with pytest.raises(ClassifierSetupError, match=r"classifiers\[0\] \(lists\): lists: no hash list named 'nope'"):
        build_classifiers([missing], ClassifierRegistry.discover(), hash_lists=lists())


def test_secrets_come_from_the_environment_and_a_missing_one_stops_the_start() -> None:
    entry = ClassifierConfig(name="arachnid", settings={"username": "me", "password_env": "ARACHNID_PASSWORD"})
    (slot,) = build_classifiers([entry], ClassifierRegistry.discover(), environ={"ARACHNID_PASSWORD": "pw-from-env"})
    assert slot.cache_ttl == 24 * 3600 and slot.classifier.needs_data
    assert "pw-from-env" not in repr(slot.classifier.client)  # type: ignore[attr-defined]
    with pytest.raises(ClassifierSetupError, match="password_env: the environment variable ARACHNID_PASSWORD is not set"):
        build_classifiers([entry], ClassifierRegistry.discover(), environ={})
    both = ClassifierConfig(name="arachnid", settings={"username": "me", "password": "x", "password_env": "Y"})
    with pytest.raises(ClassifierSetupError, match="give either password or password_env"):
        build_classifiers([both], ClassifierRegistry.discover(), environ={"Y": "y"})


def test_every_problem_is_reported_at_once() -> None:
    entries = [
        ClassifierConfig(name="a", type="nope"),
        ClassifierConfig(name="b", type="hma", settings={}),
    ]
    with pytest.raises(ClassifierSetupError) as caught:
        build_classifiers(entries, ClassifierRegistry.discover())
    assert str(caught.value).splitlines() == [
        "classifiers[0] (a): unknown classifier type 'nope' (known: arachnid, google_content_safety, hashlist, hive, hma, http, photodna;"
        " plugins register in the 'modbot.classifiers' entry point group)",
        "classifiers[1] (b): settings.url: Field required",
    ]


async def test_an_installed_plugin_is_configured_by_name_and_its_verdicts_drive_the_policy(
    tmp_path: Path, plugin: Path
) -> None:
    config = load_config(write(tmp_path, """
        classifiers:
          - name: big-images
            type: dimensions
            settings: {max_pixels: 100000, label: too-big}
        policy:
          rules:
            - name: flag-big-images
              match: {classifier: big-images, labels: [too-big]}
              actions: [notify]
    """))
    slots = build_classifiers(effective_classifier_configs(config), ClassifierRegistry.discover())
    runner = ClassifierRunner(slots)
    (result,) = await runner.run(media(KNOWN))  # 800 x 600 = 480000 pixels
    (verdict,) = result.classification.verdicts
    assert (verdict.classifier, verdict.label, verdict.kind) == ("big-images", "too-big", MatchKind.EXACT)
    ctx = EventContext(event_id="$e", room_id="!r:example.org", sender="@u:example.org", sender_power=0)
    assert decide([verdict], ctx, config.policy).rule == "flag-big-images"
    (clean,) = await runner.run(media(CLEAN))
    assert clean.classification.verdicts  # the same size: also flagged
    (small,) = await runner.run(media(b"not an image at all", "text/plain"))
    assert small.classification.skipped == "not an image"
