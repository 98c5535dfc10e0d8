"""The report intake's reading: pages until a page holds a report already seen, remembers
what it read across restarts (a new desk on the same database reads nothing twice), audits
what is not a report, and copes with a Synapse without user reports.

A fake homeserver serves Synapse's list format; the store is real (SQLite, migrated).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.errors import matrix_error
from bot.intake.reports import ReportDesk, ReportSettings
from bot.record.db import create_engine, migrate
from bot.record.reports import NEW, ReportRepo
from bot.record.store import Store


def entry(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": n, "received_ts": 1000 + n, "room_id": "!r:x", "event_id": f"$e{n}", "user_id": "@rep:x",
            "reason": "spam", "score": None, "sender": "@s:x", **extra}


class ReportsHomeserver:
    """Synapse's event_reports paging (newest first), user_reports optional."""

    bot_user_id = "@modbot:x"

    def __init__(self, reports: list[dict[str, Any]], user_reports: bool = True) -> None:
        self.reports = reports
        self.user_reports_offered = user_reports
        self.requests: list[tuple[str, int]] = []

    async def event_reports(self, *, start: int = 0, limit: int = 100) -> dict[str, Any]:
        self.requests.append(("event", start))
        newest = sorted(self.reports, key=lambda r: -r["received_ts"] if isinstance(r, dict) and isinstance(r.get("received_ts"), int) else 0)
        page = {"event_reports": newest[start:start + limit], "total": len(newest)}
        if start + limit < len(newest):
            page["next_token"] = start + limit
        return page

    async def user_reports(self, *, start: int = 0, limit: int = 100) -> dict[str, Any]:
        self.requests.append(("user", start))
        if not self.user_reports_offered:
            raise matrix_error("HTTP 404 M_UNRECOGNIZED", status=404, errcode="M_UNRECOGNIZED")
        return {"user_reports": [], "total": 0}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Any]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def desk(hs: ReportsHomeserver, engine: Any, page_size: int = 2) -> ReportDesk:
    return ReportDesk(
        hs, ReportRepo(engine), Store(engine), None, None, None, None,  # type: ignore[arg-type]
        policy=lambda: None, allowlist=lambda: None, settings=ReportSettings(page_size=page_size),  # type: ignore[arg-type,return-value]
    )


async def test_reads_page_by_page_and_remembers_across_restarts(engine: Any) -> None:
    hs = ReportsHomeserver([entry(n) for n in range(1, 6)])
    await desk(hs, engine)._read("event", hs.event_reports, "event_reports")
    assert [r for r in hs.requests if r[0] == "event"] == [("event", 0), ("event", 2), ("event", 4)]
    repo = ReportRepo(engine)
    assert {r.report_id for r in await repo.unfinished()} == {"1", "2", "3", "4", "5"}
    # A restart: a new desk reads the newest page, finds it seen, and stops there.
    hs.reports.append(entry(6))
    hs.requests.clear()
    await desk(hs, engine)._read("event", hs.event_reports, "event_reports")
    assert hs.requests == [("event", 0)]
    assert len(await repo.unfinished()) == 6 and all(r.status == NEW for r in await repo.unfinished())


async def test_what_is_not_a_report_is_audited_and_skipped(engine: Any) -> None:
    hs = ReportsHomeserver([entry(1), entry(2, event_id=None), entry(3, user_id="x" * 70000)])
    await desk(hs, engine, page_size=10)._read("event", hs.event_reports, "event_reports")
    assert [r.report_id for r in await ReportRepo(engine).unfinished()] == ["1"]
    rejected = [a for a in await Store(engine).audit_log(category="report") if a.outcome == "rejected"]
    assert len(rejected) == 2 and all(len(a.message) < 300 for a in rejected)


async def test_a_synapse_without_user_reports_is_asked_once(engine: Any) -> None:
    hs = ReportsHomeserver([], user_reports=False)
    d = desk(hs, engine)
    await d._read("user", hs.user_reports, "user_reports")
    assert d.user_reports_available is False
