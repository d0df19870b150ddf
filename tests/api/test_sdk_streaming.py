"""The SDK's streaming path: every point arrives exactly once, from many threads
and across a server restart in the middle of a run."""

from __future__ import annotations

import threading
import time

import ketch
import numpy as np
from ketch_server.settings import Settings

from tests.conftest import ThreadServer


def test_points_logged_from_many_threads_all_arrive(server, client):
    run = ketch.init(
        experiment="threads", uri=server.uri, capture_environment=False, flush_interval=0.01
    )

    def work(t: int) -> None:
        for i in range(5_000):
            run.log({f"t{t}": float(i)}, step=i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.finish()
    record = client.get_run(run.id)
    assert {k: m.count for k, m in record.metrics.items()} == {f"t{t}": 5_000 for t in range(4)}
    history = client.get_metric_history(run.id, "t2")
    assert np.array_equal(history.steps, np.arange(5_000))
    assert np.array_equal(history.values, np.arange(5_000, dtype=float))


def test_server_restart_mid_run_loses_and_duplicates_nothing(sqlite_url, tmp_path):
    first = ThreadServer(Settings(port=0, data_dir=tmp_path, db_url=sqlite_url)).start()
    port = first.app.port
    run = ketch.init(
        experiment="restart", uri=first.uri, capture_environment=False, flush_interval=0.01
    )
    for i in range(20_000):
        run.log({"loss": 1.0 / (i + 1)}, step=i)
    assert run.flush(timeout=30)
    first.stop(grace=0)
    for i in range(20_000, 40_000):  # logged while no server listens
        run.log({"loss": 1.0 / (i + 1)}, step=i)
    time.sleep(0.3)
    second = ThreadServer(Settings(port=port, data_dir=tmp_path, db_url=sqlite_url)).start()
    try:
        run.finish()
        with ketch.Client(second.uri) as c:
            record = c.get_run(run.id)
            history = c.get_metric_history(run.id, "loss")
        assert record.state == "FINISHED"
        assert record.metrics["loss"].count == 40_000
        assert np.array_equal(history.steps, np.arange(40_000))
        assert run.dropped_points == 0 and run.failure is None
    finally:
        second.stop()


def test_system_metrics_are_sampled_beside_training_steps(server, client, monkeypatch):
    monkeypatch.setenv("KETCH_SYSTEM_METRICS_INTERVAL", "0.1")
    run = ketch.init(
        experiment="system",
        uri=server.uri,
        capture_environment=False,
        system_metrics=True,
        flush_interval=0.05,
    )
    for _ in range(3):
        run.log({"loss": 1.0})  # implicit steps 0, 1, 2
        time.sleep(0.25)
    run.finish()
    record = client.get_run(run.id)
    assert record.metrics["loss"].count == 3 and record.metrics["loss"].step == 2
    cpu = client.get_metric_history(run.id, "system/cpu.percent")
    assert len(cpu) >= 3
    assert np.array_equal(cpu.steps, np.arange(len(cpu)))  # sample index, not training step
    assert np.all((cpu.values >= 0) & (cpu.values <= 100))
    assert record.metrics["system/memory.used_bytes"].last > 0
