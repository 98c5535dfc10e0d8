"""Finding classifier types and building the configured classifiers.

Types are found through the `modbot.classifiers` entry point group: a plugin package
declares

    [project.entry-points."modbot.classifiers"]
    mytype = "mypackage.module:MyClassifier"

and the config names it with `type: mytype`. The built-in types (hashlist, arachnid,
hma, http, photodna, google_content_safety, hive) are declared the same way in modbot's own pyproject.toml and are also known
directly, so that an install whose metadata predates one still finds it. A plugin that
reuses a built-in name for another class is refused rather than silently shadowed.

Entry points are loaded lazily: a broken plugin is reported when the config uses it.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bot.classify.base import Classifier, ClassifierContext, ClassifierSetupError
from bot.classify.cache import settings_fingerprint
from bot.classify.resilience import RetryPolicy, ServiceGuard
from bot.configdetect import DEFAULT_PDQ_MIN_QUALITY, ClassifierConfig
from bot.model import Verdict
from bot.yamlload import LineMap, located, validation_messages

if TYPE_CHECKING:
    from bot.lists.loaded import LoadedList

ENTRY_POINT_GROUP = "modbot.classifiers"
BUILTIN: dict[str, str] = {
    "hashlist": "bot.classify.hashlist:HashListClassifier",
    "arachnid": "bot.classify.arachnid:ArachnidClassifier",
    "hma": "bot.classify.hma:HmaClassifier",
    "http": "bot.classify.http_scanner:HttpScannerClassifier",
    "photodna": "bot.classify.photodna:PhotoDnaClassifier",
    "google_content_safety": "bot.classify.google_content_safety:GoogleContentSafetyClassifier",
    "hive": "bot.classify.hive:HiveClassifier",
}
HASHLIST = "hashlist"


class UnknownClassifierType(ClassifierSetupError):
    pass


def _load(value: str) -> Any:
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class ClassifierRegistry:
    """The classifier types that can be named in a config's `type:`."""

    def __init__(self, sources: Mapping[str, str], conflicts: Mapping[str, str] | None = None) -> None:
        self._sources = dict(sources)  # type name -> "module:Class"
        self._conflicts = dict(conflicts or {})
        self._loaded: dict[str, type[Classifier]] = {}

    @classmethod
    def discover(cls, eps: Iterable[EntryPoint] | None = None) -> ClassifierRegistry:
        """The built-in types and every installed `modbot.classifiers` entry point."""
        sources = dict(BUILTIN)
        conflicts: dict[str, str] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP) if eps is None else eps:
            known = sources.get(ep.name)
            if known is not None and known != ep.value:
                dist = f" (from {ep.dist.name})" if ep.dist is not None else ""
                conflicts[ep.name] = f"{ep.value}{dist} and {known} both claim the type {ep.name!r}"
                continue
            sources[ep.name] = ep.value
        return cls(sources, conflicts)

    def names(self) -> list[str]:
        return sorted(self._sources)

    def get(self, type_name: str) -> type[Classifier]:
        if type_name in self._conflicts:
            raise UnknownClassifierType(self._conflicts[type_name])
        if type_name in self._loaded:
            return self._loaded[type_name]
        source = self._sources.get(type_name)
        if source is None:
            close = difflib.get_close_matches(type_name, self.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UnknownClassifierType(
                f"unknown classifier type {type_name!r} ({hint}known: {', '.join(self.names())};"
                f" plugins register in the {ENTRY_POINT_GROUP!r} entry point group)"
            )
        try:
            found = _load(source)
        except Exception as e:  # a broken plugin: say which, at start-up
            raise UnknownClassifierType(f"classifier type {type_name!r}: cannot load {source}: {type(e).__name__}: {e}") from e
        if not (isinstance(found, type) and issubclass(found, Classifier)):
            raise UnknownClassifierType(f"classifier type {type_name!r}: {source} is not a Classifier subclass")
        self._loaded[type_name] = found
        return found


# --- the configured classifiers ------------------------------------------------------------


def effective_classifier_configs(config: Any) -> list[Any]:
    """The config's `classifiers:`, plus the implicit hash-list classifier when `hash_lists:`
    exist and no classifier of type hashlist is configured (enabled or not)."""
    configured = list(config.classifiers)
    if config.hash_lists and not any(c.type == HASHLIST for c in configured):
        configured.insert(0, ClassifierConfig(name=HASHLIST, type=HASHLIST))
    return configured


@dataclass(frozen=True)
class ClassifierSlot:
    """A built classifier and what the runner needs to call it."""

    classifier: Classifier
    type_name: str
    fingerprint: str  # of type and settings, for the verdict cache
    cache_ttl: float  # seconds; 0: not cached
    deadline: float | None  # the longest one classify() may take, retries included
    guard: ServiceGuard

    @property
    def name(self) -> str:
        return self.classifier.name


def build_classifiers(
    configs: Sequence[Any],
    registry: ClassifierRegistry,
    *,
    hash_lists: Sequence[LoadedList] = (),
    pdq_min_quality: int = DEFAULT_PDQ_MIN_QUALITY,
    environ: Mapping[str, str] | None = None,
    base_dir: Path = Path("."),
    guard_factory: Callable[[Any], ServiceGuard] | None = None,
    list_source: Any = None,
    allowlist: Any = None,
    sandbox: Any = None,
) -> list[ClassifierSlot]:
    """Build the enabled classifiers. Raises ClassifierSetupError naming the config entry."""
    slots: list[ClassifierSlot] = []
    problems: list[str] = []
    for index, config in enumerate(configs):
        if not config.enabled:
            continue
        where = f"classifiers[{index}] ({config.name})"
        try:
            cls = registry.get(config.type)
            try:
                settings = cls.Settings.model_validate(config.settings)
            except ValidationError as e:
                # The messages, never the input values: a setting may be a password.
                raise ClassifierSetupError(
                    "; ".join(f"settings.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
                ) from None
            if config.rate_limit is None and cls.default_rate_limit is not None:
                # The service's documented limit, unless the config gives its own.
                config = config.model_copy(update={"rate_limit": cls.default_rate_limit})
            guard = guard_factory(config) if guard_factory else guard_for(config)
            context = ClassifierContext(
                name=config.name,
                guard=guard,
                environ=os.environ if environ is None else environ,
                base_dir=base_dir,
                hash_lists=tuple(hash_lists),
                pdq_min_quality=pdq_min_quality,
                list_source=list_source,
                allowlist=allowlist,
                sandbox=sandbox,
            )
            classifier = cls.from_settings(settings, context)
        except ClassifierSetupError as e:
            problems.append(f"{where}: {e}")
            continue
        ttl = cls.default_cache_ttl if config.cache_ttl is None else config.cache_ttl
        deadline = (config.timeout + config.max_backoff) * (config.retries + 1) + 1
        slots.append(ClassifierSlot(classifier, config.type, settings_fingerprint(config.type, settings), ttl, deadline, guard))
    if problems:
        raise ClassifierSetupError("\n".join(problems))
    return slots


def guard_for(config: Any, **kwargs: Any) -> ServiceGuard:
    """The ServiceGuard a classifier's config entry describes."""
    return ServiceGuard(
        config.name,
        timeout=config.timeout,
        retry=RetryPolicy(retries=config.retries, backoff=config.backoff, max_backoff=config.max_backoff),
        failures=config.circuit_breaker.failures,
        reset_after=config.circuit_breaker.reset_after,
        concurrency=config.concurrency,
        rate_limit=config.rate_limit,
        **kwargs,
    )


def check_classifier_settings(
    entries: Any, registry: ClassifierRegistry, source: str, lines: LineMap
) -> list[str]:
    """`file:line: path: problem` for every unknown type or invalid `settings:` in a
    config's `classifiers:` (already validated as a whole, so entries are well-formed)."""
    messages: list[str] = []
    for index, entry in enumerate(entries):
        try:
            cls = registry.get(entry.type)
        except UnknownClassifierType as e:
            path = ("classifiers", index, "type") if (("classifiers", index, "type") in lines.lines) else ("classifiers", index, "name")
            messages.append(located(source, lines, path, str(e)))
            continue
        try:
            cls.Settings.model_validate(entry.settings)
        except ValidationError as e:
            sub = lines.sub("classifiers", index, "settings")
            messages += validation_messages(e, source, sub, cls.Settings)
    return messages


def review_only_templates(entries: Any, registry: ClassifierRegistry) -> list[Verdict]:
    """The review-only verdict templates of the enabled classifiers (see bot/reviewonly.py);
    entries whose type or settings are invalid are left to check_classifier_settings."""
    templates: list[Verdict] = []
    for entry in entries:
        if not entry.enabled:
            continue
        try:
            cls = registry.get(entry.type)
            settings = cls.Settings.model_validate(entry.settings)
        except (UnknownClassifierType, ValidationError):
            continue
        templates += cls.review_only_verdicts(settings, entry.name)
    return templates


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "ClassifierRegistry",
    "ClassifierSlot",
    "UnknownClassifierType",
    "build_classifiers",
    "check_classifier_settings",
    "effective_classifier_configs",
    "guard_for",
    "review_only_templates",
]
