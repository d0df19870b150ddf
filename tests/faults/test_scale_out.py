"""Scale-out on one machine: three server processes on one PostgreSQL database and one
S3 store, the SDK given all three (round-robin). Calls spread over the replicas, a
multi-call artifact upload crosses replicas, and killing the replica that carries a
training stream loses nothing: the SDK fails over and resumes on another one; registry
moves made through any replica reach a watcher connected to another, in order."""

from __future__ import annotations

import concurrent.futures
import hashlib
import pathlib
import threading
import uuid
from collections import Counter

import ketch
import pytest
from ketch import _operations

from tests.faults._harness import (
    ServerProc,
    Trainer,
    assert_clean_result,
    assert_exactly_once,
    metric_count,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.s3]

STEPS = 60_000
SLICE = 2_000


@pytest.fixture
def replicas(postgres_url, s3_server, tmp_path):
    s3 = s3_server.settings(f"ketch-{uuid.uuid4().hex[:12]}")
    extra = [
        "--artifacts", str(s3["artifacts"]),
        "--s3-endpoint", str(s3["s3_endpoint"]),
        "--s3-access-key", str(s3["s3_access_key"]),
        "--s3-secret-key", str(s3["s3_secret_key"]),
        "--s3-secure", str(s3["s3_secure"]).lower(),
    ]  # fmt: skip
    if s3["s3_region"]:
        extra += ["--s3-region", str(s3["s3_region"])]
    servers = []
    try:
        for i in range(3):
            workdir = tmp_path / f"replica-{i}"
            workdir.mkdir()
            servers.append(ServerProc(workdir, db_url=postgres_url, extra=extra).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def _balanced(servers: list[ServerProc]) -> str:
    return "grpc://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _instances(client: ketch.Client, calls: int) -> Counter[str]:
    return Counter(_operations.get_server_status(client._transport).instance for _ in range(calls))


def test_calls_spread_over_replicas_and_skip_a_dead_one(replicas, tmp_path):
    with ketch.Client(_balanced(replicas)) as client:
        wait_until(lambda: len(_instances(client, 6)) == 3, "calls reaching all three replicas")
        seen = _instances(client, 30)
        assert len(seen) == 3 and min(seen.values()) >= 5, seen

        # A multi-call upload (begin, chunks, commit) crosses replicas: no replica keeps
        # state the others need.
        run = ketch.init(
            "scale-out",
            uri=_balanced(replicas),
            system_metrics=False,
            capture_environment=False,
            spool_dir=tmp_path / "spool",
        )
        blob = tmp_path / "weights.bin"
        blob.write_bytes(uuid.uuid4().bytes * 50_000)
        client.log_artifact(run.id, blob, "model")
        run.finish()
        out = pathlib.Path(
            client.download_artifacts(run.id, "model/weights.bin", tmp_path / "back")
        )
        assert _digest(out) == _digest(blob)

        dead = _operations.get_server_status(ketch.Client(replicas[0].uri)._transport).instance
        replicas[0].kill()
        seen = _instances(client, 12)  # round-robin drops the dead address
        assert dead not in seen and len(seen) == 2, seen


def test_killing_the_replica_under_a_stream_loses_nothing(replicas, tmp_path):
    trainer = Trainer(_balanced(replicas), tmp_path, steps=STEPS, slice=SLICE, pause=0.03)
    try:
        run_id = trainer.wait_for("run")
        with ketch.Client(replicas[1].uri) as client:
            wait_until(lambda: metric_count(client, run_id) > 0, "the first committed points")

        def carrier() -> ServerProc | None:
            for server in replicas:
                status = _operations.get_server_status(ketch.Client(server.uri)._transport)
                if status.ingest.open_streams > 0:
                    return server
            return None

        victim = wait_until(carrier, "the replica carrying the stream")
        victim.kill()
        result = trainer.result()
        assert_clean_result(result)
        survivor = next(s for s in replicas if s is not victim)
        with ketch.Client(survivor.uri) as client:
            assert_exactly_once(client, run_id, STEPS)
    finally:
        trainer.kill()


def test_registry_moves_on_any_replica_reach_a_watcher_on_another(replicas, tmp_path):
    balanced = ketch.Client(_balanced(replicas))
    run = ketch.init(
        "scale-out-registry",
        uri=_balanced(replicas),
        system_metrics=False,
        capture_environment=False,
        spool_dir=tmp_path / "spool",
    )
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"w" * 1000)
    run.log_model(tmp_path / "model", "scaled")
    run.finish()
    versions = [balanced.register_model("scaled", run.id).version for _ in range(4)]

    watcher = ketch.Client(replicas[0].uri)
    start = list(watcher.audit_log("scaled"))[-1].cursor
    events: list = []

    def watch() -> None:
        for event in watcher.watch_registry(["scaled"], from_cursor=start, timeout=60):
            events.append(event)
            if len(events) == 12:
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    # Twelve alias moves from four threads, each through the balanced channel.
    def move(i: int) -> None:
        balanced.set_alias("scaled", f"alias-{i % 3}", versions[i % len(versions)])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(move, range(12)))
    thread.join(60)
    assert len(events) == 12, [e.action for e in events]
    assert {e.action for e in events} == {"ALIAS_SET"}
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == 12
    model = ketch.Client(replicas[2].uri).get_model("scaled")
    assert set(model.aliases) == {"alias-0", "alias-1", "alias-2"}
