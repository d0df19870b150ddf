"""Chunk encoding of metric points: exact round trips, summaries, ordering."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ketch_server.domain.metrics import decode_chunk, merge_series, merge_summary, split_batch
from ketch_server.domain.models import MetricColumns


def _roundtrip(chunk):
    return decode_chunk(
        chunk.first_step, chunk.count, chunk.steps_blob, chunk.timestamps_blob, chunk.values_blob
    )


def test_contiguous_steps_are_elided_and_restored():
    batch = MetricColumns(
        ("loss",), [0] * 5, [10, 11, 12, 13, 14], [5, 6, 7, 8, 9], [1.0, 2.0, 3.0, 4.0, 5.0]
    )
    (chunk,) = split_batch(batch, now_ms=0)
    assert chunk.steps_blob == b""
    steps, ts, values = _roundtrip(chunk)
    assert steps.tolist() == [10, 11, 12, 13, 14]
    assert ts.tolist() == [5, 6, 7, 8, 9]
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_keys_are_split_and_out_of_order_steps_sorted_stably():
    batch = MetricColumns(
        ("a", "b"), [0, 1, 0, 1, 0], [3, 0, 1, 1, 1], [], [0.3, 9.0, 0.1, 8.0, 0.2]
    )
    chunks = {c.key: c for c in split_batch(batch, now_ms=42)}
    steps, ts, values = _roundtrip(chunks["a"])
    assert steps.tolist() == [1, 1, 3]
    assert values.tolist() == [0.1, 0.2, 0.3]  # equal steps keep write order
    assert set(ts.tolist()) == {42}  # no timestamps means "now"
    assert chunks["a"].last_value == 0.3 and chunks["a"].last_step == 3
    assert chunks["b"].count == 2


def test_nan_and_infinities_survive_and_are_ignored_by_extremes():
    batch = MetricColumns(
        ("x",), [0, 0, 0, 0], [0, 1, 2, 3], [1, 1, 1, 1], [math.nan, math.inf, -math.inf, 2.0]
    )
    (chunk,) = split_batch(batch, now_ms=0)
    _, _, values = _roundtrip(chunk)
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    assert chunk.min_value == -math.inf and chunk.max_value == math.inf
    only_nan = split_batch(MetricColumns(("y",), [0], [0], [0], [math.nan]), now_ms=0)[0]
    assert only_nan.min_value is None and math.isnan(only_nan.last_value)


def test_summary_takes_latest_by_step_and_later_write_on_ties():
    first = split_batch(MetricColumns(("k",), [0, 0], [5, 6], [0, 0], [1.0, 2.0]), 0)[0]
    older = split_batch(MetricColumns(("k",), [0], [3], [0], [-7.0]), 0)[0]
    tie = split_batch(MetricColumns(("k",), [0], [6], [0], [9.0]), 0)[0]
    summary = merge_summary(merge_summary(merge_summary(None, first), older), tie)
    assert (summary.last_value, summary.last_step) == (9.0, 6)
    assert (summary.min_value, summary.max_value, summary.count) == (-7.0, 9.0, 4)


def test_merge_series_orders_across_chunks():
    a = (np.array([0, 2]), np.array([0, 0]), np.array([0.0, 2.0]))
    b = (np.array([1]), np.array([0]), np.array([1.0]))
    steps, _, values = merge_series([a, b])
    assert steps.tolist() == [0, 1, 2] and values.tolist() == [0.0, 1.0, 2.0]


def test_corrupt_chunk_is_detected():
    (chunk,) = split_batch(MetricColumns(("k",), [0, 0], [0, 1], [0, 0], [1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="corrupt"):
        decode_chunk(0, 3, chunk.steps_blob, chunk.timestamps_blob, chunk.values_blob)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(-(2**40), 2**40),
            st.integers(0, 2**45),
            st.floats(allow_nan=True),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_any_batch_round_trips_exactly(points):
    keys = ("k0", "k1", "k2", "k3")
    batch = MetricColumns(
        keys,
        [p[0] for p in points],
        [p[1] for p in points],
        [p[2] for p in points],
        [p[3] for p in points],
    )
    got = {c.key: _roundtrip(c) for c in split_batch(batch, 0)}
    for k, key in enumerate(keys):
        mine = sorted(((p[1], i, p[2], p[3]) for i, p in enumerate(points) if p[0] == k))
        if not mine:
            assert key not in got
            continue
        steps, ts, values = got[key]
        assert steps.tolist() == [m[0] for m in mine]
        assert ts.tolist() == [m[2] for m in mine]
        expected = np.array([m[3] for m in mine], dtype=np.float64)
        assert expected.tobytes() == values.tobytes()
