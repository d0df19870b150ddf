"""Pure converters between ketch.api.v1 messages and domain objects.

The only module besides the servicers that touches generated ``*_pb2`` types.
Every function is pure; ``tests/unit/test_convert.py`` round-trips them.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import timestamp_pb2
from ketch.api.v1 import common_pb2, tracking_pb2

from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.models import (
    Experiment,
    GpuInfo,
    Lifecycle,
    MetricColumns,
    MetricSummary,
    Run,
    RunEnvironment,
    RunSource,
    RunState,
    View,
)

_LIFECYCLE_TO_PB = {
    Lifecycle.ACTIVE: common_pb2.LIFECYCLE_STATE_ACTIVE,
    Lifecycle.DELETED: common_pb2.LIFECYCLE_STATE_DELETED,
}
_STATE_TO_PB = {
    RunState.RUNNING: tracking_pb2.RUN_STATE_RUNNING,
    RunState.FINISHED: tracking_pb2.RUN_STATE_FINISHED,
    RunState.FAILED: tracking_pb2.RUN_STATE_FAILED,
    RunState.KILLED: tracking_pb2.RUN_STATE_KILLED,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}
_VIEW_FROM_PB = {
    common_pb2.VIEW_TYPE_UNSPECIFIED: View.ACTIVE_ONLY,
    common_pb2.VIEW_TYPE_ACTIVE_ONLY: View.ACTIVE_ONLY,
    common_pb2.VIEW_TYPE_DELETED_ONLY: View.DELETED_ONLY,
    common_pb2.VIEW_TYPE_ALL: View.ALL,
}


def timestamp_to_pb(millis: int | None) -> timestamp_pb2.Timestamp | None:
    if millis is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(millis)
    return ts


def timestamp_from_pb(ts: timestamp_pb2.Timestamp, *, field: str) -> int:
    if ts.seconds < 0 or ts.seconds > 253_402_300_799 or not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument(field, "timestamp must lie between 1970 and 9999")
    return ts.ToMilliseconds()


def view_from_pb(view: int) -> View:
    try:
        return _VIEW_FROM_PB[view]
    except KeyError:
        raise InvalidArgument("view", f"unknown view type {view}") from None


def state_from_pb(state: int, *, field: str) -> RunState | None:
    """The domain state, or None for RUN_STATE_UNSPECIFIED; unknown values raise."""
    if state == tracking_pb2.RUN_STATE_UNSPECIFIED:
        return None
    try:
        return _STATE_FROM_PB[state]
    except KeyError:
        raise InvalidArgument(field, f"unknown run state {state}") from None


def experiment_to_pb(e: Experiment) -> tracking_pb2.Experiment:
    return tracking_pb2.Experiment(
        name=f"experiments/{e.id}",
        experiment_id=e.id,
        display_name=e.display_name,
        description=e.description,
        lifecycle_state=_LIFECYCLE_TO_PB[e.lifecycle],
        create_time=timestamp_to_pb(e.create_time),
        update_time=timestamp_to_pb(e.update_time),
        delete_time=timestamp_to_pb(e.delete_time),
        etag=e.etag,
    )


def source_from_pb(s: tracking_pb2.RunSource) -> RunSource:
    return RunSource(
        git_commit=s.git_commit,
        git_branch=s.git_branch,
        git_dirty=s.git_dirty,
        git_remote=s.git_remote,
        entry_point=s.entry_point,
        argv=tuple(s.argv),
    )


def source_to_pb(s: RunSource) -> tracking_pb2.RunSource:
    return tracking_pb2.RunSource(
        git_commit=s.git_commit,
        git_branch=s.git_branch,
        git_dirty=s.git_dirty,
        git_remote=s.git_remote,
        entry_point=s.entry_point,
        argv=list(s.argv),
    )


def environment_from_pb(e: tracking_pb2.RunEnvironment) -> RunEnvironment:
    return RunEnvironment(
        python_version=e.python_version,
        platform=e.platform,
        hostname=e.hostname,
        cpu_count=e.cpu_count,
        packages=tuple(e.packages),
        gpus=tuple(GpuInfo(g.name, g.memory_total_bytes, g.uuid) for g in e.gpus),
        gpu_driver_version=e.gpu_driver_version,
        cuda_version=e.cuda_version,
        seed=e.seed if e.HasField("seed") else None,
    )


def environment_to_pb(e: RunEnvironment) -> tracking_pb2.RunEnvironment:
    return tracking_pb2.RunEnvironment(
        python_version=e.python_version,
        platform=e.platform,
        hostname=e.hostname,
        cpu_count=e.cpu_count,
        packages=list(e.packages),
        gpus=[
            tracking_pb2.GpuInfo(name=g.name, memory_total_bytes=g.memory_total_bytes, uuid=g.uuid)
            for g in e.gpus
        ],
        gpu_driver_version=e.gpu_driver_version,
        cuda_version=e.cuda_version,
        seed=e.seed,
    )


def summary_to_pb(m: MetricSummary) -> common_pb2.MetricSummary:
    return common_pb2.MetricSummary(
        key=m.key,
        last_value=m.last_value,
        last_step=m.last_step,
        last_timestamp_ms=m.last_timestamp,
        min_value=m.min_value,
        max_value=m.max_value,
        count=m.count,
    )


def run_to_pb(r: Run) -> tracking_pb2.Run:
    return tracking_pb2.Run(
        name=f"runs/{r.id}",
        run_id=r.id,
        experiment=f"experiments/{r.experiment_id}",
        display_name=r.display_name,
        state=_STATE_TO_PB[r.state],
        lifecycle_state=_LIFECYCLE_TO_PB[r.lifecycle],
        start_time=timestamp_to_pb(r.start_time),
        end_time=timestamp_to_pb(r.end_time),
        update_time=timestamp_to_pb(r.update_time),
        delete_time=timestamp_to_pb(r.delete_time),
        parent_run=f"runs/{r.parent_run_id}" if r.parent_run_id else "",
        user=r.user,
        created_by=r.created_by,
        params=r.params,
        tags=r.tags,
        metrics=[summary_to_pb(m) for m in r.metrics],
        source=source_to_pb(r.source),
        environment=environment_to_pb(r.environment),
        etag=r.etag,
        writers=[
            tracking_pb2.RunWriter(
                writer_id=w.writer_id,
                rank=w.rank,
                host=w.host,
                points=w.points,
                committed_seq=w.committed_seq,
            )
            for w in r.writers
        ],
    )


_COLUMNS = (
    # (repeated field, raw field, little-endian dtype)
    ("key_index", "key_index_le", "<u4"),
    ("steps", "steps_le", "<i8"),
    ("timestamps_ms", "timestamps_ms_le", "<i8"),
    ("values", "values_le", "<f8"),
)


def batch_from_pb(b: common_pb2.MetricBatch) -> MetricColumns:
    """Columnar numpy view of a batch; raw columns are used without copying.

    Raises:
        InvalidArgument: a column given both ways, or raw bytes of a wrong length.
    """
    return MetricColumns(tuple(b.keys), *(_column(b, *spec) for spec in _COLUMNS))


def _column(b: common_pb2.MetricBatch, name: str, raw_name: str, dtype: str) -> np.ndarray:
    raw = getattr(b, raw_name)
    repeated = getattr(b, name)
    if not raw:
        return np.asarray(repeated, dtype=dtype)
    if len(repeated):
        raise InvalidArgument(f"batch.{name}", f"given both as {name} and as {raw_name}")
    if len(raw) % np.dtype(dtype).itemsize:
        raise InvalidArgument(
            f"batch.{raw_name}", f"{len(raw)} bytes is not a whole number of {dtype} values"
        )
    return np.frombuffer(raw, dtype=dtype)


def series_to_pb(
    run_id: str, key: str, steps, timestamps, values, ranks
) -> common_pb2.MetricSeries:
    """A columnar series message from numpy columns; ``ranks`` is left empty when every
    point is rank 0.

    The packed fields are encoded with numpy and parsed in one call: about twice as
    fast as ``extend(array.tolist())`` and three times as fast as ``extend(array)``
    (protobuf 7, upb), with no Python object per point.
    """
    series = common_pb2.MetricSeries(key=key, run=f"runs/{run_id}")
    if not len(steps):
        return series
    wire = [
        _packed(_STEPS, _varints(steps)),
        _packed(_TIMESTAMPS, _varints(timestamps)),
        _packed(_VALUES, np.ascontiguousarray(values, dtype="<f8").tobytes()),
    ]
    if ranks.any():
        wire.append(_packed(_RANKS, _varints(ranks)))
    series.MergeFromString(b"".join(wire))
    return series


def series_to_raw_pb(
    run_id: str, key: str, steps, timestamps, values, ranks
) -> common_pb2.MetricSeries:
    """Like :func:`series_to_pb`, with the columns as raw little-endian arrays."""
    return common_pb2.MetricSeries(
        key=key,
        run=f"runs/{run_id}",
        steps_le=np.ascontiguousarray(steps, dtype="<i8").tobytes(),
        timestamps_ms_le=np.ascontiguousarray(timestamps, dtype="<i8").tobytes(),
        values_le=np.ascontiguousarray(values, dtype="<f8").tobytes(),
        ranks_le=np.ascontiguousarray(ranks, dtype="<i4").tobytes() if ranks.any() else b"",
    )


_SERIES_FIELDS = common_pb2.MetricSeries.DESCRIPTOR.fields_by_name
_STEPS = _SERIES_FIELDS["steps"].number
_TIMESTAMPS = _SERIES_FIELDS["timestamps_ms"].number
_VALUES = _SERIES_FIELDS["values"].number
_RANKS = _SERIES_FIELDS["ranks"].number
# A varint holds 7 bits per byte: values below 2**7 take one byte, below 2**14 two...
_VARINT_BOUNDS = np.uint64(1) << np.arange(7, 64, 7, dtype=np.uint64)


def _varints(column) -> bytes:
    """Protobuf varints of an integer column (int32/int64 semantics: a negative number
    is its 64-bit two's complement, 10 bytes)."""
    u = np.ascontiguousarray(column, dtype=np.int64).view(np.uint64)
    sizes = 1 + np.searchsorted(_VARINT_BOUNDS, u, side="right")
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    shortest = int(sizes.min())
    for k in range(int(sizes.max())):
        # The points that have a k-th byte: all of them while k < the shortest size.
        has = slice(None) if k < shortest else sizes > k
        byte = ((u[has] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        byte[sizes[has] > k + 1] |= 0x80  # more bytes follow
        out[starts[has] + k] = byte
    return out.tobytes()


def _packed(field_number: int, payload: bytes) -> bytes:
    """A length-delimited (wire type 2) field: tag, length, payload."""
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
