"""The wire messages a run sends: columnar metric batches and the create request.

With ``_transport``, ``_stream``, ``_sinks`` and ``_sync``, one of the few SDK
modules that touch generated protobuf types (STYLE.md, principle 1).
"""

from __future__ import annotations

import array
import sys
import time
import uuid
from collections.abc import Mapping

from google.protobuf import timestamp_pb2

from ketch import _repro
from ketch.api.v1 import common_pb2, tracking_pb2

__all__ = ["Columns", "batches", "create_run_request", "user"]

# Per-batch limits of the server (see the README's Limits).
MAX_KEYS_PER_BATCH = 1_000
MAX_POINTS_PER_BATCH = 100_000


class Columns:
    """Column buffers of pending points: key index, step, timestamp (ms), value."""

    __slots__ = ("key_index", "steps", "timestamps", "values")

    def __init__(self) -> None:
        self.key_index = array.array("I")
        self.steps = array.array("q")
        self.timestamps = array.array("q")
        self.values = array.array("d")

    def __len__(self) -> int:
        return len(self.values)


def batches(keys: list[str], buf: Columns):
    """Columnar MetricBatch messages within the per-batch point and key limits.

    Columns travel raw (little-endian arrays in the ``*_le`` fields): a memory copy
    per column, no Python object per point.
    """
    n = len(buf)
    if len(keys) <= MAX_KEYS_PER_BATCH:
        for lo in range(0, n, MAX_POINTS_PER_BATCH):
            hi = lo + MAX_POINTS_PER_BATCH
            yield _raw_batch(keys, buf.key_index[lo:hi], buf, lo, hi)
        return
    # Many keys: re-index per batch so each batch carries only the keys it uses.
    lo = 0
    while lo < n:
        local: dict[int, int] = {}
        used: list[str] = []
        index = array.array("I")
        hi = lo
        while hi < n and hi - lo < MAX_POINTS_PER_BATCH:
            k = buf.key_index[hi]
            if k not in local:
                if len(local) == MAX_KEYS_PER_BATCH:
                    break
                local[k] = len(local)
                used.append(keys[k])
            index.append(local[k])
            hi += 1
        yield _raw_batch(used, index, buf, lo, hi)
        lo = hi


def _raw_batch(keys: list[str], key_index: array.array, buf: Columns, lo: int, hi: int):
    return common_pb2.MetricBatch(
        keys=keys,
        key_index_le=_le(key_index),
        steps_le=_le(buf.steps[lo:hi]),
        timestamps_ms_le=_le(buf.timestamps[lo:hi]),
        values_le=_le(buf.values[lo:hi]),
    )


def _le(column: array.array) -> bytes:
    if sys.byteorder == "big":
        column = array.array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


def create_run_request(
    *,
    name: str,
    params: Mapping[str, str],
    tags: Mapping[str, str],
    parent_id: str,
    capture_environment: bool,
) -> tracking_pb2.CreateRunRequest:
    """A CreateRun request with a fresh request id (retries return the same run)."""
    req = tracking_pb2.CreateRunRequest(
        display_name=name,
        parent_run=f"runs/{parent_id}" if parent_id else "",
        user=user(),
        params=dict(params),
        tags=dict(tags),
        request_id=uuid.uuid4().hex,
        start_time=_now_pb(),
    )
    if capture_environment:
        _fill_environment(req)
    return req


def _fill_environment(req: tracking_pb2.CreateRunRequest) -> None:
    src = _repro.collect_source()
    env = _repro.collect_environment()
    req.source.CopyFrom(
        tracking_pb2.RunSource(
            git_commit=src.git_commit,
            git_branch=src.git_branch,
            git_dirty=src.git_dirty,
            git_remote=src.git_remote,
            entry_point=src.entry_point,
            argv=list(src.argv),
        )
    )
    req.environment.CopyFrom(
        tracking_pb2.RunEnvironment(
            python_version=env.python_version,
            platform=env.platform,
            hostname=env.hostname,
            cpu_count=env.cpu_count,
            packages=list(env.packages),
            gpus=[
                tracking_pb2.GpuInfo(
                    name=g.name, memory_total_bytes=g.memory_total_bytes, uuid=g.uuid
                )
                for g in env.gpus
            ],
            gpu_driver_version=env.gpu_driver_version,
            cuda_version=env.cuda_version,
            seed=env.seed,
        )
    )


def user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return ""


def _now_pb() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(int(time.time() * 1000))
    return ts
