"""The ``ketch`` command: run the server, migrate its database, and inspect runs.

Usage::

    ketch server [--port 50051] [--data-dir DIR] [--db URL]
    ketch server status [--json]
    ketch db upgrade [--db URL] [--data-dir DIR]
    ketch db current [--db URL] [--data-dir DIR]
    ketch experiments list [--all | --deleted] [--json]
    ketch runs list [--experiment NAME] [--filter EXPR] [--order-by KEY ...] [--max N] [--json]
    ketch runs show RUN_ID [--packages] [--json]
    ketch runs compare RUN_ID RUN_ID [...] [--json]
    ketch runs plot RUN_ID [...] --key KEY [...] [--max-points N] [--out FILE.png]
    ketch lineage NODE [--direction up|down|both] [--depth N] [--format tree|dot|mermaid|json]
    ketch artifacts list RUN [PATH] | upload RUN LOCAL [--path P] | download RUN [PATH] [--dst D]
    ketch admin whoami | token create --name N --role R [--ttl 30d] | token list | token revoke ID
    ketch models create|list|show|register|alias|policy|request|approve|reject|watch|history ...

Commands that talk to a server take ``--uri`` (default KETCH_TRACKING_URI, else
``grpc://127.0.0.1:50051``). SDK errors print ``ketch: <message>`` on stderr and
exit 1; usage errors exit 2; ``ketch models`` also exits 3 (not found), 4 (denied),
5 (policy not met) and 6 (conflict), see :mod:`ketch._models_cli`. ``--json``
writes one strict JSON document on stdout: times are ISO-8601 UTC strings and
NaN/±inf are the strings "NaN", "Infinity" and "-Infinity".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import pathlib
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from ketch import _terminal, errors
from ketch._admin_cli import add_admin_command
from ketch._artifacts_cli import add_artifacts_command
from ketch._client import Client
from ketch._config import DEFAULT_URI
from ketch._lineage_view import add_lineage_command
from ketch._models_cli import add_models_command
from ketch._status_cli import add_status_command
from ketch._types import Experiment, RunRecord

__all__ = ["main"]

_SERVER_MISSING = "the server is not installed: pip install 'ketch[server]'"
_MAX_CELL = 40
_MAX_DETAIL = 120
_METRIC_COLUMNS = 4
_PARAM_COLUMNS = 3


# ------------------------------------------------------------------ entry


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``ketch`` command with ``argv`` (default ``sys.argv[1:]``); exits the process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["server"] and argv[1:2] != ["status"]:
        _serve(argv[1:])
        return
    args = _parser().parse_args(argv)
    # What others typed (names, tags, comments, server messages) must not steer the
    # terminal: both streams escape control characters (see ketch._terminal).
    streams = sys.stdout, sys.stderr
    sys.stdout = _terminal.EscapingWriter(streams[0])
    sys.stderr = _terminal.EscapingWriter(streams[1], keep_cr=True)
    try:
        code = args.handler(args)
    except errors.KetchError as exc:
        _fail(_explain(exc, args))
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # e.g. `ketch runs list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    finally:  # the writers hold nothing back: nothing to flush
        sys.stdout, sys.stderr = streams
    sys.exit(code or 0)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"ketch: {message}", file=sys.stderr)
    sys.exit(code)


def _explain(exc: errors.KetchError, args: argparse.Namespace) -> str:
    """The message for an SDK error; unreachable servers name the URI and the fix."""
    if isinstance(exc, errors.Unavailable):
        detail = exc.message.removesuffix(" (is the ketch server running and reachable?)")
        return (
            f"cannot reach the ketch server at {_uri(args)}: {detail}\n"
            "Start one with `ketch server`, or point --uri / KETCH_TRACKING_URI at a "
            "running server."
        )
    if isinstance(exc, errors.DeadlineExceeded):
        return (
            f"the ketch server at {_uri(args)} did not answer within {args.timeout:g}s "
            "(--timeout sets the limit)"
        )
    return exc.message


def _uri(args: argparse.Namespace) -> str:
    return getattr(args, "uri", None) or os.environ.get("KETCH_TRACKING_URI") or DEFAULT_URI


def _client(args: argparse.Namespace) -> Client:
    return Client(_uri(args), timeout=args.timeout)


# ----------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ketch", description="ketch experiment tracking: server and command-line client."
    )
    parser.add_argument("--uri", help="server URI (default KETCH_TRACKING_URI)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server = commands.add_parser(
        "server", help="run the ketch server (ketch server --help)", add_help=False
    )
    server.set_defaults(handler=lambda _args: _serve([]))
    add_status_command(server, _remote_options(), _uri)
    _add_db(commands)
    _add_experiments(commands, _remote_options())
    _add_runs(commands, _remote_options())
    add_lineage_command(commands, _remote_options(), _client)
    add_artifacts_command(commands, _remote_options(), _client)
    add_admin_command(commands, _remote_options(), _client)
    add_models_command(commands, _remote_options(), _client)
    _add_sync(commands)
    return parser


def _remote_options() -> argparse.ArgumentParser:
    """Options shared by commands that talk to a server."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--uri",
        default=argparse.SUPPRESS,
        help="server URI, grpc://host:port (default KETCH_TRACKING_URI)",
    )
    common.add_argument(
        "--timeout", type=float, default=30.0, help="seconds each call may take (default 30)"
    )
    common.add_argument("--json", action="store_true", help="write JSON to stdout")
    return common


