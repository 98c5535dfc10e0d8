"""Fixtures shared by every test suite: a real, throwaway PostgreSQL server.

`postgres_url` boots a private PostgreSQL (initdb into a temp dir, loopback only, trust
auth) once per session. Where PostgreSQL is not installed the tests that need it are
skipped — loudly: each skip says how to fix it and the terminal summary repeats it in a
banner, so a green run without PostgreSQL never looks like full coverage.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.demo.waiting import free_port

POSTGRES_MISSING = (
    "PostgreSQL not installed — install Debian's postgresql package "
    "(the README's test command does this)"
)
POSTGRES_FIXTURES = frozenset({"postgres_url", "fresh_postgres_url", "postgres_server"})


def _find_pg_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's versioned dirs."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        # Debian symlinks (or wraps) these; the real directory also has createdb/psql/postgres.
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in candidates:
        if (Path(bindir) / "initdb").exists() and (Path(bindir) / "pg_ctl").exists():
            return Path(bindir)
    return None


@dataclass(frozen=True)
class PostgresServer:
    bindir: Path
    datadir: Path
    port: int
    run_as: str | None  # system user the server runs as (root may not run postgres)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def client(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.bindir / tool), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *args)

    def create_database(self, name: str) -> None:
        self.client("createdb", name)

    def drop_database(self, name: str) -> None:
        self.client("dropdb", "--force", "--if-exists", name)


def _start_postgres(root: Path, bindir: Path) -> PostgresServer:
    run_as: str | None = None
    if os.geteuid() == 0:
        # postgres refuses to run as root; hand the directory to the postgres system user.
        run_as = "postgres"
        shutil.chown(root, user=run_as, group=None)
    root.chmod(0o700)
    server = PostgresServer(bindir=bindir, datadir=root / "data", port=free_port(), run_as=run_as)
    sockdir = root / "sock"
    sockdir.mkdir()
    if run_as:
        shutil.chown(sockdir, user=run_as)
    server.run(
        str(bindir / "initdb"),
        "-D", str(server.datadir),
        "-U", "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    )  # fmt: skip
    options = " ".join(
        [
            f"-p {server.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={sockdir}",
            # A throwaway server: durability buys nothing and costs seconds.
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            "-c max_connections=200",
        ]
    )
    server.run(
        str(bindir / "pg_ctl"),
        "-D", str(server.datadir),
        "-l", str(root / "postgres.log"),
        "-o", options,
        "-w", "-t", "60",
        "start",
    )  # fmt: skip
    return server


def _stop_postgres(server: PostgresServer) -> None:
    subprocess.run(
        server.cmd(str(server.bindir / "pg_ctl"), "-D", str(server.datadir), "-m", "immediate", "-w", "stop"),
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the whole session (skipped, loudly, if not installed)."""
    bindir = _find_pg_bindir()
    if bindir is None:
        pytest.skip(POSTGRES_MISSING)
    root = Path(tempfile.mkdtemp(prefix="modbot-pg-"))  # short path: the socket dir lives here
    server: PostgresServer | None = None
    try:
        server = _start_postgres(root, bindir)
        server.create_database("modbot_test")
        yield server
    finally:
        if server is not None:
            _stop_postgres(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of the session's `modbot_test` database (asyncpg driver, trust auth)."""
    return postgres_server.url("modbot_test")


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a brand-new, empty database, dropped after the test."""
    name = f"modbot_{secrets.token_hex(6)}"
    postgres_server.create_database(name)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that use a PostgreSQL fixture get the `postgres` marker, so `-m "not postgres"` works.
    for item in items:
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [
        rep
        for rep in terminalreporter.stats.get("skipped", [])
        if isinstance(rep.longrepr, tuple) and POSTGRES_MISSING in str(rep.longrepr[2])
    ]
    if not skipped:
        return
    tr = terminalreporter
    tr.write_sep("!", "POSTGRESQL TESTS SKIPPED", red=True, bold=True)
    tr.write_line(f"{len(skipped)} test(s) needing PostgreSQL did NOT run: {POSTGRES_MISSING}.", red=True, bold=True)
    tr.write_line("This run does not cover the PostgreSQL backend:", red=True)
    for rep in skipped:
        tr.write_line(f"  - {rep.nodeid}", red=True)
    tr.write_sep("!", red=True, bold=True)
