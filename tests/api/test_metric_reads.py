"""Metric-history reads of several runs at once, and downsampled reads, through a real
in-process server on SQLite and PostgreSQL (generated stubs and ``ketch.Client``)."""

from __future__ import annotations

import grpc
import ketch
import numpy as np
import pytest
from google.rpc import error_details_pb2, status_pb2
from ketch.api.v1 import common_pb2, tracking_pb2, tracking_pb2_grpc

UNKNOWN_ID = "0" * 31 + "1"
IA = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.uri.removeprefix("grpc://")) as channel:
        yield tracking_pb2_grpc.TrackingServiceStub(channel)


@pytest.fixture
def experiment(stub) -> str:
    return stub.CreateExperiment(tracking_pb2.CreateExperimentRequest(display_name="reads")).name


def new_run(stub, experiment: str) -> str:
    """A new run's id."""
    return stub.CreateRun(tracking_pb2.CreateRunRequest(experiment=experiment)).run_id


def log(stub, run_id: str, series: dict[str, tuple], rank: int = 0) -> None:
    """Log key -> (steps, values); with a rank, through a stream writer of that rank."""
    batch = common_pb2.MetricBatch(keys=list(series))
    for i, (steps, values) in enumerate(series.values()):
        batch.key_index.extend([i] * len(steps))
        batch.steps.extend(list(steps))
        batch.values.extend(list(values))
    name = f"runs/{run_id}"
    if not rank:
        stub.LogMetrics(tracking_pb2.LogMetricsRequest(run=name, batch=batch))
        return
    opened = tracking_pb2.StreamOpen(run=name, writer_id=f"w{rank}", rank=rank, host="test")
    messages = [
        tracking_pb2.StreamMetricsRequest(open=opened),
        tracking_pb2.StreamMetricsRequest(batch=tracking_pb2.SequencedBatch(seq=1, batch=batch)),
    ]
    assert len(list(stub.StreamMetrics(iter(messages), timeout=30))) == 2


def log_big(stub, run_id: str, key: str, steps: np.ndarray, values: np.ndarray) -> None:
    for lo in range(0, len(steps), 100_000):
        batch = common_pb2.MetricBatch(keys=[key])
        part = slice(lo, lo + 100_000)
        batch.key_index.extend(np.zeros(len(steps[part]), dtype=np.int64).tolist())
        batch.steps.extend(steps[part].tolist())
        batch.values.extend(values[part].tolist())
        stub.LogMetrics(tracking_pb2.LogMetricsRequest(run=f"runs/{run_id}", batch=batch))


def read(stub, **request) -> list[tuple[str, str, list, list, list]]:
    """Series as (run, key, steps, values, ranks), pieces of one series joined."""
    out: list[tuple[str, str, list, list, list]] = []
    req = tracking_pb2.ReadMetricHistoryRequest(**request)
    for resp in stub.ReadMetricHistory(req, timeout=60):
        for s in resp.series:
            ranks = list(s.ranks) or [0] * len(s.steps)
            if out and out[-1][:2] == (s.run, s.key):
                out[-1][2].extend(s.steps)
                out[-1][3].extend(s.values)
                out[-1][4].extend(ranks)
            else:
                out.append((s.run, s.key, list(s.steps), list(s.values), ranks))
    return out


# ------------------------------------------------------------------ several runs


def test_several_runs_in_one_call_in_the_order_given(stub, experiment):
    a, b, c = (new_run(stub, experiment) for _ in range(3))
    log(stub, a, {"loss": ([0, 1, 2], [3.0, 2.0, 1.0]), "acc": ([0, 2], [0.1, 0.9])})
    log(stub, b, {"loss": ([5, 6], [0.5, 0.25])})
    log(stub, c, {"zeta": ([1], [7.0])})
    log(stub, c, {"loss": ([0], [9.0])}, rank=3)

    got = read(
        stub,
        run=f"runs/{a}",
        runs=[f"runs/{c}", b, f"runs/{a}", f"runs/{b}"],  # bare ids too; repeats dropped
        keys=["loss", "acc"],
    )
    assert [(run, key) for run, key, *_ in got] == [
        (f"runs/{a}", "loss"),
        (f"runs/{a}", "acc"),
        (f"runs/{c}", "loss"),
        (f"runs/{c}", "acc"),  # a key the run lacks: an empty series
        (f"runs/{b}", "loss"),
        (f"runs/{b}", "acc"),
    ]
    series = {(run, key): rest for run, key, *rest in got}
    assert series[f"runs/{a}", "loss"] == [[0, 1, 2], [3.0, 2.0, 1.0], [0, 0, 0]]
    assert series[f"runs/{a}", "acc"] == [[0, 2], [0.1, 0.9], [0, 0]]
    assert series[f"runs/{c}", "loss"] == [[0], [9.0], [3]]
    assert series[f"runs/{c}", "acc"] == [[], [], []]
    assert series[f"runs/{b}", "loss"] == [[5, 6], [0.5, 0.25], [0, 0]]

    # every key of each run, by name; `run` may be left empty when `runs` is given
    every = read(stub, runs=[f"runs/{c}", f"runs/{a}"], start_step=1, end_step=2)
    assert [(run, key, steps) for run, key, steps, *_ in every] == [
        (f"runs/{c}", "loss", []),
        (f"runs/{c}", "zeta", [1]),
        (f"runs/{a}", "acc", [2]),
        (f"runs/{a}", "loss", [1, 2]),
    ]


