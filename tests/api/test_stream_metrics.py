"""StreamMetrics: durable acks, exactly-once replay, gaps, and shared group commits."""

from __future__ import annotations

import threading

import grpc
import pytest
from ketch.api.v1 import common_pb2, tracking_pb2, tracking_pb2_grpc


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.uri.removeprefix("grpc://")) as channel:
        yield tracking_pb2_grpc.TrackingServiceStub(channel)


@pytest.fixture
def run_name(stub):
    exp = stub.CreateExperiment(tracking_pb2.CreateExperimentRequest(display_name="stream"))
    return stub.CreateRun(tracking_pb2.CreateRunRequest(experiment=exp.name)).name


def _batch(first_step: int, n: int, keys=("loss", "acc")) -> common_pb2.MetricBatch:
    k = len(keys)
    return common_pb2.MetricBatch(
        keys=list(keys),
        key_index=[i % k for i in range(n)],
        steps=[first_step + i // k for i in range(n)],
        timestamps_ms=[1_000 + i for i in range(n)],
        values=[float(first_step + i) for i in range(n)],
    )


def _open(run: str, writer: str = "w0", rank: int = 0):
    return tracking_pb2.StreamMetricsRequest(
        open=tracking_pb2.StreamOpen(run=run, writer_id=writer, rank=rank, host="test")
    )


def _seq(seq: int, batch) -> tracking_pb2.StreamMetricsRequest:
    return tracking_pb2.StreamMetricsRequest(
        batch=tracking_pb2.SequencedBatch(seq=seq, batch=batch)
    )


def _stream(stub, messages):
    """(committed seq announced at open, acked seqs) of one stream."""
    responses = list(stub.StreamMetrics(iter(messages), timeout=30))
    assert responses[0].WhichOneof("kind") == "opened"
    return responses[0].opened.committed_seq, [r.ack.committed_seq for r in responses[1:]]


def _counts(stub, run: str) -> dict[str, int]:
    got = stub.GetRun(tracking_pb2.GetRunRequest(name=run))
    return {m.key: m.count for m in got.metrics}


def test_batches_are_acked_in_order_and_stored(stub, run_name):
    batches = [_batch(i * 50, 100) for i in range(10)]
    opened, acks = _stream(
        stub, [_open(run_name)] + [_seq(i + 1, b) for i, b in enumerate(batches)]
    )
    assert opened == 0
    assert acks == list(range(1, 11))
    assert _counts(stub, run_name) == {"acc": 500, "loss": 500}
    history = list(stub.ReadMetricHistory(tracking_pb2.ReadMetricHistoryRequest(run=run_name)))
    steps = [
        s for r in history for series in r.series if series.key == "loss" for s in series.steps
    ]
    assert steps == list(range(500))


def test_replay_after_reconnect_is_exactly_once(stub, run_name):
    batches = [_batch(i * 10, 20) for i in range(6)]
    _stream(stub, [_open(run_name)] + [_seq(i + 1, b) for i, b in enumerate(batches[:4])])
    # The client lost its acks and resends everything, then continues.
    opened, acks = _stream(
        stub, [_open(run_name)] + [_seq(i + 1, b) for i, b in enumerate(batches)]
    )
    assert opened == 4
    assert acks == [1, 2, 3, 4, 5, 6]
    assert _counts(stub, run_name) == {"acc": 60, "loss": 60}


def test_a_gap_is_out_of_range_and_writes_nothing(stub, run_name):
    with pytest.raises(grpc.RpcError) as err:
        _stream(stub, [_open(run_name), _seq(2, _batch(0, 10))])
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "batch seq 2" in err.value.details()
    assert _counts(stub, run_name) == {}


def test_stream_must_open_first_and_name_a_live_run(stub, run_name):
    with pytest.raises(grpc.RpcError) as err:
        _stream(stub, [_seq(1, _batch(0, 2))])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        _stream(stub, [_open("runs/" + "0" * 32)])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stub.DeleteRun(tracking_pb2.DeleteRunRequest(name=run_name))
    with pytest.raises(grpc.RpcError) as err:
        _stream(stub, [_open(run_name)])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_invalid_batch_fails_the_stream_but_keeps_what_was_acked(stub, run_name):
    bad = common_pb2.MetricBatch(keys=["x"], key_index=[0, 0], steps=[1], values=[1.0, 2.0])
    responses = []
    with pytest.raises(grpc.RpcError) as err:
        for r in stub.StreamMetrics(iter([_open(run_name), _seq(1, _batch(0, 4)), _seq(2, bad)])):
            responses.append(r)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch.steps" in err.value.details()
    assert [r.ack.committed_seq for r in responses[1:]] == [1]
    assert _counts(stub, run_name) == {"acc": 2, "loss": 2}
    opened, _ = _stream(stub, [_open(run_name)])
    assert opened == 1


def test_concurrent_writers_share_commits_and_keep_their_own_seq(stub, run_name):
    writers = 6
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            msgs = [_open(run_name, f"rank-{w}", rank=w)]
            msgs += [_seq(i + 1, _batch(i * 100, 200, keys=(f"r{w}",))) for i in range(20)]
            _, acks = _stream(stub, msgs)
            assert acks == list(range(1, 21))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert _counts(stub, run_name) == {f"r{w}": 4000 for w in range(writers)}


def test_points_keep_the_rank_of_their_writer(stub, run_name):
    _stream(stub, [_open(run_name, "rank-0", rank=0), _seq(1, _batch(0, 4, keys=("loss",)))])
    _stream(stub, [_open(run_name, "rank-3", rank=3), _seq(1, _batch(0, 4, keys=("loss",)))])
    (response,) = stub.ReadMetricHistory(tracking_pb2.ReadMetricHistoryRequest(run=run_name))
    (series,) = response.series
    assert series.run == run_name
    assert list(series.steps) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sorted(zip(series.steps, series.ranks)) == [(s, r) for s in range(4) for r in (0, 3)]
