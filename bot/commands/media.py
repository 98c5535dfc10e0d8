"""The `media` commands: scan media now, quarantine it, release it. Actions go through the
executor, like the pipeline's, so each is audited."""

from __future__ import annotations

from ..act.enforcer import media_ref
from ..act.notices import MatchedMedia, describe_verdict
from ..model import EventContext
from ..policy import decide
from ..senders import server_of
from .context import CommandContext, CommandError, Reply
from .framework import ROOM, Arg, CommandSet
from .members import refuse_anywhere_protected
from .parse import Target


def register_media_commands(commands: CommandSet) -> None:
    c = commands.command

    @c(
        "scan", "scan media now and report; --act applies the policy", Arg("mxc", "mxc", from_reply=True),
        Arg("act", "flag"), scope=ROOM, long_running=True, section="media",
    )
    async def scan(ctx: CommandContext, mxc: str | None, act: bool) -> Reply:
        services = ctx.services
        reply = Reply()
        for ref in await ctx.media_or_reply(mxc):
            hashes = await ctx.hashes_of(ref)
            verdicts, errors = await services.media.classify_hashes(hashes)
            allowed = services.controls.allowlist.reason(hashes)
            head = f"`{ref.mxc}`: sha256 `{hashes.sha256}`"
            if not verdicts:
                reply.add(head + ": no match" + "".join(f"; {e}" for e in errors))
                continue
            described = "; ".join(describe_verdict(v) for v in verdicts)
            reply.add(head + ": " + described + (f" — but {allowed}" if allowed else ""))
            if act and not allowed:
                if not ctx.reply_to:
                    raise CommandError("--act needs a reply to the message, so modbot knows whose it is")
                event = await ctx.replied_event()
                power = (await services.powers.get(ctx.room_id)).of(event["sender"])
                ev_ctx = EventContext(ctx.reply_to, ctx.room_id, event["sender"], power, event.get("origin_server_ts"))
                decision = decide(verdicts, ev_ctx, services.controls.policy, home_server=server_of(services.bot_user_id))
                matched = [MatchedMedia(ref, tuple(verdicts), hashes)]
                results = await services.enforcer.enforce(decision, ev_ctx, matched)
                outcome = "; ".join(f"{r.kind} {r.outcome.value}" for r in results)
                reply.add(f"Rule {decision.rule}: {outcome or decision.exempt_reason or 'no action'}")
        return reply

    @c(
        "quarantine", "quarantine media: an mxc URI, all of a user's, or all in a room",
        Arg("target", "target", from_reply=True), section="media",
    )
    async def quarantine(ctx: CommandContext, target: Target | None) -> Reply:
        hs, executor = ctx.services.homeserver, ctx.services.executor
        if target is None:
            refs = await ctx.media_or_reply(None)
            target = Target("mxc", refs[0].mxc)
        if target.kind == "mxc":
            ref = media_ref(target.value)
            assert ref is not None

            async def do() -> str:
                await hs.quarantine(ref.server, ref.media_id)
                return f"quarantined {ref.mxc}"

            subject, room = ref.mxc, None
        elif target.kind == "user":
            user = target.value
            await refuse_anywhere_protected(ctx, user)

            async def do() -> str:
                return f"quarantined {await hs.quarantine_user_media(user)} media of {user}"

            subject, room = user, None
        else:
            room_id = await hs.resolve_room(target.value)

            async def do() -> str:
                return f"quarantined {await hs.quarantine_room_media(room_id)} media in {room_id}"

            subject, room = room_id, room_id
        result = await executor.manual("quarantine", subject, room, by=ctx.sender, command_event_id=ctx.event_id, do=do)
        return Reply([result.detail], ok=result.outcome.value == "ok")

    @c("unquarantine", "release quarantined media", Arg("mxc", "mxc"), section="media")
    async def unquarantine(ctx: CommandContext, mxc: str) -> Reply:
        ref = media_ref(mxc)
        assert ref is not None
        result = await ctx.services.executor.unquarantine(ref, by=ctx.sender, reason_event_id=ctx.event_id)
        return Reply([result.detail], ok=result.outcome.value == "ok")
