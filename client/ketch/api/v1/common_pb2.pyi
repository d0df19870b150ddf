from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class LifecycleState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIFECYCLE_STATE_UNSPECIFIED: _ClassVar[LifecycleState]
    LIFECYCLE_STATE_ACTIVE: _ClassVar[LifecycleState]
    LIFECYCLE_STATE_DELETED: _ClassVar[LifecycleState]

class ViewType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIEW_TYPE_UNSPECIFIED: _ClassVar[ViewType]
    VIEW_TYPE_ACTIVE_ONLY: _ClassVar[ViewType]
    VIEW_TYPE_DELETED_ONLY: _ClassVar[ViewType]
    VIEW_TYPE_ALL: _ClassVar[ViewType]

class ColumnEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_ENCODING_UNSPECIFIED: _ClassVar[ColumnEncoding]
    COLUMN_ENCODING_RAW_LE: _ClassVar[ColumnEncoding]
LIFECYCLE_STATE_UNSPECIFIED: LifecycleState
LIFECYCLE_STATE_ACTIVE: LifecycleState
LIFECYCLE_STATE_DELETED: LifecycleState
VIEW_TYPE_UNSPECIFIED: ViewType
VIEW_TYPE_ACTIVE_ONLY: ViewType
VIEW_TYPE_DELETED_ONLY: ViewType
VIEW_TYPE_ALL: ViewType
COLUMN_ENCODING_UNSPECIFIED: ColumnEncoding
COLUMN_ENCODING_RAW_LE: ColumnEncoding

class MetricBatch(_message.Message):
    __slots__ = ("keys", "key_index", "steps", "timestamps_ms", "values", "key_index_le", "steps_le", "timestamps_ms_le", "values_le")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_INDEX_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    KEY_INDEX_LE_FIELD_NUMBER: _ClassVar[int]
    STEPS_LE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_LE_FIELD_NUMBER: _ClassVar[int]
    VALUES_LE_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    key_index: _containers.RepeatedScalarFieldContainer[int]
    steps: _containers.RepeatedScalarFieldContainer[int]
    timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    key_index_le: bytes
    steps_le: bytes
    timestamps_ms_le: bytes
    values_le: bytes
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., key_index: _Optional[_Iterable[int]] = ..., steps: _Optional[_Iterable[int]] = ..., timestamps_ms: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., key_index_le: _Optional[bytes] = ..., steps_le: _Optional[bytes] = ..., timestamps_ms_le: _Optional[bytes] = ..., values_le: _Optional[bytes] = ...) -> None: ...

class MetricSeries(_message.Message):
    __slots__ = ("key", "steps", "timestamps_ms", "values", "run", "ranks", "steps_le", "timestamps_ms_le", "values_le", "ranks_le")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    STEPS_LE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_LE_FIELD_NUMBER: _ClassVar[int]
    VALUES_LE_FIELD_NUMBER: _ClassVar[int]
    RANKS_LE_FIELD_NUMBER: _ClassVar[int]
    key: str
    steps: _containers.RepeatedScalarFieldContainer[int]
    timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    run: str
    ranks: _containers.RepeatedScalarFieldContainer[int]
    steps_le: bytes
    timestamps_ms_le: bytes
    values_le: bytes
    ranks_le: bytes
    def __init__(self, key: _Optional[str] = ..., steps: _Optional[_Iterable[int]] = ..., timestamps_ms: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., run: _Optional[str] = ..., ranks: _Optional[_Iterable[int]] = ..., steps_le: _Optional[bytes] = ..., timestamps_ms_le: _Optional[bytes] = ..., values_le: _Optional[bytes] = ..., ranks_le: _Optional[bytes] = ...) -> None: ...

class MetricSummary(_message.Message):
    __slots__ = ("key", "last_value", "last_step", "last_timestamp_ms", "min_value", "max_value", "count")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LAST_VALUE_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    key: str
    last_value: float
    last_step: int
    last_timestamp_ms: int
    min_value: float
    max_value: float
    count: int
    def __init__(self, key: _Optional[str] = ..., last_value: _Optional[float] = ..., last_step: _Optional[int] = ..., last_timestamp_ms: _Optional[int] = ..., min_value: _Optional[float] = ..., max_value: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...
