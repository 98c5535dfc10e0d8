"""The config file: defaults, path resolution, the example, and errors that name file and line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from bot.config import EXAMPLE_CONFIG, Config, default_config_text, load_config
from bot.model import ActionKind, PlannedAction
from bot.policy import DEFAULT_POLICY
from bot.yamlload import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
homeserver:
  url: http://127.0.0.1:8008
  domain: example.org
appservice:
  as_token: secret-as
  hs_token: secret-hs
"""


def write(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.messages


def with_real_tokens(text: str) -> str:
    return text.replace("as_token: CHANGE_ME", "as_token: a-real-as-token").replace(
        "hs_token: CHANGE_ME", "hs_token: a-real-hs-token"
    )


# --- the example --------------------------------------------------------------------------


def test_the_repository_example_is_the_embedded_example() -> None:
    assert (REPO_ROOT / "config.example.yaml").read_text() == EXAMPLE_CONFIG == default_config_text()


def test_the_example_loads_once_tokens_are_set_and_gives_the_defaults(tmp_path: Path) -> None:
    from_example = load_config(write(tmp_path, with_real_tokens(EXAMPLE_CONFIG)))
    from_minimal = load_config(write(tmp_path / "minimal", MINIMAL))
    # The example spells out every default.
    assert from_example.model_dump(exclude={"appservice", "database", "incidents"}) == from_minimal.model_dump(
        exclude={"appservice", "database", "incidents"}
    )
    # The incident files' defaults sit next to each config file.
    for config, where in ((from_example, tmp_path), (from_minimal, tmp_path / "minimal")):
        assert config.incidents.chain_key_file == where / "modbot-chain.key"
        assert config.incidents.anchor_file == where / "modbot-anchors.jsonl"
    assert from_example.incidents.model_dump(exclude={"chain_key_file", "anchor_file"}) == (
        from_minimal.incidents.model_dump(exclude={"chain_key_file", "anchor_file"})
    )
    assert from_example.appservice.model_dump(exclude={"as_token", "hs_token"}) == (
        from_minimal.appservice.model_dump(exclude={"as_token", "hs_token"})
    )
    assert from_example.policy == DEFAULT_POLICY


def test_the_examples_commented_hash_list_and_policy_are_valid(tmp_path: Path) -> None:
    # Uncomment the example hash list and inline policy ("#  ..." and "#policy:" lines).
    text = re.sub(r"(?m)^#(?=policy:|  )", "", with_real_tokens(EXAMPLE_CONFIG))
    text = text.replace("hash_lists: []", "hash_lists:").replace("classifiers: []", "classifiers:")
    config = load_config(write(tmp_path, text))

    (csam,) = config.hash_lists
    assert (csam.name, csam.path, csam.label, csam.enabled) == ("csam", tmp_path / "lists/csam.csv", "csam", True)
    assert (csam.thresholds.pdq, csam.thresholds.phash) == (31, 8)
    assert [rule.name for rule in config.policy.rules] == ["known-csam", "other-known-media"]
    assert config.policy.rules[0].actions == (
        PlannedAction(ActionKind.QUARANTINE),
        PlannedAction(ActionKind.REDACT),
        PlannedAction(ActionKind.BAN, "all"),
        PlannedAction(ActionKind.NOTIFY),
    )
    assert config.policy.for_room("!abc:example.org").dry_run is True
    (arachnid,) = config.classifiers
    assert (arachnid.name, arachnid.type, arachnid.settings["password_env"]) == ("arachnid", "arachnid", "ARACHNID_PASSWORD")


def test_every_option_in_the_example_has_a_comment() -> None:
    # The example is the configuration reference: every option with a value (sections
    # aside) has a comment on its line or on the line above, commented-out examples too.
    lines = [re.sub(r"^#(?=policy:|  )", "", line) for line in EXAMPLE_CONFIG.splitlines()]
    for index, line in enumerate(lines):
        option = re.match(r"^\s*(?:- )?[a-z_]+: *(\S.*)?$", line)
        if option is None or option.group(1) is None:
            continue
        assert "#" in option.group(1) or lines[index - 1].lstrip().startswith("#"), f"undocumented: {line}"


# --- defaults and resolution --------------------------------------------------------------


def test_a_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.homeserver.url == "http://127.0.0.1:8008"
    assert config.appservice.public_url == "http://127.0.0.1:29330"
    assert config.appservice.id == config.appservice.bot_localpart == "modbot"
    assert config.processing.max_media_bytes == 52428800
    assert config.hashlist.pdq_min_quality == 0  # issue 14: the quality rule, not a cliff
    assert config.rooms.protected == ()
    assert config.logging.level == "INFO"
    assert config.policy == DEFAULT_POLICY


def test_the_decoding_limits_default_to_what_compute_hashes_applies_unconfigured(tmp_path: Path) -> None:
    from bot.hashing.limits import MediaLimits
    from bot.hashing.video import MAX_VIDEO_FRAMES

    processing = load_config(write(tmp_path, MINIMAL)).processing
    bare = MediaLimits()
    assert (
        processing.max_image_pixels, processing.max_decoded_bytes, processing.max_jpeg_scans,
        processing.max_video_frames, processing.max_video_decoded_pixels,
    ) == (bare.max_pixels, bare.max_decoded_bytes, bare.max_jpeg_scans, bare.video_frames, bare.video_pixel_budget)
    # The most frames video.py samples is the most the config accepts.
    assert load_config(write(tmp_path, MINIMAL + f"processing:\n  max_video_frames: {MAX_VIDEO_FRAMES}\n"))
    assert errors(write(tmp_path, MINIMAL + f"processing:\n  max_video_frames: {MAX_VIDEO_FRAMES + 1}\n")) == [
        f"{tmp_path / 'config.yaml'}:8: processing.max_video_frames: Input should be less than or equal to "
        f"{MAX_VIDEO_FRAMES} (got {MAX_VIDEO_FRAMES + 1})"
    ]


def test_the_readmes_reference_shows_each_processing_default_as_the_config_has_it() -> None:
    from bot.configmodel import ProcessingConfig

    # Rows of one setting and a plain default: `| \`processing.x\` | \`60\` | ...`
    rows = re.findall(r"^\| `processing\.([a-z_]+)` \| `([^`]+)` \|", (REPO_ROOT / "README.md").read_text(), re.M)
    defaults = ProcessingConfig().model_dump()
    assert len(rows) >= 20 and {name for name, _ in rows} <= set(defaults)
    def as_shown(value: object) -> str:  # YAML's spelling: true, 30 (for 30.0), 2.5
        if isinstance(value, bool):
            return str(value).lower()
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)

    shown = dict(rows)
    assert shown == {name: as_shown(defaults[name]) for name in shown}


