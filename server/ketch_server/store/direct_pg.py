"""Hot single-statement reads on PostgreSQL, sent through asyncpg directly.

Through SQLAlchemy's async engine one registry resolve costs about 570 µs of the event
loop's CPU (pool checkout and pre-ping, the greenlet bridge, transaction bookkeeping,
result processing); the same prepared statement on an asyncpg connection of its own
costs about 60 µs. With fifty clients that difference is a third of the server's loop.
:class:`DirectReader` keeps a few dedicated connections for such reads, in autocommit
(one statement reads one snapshot, so every read sees the latest commit, as the pooled
path does).

It never reports an error: when it cannot answer (all its connections busy, none can
be opened, the connection broke, any error from the server) :meth:`DirectReader.rows`
returns None and the caller takes the pooled path, which waits, retries and reports
errors as usual. After a failed connect it leaves connecting alone for a second, so a
database that is down costs the pooled path's error, not a connect attempt per call.
Its connections close with the engine (``Engine.dispose``), and it opens no more
afterwards. One event loop only.

Its connections are opened from the engine's URL alone (host, port, user, password,
database and the URL's query options); ``connect_args`` given to the engine and
``do_connect`` hooks do not apply to them (ketch's engines use neither).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from ketch_server.store.compiled import CompiledStatements

__all__ = ["DirectReader"]

log = logging.getLogger(__name__)

# Keyword arguments SQLAlchemy's asyncpg adapter takes for itself, not asyncpg.connect.
_ADAPTER_ONLY = (
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
    "async_creator_fn",
)
_RECONNECT_PAUSE_S = 1.0
_CONNECT_TIMEOUT_S = 5.0


class DirectReader:
    """Runs prebuilt SELECT statements on up to ``size`` dedicated asyncpg connections."""

    def __init__(self, engine: AsyncEngine, size: int = 4) -> None:
        _, kwargs = engine.dialect.create_connect_args(engine.url)
        self._connect_kwargs = {"timeout": _CONNECT_TIMEOUT_S}
        self._connect_kwargs.update((k, v) for k, v in kwargs.items() if k not in _ADAPTER_ONLY)
        self._size = size
        self._idle: list[Any] = []
        self._busy: set[Any] = set()
        self._connecting = 0
        self._next_connect = 0.0
        self._closed = False
        self._compiled = CompiledStatements(engine.dialect)
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: self.close())

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> DirectReader | None:
        """A reader for an asyncpg engine; None for anything else."""
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "asyncpg":
            return None
        return cls(engine)

    async def rows(self, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The statement's rows as mappings, or None when the pooled path must answer."""
        sql, args = self._compiled.sql_and_args(statement, params)
        conn = self._idle.pop() if self._idle else await self._open()
        if conn is None:
            return None
        self._busy.add(conn)
        try:
            records = await conn.fetch(sql, *args)
        except BaseException as exc:  # cancelled mid-query too: the connection is unusable
            self._busy.discard(conn)
            conn.terminate()
            if not isinstance(exc, Exception):
                raise
            log.debug("direct read fell back to the pooled path: %r", exc)
            return None
        self._busy.discard(conn)
        if self._closed:
            conn.terminate()
        elif not conn.is_closed():
            self._idle.append(conn)
        return [dict(r) for r in records]

    async def _open(self) -> Any:
        if self._closed or len(self._busy) + self._connecting >= self._size:
            return None
        if time.monotonic() < self._next_connect:
            return None
        import asyncpg

        self._connecting += 1
        try:
            conn = await asyncpg.connect(**self._connect_kwargs)
            if self._closed:  # the engine was disposed while this one was opening
                conn.terminate()
                return None
            return conn
        except Exception as exc:
            self._next_connect = time.monotonic() + _RECONNECT_PAUSE_S
            log.debug("direct reader could not connect; the pooled path answers: %r", exc)
            return None
        finally:
            self._connecting -= 1

    def close(self) -> None:
        """Close every connection at once (idle ones and any mid-query), for good:
        afterwards every read is the pooled path's."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.terminate()
        self._idle.clear()
        self._busy.clear()
