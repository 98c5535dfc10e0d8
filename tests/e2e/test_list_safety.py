"""List safety against a real Synapse and a real modbot process.

The list file is emptied while the bot runs: the previous version keeps matching, the
management room is told and `modbot check` fails. A much smaller list is loaded only after
`modbot hashes accept`. A list garbled while the bot was down is reported at start.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bot.demo.waiting import wait_for
from bot.cli.scan import add_images
from bot.demo.stage import Stage
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN = encode(make_photo(seed=515), "PNG")
FILLER = [f"sha256,{i:064x},csam-test\n" for i in range(1, 41)]


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader


def replace_list(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("listsafety")
    async with staged(workdir) as stage:
        image = workdir / "known.png"
        image.write_bytes(KNOWN)
        add_images([image], stage.config(), "known", None)
        with stage.list_path.open("a", encoding="utf-8") as f:
            f.writelines(FILLER)
        stage.write_config(
            policy={"rules": [{"name": "known-media", "actions": ["quarantine", "redact", "notify"]}]},
            hashlist={"reload_interval": 0.5},
        )
        async with bot_running(stage) as (bot, db):
            yield World(stage, bot, db)


async def modbot(w: World, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, "-c", str(w.stage.config_path),
        cwd=w.bot.workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode()


async def notices(w: World) -> list[str]:
    messages = await w.stage.moderator.messages(w.stage.management_room, limit=100)
    return [m["content"].get("body", "") for m in messages if m.get("sender") == w.stage.bot_user_id]


async def audit(w: World, outcome: str) -> list[str]:
    return [a.message for a in await w.db.store.audit_log(category="lists", limit=1000) if a.outcome == outcome]


async def held_notices(w: World) -> int:
    return sum(body.startswith("Hash list known not reloaded") for body in await notices(w))


async def redacted(w: World, event_id: str) -> bool:
    event = await w.stage.moderator.get_event(w.stage.room, event_id)
    return "redacted_because" in event.get("unsigned", {})


async def post_known(w: World, who: str) -> str:
    user = await w.stage.new_user(who, join=w.stage.room)
    mxc = await user.upload(KNOWN, "image/png", "image")
    return await user.send_image(w.stage.room, mxc, mimetype="image/png", size=len(KNOWN))


async def more(coro_fn, than: int) -> bool:  # type: ignore[no-untyped-def]
    return await coro_fn() > than


async def test_an_emptied_list_is_held_and_a_smaller_one_loads_once_accepted(world: World) -> None:
    w = world
    full = w.stage.list_path.read_bytes()
    before = await held_notices(w)
    replace_list(w.stage.list_path, b"")  # truncated to nothing
    await wait_for(lambda: more(lambda: held_notices(w), before), timeout=30, description="held notice")
    (body,) = [b for b in await notices(w) if b.startswith("Hash list known not reloaded")][:1]
    assert "it would leave the list empty" in body and "modbot hashes accept known" in body
    assert any("it would leave the list empty" in m for m in await audit(w, "held"))

    # Matching goes on with the previous version.
    event_id = await post_known(w, "poster")
    await wait_for(lambda: redacted(w, event_id), timeout=60, description="redaction with the kept version")

    code, out = await modbot(w, "check")
    assert code == 1 and "this version is held, the bot does not load it: it would leave the list empty" in out, out

    # A deliberately smaller list (the filler dropped): held too, until accepted.
    smaller = b"".join(line for line in full.splitlines(keepends=True) if not line.startswith(b"sha256,0000"))
    before = await held_notices(w)
    replace_list(w.stage.list_path, smaller)
    await wait_for(lambda: more(lambda: held_notices(w), before), timeout=30, description="second held notice")
    loaded_before = len(await audit(w, "reloaded"))
    code, out = await modbot(w, "hashes", "accept", "known")
    assert code == 0 and "accepted although it would drop 40 of the" in out, out
    await wait_for(lambda: more(lambda: _count(audit(w, "reloaded")), loaded_before), timeout=30, description="accepted reload")
    assert "(accepted by " in (await audit(w, "reloaded"))[0]
    code, out = await modbot(w, "check")
    assert code == 0 and "all checks passed" in out, out


async def test_a_list_garbled_while_the_bot_was_down_is_reported_at_start(world: World) -> None:
    w = world
    accepted = w.stage.list_path.read_bytes()
    await w.bot.stop()
    replace_list(w.stage.list_path, bytes(range(256)) * 400)  # garbage
    before = await held_notices(w)
    await w.bot.start()
    await wait_for(lambda: more(lambda: held_notices(w), before), timeout=30, description="held notice at start")
    assert "lines rejected" in (await audit(w, "held"))[0]

    # The file restored: loaded as the version last accepted, and matching as before.
    replace_list(w.stage.list_path, accepted)
    reloads = len(await audit(w, "reloaded"))
    await wait_for(lambda: more(lambda: _count(audit(w, "reloaded")), reloads), timeout=30, description="reload")
    event_id = await post_known(w, "after")
    await wait_for(lambda: redacted(w, event_id), timeout=60, description="redaction after the restore")


async def _count(coro) -> int:  # type: ignore[no-untyped-def]
    return len(await coro)
