"""S3 provisioning for the artifact tests, and the fixtures built on it.

``provision_s3()`` tries, in order:

1. ``KETCH_TEST_S3_ENDPOINT`` (``http://host:port`` or ``host:port``) with
   ``KETCH_TEST_S3_ACCESS_KEY`` / ``KETCH_TEST_S3_SECRET_KEY`` (and optional
   ``KETCH_TEST_S3_REGION``), verified by listing buckets. When it is set but does
   not answer, provisioning fails rather than using something else.
2. A MinIO container through ``testcontainers``, when the package is importable and
   Docker answers.
3. moto's S3-compatible server as a subprocess (``python -m moto.server``) on a free
   port of 127.0.0.1, when moto[server] is installed.

When none works the S3 cases skip with the reason, except under
``require_services()`` (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests._postgres import skip_or_fail

ENDPOINT_ENV = "KETCH_TEST_S3_ENDPOINT"
HINT = (
    f"set {ENDPOINT_ENV} (+ KETCH_TEST_S3_ACCESS_KEY, KETCH_TEST_S3_SECRET_KEY), or install "
    "'moto[server]' (pip install -e '.[test]'), or Docker with the 'testcontainers' package"
)


@dataclasses.dataclass
class S3Server:
    endpoint: str  # host:port
    access_key: str
    secret_key: str
    region: str
    secure: bool
    kind: str
    stop: Callable[[], None] = lambda: None

    def client(self):
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            secure=self.secure,
        )

    def settings(self, bucket: str, prefix: str = "ketch") -> dict[str, object]:
        return {
            "artifacts": f"s3://{bucket}/{prefix}",
            "s3_endpoint": self.endpoint,
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
            "s3_region": self.region,
            "s3_secure": self.secure,
        }


def _answers(server: S3Server, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            server.client().list_buckets()
            return True
        time.sleep(0.2)
    return False


def _from_env(reasons: list[str]) -> S3Server | None:
    raw = os.environ.get(ENDPOINT_ENV, "").strip()
    if not raw:
        return None
    secure = raw.startswith("https://")
    server = S3Server(
        raw.split("://", 1)[-1].rstrip("/"),
        os.environ.get("KETCH_TEST_S3_ACCESS_KEY", ""),
        os.environ.get("KETCH_TEST_S3_SECRET_KEY", ""),
        os.environ.get("KETCH_TEST_S3_REGION", "us-east-1"),
        secure,
        "env",
    )
    if not _answers(server):
        raise RuntimeError(f"{ENDPOINT_ENV}={raw} does not answer S3 requests")
    return server


def _testcontainers(reasons: list[str]) -> S3Server | None:
    try:
        from testcontainers.minio import MinioContainer
    except ImportError:
        reasons.append("testcontainers[minio] is not installed")
        return None
    try:
        container = MinioContainer().start()
    except Exception as exc:
        reasons.append(f"MinIO container did not start ({exc.__class__.__name__}: {exc})")
        return None
    cfg = container.get_config()
    server = S3Server(
        cfg["endpoint"], cfg["access_key"], cfg["secret_key"], "us-east-1", False, "minio"
    )
    server.stop = container.stop
    return server if _answers(server) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto(reasons: list[str]) -> S3Server | None:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        reasons.append("moto[server] is not installed")
        return None
    port = _free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    server = S3Server(f"127.0.0.1:{port}", "testing", "testing", "us-east-1", False, "moto", stop)
    if not _answers(server, timeout=30):
        stop()
        reasons.append("moto server did not answer within 30 s")
        return None
    return server


def provision_s3() -> tuple[S3Server | None, str]:
    """(server, "") or (None, why not)."""
    reasons: list[str] = []
    for strategy in (_from_env, _testcontainers, _moto):
        server = strategy(reasons)
        if server is not None:
            return server, ""
    return None, f"no S3-compatible server: {'; '.join(reasons)}. {HINT}"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server, reason = provision_s3()
    if server is None:
        skip_or_fail(reason)
    yield server
    server.stop()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def artifact_server(request, tmp_path, sqlite_url):
    """An in-process ketch server on SQLite whose artifacts live in the local store or in
    a fresh bucket of a real S3-compatible server, once each."""
    from ketch_server.settings import Settings

    from tests.conftest import ThreadServer

    extra: dict[str, object] = {}
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        extra = s3.settings(f"ketch-{uuid.uuid4().hex[:12]}")
    settings = Settings(
        port=0, data_dir=tmp_path / "data", db_url=sqlite_url, grace_seconds=1, **extra
    )
    srv = ThreadServer(settings).start()
    srv.kind = request.param
    yield srv
    srv.stop()
