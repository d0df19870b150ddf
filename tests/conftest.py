"""Shared fixtures: database backends (SQLite and PostgreSQL), in-process and
subprocess servers, and SDK clients.

Backends: every test that takes ``db_url`` (or a fixture built on it) runs once
on SQLite and once on PostgreSQL. PostgreSQL comes from tests/_postgres.py
(KETCH_TEST_POSTGRES_DSN, testcontainers, or a throwaway initdb cluster); when
none is available the PostgreSQL cases skip with the reason, except in CI
(KETCH_REQUIRE_SERVICES=1 or CI=true), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest

from tests import _postgres
from tests._s3 import artifact_server, s3_server  # noqa: F401 (fixtures)

ROOT = pathlib.Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def pg_server() -> Iterator[_postgres.PostgresServer]:
    server = _postgres.provision_postgres()
    if server is None:
        _postgres.skip_or_fail(_postgres.last_unavailable_reason())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server) -> Iterator[str]:
    """A database migrated to head, copied for each test (fast: CREATE DATABASE ... TEMPLATE)."""
    from ketch_server.store.engine import create_engine, upgrade_schema

    name = f"ketch_tmpl_{uuid.uuid4().hex[:8]}"
    _postgres.create_database(pg_server.admin_dsn, name)

    async def migrate() -> None:
        engine = create_engine(_postgres.to_sqlalchemy_url(pg_server.admin_dsn, name))
        await upgrade_schema(engine)
        await engine.dispose()

    asyncio.run(migrate())
    yield name
    _postgres.drop_database(pg_server.admin_dsn, name)


@pytest.fixture
def postgres_url(request) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    server = request.getfixturevalue("pg_server")
    template = request.getfixturevalue("pg_template")
    name = f"ketch_t_{uuid.uuid4().hex[:10]}"
    _postgres.create_database(server.admin_dsn, name, template=template)
    yield _postgres.to_sqlalchemy_url(server.admin_dsn, name)
    _postgres.drop_database(server.admin_dsn, name)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'ketch.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """A database URL, once per backend."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
async def store(db_url):
    """A migrated TrackingStore on each backend."""
    from ketch_server.store.engine import create_engine, upgrade_schema
    from ketch_server.store.tracking import TrackingStore

    engine = create_engine(db_url)
    await upgrade_schema(engine)
    yield TrackingStore(engine)
    await engine.dispose()


# ------------------------------------------------------------------- servers


class ThreadServer:
    """A real ketch server (build_server) on its own event loop in a thread."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from ketch_server.app import build_server

        self.app = await build_server(self.settings)
        await self.app.start()

    def start(self) -> ThreadServer:
        self._thread.start()
        self._ready.wait(60)
        if self._error:
            raise self._error
        return self

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.app.port}"

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float = 1.0) -> None:
        self.run(self.app.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def server(db_url, tmp_path) -> Iterator[ThreadServer]:
    """An in-process ketch server on a free port, once per backend."""
    from ketch_server.settings import Settings

    settings = Settings(port=0, data_dir=tmp_path / "data", db_url=db_url, grace_seconds=1)
    srv = ThreadServer(settings).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    import ketch

    with ketch.Client(server.uri) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ketch server exited early with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"ketch server did not listen on port {port} within {timeout}s")


class ServerProcess:
    """``python -m ketch_server`` as a subprocess, as a user would run it."""

    def __init__(
        self, data_dir: pathlib.Path, db_url: str | None = None, extra: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log = data_dir.parent / f"server-{self.port}.log"
        args = [
            sys.executable,
            "-m",
            "ketch_server",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--grace",
            "2",
        ]
        if db_url:
            args += ["--db", db_url]
        args += list(extra)
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, cwd=data_dir.parent
        )
        wait_for_port(self.port, self.proc)

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def server_process(tmp_path) -> Iterator[ServerProcess]:
    """The real server as a subprocess on SQLite under tmp_path/data."""
    proc = ServerProcess(tmp_path / "data")
    yield proc
    proc.stop()


@pytest.fixture
def cli_env(server_process) -> dict[str, str]:
    """Environment for running the ketch CLI and examples against ``server_process``."""
    env = dict(os.environ)
    env["KETCH_TRACKING_URI"] = server_process.uri
    env.pop("KETCH_RUN_ID", None)
    return env
