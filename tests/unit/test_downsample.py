"""``metrics.downsample``: first/min/max per equal-width step bucket, as a pure function."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from ketch_server.domain.metrics import downsample


def series(steps, values, ranks=None):
    """Columns of a series; timestamps are the input positions, so they identify points."""
    steps = np.asarray(steps, dtype=np.int64)
    n = len(steps)
    ranks = np.zeros(n, dtype=np.int32) if ranks is None else np.asarray(ranks, dtype=np.int32)
    return steps, np.arange(n, dtype=np.int64), np.asarray(values, dtype=np.float64), ranks


def test_short_series_and_zero_come_back_unchanged():
    columns = series(range(10), np.linspace(0, 1, 10))
    for max_points in (0, 10, 11, 1_000_000):
        out = downsample(*columns, max_points)
        assert all(o is c for o, c in zip(out, columns, strict=True))
    empty = series([], [])
    assert all(len(c) == 0 for c in downsample(*empty, 3))


def test_each_bucket_keeps_its_first_min_and_max():
    # 13 points over steps 0..12, max_points=12: 4 buckets of width 3, the last step
    # joining the last bucket: {0,1,2} {3,4,5} {6,7,8} {9,10,11,12}.
    values = [5, 1, 9, 3, 4, 2, 8, 6, 6, 7, 7, 0, 7]
    steps, stamps, vals, ranks = downsample(*series(range(13), values), 12)
    # first, min, max of each; ties go to the earlier point; duplicates kept once
    assert steps.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 11]
    assert vals.tolist() == [values[s] for s in steps.tolist()]
    assert stamps.tolist() == steps.tolist()  # the columns stay aligned
    assert ranks.tolist() == [0] * 10


def test_first_of_equal_extremes_and_ranks_follow():
    steps, _, values, ranks = downsample(
        *series(range(8), [1, 1, 1, 1, 2, 2, 2, 2], ranks=[0, 1, 2, 3, 4, 5, 6, 7]), 6
    )
    assert values.tolist() == [1, 2]
    # two buckets; a constant bucket keeps only its first point
    assert steps.tolist() == [0, 4]
    assert ranks.tolist() == [0, 4]


def test_a_spike_survives():
    n = 200_000
    values = np.sin(np.arange(n) / 1000.0)
    values[123_457] = 1e9
    values[7] = -1e9
    steps, _, out, _ = downsample(*series(np.arange(n) * 3, values), 300)
    assert len(steps) <= 300
    assert out.max() == 1e9 and out.min() == -1e9
    assert 123_457 * 3 in steps.tolist()


def test_nan_and_infinities():
    values = [np.nan, 1.0, np.inf, np.nan, -np.inf, 2.0, np.nan, np.nan, np.nan, 3.0]
    steps, _, out, _ = downsample(*series(range(10), values), 3)  # one bucket
    # first point (NaN), min (-inf) and max (+inf)
    assert steps.tolist() == [0, 2, 4]
    assert np.isnan(out[0]) and out[1:].tolist() == [np.inf, -np.inf]


def test_huge_and_negative_steps_do_not_overflow():
    steps = np.array([-(2**63), -5, 0, 7, 2**62, 2**63 - 1], dtype=np.int64)
    out = downsample(*series(steps, [1, 2, 3, 4, 5, 6]), 3)
    assert out[0].tolist() == [-(2**63), 2**63 - 1]  # first/min, then max


def test_repeated_steps_are_fine():
    steps, stamps, _, _ = downsample(*series([0, 0, 1, 1, 2, 2, 3, 3], range(8)), 3)
    assert steps.tolist() == [0, 3] and stamps.tolist() == [0, 7]  # first/min, max


@pytest.mark.parametrize("bad", [-1, 1, 2])
def test_bad_max_points(bad):
    with pytest.raises(ValueError, match="max_points"):
        downsample(*series(range(10), range(10)), bad)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def series_and_budget(draw):
    n = draw(st.integers(0, 400))
    deltas = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1_000)))
    start = draw(st.integers(-(10**12), 10**12))
    steps = start + np.cumsum(deltas)
    values = draw(
        hnp.arrays(
            np.float64,
            n,
            elements=st.one_of(st.floats(-1e6, 1e6), finite_or_not),
        )
    )
    max_points = draw(st.one_of(st.just(0), st.integers(3, 450)))
    return series(steps, values), max_points


@settings(max_examples=300, deadline=None)
@given(series_and_budget())
def test_properties(case):
    columns, max_points = case
    steps, stamps, values, ranks = downsample(*columns, max_points)
    n = len(columns[0])
    # a subsequence of the input, in step order: positions strictly increase
    assert np.all(np.diff(stamps) > 0)
    assert np.array_equal(steps, columns[0][stamps])
    assert np.array_equal(values, columns[2][stamps], equal_nan=True)
    assert np.array_equal(ranks, columns[3][stamps])
    # bounded, and exact when the series fits
    if max_points:
        assert len(steps) <= max_points
    if max_points == 0 or n <= max_points:
        assert len(steps) == n
    # the global extremes (NaN aside) and the first point survive
    known = columns[2][~np.isnan(columns[2])]
    if len(known):
        assert np.nanmin(values) == known.min()
        assert np.nanmax(values) == known.max()
    if n:
        assert stamps[0] == 0
