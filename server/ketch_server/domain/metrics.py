"""Columnar metric chunks: how points are stored and summarised.

A committed batch becomes one chunk per key (DESIGN.md §6): packed arrays with
first/last step, count and min/max beside them. Steps that are contiguous
(first, first+1, ...) are elided; timestamps are delta-encoded and compressed;
values are raw little-endian float64, so NaN and ±inf survive bit for bit.
No Python object per point is made on either path.

Reads may be downsampled for plotting (:func:`downsample`): min/max per bucket,
so spikes survive.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from ketch_server.domain.models import MetricColumns, MetricSummary

__all__ = [
    "Chunk",
    "decode_chunk",
    "downsample",
    "merge_series",
    "merge_summary",
    "split_batch",
]

_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")


@dataclasses.dataclass(frozen=True)
class Chunk:
    """The points of one key from one batch, ready to store."""

    key: str
    first_step: int
    last_step: int
    count: int
    min_value: float | None  # over non-NaN values; None when all are NaN
    max_value: float | None
    last_value: float  # the value at last_step (the later one on ties)
    last_timestamp: int
    steps_blob: bytes  # b"" when steps are first_step, first_step+1, ...
    timestamps_blob: bytes
    values_blob: bytes

    def summary(self) -> MetricSummary:
        nan = float("nan")
        return MetricSummary(
            key=self.key,
            last_value=self.last_value,
            last_step=self.last_step,
            last_timestamp=self.last_timestamp,
            min_value=nan if self.min_value is None else self.min_value,
            max_value=nan if self.max_value is None else self.max_value,
            count=self.count,
        )


def split_batch(batch: MetricColumns, now_ms: int) -> list[Chunk]:
    """Split a validated columnar batch into one chunk per key present in it."""
    key_index = np.asarray(batch.key_index, dtype=np.int64)
    steps = np.asarray(batch.steps, dtype=_I8)
    values = np.asarray(batch.values, dtype=_F8)
    if len(batch.timestamps):
        timestamps = np.asarray(batch.timestamps, dtype=_I8)
    else:
        timestamps = np.full(len(values), now_ms, dtype=_I8)
    if len(batch.keys) == 1:
        groups = [(0, slice(None))]
    else:
        order = np.argsort(key_index, kind="stable")
        sorted_idx = key_index[order]
        bounds = np.flatnonzero(np.diff(sorted_idx)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(order)]))
        groups = [(int(sorted_idx[s]), order[s:e]) for s, e in zip(starts, ends, strict=True)]
    return [
        _encode(batch.keys[k], steps[sel], timestamps[sel], values[sel])
        for k, sel in groups
        if len(values[sel])
    ]


def _encode(key: str, steps: np.ndarray, timestamps: np.ndarray, values: np.ndarray) -> Chunk:
    if len(steps) > 1 and np.any(np.diff(steps) < 0):
        order = np.argsort(steps, kind="stable")
        steps, timestamps, values = steps[order], timestamps[order], values[order]
    n = len(steps)
    first, last = int(steps[0]), int(steps[-1])
    contiguous = last - first == n - 1 and (n == 1 or bool(np.all(np.diff(steps) == 1)))
    finite = values[~np.isnan(values)]
    return Chunk(
        key=key,
        first_step=first,
        last_step=last,
        count=n,
        min_value=float(finite.min()) if len(finite) else None,
        max_value=float(finite.max()) if len(finite) else None,
        last_value=float(values[-1]),
        last_timestamp=int(timestamps[-1]),
        steps_blob=b"" if contiguous else steps.astype(_I8).tobytes(),
        timestamps_blob=_encode_deltas(timestamps),
        values_blob=values.astype(_F8).tobytes(),
    )


def _encode_deltas(timestamps: np.ndarray) -> bytes:
    deltas = np.diff(timestamps, prepend=np.int64(0)).astype(_I8)
    return zlib.compress(deltas.tobytes(), 1)


def decode_chunk(
    first_step: int, count: int, steps_blob: bytes, timestamps_blob: bytes, values_blob: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (steps, timestamps, values) arrays of one stored chunk."""
    if steps_blob:
        steps = np.frombuffer(steps_blob, dtype=_I8)
    else:
        steps = np.arange(first_step, first_step + count, dtype=np.int64)
    timestamps = np.cumsum(np.frombuffer(zlib.decompress(timestamps_blob), dtype=_I8))
    values = np.frombuffer(values_blob, dtype=_F8)
    if not len(steps) == len(timestamps) == len(values) == count:
        raise ValueError("corrupt metric chunk: column lengths disagree with its count")
    return steps, timestamps, values