@pytest.mark.parametrize(
    ("appservice", "public_url"),
    [
        ("port: 9000", "http://127.0.0.1:9000"),
        ("bind_address: 0.0.0.0", "http://127.0.0.1:29330"),
        ("bind_address: 10.0.0.5", "http://10.0.0.5:29330"),
        ("public_url: https://bot.example.org/", "https://bot.example.org"),
    ],
)
def test_public_url_defaults_to_the_bind_address_and_port(tmp_path: Path, appservice: str, public_url: str) -> None:
    config = load_config(write(tmp_path, MINIMAL + f"  {appservice}\n"))
    assert config.appservice.public_url == public_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:///modbot.db", "sqlite+aiosqlite:///{dir}/modbot.db"),
        ("sqlite+aiosqlite:///data/modbot.db?timeout=5", "sqlite+aiosqlite:///{dir}/data/modbot.db?timeout=5"),
        ("sqlite+aiosqlite:////var/lib/modbot.db", "sqlite+aiosqlite:////var/lib/modbot.db"),
        ("'sqlite+aiosqlite:///:memory:'", "sqlite+aiosqlite:///:memory:"),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
        ("postgresql+asyncpg://modbot:pw@db/modbot", "postgresql+asyncpg://modbot:pw@db/modbot"),
    ],
)
def test_relative_sqlite_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    write(tmp_path / "etc", MINIMAL + f"database:\n  url: {url}\n")
    monkeypatch.chdir(tmp_path)  # loaded by a relative path from elsewhere
    assert load_config("etc/config.yaml").database.url == expected.format(dir=tmp_path / "etc")


