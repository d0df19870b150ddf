"""PostgreSQL provisioning for the test suite (plain helpers, no pytest fixtures).

``provision_postgres()`` tries, in order:

1. ``KETCH_TEST_POSTGRES_DSN`` (``postgresql://`` or ``postgresql+asyncpg://``), verified by
   connecting. When it is set but does not connect, provisioning fails rather than silently
   using something else. The machine's default server is never used unless this variable
   points at it.
2. A ``testcontainers`` ``PostgresContainer("postgres:16-alpine")``, when the package is
   importable and Docker answers.
3. A throwaway cluster built with ``initdb``/``pg_ctl`` (from ``PATH``, then
   ``/usr/lib/postgresql/*/bin`` newest first) in a temporary directory, on a free port of
   127.0.0.1. When running as root it runs as the ``postgres`` system user.

It returns a ``PostgresServer`` or ``None``; after ``None``, ``last_unavailable_reason()``
says why each strategy failed and what to do about it.

``require_services()`` is true when ``KETCH_REQUIRE_SERVICES`` or ``KETCH_REQUIRE_POSTGRES``
is ``1``/``true``, or ``CI`` is ``true``. Then an unavailable PostgreSQL must FAIL the tests
instead of skipping them; ``skip_or_fail()`` implements that policy.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

DSN_ENV = "KETCH_TEST_POSTGRES_DSN"
CONTAINER_IMAGE = "postgres:16-alpine"
HINT = (
    f"set {DSN_ENV}=postgresql://user@host:port/db, or install PostgreSQL server binaries "
    "(initdb, pg_ctl) or Docker with the 'testcontainers' package"
)

_last_reason = ""


@dataclass
class PostgresServer:
    """A reachable PostgreSQL server.

    Attributes:
        admin_dsn: libpq URL (``postgresql://user@host:port/db``) of a database a superuser
            can use to create and drop databases.
        kind: How it was provisioned: ``"env"``, ``"testcontainers"`` or ``"initdb"``.
    """

    admin_dsn: str
    kind: str
    _cleanup: Callable[[], None] | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stops the server if this module started it. Idempotent; a no-op for ``env``."""
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup()


def last_unavailable_reason() -> str:
    """Returns why the last ``provision_postgres()`` call returned ``None`` ('' otherwise)."""
    return _last_reason


def require_services() -> bool:
    """Returns True when missing services must fail tests instead of skipping them."""

    def truthy(name: str) -> bool:
        return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")

    return truthy("KETCH_REQUIRE_SERVICES") or truthy("KETCH_REQUIRE_POSTGRES") or truthy("CI")


def skip_or_fail(reason: str) -> None:
    """Skips the current test, or fails it when ``require_services()`` is true."""
    import pytest

    if require_services():
        pytest.fail(f"{reason} (required: KETCH_REQUIRE_SERVICES/KETCH_REQUIRE_POSTGRES/CI set)")
    pytest.skip(reason)


def normalize_dsn(dsn: str) -> str:
    """Returns ``dsn`` as a plain libpq ``postgresql://`` URL (drops any ``+driver``).

    Raises:
        ValueError: If ``dsn`` is not a postgres URL.
    """
    scheme, sep, rest = dsn.strip().partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// URL: {_redact(dsn)!r}")
    return f"postgresql://{rest}"


def database_dsn(dsn: str, dbname: str) -> str:
    """Returns the libpq URL of database ``dbname`` on the server of ``dsn``."""
    parts = urlsplit(normalize_dsn(dsn))
    return urlunsplit(("postgresql", parts.netloc, "/" + quote(dbname), parts.query, ""))


def to_sqlalchemy_url(dsn: str, dbname: str) -> str:
    """Returns a ``postgresql+asyncpg://`` SQLAlchemy URL for database ``dbname``."""
    return database_dsn(dsn, dbname).replace("postgresql://", "postgresql+asyncpg://", 1)


def create_database(admin_dsn: str, name: str, template: str | None = None) -> None:
    """Creates database ``name``, optionally as a copy of ``template``.

    The template must have no open connections while it is copied.
    """
    sql = f"CREATE DATABASE {_ident(name)}"
    if template is not None:
        sql += f" TEMPLATE {_ident(template)}"
    _run(_execute(admin_dsn, sql))


def drop_database(admin_dsn: str, name: str) -> None:
    """Drops database ``name`` if it exists, terminating its connections (PostgreSQL 13+)."""
    _run(_execute(admin_dsn, f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)"))


def provision_postgres() -> PostgresServer | None:
    """Provides a PostgreSQL server using the strategies listed in the module docstring.

    Returns:
        A started server (call ``stop()`` when done), or None; then see
        ``last_unavailable_reason()``.
    """
    global _last_reason
    _last_reason = ""
    if os.environ.get(DSN_ENV):
        server, reason = _from_env(os.environ[DSN_ENV])
        if server is None:
            _last_reason = f"PostgreSQL unavailable: {reason}. Fix or unset {DSN_ENV}."
        return server
    reasons = []
    for attempt in (_from_testcontainers, _from_initdb):
        server, reason = attempt()
        if server is not None:
            return server
        reasons.append(reason)
    _last_reason = f"PostgreSQL unavailable: {HINT}. Tried: " + "; ".join(reasons)
    return None


def find_pg_bindir() -> str | None:
    """Returns a directory holding both ``initdb`` and ``pg_ctl``, or None."""
    candidates = [os.path.dirname(p) for p in [shutil.which("initdb")] if p]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin"),
        key=lambda d: [int(n) for n in re.findall(r"\d+", d)],
        reverse=True,
    )
    for d in candidates:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return d
    return None


# --- strategies -------------------------------------------------------------------------


def _from_env(dsn: str) -> tuple[PostgresServer | None, str]:
    try:
        admin = normalize_dsn(dsn)
        _run(_execute(admin, "SELECT 1"))
    except Exception as exc:  # report any failure to the user
        return None, f"{DSN_ENV}={_redact(dsn)} did not connect: {_describe(exc)}"
    return PostgresServer(admin, "env"), ""


def _from_testcontainers() -> tuple[PostgresServer | None, str]:
    try:
        import docker
        from testcontainers.postgres import PostgresContainer
    except Exception as exc:
        return None, f"testcontainers: not importable ({_describe(exc)})"
    container = None
    try:
        docker.from_env().ping()
        container = PostgresContainer(CONTAINER_IMAGE).start()
        user, password = quote(container.username, safe=""), quote(container.password, safe="")
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5432)
        dsn = f"postgresql://{user}:{password}@{host}:{port}/{quote(container.dbname)}"
        _run(_execute(dsn, "SELECT 1"))
    except Exception as exc:
        if container is not None:
            _quietly(container.stop)
        return None, f"testcontainers: {_describe(exc)}"
    return _registered(PostgresServer(dsn, "testcontainers", lambda: _quietly(container.stop)))


