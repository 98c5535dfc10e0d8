"""Building blocks for end-to-end tests against a real Synapse.

The modbot appservice registration must exist before Synapse boots, so there is no one
session-wide server: a test (or a module/session fixture of its own) writes its
registration files and asks a factory for a server.

E2E fixtures and tests all run on the session event loop; mark test modules with::

    pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_asyncio

from bot.demo.synapse import ThrowawaySynapse


class SynapseFactory(Protocol):
    async def __call__(
        self, *, appservice_files: Sequence[Path] = (), **kwargs: Any
    ) -> ThrowawaySynapse: ...


class _Factory:
    """Starts ThrowawaySynapse instances in fresh temp dirs and stops them all on close()."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self._tmp = tmp_path_factory
        self._servers: list[ThrowawaySynapse] = []

    async def __call__(
        self, *, appservice_files: Sequence[Path] = (), **kwargs: Any
    ) -> ThrowawaySynapse:
        server = ThrowawaySynapse(
            self._tmp.mktemp("synapse"), appservice_files=appservice_files, **kwargs
        )
        self._servers.append(server)
        await server.start()
        return server

    async def close(self) -> None:
        servers, self._servers = self._servers, []
        for server in reversed(servers):
            await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def synapse_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[SynapseFactory]:
    """`await synapse_factory(appservice_files=[...])` -> a running Synapse, stopped after the test."""
    factory = _Factory(tmp_path_factory)
    try:
        yield factory
    finally:
        await factory.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session_synapse_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[SynapseFactory]:
    """Like `synapse_factory`, but servers live until the end of the session; build
    module- or session-scoped fixtures on this one."""
    factory = _Factory(tmp_path_factory)
    try:
        yield factory
    finally:
        await factory.close()
