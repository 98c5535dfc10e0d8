"""A local stage for modbot: a throwaway Synapse with modbot registered, an admin, a moderator,
a management room and protected rooms. `modbot demo`, the end-to-end tests and the end-to-end
benchmark all play on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, load_config
from .matrix import MatrixUser, register_appservice_user
from .federation import FederationListener
from .synapse import ThrowawaySynapse
from .waiting import free_port
from ..intake.antispam import module_block
from ..intake.registration import new_token, write_registration

KNOWN_LIST = "known"
KNOWN_LABEL = "csam-test"  # a benign stand-in: the images on the stage are generated


@dataclass
class Stage:
    workdir: Path
    synapse: ThrowawaySynapse
    admin: MatrixUser
    moderator: MatrixUser
    bot_user_id: str
    management_room: str
    protected_rooms: list[str]
    config_path: Path
    list_path: Path
    config_data: dict[str, Any] = field(repr=False, default_factory=dict)
    _users: int = 0

    @property
    def room(self) -> str:
        return self.protected_rooms[0]

    def config(self) -> Config:
        return load_config(self.config_path)

    def write_config(self, **overrides: Any) -> Path:
        """Rewrite the config file with top-level sections replaced by `overrides`."""
        data = {**self.config_data, **overrides}
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.config_path

    async def new_user(self, prefix: str = "user", *, join: str | None = None) -> MatrixUser:
        """Register a fresh user; with `join`, the moderator invites them and they join."""
        self._users += 1
        user = await self.synapse.register_user(f"{prefix}{self._users}")
        if join:
            await self.moderator.invite(join, user.user_id)
            await user.join(join)
        return user

    async def stop(self) -> None:
        await self.synapse.stop()


def base_config(workdir: Path, *, hs_port: int, as_port: int, domain: str = "localhost") -> dict[str, Any]:
    return {
        "homeserver": {"url": f"http://127.0.0.1:{hs_port}", "domain": domain},
        "appservice": {
            "id": "modbot",
            "bind_address": "127.0.0.1",
            "port": as_port,
            "public_url": f"http://127.0.0.1:{as_port}",
            "as_token": new_token(),
            "hs_token": new_token(),
            "bot_localpart": "modbot",
            "bot_displayname": "modbot",
        },
        "database": {"url": f"sqlite+aiosqlite:///{workdir / 'modbot.db'}"},
        "rooms": {"management_room": None, "protected": []},
        "processing": {"concurrency": 4, "max_media_bytes": 50 * 1024 * 1024, "download_timeout": 30},
        "hash_lists": [{"name": KNOWN_LIST, "path": str(workdir / "lists" / "known.csv"), "label": KNOWN_LABEL}],
        "logging": {"level": "INFO"},
    }


async def build_stage(
    workdir: Path, *, protected_rooms: int = 1, log_level: str = "WARNING", presend: dict[str, Any] | None = None,
    federation: FederationListener | None = None,
    homeserver: dict[str, Any] | None = None,
) -> Stage:
    """Boot Synapse with modbot registered and set the rooms up, the way an admin would.

    With `presend` (the config's section, without the secret), Synapse loads
    synapse-http-antispam and asks modbot before it accepts an event (bot/presend.py).
    With `federation`, the server federates on loopback under the listener's server name;
    `homeserver` replaces top-level keys of homeserver.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "lists").mkdir(exist_ok=True)
    hs_port, as_port = free_port(), free_port()
    domain = federation.server_name if federation is not None else "localhost"
    data = base_config(workdir, hs_port=hs_port, as_port=as_port, domain=domain)
    if presend is not None:
        data["presend"] = {"enabled": True, "antispam_secret": new_token(), **presend}
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    registration = workdir / "registration.yaml"
    write_registration(load_config(config_path), registration)

    modules = [module_block(load_config(config_path))] if presend is not None else []
    synapse = ThrowawaySynapse(
        workdir / "synapse", port=hs_port, appservice_files=[registration], log_level=log_level, modules=modules,
        federation=federation,
        overrides=homeserver,
    )
    await synapse.start()
    try:
        admin = await synapse.register_user("admin", admin=True)
        moderator = await synapse.register_user("moderator")
        # What the README tells an admin to do: register the bot through the appservice,
        # then make it a server admin (the appservice token alone gives no admin rights).
        bot = await register_appservice_user(synapse.base_url, data["appservice"]["as_token"], "modbot")
        await admin.make_admin(bot)
        # The moderator, not the bot, creates the rooms: in room version 12 a creator has
        # unlimited power, and the bot only needs enough to ban and redact.
        power = {"users": {bot: 100}}
        management = await moderator.create_room("modbot management", invite=[bot], power_level_content_override=power)
        rooms = [
            await moderator.create_room(f"protected {i + 1}", invite=[bot], power_level_content_override=power)
            for i in range(protected_rooms)
        ]
    except BaseException:
        await synapse.stop()
        raise
    data["rooms"] = {"management_room": management, "protected": rooms}
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Stage(
        workdir=workdir,
        synapse=synapse,
        admin=admin,
        moderator=moderator,
        bot_user_id=bot,
        management_room=management,
        protected_rooms=rooms,
        config_path=config_path,
        list_path=Path(data["hash_lists"][0]["path"]),
        config_data=data,
    )
