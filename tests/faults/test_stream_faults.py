"""Fault injection on the metric stream: every point arrives exactly once.

The training process is a real subprocess using the SDK (tests/faults/_trainer.py);
the server is ``python -m ketch_server`` as a subprocess. Faults: the server is
frozen and killed with SIGKILL mid-stream, then restarted on the same port and data;
a proxy swallows the acks of committed batches and then cuts the connection;
PostgreSQL restarts under the server; many streams are finished, cancelled and
abandoned while the server's memory is watched. The DESIGN §6 promise under test:
an ack is durable, and a batch replayed after a reconnect is acked, not written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from urllib.parse import urlsplit, urlunsplit

import grpc
import ketch
import numpy as np
import pytest
from google.protobuf import field_mask_pb2
from ketch.api.v1 import common_pb2, tracking_pb2, tracking_pb2_grpc

from tests import _postgres
from tests.conftest import ThreadServer
from tests.faults._harness import (
    NOT_SERVING,
    SERVING,
    FaultProxy,
    PgCluster,
    ServerProc,
    Trainer,
    assert_clean_result,
    assert_exactly_once,
    health_status,
    metric_count,
    pg_starting_up,
    wait_until,
)

pytestmark = pytest.mark.e2e

STEPS = 100_000  # two keys: 200k points per run
SLICE = 2_000
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _db_url(request, backend: str) -> str | None:
    """None: SQLite in the server's data dir, as a user runs it."""
    return request.getfixturevalue("postgres_url") if backend == "postgres" else None


@pytest.mark.parametrize("backend", BACKENDS)
def test_server_killed_mid_stream_and_restarted_on_same_port(backend, request, tmp_path):
    server = ServerProc(tmp_path, db_url=_db_url(request, backend)).start()
    trainer = Trainer(server.uri, tmp_path, steps=STEPS, slice=SLICE, pause=0.03)
    try:
        run_id = trainer.wait_for("run")
        with ketch.Client(server.uri) as client:
            wait_until(lambda: metric_count(client, run_id) > 0, "the first committed points")
        # Freeze first, so that batches are certainly in flight (sent, never acked)
        # when the SIGKILL lands; then restart at once on the same port and data.
        sent_before = trainer.progress
        server.freeze()
        trainer.wait_for("progress", at_least=min(sent_before + 3 * SLICE, STEPS))
        server.kill()
        server.start()
        result = trainer.result()
        assert_clean_result(result)
        with ketch.Client(server.uri) as client:
            assert_exactly_once(client, run_id, STEPS)
    finally:
        trainer.kill()
        server.stop()


def test_acks_lost_after_commit_then_connection_cut(tmp_path):
    server = ServerProc(tmp_path).start()
    proxy = FaultProxy(server.port)
    trainer = Trainer(
        proxy.uri, tmp_path, steps=STEPS, slice=1_000, pause=0.02, flush_interval=0.02
    )
    try:
        run_id = trainer.wait_for("run")
        with ketch.Client(server.uri) as direct:  # around the proxy
            wait_until(lambda: metric_count(direct, run_id) > 0, "the first committed points")
            proxy.swallow_downstream()
            # Whatever commits from now on is acked after the acks began to vanish.
            before = metric_count(direct, run_id)
            wait_until(lambda: metric_count(direct, run_id) > before, "a commit after acks vanish")
            wait_until(lambda: proxy.swallowed_bytes > 0, "swallowed server bytes")
            assert trainer.last("result") is None, "the run finished without its acks"
            assert proxy.cut() >= 1
            result = trainer.result()
            assert_clean_result(result)
            assert proxy.connections >= 2, "the SDK did not reconnect through the proxy"
            assert_exactly_once(direct, run_id, STEPS)
    finally:
        trainer.kill()
        proxy.close()
        server.stop()


class StoredTwice(AssertionError):
    """Points of a resent batch were stored a second time."""


