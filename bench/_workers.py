"""Client-side workloads of the ingest benchmark, one per process.

Run as ``python bench/_workers.py NAME 'JSON-ARGS'``; the last stdout line is
``RESULT {json}``. Each workload imports only its own SDK (ketch, mlflow or
wandb), so this file runs under the ketch venv and under the MLflow/W&B venv.

Every workload logs ``points`` points as 5 keys per step and reports:

* ``points`` and ``seconds``: from the first log call until the data is durable
  (ketch: ``run.finish()`` returned, which waits for the server's commit acks;
  MLflow: the last ``log_batch`` returned, or ``flush_async_logging()`` returned;
  W&B: ``wandb.finish()`` returned, the offline ``.wandb`` file is closed);
* ``call_median_us`` / ``call_p99_us``: cost of one logging call, timed with
  ``perf_counter_ns`` around EVERY call (payload built outside the timed span);
* ``finish_s``: time spent in the final flush/finish/drain alone;
* ``read_s`` / ``read_points``: reading the history back, where the tool can;
* ``client_rss_mib``: peak RSS of the client process after the data is durable;
* ``client_cpu_s`` / ``server_cpu_s``: CPU seconds (user + system, all threads) the
  client process and the server's process tree (W&B: the client's wandb-core
  service) spent between the first log call and durability. Unlike wall time,
  these barely move when other work shares the CPUs.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable

from _procs import busy_cpu_s, peak_rss_mib, tree, tree_cpu_s, versions

KEYS = ("train_loss", "val_loss", "train_acc", "val_acc", "lr")
MLFLOW_BATCH_STEPS = 200  # 200 steps x 5 keys = 1000 metrics, MLflow's per-batch limit


def payload(step: int) -> dict[str, float]:
    """The 5-key dict logged at ``step`` (cheap, distinct values)."""
    x = step * 1e-6
    return {KEYS[0]: x, KEYS[1]: x + 1.0, KEYS[2]: x + 2.0, KEYS[3]: x + 3.0, KEYS[4]: x + 4.0}


def timed_calls(call: Callable[[dict[str, float], int], object], steps: int) -> array.array:
    """Call ``call(payload(i), i)`` for every step; return each call's duration in ns."""
    clock = time.perf_counter_ns
    spans = array.array("q", bytes(8 * steps))
    for i in range(steps):
        data = payload(i)
        start = clock()
        call(data, i)
        spans[i] = clock() - start
    return spans


