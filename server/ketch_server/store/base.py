"""What every SQL store shares: the engine, one transaction per call, and the single
place where database errors become domain errors.

A lost or refused connection (SQLite busy past its timeout, PostgreSQL down,
starting up or shutting down) becomes :class:`Unavailable`: the transaction
rolled back, so the call changed nothing and clients may retry it. Constraint
violations are translated by each store, where their meaning is known.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from sqlalchemy import literal, select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ketch_server.domain.errors import Unavailable

__all__ = ["SqlStore", "now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# SQLSTATE classes meaning "the database is not available right now": connection
# exceptions, operator intervention (starting up, shutting down), insufficient
# resources. Errors of these classes become Unavailable (clients retry).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57", "53")


def _unavailable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return bool(code) and str(code)[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


class SqlStore:
    """A store over one async engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    # ------------------------------------------------------------ plumbing

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError, OSError, ConnectionError) as exc:
            if isinstance(exc, OperationalError) and "locked" in str(exc):
                raise Unavailable(
                    "the SQLite database stayed locked by another writer; retry the call"
                ) from exc
            raise Unavailable(
                "the database cannot be reached; the call changed nothing, retry it later"
            ) from exc
        except DBAPIError as exc:
            if not _unavailable(exc):
                raise
            raise Unavailable(
                "the database is starting up, shutting down or lost the connection; "
                "the call changed nothing, retry it later"
            ) from exc

    def _insert(self, table):
        module = pg_dialect if self._dialect == "postgresql" else sqlite_dialect
        return module.insert(table)

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the database answers a trivial query."""
        async with self._tx() as conn:
            await conn.execute(select(literal(1)))
