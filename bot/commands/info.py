"""The `info` commands: help, version, status."""

from __future__ import annotations

import time

from .. import __version__
from .context import CommandContext, CommandError, Reply
from .framework import ROOM, Arg, CommandSet


def register_info_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("help", "list the commands, or explain one", Arg("command", "text", optional=True), scope=ROOM, section="info")
    async def help_(ctx: CommandContext, command: str | None) -> Reply:
        prefix = ctx.services.prefix
        if command:
            found, _ = commands.find(command.split())
            group = [found] if found else commands.group(command.split()[0])
            if not group:
                raise CommandError(f"no command {command!r}")
            return Reply([f"`{prefix} {cmd.usage()}`: {cmd.help}" for cmd in group])
        allowed = [cmd for cmd in commands.commands.values() if ctx.scope == "management" or cmd.scope == ROOM]
        lines = [
            f"modbot commands (start with `{prefix}` or mention the bot; targets may be IDs, aliases, "
            "matrix.to links, mxc URIs, or a reply):"
        ]
        lines += [f"`{cmd.usage()}`: {cmd.help}" for cmd in allowed]
        return Reply(lines)

    @c("version", "the modbot version", scope=ROOM, section="info")
    async def version(ctx: CommandContext) -> Reply:
        return Reply([f"modbot {__version__}"])

    @c("status", "uptime, queue, rooms, lists, classifiers, last errors", section="info")
    async def status(ctx: CommandContext) -> Reply:
        services = ctx.services
        controls, bot = services.controls, services.status
        uptime = int(time.time() - bot.started_at)
        counts = await services.store.events_by_status()
        policy = controls.policy
        lines = [
            f"modbot {__version__}, up {uptime // 3600}h{uptime % 3600 // 60:02d}m{uptime % 60:02d}s",
            f"Queue: {bot.queue_depth()} waiting; events {dict(sorted(counts.items()))}",
            f"Protected rooms: {len(controls.protected)}; management room {services.management_room}",
            f"Policy: {len(policy.rules)} rules, dry run {'on' if policy.dry_run else 'off'}; "
            f"allowlist {len(controls.allowlist)} hashes",
        ]
        for report in controls.list_reports:
            lines.append(f"List {report.name}: {report.entries} entries" + ("" if report.enabled else " (disabled)"))
        if services.policylists is not None:
            lines += [f"Policy list {w.describe()}" for w in await services.policylists.status()]
        for classifier in bot.classifiers:
            lines.append(f"Classifier {classifier.name}: {getattr(classifier, 'health', lambda: 'ok')()}")
        if bot.presend is not None:
            seen = bot.presend()
            lines.append(
                f"Pre-send checks since start: allowed {seen.get('allowed', 0)}, blocked {seen.get('blocked', 0)}, "
                f"timed out {seen.get('timed_out', 0)}, failed {seen.get('failed', 0)}, "
                f"not uploaded yet {seen.get('pending_upload', 0)}, not checked {seen.get('unchecked', 0)}"
            )
        errors = list(bot.recent_errors())[-3:]
        lines += [f"Recent error: {e}" for e in errors] or ["No recent errors"]
        return Reply(lines)