def _add_db(commands) -> None:
    db = commands.add_parser("db", help="manage the server's database")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("upgrade", "apply schema migrations"),
        ("current", "print the schema revision"),
    ):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("--db", help="database URL (default: SQLite in --data-dir) [env KETCH_DB]")
        sub.add_argument(
            "--data-dir",
            type=pathlib.Path,
            help="server data directory (default ./ketch-data) [env KETCH_HOME]",
        )
        sub.set_defaults(handler=_db_upgrade if name == "upgrade" else _db_current)


def _add_experiments(commands, common: argparse.ArgumentParser) -> None:
    exps = commands.add_parser("experiments", help="list experiments")
    actions = exps.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub = actions.add_parser("list", parents=[common], help="list experiments")
    view = sub.add_mutually_exclusive_group()
    view.add_argument(
        "--all",
        action="store_const",
        dest="view",
        const="all",
        default="active",
        help="include deleted experiments",
    )
    view.add_argument(
        "--deleted",
        action="store_const",
        dest="view",
        const="deleted",
        help="only deleted experiments",
    )
    sub.set_defaults(handler=_experiments_list)


def _add_runs(commands, common: argparse.ArgumentParser) -> None:
    runs = commands.add_parser("runs", help="list, show and compare runs")
    actions = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[common], help="list runs, newest first")
    ls.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help="only runs of this experiment (repeatable)",
    )
    ls.add_argument(
        "--filter",
        default="",
        metavar="EXPR",
        help="e.g. 'params.lr = \"0.01\" and metrics.val_loss < 0.3'",
    )
    ls.add_argument(
        "--order-by",
        nargs="+",
        default=[],
        metavar="KEY",
        help='e.g. "metrics.val_loss ASC" (default: newest first)',
    )
    ls.add_argument(
        "--max",
        type=int,
        default=50,
        metavar="N",
        help="at most N runs (default 50; 0 for no limit)",
    )
    ls.add_argument("--all", action="store_true", help="include deleted runs")
    ls.set_defaults(handler=_runs_list)
    show = actions.add_parser("show", parents=[common], help="everything about one run")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--packages", action="store_true", help="list every installed package")
    show.set_defaults(handler=_runs_show)
    compare = actions.add_parser("compare", parents=[common], help="runs side by side")
    compare.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    compare.set_defaults(handler=_runs_compare)
    _add_plot(actions, common)


# ----------------------------------------------------------------- server


def _serve(argv: list[str]) -> None:
    """``ketch server``: hand the flags to ``python -m ketch_server``."""
    try:
        from ketch_server.__main__ import main as server_main
    except ImportError:
        _fail(_SERVER_MISSING, 2)
    server_main(argv)


def _db_settings(args: argparse.Namespace):
    """The server's settings for --db / --data-dir (else KETCH_DB / KETCH_HOME, as it does)."""
    try:
        from ketch_server.settings import from_args
    except ImportError:
        _fail(_SERVER_MISSING, 2)
    return from_args(argparse.Namespace(db_url=args.db, data_dir=args.data_dir))


