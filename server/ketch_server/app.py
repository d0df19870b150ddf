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
    auth_pb2,
    auth_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    operations_pb2,
    operations_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    tracking_pb2,
    tracking_pb2_grpc,
)

from ketch_server import __version__
from ketch_server.api.admin import AdminServicer
from ketch_server.api.artifacts import ArtifactServicer
from ketch_server.api.auth import AuthInterceptor, required_roles
from ketch_server.api.errors import ErrorInterceptor
from ketch_server.api.lineage import LineageServicer
from ketch_server.api.operations import OperationsServicer
from ketch_server.api.registry import RegistryServicer
from ketch_server.api.tracking import TrackingServicer
from ketch_server.blobs import open_blob_store
from ketch_server.domain.errors import InvalidArgument, Unavailable
from ketch_server.domain.identity import AuthMode, Role
from ketch_server.services.artifacts import ArtifactService
from ketch_server.services.identity import IdentityService
from ketch_server.services.ingest import Ingest
from ketch_server.services.lineage import LineageService
from ketch_server.services.registry import RegistryService
from ketch_server.services.tracking import TrackingService
from ketch_server.settings import Settings
from ketch_server.store.artifacts import ArtifactStore
from ketch_server.store.engine import create_engine, redact_url, upgrade_schema
from ketch_server.store.identity import IdentityStore
from ketch_server.store.lineage import LineageStore
from ketch_server.store.registry import RegistryStore
from ketch_server.store.tracking import TrackingStore
from ketch_server.telemetry import Telemetry

__all__ = ["KetchServer", "build_server", "serve"]

log = logging.getLogger("ketch.server")

