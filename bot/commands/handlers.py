"""The commands moderators run. Each handler goes through the same executor as the pipeline,
so what a moderator does is audited like what the bot does."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import yaml

from .. import __version__
from ..act.executor import describe_verdict
from ..act.homeserver import HomeserverError
from ..act.enforcer import media_ref
from ..lists.format import HashEntry, append_entries, remove_entries
from ..act.incidents import summary
from ..model import EventContext
from ..policy import decide
from .evidence import add_evidence_commands
from .actions import register_action_commands
from .framework import Arg, CommandSet
from .members import act_in_rooms, redact_user, refuse_anywhere_protected
from .parse import Target
from .runner import CommandContext, CommandError, Reply

if TYPE_CHECKING:
    from ..app import ModBot

ROOM = "room"


def build_commands() -> CommandSet:
    commands = CommandSet()
    c = commands.command

    # --- information ------------------------------------------------------------------------

    @c("help", "list the commands, or explain one", Arg("command", "text", optional=True), scope=ROOM, section="info")
    async def help_(ctx: CommandContext, command: str | None) -> Reply:
        prefix = ctx.bot.commands.prefix
        if command:
            found, _ = commands.find(command.split())
            group = [found] if found else commands.group(command.split()[0])
            if not group:
                raise CommandError(f"no command {command!r}")
            return Reply([f"`{prefix} {cmd.usage()}`: {cmd.help}" for cmd in group])
        allowed = [cmd for cmd in commands.commands.values() if ctx.scope == "management" or cmd.scope == ROOM]
        lines = [f"modbot commands (start with `{prefix}` or mention the bot; targets may be IDs, aliases, matrix.to links, mxc URIs, or a reply):"]
        lines += [f"`{cmd.usage()}`: {cmd.help}" for cmd in allowed]
        return Reply(lines)

    @c("version", "the modbot version", scope=ROOM, section="info")
    async def version(ctx: CommandContext) -> Reply:
        return Reply([f"modbot {__version__}"])

    @c("status", "uptime, queue, rooms, lists, classifiers, last errors", section="info")
    async def status(ctx: CommandContext) -> Reply:
        bot = ctx.bot
        uptime = int(time.time() - bot.started_at)
        counts = await bot.store.events_by_status()
        lines = [
            f"modbot {__version__}, up {uptime // 3600}h{uptime % 3600 // 60:02d}m{uptime % 60:02d}s",
            f"Queue: {bot.queue.depth if bot.queue else 0} waiting; events {dict(sorted(counts.items()))}",
            f"Protected rooms: {len(bot.protected)}; management room {bot.management_room}",
            f"Policy: {len(bot.policy.rules)} rules, dry run {'on' if bot.policy.dry_run else 'off'}; allowlist {len(bot.allowlist)} hashes",
        ]
        for report in bot.list_reports:
            lines.append(f"List {report.name}: {report.entries} entries" + ("" if report.enabled else " (disabled)"))
        for classifier in bot.classifiers:
            lines.append(f"Classifier {classifier.name}: {getattr(classifier, 'health', lambda: 'ok')()}")
        errors = bot.queue.last_errors[-3:] if bot.queue else []
        lines += [f"Recent error: {e}" for e in errors] or ["No recent errors"]
        return Reply(lines)

    # --- rooms ----------------------------------------------------------------------------------

    @c("rooms list", "the protected rooms and the bot's power in each", section="rooms")
    async def rooms_list(ctx: CommandContext) -> Reply:
        lines = [f"{len(ctx.bot.protected)} protected rooms:"]
        for room in sorted(ctx.bot.protected):
            lines.append(f"`{room}`: {await _power_note(ctx.bot, room)}")
        return Reply(lines)

    @c("rooms protect", "protect a room (invite the bot first)", Arg("room", "room"), section="rooms")
    async def rooms_protect(ctx: CommandContext, room: str) -> Reply:
        room_id = await ctx.bot.protect_room(room, by=ctx.sender)
        return Reply([f"Protecting `{room_id}`: {await _power_note(ctx.bot, room_id)}"])

    @c("rooms unprotect", "stop protecting a room", Arg("room", "room"), section="rooms")
    async def rooms_unprotect(ctx: CommandContext, room: str) -> Reply:
        room_id = await ctx.bot.unprotect_room(room, by=ctx.sender)
        return Reply([f"No longer protecting `{room_id}`."])

    # --- scanning, lists, allowlist -----------------------------------------------------------------

    @c("scan", "scan media now and report; --act applies the policy", Arg("mxc", "mxc", from_reply=True), Arg("act", "flag"), scope=ROOM, long_running=True, section="media")
    async def scan(ctx: CommandContext, mxc: str | None, act: bool) -> Reply:
        reply = Reply()
        for ref in await ctx.media_or_reply(mxc):
            hashes = await ctx.hashes_of(ref)
            verdicts, errors = await ctx.bot.pipeline.classify_hashes(hashes)
            allowed = ctx.bot.allowlist.reason(hashes)
            head = f"`{ref.mxc}`: sha256 `{hashes.sha256}`"
            if not verdicts:
                reply.add(head + ": no match" + "".join(f"; {e}" for e in errors))
                continue
            reply.add(head + ": " + "; ".join(describe_verdict(v) for v in verdicts) + (f" — but {allowed}" if allowed else ""))
            if act and not allowed:
                if not ctx.reply_to:
                    raise CommandError("--act needs a reply to the message, so modbot knows whose it is")
                event = await ctx.replied_event()
                power = (await ctx.bot.powers.get(ctx.room_id)).of(event["sender"])
                ev_ctx = EventContext(ctx.reply_to, ctx.room_id, event["sender"], power, event.get("origin_server_ts"))
                decision = decide(verdicts, ev_ctx, ctx.bot.policy)
                from ..act.executor import MatchedMedia

                results = await ctx.bot.enforcer.enforce(decision, ev_ctx, [MatchedMedia(ref, tuple(verdicts), hashes)])
                outcome = "; ".join(f"{r.kind} {r.outcome.value}" for r in results) or (decision.exempt_reason or "no action")
                reply.add(f"Rule {decision.rule}: {outcome}")
        return reply

    @c("hash add", "add the replied-to media's hashes to a list", Arg("list", "word"), Arg("label", "word"), section="lists")
    async def hash_add(ctx: CommandContext, list: str, label: str) -> Reply:  # noqa: A002
        config = _list_config(ctx.bot, list)
        added = 0
        for ref in await ctx.media_or_reply(None):
            hashes = await ctx.hashes_of(ref)
            entries = [HashEntry("sha256", hashes.sha256, label)]
            if hashes.md5:
                entries.append(HashEntry("md5", hashes.md5, label))
            if hashes.pdq:
                entries.append(HashEntry("pdq", hashes.pdq, label))
            added += await asyncio.to_thread(append_entries, config.path, entries)
        await ctx.bot.reload_lists()
        return Reply([f"Added {added} hashes to list {list} (label {label})."])

    @c("hash remove", "remove the replied-to media's (or a hash's) entries from a list", Arg("list", "word"), Arg("hash", "hash", optional=True), section="lists")
    async def hash_remove(ctx: CommandContext, list: str, hash: tuple[str, str] | None) -> Reply:  # noqa: A002
        config = _list_config(ctx.bot, list)
        if hash:
            values = {hash[1]}
        else:
            values = set()
            for ref in await ctx.media_or_reply(None):
                h = await ctx.hashes_of(ref)
                values |= {x for x in (h.sha256, h.md5, h.pdq) if x}
        removed = await asyncio.to_thread(remove_entries, config.path, values)
        if removed:
            # The bot wrote this file itself: a shrink it would otherwise hold is the moderator's.
            await ctx.bot.accept_list(list, by=ctx.sender)
        await ctx.bot.reload_lists()
        return Reply([f"Removed {removed} entries from list {list}."])

    @c("lists", "the hash lists: names, sizes, labels, enabled", scope=ROOM, section="lists")
    async def lists(ctx: CommandContext) -> Reply:
        labels = {c.name: c.label for c in ctx.bot.config.hash_lists}
        lines = [
            f"{r.name}: {r.entries} entries ({', '.join(f'{k} {v}' for k, v in r.counts.items() if v)}), label {labels.get(r.name)}, "
            + ("enabled" if r.enabled else "disabled")
            + (f", {len(r.errors)} bad lines" if r.errors else "")
            for r in ctx.bot.list_reports
        ]
        return Reply(lines or ["No hash lists configured."])

    @c("allow", "record a false positive (reply, or a hash): matching skips it", Arg("hash", "hash", from_reply=True), Arg("reason", "text", optional=True), section="lists")
    async def allow(ctx: CommandContext, hash: tuple[str, str] | None, reason: str | None) -> Reply:  # noqa: A002
        reason = reason or "false positive"
        added = []
        if hash:
            added.append(await ctx.bot.moderation.allow(hash[0], hash[1], reason, ctx.sender))
        else:
            for ref in await ctx.media_or_reply(None):
                hashes = await ctx.hashes_of(ref)
                added.append(await ctx.bot.moderation.allow("sha256", hashes.sha256, reason, ctx.sender))
                if hashes.pdq:
                    added.append(await ctx.bot.moderation.allow("pdq", hashes.pdq, reason, ctx.sender))
        await ctx.bot.refresh_allowlist()
        return Reply([f"Allowlisted #{a.id} {a.hash_type} `{a.hash}`" for a in added])

    @c("allow list", "the allowlist", section="lists")
    async def allow_list(ctx: CommandContext) -> Reply:
        entries = await ctx.bot.moderation.allowlist()
        return Reply([f"#{a.id} {a.hash_type} `{a.hash}`: {a.reason} ({a.added_by})" for a in entries] or ["The allowlist is empty."])

    @c("allow remove", "remove an allowlist entry by number or hash", Arg("entry", "word"), section="lists")
    async def allow_remove(ctx: CommandContext, entry: str) -> Reply:
        removed = await ctx.bot.moderation.remove_allowed(entry.lstrip("#"))
        await ctx.bot.refresh_allowlist()
        if not removed:
            raise CommandError(f"no allowlist entry {entry}")
        return Reply([f"Removed {removed} allowlist entr{'y' if removed == 1 else 'ies'}."])

    # --- media -------------------------------------------------------------------------------------

    @c("quarantine", "quarantine media: an mxc URI, all of a user's, or all in a room", Arg("target", "target", from_reply=True), section="media")
    async def quarantine(ctx: CommandContext, target: Target | None) -> Reply:
        hs = ctx.bot.homeserver
        if target is None:
            refs = await ctx.media_or_reply(None)
            target = Target("mxc", refs[0].mxc)
        if target.kind == "mxc":
            ref = media_ref(target.value)
            assert ref is not None

            async def do() -> str:
                await hs.quarantine(ref.server, ref.media_id)
                return f"quarantined {ref.mxc}"

            result = await ctx.bot.executor.manual("quarantine", ref.mxc, None, by=ctx.sender, command_event_id=ctx.event_id, do=do)
        elif target.kind == "user":
            await refuse_anywhere_protected(ctx, target.value)

            async def do() -> str:
                return f"quarantined {await hs.quarantine_user_media(target.value)} media of {target.value}"

            result = await ctx.bot.executor.manual("quarantine", target.value, None, by=ctx.sender, command_event_id=ctx.event_id, do=do)
        else:
            room_id = await hs.resolve_room(target.value)

            async def do() -> str:
                return f"quarantined {await hs.quarantine_room_media(room_id)} media in {room_id}"

            result = await ctx.bot.executor.manual("quarantine", room_id, room_id, by=ctx.sender, command_event_id=ctx.event_id, do=do)
        return Reply([result.detail], ok=result.outcome.value == "ok")

    @c("unquarantine", "release quarantined media", Arg("mxc", "mxc"), section="media")
    async def unquarantine(ctx: CommandContext, mxc: str) -> Reply:
        ref = media_ref(mxc)
        assert ref is not None
        result = await ctx.bot.executor.unquarantine(ref, by=ctx.sender, reason_event_id=ctx.event_id)
        return Reply([result.detail], ok=result.outcome.value == "ok")

    # --- members --------------------------------------------------------------------------------------

    # Who may be acted against where: bot/commands/authority.py, per room (members.py).
    @c("ban", "ban a user here, in a room, or in all protected rooms", Arg("user", "user", from_reply=True), Arg("scope", "scope", optional=True), Arg("reason", "text", optional=True), scope=ROOM, section="members")
    async def ban(ctx: CommandContext, user: str | None, scope: str | None, reason: str | None) -> Reply:
        user = await ctx.user_or_reply(user)
        rooms = await ctx.rooms_for(scope)
        return await act_in_rooms(ctx, "ban", user, rooms, lambda room: ctx.bot.homeserver.ban(room, user, reason or f"banned by {ctx.sender}"))

    @c("unban", "unban a user here, in a room, or in all protected rooms", Arg("user", "user"), Arg("scope", "scope", optional=True), scope=ROOM, section="members")
    async def unban(ctx: CommandContext, user: str, scope: str | None) -> Reply:
        rooms = await ctx.rooms_for(scope)
        return await act_in_rooms(ctx, "unban", user, rooms, lambda room: ctx.bot.homeserver.unban(room, user, f"unbanned by {ctx.sender}"))

    @c("kick", "kick a user from this room or a room", Arg("user", "user", from_reply=True), Arg("room", "room", optional=True), Arg("reason", "text", optional=True), scope=ROOM, section="members")
    async def kick(ctx: CommandContext, user: str | None, room: str | None, reason: str | None) -> Reply:
        user = await ctx.user_or_reply(user)
        rooms = await ctx.rooms_for(room)
        return await act_in_rooms(ctx, "kick", user, rooms, lambda r: ctx.bot.homeserver.kick(r, user, reason or f"kicked by {ctx.sender}"))

    @c("redact", "redact a user's recent messages here, in a room, or in all protected rooms", Arg("user", "user", from_reply=True), Arg("limit", "int", keyword="limit", optional=True), Arg("scope", "scope", optional=True), scope=ROOM, long_running=True, section="members")
    async def redact(ctx: CommandContext, user: str | None, limit: int | None, scope: str | None) -> Reply:
        user = await ctx.user_or_reply(user)
        rooms = await ctx.rooms_for(scope)
        return await redact_user(ctx, user, rooms, limit)

    # --- policy -----------------------------------------------------------------------------------------

    @c("policy show", "the policy in force", section="policy")
    async def policy_show(ctx: CommandContext) -> Reply:
        text = yaml.safe_dump(ctx.bot.policy.model_dump(mode="json"), sort_keys=False)
        return Reply(["Policy in force:", *text.splitlines()])

    @c("policy reload", "reload the policy from the config; an invalid one is refused", section="policy")
    async def policy_reload(ctx: CommandContext) -> Reply:
        ok, message = await ctx.bot.reload_policy(by=ctx.sender)
        return Reply([message], ok=ok)

    @c("dryrun", "dry run on or off, everywhere or in one room", Arg("state", "onoff"), Arg("room", "room", optional=True), section="policy")
    async def dryrun(ctx: CommandContext, state: str, room: str | None) -> Reply:
        room_id = await ctx.bot.homeserver.resolve_room(room) if room else None
        await ctx.bot.set_dry_run(state == "on", room_id, by=ctx.sender)
        return Reply([f"Dry run {state} {'in ' + room_id if room_id else 'everywhere'}."])

    # --- audit, review, reports -------------------------------------------------------------------------

    @c("audit", "the last N actions with outcomes, optionally for a user or room", Arg("n", "int", optional=True), Arg("target", "target", optional=True), section="audit")
    async def audit(ctx: CommandContext, n: int | None, target: Target | None) -> Reply:
        n = min(n or 10, 100)
        entries = await ctx.bot.store.audit_log(category="action", limit=2000)
        if target is not None:
            entries = [e for e in entries if target.value in (e.sender, e.room_id, e.mxc) or target.value in e.message]
        entries = entries[:n]
        lines = [
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.ts))} {e.outcome}: {e.message}"
            for e in entries
        ]
        return Reply(lines or ["No actions recorded."])

    @c("review list", "open review items", section="review")
    async def review_list(ctx: CommandContext) -> Reply:
        items = await ctx.bot.moderation.reviews("open")
        return Reply(
            [f"#{i.id}: {i.sender} in `{i.room_id}`, rule {i.rule}, {'held' if i.held else 'flagged'}" for i in items]
            or ["No open review items."]
        )

    @c("review approve", "confirm a match: the rule's remaining actions run", Arg("id", "int"), section="review")
    async def review_approve(ctx: CommandContext, id: int) -> Reply:  # noqa: A002
        item, results, incident = await ctx.bot.enforcer.approve(id, by=ctx.sender, command_event_id=ctx.event_id)
        if item is None:
            raise CommandError(f"no review item #{id}")
        if incident is None:
            raise CommandError(f"review #{id} is already {item.status}")
        lines = [f"Review #{id} approved; incident #{incident.id} recorded."]
        lines += [f"{r.kind} {r.target}: {r.outcome.value}" for r in results]
        return Reply(lines)

    @c("review reject", "a false match: release the media, allowlist its hashes", Arg("id", "int"), Arg("tell", "flag"), section="review")
    async def review_reject(ctx: CommandContext, id: int, tell: bool) -> Reply:  # noqa: A002
        item, results = await ctx.bot.enforcer.reject(id, by=ctx.sender, command_event_id=ctx.event_id, tell_room=tell)
        if item is None:
            raise CommandError(f"no review item #{id}")
        if item.resolved_by != ctx.sender or item.status != "rejected" or (not results and item.held):
            if item.status != "rejected" or item.resolved_by != ctx.sender:
                raise CommandError(f"review #{id} is already {item.status}")
        await ctx.bot.refresh_allowlist()
        lines = [f"Review #{id} rejected: its hashes are allowlisted."]
        lines += [f"{r.kind} {r.target}: {r.outcome.value}" for r in results]
        if item.held:
            lines.append("The event stays redacted: a redaction cannot be undone.")
        return Reply(lines)

    @c("report", "the incident record (no media) for a report", Arg("incident", "int"), section="audit")
    async def report(ctx: CommandContext, incident: int) -> Reply:
        found = await ctx.bot.moderation.incident(incident)
        if found is None:
            raise CommandError(f"no incident #{incident}")
        return Reply([*summary(found.id, found.record), f"Record hash: `{found.row_hash}`"])

    add_evidence_commands(commands)
    register_action_commands(commands)  # bot/commands/actions.py
    return commands


def _list_config(bot: ModBot, name: str):  # type: ignore[no-untyped-def]
    for config in bot.config.hash_lists:
        if config.name == name:
            return config
    raise CommandError(f"no hash list {name!r} (have: {', '.join(c.name for c in bot.config.hash_lists) or 'none'})")


async def _power_note(bot: ModBot, room_id: str) -> str:
    try:
        power = await bot.powers.get(room_id)
    except HomeserverError as e:
        return f"cannot read power levels ({e})"
    mine = power.of(bot.bot_user_id)
    need = max(power.ban, power.redact)
    if mine < need:
        return f"bot power {mine}, needs {need} to ban and redact"
    return f"bot power {mine} (ban {power.ban}, redact {power.redact})"
