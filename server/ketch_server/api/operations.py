"""OperationsService servicer: the status of the replica that answers.

``GetServerStatus`` reads in-process counters (:class:`ServerStats`) and the
connection pool's counts; it never queries the database, so it answers even
while the database is down (health says NOT_SERVING then).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import TYPE_CHECKING

from google.protobuf import duration_pb2, timestamp_pb2
from ketch.api.v1 import operations_pb2, operations_pb2_grpc

from ketch_server import __version__
from ketch_server.settings import Settings
from ketch_server.store.engine import redact_url
from ketch_server.telemetry import IngestSnapshot, PoolUsage, ServerStats, pool_usage

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["OperationsServicer", "artifact_store_of", "status_to_pb"]


def artifact_store_of(settings: Settings) -> tuple[str, str]:
    """(kind, location) of the artifact store the settings name: ``local`` and its
    directory, or ``s3`` and ``s3://bucket/prefix``."""
    target = settings.artifacts or ""
    if target.startswith("s3://"):
        return "s3", target
    return "local", str(target.removeprefix("file://") or settings.data_dir / "artifacts")


def _duration(seconds: float) -> duration_pb2.Duration:
    pb = duration_pb2.Duration()
    pb.FromNanoseconds(int(seconds * 1e9))
    return pb


def status_to_pb(
    *,
    start_time: dt.datetime,
    uptime_seconds: float,
    dialect: str,
    database_url: str,
    pool: PoolUsage,
    ingest: IngestSnapshot,
    artifact_store: tuple[str, str],
    instance: str,
) -> operations_pb2.ServerStatus:
    """The wire form of a status (``database_url`` must already be redacted)."""
    start = timestamp_pb2.Timestamp()
    start.FromDatetime(start_time)
    return operations_pb2.ServerStatus(
        version=__version__,
        instance=instance,
        start_time=start,
        uptime=_duration(uptime_seconds),
        database=operations_pb2.DatabaseStatus(
            dialect=dialect,
            url=database_url,
            pool=operations_pb2.DatabasePool(
                size=pool.size,
                checked_out=pool.checked_out,
                overflow=pool.overflow,
                checked_in=pool.checked_in,
            ),
        ),
        ingest=operations_pb2.IngestStatus(
            points_per_second=ingest.points_per_second,
            window=_duration(ingest.window_seconds),
            points_total=ingest.points_total,
            commits_total=ingest.commits_total,
            open_streams=ingest.open_streams,
        ),
        artifact_store=operations_pb2.ArtifactStoreStatus(
            kind=artifact_store[0], location=artifact_store[1]
        ),
    )


class OperationsServicer(operations_pb2_grpc.OperationsServiceServicer):
    """Serves ``GetServerStatus`` from ``stats``, ``engine``'s pool and ``settings``."""

    def __init__(self, stats: ServerStats, engine: AsyncEngine, settings: Settings) -> None:
        self.stats = stats
        self.engine = engine
        self.settings = settings
        self._url = redact_url(settings.database_url)
        self._artifacts = artifact_store_of(settings)
        # Host and process: unique per replica, also for several on one machine.
        self._instance = f"{socket.gethostname()}/{os.getpid()}"

    async def GetServerStatus(self, request, context):
        return status_to_pb(
            start_time=self.stats.start_time,
            uptime_seconds=self.stats.uptime(),
            dialect=self.engine.dialect.name,
            database_url=self._url,
            pool=pool_usage(self.engine),
            ingest=self.stats.snapshot(),
            artifact_store=self._artifacts,
            instance=self._instance,
        )
