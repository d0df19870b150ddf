"""``convert.series_to_pb`` encodes packed columns itself: it must equal protobuf's own."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from ketch.api.v1 import common_pb2
from ketch_server.api import convert

INT64 = st.integers(-(2**63), 2**63 - 1)


def reference(run_id, key, steps, timestamps, values, ranks) -> common_pb2.MetricSeries:
    series = common_pb2.MetricSeries(key=key, run=f"runs/{run_id}")
    series.steps.extend(steps.tolist())
    series.timestamps_ms.extend(timestamps.tolist())
    series.values.extend(values.tolist())
    if ranks.any():
        series.ranks.extend(ranks.tolist())
    return series


@st.composite
def columns(draw):
    n = draw(st.integers(0, 300))
    return (
        draw(hnp.arrays(np.int64, n, elements=INT64)),
        draw(hnp.arrays(np.int64, n, elements=st.one_of(INT64, st.integers(0, 2**45)))),
        draw(hnp.arrays(np.float64, n)),  # NaN, infinities and -0.0 included
        draw(hnp.arrays(np.int32, n, elements=st.one_of(st.just(0), st.integers(-5, 2**31 - 1)))),
    )


@settings(max_examples=150, deadline=None)
@given(columns())
def test_series_to_pb_matches_protobuf(cols):
    got = convert.series_to_pb("r1", "loss", *cols)
    want = reference("r1", "loss", *cols)
    assert got.SerializeToString() == want.SerializeToString()
    parsed = common_pb2.MetricSeries.FromString(got.SerializeToString())
    assert parsed.run == "runs/r1" and parsed.key == "loss"
    assert np.array_equal(np.asarray(parsed.values), cols[2], equal_nan=True)


def test_varint_boundaries_and_views():
    edges = np.array(
        [0, 1, 127, 128, 16_383, 16_384, 2**35 - 1, 2**35, 2**56, 2**63 - 1, -1, -(2**63)],
        dtype=np.int64,
    )
    n = len(edges)
    ranks = np.array([0, 1, -1, 2**31 - 1, -(2**31), 0, 0, 0, 0, 0, 0, 3], dtype=np.int32)
    values = np.linspace(-1, 1, n)
    for cols in [
        (edges, edges, values, ranks),
        (edges[::-1], edges[::2].repeat(2), values[::-1], np.zeros(n, dtype=np.int32)),
        (edges[3:5], edges[3:5], values[3:5], ranks[3:5]),  # slices, as the servicer sends
    ]:
        got = convert.series_to_pb("r", "k", *cols)
        assert got.SerializeToString() == reference("r", "k", *cols).SerializeToString()
