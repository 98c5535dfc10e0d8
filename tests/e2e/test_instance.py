"""One modbot per database, against a real Synapse and real modbot processes.

A second `modbot run` on the database of a running bot must refuse to start, saying why,
and leave the first one working; a bot whose lock is gone stops; then the second may start.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from bot.demo.waiting import free_port, wait_for
from bot.record.instance import EXIT_ALREADY_RUNNING, EXIT_LOCK_LOST
from bot.cli.scan import add_images
from bot.demo.stage import Stage
from botproc import BotProcess, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN_PNG = encode(make_photo(seed=313), "PNG")


@pytest_asyncio.fixture(loop_scope="session")
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    async with staged(tmp_path / "stage") as stage:
        known = tmp_path / "known.png"
        known.write_bytes(KNOWN_PNG)
        add_images([known], stage.config(), "known", None)
        yield stage


def second_config(stage: Stage) -> tuple[Path, int]:
    """The same config, database included, on another port: only the database is shared."""
    port = free_port()
    data = {**stage.config_data, "appservice": {**stage.config_data["appservice"], "port": port}}
    path = stage.workdir / "second.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, port


async def test_a_second_modbot_on_the_same_database_refuses_to_start(stage: Stage, tmp_path: Path) -> None:
    first = BotProcess.for_stage(stage)
    await first.start()
    try:
        config, port = second_config(stage)
        cwd = tmp_path / "second-cwd"
        cwd.mkdir()
        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot", "run", "-c", str(config)],
            cwd=cwd, capture_output=True, text=True, timeout=120,
        )
        assert second.returncode == EXIT_ALREADY_RUNNING, second.stderr
        assert "cannot start: another modbot is already running on the database" in second.stderr
        assert first.proc is not None and f"pid {first.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr

        # The first keeps working: a known image is still acted on.
        offender = await stage.new_user("offender", join=stage.room)
        mxc = await offender.upload(KNOWN_PNG, "image/png", "image")
        event_id = await offender.send_image(stage.room, mxc, mimetype="image/png", size=len(KNOWN_PNG))

        async def redacted() -> bool:
            event = await stage.moderator.get_event(stage.room, event_id)
            return "redacted_because" in event.get("unsigned", {})

        await wait_for(redacted, timeout=60, description="the known image redacted by the first bot")
        assert first.alive() and (await first.health() or {}).get("status") == "ok"

        # Its lock file removed (a "stale lock" cleanup): a new bot could now lock a new
        # file, so the first must not go on acting. It stops, with its own exit status.
        lock_file = Path(stage.config_data["database"]["url"].split(":///", 1)[1] + ".lock")
        lock_file.unlink()
        assert first.proc is not None
        assert await asyncio.to_thread(first.proc.wait, 60) == EXIT_LOCK_LOST
        assert "lost the instance lock" in first.log_tail()
    finally:
        await first.stop()

    # Stopped: the second bot may now start on that database.
    again = BotProcess(config, port, tmp_path / "second-botcwd")
    await again.start()
    await again.stop()
