"""Migrations: an empty and a populated database upgrade to head on both backends,
and the migrated schema equals the one the code declares (store/schema.py)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from ketch_server.domain.models import MetricColumns
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


async def _populate_first_release(engine) -> tuple[str, str]:
    """Rows as the first release (revision 0001) wrote them, in plain SQL."""
    from ketch_server.domain.metrics import split_batch
    from sqlalchemy import text

    (chunk,) = split_batch(MetricColumns(("loss",), [0, 0, 0], [0, 1, 2], [], [1.0, 0.5, 0.25]), 7)
    exp_id, run_id = "0" * 31 + "1", "0" * 31 + "2"
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO experiments VALUES (:id, 'kept', '', 'ACTIVE', 1, 1, NULL, 1)"),
            {"id": exp_id},
        )
        await conn.execute(
            text(
                "INSERT INTO runs VALUES (:id, :exp, 'r', 'RUNNING', 'ACTIVE', 1, NULL, 1, NULL,"
                " NULL, 'u', NULL, '{}', '{}', 1)"
            ),
            {"id": run_id, "exp": exp_id},
        )
        await conn.execute(text("INSERT INTO params VALUES (:r, 'lr', '0.1')"), {"r": run_id})
        await conn.execute(
            text("INSERT INTO metric_keys (run_id, name) VALUES (:r, 'loss')"), {"r": run_id}
        )
        await conn.execute(
            text(
                "INSERT INTO metric_chunks (run_id, key_id, first_step, last_step, count,"
                ' min_value, max_value, steps, timestamps, "values")'
                " SELECT :r, id, 0, 2, 3, 0.25, 1.0, :s, :t, :v FROM metric_keys"
            ),
            {
                "r": run_id,
                "s": chunk.steps_blob,
                "t": chunk.timestamps_blob,
                "v": chunk.values_blob,
            },
        )
        await conn.execute(
            text("INSERT INTO metric_summaries VALUES (:r, 'loss', 0.25, 2, 7, 0.25, 1.0, 3)"),
            {"r": run_id},
        )
    return exp_id, run_id


@BACKENDS
async def test_populated_first_release_database_upgrades_to_head_keeping_data(empty_url):
    engine = create_engine(empty_url)
    try:
        await upgrade_schema(engine, "0001")
        _, run_id = await _populate_first_release(engine)
        await upgrade_schema(engine)
        await upgrade_schema(engine)  # at head: a no-op that keeps data
        assert await current_revision(engine) == _head()
        store = TrackingStore(engine)
        run = await store.get_run(run_id)
        assert run.params == {"lr": "0.1"}
        assert [(m.key, m.count, m.last_value) for m in run.metrics] == [("loss", 3, 0.25)]
        ((_, steps, _, values, ranks),) = await store.read_metric_history(
            run_id, ["loss"], None, None
        )
        assert steps.tolist() == [0, 1, 2] and values.tolist() == [1.0, 0.5, 0.25]
        assert ranks.tolist() == [0, 0, 0]
    finally:
        await engine.dispose()