def _from_initdb() -> tuple[PostgresServer | None, str]:
    bindir = find_pg_bindir()
    if bindir is None:
        return None, "initdb: initdb/pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin"
    as_user = None
    if os.geteuid() == 0:
        try:
            as_user = pwd.getpwnam("postgres")
        except KeyError:
            return None, "initdb: running as root and there is no 'postgres' user to run as"
    tmp = tempfile.mkdtemp(prefix="ketch-pg-")
    data, log = os.path.join(tmp, "data"), os.path.join(tmp, "postgres.log")
    if as_user is not None:
        os.chown(tmp, as_user.pw_uid, as_user.pw_gid)

    def pg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(bindir, args[0]), *args[1:]]
        if as_user is not None:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", "postgres", "--", *cmd]
            else:
                cmd = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]
        return subprocess.run(
            cmd, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def cleanup() -> None:
        _quietly(lambda: pg("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", timeout=60))
        shutil.rmtree(tmp, ignore_errors=True)

    try:
        init = pg("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C")  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {_tail(init.stderr + init.stdout)}")
        reason = ""
        for _ in range(3):  # the free port may be taken before postgres binds it
            port = _free_port()
            opts = (
                f"-k {shlex.quote(tmp)} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off"
            )
            start = pg("pg_ctl", "-D", data, "-l", log, "-o", opts, "-w", "-t", "60", "start")
            if start.returncode == 0:
                dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                _run(_execute(dsn, "SELECT 1"))
                return _registered(PostgresServer(dsn, "initdb", cleanup))
            reason = f"pg_ctl start failed: {_tail(start.stderr + start.stdout + _read(log))}"
        raise RuntimeError(reason)
    except Exception as exc:
        cleanup()
        return None, f"initdb ({bindir}): {_describe(exc)}"


# --- internals ----------------------------------------------------------------------------


def _registered(server: PostgresServer) -> tuple[PostgresServer, str]:
    atexit.register(server.stop)  # safety net if the caller never stops it
    return server, ""


async def _execute(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Runs ``coro`` in a fresh event loop, in a worker thread if a loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redact(dsn: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", dsn)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")[:500]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # best-effort cleanup
        pass
