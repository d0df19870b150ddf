"""Registry benchmark: ketch (SQLite, PostgreSQL) vs an MLflow tracking server, side by side.

    python bench/registry.py [--repeat 3] [--threads 50]
                             [--mlflow-python /work/venv-bench/bin/python]

Not a test. Run it with the Python that has ketch[server,postgres] (it starts
``python -m ketch_server --auth token`` and the ketch client with ``sys.executable``);
MLflow runs under ``--mlflow-python`` (``python3 -m venv /work/venv-bench &&
/work/venv-bench/bin/pip install 'mlflow==3.17.*'``).

Each repetition starts every server fresh (new data directory; for PostgreSQL a new
scratch database on ``--pg-host``, dropped afterwards) and runs one client process
with ``--threads`` threads, each with its own channel (ketch) or HTTP session
(MLflow), through these phases on one model:

* resolve by stage: ``get_model_version("models:/churn/Production")`` (ketch only)
* resolve by alias: ``get_model_version("models:/churn@champion")`` /
  ``MlflowClient.get_model_version_by_alias``
* resolve by alias, paced: the same call at a fixed offered load (``--paced-rate``
  calls/s from all threads together, for ``--paced-seconds``), latency counted from
  when each call was due (ketch and the gRPC ceiling)
* alias move: each thread moves its own alias between versions 1 and 2 on every call
  (always a real write, all on one model) / ``set_registered_model_alias``
* approve: approve a pending request to Staging whose policy needs one approval, so
  every call records a vote and applies the move (ketch only; MLflow has no approvals)

A fourth column, ``grpc-ceiling``, runs the resolve phases against a bare grpc.aio
server holding only the standard health service (an empty handler, no ketch code):
the most one Python gRPC server process and this client can do on the machine.

ketch runs with token auth (a writer, an approver and an admin token), as in
production. Prints a markdown table of medians over the repetitions and writes it,
with the machine, the versions and the command, to ``bench/registry_results.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import _procs
import _report
from _procs import HOST, BenchError, Postgres, Server, running

HERE = pathlib.Path(__file__).resolve().parent
WORKERS = HERE / "_registry_workers.py"
DEFAULT_BENCH_PYTHON = "/work/venv-bench/bin/python"
CASES = ("ketch-sqlite", "ketch-postgres", "mlflow-sqlite", "grpc-ceiling")
LABELS = {
    "ketch-sqlite": "ketch · SQLite",
    "ketch-postgres": "ketch · PostgreSQL",
    "mlflow-sqlite": "MLflow · SQLite",
    "grpc-ceiling": "bare grpc.aio · empty handler",
}
PHASES = {
    "resolve_alias_solo": "resolve by alias, 1 client",
    "resolve_stage": "resolve by stage",
    "resolve_alias": "resolve by alias",
    "resolve_alias_paced": "resolve by alias, paced",
    "alias_move": "alias move",
    "approve": "approve (vote + apply)",
}
KETCH_PACKAGES = ["ketch", "grpcio", "protobuf", "sqlalchemy", "aiosqlite", "asyncpg"]
MLFLOW_PACKAGES = ["mlflow", "sqlalchemy"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="repetitions (medians reported)")
    p.add_argument("--threads", type=int, default=50, help="concurrent client threads")
    p.add_argument("--calls", type=int, default=200, help="ketch resolves per thread and phase")
    p.add_argument("--moves", type=int, default=20, help="ketch alias moves per thread")
    p.add_argument("--approvals", type=int, default=10, help="ketch approvals per thread")
    p.add_argument("--mlflow-calls", type=int, default=20, help="MLflow resolves per thread")
    p.add_argument("--mlflow-moves", type=int, default=4, help="MLflow alias moves per thread")
    p.add_argument("--solo-calls", type=int, default=500, help="ketch resolves with 1 client")
    p.add_argument("--paced-rate", type=float, default=1000, help="offered resolves/s, paced phase")
    p.add_argument("--paced-seconds", type=float, default=5, help="length of the paced phase")
    p.add_argument("--mlflow-solo-calls", type=int, default=50, help="MLflow, 1 client")
    p.add_argument("--mlflow-python", default=DEFAULT_BENCH_PYTHON)
    p.add_argument("--only", default=",".join(CASES), help=f"subset of {', '.join(CASES)}")
    p.add_argument("--pg-host", default=HOST)
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--timeout", type=float, default=900, help="seconds one workload may take")
    p.add_argument("--output", type=pathlib.Path, default=HERE / "registry_results.md")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    args.cases = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}; pick from {', '.join(CASES)}")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_worker(python: str, name: str, kwargs: dict, *, timeout: float) -> dict:
    """Run workload ``name`` of _registry_workers.py under ``python``; its RESULT."""
    argv = [python, str(WORKERS), name, json.dumps(kwargs)]
    env = {**os.environ, **_procs.LOCAL_ENV}
    env.pop("KETCH_API_TOKEN", None)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{name} did not finish within {timeout:.0f}s") from None
    return _procs._parse_result(name, done.returncode, done.stdout, done.stderr)


# ------------------------------------------------------------------ cases


class Bench:
    def __init__(self, args: argparse.Namespace, work: pathlib.Path, pg: Postgres) -> None:
        self.args, self.work, self.pg = args, work, pg
        self.results: dict[str, list[dict]] = {c: [] for c in args.cases}
        self.errors: dict[str, list[str]] = {c: [] for c in args.cases}

    def run(self) -> None:
        for rep in range(1, self.args.repeat + 1):
            for case in self.args.cases:
                log(f"{case}, repetition {rep}/{self.args.repeat}")
                try:
                    load = os.getloadavg()[0]
                    result = self._case(case, rep)
                    result["load_before"] = load
                    self.results[case].append(result)
                except BenchError as exc:
                    log(f"{case} failed: {exc}")
                    self.errors[case].append(str(exc))

    def _case(self, case: str, rep: int) -> dict:
        data = self.work / f"{case}-{rep}"
        data.mkdir(parents=True)
        if case == "ketch-sqlite":
            return self._ketch(data, None)
        if case == "ketch-postgres":
            with self.pg.scratch(f"ketch_regbench_{os.getpid()}_{rep}") as dsn:
                return self._ketch(data, f"postgresql+asyncpg://{dsn}")
        if case == "grpc-ceiling":
            return self._ceiling(data)
        return self._mlflow(data)

    def _ceiling(self, data: pathlib.Path) -> dict:
        """A grpc.aio server with nothing but the health service, called the same way:
        what one Python gRPC server process can do on this machine at all."""
        port = _procs.free_port()
        argv = [sys.executable, str(WORKERS), "echo_server", json.dumps({"port": port})]
        with running(Server(argv, data / "server.log", port)) as server:
            server.wait_tcp(timeout=60)
            kwargs = {
                "uri": f"{HOST}:{port}",
                "threads": self.args.threads,
                "calls": self.args.calls,
                "solo": self.args.solo_calls,
                **self._paced(),
            }
            result = run_worker(sys.executable, "echo_calls", kwargs, timeout=self.args.timeout)
            result["server_cpu_s"] = _procs.tree_cpu_s(server.proc.pid)
        return result

    def _paced(self) -> dict:
        """The paced phase's arguments: total offered rate and calls per thread."""
        per_thread = self.args.paced_rate * self.args.paced_seconds / self.args.threads
        return {"paced_rate": self.args.paced_rate, "paced_calls": max(1, round(per_thread))}

    def _ketch(self, data: pathlib.Path, db: str | None) -> dict:
        port = _procs.free_port()
        argv = [sys.executable, "-m", "ketch_server", "--port", str(port), "--data-dir", str(data)]
        argv += ["--log-level", "WARNING", "--auth", "token", *(["--db", db] if db else [])]
        with running(Server(argv, data / "server.log", port)) as server:
            server.wait_tcp(timeout=60)
            uri = f"grpc://{HOST}:{port}"
            where = ["--db", db] if db else ["--data-dir", str(data)]
            tokens = ketch_tokens(uri, where)
            kwargs = {
                "uri": uri,
                "tokens": tokens,
                "threads": self.args.threads,
                "calls": self.args.calls,
                "moves": self.args.moves,
                "approvals": self.args.approvals,
                "solo": self.args.solo_calls,
                **self._paced(),
            }
            result = run_worker(sys.executable, "ketch_registry", kwargs, timeout=self.args.timeout)
            result["server_cpu_s"] = _procs.tree_cpu_s(server.proc.pid)
        return result

    def _mlflow(self, data: pathlib.Path) -> dict:
        """An MLflow server with its defaults (4 uvicorn workers) on SQLite."""
        python, port = self.args.mlflow_python, _procs.free_port()
        store = f"sqlite:///{data / 'mlflow.db'}"
        argv = [python, "-m", "mlflow", "server", "--backend-store-uri", store]
        argv += ["--default-artifact-root", str(data / "artifacts"), "--host", HOST]
        argv += ["--port", str(port)]
        with running(Server(argv, data / "server.log", port)) as server:
            server.wait_http("/health", timeout=180)
            _procs.wait_tree_idle(server.proc.pid, max_wait=30)
            kwargs = {
                "uri": f"http://{HOST}:{port}",
                "threads": self.args.threads,
                "calls": self.args.mlflow_calls,
                "moves": self.args.mlflow_moves,
                "solo": self.args.mlflow_solo_calls,
            }
            return run_worker(python, "mlflow_registry", kwargs, timeout=self.args.timeout)


