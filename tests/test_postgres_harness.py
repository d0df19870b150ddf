"""Tests of the PostgreSQL provisioning harness in tests/_postgres.py."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

try:
    from tests import _postgres as pgh
except ImportError:  # tests/ itself on sys.path (plain `pytest`, no tests/__init__.py)
    import _postgres as pgh  # type: ignore[no-redef]

pytestmark = pytest.mark.postgres

MACHINE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def fallback_server() -> Iterator[pgh.PostgresServer]:
    """One server from the fallback strategies (env DSN ignored) for the whole module."""
    saved = os.environ.pop(pgh.DSN_ENV, None)
    try:
        server = pgh.provision_postgres()
    finally:
        if saved is not None:
            os.environ[pgh.DSN_ENV] = saved
    if server is None:
        reason = pgh.last_unavailable_reason()
        # With a DSN configured and no server binaries here, the fallback is moot: skip.
        if pgh.require_services() and (saved is None or pgh.find_pg_bindir()):
            pytest.fail(reason)
        pytest.skip(reason)
    yield server
    server.stop()


def _fetchval(dsn: str, sql: str) -> object:
    """Runs ``sql`` (several statements allowed when nothing is fetched) and returns a value."""

    async def go() -> object:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await (conn.execute(sql) if ";" in sql else conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(go())


def _unique(prefix: str) -> str:
    return f"ketch_{prefix}_{uuid.uuid4().hex[:8]}"


def test_fallback_server_answers(fallback_server: pgh.PostgresServer) -> None:
    assert fallback_server.kind in ("testcontainers", "initdb")
    assert fallback_server.admin_dsn.startswith("postgresql://")
    assert "PostgreSQL" in str(_fetchval(fallback_server.admin_dsn, "select version()"))


def test_create_drop_round_trip(fallback_server: pgh.PostgresServer) -> None:
    admin, name = fallback_server.admin_dsn, _unique("roundtrip")
    exists = f"select count(*) from pg_database where datname = '{name}'"
    pgh.create_database(admin, name)
    assert _fetchval(admin, exists) == 1

    async def drop_while_connected() -> None:
        conn = await asyncpg.connect(pgh.database_dsn(admin, name), timeout=10)
        try:
            pgh.drop_database(admin, name)  # called inside a running loop; FORCE kicks conn
        finally:
            conn.terminate()

    asyncio.run(drop_while_connected())
    assert _fetchval(admin, exists) == 0
    pgh.drop_database(admin, name)  # dropping a missing database is fine


def test_database_from_template_has_its_table(fallback_server: pgh.PostgresServer) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    admin, template, copy = fallback_server.admin_dsn, _unique("tpl"), _unique("copy")
    pgh.create_database(admin, template)
    try:
        tpl_dsn = pgh.database_dsn(admin, template)
        _fetchval(tpl_dsn, "create table runs (id int primary key); insert into runs values (7)")
        pgh.create_database(admin, copy, template=template)

        async def read_copy() -> object:
            engine = create_async_engine(pgh.to_sqlalchemy_url(admin, copy))
            try:
                async with engine.connect() as conn:
                    return (await conn.execute(text("select id from runs"))).scalar_one()
            finally:
                await engine.dispose()

        assert asyncio.run(read_copy()) == 7
    finally:
        pgh.drop_database(admin, copy)
        pgh.drop_database(admin, template)


def test_dsn_env_path(monkeypatch: pytest.MonkeyPatch) -> None:
    configured = os.environ.get(pgh.DSN_ENV)
    dsn = pgh.normalize_dsn(configured or MACHINE_DSN)
    monkeypatch.setenv(pgh.DSN_ENV, dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    server = pgh.provision_postgres()
    if server is None:
        reason = pgh.last_unavailable_reason()
        if configured and pgh.require_services():
            pytest.fail(reason)
        pytest.skip(f"{reason} (start PostgreSQL on 127.0.0.1:5432 to run this test)")
    assert (server.kind, server.admin_dsn) == ("env", dsn)
    server.stop()  # never stops a server it did not start
    assert _fetchval(server.admin_dsn, "select 1") == 1


def test_bad_dsn_env_reports_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pgh.DSN_ENV, "postgresql://postgres:secret@127.0.0.1:1/postgres")
    assert pgh.provision_postgres() is None
    reason = pgh.last_unavailable_reason()
    assert pgh.DSN_ENV in reason and "secret" not in reason


def test_url_helpers() -> None:
    admin = "postgresql+asyncpg://u:p@db.example:6543/admin?sslmode=disable"
    assert pgh.normalize_dsn(admin) == "postgresql://u:p@db.example:6543/admin?sslmode=disable"
    assert pgh.database_dsn(admin, "t1") == "postgresql://u:p@db.example:6543/t1?sslmode=disable"
    assert pgh.to_sqlalchemy_url("postgres://u@h:5/x", "t1") == "postgresql+asyncpg://u@h:5/t1"
    with pytest.raises(ValueError):
        pgh.normalize_dsn("mysql://u@h/db")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "false"}, False),
        ({"KETCH_REQUIRE_SERVICES": "1"}, True),
        ({"KETCH_REQUIRE_POSTGRES": "TRUE"}, True),
        ({"KETCH_REQUIRE_POSTGRES": "0"}, False),
    ],
)
def test_require_services(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    for name in ("CI", "KETCH_REQUIRE_SERVICES", "KETCH_REQUIRE_POSTGRES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert pgh.require_services() is expected