SERVICES = (
    tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name,
    artifacts_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
    lineage_pb2.DESCRIPTOR.services_by_name["LineageService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    operations_pb2.DESCRIPTOR.services_by_name["OperationsService"].full_name,
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
)


def _grpc_options(settings: Settings) -> list[tuple[str, int]]:
    age = settings.max_connection_age_seconds
    if age is not None and age > 0:  # clients reconnect, so rebalance, this often
        age_options = [
            ("grpc.max_connection_age_ms", int(age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.grace_seconds * 1000)),
        ]
    else:
        age_options = []
    return [
        *age_options,
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
        telemetry: Telemetry | None = None,
        *,
        registry: RegistryService,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.ingest = ingest
        self.telemetry = telemetry or Telemetry()
        self.server = server
        self.store = store
        self.health = health_servicer
        self.port = port
        self._watch: asyncio.Task | None = None
        self._sweep: asyncio.Task | None = None

    @property
    def address(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        self.ingest.start()
        await self.server.start()
        # "liveness": the process answers, whatever the database does (Kubernetes liveness).
        await self.health.set("liveness", health_pb2.HealthCheckResponse.SERVING)
        await self._check_database()
        self._watch = asyncio.create_task(self._watch_database(), name="ketch-db-health")
        self._sweep = asyncio.create_task(self._sweep_expired(), name="ketch-expiry")
        log.info(
            "ketch server listening",
            extra={
                "address": self.address,
                "database": redact_url(self.settings.database_url),
                "version": __version__,
                "auth": self.settings.auth,
                "tls": self.settings.tls_cert is not None,
            },
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls (health NOT_SERVING first), let in-flight calls finish
        within the grace period, then close the database pool."""
        grace = self.settings.grace_seconds if grace is None else grace
        log.info("shutting down; in-flight calls have %.1fs to finish", grace)
        await self.health.enter_graceful_shutdown()
        background = [t for t in (self._watch, self._sweep) if t]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)  # before the pool closes
        await self.server.stop(grace)
        await self.ingest.stop()
        await self.store.engine.dispose()
        await asyncio.to_thread(self.telemetry.shutdown)  # flushes spans and metrics
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

    async def _sweep_expired(self) -> None:
        """Expire due transition requests every ``expiry_sweep_seconds``."""
        while True:
            await asyncio.sleep(self.settings.expiry_sweep_seconds)
            try:
                expired = await self.registry.expire_due()
            except Unavailable as exc:  # the database is down: the health watch says so
                log.debug("expiring due transition requests failed: %s", exc)
                continue
            except Exception:
                log.warning("expiring due transition requests failed", exc_info=True)
                continue
            for req in expired:
                log.info("%s expired before it was approved", req.resource)


def _check_security(settings: Settings) -> tuple[AuthMode, Role]:
    """Refuse settings that would expose data or credentials; return the auth mode and
    the default certificate role."""
    mode = AuthMode(settings.auth)
    try:
        certificate_role = Role.parse(settings.certificate_role, field="certificate_role")
    except InvalidArgument as exc:
        raise SystemExit(f"ketch: --certificate-role: {exc.message}") from None
    loopback = _is_loopback(settings.host)
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SystemExit("ketch: --tls-cert and --tls-key go together; pass both or neither.")
    for flag, path in (
        ("--tls-cert", settings.tls_cert),
        ("--tls-key", settings.tls_key),
        ("--tls-client-ca", settings.tls_client_ca),
    ):
        if path is not None and not path.is_file():
            raise SystemExit(f"ketch: {flag} {path}: no such file.")
    if mode is AuthMode.MTLS and (settings.tls_cert is None or settings.tls_client_ca is None):
        raise SystemExit(
            "ketch: --auth mtls needs --tls-cert, --tls-key and --tls-client-ca (the CA that "
            "signs client certificates)."
        )
    if mode is AuthMode.NONE and not loopback and not settings.allow_anonymous:
        raise SystemExit(
            f"ketch: refusing to listen on {settings.host} without authentication. "
            "Use --auth token (API tokens) or --auth mtls, listen on 127.0.0.1, or pass "
            "--allow-anonymous to accept unauthenticated clients from the network (only "
            "behind a trusted proxy)."
        )
    if mode is AuthMode.TOKEN and not loopback and settings.tls_cert is None:
        if not settings.allow_plaintext_tokens:
            raise SystemExit(
                f"ketch: refusing to accept API tokens in cleartext on {settings.host}. Pass "
                "--tls-cert and --tls-key, or --allow-plaintext-tokens when TLS terminates in "
                "front of ketch (a service mesh or proxy)."
            )
        log.warning(
            "SECURITY: API tokens arrive without TLS on %s (--allow-plaintext-tokens); make "
            "sure TLS terminates in front of this server",
            settings.host,
        )
    if mode is AuthMode.NONE and not loopback:
        log.warning(
            "SECURITY: serving UNAUTHENTICATED clients on %s (--allow-anonymous); anyone who "
            "can reach this port can read and change all data",
            settings.host,
        )
    return mode, certificate_role


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    """Open the port: TLS when a certificate is configured (client certificates required
    with --auth mtls), plaintext otherwise."""
    if settings.tls_cert is None or settings.tls_key is None:
        return server.add_insecure_port(settings.address)
    credentials = grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
        root_certificates=(
            settings.tls_client_ca.read_bytes() if settings.tls_client_ca is not None else None
        ),
        require_client_auth=settings.auth == AuthMode.MTLS.value,
    )
    return server.add_secure_port(settings.address, credentials)


async def build_server(settings: Settings, *, telemetry: Telemetry | None = None) -> KetchServer:
    """Create the store (migrating it unless told not to), services and a bound gRPC server.

    Args:
        settings: the server settings.
        telemetry: OpenTelemetry to use; default: as the ``OTEL_*`` variables say.

    Raises:
        SystemExit: with a message saying what to do, when the address cannot be used or
            the security settings would expose data or credentials.
    """
    mode, certificate_role = _check_security(settings)
    if settings.db_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    if settings.migrate:
        await upgrade_schema(engine)
    store = TrackingStore(engine)
    telemetry = telemetry or Telemetry.from_environ()
    telemetry.instrument_engine(engine)
    lanes = 1 if engine.dialect.name == "sqlite" else 4
    ingest = Ingest(store, lanes=lanes, stats=telemetry.stats)
    identity = IdentityService(
        IdentityStore(engine),
        cache_seconds=settings.token_cache_seconds,
        certificate_role=certificate_role,
    )
    auth = AuthInterceptor(
        mode,
        identity,
        required_roles(SERVICES),
        max_streams_per_principal=settings.max_streams_per_principal,
    )
    server = grpc.aio.server(
        interceptors=[auth, *telemetry.server_interceptors(), ErrorInterceptor()],
        options=_grpc_options(settings),
    )
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
    registry = RegistryService(RegistryStore(engine))
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(registry), server)
    auth_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(identity), server)
    operations_pb2_grpc.add_OperationsServiceServicer_to_server(
        OperationsServicer(telemetry.stats, engine, settings), server
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
        port = _bind(server, settings)
    except RuntimeError as exc:
        await engine.dispose()
        raise SystemExit(
            f"ketch: cannot listen on {settings.address} ({exc}); is another server using it? "
            "Pick another port with --port."
        ) from exc
    return KetchServer(
        settings, server, store, health_servicer, port, ingest, telemetry, registry=registry
    )


async def serve(settings: Settings) -> None:
    """Run a server until SIGTERM or SIGINT, then shut down gracefully.

    The signal handlers are installed before the port opens, so a signal that arrives
    while the server starts still gets a graceful shutdown. Both signals are unblocked
    first: a launcher that blocks them (the mask is inherited) must not turn a graceful
    stop into a kill after the grace period.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = await build_server(settings)
    await app.start()
    await stop.wait()
    await app.stop()
