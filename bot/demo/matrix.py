"""A small Matrix client for driving the throwaway Synapse from the demo and the tests.

`MatrixUser` is a logged-in user with just the calls the tests and the demo need;
`register_appservice_user` registers a user in an appservice's namespace. It is deliberately
not the bot's homeserver client (that lives under `bot/act/`). Everything here talks to
loopback only.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

__all__ = ["MatrixRequestError", "MatrixUser", "raise_for_status", "register_appservice_user"]


def _q(value: str) -> str:
    """Percent-encode one path segment (room ids, event ids, user ids, aliases)."""
    return quote(value, safe="")


def _split_mxc(mxc: str) -> tuple[str, str]:
    if not mxc.startswith("mxc://"):
        raise ValueError(f"not an mxc URI: {mxc!r}")
    server, _, media_id = mxc[len("mxc://") :].partition("/")
    if not server or not media_id or "/" in media_id:
        raise ValueError(f"not an mxc URI: {mxc!r}")
    return server, media_id


class MatrixRequestError(Exception):
    """A Matrix API call answered with a non-2xx status."""

    def __init__(self, status: int, errcode: str | None, message: str, *, method: str = "", url: str = ""):
        self.status = status
        self.errcode = errcode
        self.message = message
        self.method = method
        self.url = url
        where = f" ({method} {url})" if method else ""
        super().__init__(f"HTTP {status} {errcode or '-'}: {message}{where}")


async def raise_for_status(resp: aiohttp.ClientResponse) -> None:
    if 200 <= resp.status < 300:
        return
    text = await resp.text(errors="replace")
    errcode: str | None = None
    message = text[:500]
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        errcode = body.get("errcode")
        message = str(body.get("error", message))
    # Never put the query string in the error: it may carry an access token.
    raise MatrixRequestError(
        resp.status, errcode, message, method=resp.method, url=str(resp.url.with_query(None))
    )


class MatrixUser:
    """A logged-in user on a homeserver, with just the calls the tests and the demo need."""

    def __init__(self, base_url: str, user_id: str, access_token: str, *, device_id: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id
        self._session: aiohttp.ClientSession | None = None
        self._txn = itertools.count()
        self._txn_prefix = secrets.token_hex(4)

    def __repr__(self) -> str:
        return f"MatrixUser({self.user_id!r} @ {self.base_url})"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.access_token}"},
                timeout=aiohttp.ClientTimeout(total=60),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> MatrixUser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _url(self, path: str) -> URL:
        # Path segments are quoted by the caller; encoded=True stops yarl re-encoding them.
        return URL(self.base_url + path, encoded=True)

    def _next_txn(self) -> str:
        return f"{self._txn_prefix}-{next(self._txn)}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call `path` (already percent-encoded, starting with /_matrix or /_synapse).

        Returns the decoded JSON body; raises MatrixRequestError on a non-2xx answer.
        """
        async with self.session.request(
            method, self._url(path), json=json_body, params=params, data=data, headers=headers
        ) as resp:
            await raise_for_status(resp)
            if resp.content_type == "application/json":
                return await resp.json()
            return await resp.read()

    # -- rooms -----------------------------------------------------------------------------

    async def whoami(self) -> dict[str, Any]:
        return await self.request("GET", "/_matrix/client/v3/account/whoami")

    async def create_room(
        self,
        name: str | None = None,
        *,
        invite: Sequence[str] = (),
        power_level_content_override: dict[str, Any] | None = None,
        preset: str = "private_chat",
        is_public: bool = False,
    ) -> str:
        body: dict[str, Any] = {
            "preset": preset,
            "visibility": "public" if is_public else "private",
            "invite": list(invite),
        }
        if name is not None:
            body["name"] = name
        if power_level_content_override is not None:
            body["power_level_content_override"] = power_level_content_override
        resp = await self.request("POST", "/_matrix/client/v3/createRoom", json_body=body)
        return resp["room_id"]

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.request(
            "POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/invite", json_body={"user_id": user_id}
        )

    async def join(self, room_or_alias: str) -> str:
        resp = await self.request("POST", f"/_matrix/client/v3/join/{_q(room_or_alias)}", json_body={})
        return resp["room_id"]

    async def leave(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/leave", json_body={})

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body = {"user_id": user_id, **({"reason": reason} if reason else {})}
        await self.request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/kick", json_body=body)

    async def ban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body = {"user_id": user_id, **({"reason": reason} if reason else {})}
        await self.request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/ban", json_body=body)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        body = {"reason": reason} if reason else {}
        resp = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/redact/{_q(event_id)}/{self._next_txn()}",
            json_body=body,
        )
        return resp["event_id"]

    # -- events ----------------------------------------------------------------------------

    async def send_message(
        self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
    ) -> str:
        resp = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{self._next_txn()}",
            json_body=content,
        )
        return resp["event_id"]

    async def send_text(self, room_id: str, body: str) -> str:
        return await self.send_message(room_id, {"msgtype": "m.text", "body": body})

    async def send_image(
        self,
        room_id: str,
        mxc: str,
        *,
        body: str = "image.png",
        mimetype: str = "image/png",
        size: int | None = None,
        w: int | None = None,
        h: int | None = None,
        thumbnail_url: str | None = None,
    ) -> str:
        info: dict[str, Any] = {"mimetype": mimetype}
        for key, value in (("size", size), ("w", w), ("h", h), ("thumbnail_url", thumbnail_url)):
            if value is not None:
                info[key] = value
        content = {"msgtype": "m.image", "body": body, "url": mxc, "info": info}
        return await self.send_message(room_id, content)

    async def send_state(self, room_id: str, type: str, state_key: str, content: dict[str, Any]) -> str:
        resp = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(type)}/{_q(state_key)}",
            json_body=content,
        )
        return resp["event_id"]

    async def get_state(self, room_id: str, type: str, state_key: str = "") -> dict[str, Any]:
        return await self.request(
            "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(type)}/{_q(state_key)}"
        )

    async def get_event(self, room_id: str, event_id: str) -> dict[str, Any]:
        """The event as this user sees it; a redacted one has empty content and
        `unsigned.redacted_because`."""
        return await self.request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/event/{_q(event_id)}")

    async def get_membership(self, room_id: str, user_id: str) -> str | None:
        try:
            content = await self.get_state(room_id, "m.room.member", user_id)
        except MatrixRequestError as exc:
            if exc.errcode == "M_NOT_FOUND":
                return None
            raise
        return content.get("membership")

    async def get_power_levels(self, room_id: str) -> dict[str, Any]:
        return await self.get_state(room_id, "m.room.power_levels", "")

    async def set_power_level(self, room_id: str, user_id: str, level: int) -> str:
        content = await self.get_power_levels(room_id)
        content.setdefault("users", {})[user_id] = level
        return await self.send_state(room_id, "m.room.power_levels", "", content)

    async def messages(self, room_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The latest `limit` timeline events, newest first."""
        resp = await self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/messages",
            params={"dir": "b", "limit": str(limit)},
        )
        return list(resp.get("chunk", []))

    # -- profile & media -------------------------------------------------------------------

    async def set_avatar_url(self, mxc: str) -> None:
        """Set the profile avatar. Synapse then sends an m.room.member event to every joined room."""
        await self.request(
            "PUT",
            f"/_matrix/client/v3/profile/{_q(self.user_id)}/avatar_url",
            json_body={"avatar_url": mxc},
        )

    async def set_displayname(self, displayname: str) -> None:
        await self.request(
            "PUT",
            f"/_matrix/client/v3/profile/{_q(self.user_id)}/displayname",
            json_body={"displayname": displayname},
        )

    async def upload(
        self, data: bytes, content_type: str = "application/octet-stream", filename: str | None = None
    ) -> str:
        params = {"filename": filename} if filename else None
        resp = await self.request(
            "POST",
            "/_matrix/media/v3/upload",
            data=data,
            params=params,
            headers={"Content-Type": content_type},
        )
        return resp["content_uri"]

    def _download_path(self, mxc: str) -> str:
        server, media_id = _split_mxc(mxc)
        return f"/_matrix/client/v1/media/download/{_q(server)}/{_q(media_id)}"

    async def download_status(self, mxc: str) -> int:
        """The HTTP status an authenticated download of `mxc` answers (404 once quarantined)."""
        async with self.session.get(self._url(self._download_path(mxc))) as resp:
            await resp.read()
            return resp.status

    async def download(self, mxc: str) -> bytes:
        async with self.session.get(self._url(self._download_path(mxc))) as resp:
            await raise_for_status(resp)
            return await resp.read()

    # -- Synapse admin (the caller must be a server admin) ---------------------------------

    async def make_admin(self, user_id: str) -> None:
        await self.request("PUT", f"/_synapse/admin/v2/users/{_q(user_id)}", json_body={"admin": True})

    async def make_room_admin(self, room_id: str, user_id: str) -> None:
        await self.request(
            "POST",
            f"/_synapse/admin/v1/rooms/{_q(room_id)}/make_room_admin",
            json_body={"user_id": user_id},
        )

    async def quarantine_media(self, mxc: str) -> None:
        server, media_id = _split_mxc(mxc)
        await self.request(
            "POST", f"/_synapse/admin/v1/media/quarantine/{_q(server)}/{_q(media_id)}", json_body={}
        )


async def register_appservice_user(base_url: str, as_token: str, localpart: str) -> str:
    """Register `localpart` in an appservice's namespace; an existing user is fine.

    Returns the full user id.
    """
    base = base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {as_token}"}
    body = {"type": "m.login.application_service", "username": localpart, "inhibit_login": True}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.post(f"{base}/_matrix/client/v3/register", json=body) as resp:
            if resp.status == 200:
                return (await resp.json())["user_id"]
            try:
                await raise_for_status(resp)
            except MatrixRequestError as exc:
                if exc.errcode != "M_USER_IN_USE":
                    raise
        # Already registered: learn the server name from the appservice's own sender.
        async with session.get(f"{base}/_matrix/client/v3/account/whoami") as resp:
            await raise_for_status(resp)
            sender = (await resp.json())["user_id"]
    return f"@{localpart}:{sender.partition(':')[2]}"
