"""``ketch artifacts list|upload|download``: artifacts from the command line."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Callable

from ketch._client import Client

__all__ = ["add_artifacts_command"]


class _BytesBar:
    """A one-line progress bar on stderr: ``name [#####.....] 52% 1.2/2.3 GB 310 MB/s``."""

    def __init__(self, label: str, width: int = 30, stream=None) -> None:
        self.label, self.width = label, width
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        filled = self.width * done // total if total else self.width
        percent = 100 * done // total if total else 100
        rate = done / max(now - self.start, 1e-6)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {percent:3d}% {_human(done)}/{_human(total)} {_human(rate)}/s"
        )
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def add_artifacts_command(
    commands, common: argparse.ArgumentParser, client: Callable[[argparse.Namespace], Client]
) -> None:
    top = commands.add_parser("artifacts", help="list, upload and download run artifacts")
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")

    ls = actions.add_parser("list", parents=[common], help="list a run's artifacts")
    ls.add_argument("run", metavar="RUN", help="run id")
    ls.add_argument("path", metavar="PATH", nargs="?", default="", help="directory to list")
    ls.set_defaults(handler=lambda args: _list(client(args), args))

    up = actions.add_parser("upload", parents=[common], help="upload a file or directory")
    up.add_argument("run", metavar="RUN", help="run id")
    up.add_argument("local", metavar="LOCAL", help="file or directory to upload")
    up.add_argument("--path", default=None, help="artifact directory to upload into")
    up.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    up.set_defaults(handler=lambda args: _upload(client(args), args))

    down = actions.add_parser("download", parents=[common], help="download artifacts")
    down.add_argument("run", metavar="RUN", help="run id")
    down.add_argument("path", metavar="PATH", nargs="?", default="", help="file or directory")
    down.add_argument("--dst", default=".", help="local directory (default .)")
    down.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    down.set_defaults(handler=lambda args: _download(client(args), args))


def _list(c: Client, args: argparse.Namespace) -> int:
    rows = list(c.iter_artifacts(args.run, args.path or None))
    if args.json:
        for a in rows:
            print(json.dumps({"path": a.path, "size": a.size, "sha256": a.sha256}))
        return 0
    if not rows:
        print("no artifacts", file=sys.stderr)
        return 0
    width = max(len(a.path) for a in rows)
    for a in rows:
        print(f"{a.path:<{width}}  {a.size:>14,}  {a.sha256[:12]}")
    return 0


def _upload(c: Client, args: argparse.Namespace) -> int:
    local = pathlib.Path(args.local)
    bar = None if args.quiet else _BytesBar(local.name)
    try:
        if local.is_dir():
            items = c.log_artifacts(args.run, local, args.path, progress=bar)
        else:
            items = [c.log_artifact(args.run, local, args.path, progress=bar)]
    finally:
        if bar:
            bar.close()
    for a in items:
        print(f"{a.path}  {a.size:,} bytes  sha256:{a.sha256}")
    return 0


def _download(c: Client, args: argparse.Namespace) -> int:
    bar = None if args.quiet else _BytesBar(args.path or args.run)
    try:
        out = c.download_artifacts(args.run, args.path, args.dst, progress=bar)
    finally:
        if bar:
            bar.close()
    print(out)
    return 0
