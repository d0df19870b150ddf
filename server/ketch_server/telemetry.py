"""OpenTelemetry for the server, and the in-process counters the status RPC reads.

Two parts:

* :class:`ServerStats` is always on and needs nothing installed: points and group
  commits since start, the ingest rate over the last ~10 s and the number of open
  metric streams. The ingest lanes and the ``StreamMetrics`` handler update it
  from the event loop; ``GetServerStatus`` reads it. When OpenTelemetry is on it
  also feeds the OTel instruments below.
* :class:`Telemetry` configures OpenTelemetry from the standard ``OTEL_*``
  environment (:meth:`Telemetry.from_environ`). It is on when an OTLP endpoint is
  set (``OTEL_EXPORTER_OTLP_ENDPOINT``, or the per-signal
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``) or an exporter
  is named (``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: ``otlp``,
  ``console``, ``none``, or any installed exporter entry point), unless
  ``OTEL_SDK_DISABLED=true``. Otherwise, or when the ``otel`` extra is not
  installed, it adds no interceptor, no event listener and no exporter: the hot
  path pays about a microsecond of counting per group commit, nothing per point.

What is recorded when on:

* traces: one SERVER span per RPC (opentelemetry-instrumentation-grpc's aio
  interceptor; health checks excluded), continuing the caller's W3C
  ``traceparent``; one CLIENT span per SQL statement
  (opentelemetry-instrumentation-sqlalchemy on the engine's ``sync_engine`` only,
  so asyncpg statements are not traced twice), children of the RPC span; one
  ``ketch.ingest.commit`` span per group commit, parent of that commit's SQL.
* metrics: ``ketch.ingest.points`` (counter), ``ketch.ingest.commit.duration``
  (histogram, s), ``ketch.ingest.streams.open`` (up-down counter),
  ``ketch.db.pool.connections`` (observable gauge by ``state``: ``used``,
  ``idle``, ``overflow``) and ``ketch.db.pool.size``.

Resource: ``service.name`` is ``OTEL_SERVICE_NAME`` (or the one in
``OTEL_RESOURCE_ATTRIBUTES``), else ``ketch``; sampling, batching, export
intervals, headers and TLS of the exporters follow their ``OTEL_*`` variables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    import grpc
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["IngestSnapshot", "PoolUsage", "ServerStats", "Telemetry", "pool_usage"]

log = logging.getLogger("ketch.telemetry")

SERVICE_NAME = "ketch"
_SCOPE = "ketch_server"
# Seconds of history behind the ingest rate (one bucket per second, plus the current one).
_RATE_WINDOW_S = 10
# Group commits take from ~100 µs (SQLite, small groups) to seconds (large COPYs).
_COMMIT_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip


# ------------------------------------------------------------------ counters


@dataclasses.dataclass(frozen=True)
class IngestSnapshot:
    """The ingest figures of one moment.

    Attributes:
        points_per_second: points committed per second over ``window_seconds``.
        window_seconds: the averaging window (shorter than 10 s right after start).
        points_total: points committed since start.
        commits_total: group commits since start.
        open_streams: ``StreamMetrics`` calls open now.
    """

    points_per_second: float
    window_seconds: float
    points_total: int
    commits_total: int
    open_streams: int


@dataclasses.dataclass(frozen=True)
class PoolUsage:
    """A connection pool's counts (all zero for pools that do not count, e.g. NullPool).

    Attributes:
        size: connections the pool keeps.
        checked_out: connections in use now.
        overflow: connections open beyond ``size``.
        checked_in: open connections idle in the pool.
    """

    size: int = 0
    checked_out: int = 0
    overflow: int = 0
    checked_in: int = 0


def pool_usage(engine: AsyncEngine) -> PoolUsage:
    """The counts of ``engine``'s pool, read without touching the database."""
    pool: Any = engine.sync_engine.pool
    try:
        return PoolUsage(
            size=int(pool.size()),
            checked_out=int(pool.checkedout()),
            overflow=max(int(pool.overflow()), 0),
            checked_in=int(pool.checkedin()),
        )
    except (AttributeError, NotImplementedError, TypeError):
        return PoolUsage()


class _RateWindow:
    """Counts per whole second over the last ``seconds`` seconds (a ring of buckets)."""

    def __init__(self, seconds: int, start: float) -> None:
        self._size = seconds + 1  # the full seconds plus the current, partial one
        self._counts = [0] * self._size
        self._seconds = [-1] * self._size
        self._start = start
        self._span = float(seconds)

    def add(self, n: int, now: float) -> None:
        second = int(now)
        i = second % self._size
        if self._seconds[i] != second:
            self._seconds[i] = second
            self._counts[i] = 0
        self._counts[i] += n

    def rate(self, now: float) -> tuple[float, float]:
        """(count per second, window in seconds) for the window ending ``now``."""
        second = int(now)
        oldest = second - self._size + 1
        pairs = zip(self._counts, self._seconds, strict=True)
        total = sum(count for count, s in pairs if oldest <= s <= second)
        window = min(self._span + (now - second), now - self._start)
        return (total / window if window > 0 else 0.0), max(window, 0.0)


