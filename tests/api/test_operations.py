"""GetServerStatus through the real server, its wire form, and ``ketch server status``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from urllib.parse import urlsplit

import ketch
import pytest
from ketch import errors
from ketch._operations import get_server_status
from ketch._transport import Transport
from ketch_server.api.operations import OperationsServicer
from ketch_server.settings import Settings
from ketch_server.store.engine import create_engine
from ketch_server.telemetry import ServerStats

from tests.conftest import free_port


def _status(uri: str):
    transport = Transport(uri)
    try:
        return get_server_status(transport)
    finally:
        transport.close()


def test_status_reports_ingest_streams_pool_and_store(server, db_url):
    before = _status(server.uri)
    assert before.version == ketch_server_version()
    assert before.uptime_seconds > 0 and before.start_time.tzinfo is not None
    assert before.database.dialect == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
    assert before.database.url == db_url  # no password in the test URLs: shown as is
    assert before.ingest.open_streams == 0 and before.ingest.points_total == 0
    assert before.artifact_store.kind == "local"
    assert before.artifact_store.location == str(server.settings.data_dir / "artifacts")
    assert before.database.pool.size > 0

    run = ketch.init(
        experiment="status",
        uri=server.uri,
        capture_environment=False,
        system_metrics=False,
        flush_interval=0.01,
    )
    for step in range(3_000):
        run.log({"a": 1.0, "b": 2.0}, step=step)
    assert run.flush(timeout=30)
    during = _status(server.uri)
    run.finish()
    after = _status(server.uri)

    assert during.ingest.open_streams == 1
    assert after.ingest.open_streams == 0
    assert after.ingest.points_total == 6_000
    assert 1 <= after.ingest.commits_total <= 6_000
    window = after.ingest.window_seconds
    assert 0 < window <= 11
    # Every point was committed within the window, so the rate is the total over it.
    assert after.ingest.points_per_second == pytest.approx(6_000 / window, rel=0.2)


def test_database_password_is_hidden():
    url = "postgresql+asyncpg://ketch:s3cret@db.internal:5432/ketch"
    settings = Settings(db_url=url, artifacts="s3://bucket/prefix")
    engine = create_engine(url)  # never connects: the status reads only the pool's counts

    async def call():
        servicer = OperationsServicer(ServerStats(), engine, settings)
        try:
            return await servicer.GetServerStatus(None, None)
        finally:
            await engine.dispose()

    pb = asyncio.run(call())
    assert pb.database.url == "postgresql+asyncpg://ketch:***@db.internal:5432/ketch"
    assert "s3cret" not in str(pb)
    assert (pb.artifact_store.kind, pb.artifact_store.location) == ("s3", "s3://bucket/prefix")
    assert pb.database.pool.size == 10 and pb.database.pool.checked_out == 0


def ketch_server_version() -> str:
    from ketch_server import __version__

    return __version__


# ----------------------------------------------------------------------- CLI


def _ketch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ketch._cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.e2e
def test_cli_server_status(server_process, cli_env):
    done = _ketch("server", "status", env=cli_env)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["server"].startswith(f"ketch {ketch_server_version()} at {server_process.uri}")
    assert lines["database"].startswith("sqlite  sqlite+aiosqlite:///")
    assert lines["streams"] == "0 open"
    assert lines["artifacts"].startswith("local  ")

    as_json = _ketch("server", "status", "--json", "--uri", server_process.uri)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["version"] == ketch_server_version()
    assert doc["database"]["dialect"] == "sqlite"
    assert doc["ingest"] == {
        "points_per_second": 0.0,
        "window_seconds": doc["ingest"]["window_seconds"],
        "points_total": 0,
        "commits_total": 0,
        "open_streams": 0,
    }
    assert doc["start_time"].endswith("Z")


def test_cli_server_status_unreachable():
    uri = f"grpc://127.0.0.1:{free_port()}"
    done = _ketch("server", "status", "--uri", uri, "--timeout", "2")
    assert done.returncode == 1
    assert f"cannot reach the ketch server at {uri}" in done.stderr
    assert done.stdout == ""


def test_status_sdk_error_is_typed():
    with pytest.raises(errors.Unavailable):
        _status(f"grpc://127.0.0.1:{free_port()}")


# ------------------------------------------------------------------ health checks


def _healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ketch_server.healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.e2e
def test_healthcheck_module_exit_codes(server_process):
    address = f"127.0.0.1:{server_process.port}"
    assert _healthcheck("--address", address).returncode == 0
    assert _healthcheck("--address", address, "--service", "liveness").returncode == 0
    unknown = _healthcheck("--address", address, "--service", "no.such.Service")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    down = _healthcheck("--address", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr


@pytest.mark.postgres
def test_liveness_stays_serving_while_the_database_is_down(postgres_url, tmp_path):
    """Readiness follows the database; liveness does not (no restart storm in an outage)."""
    from ketch_server.healthcheck import check

    from tests.api.test_health import CuttableProxy
    from tests.conftest import ThreadServer

    parts = urlsplit(postgres_url)
    proxy = CuttableProxy((parts.hostname, parts.port))
    proxied = postgres_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    settings = Settings(
        port=0, data_dir=tmp_path, db_url=proxied, health_interval_seconds=0.2, grace_seconds=1
    )
    srv = ThreadServer(settings).start()
    address = f"127.0.0.1:{srv.app.port}"
    try:
        assert check(address) == check(address, service="liveness") == "SERVING"
        proxy.cut()
        deadline = time.monotonic() + 20
        while check(address) != "NOT_SERVING" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert check(address) == "NOT_SERVING"
        assert check(address, service="liveness") == "SERVING"
        assert _status(srv.uri).database.dialect == "postgresql"  # status needs no database
    finally:
        srv.stop()
        proxy.close()