def test_hash_list_and_policy_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "etc", "rules: [{name: notify-only, actions: [notify]}]\n", name="policies/policy.yaml")
    write(
        tmp_path / "etc",
        MINIMAL
        + """\
hash_lists:
  - {name: relative, path: lists/a.csv}
  - {name: absolute, path: /srv/lists/b.csv, label: spam}
policy_file: policies/policy.yaml
""",
    )
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/config.yaml")
    assert [hash_list.path for hash_list in config.hash_lists] == [
        tmp_path / "etc/lists/a.csv",
        Path("/srv/lists/b.csv"),
    ]
    assert [hash_list.label for hash_list in config.hash_lists] == ["relative", "spam"]
    assert config.policy_file == tmp_path / "etc/policies/policy.yaml"
    assert [rule.name for rule in config.policy.rules] == ["notify-only"]


def test_rooms_are_room_ids_of_any_room_version_or_aliases(tmp_path: Path) -> None:
    rooms = ["!abc:example.org", "!opaqueV12roomId", "#general:example.org"]
    config = load_config(write(tmp_path, MINIMAL + f"rooms:\n  management_room: '!mgmt:example.org'\n  protected: {rooms}\n"))
    assert config.rooms.protected == tuple(rooms)


def test_an_empty_policy_key_means_the_default_policy(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL + "policy:\n")).policy == DEFAULT_POLICY


def test_tokens_stay_out_of_reprs(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert "secret-" not in repr(config) and "secret-" not in str(config)


def test_the_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(ValueError):
        config.processing.concurrency = 8  # type: ignore[misc]
    assert isinstance(config, Config)


# --- placeholder tokens -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_line", "line", "problem"),
    [
        ("  as_token: CHANGE_ME\n", 6, "still the placeholder 'CHANGE_ME'"),
        ("  as_token: CHANGEME-please\n", 6, "still the placeholder 'CHANGEME-please'"),
        ("  as_token: ''\n", 6, "not set"),
        ("", 4, "not set"),  # missing: the line of the appservice section
    ],
)
def test_placeholder_tokens_are_refused(tmp_path: Path, token_line: str, line: int, problem: str) -> None:
    text = MINIMAL.replace("  as_token: secret-as\n", "") + token_line
    path = write(tmp_path, text)
    assert errors(path) == [
        f"{path}:{line}: appservice.as_token: {problem}; run `modbot generate-registration -c {path}` to generate tokens"
    ]


# --- errors name the file, the line and what is wrong ------------------------------------

