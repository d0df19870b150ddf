"""The ingest benchmark's table and results.md: medians, ratios to ketch, context."""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import platform
import statistics
import subprocess

REFERENCE = "ketch-sqlite"


@dataclasses.dataclass
class Row:
    """One line of the table: a system and API, and its results per repetition."""

    key: str
    label: str
    results: list[dict] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def median(self, field: str) -> float | None:
        """Median of ``field`` over the repetitions that have it."""
        values = [r[field] for r in self.results if r.get(field) is not None]
        return statistics.median(values) if values else None

    def rate(self) -> float | None:
        """Median durable points per second."""
        rates = [r["points"] / r["seconds"] for r in self.results]
        return statistics.median(rates) if rates else None

    def read_rate(self) -> float | None:
        """Median history points read per second."""
        rates = [r["read_points"] / r["read_s"] for r in self.results if r.get("read_s")]
        return statistics.median(rates) if rates else None

    def cpu_us_per_point(self, side: str) -> float | None:
        """Median CPU µs per point of the client or the server."""
        per = [r[f"{side}_cpu_s"] / r["points"] * 1e6 for r in self.results]
        return statistics.median(per) if per else None


# ------------------------------------------------------------------ cells


def num(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def ratio(x: float | None, ref: float | None) -> str:
    """`` (r x)`` with r = x / ref, or nothing when either is missing."""
    if x is None or not ref:
        return ""
    r = x / ref
    return f" ({r:.2f}x)" if r >= 0.1 else f" ({r:.2g}x)"


def points(n: float | None) -> str:
    if n is None:
        return "—"
    if n >= 1e6:
        return f"{n / 1e6:g}M"
    return f"{n / 1e3:g}k" if n >= 1e3 else f"{n:g}"


def _call_cells(row: Row, ref: Row | None) -> list[str]:
    """Per-call median and p99 (µs); log_batch rows give ms per 1000-point call."""
    if row.median("batch_median_us") is not None:
        size = int(row.median("batch_points") or 0)
        return [
            f"{row.median('batch_median_us') / 1e3:,.0f} ms per {size}-point call",
            f"{row.median('batch_p99_us') / 1e3:,.0f} ms",
        ]
    return [
        num(row.median(f), 1) + ratio(row.median(f), ref and ref.median(f))
        for f in ("call_median_us", "call_p99_us")
    ]


def _cpu_cell(row: Row, ref: Row | None) -> str:
    client, server = row.cpu_us_per_point("client"), row.cpu_us_per_point("server")
    if client is None or server is None:
        return "—"
    total = client + server
    ref_total = ref and ref.cpu_us_per_point("client") + ref.cpu_us_per_point("server")
    return f"{client:,.1f} + {server:,.1f}{ratio(total, ref_total)}"


def _read_cell(row: Row, ref: Row | None) -> str:
    seconds = row.median("read_s")
    if seconds is None:
        return "n/a (offline)" if row.key == "wandb" else "—"
    count = points(row.median("read_points"))
    rate = row.read_rate()
    return f"{seconds:,.2f} s for {count} = {num(rate)}/s{ratio(rate, ref and ref.read_rate())}"


def _rss_cell(row: Row, ref: Row | None) -> str:
    value = row.median("server_rss_mib")
    cell = num(value) + ratio(value, ref and ref.median("server_rss_mib"))
    if row.key == "wandb":
        return f"{cell} (wandb-core)"
    tree = row.median("server_tree_rss_mib")
    return f"{cell}; tree {num(tree)}" if tree is not None else cell


def row_cells(row: Row, ref: Row | None) -> list[str]:
    return [
        row.label,
        f"{points(row.median('points'))} x {len(row.results)}",
        num(row.rate()) + ratio(row.rate(), ref and ref.rate()),
        *_call_cells(row, ref),
        num(row.median("finish_s"), 2),
        _cpu_cell(row, ref),
        _read_cell(row, ref),
        _rss_cell(row, ref),
        num(row.median("client_rss_mib")),
    ]


HEADER = [
    "system · backend · API",
    "points x runs",
    "durable points/s",
    "call median µs",
    "call p99 µs",
    "finish / drain s",
    "CPU µs/point client + server",
    "history read",
    "server peak RSS MiB",
    "client peak RSS MiB",
]


def render_table(rows: list[Row]) -> str:
    """The markdown table of medians, with (value / ketch-SQLite value) in parentheses."""
    ref = next((r for r in rows if r.key == REFERENCE and r.results), None)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        if row.results:
            lines.append("| " + " | ".join(row_cells(row, ref)) + " |")
        elif row.errors:
            blank = ["—"] * (len(HEADER) - 2)
            lines.append("| " + " | ".join([row.label, "failed", *blank]) + " |")
    return "\n".join(lines)


LEGEND = """\
Medians over the repetitions; `(r x)` = this row's value / ketch-SQLite's value
(higher is better for points/s, lower for µs and MiB).

- *durable points/s*: points / seconds from the first log call until the data is durable.
  ketch: `run.finish()` returned (it waits for the server's commit acks); MLflow
  `log_batch`: the last call returned; MLflow async: `mlflow.flush_async_logging()`
  returned; W&B: `wandb.finish()` returned (offline: a local `.wandb` file, no server).
- *call µs*: EVERY call of `run.log` / `mlflow.log_metrics(..., synchronous=False)` /
  `wandb.log` (5 keys at one step; the dict is built outside the timed span) timed with
  `perf_counter_ns`; for MLflow `log_batch`, one call of 1000 metrics.
- *finish / drain s*: `run.finish()` / `flush_async_logging()` / `wandb.finish()` alone.
- *CPU µs/point*: user + system CPU of the client process (all threads) and of the server
  process tree (W&B: its `wandb-core` service) over the same span, per point. It is
  far less sensitive than wall time to other load on the machine. PostgreSQL's own
  backends are not in it (see "other CPU" below).
- *history read*: ketch `Client.get_metric_histories(run_id)`, all 5 keys; MLflow
  `MlflowClient.get_metric_history` of ONE key of the `log_batch` run.
- *server peak RSS*: VmHWM at the end (after the read). ketch: the server process.
  MLflow: the uvicorn worker that serves the API; `tree` sums VmHWM over the whole
  `mlflow server` tree (CLI parent, uvicorn, job runner, huey consumers; shared pages
  counted per process). The async row is the same server after both runs.
  W&B: the `wandb-core` service.
- *client peak RSS*: ru_maxrss of the client process once the data is durable.
- System metrics are off on both sides that have them (`KETCH_SYSTEM_METRICS=0`, W&B
  `x_disable_stats`), and ketch runs with `capture_environment=False`: only the
  benchmark's points are logged. Every run's points are read back and counted."""


# ---------------------------------------------------------------- context


def machine() -> dict[str, str]:
    """nproc, CPU model, memory, OS of this machine."""
    info = pathlib.Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    models = [ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")]
    meminfo = pathlib.Path("/proc/meminfo").read_text().splitlines()
    mem_kib = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal:")), 0)
    return {
        "nproc": str(os.cpu_count()),
        "CPU": models[0] if models else platform.processor(),
        "memory": f"{mem_kib / 1024**2:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
    }


def git_state(repo: pathlib.Path) -> str:
    """HEAD and whether the benchmarked code (client/, server/) has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "client", "server").splitlines()
    if not dirty:
        return f"{head} (clean)"
    return f"{head} + uncommitted changes in {len(dirty)} files under client/ and server/"


def _raw_lines(rows: list[Row]) -> list[str]:
    """Each repetition: rate, wall, CPU, and the load around it."""
    out = [
        "| row | rep | points/s | wall s | client CPU s | server CPU s | other CPU"
        " (cores) | busy before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for i, r in enumerate(row.results, 1):
            other = r.get("other_cpu_s", 0.0) / r["seconds"]
            out.append(
                f"| {row.key} | {i} | {num(r['points'] / r['seconds'])} | {r['seconds']:.2f} "
                f"| {r['client_cpu_s']:.2f} | {r['server_cpu_s']:.2f} | {other:.2f} "
                f"| {r.get('busy_before', 0.0):.0%} |"
            )
    return out


def results_md(rows: list[Row], meta: dict) -> str:
    """results.md: when, where, with what, the exact command, the table and its legend."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# ketch ingest benchmark — {now}", "", "```", meta["command"], "```", ""]
    out += [f"- machine: {', '.join(f'{k} {v}' for k, v in meta['machine'].items())}"]
    out += [f"- ketch code: {meta['git']}"]
    for side, found in meta["versions"].items():
        out += [f"- {side}: " + ", ".join(f"{k} {v}" for k, v in found.items())]
    out += [f"- wall time of the whole benchmark: {meta['elapsed'] / 60:.1f} min", ""]
    out += [render_table(rows), "", LEGEND, "", "## Repetitions", ""]
    out += [
        "*other CPU*: the machine's busy CPU time during the span outside the client and",
        "server tree (PostgreSQL's backends, other users of the machine), in cores. *busy",
        "before*: share of all CPUs busy in the second before the repetition started.",
        "",
        *_raw_lines(rows),
    ]
    failures = [f"- {r.key}: {e.splitlines()[0]}" for r in rows for e in r.errors]
    failures += [
        f"- {r.key} repetition {i}: {res['missing_points']:,} points missing on read-back"
        for r in rows
        for i, res in enumerate(r.results, 1)
        if res.get("missing_points")
    ]
    if failures:
        out += ["", "## Failures", "", *failures]
    return "\n".join(out) + "\n"
