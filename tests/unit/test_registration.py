"""The appservice registration and the rewriting of the config's tokens."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import yaml

from bot.config import EXAMPLE_CONFIG, Config, load_config
from bot.intake.registration import new_token, registration, set_tokens, write_registration

CONFIG = """\
homeserver:
  url: http://127.0.0.1:8008
  domain: example.org
appservice:
  id: modbot-test
  bind_address: 0.0.0.0
  port: 29331
  as_token: secret-as
  hs_token: secret-hs
  bot_localpart: {localpart}
"""


def config(tmp_path: Path, localpart: str = "modbot") -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(localpart=localpart))
    return load_config(path)


# --- registration ------------------------------------------------------------------------------


def test_registration_fields(tmp_path: Path) -> None:
    reg = registration(config(tmp_path))
    assert reg["id"] == "modbot-test"
    # Bound to every address: the homeserver reaches it on loopback.
    assert reg["url"] == "http://127.0.0.1:29331"
    assert (reg["as_token"], reg["hs_token"]) == ("secret-as", "secret-hs")
    assert reg["sender_localpart"] == "modbot"
    assert reg["rate_limited"] is False
    assert reg["namespaces"]["aliases"] == [] and reg["namespaces"]["rooms"] == []
    [users] = reg["namespaces"]["users"]
    assert users["exclusive"] is True
    assert users["regex"].startswith("^") and users["regex"].endswith("$")


def test_registration_url_is_the_public_url_without_a_trailing_slash(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(localpart="modbot").replace(
        "  port: 29331\n", "  port: 29331\n  public_url: https://modbot.internal:8443/\n"))
    assert registration(load_config(path))["url"] == "https://modbot.internal:8443"


@pytest.mark.parametrize(
    ("localpart", "user_id", "matches"),
    [
        ("modbot", "@modbot:example.org", True),
        ("modbot", "@modbot2:example.org", False),
        ("modbot", "@xmodbot:example.org", False),
        ("modbot", "@modbot:example.org.evil", False),
        ("modbot", "@modbot:exampleXorg", False),  # the dot is literal
        ("modbot", "@alice:example.org", False),
        ("mod.bot", "@mod.bot:example.org", True),
        ("mod.bot", "@modXbot:example.org", False),
        ("mod+bot", "@mod+bot:example.org", True),
        ("mod+bot", "@modddbot:example.org", False),
    ],
)
def test_the_user_namespace_is_exactly_the_bot(tmp_path: Path, localpart: str, user_id: str, matches: bool) -> None:
    regex = registration(config(tmp_path, localpart))["namespaces"]["users"][0]["regex"]
    # Synapse matches with re.match: anchored at the start only, so "$" keeps it exact.
    assert bool(re.match(regex, user_id)) is matches


def test_write_registration_writes_the_registration_as_yaml_only_the_owner_can_read(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    out = tmp_path / "registration.yaml"
    out.write_text("old")
    out.chmod(0o644)
    write_registration(cfg, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert yaml.safe_load(out.read_text()) == registration(cfg)


# --- set_tokens --------------------------------------------------------------------------------


def test_set_tokens_replaces_both_tokens_and_keeps_everything_else() -> None:
    as_token, hs_token = new_token(), new_token()
    text = set_tokens(EXAMPLE_CONFIG, as_token, hs_token)
    before, after = EXAMPLE_CONFIG.splitlines(), text.splitlines()
    assert len(before) == len(after)
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    assert changed == [
        ("  as_token: CHANGE_ME", f"  as_token: {as_token}"),
        ("  hs_token: CHANGE_ME", f"  hs_token: {hs_token}"),
    ]
    assert text.endswith("\n")


def test_set_tokens_output_loads_with_the_new_tokens(tmp_path: Path) -> None:
    as_token, hs_token = new_token(), new_token()
    path = tmp_path / "config.yaml"
    path.write_text(set_tokens(EXAMPLE_CONFIG, as_token, hs_token))
    loaded = load_config(path)
    assert (loaded.appservice.as_token, loaded.appservice.hs_token) == (as_token, hs_token)


def test_set_tokens_replaces_tokens_set_before() -> None:
    once = set_tokens(EXAMPLE_CONFIG, "first-as-token", "first-hs-token")
    twice = set_tokens(once, "second-as-token", "second-hs-token")
    assert twice == set_tokens(EXAMPLE_CONFIG, "second-as-token", "second-hs-token")
    assert "first-" not in twice


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  as_token: CHANGE_ME", "  as_token: NEW"),
        ("  as_token:", "  as_token: NEW"),
        ("  as_token: 'CHANGE_ME'", "  as_token: NEW"),
        ("  as_token: CHANGE_ME   ", "  as_token: NEW   "),
        ("  as_token: CHANGE_ME  # from the registration", "  as_token: NEW  # from the registration"),
        ("  as_token: CHANGE_ME # x", "  as_token: NEW # x"),
    ],
)
def test_set_tokens_rewrites_only_the_value(tmp_path: Path, line: str, expected: str) -> None:
    text = EXAMPLE_CONFIG.replace("  as_token: CHANGE_ME", line)
    result = set_tokens(text, "NEW", "hs-new")
    assert expected in result.splitlines()
    # A comment after the token stays a comment: it must not become part of the secret.
    path = tmp_path / "config.yaml"
    path.write_text(result)
    assert load_config(path).appservice.as_token == "NEW"


def test_set_tokens_ignores_commented_out_keys() -> None:
    text = "# as_token: not-this-one\n" + EXAMPLE_CONFIG
    result = set_tokens(text, "NEW-AS", "NEW-HS")
    assert result.startswith("# as_token: not-this-one\n")
    assert "  as_token: NEW-AS\n" in result


@pytest.mark.parametrize("key", ["as_token", "hs_token"])
def test_set_tokens_says_which_key_is_missing(key: str) -> None:
    text = "\n".join(line for line in EXAMPLE_CONFIG.splitlines() if not line.startswith(f"  {key}:"))
    with pytest.raises(ValueError, match=f"no {key} line"):
        set_tokens(text, "a", "b")


def test_new_tokens_are_long_random_and_url_safe() -> None:
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{40,}", t) for t in tokens)


def test_the_example_registration_is_what_the_example_config_generates(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    config_file = tmp_path / "config.yaml"
    config_file.write_text((repo / "config.example.yaml").read_text().replace("CHANGE_ME", "token-xyz"))
    generated = registration(load_config(config_file))
    generated["as_token"] = generated["hs_token"] = "CHANGE_ME"
    assert yaml.safe_load((repo / "registration.yaml").read_text()) == generated
