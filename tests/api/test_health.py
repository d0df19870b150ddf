"""Health follows the database: NOT_SERVING while it is unreachable, SERVING again
after it returns. The database sits behind a TCP proxy the test can cut."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ThreadServer

pytestmark = pytest.mark.postgres


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target until cut; reconnects after restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.open = False
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _status(uri: str, service: str = "") -> int:
    with grpc.insecure_channel(uri.removeprefix("grpc://")) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def _wait_for(uri: str, wanted: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    status = -1
    while time.monotonic() < deadline:
        status = _status(uri)
        if status == wanted:
            return status
        time.sleep(0.1)
    return status


def test_health_tracks_database_reachability(postgres_url, tmp_path):
    from ketch_server.settings import Settings

    parts = urlsplit(postgres_url)
    proxy = CuttableProxy((parts.hostname, parts.port))
    proxied = postgres_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    settings = Settings(
        port=0, data_dir=tmp_path, db_url=proxied, health_interval_seconds=0.2, grace_seconds=1
    )
    srv = ThreadServer(settings).start()
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        assert _status(srv.uri) == serving
        assert _status(srv.uri, "ketch.api.v1.TrackingService") == serving
        proxy.cut()
        assert _wait_for(srv.uri, not_serving) == not_serving
        proxy.restore()
        assert _wait_for(srv.uri, serving) == serving
    finally:
        srv.stop()
        proxy.close()


def test_health_goes_not_serving_on_graceful_shutdown(sqlite_url, tmp_path):
    from ketch_server.settings import Settings

    srv = ThreadServer(Settings(port=0, data_dir=tmp_path, db_url=sqlite_url)).start()
    with grpc.insecure_channel(srv.uri.removeprefix("grpc://")) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        srv.run(srv.app.health.enter_graceful_shutdown())
        status = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    srv.stop()