def test_reconnect_while_previous_streams_batches_wait_for_commit(
    sqlite_url, tmp_path, monkeypatch
):
    """The commit of stream A's batch 2 stalls (a slow disk, a big group) with 3 and 4
    queued behind it; the connection drops; the SDK reconnects (stream B), hears
    committed seq 1 and resends 2..4, queued behind A's copies. Each point must
    still be stored once: B's copies are replays once A's have committed."""
    from ketch_server.settings import Settings

    monkeypatch.setenv("KETCH_SPOOL_DIR", str(tmp_path / "spool"))
    srv = ThreadServer(Settings(port=0, data_dir=tmp_path, db_url=sqlite_url, grace_seconds=1))
    srv.start()
    ingest = srv.app.ingest
    lane = ingest._queues[0]  # SQLite: one commit lane
    commit = ingest.store.commit_sequenced
    stall, stalled, armed = threading.Event(), threading.Event(), [False]

    async def stalling_commit(batches):
        if armed[0]:
            armed[0] = False
            stalled.set()
            await asyncio.to_thread(stall.wait, 60)
        return await commit(batches)

    ingest.store.commit_sequenced = stalling_commit
    proxy = FaultProxy(srv.app.port)
    run = ketch.init(
        experiment="stall", uri=proxy.uri, capture_environment=False, flush_interval=3600
    )

    def send(lo: int, hi: int) -> None:
        for step in range(lo, hi):
            run.log({"loss": step * 0.5, "acc": -float(step)}, step=step)
        run.flush(timeout=0)  # one batch, sent now

    try:
        send(0, 1_000)
        assert run.flush(30)  # seq 1 committed and acked
        armed[0] = True
        send(1_000, 2_000)  # seq 2: its commit stalls
        assert stalled.wait(30)
        send(2_000, 3_000)  # seq 3 and 4 queue behind it
        send(3_000, 4_000)
        wait_until(lambda: lane.qsize() == 2, "seq 3 and 4 queued for commit")
        assert proxy.cut() >= 1  # the SDK reconnects, hears committed seq 1, resends 2..4
        wait_until(lambda: lane.qsize() == 5, "the resent batches queued behind the old ones")
        stall.set()
        run.finish()
        assert run.failure is None and run.dropped_points == 0
        with ketch.Client(srv.uri) as client:
            counts = {k: m.count for k, m in client.get_run(run.id).metrics.items()}
            if counts != {"loss": 4_000, "acc": 4_000}:
                raise StoredTwice(f"4000 points per key logged once, {counts} stored")
            assert_exactly_once(client, run.id, 4_000)
    finally:
        stall.set()
        with contextlib.suppress(Exception):
            run.finish()  # not left for the exit hook
        proxy.close()
        srv.stop()


@pytest.mark.postgres
def test_postgres_restart_mid_stream(tmp_path):
    cluster, why = PgCluster.create()
    if cluster is None:
        _postgres.skip_or_fail(
            f"a dedicated PostgreSQL cluster needs initdb and pg_ctl: {why}; {_postgres.HINT}"
        )
    server = trainer = None
    try:
        _postgres.create_database(cluster.admin_dsn, "ketch")
        server = ServerProc(tmp_path, db_url=cluster.url("ketch")).start()
        trainer = Trainer(server.uri, tmp_path, steps=STEPS, slice=SLICE, pause=0.03)
        run_id = trainer.wait_for("run")
        with ketch.Client(server.uri) as client:
            wait_until(lambda: metric_count(client, run_id) > 0, "the first committed points")
        sent_before = trainer.progress
        cluster.stop("fast")  # open transactions roll back, connections drop
        trainer.wait_for("progress", at_least=min(sent_before + 3 * SLICE, STEPS))
        cluster.start()
        result = trainer.result()
        assert_clean_result(result)
        with ketch.Client(server.uri) as client:
            assert_exactly_once(client, run_id, STEPS)
        wait_until(lambda: health_status(server.port) == SERVING, "health SERVING", timeout=30)
    finally:
        if trainer is not None:
            trainer.kill()
        if server is not None:
            server.stop()
        cluster.destroy()


