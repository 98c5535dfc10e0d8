"""The command framework (PURE): declarations, generated usage, and `bind`, which turns a
command's words into typed arguments or a UsageError that names the usage. Also every
command modbot declares, and the dry-run switch moderators flip (`policy.with_dry_run`)."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from bot.commands.framework import Arg, Command, CommandSet, UsageError, bind
from bot.commands.handlers import build_commands
from bot.commands.parse import Target
from bot.policy import Policy, RoomPolicy, parse_policy, with_dry_run
from bot.yamlload import parse_yaml

SHA = "ab" * 32
PDQ = "f0" * 32


async def noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def command(name: str, *args: Arg) -> Command:
    return Command(name, f"{name}: a test command", noop, tuple(args))


SCAN = command("scan", Arg("mxc", "mxc", from_reply=True), Arg("act", "flag"))
BAN = command(
    "ban",
    Arg("user", "user", from_reply=True),
    Arg("scope", "scope", optional=True),
    Arg("reason", "text", optional=True),
)
UNBAN = command("unban", Arg("user", "user"), Arg("scope", "scope", optional=True))
REDACT = command(
    "redact",
    Arg("user", "user", from_reply=True),
    Arg("limit", "int", keyword="limit", optional=True),
    Arg("scope", "scope", optional=True),
)
APPROVE = command("review approve", Arg("id", "int"))
ALLOW = command("allow", Arg("hash", "hash", from_reply=True), Arg("reason", "text", optional=True))
QUARANTINE = command("quarantine", Arg("target", "target", from_reply=True))
PROTECT = command("rooms protect", Arg("room", "room"))
DRYRUN = command("dryrun", Arg("state", "onoff"), Arg("room", "room", optional=True))
NOTE = command("note", Arg("text", "text"))
PAGE = command("page", Arg("size", "int", keyword="size"))


# --- usage text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "usage"),
    [
        (Arg("user", "user"), "<user>"),
        (Arg("user", "user", optional=True), "[<user>]"),
        (Arg("user", "user", from_reply=True), "<user|reply>"),
        (Arg("mxc", "mxc", from_reply=True), "<mxc|reply>"),
        (Arg("scope", "scope"), "<room|all>"),
        (Arg("scope", "scope", optional=True), "[<room|all>]"),
        (Arg("reason", "text"), "<reason...>"),
        (Arg("reason", "text", optional=True), "[<reason...>]"),
        (Arg("act", "flag"), "[--act]"),
        (Arg("limit", "int", keyword="limit"), "limit <limit>"),
        (Arg("limit", "int", keyword="limit", optional=True), "[limit <limit>]"),
        (Arg("id", "int"), "<id>"),
    ],
)
def test_an_argument_describes_itself(arg: Arg, usage: str) -> None:
    assert arg.usage() == usage


@pytest.mark.parametrize(
    ("cmd", "usage"),
    [
        (SCAN, "scan <mxc|reply> [--act]"),
        (BAN, "ban <user|reply> [<room|all>] [<reason...>]"),
        (REDACT, "redact <user|reply> [limit <limit>] [<room|all>]"),
        (APPROVE, "review approve <id>"),
        (command("version"), "version"),
    ],
)
def test_usage_is_generated_from_the_declaration(cmd: Command, usage: str) -> None:
    assert cmd.usage() == usage


# --- bind: words to typed arguments ---------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "words", "reply", "expected"),
    [
        # a flag anywhere; absent is False
        (SCAN, ["mxc://example.org/abc"], False, {"mxc": "mxc://example.org/abc", "act": False}),
        (SCAN, ["mxc://example.org/abc", "--act"], False, {"mxc": "mxc://example.org/abc", "act": True}),
        (SCAN, ["--act", "mxc://example.org/abc"], False, {"mxc": "mxc://example.org/abc", "act": True}),
        # an argument that may come from the replied-to message is None when absent
        (SCAN, [], True, {"mxc": None, "act": False}),
        (SCAN, ["--act"], True, {"mxc": None, "act": True}),
        (SCAN, ["mxc://example.org/abc"], True, {"mxc": "mxc://example.org/abc", "act": False}),
        # users, in any form; scope; the rest is the reason
        (BAN, ["@spam:example.org"], False, {"user": "@spam:example.org", "scope": None, "reason": None}),
        (
            BAN,
            ["https://matrix.to/#/%40spam%3Aexample.org", "all", "spamming", "links"],
            False,
            {"user": "@spam:example.org", "scope": "all", "reason": "spamming links"},
        ),
        (BAN, ["@spam:example.org", "ROOM"], False, {"user": "@spam:example.org", "scope": "room", "reason": None}),
        (
            BAN,
            ["@spam:example.org", "#lobby:example.org", "rude"],
            False,
            {"user": "@spam:example.org", "scope": "#lobby:example.org", "reason": "rude"},
        ),
        (
            BAN,
            ["@spam:example.org", "https://matrix.to/#/!room:example.org?via=example.org"],
            False,
            {"user": "@spam:example.org", "scope": "!room:example.org", "reason": None},
        ),
        (BAN, ["@spam:example.org", "!opaqueV12"], False, {"user": "@spam:example.org", "scope": "!opaqueV12", "reason": None}),
        # not a scope: it starts the reason
        (BAN, ["@spam:example.org", "being", "rude"], False, {"user": "@spam:example.org", "scope": None, "reason": "being rude"}),
        # from a reply: the first word is not a user, so it is the reason
        (BAN, ["all", "spam"], True, {"user": None, "scope": "all", "reason": "spam"}),
        (BAN, [], True, {"user": None, "scope": None, "reason": None}),
        # `limit N` as keyword and value
        (REDACT, ["@spam:example.org"], False, {"user": "@spam:example.org", "limit": None, "scope": None}),
        (REDACT, ["@spam:example.org", "limit", "50"], False, {"user": "@spam:example.org", "limit": 50, "scope": None}),
        (REDACT, ["@spam:example.org", "LIMIT", "5", "all"], False, {"user": "@spam:example.org", "limit": 5, "scope": "all"}),
        (REDACT, ["limit", "5"], True, {"user": None, "limit": 5, "scope": None}),
        (REDACT, ["all"], True, {"user": None, "limit": None, "scope": "all"}),
        # numbers
        (APPROVE, ["7"], False, {"id": 7}),
        (APPROVE, ["007"], False, {"id": 7}),
        # hashes: sha256 by default, pdq when said; case folded
        (ALLOW, [SHA], False, {"hash": ("sha256", SHA), "reason": None}),
        (ALLOW, [SHA.upper(), "our", "logo"], False, {"hash": ("sha256", SHA), "reason": "our logo"}),
        (ALLOW, ["sha256:" + SHA], False, {"hash": ("sha256", SHA), "reason": None}),
        (ALLOW, ["pdq:" + PDQ.upper()], False, {"hash": ("pdq", PDQ), "reason": None}),
        (ALLOW, ["false", "positive"], True, {"hash": None, "reason": "false positive"}),
        # a target: media, user, room or alias
        (QUARANTINE, ["mxc://example.org/abc"], False, {"target": Target("mxc", "mxc://example.org/abc")}),
        (QUARANTINE, ["@spam:example.org"], False, {"target": Target("user", "@spam:example.org")}),
        (QUARANTINE, ["!room:example.org"], False, {"target": Target("room", "!room:example.org")}),
        (QUARANTINE, ["#lobby:example.org"], False, {"target": Target("alias", "#lobby:example.org")}),
        (QUARANTINE, [], True, {"target": None}),
        (PROTECT, ["https://matrix.to/#/#lobby:example.org"], False, {"room": "#lobby:example.org"}),
        (DRYRUN, ["On"], False, {"state": "on", "room": None}),
        (DRYRUN, ["off", "!room:example.org"], False, {"state": "off", "room": "!room:example.org"}),
        (NOTE, ["hello", "world"], False, {"text": "hello world"}),
        (PAGE, ["size", "3"], False, {"size": 3}),
    ],
)
def test_bind(cmd: Command, words: list[str], reply: bool, expected: dict[str, Any]) -> None:
    assert bind(cmd, words, reply_available=reply) == expected


@pytest.mark.parametrize(
    ("cmd", "words", "reply", "message"),
    [
        # missing: a reply would do, but there is none
        (SCAN, [], False, "missing mxc"),
        (SCAN, ["--act"], False, "missing mxc"),
        (BAN, [], False, "missing user"),
        (APPROVE, [], False, "missing id"),
        # the wrong kind of thing
        (SCAN, ["@spam:example.org"], False, "'@spam:example.org' is not a valid mxc (an mxc:// URI)"),
        (SCAN, ["mxc://example.org/a/b"], False, "is not a valid mxc"),
        (BAN, ["!room:example.org"], False, "'!room:example.org' is not a valid user"),
        (BAN, ["https://matrix.to/#/!room:example.org/$event"], False, "is not a valid user"),
        (UNBAN, ["spam"], False, "'spam' is not a valid user"),
        (PROTECT, ["@spam:example.org"], False, "is not a valid room (a room ID, alias or matrix.to link)"),
        (PROTECT, ["https://matrix.to/#/!room:example.org/$event"], False, "is not a valid room"),
        (QUARANTINE, ["https://matrix.to/#/!room:example.org/$event"], False, "is not a valid target"),
        (QUARANTINE, ["$event:example.org"], False, "is not a valid target"),
        (APPROVE, ["seven"], False, "'seven' is not a valid id (a number)"),
        (APPROVE, ["-1"], False, "is not a valid id"),
        (APPROVE, ["1.5"], False, "is not a valid id"),
        (APPROVE, ["²"], False, "is not a valid id"),  # str.isdigit() says yes; int() says no
        (APPROVE, ["#7"], False, "is not a valid id"),
        (ALLOW, [SHA[:-1]], False, "is not a valid hash (a 64-hex sha256 or pdq:<hex>)"),
        (ALLOW, ["md5:" + SHA], False, "is not a valid hash"),
        (ALLOW, [SHA + "0"], False, "is not a valid hash"),
        (DRYRUN, ["maybe"], False, "'maybe' is not a valid state (on or off)"),
        # left over
        (SCAN, ["mxc://example.org/abc", "extra"], False, "unexpected 'extra'"),
        (APPROVE, ["7", "8"], False, "unexpected '8'"),
        (UNBAN, ["@spam:example.org", "all", "now"], False, "unexpected 'now'"),
        (UNBAN, ["@spam:example.org", "@other:example.org"], False, "unexpected '@other:example.org'"),
        (command("version"), ["now"], False, "unexpected 'now'"),
        (SCAN, ["mxc://example.org/abc", "--ACT"], False, "unexpected '--ACT'"),
        # a keyword must be followed by a good value: a typo never widens a redaction
        (REDACT, ["@spam:example.org", "limit", "ten"], False, "limit"),
        (REDACT, ["@spam:example.org", "limit", "-5"], False, "limit"),
        (REDACT, ["@spam:example.org", "limit"], False, "limit"),
        (REDACT, ["@spam:example.org", "all", "limit", "5"], False, "unexpected 'limit 5'"),  # keywords come in order
        # required text and required keywords are required
        (NOTE, [], False, "missing text"),
        (PAGE, [], False, "missing size"),
    ],
)
def test_bind_errors_name_the_usage(cmd: Command, words: list[str], reply: bool, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        bind(cmd, words, reply_available=reply)
    assert message in str(caught.value)
    assert str(caught.value).endswith(f"Usage: {cmd.usage()}")


# --- command sets ---------------------------------------------------------------------------


def test_a_command_set_finds_the_longest_name_first_in_any_case() -> None:
    commands = CommandSet()
    for cmd in (command("allow", Arg("hash", "hash")), command("allow list"), command("review approve", Arg("id", "int"))):
        commands.add(cmd)
    assert commands.find(["allow", "list"]) == (commands.commands["allow list"], [])
    assert commands.find(["ALLOW", "List"]) == (commands.commands["allow list"], [])
    assert commands.find(["allow", SHA]) == (commands.commands["allow"], [SHA])
    assert commands.find(["Review", "approve", "3"]) == (commands.commands["review approve"], ["3"])
    assert commands.find(["review"]) == (None, ["review"])
    assert commands.find(["nonsense", "x"]) == (None, ["nonsense", "x"])
    assert commands.find([]) == (None, [])
    assert [c.name for c in commands.group("Review")] == ["review approve"]
    assert [c.name for c in commands.group("allow")] == ["allow", "allow list"]
    assert commands.group("nonsense") == []


def test_a_command_is_declared_once() -> None:
    commands = CommandSet()
    commands.add(command("ban"))
    with pytest.raises(ValueError, match="'ban' declared twice"):
        commands.add(command("ban"))


def test_the_decorator_declares_the_command_with_its_metadata() -> None:
    commands = CommandSet()

    @commands.command("kick", "kick someone", Arg("user", "user"), scope="room", long_running=True, section="members")
    async def kick(ctx: object, user: str) -> None:
        return None

    assert commands.commands["kick"] == Command("kick", "kick someone", kick, (Arg("user", "user"),), "room", True, "members")


# --- every command modbot declares ----------------------------------------------------------

# (words, whether a reply is there, the arguments they bind to); at least one per command.
ROOM = "!room:example.org"
SPAM = "@spam:example.org"
BUILT_IN: list[tuple[str, bool, dict[str, Any]]] = [
    ("help", False, {"command": None}),
    ("help rooms protect", False, {"command": "rooms protect"}),
    ("version", False, {}),
    ("status", False, {}),
    ("rooms list", False, {}),
    ("rooms protect #lobby:example.org", False, {"room": "#lobby:example.org"}),
    (f"rooms unprotect https://matrix.to/#/{ROOM}?via=example.org", False, {"room": ROOM}),
    ("scan mxc://example.org/abc --act", False, {"mxc": "mxc://example.org/abc", "act": True}),
    ("scan --act", True, {"mxc": None, "act": True}),
    ("hash add csam known-bad", True, {"list": "csam", "label": "known-bad"}),
    (f"hash remove csam pdq:{PDQ}", False, {"list": "csam", "hash": ("pdq", PDQ)}),
    ("hash remove csam", True, {"list": "csam", "hash": None}),
    ("lists", False, {}),
    (f"allow {SHA} our logo", False, {"hash": ("sha256", SHA), "reason": "our logo"}),
    ("allow", True, {"hash": None, "reason": None}),
    ("allow list", False, {}),
    ("allow remove #3", False, {"entry": "#3"}),
    (f"allow remove {SHA}", False, {"entry": SHA}),
    (f"quarantine {SPAM}", False, {"target": Target("user", SPAM)}),
    ("quarantine", True, {"target": None}),
    ("unquarantine mxc://example.org/abc", False, {"mxc": "mxc://example.org/abc"}),
    (f"ban {SPAM} all spamming links", False, {"user": SPAM, "scope": "all", "reason": "spamming links"}),
    ("ban", True, {"user": None, "scope": None, "reason": None}),
    (f"unban https://matrix.to/#/{SPAM} {ROOM}", False, {"user": SPAM, "scope": ROOM}),
    (f"kick {SPAM} #lobby:example.org go away", False, {"user": SPAM, "room": "#lobby:example.org", "reason": "go away"}),
    (f"redact {SPAM} limit 50 all", False, {"user": SPAM, "limit": 50, "scope": "all"}),
    ("redact limit 10", True, {"user": None, "limit": 10, "scope": None}),
    ("policy show", False, {}),
    ("policy reload", False, {}),
    (f"dryrun on {ROOM}", False, {"state": "on", "room": ROOM}),
    ("dryrun OFF", False, {"state": "off", "room": None}),
    (f"audit 20 {SPAM}", False, {"n": 20, "target": Target("user", SPAM)}),
    ("audit", False, {"n": None, "target": None}),
    ("audit anchor", False, {}),
    ("review list", False, {}),
    ("review approve 7", False, {"id": 7}),
    ("review reject 7 --tell", False, {"id": 7, "tell": True}),
    ("report 12", False, {"incident": 12}),
    ("actions", False, {"which": None}),
    ("actions failed", False, {"which": "failed"}),
    ("actions giveup 3 the room is gone", False, {"id": 3, "reason": "the room is gone"}),
    ("actions retry 4", False, {"id": 4}),
    ("policylist watch #bans:example.org", False, {"room": "#bans:example.org"}),
    (f"policylist unwatch https://matrix.to/#/{ROOM}", False, {"room": ROOM}),
    ("policylist list", False, {}),
    ("policylist check", False, {}),
    (f"suspend {SPAM}", False, {"user": SPAM}),
    ("suspend", True, {"user": None}),
    (f"unsuspend {SPAM}", False, {"user": SPAM}),
    (f"deactivate {SPAM} --erase", False, {"user": SPAM, "erase": True, "yes": False}),
    ("deactivate --yes", True, {"user": None, "erase": False, "yes": True}),
    (f"takedown {ROOM}", False, {"room": ROOM, "purge": False, "yes": False}),
    (f"takedown {ROOM} --purge --yes", False, {"room": ROOM, "purge": True, "yes": True}),
    (f"unblock {ROOM}", False, {"room": ROOM}),
    (f"quarantine user {SPAM}", False, {"user": SPAM}),
    (f"quarantine room {ROOM}", False, {"room": ROOM}),
    ("confirm", True, {}),
    ("report act 3", False, {"id": 3}),
    ("report dismiss 3", False, {"id": 3}),
]


@pytest.fixture(scope="module")
def built_in() -> CommandSet:
    return build_commands()


@pytest.mark.parametrize(("words", "reply", "expected"), BUILT_IN)
def test_every_command_binds_sensible_words(built_in: CommandSet, words: str, reply: bool, expected: dict[str, Any]) -> None:
    cmd, rest = built_in.find(words.split())
    assert cmd is not None
    assert bind(cmd, rest, reply_available=reply) == expected


def test_every_command_is_covered_above(built_in: CommandSet) -> None:
    covered = {cmd.name for words, _, _ in BUILT_IN if (cmd := built_in.find(words.split())[0])}
    assert covered == set(built_in.commands)


def test_every_command_has_help_and_a_usage_that_starts_with_its_name(built_in: CommandSet) -> None:
    for cmd in built_in.commands.values():
        assert cmd.help.strip(), cmd.name
        assert cmd.section.strip(), cmd.name
        assert cmd.scope in ("room", "management"), cmd.name
        assert cmd.usage().split()[: len(cmd.name.split())] == cmd.name.split()
        # its handler takes each argument by its declared name
        params = cmd.handler.__code__.co_varnames[: cmd.handler.__code__.co_argcount]
        assert params == ("ctx", *(a.name for a in cmd.args)), cmd.name


def test_a_command_without_its_required_arguments_says_its_usage(built_in: CommandSet) -> None:
    for cmd in built_in.commands.values():
        required = [a for a in cmd.args if not a.optional and a.kind not in ("flag",)]
        if not required:
            continue
        with pytest.raises(UsageError, match=f"missing {required[0].name}") as caught:
            bind(cmd, [], reply_available=False)
        assert str(caught.value).endswith(f"Usage: {cmd.usage()}")


# --- the dry-run switch: moderators' overrides on the configured policy ----------------------
# (policy.with_dry_run; the `dryrun` command stores these overrides)


def policy(text: str) -> Policy:
    doc = parse_yaml(textwrap.dedent(text), "policy.yaml")
    return parse_policy(doc.data, source=doc.source, lines=doc.lines)


CONFIGURED = policy(
    """
    dry_run: false
    rooms:
      "!trial:example.org": {dry_run: true}
      "!live:example.org": {dry_run: false, exempt: {users: ["@trusted:example.org"]}}
      "!rules:example.org": {rules: [{name: only-notify, actions: [notify]}]}
    """
)
TRIAL, LIVE, RULES, OTHER = "!trial:example.org", "!live:example.org", "!rules:example.org", "!other:example.org"


def dry_runs(p: Policy) -> dict[str, bool]:
    return {room: p.for_room(room).dry_run for room in (TRIAL, LIVE, RULES, OTHER)}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, {TRIAL: True, LIVE: False, RULES: False, OTHER: False}),
        # one room
        ({OTHER: True}, {TRIAL: True, LIVE: False, RULES: False, OTHER: True}),
        ({TRIAL: False}, {TRIAL: False, LIVE: False, RULES: False, OTHER: False}),
        ({RULES: True, LIVE: True}, {TRIAL: True, LIVE: True, RULES: True, OTHER: False}),
        # on everywhere is the emergency stop: rooms configured to act are included...
        ({None: True}, {TRIAL: True, LIVE: True, RULES: True, OTHER: True}),
        # ...off everywhere lifts it, but rooms configured to dry-run keep doing so
        ({None: False}, {TRIAL: True, LIVE: False, RULES: False, OTHER: False}),
        ({None: False, TRIAL: False}, {TRIAL: False, LIVE: False, RULES: False, OTHER: False}),
        # a moderator's switch for one room beats the one for everywhere
        ({None: True, LIVE: False}, {TRIAL: True, LIVE: False, RULES: True, OTHER: True}),
        ({None: False, TRIAL: True}, {TRIAL: True, LIVE: False, RULES: False, OTHER: False}),
    ],
)
def test_dry_run_overrides(overrides: dict[str | None, bool], expected: dict[str, bool]) -> None:
    assert dry_runs(with_dry_run(CONFIGURED, overrides)) == expected


def test_dry_run_overrides_keep_everything_else_and_change_nothing_in_place() -> None:
    before = CONFIGURED.model_dump()
    switched = with_dry_run(CONFIGURED, {None: True, LIVE: True, OTHER: True})
    assert CONFIGURED.model_dump() == before
    assert switched.rules == CONFIGURED.rules
    assert switched.exempt == CONFIGURED.exempt
    assert switched.for_room(LIVE).exempt == CONFIGURED.for_room(LIVE).exempt
    assert switched.for_room(RULES).rules == CONFIGURED.for_room(RULES).rules
    assert switched.rooms[OTHER] == RoomPolicy(dry_run=True)
    assert with_dry_run(Policy(), {}) == Policy()