def percentiles_us(spans) -> tuple[float, float]:
    """(median, p99) of nanosecond spans, in microseconds (nearest rank)."""
    ordered = sorted(spans)
    if not ordered:
        return float("nan"), float("nan")
    last = len(ordered) - 1
    return ordered[last // 2] / 1e3, ordered[round(0.99 * last)] / 1e3


def client_rss_mib() -> float:
    """Peak RSS of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """Marks of wall time, this process's CPU and a server tree's CPU.

    Args:
        server_pid: root of the server's process tree; None means this process's
            children (W&B's wandb-core service).
    """

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.marks: list[tuple[float, float, float, float]] = []

    def _server_cpu(self) -> float:
        if self.server_pid is None:
            return tree_cpu_s(os.getpid(), include_root=False)
        return tree_cpu_s(self.server_pid)

    def mark(self) -> None:
        now = (time.perf_counter(), time.process_time(), self._server_cpu(), busy_cpu_s())
        self.marks.append(now)

    def span(self) -> dict:
        """Wall and CPU seconds from the first mark to the last.

        ``other_cpu_s`` is the machine's busy CPU time outside the client and the
        server tree: PostgreSQL's backends, and whatever else runs on the machine.
        """
        (w0, c0, s0, b0), (w1, c1, s1, b1) = self.marks[0], self.marks[-1]
        client, server = c1 - c0, s1 - s0
        return {
            "seconds": w1 - w0,
            "client_cpu_s": client,
            "server_cpu_s": server,
            "other_cpu_s": max(b1 - b0 - client - server, 0.0),
        }

    def last_step(self) -> float:
        """Wall seconds between the last two marks."""
        return self.marks[-1][0] - self.marks[-2][0]


# ---------------------------------------------------------------- ketch


def ketch_stream(uri: str, points: int, server_pid: int) -> dict:
    """``run.log`` of 5 keys per step, ``run.finish()``, then read every history back."""
    os.environ["KETCH_SYSTEM_METRICS"] = "0"  # only the benchmark's points
    import ketch

    steps = points // len(KEYS)
    run = ketch.init(experiment="bench", name="ingest", uri=uri, capture_environment=False)
    meter = Meter(server_pid)
    meter.mark()
    spans = timed_calls(lambda data, i: run.log(data, step=i), steps)
    meter.mark()
    run.finish()
    meter.mark()
    rss = client_rss_mib()
    with contextlib.suppress(ImportError):
        import numpy  # noqa: F401  (loaded before the timed read, as in training code)
    with ketch.Client(uri) as client:
        started = time.perf_counter()
        histories = client.get_metric_histories(run.id)
        read_s = time.perf_counter() - started
    read_points = sum(len(h.values) for h in histories.values())
    median, p99 = percentiles_us(spans)
    return {
        **meter.span(),
        "points": steps * len(KEYS),
        "call_median_us": median,
        "call_p99_us": p99,
        "finish_s": meter.last_step(),
        "read_s": read_s,
        "read_points": read_points,
        "missing_points": steps * len(KEYS) - read_points,
        "client_rss_mib": rss,
    }


# --------------------------------------------------------------- MLflow


def _mlflow_run(uri: str) -> tuple[object, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")
    return client, client.create_run(experiment_id).info.run_id


def _mlflow_batch(first_step: int, steps: int, timestamp_ms: int) -> list:
    from mlflow.entities import Metric

    return [
        Metric(key, value, timestamp_ms, step)
        for step in range(first_step, first_step + steps)
        for key, value in payload(step).items()
    ]


def mlflow_batch(uri: str, points: int, server_pid: int) -> dict:
    """``MlflowClient.log_batch`` of 1000 metrics per call, then one key's history."""
    client, run_id = _mlflow_run(uri)
    steps = points // len(KEYS)
    clock = time.perf_counter_ns
    spans = []
    meter = Meter(server_pid)
    meter.mark()
    for first in range(0, steps, MLFLOW_BATCH_STEPS):
        batch = _mlflow_batch(first, min(MLFLOW_BATCH_STEPS, steps - first), int(time.time() * 1e3))
        start = clock()
        client.log_batch(run_id, metrics=batch)
        spans.append(clock() - start)
    meter.mark()
    rss = client_rss_mib()
    started = time.perf_counter()
    history = client.get_metric_history(run_id, KEYS[0])
    read_s = time.perf_counter() - started
    client.set_terminated(run_id)
    median, p99 = percentiles_us(spans)
    return {
        **meter.span(),
        "points": steps * len(KEYS),
        "batch_median_us": median,
        "batch_p99_us": p99,
        "batch_points": MLFLOW_BATCH_STEPS * len(KEYS),
        "read_s": read_s,
        "read_points": len(history),
        "missing_points": steps - len(history),
        "client_rss_mib": rss,
    }


def mlflow_async(uri: str, points: int, server_pid: int) -> dict:
    """``mlflow.log_metrics(5 keys, step, synchronous=False)``, then the queue's drain."""
    import mlflow

    client, run_id = _mlflow_run(uri)
    mlflow.set_tracking_uri(uri)
    steps = points // len(KEYS)
    meter = Meter(server_pid)
    with mlflow.start_run(run_id=run_id):
        meter.mark()
        spans = timed_calls(
            lambda data, i: mlflow.log_metrics(data, step=i, synchronous=False), steps
        )
        meter.mark()
        mlflow.flush_async_logging()
        meter.mark()
        rss = client_rss_mib()
    stored = len(client.get_metric_history(run_id, KEYS[0]))
    median, p99 = percentiles_us(spans)
    return {
        **meter.span(),
        "points": steps * len(KEYS),
        "missing_points": (steps - stored) * len(KEYS),
        "call_median_us": median,
        "call_p99_us": p99,
        "finish_s": meter.last_step(),
        "client_rss_mib": rss,
    }


# ------------------------------------------------------------------ W&B


def wandb_offline(directory: str, points: int) -> dict:
    """``wandb.log(5 keys, step=i)`` in offline mode, then ``wandb.finish()``.

    The wandb-core service (a child process) is the "server": its CPU counts as
    server CPU and its VmHWM, read after finish (it outlives the run), as server RSS.
    """
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    steps = points // len(KEYS)
    settings = wandb.Settings(x_disable_stats=True)  # only the benchmark's points
    run = wandb.init(mode="offline", project="ketch-bench", dir=directory, settings=settings)
    meter = Meter(None)
    meter.mark()
    spans = timed_calls(lambda data, i: run.log(data, step=i), steps)
    meter.mark()
    run.finish()
    meter.mark()
    median, p99 = percentiles_us(spans)
    return {
        **meter.span(),
        "points": steps * len(KEYS),
        "call_median_us": median,
        "call_p99_us": p99,
        "finish_s": meter.last_step(),
        "client_rss_mib": client_rss_mib(),
        "server_rss_mib": sum(peak_rss_mib(p) for p in tree(os.getpid())[1:]),
    }


# ----------------------------------------------------------------- misc


WORKLOADS: dict[str, Callable[..., dict]] = {
    "ketch_stream": ketch_stream,
    "mlflow_batch": mlflow_batch,
    "mlflow_async": mlflow_async,
    "wandb_offline": wandb_offline,
    "versions": versions,
}


def main(argv: list[str]) -> None:
    name, kwargs = argv[0], json.loads(argv[1])
    result = WORKLOADS[name](**kwargs)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