# ------------------------------------------------- database in recovery


class HealthStuck(AssertionError):
    """Health did not follow the database."""


class WrongStatus(AssertionError):
    """A call failed with another status than UNAVAILABLE."""


@pytest.fixture
def recovering_db(postgres_url, tmp_path):
    """An in-process server whose PostgreSQL sits behind a proxy that can play a
    database that refuses connections while it starts up (SQLSTATE 57P03)."""
    from ketch_server.settings import Settings

    parts = urlsplit(postgres_url)
    proxy = FaultProxy(parts.port or 5432, parts.hostname or "127.0.0.1")
    userinfo, at, _ = parts.netloc.rpartition("@")
    proxied = urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{proxy.port}"))
    settings = Settings(
        port=0, data_dir=tmp_path, db_url=proxied, health_interval_seconds=0.2, grace_seconds=1
    )
    srv = ThreadServer(settings).start()
    wait_until(lambda: health_status(srv.app.port) == SERVING, "health SERVING", 20)
    yield srv, proxy
    proxy.impersonate(None)
    srv.stop()
    proxy.close()


@pytest.mark.postgres
def test_health_follows_a_database_that_is_starting_up(recovering_db):
    srv, proxy = recovering_db
    proxy.impersonate(pg_starting_up)
    proxy.cut()
    try:
        wait_until(lambda: health_status(srv.app.port) == NOT_SERVING, "NOT_SERVING", 5)
    except AssertionError as exc:
        watch = getattr(srv.app, "_watch", None)
        died = watch.exception() if watch is not None and watch.done() else None
        raise HealthStuck(
            f"health stayed SERVING while the database refused ({exc}); "
            f"the health watch task ended with: {died!r}"
        ) from None
    proxy.impersonate(None)
    wait_until(lambda: health_status(srv.app.port) == SERVING, "SERVING again", 20)


@pytest.mark.postgres
def test_calls_while_the_database_starts_up_are_unavailable(recovering_db):
    srv, proxy = recovering_db
    with ketch.Client(srv.uri) as client:
        experiment = client.get_or_create_experiment("recovery")
        proxy.impersonate(pg_starting_up)
        proxy.cut()
        with pytest.raises(ketch.errors.KetchError) as info:
            client.get_experiment(experiment.id)
        if not isinstance(info.value, ketch.errors.Unavailable):
            raise WrongStatus(f"{type(info.value).__name__}: {info.value}")
        proxy.impersonate(None)
        assert client.get_experiment(experiment.id).id == experiment.id


# ------------------------------------------------------------------- soak

SOAK_RUNS = 300
SOAK_WARMUP = 60
SOAK_BATCHES = 4
SOAK_POINTS = 1_000  # per batch
SOAK_RSS_GROWTH_KB = 30 * 1024


def _soak_batches() -> list[common_pb2.MetricBatch]:
    batches = []
    for b in range(SOAK_BATCHES):
        steps = np.arange(b * SOAK_POINTS, (b + 1) * SOAK_POINTS)
        batch = common_pb2.MetricBatch(keys=["loss"])
        batch.key_index.extend(np.zeros(SOAK_POINTS, dtype=np.uint32).tolist())
        batch.steps.extend(steps.tolist())
        batch.timestamps_ms.extend((1_700_000_000_000 + steps).tolist())
        batch.values.extend((steps * 0.25).tolist())
        batches.append(batch)
    return batches


