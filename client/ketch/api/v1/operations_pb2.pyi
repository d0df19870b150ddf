import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from ketch.api.v1 import auth_pb2 as _auth_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetServerStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerStatus(_message.Message):
    __slots__ = ("version", "instance", "start_time", "uptime", "database", "ingest", "artifact_store")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    INGEST_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_STORE_FIELD_NUMBER: _ClassVar[int]
    version: str
    instance: str
    start_time: _timestamp_pb2.Timestamp
    uptime: _duration_pb2.Duration
    database: DatabaseStatus
    ingest: IngestStatus
    artifact_store: ArtifactStoreStatus
    def __init__(self, version: _Optional[str] = ..., instance: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., database: _Optional[_Union[DatabaseStatus, _Mapping]] = ..., ingest: _Optional[_Union[IngestStatus, _Mapping]] = ..., artifact_store: _Optional[_Union[ArtifactStoreStatus, _Mapping]] = ...) -> None: ...

class DatabaseStatus(_message.Message):
    __slots__ = ("dialect", "url", "pool")
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    dialect: str
    url: str
    pool: DatabasePool
    def __init__(self, dialect: _Optional[str] = ..., url: _Optional[str] = ..., pool: _Optional[_Union[DatabasePool, _Mapping]] = ...) -> None: ...

class DatabasePool(_message.Message):
    __slots__ = ("size", "checked_out", "overflow", "checked_in")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHECKED_OUT_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_FIELD_NUMBER: _ClassVar[int]
    CHECKED_IN_FIELD_NUMBER: _ClassVar[int]
    size: int
    checked_out: int
    overflow: int
    checked_in: int
    def __init__(self, size: _Optional[int] = ..., checked_out: _Optional[int] = ..., overflow: _Optional[int] = ..., checked_in: _Optional[int] = ...) -> None: ...

class IngestStatus(_message.Message):
    __slots__ = ("points_per_second", "window", "points_total", "commits_total", "open_streams")
    POINTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    POINTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMMITS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OPEN_STREAMS_FIELD_NUMBER: _ClassVar[int]
    points_per_second: float
    window: _duration_pb2.Duration
    points_total: int
    commits_total: int
    open_streams: int
    def __init__(self, points_per_second: _Optional[float] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., points_total: _Optional[int] = ..., commits_total: _Optional[int] = ..., open_streams: _Optional[int] = ...) -> None: ...

class ArtifactStoreStatus(_message.Message):
    __slots__ = ("kind", "location")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    location: str
    def __init__(self, kind: _Optional[str] = ..., location: _Optional[str] = ...) -> None: ...
