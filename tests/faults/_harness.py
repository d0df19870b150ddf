"""Fault-injection harness: a restartable server subprocess, a TCP proxy with
injectable faults, the training subprocess, and a dedicated PostgreSQL cluster
that a test may stop and start.

Everything listens on and talks to 127.0.0.1 only. Every wait is bounded and
waits on an observable event (a line from the trainer, a count on the server,
a port that answers), not a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import pwd
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import _postgres

T = TypeVar("T")

TRAINER = pathlib.Path(__file__).with_name("_trainer.py")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_until(
    condition: Callable[[], T], what: str, timeout: float = 60.0, interval: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: pathlib.Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------ server


def health_status(port: int, timeout: float = 3.0) -> int | None:
    """The server's overall health status, or None when it does not answer."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout).status
    except grpc.RpcError:
        return None


class ServerProc:
    """``python -m ketch_server`` on a fixed port; it can be frozen, killed and restarted
    on the same port and data directory (a new process each time)."""

    def __init__(
        self, workdir: pathlib.Path, *, db_url: str | None = None, extra: Sequence[str] = ()
    ) -> None:
        self.workdir = workdir
        self.extra = list(extra)
        self.data_dir = workdir / "data"
        self.db_url = db_url
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log_path = workdir / "server-0.log"

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self) -> subprocess.Popen:
        self.starts += 1
        self._log_path = self.workdir / f"server-{self.starts}.log"
        args = [sys.executable, "-m", "ketch_server", "--port", str(self.port), "--grace", "1"]
        args += ["--data-dir", str(self.data_dir)]
        if self.db_url:
            args += ["--db", self.db_url]
        args += self.extra
        with open(self._log_path, "wb") as log:
            return subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )

    def start(self, timeout: float = 60.0) -> ServerProc:
        """Start a server process and wait until it answers health SERVING."""
        deadline = time.monotonic() + timeout
        while True:
            self.proc = self._spawn()
            while self.proc.poll() is None and time.monotonic() < deadline:
                if health_status(self.port, timeout=1.0) == SERVING:
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"the server did not serve within {timeout:.0f}s:\n{self.output()}"
                )
            # It exited: the port may still be held for a moment after a kill; retry.
            if "cannot listen" not in self.output():
                raise AssertionError(
                    f"the server exited with {self.proc.returncode}:\n{self.output()}"
                )
            time.sleep(0.2)

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, sockets closed by the kernel."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), then print every server log's tail: pytest shows
        it when the test failed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        for n in range(1, self.starts + 1):
            print(f"---- server log {n} ----\n{_tail(self.workdir / f'server-{n}.log', 60)}")

    def output(self) -> str:
        return _tail(self._log_path)

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/<pid>/status")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))


# ------------------------------------------------------------------- proxy


class _Link:
    """One proxied connection: client socket, upstream socket, two pump threads."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.swallow = False
        self.dead = False
        self._ended = 0
        self._lock = threading.Lock()

    def shutdown(self) -> None:
        self.dead = True
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def pump_ended(self) -> None:
        self.shutdown()
        with self._lock:
            self._ended += 1
            last = self._ended == 2
        if last:
            self.client.close()
            self.upstream.close()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``, with faults to inject.

    ``swallow_downstream()`` keeps forwarding client→server bytes but silently drops
    every server→client byte of the open connections (acks, window updates, pings);
    ``cut()`` then closes those connections. Connections made after a cut are
    forwarded normally. ``impersonate(handler)`` answers new connections with
    ``handler(socket)`` instead of forwarding them, until ``impersonate(None)``.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.impostor: Callable[[socket.socket], None] | None = None
        self.connections = 0
        self.swallowed_bytes = 0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            impostor = self.impostor
            if impostor is not None:
                threading.Thread(
                    target=_answer, args=(impostor, client), name="proxy-impostor", daemon=True
                ).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
                self.connections += 1
            for src, dst, down in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(link, src, dst, down), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while data := src.recv(65536):
                if link.dead:
                    break
                if down and link.swallow:
                    with self._lock:
                        self.swallowed_bytes += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            link.pump_ended()

    def impersonate(self, handler: Callable[[socket.socket], None] | None) -> None:
        self.impostor = handler

    def swallow_downstream(self) -> None:
        with self._lock:
            for link in self._links:
                link.swallow = True

    def cut(self) -> int:
        """Close every open connection; return how many were cut."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.shutdown()
        return len(links)

    def close(self) -> None:
        self._listener.close()
        self.cut()


def _answer(handler: Callable[[socket.socket], None], client: socket.socket) -> None:
    try:
        client.settimeout(10)
        handler(client)
    except OSError:
        pass
    finally:
        client.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def pg_starting_up(sock: socket.socket) -> None:
    """Answer a PostgreSQL client as a server in recovery does: it refuses the startup
    with FATAL 57P03 "the database system is starting up" (asyncpg: CannotConnectNowError)."""
    while True:
        length, code = struct.unpack("!ii", _recv_exact(sock, 8))
        if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: "not supported"
            sock.sendall(b"N")
            continue
        _recv_exact(sock, length - 8)  # the StartupMessage's parameters
        break
    fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
    sock.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)


# ----------------------------------------------------------------- trainer