class _Soak:
    """Short streams of three kinds against one server: finished (all acked, run
    FINISHED), cancelled after the first ack, and abandoned by closing the channel."""

    def __init__(self, port: int) -> None:
        self.target = f"127.0.0.1:{port}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub = tracking_pb2_grpc.TrackingServiceStub(self.channel)
        exp = self.stub.CreateExperiment(
            tracking_pb2.CreateExperimentRequest(display_name="soak"), timeout=30
        )
        self.experiment = exp.name
        self.batches = _soak_batches()
        self.finished: list[str] = []
        self.interrupted: list[str] = []

    def _requests(self, run: str, outbox: queue.SimpleQueue):
        yield tracking_pb2.StreamMetricsRequest(
            open=tracking_pb2.StreamOpen(run=run, writer_id="w", host="soak")
        )
        for seq, batch in enumerate(self.batches, 1):
            yield tracking_pb2.StreamMetricsRequest(
                batch=tracking_pb2.SequencedBatch(seq=seq, batch=batch)
            )
        outbox.get(timeout=60)  # held open until the test ends it (or gives up)

    def one(self, i: int) -> None:
        run = self.stub.CreateRun(
            tracking_pb2.CreateRunRequest(experiment=self.experiment, display_name=f"s{i}"),
            timeout=30,
        ).name
        kind = i % 3
        channel = self.channel if kind < 2 else grpc.insecure_channel(self.target)
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        outbox: queue.SimpleQueue = queue.SimpleQueue()
        call = stub.StreamMetrics(self._requests(run, outbox), timeout=60)
        try:
            for response in call:
                if kind == 0 and response.ack.committed_seq == SOAK_BATCHES:
                    outbox.put(None)  # half-close: the stream ends cleanly
                elif kind > 0 and response.WhichOneof("kind") == "ack":
                    break
        finally:
            if kind == 1:
                call.cancel()
            elif kind == 2:
                channel.close()
            outbox.put(None)
        if kind == 0:
            self.stub.UpdateRun(
                tracking_pb2.UpdateRunRequest(
                    run=tracking_pb2.Run(name=run, state=tracking_pb2.RUN_STATE_FINISHED),
                    update_mask=field_mask_pb2.FieldMask(paths=["state"]),
                ),
                timeout=30,
            )
            self.finished.append(run)
        else:
            self.interrupted.append(run)

    def committed_seq(self, run: str) -> int:
        """The writer's cursor, as a reconnecting stream would hear it."""
        call = self.stub.StreamMetrics(
            iter(
                [
                    tracking_pb2.StreamMetricsRequest(
                        open=tracking_pb2.StreamOpen(run=run, writer_id="w")
                    )
                ]
            ),
            timeout=30,
        )
        return next(iter(call)).opened.committed_seq

    def close(self) -> None:
        self.channel.close()


def test_soak_many_short_streams_do_not_leak(tmp_path):
    server = ServerProc(tmp_path).start()
    soak = _Soak(server.port)
    try:
        for i in range(SOAK_WARMUP):
            soak.one(i)
        rss0, fds0, threads0 = server.rss_kb(), server.open_fds(), server.threads()
        for i in range(SOAK_WARMUP, SOAK_RUNS):
            soak.one(i)
        # Cancelled streams are torn down asynchronously: wait for the fds to settle.
        wait_until(lambda: server.open_fds() <= fds0 + 8, "the server's fds to settle", 30)
        rss1, threads1 = server.rss_kb(), server.threads()
        assert rss1 - rss0 < SOAK_RSS_GROWTH_KB, f"server RSS grew {rss0} -> {rss1} kB"
        assert threads1 <= threads0 + 4, f"server threads grew {threads0} -> {threads1}"
        assert health_status(server.port) == SERVING
        for run in soak.finished[-20:]:
            record = soak.stub.GetRun(tracking_pb2.GetRunRequest(name=run), timeout=30)
            counts = {m.key: m.count for m in record.metrics}
            assert counts == {"loss": SOAK_BATCHES * SOAK_POINTS}, (run, counts)
        # An interrupted stream keeps whole batches only, and its cursor counts them.
        for run in soak.interrupted[-20:]:
            record = soak.stub.GetRun(tracking_pb2.GetRunRequest(name=run), timeout=30)
            stored = sum(m.count for m in record.metrics)
            assert stored == soak.committed_seq(run) * SOAK_POINTS, (run, stored)
            assert SOAK_POINTS <= stored <= SOAK_BATCHES * SOAK_POINTS, (run, stored)
    finally:
        soak.close()
        server.stop()
