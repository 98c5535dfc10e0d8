"""A throwaway local Synapse for `modbot demo` and the end-to-end tests.

`ThrowawaySynapse` writes a homeserver.yaml into a working directory, boots Synapse as a
subprocess of the current interpreter on 127.0.0.1, and tears it down again. `MatrixUser`
is a deliberately small client for driving that server from tests and the demo; it is not
the bot's homeserver client (that lives under `bot/act/`).

Everything here talks to loopback only.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import hmac
import inspect
import itertools
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import yaml
from yarl import URL

__all__ = [
    "MatrixRequestError",
    "MatrixUser",
    "ThrowawaySynapse",
    "free_port",
    "register_appservice_user",
    "wait_for",
]

T = TypeVar("T")

BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 60

# Generous enough that no test or demo ever waits on a rate limiter.
_RELAXED = {"per_second": 10_000, "burst_count": 100_000}


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the usual bind-to-0 trick; racy but fine locally)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
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
            await _raise_for_status(resp)
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
            await _raise_for_status(resp)
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
                await _raise_for_status(resp)
            except MatrixRequestError as exc:
                if exc.errcode != "M_USER_IN_USE":
                    raise
        # Already registered: learn the server name from the appservice's own sender.
        async with session.get(f"{base}/_matrix/client/v3/account/whoami") as resp:
            await _raise_for_status(resp)
            sender = (await resp.json())["user_id"]
    return f"@{localpart}:{sender.partition(':')[2]}"


async def wait_for(
    predicate_coro_fn: Callable[[], Awaitable[T] | T],
    timeout: float = 15.0,
    interval: float = 0.1,
    *,
    description: str | None = None,
) -> T:
    """Poll `predicate_coro_fn` (sync or async) until it returns something truthy, and return it.

    Exceptions from the predicate propagate. On timeout raises TimeoutError naming the
    predicate and its last value.
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        value = predicate_coro_fn()
        if inspect.isawaitable(value):
            value = await value
        attempts += 1
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            what = description or getattr(predicate_coro_fn, "__qualname__", repr(predicate_coro_fn))
            raise TimeoutError(
                f"condition {what} not met within {timeout:.1f}s ({attempts} attempts); last value: {value!r}"
            )
        await asyncio.sleep(interval)


