"""Process plumbing of the ingest benchmark: servers, workers, memory, scratch databases.

Everything listens on and talks to 127.0.0.1 only. Servers run in their own
session so that stopping one stops its whole process tree.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence

HOST = "127.0.0.1"
WORKERS = pathlib.Path(__file__).with_name("_workers.py")
LOCAL_ENV = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


class BenchError(RuntimeError):
    """A server or workload failed; the message says which and why."""


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- memory


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    kids: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids.extend(int(p) for p in (task / "children").read_text().split())
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(_children(current))
    return found


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of one live process, MiB; 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def tree_peak_rss_mib(pid: int, *, include_root: bool = True) -> float:
    """Sum of VmHWM over ``pid``'s live process tree, MiB."""
    pids = tree(pid) if include_root else tree(pid)[1:]
    return sum(peak_rss_mib(p) for p in pids)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one live process (all its threads); 0 when gone."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int, *, include_root: bool = True) -> float:
    """Sum of :func:`cpu_s` over ``pid``'s live process tree."""
    pids = tree(pid) if include_root else tree(pid)[1:]
    return sum(cpu_s(p) for p in pids)


def find_in_tree(pid: int, needle: str) -> int:
    """The first process of ``pid``'s tree whose command line contains ``needle``, else pid."""
    for p in tree(pid):
        with contextlib.suppress(OSError):
            if needle in pathlib.Path(f"/proc/{p}/cmdline").read_text(errors="replace"):
                return p
    return pid


def busy_cpu_s() -> float:
    """CPU seconds all CPUs have spent not idle since boot (from /proc/stat)."""
    values = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def busy_fraction(interval: float = 1.0) -> float:
    """Share of all CPUs busy during the next ``interval`` seconds."""
    before = busy_cpu_s()
    time.sleep(interval)
    return (busy_cpu_s() - before) / interval / (os.cpu_count() or 1)


def wait_tree_idle(pid: int, max_wait: float, *, cores: float = 0.1) -> None:
    """Wait (at most ``max_wait`` s) until ``pid``'s tree uses under ``cores`` CPUs."""
    deadline = time.monotonic() + max_wait
    used = tree_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_cpu_s(pid)
        if now - used < cores:
            return
        used = now


# --------------------------------------------------------------- servers


class Server:
    """A server subprocess in its own session, logging to ``log_path``."""

    def __init__(self, argv: Sequence[str], log_path: pathlib.Path, port: int) -> None:
        self.port = port
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **LOCAL_ENV},
            )

    def wait_tcp(self, timeout: float) -> None:
        """Block until the port accepts connections."""
        self._wait(timeout, self._tcp_ok)

    def wait_http(self, path: str, timeout: float) -> None:
        """Block until ``GET path`` answers 200."""
        self._wait(timeout, lambda: self._http_ok(path))

    def _wait(self, timeout: float, ready) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}: {self.tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise BenchError(f"server not ready after {timeout:.0f}s: {self.tail()}")

    def _tcp_ok(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((HOST, self.port)) == 0

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}{path}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def peak_rss_mib(self) -> float:
        """Sum of VmHWM over the server's process tree, MiB."""
        return tree_peak_rss_mib(self.proc.pid)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group; SIGKILL it after ``grace`` seconds."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Stop ``server`` however the block ends."""
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------- workers


def run_worker(python: str, name: str, kwargs: dict, *, timeout: float) -> dict:
    """Run workload ``name`` of _workers.py under ``python``; its parsed RESULT."""
    argv = [python, str(WORKERS), name, json.dumps(kwargs)]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, **LOCAL_ENV},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise BenchError(f"{name} did not finish within {timeout:.0f}s") from None
    return _parse_result(name, proc.returncode, out, err)


def _parse_result(name: str, code: int, out: str, err: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = "\n".join((out + err).splitlines()[-15:])
    raise BenchError(f"{name} exited with {code} and no result:\n{tail}")


# ---------------------------------------------------------------- postgres


class Postgres:
    """Scratch databases on a PostgreSQL server (trust auth), via createdb/dropdb."""

    def __init__(self, host: str = HOST, port: int = 5432, user: str = "postgres") -> None:
        self.host, self.port, self.user = host, port, user

    def _cli(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        argv = [tool, "-h", self.host, "-p", str(self.port), "-U", self.user, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def available(self) -> str | None:
        """The server's version string, or None when it cannot be reached."""
        try:
            done = self._cli("psql", "-d", "postgres", "-Atc", "show server_version")
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    @contextlib.contextmanager
    def scratch(self, name: str) -> Iterator[str]:
        """Create database ``name`` (dropping a leftover first); drop it afterwards."""
        self._cli("dropdb", "--if-exists", "--force", name)
        done = self._cli("createdb", name)
        if done.returncode != 0:
            raise BenchError(f"createdb {name} failed: {done.stderr.strip()}")
        try:
            yield f"{self.user}@{self.host}:{self.port}/{name}"
        finally:
            self._cli("dropdb", "--if-exists", "--force", name)


def versions(names: list[str]) -> dict:
    """Installed versions of the distributions ``names`` (absent ones are skipped)."""
    found = {"python": sys.version.split()[0]}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found
