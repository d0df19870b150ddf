"""Hot single-statement reads on SQLite, run inline on the event loop's thread.

aiosqlite sends every step of a read (pool checkout, execute, fetch, commit, reset)
to its worker thread and back; for a registry resolve that SQLite itself answers in
tens of microseconds those hops cost about 1.7 ms and most of the server's CPU. A
reader in WAL mode never waits for writers, so the statement can run on the loop's
thread through a connection of its own, blocking the loop for less than one hop.

The connection is read-only (``PRAGMA query_only``) and in autocommit mode, so every
statement reads the latest committed snapshot, exactly as the async path would. When
it cannot answer at once (the database busy or locked, which WAL makes rare, or any
other SQLite error) :meth:`InlineReader.rows` returns None and the caller takes the
async path, which waits and reports errors as usual.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from ketch_server.store.compiled import CompiledStatements

__all__ = ["InlineReader"]

log = logging.getLogger(__name__)


class InlineReader:
    """Runs prebuilt SELECT statements on a private sqlite3 connection (one thread only)."""

    def __init__(self, engine: AsyncEngine, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._compiled = CompiledStatements(engine.dialect)
        # Closed with the engine (Engine.dispose), like the engine's own connections.
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: self.close())

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> InlineReader | None:
        """A reader for a file-backed SQLite engine; None for anything else."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return cls(engine, url.database)

    def rows(self, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The statement's rows as mappings, or None when the async path must answer."""
        sql, args = self._compiled.sql_and_args(statement, params)
        try:
            cursor = self._connection().execute(sql, args)
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        except sqlite3.Error as exc:
            log.debug("inline read fell back to the async path: %s", exc)
            self.close()
            return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=0")  # never block the loop: fall back instead
            self._conn = conn
        return self._conn