def ketch_tokens(uri: str, where: list[str]) -> dict[str, str]:
    """An admin token made on the database (the bootstrap), then a writer and an
    approver token made through the server with it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}
    env["KETCH_TRACKING_URI"] = uri

    def create(name: str, role: str, extra: list[str], token: str | None) -> str:
        argv = [sys.executable, "-m", "ketch._cli", "admin", "token", "create", *extra]
        argv += ["--name", name, "--role", role]
        run_env = {**env, **({"KETCH_API_TOKEN": token} if token else {})}
        done = subprocess.run(argv, capture_output=True, text=True, env=run_env, check=False)
        if done.returncode != 0:
            raise BenchError(f"ketch admin token create failed: {done.stderr.strip()}")
        return done.stdout.split()[-1]

    admin = create("root", "admin", where, None)
    return {
        "admin": admin,
        "writer": create("ci-bot", "writer", [], admin),
        "approver": create("alice", "approver", [], admin),
    }


# ----------------------------------------------------------------- report


def median_of(results: list[dict], phase: str, field: str) -> float | None:
    values = [r[phase][field] for r in results if phase in r and r[phase][field] is not None]
    return statistics.median(values) if values else None


def cell(results: list[dict], phase: str) -> str:
    p50, p99 = median_of(results, phase, "p50_ms"), median_of(results, phase, "p99_ms")
    rate = median_of(results, phase, "rate")
    if p50 is None or rate is None:
        return "—"
    return f"{p50:,.2f} / {p99:,.1f} ms · {rate:,.0f}/s"


def ratio(results: dict[str, list[dict]], case: str, phase: str) -> float | None:
    """ketch's calls/s over MLflow's, unrounded (None when either is missing)."""
    ours = median_of(results.get(case, []), phase, "rate")
    theirs = median_of(results.get("mlflow-sqlite", []), phase, "rate")
    return ours / theirs if ours and theirs else None


def speedup(results: dict[str, list[dict]], case: str, phase: str) -> str:
    r = ratio(results, case, phase)
    if r is None:
        return "—"
    return f"{r:,.0f}x" if r >= 20 else f"{r:.1f}x"  # 9.66 must not read as 10


def render_table(
    results: dict[str, list[dict]], cases: list[str], threads: int, paced_rate: float
) -> str:
    ketch_cases = [c for c in cases if c.startswith("ketch")]
    headers = ["operation", *(LABELS[c] for c in cases)]
    headers += [f"{LABELS[c].split(' · ')[1]} ÷ MLflow calls/s" for c in ketch_cases]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    for phase, label in PHASES.items():
        name = label if phase.endswith("_solo") else f"{label}, {threads} clients"
        if phase.endswith("_paced"):
            name = f"{name}, {paced_rate:,.0f} calls/s offered"
        row = [name, *(cell(results[c], phase) for c in cases)]
        row += [speedup(results, c, phase) for c in ketch_cases]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets(results: dict[str, list[dict]]) -> list[str]:
    """The issue's targets, checked against the medians."""
    out = []
    for case in ("ketch-sqlite", "ketch-postgres"):
        if not results.get(case):
            continue
        for phase in (
            "resolve_alias_solo",
            "resolve_stage",
            "resolve_alias",
            "resolve_alias_paced",
        ):
            p50 = median_of(results[case], phase, "p50_ms")
            p99 = median_of(results[case], phase, "p99_ms")
            if p50 is None or p99 is None:
                continue
            met = "met" if p50 <= 5 and p99 <= 50 else "NOT met"
            out.append(
                f"- {LABELS[case]}, {PHASES[phase]}: p50 {p50:.2f} ms (≤ 5), "
                f"p99 {p99:.1f} ms (≤ 50): {met}"
            )
        for phase in ("resolve_alias", "alias_move"):
            r = ratio(results, case, phase)
            if r is not None:
                met = "met" if r >= 10 else "NOT met"
                shown = speedup(results, case, phase)
                out.append(f"- {LABELS[case]}, {PHASES[phase]}: {shown} MLflow (≥ 10x): {met}")
    return out