def test_many_small_series_share_responses(stub, experiment):
    runs = [new_run(stub, experiment) for _ in range(5)]
    for i, run in enumerate(runs):
        log(stub, run, {"loss": ([0, 1], [i, i / 2]), "acc": ([0], [i])})
    req = tracking_pb2.ReadMetricHistoryRequest(runs=[f"runs/{r}" for r in runs])
    (response,) = stub.ReadMetricHistory(req, timeout=30)
    assert len(response.series) == 10


def test_sdk_reads_several_runs(client, stub, experiment):
    a, b = new_run(stub, experiment), new_run(stub, experiment)
    log(stub, a, {"loss": ([0, 1], [1.0, 0.5])})
    log(stub, b, {"loss": ([0, 1, 2], [2.0, 1.0, 0.0]), "acc": ([0], [0.3])})
    log(stub, b, {"loss": ([3], [-1.0])}, rank=2)

    got = client.get_metric_histories_for_runs([b, f"runs/{a}", b], ["loss", "acc"])
    assert list(got) == [(b, "loss"), (b, "acc"), (a, "loss"), (a, "acc")]
    h = got[b, "loss"]
    assert isinstance(h, ketch.MetricHistory)
    assert (h.run_id, h.key) == (b, "loss")
    assert h.steps.tolist() == [0, 1, 2, 3]
    assert h.values.tolist() == [2.0, 1.0, 0.0, -1.0]
    assert h.ranks.tolist() == [0, 0, 0, 2]
    assert got[a, "loss"].ranks.tolist() == [0, 0]  # all zeros when the server sent none
    assert len(got[a, "acc"]) == 0
    assert list(client.get_metric_histories_for_runs([a])) == [(a, "loss")]

    single = client.get_metric_history(a, "loss")
    assert single.run_id == a and single.values.tolist() == [1.0, 0.5]
    assert sorted(client.get_metric_histories(b)) == ["acc", "loss"]
    frame = client.get_metric_history(b, "loss").to_pandas()
    assert frame["rank"].tolist() == [0, 0, 0, 2]


def test_sdk_reads_more_runs_than_one_call_allows(client, stub, experiment):
    runs = [new_run(stub, experiment) for _ in range(101)]
    for i, run in enumerate(runs):
        log(stub, run, {"m": ([i], [float(i)])})
    got = client.get_metric_histories_for_runs(runs, ["m"])
    assert list(got) == [(run, "m") for run in runs]
    assert [h.values.tolist() for h in got.values()] == [[float(i)] for i in range(101)]


# ---------------------------------------------------------------------- errors


def rejection(call) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The status code, message and ErrorInfo metadata a call failed with."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err = caught.value
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    info = error_details_pb2.ErrorInfo()
    (detail,) = status_pb2.Status.FromString(raw).details
    assert detail.Unpack(info)
    return err.code(), err.details(), dict(info.metadata)


