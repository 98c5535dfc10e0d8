"""Users' reports: polled from Synapse's admin API, each carded once in the management room,
acted on at once when its media matches, else resolved by moderators (`report act`,
`report dismiss`).

Each poll reads the newest reports page by page until a page holds one already seen (the
`user_reports` table remembers them across restarts), stores the new ones, then cards what
is stored and not carded yet, abuse-imagery reports first. A card is a notice through the
executor under one key per report, so a crash between card and bookkeeping never cards a
report twice. A card says who reported what (room, event, sender), the reason and score,
what modbot finds in the event's media now (verdicts, hashes) and the sender's earlier
incidents. Media that matches is acted on by the policy at once, and the card says so.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..act.enforcer import Enforcer
from ..act.homeserver import Homeserver, HomeserverError
from ..act.notices import ActionResult, MatchedMedia, describe_result, describe_verdict
from ..act.powers import PowerCache
from ..allowlist import Allowlist
from ..extract import extract_media_refs
from ..model import ActionKind, Decision, EventContext, Hashes, MatchKind, MediaRef, Outcome, PlannedAction, Verdict
from ..policy import PERSON_ACTIONS, Policy, Rule, decide
from ..record.moderation import ModerationStore
from ..record.reports import ACTED, DISMISSED, OPEN, RESOLVED, ReportRepo, UserReport
from ..record.store import Store
from ..senders import server_of
from .reported import Report, flagged_first, parse_report

log = logging.getLogger("modbot.reports")
MAX_PAGES = 20  # per poll and kind: a backlog beyond pages x page_size waits for the next poll
Fetch = Callable[..., Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ReportSettings:
    interval: float = 30.0
    page_size: int = 50
    csam_phrases: tuple[str, ...] = ()
    act_on_match: bool = True


class ReportDesk:
    """The reports of users: intake (poll), cards, and moderators' resolutions."""

    def __init__(
        self, hs: Homeserver, repo: ReportRepo, store: Store, moderation: ModerationStore, enforcer: Enforcer,
        powers: PowerCache, media: Any, *, policy: Callable[[], Policy], allowlist: Callable[[], Allowlist],
        settings: ReportSettings,
    ) -> None:
        self.hs, self.repo, self.store, self.moderation = hs, repo, store, moderation
        self.enforcer, self.powers, self.media = enforcer, powers, media
        self._policy, self._allowlist, self.settings = policy, allowlist, settings
        self.user_reports_available: bool | None = None  # None: not asked yet
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # --- intake ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="report-intake")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        log.info("reading users' reports every %.0f s", self.settings.interval)
        while True:
            try:
                await self.poll()
            except Exception:  # the loop must outlive any one poll; the next one tries again
                log.exception("report intake failed; next poll in %.0f s", self.settings.interval)
            await asyncio.sleep(self.settings.interval)

    async def poll(self) -> int:
        """Read new reports, card them; how many were carded."""
        async with self._lock:
            await self._read("event", self.hs.event_reports, "event_reports")
            if self.user_reports_available is not False:
                await self._read("user", self.hs.user_reports, "user_reports")
            pending = await self.repo.unfinished()
            order = {(r.kind, r.report_id): r for r in pending}
            parsed = flagged_first(Report.from_json(r.detail["report"]) for r in pending)
            for report in parsed:
                await self._card(order[(report.kind, report.report_id)], report)
            if parsed:
                log.info("carded %d new report(s)", len(parsed))
            return len(parsed)

    async def _read(self, kind: str, fetch: Fetch, field: str) -> None:
        start = 0
        for _ in range(MAX_PAGES):
            try:
                page = await fetch(start=start, limit=self.settings.page_size)
            except HomeserverError as e:
                if kind == "user" and getattr(e, "status", None) in (400, 404):
                    self.user_reports_available = False  # Synapse before 1.152
                    log.info("this Synapse has no user_reports API (%s): user reports are not read", e)
                    return
                raise
            if kind == "user":
                self.user_reports_available = True
            entries = page.get(field) if isinstance(page.get(field), list) else []
            reports: list[Report] = []
            for entry in entries:
                report = parse_report(kind, entry, self.settings.csam_phrases)
                if report is None:
                    await self.store.audit("report", "rejected", f"not a usable {kind} report: {str(entry)[:200]}")
                else:
                    reports.append(report)
            seen = await self.repo.seen(kind, [r.report_id for r in reports])
            for report in reports:
                if report.report_id not in seen and await self.repo.add(kind, report.report_id, report.received_ts, {"report": report.as_json()}):
                    await self.store.audit("report", "received", f"{kind} report {report.report_id} by {report.reporter}",
                                           event_id=report.event_id, room_id=report.room_id, sender=report.target)
            next_token = page.get("next_token")
            if seen or not entries or not isinstance(next_token, int):
                return
            start = next_token

    # --- cards ---------------------------------------------------------------------------------

    async def _card(self, row: UserReport, report: Report) -> None:
        lines = [f"Reported by: {report.reporter}"]
        if report.kind == "event":
            lines += [f"Room: {report.room_id}", f"Event: {report.event_id}", f"Sender: {report.target or 'unknown'}"]
        else:
            lines.append(f"Reported user: {report.target}")
        lines.append(f"Reason: {report.reason or '(none given)'}" + (f" (score {report.score})" if report.score is not None else ""))
        status, found = OPEN, []
        matched: list[MatchedMedia] = []
        event: dict[str, Any] | None = None
        media: list[str] = []
        if report.kind == "event":
            event, found, matched = await self._scan(report)
            lines += found
            media = [r.mxc for r in extract_media_refs(event).refs if not r.encrypted] if event else []
        lines += await self._history(report.target)
        results: list[ActionResult] = []
        if matched and self.settings.act_on_match and event is not None:
            decision, ctx = await self._decide(report, event, [v for m in matched for v in m.verdicts], self._policy())
            if decision.acts:
                results = await self.enforcer.enforce(decision, ctx, matched)
                status = ACTED
                lines.append(f"Acted on by policy rule {decision.rule}: " + ("; ".join(describe_result(r) for r in results) or "nothing"))
        if status == OPEN:
            lines.append(f"Resolve: `report act {row.id}` (the policy's actions as if it matched) or `report dismiss {row.id}`;"
                         " or reply `hash add <list> <label>` to this card")
        title = f"modbot report #{row.id}: " + ("ABUSE IMAGERY reported" if report.flagged else f"a user reported {'a message' if report.kind == 'event' else 'a user'}")
        ctx = EventContext(report.event_id or f"report:{row.id}", report.room_id or "", report.target or "", 0)
        card = await self.enforcer.executor.notice(f"report-card:{report.kind}:{report.report_id}", title, lines, ctx, "report intake")
        if card.outcome is Outcome.PENDING or card.detail.startswith("being carried out by"):
            # The homeserver is down, or a crashed run's claim on the card holds until its
            # lease ends: the report stays new, and a later poll cards it (once).
            return
        card_id = _event_id(card.detail)
        await self.repo.carded(row.id, status=status, card_event_id=card_id, detail={**row.detail, "card": lines, "media": media})
        await self.store.audit("report", "carded", f"report #{row.id} ({report.kind} {report.report_id}): {status}",
                               event_id=report.event_id, room_id=report.room_id, sender=report.target)

    async def _scan(self, report: Report) -> tuple[dict[str, Any] | None, list[str], list[MatchedMedia]]:
        """The reported event's media scanned now: lines for the card, and what matched."""
        assert report.event_id is not None
        try:
            event = await self.hs.fetch_event(report.event_id)
        except HomeserverError as e:
            return None, [f"Event: cannot be read ({e})"], []
        refs = [r for r in extract_media_refs(event).refs if not r.encrypted]
        if not refs:
            return event, ["Media: none in the event"], []
        lines: list[str] = []
        matched: list[MatchedMedia] = []
        for ref in refs:
            hashes, error, _ = await self.media.hashes_for(ref)
            if hashes is None:
                lines.append(f"Media {ref.mxc}: not scanned ({error})")
                continue
            verdicts, errors = await self.media.classify_hashes(hashes)
            allowed = self._allowlist().reason(hashes)
            if verdicts and not allowed:
                matched.append(MatchedMedia(ref, tuple(verdicts), hashes))
            what = "; ".join(describe_verdict(v) for v in verdicts) or "no match"
            extra = (f" — but {allowed}" if allowed and verdicts else "") + "".join(f"; {e}" for e in errors)
            lines.append(f"Media {ref.mxc}: {what}{extra} (sha256 {hashes.sha256}" + (f", pdq {hashes.pdq})" if hashes.pdq else ")"))
        return event, lines, matched

    async def _history(self, user: str | None) -> list[str]:
        if not user:
            return []
        earlier = [i for i in await self.moderation.incidents(limit=2000) if i.record.get("sender") == user]
        if not earlier:
            return [f"Earlier incidents of {user}: none"]
        return [f"Earlier incidents of {user}: " + ", ".join(f"#{i.id}" for i in earlier[-10:]) + f" ({len(earlier)} in all)"]

    async def _decide(self, report: Report, event: dict[str, Any], verdicts: Sequence[Verdict], policy: Policy) -> tuple[Decision, EventContext]:
        room, sender = report.room_id or "", str(event.get("sender") or report.target or "")
        try:
            power = (await self.powers.get(room)).of(sender)
        except HomeserverError:
            power = 0  # a room the bot is not in: nobody there is exempt by power
        ctx = EventContext(report.event_id or "", room, sender, power, event.get("origin_server_ts"))
        return decide(verdicts, ctx, policy, home_server=server_of(self.hs.bot_user_id)), ctx

    # --- moderators ----------------------------------------------------------------------------

    async def act(self, report_id: int, *, by: str) -> tuple[UserReport | None, list[ActionResult], str]:
        """`report act`: the policy's first rule for the room, as if the reported media matched."""
        row = await self.repo.get(report_id)
        if row is None or row.status != OPEN:
            return row, [], "not open"
        report = Report.from_json(row.detail["report"])
        policy = self._policy()
        rule = policy.for_room(report.room_id or "").rules[0]
        verdict = Verdict(classifier="report", label="reported", kind=MatchKind.EXACT, list_name=f"report #{row.id}")
        actions = rule.actions
        if report.kind == "user":
            # No event, no room: the actions against the person, a ban in every protected room.
            actions = tuple(PlannedAction(ActionKind.BAN, "all") if a.kind is ActionKind.BAN else a for a in actions if a.kind in PERSON_ACTIONS)
        acting = policy.model_copy(update={"rules": (Rule(name=f"report #{row.id} ({rule.name}) by {by}", actions=actions),), "rooms": {}})
        if report.kind == "event":
            try:
                event = await self.hs.fetch_event(report.event_id or "")
            except HomeserverError as e:
                return row, [], f"cannot read the reported event: {e}"
        else:
            event = {"sender": report.target}
            report = Report(**{**report.as_json(), "room_id": "", "event_id": f"user-report:{row.id}"})
        decision, ctx = await self._decide(report, event, [verdict], acting)
        refs = [r for r in extract_media_refs(event).refs if not r.encrypted] if report.kind == "event" else []
        matched = [MatchedMedia(ref, (verdict,), await self._hashes(ref)) for ref in refs]
        if not await self.repo.resolve(row.id, RESOLVED, by):
            return row, [], "resolved meanwhile"
        results = await self.enforcer.enforce(decision, ctx, matched)
        await self.store.audit("report", "acted", f"report #{row.id} acted on by {by}: {decision.rule}",
                               event_id=report.event_id, room_id=report.room_id, sender=report.target)
        return await self.repo.get(row.id), results, decision.rule or ""

    async def media_of_card(self, card_event_id: str) -> list[str]:
        """The reported event's media, for commands sent as a reply to its card (`hash add`)."""
        row = await self.repo.by_card(card_event_id)
        return list(row.detail.get("media") or []) if row else []

    async def dismiss(self, report_id: int, *, by: str) -> bool:
        if not await self.repo.resolve(report_id, DISMISSED, by):
            return False
        await self.store.audit("report", "dismissed", f"report #{report_id} dismissed by {by}")
        return True

    async def _hashes(self, ref: MediaRef) -> Hashes | None:
        hashes, _, _ = await self.media.hashes_for(ref)
        return hashes


def _event_id(detail: str) -> str | None:
    found = re.search(r"notice (\$\S+) in", detail)
    return found.group(1) if found else None


def report_desk(bot: Any, config: Any) -> ReportDesk:
    """The desk wired to a started bot's parts (called by the composition root, bot/app.py)."""
    settings = ReportSettings(
        interval=config.interval, page_size=config.page_size, csam_phrases=tuple(config.csam_reasons),
        act_on_match=config.act_on_match,
    )
    return ReportDesk(
        bot.homeserver, ReportRepo(bot.engine), bot.store, bot.moderation, bot.enforcer, bot.powers, bot.pipeline,
        policy=lambda: bot.controls.policy, allowlist=lambda: bot.controls.allowlist, settings=settings,
    )