ERROR_CASES = [
    (
        "misspelled key",
        MINIMAL + "rooms:\n  protcted: ['!a:example.org']\n",
        ["{path}:8: rooms.protcted: unknown key 'protcted' (did you mean 'protected'?)"],
    ),
    (
        "unknown section",
        MINIMAL + "metrcs:\n  enabled: false\n",
        ["{path}:7: metrcs: unknown key 'metrcs' (did you mean 'metrics'?)"],
    ),
    (
        "wrong type",
        MINIMAL + "processing:\n  concurrency: four\n",
        [
            "{path}:8: processing.concurrency: Input should be a valid integer, "
            "unable to parse string as an integer (got 'four')"
        ],
    ),
    (
        "a list where a mapping belongs",
        MINIMAL + "processing: [1, 2]\n",
        ["{path}:7: processing: expected a mapping, got a list"],
    ),
    (
        "missing required key",
        "homeserver:\n  url: http://127.0.0.1:8008\nappservice:\n  as_token: a\n  hs_token: b\n",
        ["{path}:1: homeserver: missing required key 'domain'"],
    ),
    (
        "missing required section",
        "appservice:\n  as_token: a\n  hs_token: b\n",
        ["{path}:1: missing required key 'homeserver'"],
    ),
    (
        "a URL without a scheme",
        MINIMAL.replace("url: http://127.0.0.1:8008", "url: 127.0.0.1:8008"),
        ["{path}:2: homeserver.url: expected an http:// or https:// URL, got '127.0.0.1:8008'"],
    ),
    (
        "a URL where the server name belongs",
        MINIMAL.replace("domain: example.org", "domain: https://example.org"),
        ["{path}:3: homeserver.domain: expected a server name like example.org, got 'https://example.org'"],
    ),
    (
        "a port out of range",
        MINIMAL + "  port: 70000\n",
        ["{path}:7: appservice.port: Input should be less than or equal to 65535 (got 70000)"],
    ),
    (
        "a protected room that is not a room",
        MINIMAL + "rooms:\n  protected:\n    - '!ok:example.org'\n    - general\n",
        ["{path}:10: rooms.protected[1]: expected a room ID (!id or !id:server) or alias (#alias:server), got 'general'"],
    ),
    (
        "duplicate hash list names",
        MINIMAL + "hash_lists:\n  - {name: a, path: a.csv}\n  - name: a\n    path: b.csv\n",
        ["{path}:9: hash_lists[1].name: duplicate hash list name 'a'"],
    ),
    (
        "a PDQ threshold out of range",
        MINIMAL + "hash_lists:\n  - name: a\n    path: a.csv\n    thresholds: {pdq: 300}\n",
        ["{path}:10: hash_lists[0].thresholds.pdq: Input should be less than or equal to 256 (got 300)"],
    ),
    (
        "a pHash threshold out of range",
        MINIMAL + "hash_lists:\n  - name: a\n    path: a.csv\n    thresholds:\n      phash: 65\n",
        ["{path}:11: hash_lists[0].thresholds.phash: Input should be less than or equal to 64 (got 65)"],
    ),
    (
        "an unknown action in the inline policy",
        MINIMAL + "policy:\n  rules:\n    - name: r\n      actions: [quarantine, bann]\n",
        [
            "{path}:10: policy.rules[0].actions[1]: "
            "unknown action 'bann' (expected one of quarantine, redact, ban, notify, review, suspend, deactivate, quarantine_user_media, redact_user, takedown_room)"
        ],
    ),
    (
        "a misspelled key in the inline policy",
        MINIMAL + "policy:\n  exempt:\n    power: 50\n",
        ["{path}:9: policy.exempt.power: unknown key 'power' (did you mean 'power_level'?)"],
    ),
    (
        "both an inline policy and a policy file",
        MINIMAL + "policy_file: policy.yaml\npolicy:\n  dry_run: true\n",
        ["{path}:7: policy_file: give either policy_file or an inline policy, not both"],
    ),
    (
        "a policy file that is not there",
        MINIMAL + "policy_file: nowhere.yaml\n",
        ["{path}:7: policy_file: no such file: {dir}/nowhere.yaml"],
    ),
    (
        "bad YAML syntax",
        MINIMAL + "rooms:\n  protected: ['!a:example.org'\n",
        ["{path}:9: YAML syntax error: while parsing a flow sequence; expected ',' or ']', but got '<stream end>'"],
    ),
    (
        "a tab",
        MINIMAL + "rooms:\n\tprotected: []\n",
        ["{path}:8: YAML syntax error: while scanning for the next token; found character '\\t' that cannot start any token"],
    ),
    (
        "a key given twice",
        MINIMAL + "logging:\n  level: INFO\n  level: DEBUG\n",
        ["{path}:9: duplicate key 'level' (first given on line 8)"],
    ),
    (
        "an empty file",
        "",
        ["{path}:1: expected a mapping, got null"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in ERROR_CASES], ids=[case[0] for case in ERROR_CASES])
def test_errors_name_file_line_and_problem(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert errors(path) == [message.format(path=path, dir=tmp_path) for message in expected]


def test_errors_in_a_policy_file_name_the_policy_file_and_its_line(tmp_path: Path) -> None:
    policy = write(tmp_path, "rules:\n  - name: r\n    actions:\n      - {ban: everywhere}\n", name="policy.yaml")
    config = write(tmp_path, MINIMAL + "policy_file: policy.yaml\n")
    assert errors(config) == [f"{policy}:4: rules[0].actions[0]: unknown ban scope 'everywhere' (expected one of room, all)"]


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "processing:\n  concurrency: 0\nlogging:\n  level: LOUD\n")
    assert errors(path) == [
        f"{path}:8: processing.concurrency: Input should be greater than or equal to 1 (got 0)",
        f"{path}:10: logging.level: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL' (got 'LOUD')",
    ]


def test_an_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    (message,) = errors(tmp_path / "missing.yaml")
    assert message.startswith(f"{tmp_path / 'missing.yaml'}: cannot read: ")


def test_a_metrics_address_without_its_own_port_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "metrics:\n  bind_address: 0.0.0.0\n")
    assert any("metrics.bind_address" in e and "metrics.port" in e for e in errors(path))


def test_intake_limits_cannot_be_set_below_what_synapse_sends(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "  max_body_bytes: 1000000\n  max_json_depth: 100\n")
    messages = errors(path)
    assert any("appservice.max_body_bytes" in e for e in messages)
    assert any("appservice.max_json_depth" in e for e in messages)
