"""The operations service, SDK half: one replica's status as plain dataclasses.

Wire side (it touches generated types); ``ketch server status`` prints what
:func:`get_server_status` returns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from ketch._transport import Transport
from ketch.api.v1 import operations_pb2, operations_pb2_grpc

__all__ = [
    "ArtifactStoreStatus",
    "DatabaseStatus",
    "IngestStatus",
    "PoolStatus",
    "ServerStatus",
    "get_server_status",
]


@dataclasses.dataclass(frozen=True)
class PoolStatus:
    """The replica's database connection pool (all zero for pools that do not count)."""

    size: int
    checked_out: int
    overflow: int
    checked_in: int


@dataclasses.dataclass(frozen=True)
class DatabaseStatus:
    """``dialect`` is ``sqlite`` or ``postgresql``; ``url`` has its password hidden."""

    dialect: str
    url: str
    pool: PoolStatus


@dataclasses.dataclass(frozen=True)
class IngestStatus:
    """Points committed per second over the last ``window_seconds`` (~10 s), totals
    since the replica started, and the metric streams open now."""

    points_per_second: float
    window_seconds: float
    points_total: int
    commits_total: int
    open_streams: int


@dataclasses.dataclass(frozen=True)
class ArtifactStoreStatus:
    """``kind`` is ``local`` (a server directory) or ``s3``; ``location`` says where."""

    kind: str
    location: str


@dataclasses.dataclass(frozen=True)
class ServerStatus:
    """The status of the replica that answered (``instance`` is its host name)."""

    version: str
    instance: str
    start_time: dt.datetime
    uptime_seconds: float
    database: DatabaseStatus
    ingest: IngestStatus
    artifact_store: ArtifactStoreStatus

    @classmethod
    def _from_proto(cls, pb: operations_pb2.ServerStatus) -> ServerStatus:
        db, ingest, pool = pb.database, pb.ingest, pb.database.pool
        return cls(
            version=pb.version,
            instance=pb.instance,
            start_time=pb.start_time.ToDatetime(tzinfo=dt.timezone.utc),
            uptime_seconds=pb.uptime.ToNanoseconds() / 1e9,
            database=DatabaseStatus(
                dialect=db.dialect,
                url=db.url,
                pool=PoolStatus(
                    size=pool.size,
                    checked_out=pool.checked_out,
                    overflow=pool.overflow,
                    checked_in=pool.checked_in,
                ),
            ),
            ingest=IngestStatus(
                points_per_second=ingest.points_per_second,
                window_seconds=ingest.window.ToNanoseconds() / 1e9,
                points_total=ingest.points_total,
                commits_total=ingest.commits_total,
                open_streams=ingest.open_streams,
            ),
            artifact_store=ArtifactStoreStatus(
                kind=pb.artifact_store.kind, location=pb.artifact_store.location
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields nested as above, ``start_time`` in ISO-8601 UTC."""
        doc = dataclasses.asdict(self)
        doc["start_time"] = self.start_time.isoformat().replace("+00:00", "Z")
        return doc


def get_server_status(transport: Transport, *, timeout: float | None = None) -> ServerStatus:
    """The status of the replica ``transport`` reaches (retried while UNAVAILABLE).

    Raises:
        ketch.errors.KetchError: the call failed (e.g. ``Unavailable``).
    """
    pb = transport.call(
        "GetServerStatus",
        operations_pb2.GetServerStatusRequest(),
        retries=2,
        timeout=timeout,
        service=operations_pb2_grpc.OperationsServiceStub,
    )
    return ServerStatus._from_proto(pb)
