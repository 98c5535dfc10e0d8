"""Loading modbot's configuration: `load_config` and the documented example.

`load_config` reports every problem at once as `file:line: path: what is wrong`, resolves
relative paths against the config file's directory, checks each classifier's own
`settings:` against its registered type, loads the policy (inline or from
`policy_file`) and refuses a policy rule that would act without a person on a verdict
that may only lead to a review (bot/reviewonly.py). The models themselves are in bot/configmodel.py (re-exported here).
`EXAMPLE_CONFIG` is bot/config.example.yaml, shipped as package data; the repository's
config.example.yaml is a symlink to it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from bot.classify.registry import ClassifierRegistry, check_classifier_settings, review_only_templates
from bot.configmodel import (
    AppserviceConfig,
    CircuitBreakerConfig,
    ClassifierConfig,
    CommandsConfig,
    Config,
    DatabaseConfig,
    HashListConfig,
    HashlistSettings,
    HealthConfig,
    HomeserverConfig,
    IncidentsConfig,
    LoggingConfig,
    MetricsConfig,
    ProcessingConfig,
    RetentionConfig,
    RoomsConfig,
    ThresholdsConfig,
)
from bot.policy import load_policy_file
from bot.reviewonly import review_only_problems
from bot.yamlload import ConfigError, load_yaml, located, validate

__all__ = [
    "EXAMPLE_CONFIG",
    "AppserviceConfig",
    "CircuitBreakerConfig",
    "ClassifierConfig",
    "CommandsConfig",
    "IncidentsConfig",
    "RetentionConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "HashListConfig",
    "HealthConfig",
    "HashlistSettings",
    "HomeserverConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ProcessingConfig",
    "RoomsConfig",
    "ThresholdsConfig",
    "default_config_text",
    "load_config",
]

EXAMPLE_CONFIG = files("bot").joinpath("config.example.yaml").read_text(encoding="utf-8")


def load_config(path: str | Path) -> Config:
    """Load and validate a config file, and the policy it names. Raises ConfigError."""
    path = Path(path)
    doc = load_yaml(path)
    context = {"base_dir": path.absolute().parent, "source": str(path)}
    config = validate(Config, doc.data, source=doc.source, lines=doc.lines, context=context)
    registry = ClassifierRegistry.discover()
    if config.classifiers:
        # Each type's settings model comes from its plugin: checked once the types are known.
        problems = check_classifier_settings(config.classifiers, registry, doc.source, doc.lines)
        if problems:
            raise ConfigError(problems)
    if config.policy_file is not None:
        if not config.policy_file.is_file():
            raise ConfigError(located(doc.source, doc.lines, ("policy_file",), f"no such file: {config.policy_file}"))
        config = config.model_copy(update={"policy": load_policy_file(config.policy_file)})
    # Verdicts that may only lead to a review (bot/reviewonly.py): no rule may act on one.
    review_only = review_only_problems(config.policy, review_only_templates(config.classifiers, registry))
    if review_only:
        if config.policy_file is not None:
            raise ConfigError([f"{config.policy_file}: {'.'.join(map(str, path))}: {why}" for path, why in review_only])
        given = ("policy",) in doc.lines.lines
        raise ConfigError([
            located(doc.source, doc.lines, ("policy", *path) if given else ("classifiers",),
                    why if given else f"the default policy: {why}")
            for path, why in review_only
        ])  # fmt: skip
    return config


def default_config_text() -> str:
    """The documented example configuration (config.example.yaml)."""
    return EXAMPLE_CONFIG
