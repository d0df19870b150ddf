"""Migrations: an empty and a populated database upgrade to head on both backends,
and the migrated schema equals the one the code declares (store/schema.py)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from ketch_server.domain.models import MetricColumns, RunEnvironment, RunSource
from ketch_server.store.engine import MIGRATIONS, create_engine, current_revision, upgrade_schema
from ketch_server.store.schema import metadata
from ketch_server.store.tracking import TrackingStore


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


@pytest.fixture
def empty_url(request, tmp_path):
    """An empty database (no schema) per backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    import uuid

    from tests import _postgres

    server = request.getfixturevalue("pg_server")
    name = f"ketch_m_{uuid.uuid4().hex[:10]}"
    _postgres.create_database(server.admin_dsn, name)
    request.addfinalizer(lambda: _postgres.drop_database(server.admin_dsn, name))
    return _postgres.to_sqlalchemy_url(server.admin_dsn, name)


BACKENDS = pytest.mark.parametrize(
    "empty_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@BACKENDS
async def test_empty_database_upgrades_to_head_and_matches_the_declared_schema(empty_url):
    engine = create_engine(empty_url)
    try:
        assert await current_revision(engine) is None
        await upgrade_schema(engine)
        assert await current_revision(engine) == _head()
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
        assert diff == [], f"migrations and store/schema.py disagree: {diff}"
    finally:
        await engine.dispose()


@BACKENDS
async def test_populated_database_survives_upgrade_and_downgrade_cycle(empty_url):
    engine = create_engine(empty_url)
    try:
        await upgrade_schema(engine, "0001")  # the first release's schema
        store = TrackingStore(engine)
        exp = await store.create_experiment("kept", "")
        run = await store.create_run(
            exp.id,
            display_name="r",
            parent_run_id=None,
            user="u",
            params_={"lr": "0.1"},
            tags_={},
            source=RunSource(),
            environment=RunEnvironment(),
            request_id=None,
            start_time=None,
        )
        await store.log_metrics(run.id, MetricColumns(("loss",), [0, 0], [0, 1], [], [1.0, 0.5]))
        await upgrade_schema(engine)
        await upgrade_schema(engine)  # at head: a no-op that keeps data
        assert await current_revision(engine) == _head()
        again = await store.get_run(run.id)
        assert again.params == {"lr": "0.1"}
        assert [m.count for m in again.metrics] == [2]
    finally:
        await engine.dispose()
