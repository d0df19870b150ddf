"""Offline runs and the spool: nothing is lost while the server is away, and
`ketch sync` uploads exactly once however often it runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import ketch
from ketch import _sync
from ketch_server.settings import Settings
from tests.conftest import ThreadServer


def _offline_run(spool, steps: int = 5_000) -> ketch.Run:
    run = ketch.init(
        experiment="offline",
        name="away",
        config={"lr": 0.1},
        mode="offline",
        spool_dir=spool,
        system_metrics=False,
        capture_environment=False,
    )
    for i in range(steps):
        run.log({"loss": 1.0 / (i + 1), "acc": float(i)}, step=i)
    run.set_tags({"where": "plane"})
    run.finish("FINISHED")
    return run


def test_offline_run_writes_only_the_spool_and_syncs_exactly_once(server, client, tmp_path):
    spool = tmp_path / "spool"
    _offline_run(spool)
    (directory,) = _sync.find_spools(spool)
    assert client.get_experiment_by_name("offline") is None  # nothing reached the server
    first = _sync.sync_spool(directory, uri=server.uri)
    again = _sync.sync_spool(directory, uri=server.uri)
    forced = _sync.sync_spool(directory, uri=server.uri, force=True)
    assert first.points == 10_000 and again.skipped and forced.run_id == first.run_id
    (record,) = client.search_runs(experiment_names=["offline"])
    assert record.id == first.run_id
    assert (record.name, record.state, record.params, record.tags) == (
        "away",
        "FINISHED",
        {"lr": "0.1"},
        {"where": "plane"},
    )
    assert {k: m.count for k, m in record.metrics.items()} == {"acc": 5_000, "loss": 5_000}
    assert np.array_equal(client.get_metric_history(record.id, "acc").steps, np.arange(5_000))


def test_ketch_sync_command_shows_progress_and_is_idempotent(server, client, tmp_path):
    spool = tmp_path / "spool"
    _offline_run(spool, steps=2_000)
    command = [sys.executable, "-m", "ketch._cli", "sync", str(spool), "--uri", server.uri]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "4,000 points" in first.stdout and "100%" in first.stderr
    assert second.returncode == 0 and "already synced" in second.stdout
    (record,) = client.search_runs(experiment_names=["offline"])
    assert {k: m.count for k, m in record.metrics.items()} == {"acc": 2_000, "loss": 2_000}


def test_points_logged_while_the_server_is_away_are_spooled_then_delivered(sqlite_url, tmp_path):
    first = ThreadServer(Settings(port=0, data_dir=tmp_path, db_url=sqlite_url)).start()
    port = first.app.port
    run = ketch.init(
        experiment="away",
        uri=first.uri,
        capture_environment=False,
        system_metrics=False,
        flush_interval=0.01,
        spool_dir=tmp_path / "spool",
    )
    run.log({"loss": 0.0}, step=0)
    assert run.flush(timeout=30)
    first.stop(grace=0)
    for i in range(1, 60_000):
        run.log({"loss": float(i)}, step=i)
        if i % 500 == 0:
            run.flush(timeout=0)  # one batch each: far beyond the in-memory window
    assert run.flush(timeout=0.5) is False
    spooled = run.spool_dir
    assert spooled is not None and (spooled / "records.bin").stat().st_size > 0
    second = ThreadServer(Settings(port=port, data_dir=tmp_path, db_url=sqlite_url)).start()
    try:
        assert run.flush(timeout=60)
        run.finish()
        with ketch.Client(second.uri) as c:
            history = c.get_metric_history(run.id, "loss")
        assert np.array_equal(history.steps, np.arange(60_000))
        assert not spooled.exists()  # delivered spools are removed
    finally:
        second.stop()


def test_finish_without_a_server_leaves_a_spool_that_sync_delivers(sqlite_url, tmp_path):
    first = ThreadServer(Settings(port=0, data_dir=tmp_path, db_url=sqlite_url)).start()
    port = first.app.port
    run = ketch.init(
        experiment="gone",
        uri=first.uri,
        capture_environment=False,
        system_metrics=False,
        finish_timeout=1,
        spool_dir=tmp_path / "spool",
    )
    first.stop(grace=0)
    for i in range(1_000):
        run.log({"loss": float(i)}, step=i)
    run.finish()  # bounded by finish_timeout; must not hang
    (directory,) = _sync.find_spools(tmp_path / "spool")
    second = ThreadServer(Settings(port=port, data_dir=tmp_path, db_url=sqlite_url)).start()
    try:
        result = _sync.sync_spool(directory)
        with ketch.Client(second.uri) as c:
            record = c.get_run(run.id)
        assert result.run_id == run.id
        assert record.metrics["loss"].count == 1_000
        assert record.state == "FINISHED"
    finally:
        second.stop()


def test_server_down_when_training_starts_then_up(tmp_path, sqlite_url):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = ketch.init(
        experiment="late",
        name="early-bird",
        uri=f"grpc://127.0.0.1:{port}",
        capture_environment=False,
        system_metrics=False,
        spool_dir=tmp_path / "spool",
        finish_timeout=30,
    )
    assert run.id.startswith("offline-")
    for i in range(3_000):
        run.log({"loss": float(i)}, step=i)
    run.flush()
    server = ThreadServer(Settings(port=port, data_dir=tmp_path, db_url=sqlite_url)).start()
    try:
        for i in range(3_000, 6_000):  # keeps logging after the server came up
            run.log({"loss": float(i)}, step=i)
        run.finish()
        assert not run.id.startswith("offline-")
        with ketch.Client(server.uri) as c:
            record = c.get_run(run.id)
            history = c.get_metric_history(run.id, "loss")
        assert (record.name, record.state) == ("early-bird", "FINISHED")
        assert np.array_equal(history.steps, np.arange(6_000))
        assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())
    finally:
        server.stop()
