"""``ketch server status``: what the replica at ``--uri`` is doing right now.

Prints version, uptime, database (password hidden) and its connection pool,
the ingest rate over the last ~10 s and since start, open metric streams and
the artifact store; ``--json`` prints the same as one JSON document. Exits 0
when the server answered, 1 (with the reason on stderr) when it did not.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from ketch._operations import ServerStatus, get_server_status
from ketch._transport import Transport

__all__ = ["add_status_command", "format_status"]


def add_status_command(
    server: argparse.ArgumentParser,
    common: argparse.ArgumentParser,
    uri: Callable[[argparse.Namespace], str],
) -> None:
    """Add ``status`` under the ``server`` command; ``uri(args)`` names the server."""
    actions = server.add_subparsers(dest="action", metavar="ACTION")
    status = actions.add_parser(
        "status",
        parents=[common],
        help="status of a running server: version, uptime, database, ingest rate, streams",
        description=(
            "The status of the server replica that answers: version, uptime, database "
            "(password hidden) and connection pool, ingest rate over the last ~10 s and "
            "since start, open metric streams and the artifact store. Exit 1 when it "
            "does not answer."
        ),
    )
    status.set_defaults(handler=lambda args: _status(args, uri(args)))


def _status(args: argparse.Namespace, uri: str) -> int:
    transport = Transport(uri, timeout=args.timeout)
    try:
        status = get_server_status(transport)
    finally:
        transport.close()
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
    else:
        print(format_status(status, uri))
    return 0


def format_status(status: ServerStatus, uri: str) -> str:
    """The human-readable status: one aligned ``label  value`` line per aspect."""
    db, pool, ingest, store = (
        status.database,
        status.database.pool,
        status.ingest,
        status.artifact_store,
    )
    since = f"{status.start_time:%Y-%m-%d %H:%M:%S}"
    rows = [
        ("server", f"ketch {status.version} at {uri} (instance {status.instance})"),
        ("uptime", f"{_duration(status.uptime_seconds)} (since {since} UTC)"),
        ("database", f"{db.dialect}  {db.url}"),
        (
            "pool",
            f"{pool.checked_out} in use, {pool.checked_in} idle, size {pool.size} "
            f"(+{pool.overflow} overflow)",
        ),
        (
            "ingest",
            f"{ingest.points_per_second:,.0f} points/s over the last "
            f"{ingest.window_seconds:.1f} s; {ingest.points_total:,} points in "
            f"{ingest.commits_total:,} commits since start",
        ),
        ("streams", f"{ingest.open_streams} open"),
        ("artifacts", f"{store.kind}  {store.location}"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _duration(seconds: float) -> str:
    """``3d 04h 05m 06s``, leaving out leading zero units (``42s``, ``5m 00s``)."""
    total = int(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m {secs:02d}s"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
