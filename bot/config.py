"""Loading modbot's configuration: `load_config` and the documented example.

`load_config` reports every problem at once as `file:line: path: what is wrong`, resolves
relative paths against the config file's directory, checks each classifier's own
`settings:` against its registered type and loads the policy (inline or from
`policy_file`). The models themselves are in bot/configmodel.py (re-exported here).
`EXAMPLE_CONFIG` is bot/config.example.yaml, shipped as package data; the repository's
config.example.yaml is a symlink to it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from bot.classify.registry import ClassifierRegistry, check_classifier_settings
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
    if config.classifiers:
        # Each type's settings model comes from its plugin: checked once the types are known.
        problems = check_classifier_settings(config.classifiers, ClassifierRegistry.discover(), doc.source, doc.lines)
        if problems:
            raise ConfigError(problems)
    if config.policy_file is None:
        return config
    if not config.policy_file.is_file():
        raise ConfigError(located(doc.source, doc.lines, ("policy_file",), f"no such file: {config.policy_file}"))
    return config.model_copy(update={"policy": load_policy_file(config.policy_file)})


def default_config_text() -> str:
    """The documented example configuration (config.example.yaml)."""
    return EXAMPLE_CONFIG