def _set_parent_death_signal() -> None:
    """Runs in the child before exec: die with the parent, so a killed test run leaves no Synapse behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # not Linux, or no prctl: best effort only
        pass


class ThrowawaySynapse:
    """A fresh Synapse (SQLite, loopback only) in `workdir`; an async context manager.

    ::

        async with ThrowawaySynapse(tmp_path, appservice_files=[reg]) as hs:
            admin = await hs.register_user("admin", admin=True)
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        server_name: str = "localhost",
        appservice_files: Sequence[Path] = (),
        log_level: str = "WARNING",
    ):
        self.workdir = Path(workdir).resolve()
        self.port = port or free_port()
        self.server_name = server_name
        self.appservice_files = [Path(p).resolve() for p in appservice_files]
        self.log_level = log_level.upper()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.registration_shared_secret = secrets.token_urlsafe(24)
        self._macaroon_secret_key = secrets.token_urlsafe(24)
        self._form_secret = secrets.token_urlsafe(24)
        self.config_path = self.workdir / "homeserver.yaml"
        self.log_path = self.workdir / "synapse.log"
        self.boot_seconds: float | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._log_file: Any = None
        self._users: list[MatrixUser] = []
        self._started_once = False

    def __repr__(self) -> str:
        return f"ThrowawaySynapse({self.server_name!r} @ {self.base_url}, workdir={str(self.workdir)!r})"

    async def __aenter__(self) -> ThrowawaySynapse:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    # -- configuration ---------------------------------------------------------------------

    def homeserver_config(self) -> dict[str, Any]:
        """The homeserver.yaml contents: everything Synapse needs to boot fast and quietly."""
        wd = self.workdir
        return {
            "server_name": self.server_name,
            "public_baseurl": self.base_url + "/",
            "pid_file": str(wd / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(wd / "homeserver.db")}},
            "log_config": str(wd / "log.yaml"),
            "media_store_path": str(wd / "media_store"),
            "signing_key_path": str(wd / "signing.key"),
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": self._macaroon_secret_key,
            "form_secret": self._form_secret,
            "report_stats": False,
            "enable_metrics": False,
            "bcrypt_rounds": 4,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_registration": False,
            "app_service_config_files": [str(p) for p in self.appservice_files],
            "max_upload_size": "100M",
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            # Nothing here federates; an empty whitelist stops any outbound federation attempt.
            "federation_domain_whitelist": [],
            "rc_message": _RELAXED,
            "rc_registration": _RELAXED,
            "rc_login": {"address": _RELAXED, "account": _RELAXED, "failed_attempts": _RELAXED},
            "rc_joins": {"local": _RELAXED, "remote": _RELAXED},
            "rc_joins_per_room": _RELAXED,
            "rc_invites": {"per_room": _RELAXED, "per_user": _RELAXED, "per_issuer": _RELAXED},
            "rc_third_party_invite": _RELAXED,
            "rc_admin_redaction": _RELAXED,
            "rc_3pid_validation": _RELAXED,
            "rc_key_requests": _RELAXED,
            "rc_media_create": _RELAXED,
            "rc_presence": {"per_user": _RELAXED},
            "rc_delayed_event_mgmt": _RELAXED,
            "rc_room_creation": _RELAXED,
            "rc_reports": _RELAXED,
            "rc_user_directory": _RELAXED,
            "rc_profile": _RELAXED,
        }

    def log_config(self) -> dict[str, Any]:
        # Everything goes to stderr, which start() redirects into synapse.log.
        return {
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s %(levelname)s %(name)s - %(message)s"}},
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "formatter": "precise",
                    "stream": "ext://sys.stderr",
                }
            },
            "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
            "root": {"level": self.log_level, "handlers": ["console"]},
            "disable_existing_loggers": False,
        }

    def _write_files(self) -> None:
        """Write config and signing key. The first start of an instance also wipes any database
        left in workdir by an earlier instance; a restart (stop, then start) keeps its data."""
        import signedjson.key  # a Synapse dependency; imported here so bot/ works without it

        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "media_store").mkdir(exist_ok=True)
        if not self._started_once:
            for stale in ("homeserver.db", "homeserver.db-wal", "homeserver.db-shm", "signing.key"):
                (self.workdir / stale).unlink(missing_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.homeserver_config(), sort_keys=False))
        (self.workdir / "log.yaml").write_text(yaml.safe_dump(self.log_config(), sort_keys=False))
        key_path = self.workdir / "signing.key"
        if not key_path.exists():
            key = signedjson.key.generate_signing_key("a_" + secrets.token_hex(2))
            with open(key_path, "w") as f:
                signedjson.key.write_signing_keys(f, [key])
        self._started_once = True

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Write the configuration, boot Synapse and wait until /health answers."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self._write_files()
        self._log_file = open(self.log_path, "ab")
        started = time.monotonic()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "-c",
            str(self.config_path),
            cwd=str(self.workdir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_set_parent_death_signal if sys.platform == "linux" else None,
        )
        try:
            await self._wait_healthy(started)
        except BaseException:
            await self.stop()
            raise
        self.boot_seconds = time.monotonic() - started

    async def _wait_healthy(self, started: float) -> None:
        url = f"{self.base_url}/health"
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                assert self._process is not None
                if self._process.returncode is not None:
                    raise RuntimeError(
                        f"Synapse exited with code {self._process.returncode} during start-up."
                        f"\n--- tail of {self.log_path} ---\n{self.log_tail()}"
                    )
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200 and (await resp.text()).strip() == "OK":
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                if time.monotonic() - started > BOOT_TIMEOUT:
                    raise TimeoutError(
                        f"Synapse did not answer {url} within {BOOT_TIMEOUT:.0f}s."
                        f"\n--- tail of {self.log_path} ---\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Close the users this server handed out, then SIGTERM Synapse (SIGKILL if it lingers).

        Idempotent. After a restart the same MatrixUser objects work again (a closed user
        opens a new HTTP session on its next call)."""
        for user in self._users:
            await user.close()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            try:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except ProcessLookupError:
                pass
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- users -----------------------------------------------------------------------------

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    async def register_user(
        self, localpart: str, password: str = "modbot-test-password", *, admin: bool = False
    ) -> MatrixUser:
        """Register a user through the shared-secret admin API and return it logged in."""
        url = f"{self.base_url}/_synapse/admin/v1/register"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(url) as resp:
                await _raise_for_status(resp)
                nonce = (await resp.json())["nonce"]
            mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
            for part in (nonce, localpart, password, "admin" if admin else "notadmin"):
                if part != nonce:
                    mac.update(b"\x00")
                mac.update(part.encode())
            body = {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            }
            async with session.post(url, json=body) as resp:
                await _raise_for_status(resp)
                result = await resp.json()
        user = MatrixUser(
            self.base_url, result["user_id"], result["access_token"], device_id=result.get("device_id")
        )
        self._users.append(user)
        return user