def test_bad_multi_run_reads_are_rejected(stub, experiment):
    run = f"runs/{new_run(stub, experiment)}"
    log(stub, run.removeprefix("runs/"), {"m": ([0], [1.0])})

    def history(**request):
        req = tracking_pb2.ReadMetricHistoryRequest(**request)
        return lambda: list(stub.ReadMetricHistory(req, timeout=30))

    unknown = f"runs/{UNKNOWN_ID}"
    too_many = [f"runs/{i:032x}" for i in range(100)]
    cases = [
        (history(run=run, runs=[run, "nope"]), IA, "field", "runs[1]"),
        (history(run="experiments/x", runs=[run]), IA, "field", "run"),
        (history(), IA, "field", "run"),
        (history(runs=[run, ""]), IA, "field", "runs[1]"),
        (history(run=run, runs=[unknown]), grpc.StatusCode.NOT_FOUND, "resource", unknown),
        (history(run=run, runs=too_many), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit", None),
        (history(runs=[*too_many, run]), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit", None),
        (history(run=run, max_points=-1), IA, "field", "max_points"),
        (history(run=run, max_points=1), IA, "field", "max_points"),
        (history(run=run, max_points=2), IA, "field", "max_points"),
        (history(run=run, max_points=1_000_001), IA, "field", "max_points"),
        (history(run=run, keys=["bad\nkey"]), IA, "field", "keys[0]"),
        (history(run=run, start_step=5, end_step=4), IA, "field", "start_step"),
    ]
    wrong = []
    for i, (call, code, meta, value) in enumerate(cases):
        got_code, message, metadata = rejection(call)
        if got_code != code:
            wrong.append(f"case {i}: {got_code.name}, expected {code.name}: {message}")
        if meta == "limit":
            if metadata.get("limit") != "runs_per_read" or "100" not in message:
                wrong.append(f"case {i}: limit not named: {metadata} {message!r}")
        elif metadata.get(meta) != value or value not in message:
            wrong.append(f"case {i}: {meta}={metadata.get(meta)!r}, expected {value!r}: {message}")
    assert not wrong, "\n".join(wrong)
    assert "1,000,000" in rejection(history(run=run, max_points=1_000_001))[1]

    # the limits are inclusive: 100 runs (here: 99 unknown ones) pass the count check
    code, message, _ = rejection(history(run=run, runs=too_many[:99]))
    assert code == grpc.StatusCode.NOT_FOUND and too_many[0] in message


# ------------------------------------------------------------------ downsampling


def test_downsampled_read_keeps_the_spike(stub, client, experiment):
    run = new_run(stub, experiment)
    n = 200_000
    steps = np.arange(n, dtype=np.int64)
    values = np.cos(steps / 5_000.0)
    values[123_457] = 1e9
    values[99] = -1e9
    log_big(stub, run, "loss", steps, values)

    ((_, key, got_steps, got_values, _),) = read(stub, run=f"runs/{run}", max_points=300)
    assert key == "loss"
    assert 100 < len(got_steps) <= 300
    assert max(got_values) == 1e9 and min(got_values) == -1e9
    assert 123_457 in got_steps and got_steps[0] == 0
    assert got_steps == sorted(got_steps)
    assert [values[s] for s in got_steps] == got_values  # real points, not averages

    h = client.get_metric_history(run, "loss", max_points=300)
    assert h.steps.tolist() == got_steps
    assert len(client.get_metric_history(run, "loss")) == n  # 0: every point

    # the step window applies first: the spike at 123,457 is outside this one
    windowed = client.get_metric_history(run, "loss", start_step=150_000, max_points=30)
    assert len(windowed) <= 30
    assert windowed.steps[0] == 150_000 and windowed.steps[-1] >= 195_000
    assert windowed.values.max() < 2


def test_short_series_are_read_exactly(stub, client, experiment):
    a, b = new_run(stub, experiment), new_run(stub, experiment)
    log(stub, a, {"m": (list(range(300)), [float(i % 7) for i in range(300)])})
    log(stub, b, {"m": (list(range(1_000)), [float(i) for i in range(1_000)])})
    got = client.get_metric_histories_for_runs([a, b], ["m"], max_points=300)
    assert got[a, "m"].steps.tolist() == list(range(300))  # 300 <= max_points: untouched
    assert got[a, "m"].values.tolist() == [float(i % 7) for i in range(300)]
    assert len(got[b, "m"]) <= 300
    assert got[b, "m"].values.min() == 0.0 and got[b, "m"].values.max() == 999.0
    assert len(client.get_metric_history(b, "m", max_points=3)) <= 3


def test_raw_column_encoding_carries_the_same_points(stub, experiment):
    run_id = new_run(stub, experiment)
    log(stub, run_id, {"loss": ([0, 1, 5], [0.5, float("nan"), -np.inf])})
    log(stub, run_id, {"loss": ([2], [7.0])}, rank=3)
    packed = read(stub, run=f"runs/{run_id}")
    req = tracking_pb2.ReadMetricHistoryRequest(
        run=f"runs/{run_id}", encoding=common_pb2.COLUMN_ENCODING_RAW_LE
    )
    ((series,),) = [r.series for r in stub.ReadMetricHistory(req, timeout=30)]
    assert not len(series.steps) and not len(series.values)  # nothing packed
    steps = np.frombuffer(series.steps_le, "<i8").tolist()
    values = np.frombuffer(series.values_le, "<f8")
    ranks = np.frombuffer(series.ranks_le, "<i4").tolist()
    ((_, _, p_steps, p_values, p_ranks),) = packed
    assert steps == p_steps == [0, 1, 2, 5]
    assert values.tobytes() == np.asarray(p_values, "<f8").tobytes()  # NaN and -inf exact
    assert ranks == p_ranks == [0, 0, 3, 0]
    assert len(np.frombuffer(series.timestamps_ms_le, "<i8")) == 4
