"""Ingest benchmark: ketch vs MLflow vs W&B (offline), side by side on this machine.

    python bench/ingest.py [--points 1000000] [--repeat 3] [--quick]
                           [--mlflow-python /work/venv-bench/bin/python]

Run it with a Python that has ketch installed with the server extras (it starts
``python -m ketch_server`` and the ketch client with ``sys.executable``);
MLflow and W&B run under ``--mlflow-python``. Prints one markdown table of
medians over ``--repeat`` repetitions and writes it, with the machine and
package versions, to ``bench/results.md``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

import _procs
import _report
from _procs import HOST, BenchError, Postgres, Server, run_worker, running
from _report import Row

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_BENCH_PYTHON = "/work/venv-bench/bin/python"
KETCH_PACKAGES = ["ketch", "grpcio", "protobuf", "sqlalchemy", "aiosqlite", "asyncpg", "numpy"]
BENCH_PACKAGES = ["mlflow", "wandb", "sqlalchemy", "psycopg2-binary"]
# Points per run; W&B gets ketch's count by default, MLflow fewer (it is ~100-1000x slower).
FULL = {
    "points": 1_000_000,
    "wandb_points": 1_000_000,
    "mlflow_points": 100_000,
    "mlflow_async_points": 5_000,
}
QUICK = {
    "points": 100_000,
    "wandb_points": 50_000,
    "mlflow_points": 10_000,
    "mlflow_async_points": 1_000,
}
CASES = ("ketch-sqlite", "ketch-postgres", "mlflow-sqlite", "mlflow-postgres", "wandb")


# ------------------------------------------------------------------ CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--points", type=int, help="ketch points per run, 5 keys (default 1M)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions per case (median)")
    p.add_argument("--wandb-points", type=int, help="W&B points per run (default: --points)")
    p.add_argument("--mlflow-points", type=int, help="MLflow log_batch points (default 100k)")
    p.add_argument("--mlflow-async-points", type=int, help="MLflow async points (default 5k)")
    p.add_argument("--mlflow-python", default=DEFAULT_BENCH_PYTHON, help="venv with mlflow, wandb")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(CASES)}")
    p.add_argument("--quick", action="store_true", help="small counts, no MLflow PostgreSQL")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="S",
        help="before each repetition wait up to S seconds for the CPUs to be <25%% busy",
    )
    p.add_argument("--pg-host", default=HOST)
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--timeout", type=float, default=600, help="seconds per workload process")
    p.add_argument("--output", type=pathlib.Path, default=HERE / "results.md")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for field, value in defaults.items():
        if getattr(args, field) is None:
            setattr(args, field, value)
    args.cases = _select_cases(args)
    return args


def _select_cases(args: argparse.Namespace) -> list[str]:
    if args.only:
        chosen = [c.strip() for c in args.only.split(",") if c.strip()]
        unknown = set(chosen) - set(CASES)
        if unknown:
            raise SystemExit(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
        return chosen
    return [c for c in CASES if not (args.quick and c == "mlflow-postgres")]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- cases


class Bench:
    """Runs the chosen cases ``repeat`` times, round-robin, under one scratch dir."""

    def __init__(self, args: argparse.Namespace, work: pathlib.Path, pg: Postgres) -> None:
        self.args, self.work, self.pg = args, work, pg
        self._busy = 0.0
        self.rows = {
            "ketch-sqlite": Row("ketch-sqlite", "ketch · SQLite · `run.log` stream"),
            "ketch-postgres": Row("ketch-postgres", "ketch · PostgreSQL · `run.log` stream"),
            "mlflow-sqlite": Row("mlflow-sqlite", "MLflow · SQLite · `log_batch` x1000"),
            "mlflow-sqlite-async": Row(
                "mlflow-sqlite-async", "MLflow · SQLite · `log_metrics` async"
            ),
            "mlflow-postgres": Row("mlflow-postgres", "MLflow · PostgreSQL · `log_batch` x1000"),
            "mlflow-postgres-async": Row(
                "mlflow-postgres-async", "MLflow · PostgreSQL · `log_metrics` async"
            ),
            "wandb": Row("wandb", "W&B · offline · `wandb.log`"),
        }

    def run(self) -> None:
        runners: dict[str, Callable[[int], None]] = {
            "ketch-sqlite": lambda rep: self._ketch(rep, postgres=False),
            "ketch-postgres": lambda rep: self._ketch(rep, postgres=True),
            "mlflow-sqlite": lambda rep: self._mlflow(rep, postgres=False),
            "mlflow-postgres": lambda rep: self._mlflow(rep, postgres=True),
            "wandb": self._wandb,
        }
        for rep in range(self.args.repeat):
            for case in self.args.cases:
                self._busy = self._settle(self.args.wait_idle)
                log(f"{case}: repetition {rep + 1}/{self.args.repeat} ({self._busy:.0%} busy)")
                try:
                    runners[case](rep)
                except BenchError as exc:
                    log(f"{case} failed: {exc}")
                    self.rows[case].errors.append(str(exc))

    def _settle(self, max_wait: float) -> float:
        """How busy the CPUs are; first wait up to ``max_wait`` seconds for them to calm."""
        deadline = time.monotonic() + max_wait
        busy = _procs.busy_fraction(1.0)
        while busy > 0.25 and time.monotonic() < deadline:
            busy = _procs.busy_fraction(2.0)
        return busy

    def _record(self, key: str, result: dict) -> None:
        result["busy_before"] = self._busy
        self.rows[key].results.append(result)
        rate = result["points"] / result["seconds"]
        log(f"  {key}: {result['points']:,} points, {rate:,.0f} points/s")

    def _scratch(self, name: str) -> pathlib.Path:
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def _ketch(self, rep: int, *, postgres: bool) -> None:
        key = "ketch-postgres" if postgres else "ketch-sqlite"
        data = self._scratch(f"{key}-{rep}")
        if not postgres:
            self._ketch_once(key, data, None)
            return
        with self.pg.scratch(f"ketch_bench_{os.getpid()}_{rep}") as dsn:
            self._ketch_once(key, data, f"postgresql+asyncpg://{dsn}")

    def _ketch_once(self, key: str, data: pathlib.Path, db: str | None) -> None:
        port = _procs.free_port()
        argv = [sys.executable, "-m", "ketch_server", "--port", str(port), "--data-dir", str(data)]
        argv += ["--log-level", "WARNING", *(["--db", db] if db else [])]
        with running(Server(argv, data / "server.log", port)) as server:
            server.wait_tcp(timeout=60)
            uri, pid = f"grpc://{HOST}:{port}", server.proc.pid
            kwargs = {"uri": uri, "points": self.args.points, "server_pid": pid}
            result = run_worker(sys.executable, "ketch_stream", kwargs, timeout=self.args.timeout)
            result["server_rss_mib"] = _procs.peak_rss_mib(server.proc.pid)
        self._record(key, result)

    def _mlflow(self, rep: int, *, postgres: bool) -> None:
        key = "mlflow-postgres" if postgres else "mlflow-sqlite"
        data = self._scratch(f"{key}-{rep}")
        if not postgres:
            self._mlflow_once(key, data, f"sqlite:///{data / 'mlflow.db'}")
            return
        with self.pg.scratch(f"mlflow_bench_{os.getpid()}_{rep}") as dsn:
            self._mlflow_once(key, data, f"postgresql+psycopg2://{dsn}")

    def _mlflow_once(self, key: str, data: pathlib.Path, store: str) -> None:
        """One MLflow server (1 worker) serves the log_batch run, then the async run."""
        python, port = self.args.mlflow_python, _procs.free_port()
        argv = [python, "-m", "mlflow", "server", "--backend-store-uri", store]
        argv += ["--default-artifact-root", str(data / "artifacts"), "--host", HOST]
        argv += ["--port", str(port), "--workers", "1"]
        with running(Server(argv, data / "server.log", port)) as server:
            server.wait_http("/health", timeout=180)
            # The job runner keeps booting huey consumers after /health answers.
            _procs.wait_tree_idle(server.proc.pid, max_wait=30)
            uvicorn = _procs.find_in_tree(server.proc.pid, "uvicorn")
            common = {"uri": f"http://{HOST}:{port}", "server_pid": uvicorn}
            batch = {**common, "points": self.args.mlflow_points}
            self._record(key, self._mlflow_worker(server, "mlflow_batch", batch))
            queued = {**common, "points": self.args.mlflow_async_points}
            self._record(f"{key}-async", self._mlflow_worker(server, "mlflow_async", queued))

    def _mlflow_worker(self, server: Server, name: str, kwargs: dict) -> dict:
        """Run an MLflow workload; add the peak RSS of the uvicorn worker and the tree."""
        result = run_worker(self.args.mlflow_python, name, kwargs, timeout=self.args.timeout)
        result["server_rss_mib"] = _procs.peak_rss_mib(kwargs["server_pid"])
        result["server_tree_rss_mib"] = server.peak_rss_mib()
        return result

    def _wandb(self, rep: int) -> None:
        kwargs = {"directory": str(self._scratch(f"wandb-{rep}")), "points": self.args.wandb_points}
        result = run_worker(
            self.args.mlflow_python, "wandb_offline", kwargs, timeout=self.args.timeout
        )
        self._record("wandb", result)


# ----------------------------------------------------------------- main


def versions(args: argparse.Namespace, pg_version: str | None) -> dict[str, dict]:
    """Package versions in the ketch interpreter and in the MLflow/W&B interpreter."""
    ketch_side = run_worker(sys.executable, "versions", {"names": KETCH_PACKAGES}, timeout=60)
    found = {"ketch side": ketch_side}
    if any(c.startswith(("mlflow", "wandb")) for c in args.cases):
        found["MLflow/W&B side"] = run_worker(
            args.mlflow_python, "versions", {"names": BENCH_PACKAGES}, timeout=60
        )
    if pg_version:
        found["PostgreSQL server"] = {"postgresql": pg_version}
    return found


def _postgres(args: argparse.Namespace) -> tuple[Postgres, str | None]:
    """The scratch-database server and its version; drops the PostgreSQL cases if absent."""
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
    if not any("postgres" in c for c in args.cases):
        return pg, None
    version = pg.available()
    if not version:
        log("PostgreSQL unreachable: skipping the PostgreSQL cases")
        args.cases = [c for c in args.cases if "postgres" not in c]
    return pg, version


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    pg, pg_version = _postgres(args)
    meta = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": _report.machine(),
        "git": _report.git_state(HERE.parent),
        "versions": versions(args, pg_version),
    }
    work = pathlib.Path(tempfile.mkdtemp(prefix="ketch-bench-"))
    bench = Bench(args, work, pg)
    try:
        bench.run()
    finally:
        if args.keep:
            log(f"scratch directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    rows = [r for r in bench.rows.values() if r.results or r.errors]
    meta["elapsed"] = time.monotonic() - started
    args.output.write_text(_report.results_md(rows, meta))
    print(_report.render_table(rows))
    print()
    print(_report.LEGEND)
    log(f"written to {args.output}")


if __name__ == "__main__":
    main()