def merge_series(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Concatenate decoded chunks (in write order) into one series in step order.

    Each part is a tuple of parallel columns, steps first (e.g. steps, timestamps,
    values, ranks). Points with equal steps keep their write order.
    """
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int32)
    columns = [np.concatenate(column) for column in zip(*parts, strict=True)]
    steps = columns[0]
    if len(steps) > 1 and np.any(np.diff(steps) < 0):
        order = np.argsort(steps, kind="stable")
        columns = [c[order] for c in columns]
    return tuple(columns)


def merge_summary(old: MetricSummary | None, chunk: Chunk) -> MetricSummary:
    """Fold a newly written chunk into a key's summary.

    The latest value is the one at the highest step; a later write wins a tie.
    """
    new = chunk.summary()
    if old is None:
        return new
    take_new = new.last_step >= old.last_step
    latest = new if take_new else old
    return MetricSummary(
        key=old.key,
        last_value=latest.last_value,
        last_step=latest.last_step,
        last_timestamp=latest.last_timestamp,
        min_value=_nan_extreme(min, old.min_value, new.min_value),
        max_value=_nan_extreme(max, old.max_value, new.max_value),
        count=old.count + new.count,
    )


def _nan_extreme(pick, a: float, b: float) -> float:
    if a != a:  # NaN: no finite value seen yet
        return b
    if b != b:
        return a
    return pick(a, b)


def downsample(
    steps: np.ndarray,
    timestamps: np.ndarray,
    values: np.ndarray,
    ranks: np.ndarray,
    max_points: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thin a series in step order to at most ``max_points`` points, keeping its shape.

    The step range ``[steps[0], steps[-1]]`` is split into ``max_points // 3``
    equal-width buckets; each non-empty bucket keeps its first point and the first
    of its minimum and of its maximum values (NaN is ignored for both), deduplicated
    and in the input order. So the result is a subsequence of the input that holds
    the global minimum and maximum, and spikes survive. A series of at most
    ``max_points`` points, or ``max_points == 0``, is returned unchanged.

    Args:
        steps: Non-decreasing steps; the other columns are parallel to it.
        max_points: 0 (keep everything) or at least 3.

    Raises:
        ValueError: ``max_points`` is negative, 1 or 2.
    """
    if max_points < 0 or 0 < max_points < 3:
        raise ValueError(f"max_points must be 0 or at least 3, not {max_points}")
    n = len(steps)
    if max_points == 0 or n <= max_points:
        return steps, timestamps, values, ranks
    keep = np.flatnonzero(_bucket_extremes(steps, values, max_points // 3))
    return steps[keep], timestamps[keep], values[keep], ranks[keep]


def _bucket_extremes(steps: np.ndarray, values: np.ndarray, buckets: int) -> np.ndarray:
    """A mask of the first, min and max point of each equal-width step bucket."""
    n = len(steps)
    offset = steps.astype(np.float64) - float(steps[0])  # float: no int64 overflow
    span = float(steps[-1]) - float(steps[0])
    scale = buckets / span if span > 0 else 0.0
    # Monotone in steps, so each bucket is one contiguous run of points.
    bucket = np.minimum((offset * scale).astype(np.int64), buckets - 1)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(bucket[1:], bucket[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    segment = np.cumsum(first) - 1
    keep = first.copy()
    for reduce in (np.fmin, np.fmax):
        extreme = reduce.reduceat(values, starts)[segment]
        hits = np.flatnonzero(values == extreme)  # NaN matches nothing
        if len(hits):
            owner = segment[hits]
            firsts = np.empty(len(hits), dtype=bool)
            firsts[0] = True
            np.not_equal(owner[1:], owner[:-1], out=firsts[1:])
            keep[hits[firsts]] = True
    return keep