def _db_upgrade(args: argparse.Namespace) -> int:
    """``ketch db upgrade``: migrate the database to the latest schema."""
    url = _db_settings(args).database_url
    print(f"upgrading {_redact(url)}")
    revision = _run_db(url, upgrade=True)
    print(f"database at revision {revision}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    """``ketch db current``: print the schema revision (1 when there is no schema)."""
    url = _db_settings(args).database_url
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        print(f"no database at {path}; run `ketch db upgrade`")
        return 1
    revision = _run_db(url, upgrade=False)
    if revision is None:
        print(f"{_redact(url)} has no schema yet; run `ketch db upgrade`")
        return 1
    print(f"database at revision {revision}")
    return 0


def _run_db(url: str, *, upgrade: bool) -> str | None:
    """Optionally migrate, then return the revision; database errors exit 1."""
    try:
        from ketch_server.store.engine import create_engine, current_revision, upgrade_schema
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:
        _fail(_SERVER_MISSING, 2)

    async def work() -> str | None:
        engine = create_engine(url)
        try:
            if upgrade:
                await upgrade_schema(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(work())
    except (SQLAlchemyError, ValueError, OSError) as exc:
        _fail(f"database {_redact(url)}: {exc}")


def _sqlite_file(url: str) -> pathlib.Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return pathlib.Path(parsed.database)


def _redact(url: str) -> str:
    from ketch_server.store.engine import redact_url

    return redact_url(url)


# ------------------------------------------------------------ experiments


def _experiments_list(args: argparse.Namespace) -> int:
    """``ketch experiments list``."""
    with _client(args) as client:
        exps = list(client.list_experiments(view=args.view))
    if args.json:
        _print_json({"experiments": [_experiment_json(e) for e in exps]})
        return 0
    headers = ["id", "name", "created", "description"]
    if args.view != "active":
        headers.insert(2, "deleted")
    rows = [_experiment_row(e, deleted=args.view != "active") for e in exps]
    _print_table(headers, rows, empty="no experiments")
    return 0


def _experiment_row(exp: Experiment, *, deleted: bool) -> list[str]:
    row = [exp.id, exp.name, _local(exp.create_time), exp.description]
    if deleted:
        row.insert(2, "yes" if exp.deleted else "")
    return row


def _experiment_json(exp: Experiment) -> dict[str, Any]:
    return {
        "id": exp.id,
        "name": exp.name,
        "description": exp.description,
        "deleted": exp.deleted,
        "create_time": _iso(exp.create_time),
    }


# ------------------------------------------------------------------- runs


def _runs_list(args: argparse.Namespace) -> int:
    """``ketch runs list``: newest first unless --order-by says otherwise."""
    with _client(args) as client:
        runs = client.search_runs(
            args.filter,
            args.order_by or ["start_time DESC"],
            experiment_names=args.experiment,
            view="all" if args.all else "active",
            max_results=args.max if args.max > 0 else sys.maxsize,
        )
        names = _experiment_names(client) if args.json else {}
    if args.json:
        _print_json({"runs": [_run_json(r, names.get(r.experiment_id, "")) for r in runs]})
        return 0
    metrics = _common_keys([r.metrics for r in runs], _METRIC_COLUMNS)
    params = _common_keys([r.params for r in runs], _PARAM_COLUMNS, varying_first=True)
    headers = ["id", "name", "state", "start time", "duration", *metrics, *params]
    rows = [_run_row(r, metrics, params) for r in runs]
    _print_table(headers, rows, empty="no runs")
    return 0


def _run_row(run: RunRecord, metrics: list[str], params: list[str]) -> list[str]:
    state = f"{run.state} (deleted)" if run.deleted else run.state
    row = [run.id[:12], run.name, state, _local(run.start_time), _duration(run)]
    row += [_num(run.metrics[k].last) if k in run.metrics else "" for k in metrics]
    row += [run.params.get(k, "") for k in params]
    return row


def _common_keys(
    dicts: list[dict[str, Any]], limit: int, *, varying_first: bool = False
) -> list[str]:
    """The ``limit`` keys present in most dicts; ties go to keys whose values vary
    (when ``varying_first``), then to the first seen."""
    counts: Counter[str] = Counter(k for d in dicts for k in d)
    order = {key: i for i, key in enumerate(counts)}

    def rank(key: str) -> tuple[int, int, int]:
        distinct = len({str(d.get(key)) for d in dicts}) if varying_first else 0
        return (-counts[key], -min(distinct, 2), order[key])

    return sorted(counts, key=rank)[:limit]


def _experiment_names(client: Client) -> dict[str, str]:
    return {e.id: e.name for e in client.list_experiments(view="all")}


def _runs_show(args: argparse.Namespace) -> int:
    """``ketch runs show RUN_ID``."""
    with _client(args) as client:
        run = client.get_run(args.run_id)
        experiment = client.get_experiment(run.experiment_id).name
    if args.json:
        _print_json(_run_json(run, experiment, packages=True))
        return 0
    print(_show_text(run, experiment, packages=args.packages))
    return 0


def _show_text(run: RunRecord, experiment: str, *, packages: bool) -> str:
    """The sections of ``runs show`` as text."""
    sections = [
        _table(None, _overview(run, experiment), max_cell=_MAX_DETAIL),
        _section("params", None, sorted(run.params.items())),
        _section("tags", None, sorted(run.tags.items())),
        _section("metrics", ["key", "last", "step", "min", "max", "count"], _metric_rows(run)),
        _section("writers", ["rank", "host", "points", "writer"], _writer_rows(run)),
        _section("source", None, _source_rows(_source(run.source))),
        _section("environment", None, _environment_rows(_environment(run.environment))),
    ]
    if packages:
        sections.append(_section("packages", None, [[p] for p in _packages(run.environment)]))
    return "\n\n".join(sections)


def _section(title: str, headers: list[str] | None, rows: Sequence[Sequence[Any]]) -> str:
    body = _table(headers, rows, indent=2, max_cell=_MAX_DETAIL) if rows else "  (none)"
    return f"{title}\n{body}"


def _overview(run: RunRecord, experiment: str) -> list[list[str]]:
    return [
        ["run", run.id],
        ["experiment", f"{experiment} ({run.experiment_id})"],
        ["name", run.name],
        ["state", f"{run.state} (deleted)" if run.deleted else run.state],
        ["created by", run.created_by],
        ["user", run.user],
        ["started", _local(run.start_time, seconds=True)],
        ["ended", _local(run.end_time, seconds=True)],
        ["duration", _duration(run)],
        ["parent", run.parent_run_id or ""],
        ["ranks", ", ".join(str(r) for r in run.ranks)],
    ]


def _writer_rows(run: RunRecord) -> list[list[str]]:
    return [[str(w.rank), w.host, f"{w.points:,}", w.writer_id] for w in run.writers]


def _metric_rows(run: RunRecord) -> list[list[str]]:
    return [
        [m.key, _num(m.last), str(m.step), _num(m.min), _num(m.max), str(m.count)]
        for m in sorted(run.metrics.values(), key=lambda m: m.key)
    ]


def _source_rows(src: dict[str, Any]) -> list[list[str]]:
    return [
        ["git commit", src["git_commit"]],
        ["git branch", src["git_branch"]],
        ["git dirty", "yes" if src["git_dirty"] else "no" if src["git_commit"] else ""],
        ["git remote", src["git_remote"]],
        ["entry point", src["entry_point"]],
        ["argv", " ".join(src["argv"])],
    ]


def _environment_rows(env: dict[str, Any]) -> list[list[str]]:
    gpus = ", ".join(f"{g['name']} ({_bytes(g['memory_total_bytes'])})" for g in env["gpus"])
    seed = env["seed"]
    return [
        ["python", env["python_version"]],
        ["platform", env["platform"]],
        ["hostname", env["hostname"]],
        ["cpus", str(env["cpu_count"] or "")],
        ["gpus", gpus or "none"],
        ["gpu driver", env["gpu_driver_version"]],
        ["cuda", env["cuda_version"]],
        ["seed", "" if seed is None else str(seed)],
        ["packages", f"{env['package_count']} (--packages lists them)"],
    ]


def _runs_compare(args: argparse.Namespace) -> int:
    """``ketch runs compare RUN_ID RUN_ID ...``."""
    if len(args.run_ids) < 2:
        _fail("compare needs at least two run ids", 2)
    with _client(args) as client:
        runs = [client.get_run(run_id) for run_id in args.run_ids]
        names = _experiment_names(client)
    differing = _differing(r.params for r in runs)
    if args.json:
        _print_json(
            {
                "runs": [_run_json(r, names.get(r.experiment_id, "")) for r in runs],
                "differing_params": differing,
            }
        )
        return 0
    print(_table(["", *(r.name or r.id[:12] for r in runs)], _compare_rows(runs, differing)))
    if differing:
        print("\n* differs between runs")
    return 0


def _compare_rows(runs: list[RunRecord], differing: list[str]) -> list[list[str]]:
    rows = [
        ["id", *(r.id[:12] for r in runs)],
        ["state", *(r.state for r in runs)],
        ["duration", *(_duration(r) for r in runs)],
    ]
    for key in sorted({k for r in runs for k in r.params}):
        label = f"* params.{key}" if key in differing else f"  params.{key}"
        rows.append([label, *(r.params.get(key, "-") for r in runs)])
    for key in sorted({k for r in runs for k in r.metrics}):
        values = [_num(r.metrics[key].last) if key in r.metrics else "-" for r in runs]
        rows.append([f"  metrics.{key}", *values])
    return rows


def _differing(params: Iterable[dict[str, str]]) -> list[str]:
    """Param keys whose value (or presence) is not the same in every run."""
    dicts = list(params)
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({d.get(k) for d in dicts}) > 1]


# ------------------------------------------------------------------- plot


def _add_plot(actions, common: argparse.ArgumentParser) -> None:
    plot = actions.add_parser("plot", parents=[common], help="plot metric curves of runs")
    plot.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    plot.add_argument(
        "--key", action="append", required=True, metavar="KEY", help="metric (repeatable)"
    )
    plot.add_argument(
        "--max-points",
        type=int,
        default=200,
        metavar="N",
        help="points per curve, keeping each stretch's min and max (default 200; 0: all)",
    )
    plot.add_argument("--out", metavar="FILE.png", help="also write a PNG (needs matplotlib)")
    plot.add_argument("--width", type=int, help="plot columns (default: fit the terminal)")
    plot.add_argument("--height", type=int, default=12, help="plot rows (default 12)")
    plot.set_defaults(handler=_runs_plot)


def _runs_plot(args: argparse.Namespace) -> int:
    """``ketch runs plot RUN_ID ... --key KEY ...``: curves in the terminal, or a PNG too."""
    from ketch import _plot

    if (args.width is not None and args.width < 10) or args.height < 3:
        _fail("--width must be at least 10 and --height at least 3", 2)
    if args.out and not _plot.can_write_png():
        _fail(_plot.PNG_MISSING)
    keys = list(dict.fromkeys(args.key))
    with _client(args) as client:
        runs = {r.id: r for r in (client.get_run(run_id) for run_id in args.run_ids)}
        histories = client.get_metric_histories_for_runs(
            list(runs), keys, max_points=args.max_points
        )
    if args.json:
        _print_json({"series": [_plot.history_json(h) for h in histories.values()]})
        return 0
    labels = {r.id: f"{r.name} ({r.id[:12]})" for r in runs.values()}
    panels = _plot.panels(keys, labels, histories)
    width = args.width or _plot.default_width()
    glyphs = _plot.glyphs_for(sys.stdout)
    print(_plot.render_panels(panels, width=width, height=args.height, glyphs=glyphs))
    if args.out:
        _plot.write_png(args.out, panels)
        print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------------- JSON


def _run_json(run: RunRecord, experiment: str, *, packages: bool = False) -> dict[str, Any]:
    """A run as a JSON object with stable keys (``packages`` adds the package list)."""
    env = _environment(run.environment)
    if not packages:
        del env["packages"]
    return {
        "id": run.id,
        "experiment_id": run.experiment_id,
        "experiment": experiment,
        "name": run.name,
        "state": run.state,
        "deleted": run.deleted,
        "user": run.user,
        "created_by": run.created_by,
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
        "duration_seconds": _seconds(run),
        "parent_run_id": run.parent_run_id,
        "params": dict(sorted(run.params.items())),
        "tags": dict(sorted(run.tags.items())),
        "metrics": {
            m.key: {"last": m.last, "step": m.step, "min": m.min, "max": m.max, "count": m.count}
            for m in sorted(run.metrics.values(), key=lambda m: m.key)
        },
        "source": _source(run.source),
        "environment": env,
        "ranks": run.ranks,
        "writers": [
            {"writer_id": w.writer_id, "rank": w.rank, "host": w.host, "points": w.points}
            for w in run.writers
        ],
    }


def _source(raw: dict[str, Any]) -> dict[str, Any]:
    """RunSource with every key present (the SDK omits defaults)."""
    return {
        "git_commit": raw.get("git_commit", ""),
        "git_branch": raw.get("git_branch", ""),
        "git_dirty": bool(raw.get("git_dirty", False)),
        "git_remote": raw.get("git_remote", ""),
        "entry_point": raw.get("entry_point", ""),
        "argv": list(raw.get("argv", [])),
    }


def _environment(raw: dict[str, Any]) -> dict[str, Any]:
    """RunEnvironment with every key present and int64 fields as ints."""
    seed = raw.get("seed")
    return {
        "python_version": raw.get("python_version", ""),
        "platform": raw.get("platform", ""),
        "hostname": raw.get("hostname", ""),
        "cpu_count": int(raw.get("cpu_count", 0)),
        "gpus": [
            {
                "name": g.get("name", ""),
                "memory_total_bytes": int(g.get("memory_total_bytes", 0)),
                "uuid": g.get("uuid", ""),
            }
            for g in raw.get("gpus", [])
        ],
        "gpu_driver_version": raw.get("gpu_driver_version", ""),
        "cuda_version": raw.get("cuda_version", ""),
        "seed": None if seed is None else int(seed),
        "package_count": len(_packages(raw)),
        "packages": _packages(raw),
    }


def _packages(raw: dict[str, Any]) -> list[str]:
    return list(raw.get("packages", []))


def _print_json(doc: Any) -> None:
    print(json.dumps(_strict(doc), indent=2, allow_nan=False))


def _strict(value: Any) -> Any:
    """``value`` with NaN and ±inf floats replaced by strings (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _iso(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------- values


def _local(when: dt.datetime | None, *, seconds: bool = False) -> str:
    if when is None:
        return ""
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _seconds(run: RunRecord) -> float | None:
    """Run time so far (until now while it runs), or None without a start time."""
    if run.start_time is None:
        return None
    end = run.end_time or dt.datetime.now(dt.timezone.utc)
    return max((end - run.start_time).total_seconds(), 0.0)


def _duration(run: RunRecord) -> str:
    secs = _seconds(run)
    if secs is None:
        return ""
    if secs < 60:
        return f"{secs:.1f}s"
    minutes, sec = divmod(int(secs), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _num(value: float) -> str:
    """A metric value in at most 6 significant digits."""
    return format(value, ".6g")


def _bytes(n: int) -> str:
    return f"{n / 2**30:.0f} GiB" if n else "?"


# ----------------------------------------------------------------- tables


def _table(
    headers: Sequence[str] | None,
    rows: Sequence[Sequence[Any]],
    *,
    indent: int = 0,
    max_cell: int = _MAX_CELL,
) -> str:
    """Rows as aligned columns (widths from content; long cells end in "…")."""
    lines = [[_cell(h, max_cell) for h in headers]] if headers else []
    lines += [[_cell(c, max_cell) for c in row] for row in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    pad = " " * indent
    return "\n".join(
        pad + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value: Any, limit: int) -> str:
    text = "" if value is None else str(value).replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    print(_table(headers, rows) if rows else empty)


# ------------------------------------------------------------------- sync


def _add_sync(commands) -> None:
    sync = commands.add_parser(
        "sync",
        help="upload spooled runs (offline runs, or points spooled while the server was away)",
    )
    sync.add_argument(
        "path",
        nargs="?",
        help="a spool directory or a folder of them (default KETCH_SPOOL_DIR or ~/.ketch/spool)",
    )
    sync.add_argument(
        "--uri",
        default=argparse.SUPPRESS,
        help="server URI (default: the one recorded in the spool, else KETCH_TRACKING_URI)",
    )
    sync.add_argument("--force", action="store_true", help="upload again spools already synced")
    sync.add_argument("--timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    sync.set_defaults(handler=_sync)


def _sync(args: argparse.Namespace) -> int:
    """``ketch sync [PATH]``: upload every spool found, with a progress bar on stderr."""
    from ketch import _spool
    from ketch import _sync as syncing

    root = pathlib.Path(args.path) if args.path else _spool.default_root()
    spools = syncing.find_spools(root)
    if not spools:
        print(f"nothing to sync under {root}")
        return 0
    for directory in spools:
        bar = _ProgressBar(directory.name)
        result = syncing.sync_spool(
            directory, uri=getattr(args, "uri", None), force=args.force, progress=bar
        )
        bar.close()
        if result.skipped:
            print(f"{directory.name}: already synced to run {result.run_id} (--force to resend)")
        else:
            print(f"{directory.name}: {result.points:,} points -> run {result.run_id}")
    return 0


class _ProgressBar:
    """A one-line progress bar on stderr: ``name [#####.....] 52% 520,000/1,000,000``."""

    def __init__(self, label: str, width: int = 30) -> None:
        self.label = label
        self.width = width
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // total if total else self.width
        percent = 100 * done // total if total else 100
        bar = "#" * filled + "." * (self.width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {percent:3d}% {done:,}/{total:,} points")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


if __name__ == "__main__":
    main()
