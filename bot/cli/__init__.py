"""The `modbot` command: its arguments and `main`, which hands each command to its module under bot/cli/.

One module per command group (run, registration, check, scan, hashes, accept, audit, report,
cache, demo); each imports what it needs from bot/cli/common.py and none imports this one. A
command's module is imported only when that command runs, so that `modbot --help` stays quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import import_module

from .. import __version__
from ..lists.importers import EXPORT_FORMATS, IMPORT_FORMATS
from ..model import HASH_TYPES


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The function `name` of bot/cli/`module`.py, imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(import_module(f"{__name__}.{module}"), name)(args)  # type: ignore[no-any-return]

    return run


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"modbot {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modbot", description="The `modbot` command.")
    parser.add_argument("--version", action="version", version=f"modbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the appservice")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=_command("run", "cmd_run"))

    p = sub.add_parser("generate-registration", help="write a registration file with fresh tokens and update the config")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-r", "--registration", default="registration.yaml")
    p.set_defaults(func=_command("registration", "cmd_generate_registration"))

    p = sub.add_parser("check", help="validate the config and policy, reach the homeserver, report missing privileges")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-r", "--registration", help="the registration file, for its mode (default: registration.yaml beside the config)")
    p.set_defaults(func=_command("check", "cmd_check"))

    p = sub.add_parser("scan", help="run the classifiers and policy on local files (no homeserver)")
    p.add_argument("files", nargs="+")
    p.add_argument("-c", "--config", help="config with hash lists and policy (default: none, nothing matches)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=_command("scan", "cmd_scan"))

    p = sub.add_parser("hashes", help="manage hash lists")
    hsub = p.add_subparsers(dest="hashes_command", required=True)
    h = hsub.add_parser("add-image", help="hash local images into a configured list")
    h.add_argument("images", nargs="+")
    h.add_argument("-c", "--config", required=True)
    h.add_argument("--list", required=True, help="name of a list in the config's hash_lists")
    h.add_argument("--label", help="label for the entries (default: the list's label)")
    h.set_defaults(func=_command("scan", "cmd_hashes_add_image"))

    h = hsub.add_parser("add-video", help="hash local videos into a configured list (vPDQ, HMA's format)")
    h.add_argument("videos", nargs="+")
    h.add_argument("-c", "--config", required=True)
    h.add_argument("--list", required=True, help="name of a list in the config's hash_lists")
    h.add_argument("--label", help="label for the entries (default: the list's label)")
    h.set_defaults(func=_command("videos", "cmd_hashes_add_video"))

    h = hsub.add_parser("import", help="import hashes into a configured list (only new entries are added)")
    h.add_argument("file")
    h.add_argument("-c", "--config", required=True)
    h.add_argument("--list", required=True, help="name of a list in the config's hash_lists")
    h.add_argument("--format", choices=IMPORT_FORMATS, default="modbot", help="the file's format (default: modbot)")
    h.add_argument("--type", choices=HASH_TYPES, help="hash type of a plain one-hash-per-line file")
    h.add_argument("--label", help="label for entries that have none (default: the list's label)")
    h.add_argument("--replace", action="store_true", help="make the file the whole list, dropping entries not in it")
    h.add_argument("--dry-run", action="store_true", help="read and report; write nothing")
    h.set_defaults(func=_command("hashes", "cmd_import"))

    h = hsub.add_parser("export", help="write a configured list in an exchange format")
    h.add_argument("-c", "--config", required=True)
    h.add_argument("--list", required=True)
    h.add_argument("--format", choices=EXPORT_FORMATS, default="modbot")
    h.add_argument("-o", "--output", help="file to write (default: standard output)")
    h.set_defaults(func=_command("hashes", "cmd_export"))

    h = hsub.add_parser("stats", help="entries, labels, rejected lines and memory per list; retro runs")
    h.add_argument("-c", "--config", required=True)
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=_command("hashes", "cmd_stats"))

    h = hsub.add_parser("check", help="explain which list entries are near an image, and at what distance")
    h.add_argument("images", nargs="+")
    h.add_argument("-c", "--config", required=True)
    h.add_argument("--margin", type=int, help="show entries this far beyond the threshold (default: pdq 16, phash 6)")
    h.set_defaults(func=_command("hashes", "cmd_check"))

    h = hsub.add_parser("retro", help="show what retroactive matching would find now (changes nothing)")
    h.add_argument("-c", "--config", required=True)
    h.add_argument("--list", help="only this list")
    h.set_defaults(func=_command("hashes", "cmd_retro"))

    h = hsub.add_parser("accept", help="load a held list version as it is (one that would empty the list, "
                        "is mostly rejected lines or drops more than hashlist.max_drop_share)")
    h.add_argument("name", help="name of a list in the config's hash_lists")
    h.add_argument("-c", "--config", required=True)
    h.set_defaults(func=_command("accept", "cmd_accept"))

    p = sub.add_parser("audit", help="the audit trail")
    asub = p.add_subparsers(dest="audit_command", required=True)
    a = asub.add_parser(
        "verify",
        help="check the incident log's keyed hash chain and its anchors (anchor file, management room); "
        "exit 1 if a row was edited, removed or the newest rows are missing",
    )
    a.add_argument("-c", "--config", required=True)
    a.add_argument("--no-homeserver", action="store_true", help="don't read the management room's anchors")
    a.add_argument("--room-events", type=int, default=5000, help="how far back to read the management room (events)")
    a.set_defaults(func=_command("audit", "cmd_audit_verify"))

    p = sub.add_parser("report", help="incident reports")
    rsub = p.add_subparsers(dest="report_command", required=True)
    r = rsub.add_parser("export", help="export incidents with the fields a CyberTipline-style report needs (no media)")
    r.add_argument("-c", "--config", required=True)
    r.add_argument("--since", help="only incidents recorded on or after this date (YYYY-MM-DD, UTC)")
    r.add_argument("--format", choices=("json", "csv"), default="json")
    r.add_argument("-o", "--output", help="write to this file instead of standard output")
    r.set_defaults(func=_command("report", "cmd_report_export"))

    p = sub.add_parser("cache", help="the classifiers' verdict cache")
    csub = p.add_subparsers(dest="cache_command", required=True)
    f = csub.add_parser("flush", help="forget cached verdicts, so that files are sent to the services again")
    f.add_argument("-c", "--config", required=True)
    f.add_argument("--classifier", help="only this classifier's verdicts (its configured name)")
    f.add_argument("--sha256", help="only this file's verdicts")
    f.set_defaults(func=_command("cache", "cmd_cache_flush"))

    p = sub.add_parser("demo", help="boot a throwaway Synapse and show modbot at work")
    p.add_argument("--workdir", help="keep the demo's files here (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep Synapse and modbot running until Ctrl-C")
    p.set_defaults(func=_command("demo", "cmd_demo"))

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
