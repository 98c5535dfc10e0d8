"""`modbot demo`: modbot at work against a throwaway local Synapse, start to finish.

Everything is local and benign: the "known" image is generated, put on a hash list, and
posted by a test user along with an altered copy and an unrelated image. Synapse asks modbot
before it accepts each post (pre-send checks, bot/presend.py): the known ones are refused
before anyone receives them, and dealt with all the same.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from PIL import ImageOps

from ..app import ModBot
from ..config import load_config
from .matrix import MatrixRequestError
from .waiting import wait_for
from .samples import encode, make_photo
from ..cli.scan import add_images
from .stage import KNOWN_LIST, Stage, build_stage


def _say(msg: str = "") -> None:
    print(msg, flush=True)


async def demo(workdir: Path | None = None, *, keep: bool = False) -> int:
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="modbot-demo-") as tmp:
            return await _demo(Path(tmp), keep)
    return await _demo(workdir, keep)


async def _demo(workdir: Path, keep: bool) -> int:
    _say(f"modbot demo in {workdir}")
    _say("1. booting a throwaway Synapse with modbot registered as an appservice and synapse-http-antispam ...")
    stage = await build_stage(workdir, presend={})
    bot: ModBot | None = None
    try:
        _say(f"   Synapse at {stage.synapse.base_url} (booted in {stage.synapse.boot_seconds:.1f} s)")
        _say(f"   bot {stage.bot_user_id} is a server admin; moderator created {stage.room} and a management room")

        known = make_photo(seed=1)
        known_path = workdir / "known.png"
        known_path.write_bytes(encode(known, "PNG"))
        added, _ = add_images([known_path], stage.config(), KNOWN_LIST, None)
        _say(f"2. put a generated image on the hash list '{KNOWN_LIST}' ({added} hashes: sha256, md5, pdq, phash, lowfreq, PDQ of central crops and of a brightened copy)")
        known_path.unlink()  # like every benign stand-in here, it is not kept on disk

        bot = ModBot(load_config(stage.config_path), config_path=stage.config_path)
        await bot.start()
        _say(f"3. modbot running on {bot.config.appservice.public_url}, protecting {len(bot.protected)} room(s)")

        offender = await stage.new_user("offender", join=stage.room)
        # The first post gets its sender banned: the copy comes from another account.
        second = await stage.new_user("offender", join=stage.room)
        bystander = await stage.new_user("bystander", join=stage.room)
        posts = {
            "the known image (PNG)": (offender, encode(known, "PNG"), "image/png"),
            "a mirrored, re-encoded copy (JPEG q50)": (
                second, encode(ImageOps.mirror(known), "JPEG", quality=50), "image/jpeg",
            ),
            "an unrelated image": (bystander, encode(make_photo(seed=2), "JPEG", quality=85), "image/jpeg"),
        }
        _say("4. posting:")
        sent = []
        for what, (user, data, mime) in posts.items():
            started = time.monotonic()
            mxc = await user.upload(data, mime, "photo")
            try:
                event_id: str | None = await user.send_image(stage.room, mxc, mimetype=mime, size=len(data))
                _say(f"   {user.user_id} posts {what}: {event_id}")
            except MatrixRequestError as e:
                event_id = None
                _say(f"   {user.user_id} posts {what}: REFUSED before delivery ({e.errcode}: {e.message})")
            sent.append((what, user, mxc, event_id, started))

        await wait_for(lambda: _settled(bot), timeout=60, description="modbot to process the events")
        _say("5. what happened:")
        for what, user, mxc, event_id, started in sent:
            if event_id is None:
                shown = "never in the room"
            else:
                event = await stage.moderator.get_event(stage.room, event_id)
                shown = "REDACTED" if "redacted_because" in event.get("unsigned", {}) else "visible"
            status = await stage.admin.download_status(mxc)
            _say(f"   {what}: event {shown}, media download HTTP {status}{' (quarantined)' if status == 404 else ''}")
        for user in (offender, second):
            _say(f"   {user.user_id} membership: {await stage.moderator.get_membership(stage.room, user.user_id)}")
        _say(f"   {bystander.user_id} membership: {await stage.moderator.get_membership(stage.room, bystander.user_id)}")
        _say("6. notices in the management room:")
        for message in reversed(await stage.moderator.messages(stage.management_room)):
            content = message.get("content", {})
            if message.get("sender") == stage.bot_user_id and content.get("msgtype") == "m.notice":
                for line in content.get("body", "").splitlines():
                    _say(f"   | {line}")
        _say("7. audit log (oldest first):")
        for entry in reversed(await bot.store.audit_log(limit=50)):
            _say(f"   {entry.category:9} {entry.outcome:12} {entry.message}")
        if keep:
            await _keep_running(stage)
        return 0
    finally:
        if bot is not None:
            await bot.stop()
        await stage.stop()


async def _settled(bot: ModBot) -> bool:
    counts = await bot.store.events_by_status()
    return counts.get("done", 0) >= 3 and not counts.get("pending") and (bot.queue is None or bot.queue.depth == 0)


async def _keep_running(stage: Stage) -> None:
    _say(f"Synapse stays up at {stage.synapse.base_url}; log in as moderator / modbot-test-password. Ctrl-C to stop.")
    try:
        await asyncio.Event().wait()
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass

