"""The `modbot` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Config, ConfigError, default_config_text, load_config


def _load(path: str, **kwargs: Any) -> Config:
    try:
        return load_config(path, **kwargs)
    except ConfigError as e:
        print(f"modbot: the configuration is not valid:\n{e}", file=sys.stderr)
        raise SystemExit(2) from e
    except FileNotFoundError as e:
        print(f"modbot: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # mautrix logs every request at INFO/DEBUG; the bot's own log says what matters.
    logging.getLogger("mau").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    from ..app import run
    from ..record.instance import EXIT_ALREADY_RUNNING, AlreadyRunning

    config = _load(args.config)
    _setup_logging(config.logging.level)
    try:
        return asyncio.run(run(config, args.config))
    except ConfigError as e:  # e.g. a classifier whose secret is missing from the environment
        print(f"modbot: cannot start:\n{e}", file=sys.stderr)
        return 2
    except AlreadyRunning as e:
        print(f"modbot: cannot start: {e}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING


def cmd_cache_flush(args: argparse.Namespace) -> int:
    from ..classify.cache import VerdictCache
    from ..record.db import create_engine, migrate
    from ..record.scanning import VerdictCacheRepo

    config = _load(args.config)

    async def flush() -> int:
        engine = create_engine(config.database.url)
        try:
            await migrate(engine)
            return await VerdictCache(VerdictCacheRepo(engine)).flush(classifier=args.classifier, sha256=args.sha256)
        finally:
            await engine.dispose()

    flushed = asyncio.run(flush())
    print(f"flushed {flushed} cached verdict{'s' if flushed != 1 else ''}")
    return 0


def cmd_generate_registration(args: argparse.Namespace) -> int:
    from ..filemodes import write_private
    from ..intake.registration import new_token, set_tokens, write_registration

    path = Path(args.config)
    if not path.exists():
        write_private(path, default_config_text())
        print(f"wrote an example config to {path}; edit homeserver.url and homeserver.domain")
    text = set_tokens(path.read_text(), new_token(), new_token())
    write_private(path, text)  # it now holds the tokens: 0600, however it was before
    config = _load(str(path))
    out = Path(args.registration)
    write_registration(config, out)
    print(f"wrote {out} with fresh tokens and updated {path}")
    key_file = config.incidents.chain_key_file
    if not key_file.exists():
        from ..record.evidence import create_chain_key

        create_chain_key(key_file)
        print(f"wrote the incident chain key {key_file} (mode 0600); back it up with the database")
    print("Next: add the registration to app_service_config_files in homeserver.yaml, restart Synapse,")
    print(f"then run `modbot check -c {path}`.")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import check

    config = _load(args.config)
    print(f"config {args.config}: valid")
    registration = Path(args.registration) if args.registration else Path(args.config).parent / "registration.yaml"
    return asyncio.run(check(config, config_path=Path(args.config), registration_path=registration))


def cmd_scan(args: argparse.Namespace) -> int:
    from .scan import scan_files

    config = _load(args.config) if args.config else None
    results = scan_files([Path(f) for f in args.files], config)
    failed = 0
    for result in results:
        failed += bool(result.get("error"))
        if args.json:
            print(json.dumps(result, sort_keys=True))
        else:
            print(_describe_scan(result))
    return 1 if failed else 0


def _describe_scan(result: dict[str, Any]) -> str:
    if result.get("error"):
        return f"{result['file']}: error: {result['error']}"
    verdicts = result["verdicts"]
    head = f"{result['file']}: sha256 {result['hashes']['sha256']}"
    if result["hashes"].get("perceptual_error"):
        head += f" (no perceptual hash: {result['hashes']['perceptual_error']})"
    if not verdicts:
        return head + "\n  no match"
    lines = [head]
    for v in verdicts:
        where = v.get("list") or v["classifier"]
        lines.append(f"  match: {where} label {v['label']} {v['kind']} {v.get('hash_type') or ''} distance {v.get('distance')}")
    decision = result["decision"]
    lines.append(f"  rule {decision['rule']}: would {', '.join(decision['actions']) or 'do nothing'}"
                 + (" [dry run]" if decision["dry_run"] else ""))
    return "\n".join(lines)


def cmd_hashes_add_image(args: argparse.Namespace) -> int:
    from .scan import add_images

    config = _load(args.config)
    try:
        added, path = add_images([Path(p) for p in args.images], config, args.list, args.label)
    except KeyError as e:
        # str() of a KeyError is the repr of its argument: quotes around the message.
        print(f"modbot: {e.args[0]}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"modbot: {e}", file=sys.stderr)
        return 2
    print(f"added {added} hashes to list {args.list} ({path})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.run import demo

    return asyncio.run(demo(Path(args.workdir) if args.workdir else None, keep=args.keep))


async def _with_moderation(config: Config, work):  # type: ignore[no-untyped-def]
    from ..record.db import create_engine, migrate
    from ..record.moderation import ModerationStore

    engine = create_engine(config.database.url)
    try:
        await migrate(engine)
        return await work(ModerationStore(engine))
    finally:
        await engine.dispose()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from ..record.evidence import ChainKeyError
    from .audit import verify_evidence

    config = _load(args.config)
    try:
        report = asyncio.run(
            verify_evidence(config, use_homeserver=not args.no_homeserver, max_room_events=args.room_events)
        )
    except ChainKeyError as e:
        print(f"modbot: {e}", file=sys.stderr)
        return 2
    print("\n".join(report.lines))
    return 0 if report.ok else 1


def cmd_report_export(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from ..act.incidents import export

    config = _load(args.config)
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            print(f"modbot: --since: expected a date like 2026-01-31, got {args.since!r}", file=sys.stderr)
            return 2
    incidents = asyncio.run(_with_moderation(config, lambda m: m.incidents(since=since)))
    text = export([(i.id, i.record, i.row_hash) for i in incidents], args.format)
    if args.output:
        from ..filemodes import write_private

        write_private(Path(args.output), text)  # user IDs, rooms and hashes: 0600
        print(f"wrote {len(incidents)} incidents to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"modbot {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modbot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the appservice")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("generate-registration", help="write a registration file with fresh tokens and update the config")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-r", "--registration", default="registration.yaml")
    p.set_defaults(func=cmd_generate_registration)

    p = sub.add_parser("check", help="validate the config and policy, reach the homeserver, report missing privileges")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-r", "--registration", help="the registration file, for its mode (default: registration.yaml beside the config)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("scan", help="run the classifiers and policy on local files (no homeserver)")
    p.add_argument("files", nargs="+")
    p.add_argument("-c", "--config", help="config with hash lists and policy (default: none, nothing matches)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("hashes", help="manage hash lists")
    hsub = p.add_subparsers(dest="hashes_command", required=True)
    h = hsub.add_parser("add-image", help="hash local images into a configured list")
    h.add_argument("images", nargs="+")
    h.add_argument("-c", "--config", required=True)
    h.add_argument("--list", required=True, help="name of a list in the config's hash_lists")
    h.add_argument("--label", help="label for the entries (default: the list's label)")
    h.set_defaults(func=cmd_hashes_add_image)
    from .hashes import add_commands as add_hashes_commands

    add_hashes_commands(hsub)

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
    a.set_defaults(func=cmd_audit_verify)

    p = sub.add_parser("report", help="incident reports")
    rsub = p.add_subparsers(dest="report_command", required=True)
    r = rsub.add_parser("export", help="export incidents with the fields a CyberTipline-style report needs (no media)")
    r.add_argument("-c", "--config", required=True)
    r.add_argument("--since", help="only incidents recorded on or after this date (YYYY-MM-DD, UTC)")
    r.add_argument("--format", choices=("json", "csv"), default="json")
    r.add_argument("-o", "--output", help="write to this file instead of standard output")
    r.set_defaults(func=cmd_report_export)

    p = sub.add_parser("cache", help="the classifiers' verdict cache")
    csub = p.add_subparsers(dest="cache_command", required=True)
    f = csub.add_parser("flush", help="forget cached verdicts, so that files are sent to the services again")
    f.add_argument("-c", "--config", required=True)
    f.add_argument("--classifier", help="only this classifier's verdicts (its configured name)")
    f.add_argument("--sha256", help="only this file's verdicts")
    f.set_defaults(func=cmd_cache_flush)

    p = sub.add_parser("demo", help="boot a throwaway Synapse and show modbot at work")
    p.add_argument("--workdir", help="keep the demo's files here (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep Synapse and modbot running until Ctrl-C")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