class _Instruments:
    """The OTel instruments ServerStats feeds when telemetry is on."""

    def __init__(self, meter: Any | None, tracer: Any | None) -> None:
        self.tracer = tracer
        self.points: Any = None
        self.commit_seconds: Any = None
        self.streams: Any = None
        if meter is not None:
            self.points = meter.create_counter(
                "ketch.ingest.points", unit="{point}", description="Metric points committed"
            )
            self.commit_seconds = meter.create_histogram(
                "ketch.ingest.commit.duration",
                unit="s",
                description="Duration of one ingest group commit",
                explicit_bucket_boundaries_advisory=_COMMIT_BUCKETS_S,
            )
            self.streams = meter.create_up_down_counter(
                "ketch.ingest.streams.open", unit="{stream}", description="Open StreamMetrics calls"
            )


class ServerStats:
    """In-process counters of one server (see the module docstring).

    Not thread-safe by design: every update comes from the server's event loop.
    Reads (:meth:`snapshot`) are cheap and may come from the loop at any time.

    Args:
        clock: monotonic seconds (for tests).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.start_time = dt.datetime.now(dt.timezone.utc)
        self.started = clock()
        self.points_total = 0
        self.commits_total = 0
        self.open_streams = 0
        self._window = _RateWindow(_RATE_WINDOW_S, self.started)
        self._otel: _Instruments | None = None

    def _attach(self, instruments: _Instruments) -> None:
        self._otel = instruments

    def uptime(self) -> float:
        """Seconds since this object was made (the server's build)."""
        return self._clock() - self.started

    def commit_span(self, batches: int, points: int) -> contextlib.AbstractContextManager[Any]:
        """A span around one group commit (a no-op context when tracing is off)."""
        otel = self._otel
        if otel is None or otel.tracer is None:
            return contextlib.nullcontext()
        return otel.tracer.start_as_current_span(
            "ketch.ingest.commit",
            attributes={"ketch.ingest.batches": batches, "ketch.ingest.points": points},
        )

    def record_commit(self, points: int, seconds: float) -> None:
        """Count one successful group commit of ``points`` points that took ``seconds``."""
        self.points_total += points
        self.commits_total += 1
        self._window.add(points, self._clock())
        otel = self._otel
        if otel is not None and otel.points is not None:
            otel.points.add(points)
            otel.commit_seconds.record(seconds)

    def stream_opened(self) -> None:
        """Count a ``StreamMetrics`` call that opened; pair with :meth:`stream_closed`."""
        self.open_streams += 1
        if self._otel is not None and self._otel.streams is not None:
            self._otel.streams.add(1)

    def stream_closed(self) -> None:
        """Count a ``StreamMetrics`` call that ended, however it ended."""
        self.open_streams -= 1
        if self._otel is not None and self._otel.streams is not None:
            self._otel.streams.add(-1)

    def snapshot(self) -> IngestSnapshot:
        """The ingest figures now."""
        rate, window = self._window.rate(self._clock())
        return IngestSnapshot(
            points_per_second=rate,
            window_seconds=window,
            points_total=self.points_total,
            commits_total=self.commits_total,
            open_streams=self.open_streams,
        )


# ------------------------------------------------------------- OpenTelemetry


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _exporter_names(environ: Mapping[str, str], signal: str) -> list[str]:
    """Exporter entry-point names for ``signal`` ("traces" or "metrics"), as the SDK
    reads them: OTEL_<SIGNAL>_EXPORTER, else ``otlp`` when an OTLP endpoint is set."""
    named = environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip()
    if not named:
        endpoint = environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        named = "otlp" if endpoint else "none"
    names = [n.strip() for n in named.split(",") if n.strip()]
    if any(n.lower() == "none" for n in names):
        return []
    protocol = (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    otlp = "otlp_proto_http" if protocol.startswith("http") else "otlp_proto_grpc"
    return [otlp if n == "otlp" else n for n in names]


def _load_exporters(names: list[str], group: str) -> list[Any]:
    """Instantiate the exporters registered under ``group`` (they read their own env)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=group)}
    exporters = []
    for name in names:
        if name not in found:
            hint = " (pip install opentelemetry-exporter-otlp-proto-http)" if "http" in name else ""
            log.warning("OpenTelemetry exporter %r is not installed%s; not using it", name, hint)
            continue
        exporters.append(found[name].load()())
    return exporters


def _service_name(environ: Mapping[str, str]) -> str:
    """OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else "ketch"."""
    if environ.get("OTEL_SERVICE_NAME", "").strip():
        return environ["OTEL_SERVICE_NAME"].strip()
    for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return unquote(value.strip())
    return SERVICE_NAME


def _resource(environ: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import Resource

    from ketch_server import __version__

    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES and the SDK's defaults.
    return Resource.create({"service.name": _service_name(environ), "service.version": __version__})


class Telemetry:
    """OpenTelemetry for one server: providers, the RPC interceptor, DB instrumentation.

    Build it with :meth:`from_environ` (production) or pass providers (tests, or an
    application that configured OpenTelemetry itself). A ``Telemetry()`` with no
    providers is off: it only carries :attr:`stats`.

    Args:
        tracer_provider: where spans go; None: no traces.
        meter_provider: where metrics go; None: no metrics.
        owns_providers: shut the providers down in :meth:`shutdown` (true for
            providers :meth:`from_environ` made).
    """

    def __init__(
        self,
        *,
        tracer_provider: Any | None = None,
        meter_provider: Any | None = None,
        owns_providers: bool = False,
    ) -> None:
        self.stats = ServerStats()
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._owns = owns_providers
        if self.enabled:
            from opentelemetry import metrics, trace

            tracer = (
                trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
                if tracer_provider is not None
                else None
            )
            meter = (
                metrics.get_meter(_SCOPE, meter_provider=meter_provider)
                if meter_provider is not None
                else None
            )
            self.stats._attach(_Instruments(meter, tracer))

    @property
    def enabled(self) -> bool:
        """True when traces or metrics are recorded."""
        return self.tracer_provider is not None or self.meter_provider is not None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Telemetry:
        """Telemetry as the ``OTEL_*`` variables configure it (off when none asks for it).

        Never raises for a missing ``otel`` extra or exporter: it logs a warning and
        leaves that part off, so the server always starts.

        Args:
            environ: where to read which signals are on, the exporters' names and the
                service name (default ``os.environ``). The exporters, sampler and
                batch processor read their own settings from ``os.environ``.
        """
        environ = os.environ if environ is None else environ
        if _truthy(environ.get("OTEL_SDK_DISABLED")):
            return cls()
        trace_names = _exporter_names(environ, "traces")
        metric_names = _exporter_names(environ, "metrics")
        if not trace_names and not metric_names:
            return cls()
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning(
                "OpenTelemetry is configured (OTEL_* variables) but not installed; "
                "running without it: pip install 'ketch[otel]'"
            )
            return cls()
        resource = _resource(environ)
        tracer_provider = meter_provider = None
        span_exporters = _load_exporters(trace_names, "opentelemetry_traces_exporter")
        if span_exporters:
            tracer_provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_*
            for exporter in span_exporters:
                tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        metric_exporters = _load_exporters(metric_names, "opentelemetry_metrics_exporter")
        if metric_exporters:
            readers = [PeriodicExportingMetricReader(e) for e in metric_exporters]
            meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        log.info(
            "OpenTelemetry on",
            extra={"traces": trace_names, "metrics": metric_names},
        )
        return cls(
            tracer_provider=tracer_provider, meter_provider=meter_provider, owns_providers=True
        )

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The tracing interceptor to put in the server's chain (none when tracing is off).

        It goes after authentication and before the error interceptor, so the span
        sees the status the error interceptor sets.
        """
        if self.tracer_provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

        return [
            aio_server_interceptor(
                tracer_provider=self.tracer_provider,
                filter_=filters.negate(filters.health_check()),
            )
        ]

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """Trace ``engine``'s SQL and observe its pool (no-op when off).

        Only this engine is instrumented (no global patching of SQLAlchemy), through
        its ``sync_engine``: the asyncpg driver is not instrumented, so a statement
        yields one span, not two.
        """
        if self.tracer_provider is not None:
            from opentelemetry import metrics, trace
            from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

            scope = "opentelemetry.instrumentation.sqlalchemy"
            EngineTracer(
                trace.get_tracer(scope, tracer_provider=self.tracer_provider),
                engine.sync_engine,
                # Pool usage is ketch.db.pool.connections below; this counter stays unread.
                metrics.NoOpMeterProvider().get_meter(scope).create_up_down_counter("unused"),
            )
        if self.meter_provider is not None:
            self._observe_pool(engine)

    def _observe_pool(self, engine: AsyncEngine) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter(_SCOPE, meter_provider=self.meter_provider)
        dialect = {"db.system": engine.dialect.name}

        def connections(_options: Any) -> Iterator[Any]:
            usage = pool_usage(engine)
            for state, value in (
                ("used", usage.checked_out),
                ("idle", usage.checked_in),
                ("overflow", usage.overflow),
            ):
                yield metrics.Observation(value, {**dialect, "state": state})

        def size(_options: Any) -> Iterator[Any]:
            yield metrics.Observation(pool_usage(engine).size, dialect)

        meter.create_observable_gauge(
            "ketch.db.pool.connections",
            callbacks=[connections],
            unit="{connection}",
            description="Database connections of this replica's pool, by state",
        )
        meter.create_observable_gauge(
            "ketch.db.pool.size",
            callbacks=[size],
            unit="{connection}",
            description="Connections the pool keeps open",
        )

    def shutdown(self) -> None:
        """Flush and stop the exporters this object created (a no-op otherwise)."""
        if not self._owns:
            return
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception as exc:  # an unreachable collector must not block shutdown
                    log.warning("OpenTelemetry shutdown failed: %s", exc)
