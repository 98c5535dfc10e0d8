"""The `reports` commands: resolving users' reports carded by the report intake
(bot/intake/reports.py) — `report act <id>` applies the policy as if the reported media had
matched, `report dismiss <id>` closes the card with nothing done."""

from __future__ import annotations

from ..act.notices import describe_result
from ..intake.reports import ReportDesk
from .context import CommandContext, CommandError, Reply
from .framework import Arg, CommandSet


def register_report_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("report act", "act on a user's report: the policy's actions, as if the reported media matched",
       Arg("id", "int"), long_running=True, section="reports")
    async def report_act(ctx: CommandContext, id: int) -> Reply:
        row, results, rule = await _desk(ctx).act(id, by=ctx.sender)
        if row is None:
            raise CommandError(f"no report #{id}")
        if not results and rule in ("not open", "resolved meanwhile"):
            raise CommandError(f"report #{id} is {row.status} already" + (f" (by {row.resolved_by})" if row.resolved_by else ""))
        if not results and rule.startswith("cannot"):
            raise CommandError(f"report #{id}: {rule}")
        reply = Reply([f"report #{id}: acted on ({rule})"])
        for result in results:
            reply.add(describe_result(result))
            reply.ok = reply.ok and result.outcome.value in ("ok", "skipped", "dry_run")
        return reply

    @c("report dismiss", "close a user's report with nothing done", Arg("id", "int"), section="reports")
    async def report_dismiss(ctx: CommandContext, id: int) -> Reply:
        desk = _desk(ctx)
        if not await desk.dismiss(id, by=ctx.sender):
            row = await desk.repo.get(id)
            raise CommandError(f"no report #{id}" if row is None else f"report #{id} is {row.status} already")
        return Reply([f"report #{id} dismissed"])


def _desk(ctx: CommandContext) -> ReportDesk:
    if ctx.services.reports is None:
        raise CommandError("the report intake is not running")
    return ctx.services.reports
