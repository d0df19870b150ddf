"""Server assembly: :func:`build_server` wires settings, store, services and gRPC.

``build_server`` returns a :class:`KetchServer` bound to its port (port 0 picks
a free one, for tests) but not yet started; :func:`serve` runs one until
SIGTERM/SIGINT and shuts it down gracefully.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from ketch.api.v1 import (
    artifacts_pb2,
    artifacts_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    tracking_pb2,
    tracking_pb2_grpc,
)

from ketch_server import __version__
from ketch_server.api.artifacts import ArtifactServicer
from ketch_server.api.errors import ErrorInterceptor
from ketch_server.api.lineage import LineageServicer
from ketch_server.api.tracking import TrackingServicer
from ketch_server.blobs import open_blob_store
from ketch_server.services.artifacts import ArtifactService
from ketch_server.services.ingest import Ingest
from ketch_server.services.lineage import LineageService
from ketch_server.services.tracking import TrackingService
from ketch_server.settings import Settings
from ketch_server.store.artifacts import ArtifactStore
from ketch_server.store.engine import create_engine, redact_url, upgrade_schema
from ketch_server.store.lineage import LineageStore
from ketch_server.store.tracking import TrackingStore

__all__ = ["KetchServer", "build_server", "serve"]

log = logging.getLogger("ketch.server")

SERVICES = (
    tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name,
    artifacts_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
    lineage_pb2.DESCRIPTOR.services_by_name["LineageService"].full_name,
)


def _grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
    ]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KetchServer:
    """A built server: ``await start()``, then ``await stop()``. ``port`` is the bound port."""

    def __init__(
        self,
        settings: Settings,
        server: grpc.aio.Server,
        store: TrackingStore,
        health_servicer: health.aio.HealthServicer,
        port: int,
        ingest: Ingest,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.server = server
        self.store = store
        self.health = health_servicer
        self.port = port
        self._watch: asyncio.Task | None = None

    @property
    def address(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        self.ingest.start()
        await self.server.start()
        await self._check_database()
        self._watch = asyncio.create_task(self._watch_database(), name="ketch-db-health")
        log.info(
            "ketch server listening",
            extra={
                "address": self.address,
                "database": redact_url(self.settings.database_url),
                "version": __version__,
            },
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls (health NOT_SERVING first), let in-flight calls finish
        within the grace period, then close the database pool."""
        grace = self.settings.grace_seconds if grace is None else grace
        log.info("shutting down; in-flight calls have %.1fs to finish", grace)
        await self.health.enter_graceful_shutdown()
        if self._watch:
            self._watch.cancel()
        await self.server.stop(grace)
        await self.ingest.stop()
        await self.store.engine.dispose()
        log.info("ketch server stopped")

    async def wait(self) -> None:
        await self.server.wait_for_termination()

    async def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", *SERVICES):
            await self.health.set(service, status)

    async def _check_database(self) -> bool:
        try:
            await asyncio.wait_for(self.store.ping(), timeout=5)
            ok = True
        except Exception as exc:
            log.warning("database unreachable; health is NOT_SERVING until it answers: %s", exc)
            ok = False
        await self._set_health(ok)
        return ok

    async def _watch_database(self) -> None:
        was_ok = True
        while True:
            await asyncio.sleep(self.settings.health_interval_seconds)
            ok = await self._check_database()
            if ok and not was_ok:
                log.info("database reachable again; health is SERVING")
            was_ok = ok


async def build_server(settings: Settings) -> KetchServer:
    """Create the store (migrating it unless told not to), services and a bound gRPC server.

    Raises:
        SystemExit: with a message saying what to do, when the address cannot be used.
    """
    if not _is_loopback(settings.host) and not settings.allow_anonymous:
        raise SystemExit(
            f"ketch: refusing to listen on {settings.host} without authentication. "
            "Listen on 127.0.0.1, or pass --allow-anonymous to accept unauthenticated clients "
            "from the network (only behind a trusted proxy)."
        )
    if settings.allow_anonymous and not _is_loopback(settings.host):
        log.warning(
            "SECURITY: serving UNAUTHENTICATED clients on %s (--allow-anonymous); anyone who "
            "can reach this port can read and change all data",
            settings.host,
        )
    if settings.db_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    if settings.migrate:
        await upgrade_schema(engine)
    store = TrackingStore(engine)
    ingest = Ingest(store, lanes=1 if engine.dialect.name == "sqlite" else 4)
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=_grpc_options(settings))
    tracking_pb2_grpc.add_TrackingServiceServicer_to_server(
        TrackingServicer(TrackingService(store), ingest), server
    )
    blobs = await asyncio.to_thread(open_blob_store, settings)
    artifacts_pb2_grpc.add_ArtifactServiceServicer_to_server(
        ArtifactServicer(ArtifactService(ArtifactStore(engine), blobs)), server
    )
    lineage_pb2_grpc.add_LineageServiceServicer_to_server(
        LineageServicer(LineageService(LineageStore(engine))), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *SERVICES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    try:
        port = server.add_insecure_port(settings.address)
    except RuntimeError as exc:
        await engine.dispose()
        raise SystemExit(
            f"ketch: cannot listen on {settings.address} ({exc}); is another server using it? "
            "Pick another port with --port."
        ) from exc
    return KetchServer(settings, server, store, health_servicer, port, ingest)


async def serve(settings: Settings) -> None:
    """Run a server until SIGTERM or SIGINT, then shut down gracefully.

    The signal handlers are installed before the port opens, so a signal that arrives
    while the server starts still gets a graceful shutdown.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = await build_server(settings)
    await app.start()
    await stop.wait()
    await app.stop()
