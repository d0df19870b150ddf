"""The registry benchmark's client workloads, one per process (runs under either venv).

    python _registry_workers.py NAME 'JSON kwargs'

prints ``RESULT {json}`` as its last line. Every phase runs ``threads`` client
threads, each with its own client (its own channel or HTTP session); each thread
makes one untimed warm-up call, all start together at a barrier, and every timed
call's latency is kept. A phase reports the p50 and p99 latency over all calls and
the calls per second over the phase's wall time.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _procs import versions


def run_phase(
    threads: int,
    calls: int,
    make_client: Callable[[], Any],
    warm: Callable,
    call: Callable,
    *,
    rate: float | None = None,
) -> dict:
    """``call(client, thread, j)`` ``calls`` times in each of ``threads`` threads.

    Without ``rate`` each thread calls again as soon as it has its answer (a closed
    loop). With ``rate`` (calls per second, all threads together) thread ``i`` calls at
    fixed times, staggered so the calls spread evenly; a call's latency counts from
    the time it was due, so a server that falls behind is charged for the wait
    (no coordinated omission)."""
    barrier = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures: list[str] = []
    started = 0.0

    def work(i: int) -> None:
        client = make_client()
        try:
            warm(client)
        finally:
            barrier.wait()
        spans = latencies[i]
        for j in range(calls):
            if rate:
                due = started + (j * threads + i) / rate
                time.sleep(max(0.0, due - time.perf_counter()))
                t0 = due
            else:
                t0 = time.perf_counter()
            try:
                call(client, i, j)
            except Exception as exc:  # counted, not fatal: a phase reports its failures
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            spans.append(time.perf_counter() - t0)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    # Paced threads read the first due time after the barrier; closed loops start at it.
    started = time.perf_counter() + 0.05 if rate else 0.0
    barrier.wait()
    if not rate:
        started = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    spans = sorted(s for per in latencies for s in per)
    return {
        "calls": len(spans),
        "failed": len(failures),
        "first_failure": failures[0] if failures else "",
        "seconds": wall,
        "rate": len(spans) / wall if wall else 0.0,
        "p50_ms": 1e3 * statistics.median(spans) if spans else None,
        "p99_ms": 1e3 * spans[min(len(spans) - 1, int(0.99 * len(spans)))] if spans else None,
    }


def parallel(threads: int, items: list, fn: Callable) -> list:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


# ------------------------------------------------------------------ ketch


def ketch_registry(
    uri: str,
    tokens: dict[str, str],
    threads: int,
    calls: int,
    moves: int,
    approvals: int,
    solo: int,
    paced_rate: float,
    paced_calls: int,
) -> dict:
    """Resolve by stage and by alias, alias moves and approvals against a ketch server
    with token auth: ``tokens`` has ``admin``, ``writer`` and ``approver`` secrets."""
    import ketch

    os.environ["KETCH_API_TOKEN"] = tokens["writer"]
    writer = ketch.Client(uri, api_token=tokens["writer"])
    admin = ketch.Client(uri, api_token=tokens["admin"])
    run_id = _ketch_run(uri)
    writer.create_model("churn")
    for _ in range(2):
        writer.register_model("churn", run_id)
    admin.transition_stage("churn", 1, "production", comment="benchmark setup")
    writer.set_alias("churn", "champion", 1)
    admin.set_policy("churn", "staging", approvals=1)  # each approval applies its move
    pending = _ketch_pending(uri, tokens["writer"], run_id, threads, threads * approvals)

    def client_as(role: str) -> Callable[[], Any]:
        return lambda: ketch.Client(uri, api_token=tokens[role])

    def warm(c) -> None:
        c.get_model("churn")

    def by_stage(c, _i, _j) -> None:
        c.get_model_version("models:/churn/Production")

    def by_alias(c, _i, _j) -> None:
        c.get_model_version("models:/churn@champion")

    def move(c, i, j) -> None:
        c.set_alias("churn", f"a{i}", 1 + j % 2)

    def approve(c, i, j) -> None:
        c.approve(pending[i * approvals + j])

    return {
        "resolve_alias_solo": run_phase(1, solo, client_as("writer"), warm, by_alias),
        "resolve_stage": run_phase(threads, calls, client_as("writer"), warm, by_stage),
        "resolve_alias": run_phase(threads, calls, client_as("writer"), warm, by_alias),
        "resolve_alias_paced": run_phase(
            threads, paced_calls, client_as("writer"), warm, by_alias, rate=paced_rate
        ),
        "alias_move": run_phase(threads, moves, client_as("writer"), warm, move),
        "approve": run_phase(threads, approvals, client_as("approver"), warm, approve),
    }


def _ketch_run(uri: str) -> str:
    import ketch

    with tempfile.TemporaryDirectory() as tmp:
        model = pathlib.Path(tmp) / "model.pkl"
        model.write_bytes(os.urandom(1024))
        with ketch.init(
            experiment="registry-bench", uri=uri, capture_environment=False, system_metrics=False
        ) as run:
            run.log({"accuracy": 0.93}, step=1)
            run.log_model(model, "churn")
    return run.id


def _ketch_pending(uri: str, token: str, run_id: str, threads: int, n: int) -> list[str]:
    """``n`` versions, each with a pending request to Staging; their request ids."""
    import ketch

    clients = [ketch.Client(uri, api_token=token) for _ in range(threads)]

    def one(k: int) -> str:
        c = clients[k % threads]
        version = c.register_model("churn", run_id)
        return c.request_transition("churn", version.version, "staging").id

    return parallel(threads, list(range(n)), one)


# ------------------------------------------------------------- gRPC ceiling


def echo_server(port: int) -> dict:
    """A bare grpc.aio server with only the standard health service (an empty
    handler: no ketch code, no interceptors, no database). Runs until killed."""
    import asyncio

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    async def serve() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())
    return {}


def echo_calls(
    uri: str, threads: int, calls: int, solo: int, paced_rate: float, paced_calls: int
) -> dict:
    """The same closed loop as the ketch phases, calling ``grpc.health.v1.Health/Check``
    on :func:`echo_server`: the cost of a unary call through grpcio itself."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    request = health_pb2.HealthCheckRequest()

    def make() -> Any:
        return health_pb2_grpc.HealthStub(grpc.insecure_channel(uri))

    def check(stub, _i=0, _j=0) -> None:
        stub.Check(request)

    return {
        "resolve_alias_solo": run_phase(1, solo, make, check, check),
        "resolve_alias": run_phase(threads, calls, make, check, check),
        "resolve_alias_paced": run_phase(threads, paced_calls, make, check, check, rate=paced_rate),
    }