class Trainer:
    """The training subprocess (``_trainer.py``); its stdout lines are events."""

    def __init__(self, uri: str, workdir: pathlib.Path, **options: Any) -> None:
        args = [sys.executable, str(TRAINER), "--uri", uri]
        for name, value in options.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        self.steps = int(options.get("steps", 100_000))
        self._stderr_path = workdir / "trainer.err"
        env = dict(os.environ, KETCH_SPOOL_DIR=str(workdir / "spool"), PYTHONUNBUFFERED="1")
        for name in ("KETCH_RUN_ID", "KETCH_TRACKING_URI", "KETCH_MODE", "KETCH_EXPERIMENT"):
            env.pop(name, None)
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                args,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=workdir,
                env=env,
            )
        self._events: list[tuple[str, str]] = []
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._read, name="trainer-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, rest = line.strip().partition(" ")
            with self._cond:
                self._events.append((word, rest))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def last(self, word: str) -> str | None:
        with self._cond:
            values = [rest for w, rest in self._events if w == word]
        return values[-1] if values else None

    @property
    def progress(self) -> int:
        return int(self.last("progress") or 0)

    def wait_for(self, word: str, timeout: float = 60.0, at_least: int | None = None) -> str:
        """Wait for an event line ``word`` (whose value is ``>= at_least`` when given)."""

        def seen() -> str | None:
            for w, rest in reversed(self._events):
                if w == word and (at_least is None or int(rest) >= at_least):
                    return rest
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: seen() is not None or self._eof, timeout):
                raise AssertionError(f"trainer: no {word!r} within {timeout:.0f}s\n{self.dump()}")
            value = seen()
        if value is None:
            raise AssertionError(f"trainer exited before {word!r}\n{self.dump()}")
        return value

    def result(self, timeout: float = 90.0) -> dict[str, Any]:
        """Wait for the trainer to finish; its ``result`` report."""
        value = self.wait_for("result", timeout)
        self.proc.wait(30)
        assert self.proc.returncode == 0, self.dump()
        return json.loads(value)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def dump(self) -> str:
        with self._cond:
            events = " | ".join(f"{w} {r}" for w, r in self._events[-6:])
        return f"trainer events: {events}\ntrainer stderr:\n{_tail(self._stderr_path)}"


# ------------------------------------------------------------ verification


def metric_count(client: Any, run_id: str, key: str = "loss") -> int:
    """How many points of ``key`` the server has committed (0 before the first)."""
    summary = client.get_run(run_id).metrics.get(key)
    return summary.count if summary else 0


def assert_exactly_once(client: Any, run_id: str, steps: int) -> None:
    """Each metric of the trainer's run holds every step exactly once, in order."""
    record = client.get_run(run_id)
    assert record.state == "FINISHED", record.state
    counts = {key: m.count for key, m in record.metrics.items()}
    assert counts == {"loss": steps, "acc": steps}, f"counts per key {counts}, want {steps}"
    expected = np.arange(steps)
    for key, values in (("loss", expected * 0.5), ("acc", -expected.astype(float))):
        history = client.get_metric_history(run_id, key)
        assert len(history.steps) == steps, f"{key}: {len(history.steps)} points read back"
        assert np.array_equal(history.steps, expected), f"{key}: steps are not 0..{steps - 1}"
        assert np.array_equal(history.values, values), f"{key}: values differ"


def assert_clean_result(result: dict[str, Any], *, interrupted: bool = True) -> None:
    """The trainer's SDK stored everything, nothing is left behind in a spool, and
    (``interrupted``) its stream did see the fault, where the SDK reports that."""
    assert result["failure"] is None, result
    assert result["dropped_points"] == 0, result
    assert result["unacked_batches"] in (0, None), result
    assert result["spool_left"] is None, result
    if interrupted and result["reconnects"] is not None:
        assert result["reconnects"] >= 1, result


# -------------------------------------------------------------- postgresql


class PgCluster:
    """A dedicated throwaway PostgreSQL cluster (initdb + pg_ctl, as tests/_postgres.py
    builds one) on a fixed port of 127.0.0.1, which a test may stop and start again.
    As root it runs as the ``postgres`` user."""

    def __init__(self, bindir: str, as_postgres: bool) -> None:
        self.bindir = bindir
        self.as_postgres = as_postgres
        self.tmp = tempfile.mkdtemp(prefix="ketch-faults-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.log = os.path.join(self.tmp, "postgres.log")
        self.port = 0
        if as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.tmp, user.pw_uid, user.pw_gid)

    @classmethod
    def create(cls) -> tuple[PgCluster | None, str]:
        """An initialised, started cluster, or (None, why not)."""
        bindir = _postgres.find_pg_bindir()
        if bindir is None:
            return None, "initdb/pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin"
        as_postgres = os.geteuid() == 0
        if as_postgres:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return None, "running as root and there is no 'postgres' user to run as"
        cluster = cls(bindir, as_postgres)
        try:
            init = cluster._pg(
                "initdb",
                "-D",
                cluster.data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
            if init.returncode != 0:
                raise RuntimeError(f"initdb failed: {init.stderr[-500:]}")
            for _ in range(3):  # the free port may be taken before postgres binds it
                cluster.port = free_port()
                if cluster.start(check=False):
                    return cluster, ""
            raise RuntimeError(f"pg_ctl start failed: {_tail(pathlib.Path(cluster.log), 5)}")
        except Exception as exc:
            cluster.destroy()
            return None, f"{type(exc).__name__}: {exc}"

    def _pg(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.as_postgres:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", "postgres", "--", *cmd]
            else:
                cmd = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]
        return subprocess.run(
            cmd,
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return _postgres.to_sqlalchemy_url(self.admin_dsn, dbname)

    def start(self, check: bool = True) -> bool:
        opts = (
            f"-k {shlex.quote(self.tmp)} -p {self.port} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off"
        )
        done = self._pg(
            "pg_ctl", "-D", self.data, "-l", self.log, "-o", opts, "-w", "-t", "60", "start"
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"pg_ctl start failed: {done.stderr}\n{_tail(pathlib.Path(self.log))}"
            )
        return done.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        done = self._pg("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")
        assert done.returncode == 0, f"pg_ctl stop failed: {done.stderr}"

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self._pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)
