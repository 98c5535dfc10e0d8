"""A throwaway local Synapse for `modbot demo` and the end-to-end tests: its config, process and users.

`ThrowawaySynapse` writes a homeserver.yaml into a working directory, boots Synapse as a
subprocess of the current interpreter on 127.0.0.1, registers users on it and tears it down
again. The client those users are (`MatrixUser`) is in bot/demo/matrix.py; `free_port` and
`wait_for` are in bot/demo/waiting.py.

Everything here talks to loopback only.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import hmac
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml

from .federation import FederationListener
from .matrix import MatrixUser, raise_for_status
from .waiting import free_port

__all__ = ["ThrowawaySynapse"]

BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 60

# Generous enough that no test or demo ever waits on a rate limiter.
_RELAXED = {"per_second": 10_000, "burst_count": 100_000}


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
        modules: Sequence[dict[str, Any]] = (),
        federation: FederationListener | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        self.workdir = Path(workdir).resolve()
        self.port = port or free_port()
        # With `federation`, the server is named after its federation listener (`host:port`)
        # and federates with other such servers on loopback (bot/demo/federation.py).
        self.federation = federation
        self.server_name = federation.server_name if federation is not None else server_name
        self.appservice_files = [Path(p).resolve() for p in appservice_files]
        self.log_level = log_level.upper()
        self.modules = list(modules)  # homeserver.yaml's `modules:` (modbot's pre-send check)
        self.overrides = dict(overrides or {})  # top-level keys replaced (a benchmark's settings)
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
        config = self._base_config()
        if self.federation is not None:
            del config["federation_domain_whitelist"]
            config["listeners"].append(self.federation.listener())
            config |= self.federation.homeserver_config(self.workdir)
        return config

    def _base_config(self) -> dict[str, Any]:
        wd = self.workdir
        return ({"modules": self.modules} if self.modules else {}) | {
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
            # Nothing here federates unless asked to (`federation`); an empty whitelist stops
            # any outbound federation attempt.
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
        self.config_path.write_text(yaml.safe_dump(self.homeserver_config() | self.overrides, sort_keys=False))
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
                await raise_for_status(resp)
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
                await raise_for_status(resp)
                result = await resp.json()
        user = MatrixUser(
            self.base_url, result["user_id"], result["access_token"], device_id=result.get("device_id")
        )
        self._users.append(user)
        return user