# ------------------------------------------------------------------ MLflow


def mlflow_registry(uri: str, threads: int, calls: int, moves: int, solo: int) -> dict:
    """Resolve by alias and alias moves against an MLflow tracking server."""
    from mlflow import MlflowClient

    setup = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = setup.create_run(experiment_id="0")
    setup.create_registered_model("churn")
    for _ in range(2):
        setup.create_model_version(
            "churn", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        )
    setup.set_registered_model_alias("churn", "champion", "1")

    def make() -> Any:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def warm(c) -> None:
        c.get_registered_model("churn")

    def by_alias(c, _i, _j) -> None:
        c.get_model_version_by_alias("churn", "champion")

    def move(c, i, j) -> None:
        c.set_registered_model_alias("churn", f"a{i}", str(1 + j % 2))

    return {
        "resolve_alias_solo": run_phase(1, solo, make, warm, by_alias),
        "resolve_alias": run_phase(threads, calls, make, warm, by_alias),
        "alias_move": run_phase(threads, moves, make, warm, move),
    }


WORKLOADS: dict[str, Callable[..., dict]] = {
    "ketch_registry": ketch_registry,
    "mlflow_registry": mlflow_registry,
    "echo_server": echo_server,
    "echo_calls": echo_calls,
    "versions": versions,
}


def main(argv: list[str]) -> None:
    name, kwargs = argv[0], json.loads(argv[1])
    result = WORKLOADS[name](**kwargs)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
