"""The throwaway-Synapse harness itself: boot, users, rooms, media, quarantine, appservices."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from PIL import Image

from bot.demo.matrix import MatrixRequestError, register_appservice_user
from bot.demo.synapse import ThrowawaySynapse
from bot.demo.waiting import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def make_png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def write_registration(path: Path, *, as_token: str, hs_token: str) -> Path:
    # Nothing listens on the url: this test never needs Synapse to push a transaction.
    registration = {
        "id": "testbot",
        "url": f"http://127.0.0.1:{free_port()}",
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": "testbot-sender",
        "namespaces": {
            "users": [{"exclusive": True, "regex": "@testbot:localhost$"}],
            "aliases": [],
            "rooms": [],
        },
        "rate_limited": False,
    }
    path.write_text(yaml.safe_dump(registration))
    return path


async def test_media_quarantine_round_trip(synapse_factory, tmp_path: Path) -> None:
    reg = write_registration(tmp_path / "testbot.yaml", as_token="as-secret-1", hs_token="hs-secret-1")
    hs = await synapse_factory(appservice_files=[reg])
    assert hs.base_url.startswith("http://127.0.0.1:")
    assert hs.boot_seconds is not None and hs.boot_seconds < 60

    admin = await hs.register_user("admin", admin=True)
    mod = await hs.register_user("mod")
    user = await hs.register_user("user")
    assert (await mod.whoami())["user_id"] == "@mod:localhost"

    # v12: the creator has infinite power and cannot be banned, so the moderator creates.
    room_id = await mod.create_room("harness")
    await mod.invite(room_id, user.user_id)
    assert await mod.get_membership(room_id, user.user_id) == "invite"
    assert await user.join(room_id) == room_id
    assert await mod.get_membership(room_id, user.user_id) == "join"
    assert await mod.get_membership(room_id, admin.user_id) is None

    png = make_png()
    mxc = await user.upload(png, "image/png", "red.png")
    assert mxc.startswith("mxc://localhost/")
    event_id = await user.send_image(room_id, mxc, body="red.png", size=len(png), w=64, h=48)

    event = await mod.get_event(room_id, event_id)
    assert event["content"]["url"] == mxc
    assert event["content"]["info"] == {"mimetype": "image/png", "size": len(png), "w": 64, "h": 48}
    assert event_id in [e["event_id"] for e in await mod.messages(room_id, limit=10)]

    assert await mod.download_status(mxc) == 200
    assert await mod.download(mxc) == png

    server, media_id = mxc.removeprefix("mxc://").split("/")
    await admin.request("POST", f"/_synapse/admin/v1/media/quarantine/{server}/{media_id}", json_body={})
    assert await mod.download_status(mxc) == 404
    assert await user.download_status(mxc) == 404
    with pytest.raises(MatrixRequestError) as err:
        await mod.download(mxc)
    assert err.value.status == 404 and err.value.errcode == "M_NOT_FOUND"

    # Redaction leaves an empty content and says who redacted.
    await mod.redact(room_id, event_id, reason="test")
    redacted = await mod.get_event(room_id, event_id)
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["sender"] == mod.user_id

    # Power levels and the admin's make_room_admin.
    await mod.set_power_level(room_id, user.user_id, 10)
    assert (await mod.get_power_levels(room_id))["users"][user.user_id] == 10
    await admin.make_room_admin(room_id, admin.user_id)
    await admin.join(room_id)
    assert (await admin.get_power_levels(room_id))["users"][admin.user_id] == 100

    # A profile change reaches the room as a member event.
    avatar = await user.upload(make_png((0, 0, 255)), "image/png", "avatar.png")
    await user.set_avatar_url(avatar)

    async def avatar_in_room() -> bool:
        state = await mod.get_state(room_id, "m.room.member", user.user_id)
        return state.get("avatar_url") == avatar

    await wait_for(avatar_in_room, timeout=10)

    await mod.ban(room_id, user.user_id, reason="test")
    assert await mod.get_membership(room_id, user.user_id) == "ban"

    with pytest.raises(MatrixRequestError) as err:
        await user.send_text(room_id, "still here?")
    assert err.value.status == 403 and err.value.errcode == "M_FORBIDDEN"


async def test_appservice_registration_is_accepted(synapse_factory, tmp_path: Path) -> None:
    reg = write_registration(tmp_path / "testbot.yaml", as_token="as-secret-2", hs_token="hs-secret-2")
    hs = await synapse_factory(appservice_files=[reg])

    user_id = await register_appservice_user(hs.base_url, "as-secret-2", "testbot")
    assert user_id == "@testbot:localhost"
    # Registering again is fine (M_USER_IN_USE is swallowed).
    assert await register_appservice_user(hs.base_url, "as-secret-2", "testbot") == user_id

    # Outside the namespace is refused.
    with pytest.raises(MatrixRequestError) as err:
        await register_appservice_user(hs.base_url, "as-secret-2", "someoneelse")
    assert err.value.errcode == "M_EXCLUSIVE"

    # The admin can make the appservice user a server admin.
    admin = await hs.register_user("admin", admin=True)
    await admin.make_admin(user_id)
    info = await admin.request("GET", f"/_synapse/admin/v2/users/{user_id}")
    assert info["admin"] is True


async def test_failed_boot_reports_the_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"id": "broken"}))  # no tokens, no namespaces
    hs = ThrowawaySynapse(tmp_path / "hs", appservice_files=[bad])
    with pytest.raises(RuntimeError, match="tail of"):
        await hs.start()
    assert not hs.running


async def test_wait_for_times_out_with_its_last_value() -> None:
    calls = []

    async def never() -> int:
        calls.append(1)
        return 0

    with pytest.raises(TimeoutError, match="never.*last value: 0"):
        await wait_for(never, timeout=0.3, interval=0.05)
    assert len(calls) >= 3
    assert await wait_for(lambda: "ok", timeout=1) == "ok"


async def test_restart_keeps_data(synapse_factory) -> None:
    hs = await synapse_factory()
    mod = await hs.register_user("mod")
    room_id = await mod.create_room("persistent")
    await hs.stop()
    assert not hs.running
    await hs.start()
    assert (await mod.whoami())["user_id"] == mod.user_id
    assert await mod.get_membership(room_id, mod.user_id) == "join"