def raw_lines(results: dict[str, list[dict]]) -> list[str]:
    out = [
        "| case | rep | load before | phase | calls | failed | wall s | calls/s | p50 ms | p99 ms |"
    ]
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for case, reps in results.items():
        for i, r in enumerate(reps, 1):
            for phase in PHASES:
                if phase not in r:
                    continue
                s = r[phase]
                out.append(
                    f"| {LABELS[case]} | {i} | {r.get('load_before', 0):.1f} | {PHASES[phase]} | "
                    f"{s['calls']} | {s['failed']} | "
                    f"{s['seconds']:.2f} | {s['rate']:,.0f} | {s['p50_ms']:.2f} | "
                    f"{s['p99_ms']:.1f} |"
                )
    return out


def results_md(bench: Bench, table: str, meta: dict) -> str:
    lines = [
        "# Registry benchmark: ketch vs MLflow",
        "",
        f"Run {meta['date']} on {meta['machine']['nproc']} CPUs ({meta['machine']['CPU']}, "
        f"{meta['machine']['memory']}, {meta['machine']['OS']}); ketch at {meta['git']}.",
        "",
        "Medians of the repetitions; each cell is `p50 / p99 latency · calls per second` "
        f"of 1 or {bench.args.threads} client threads in one process, each with its own channel "
        "(ketch, token auth) or HTTP session (MLflow 4 uvicorn workers, its default).",
        "",
        table,
        "",
        "Every client waits for its answer before it asks again (a closed loop), so with "
        "N clients the median latency is about N ÷ throughput (Little's law): 50 clients "
        "at 5 ms each would need 10,000 calls/s. The 1-client row is the latency of one "
        "call on an otherwise idle server. The client threads share one Python process and "
        "the machine's cores with the server (and, for PostgreSQL, the database), so "
        "calls/s is bounded by client + server CPU per call; `load before` in the "
        "repetitions table is the 1-minute load average when each case started. The "
        "`bare grpc.aio` column is that bound with nothing behind it: the same clients "
        "calling grpc.health.v1 Check on a server that holds only the health service. "
        "The paced row offers a fixed load instead of a closed loop: the same clients call "
        "at fixed times, together the given calls/s, and each latency counts from when "
        "the call was due, so queueing behind a slow server is charged to it.",
        "",
        "Targets from the issue:",
        "",
        *targets(bench.results),
        "",
        "Rerun:",
        "",
        "```bash",
        meta["command"],
        "```",
        "",
        "## Versions",
        "",
        *(
            f"- {side}: " + ", ".join(f"{k} {v}" for k, v in found.items())
            for side, found in meta["versions"].items()
        ),
        "",
        "## Repetitions",
        "",
        *raw_lines(bench.results),
    ]
    failures = [f"- {c}: {e}" for c, errs in bench.errors.items() for e in errs]
    if failures:
        lines += ["", "## Failures", "", *failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
    pg_version = pg.available() if "ketch-postgres" in args.cases else None
    if "ketch-postgres" in args.cases and not pg_version:
        log("PostgreSQL unreachable: skipping ketch-postgres")
        args.cases.remove("ketch-postgres")
    found = {
        "ketch side": run_worker(sys.executable, "versions", {"names": KETCH_PACKAGES}, timeout=60)
    }
    if "mlflow-sqlite" in args.cases:
        found["MLflow side"] = run_worker(
            args.mlflow_python, "versions", {"names": MLFLOW_PACKAGES}, timeout=60
        )
    if pg_version:
        found["PostgreSQL server"] = {"postgresql": pg_version}
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": _report.machine(),
        "git": _report.git_state(HERE.parent),
        "versions": found,
    }
    work = pathlib.Path(tempfile.mkdtemp(prefix="ketch-regbench-"))
    started = time.monotonic()
    bench = Bench(args, work, pg)
    try:
        bench.run()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table = render_table(bench.results, args.cases, args.threads, args.paced_rate)
    print(table)
    print("\n".join(targets(bench.results)))
    args.output.write_text(results_md(bench, table, meta))
    log(f"wrote {args.output} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
