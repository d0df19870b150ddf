"""OpenTelemetry: RPC and DB spans collected in process, trace context from the SDK,
the ingest metrics, OTLP export from the real server, and life without the extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import ketch
import pytest
from ketch import errors
from ketch_server.app import _grpc_options
from ketch_server.settings import Settings, add_arguments, from_args
from ketch_server.telemetry import ServerStats, Telemetry

from tests.conftest import ServerProcess, ThreadServer

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

RPC = "/ketch.api.v1.TrackingService/"
SQL_SCOPE = "opentelemetry.instrumentation.sqlalchemy"


class TracedServer(ThreadServer):
    """ThreadServer built with in-memory span and metric collection."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.telemetry = Telemetry(
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(metric_readers=[self.metrics]),
        )

    async def _start(self) -> None:
        from ketch_server.app import build_server

        self.app = await build_server(self.settings, telemetry=self.telemetry)
        await self.app.start()

    def finished(self, name: str, timeout: float = 5.0) -> list:
        """The finished spans called ``name``, waiting briefly for at least one: a
        server span ends just after its call's status is sent."""
        deadline = time.monotonic() + timeout
        while True:
            found = [s for s in self.spans.get_finished_spans() if s.name == name]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def metric_points(self) -> dict[str, list]:
        data = self.metrics.get_metrics_data()
        found: dict[str, list] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def traced(db_url, tmp_path) -> Iterator[TracedServer]:
    settings = Settings(port=0, data_dir=tmp_path / "data", db_url=db_url, grace_seconds=1)
    srv = TracedServer(settings).start()
    yield srv
    srv.stop()


def _db_spans(server: TracedServer) -> list:
    return [
        s
        for s in server.spans.get_finished_spans()
        if s.kind is trace.SpanKind.CLIENT and s.instrumentation_scope.name == SQL_SCOPE
    ]


def _descends_from(span, ancestor, by_id: dict) -> bool:
    while span.parent is not None:
        if span.parent.span_id == ancestor.context.span_id:
            return True
        span = by_id.get(span.parent.span_id)
        if span is None:
            return False
    return False


def test_rpc_spans_name_method_and_status_and_parent_db_spans(traced):
    with ketch.Client(traced.uri) as client:
        exp = client.create_experiment("traced")
        with pytest.raises(errors.NotFound):
            client.get_experiment("0" * 32)

    (create,) = traced.finished(RPC + "CreateExperiment")
    assert create.kind is trace.SpanKind.SERVER
    assert create.attributes["rpc.service"] == "ketch.api.v1.TrackingService"
    assert create.attributes["rpc.method"] == "CreateExperiment"
    assert create.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert create.status.status_code.name == "UNSET"

    (missing,) = traced.finished(RPC + "GetExperiment")
    assert missing.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # OTel semantic conventions: NOT_FOUND is the caller's error, not the server's.
    assert missing.status.status_code.name == "UNSET"

    spans = traced.spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    db = _db_spans(traced)
    under_create = [s for s in db if _descends_from(s, create, by_id)]
    assert under_create, "CreateExperiment ran SQL but no DB span is under its RPC span"
    assert any("INSERT" in s.attributes.get("db.statement", "") for s in under_create)
    assert all(s.context.trace_id == create.context.trace_id for s in under_create)
    assert exp.id


def test_each_statement_is_traced_once(traced):
    """The SQLAlchemy spans are the only DB spans: no asyncpg/aiosqlite span beneath them."""
    with ketch.Client(traced.uri) as client:
        client.create_experiment("once")
        list(client.list_experiments())
    spans = traced.spans.get_finished_spans()
    db_ids = {s.context.span_id for s in _db_spans(traced)}
    assert db_ids
    nested = [s for s in spans if s.parent is not None and s.parent.span_id in db_ids]
    assert not nested, f"spans inside DB spans (duplicates): {[s.name for s in nested]}"
    scopes = {s.instrumentation_scope.name for s in spans}
    assert not {s for s in scopes if "asyncpg" in s or "sqlite" in s}, scopes


def test_client_span_trace_id_reaches_the_server_span(traced):
    provider = TracerProvider()  # the application's own tracing
    tracer = provider.get_tracer("training-script")
    with ketch.Client(traced.uri) as client, tracer.start_as_current_span("train") as parent:
        client.create_experiment("propagated")
    (server_span,) = traced.finished(RPC + "CreateExperiment")
    assert server_span.context.trace_id == parent.get_span_context().trace_id
    assert server_span.parent.span_id == parent.get_span_context().span_id
    assert server_span.parent.is_remote


def test_streamed_points_feed_the_ingest_metrics_and_commit_spans(traced):
    run = ketch.init(
        experiment="metrics",
        uri=traced.uri,
        capture_environment=False,
        system_metrics=False,
        flush_interval=0.01,
    )
    for step in range(2_000):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 2_000}, step=step)
    assert run.flush(timeout=30)
    during = traced.metric_points()
    run.finish()
    after = traced.metric_points()

    assert sum(p.value for p in after["ketch.ingest.points"]) == 4_000
    (latency,) = after["ketch.ingest.commit.duration"]
    assert latency.count >= 1 and latency.sum > 0
    assert [p.value for p in during["ketch.ingest.streams.open"]] == [1]
    assert [p.value for p in after["ketch.ingest.streams.open"]] == [0]
    states = {p.attributes["state"]: p.value for p in after["ketch.db.pool.connections"]}
    assert set(states) == {"used", "idle", "overflow"} and states["idle"] >= 1
    assert after["ketch.db.pool.size"][0].value > 0

    commits = traced.finished("ketch.ingest.commit")
    assert sum(s.attributes["ketch.ingest.points"] for s in commits) == 4_000
    by_id = {s.context.span_id: s for s in traced.spans.get_finished_spans()}
    assert any(_descends_from(s, commits[0], by_id) for s in _db_spans(traced))
    assert len(traced.finished(RPC + "StreamMetrics")) == 1


# ------------------------------------------------------------------ configuration


def test_off_without_otel_variables():
    telemetry = Telemetry.from_environ({})
    assert not telemetry.enabled
    assert telemetry.server_interceptors() == []


def test_sdk_disabled_wins(monkeypatch):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "true"}
    assert not Telemetry.from_environ(env).enabled


def test_endpoint_turns_on_otlp_with_ketch_as_service_name():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_METRICS_EXPORTER": "none"}
    telemetry = Telemetry.from_environ(env)
    try:
        assert telemetry.tracer_provider is not None and telemetry.meter_provider is None
        assert telemetry.tracer_provider.resource.attributes["service.name"] == "ketch"
        processors = telemetry.tracer_provider._active_span_processor._span_processors
        assert [type(p.span_exporter) for p in processors] == [OTLPSpanExporter]
        assert len(telemetry.server_interceptors()) == 1
    finally:
        telemetry.shutdown()

    named = Telemetry.from_environ({**env, "OTEL_SERVICE_NAME": "ketch-eu"})
    try:
        assert named.tracer_provider.resource.attributes["service.name"] == "ketch-eu"
    finally:
        named.shutdown()


def test_rate_window_counts_the_last_ten_seconds():
    now = [1000.0]
    stats = ServerStats(clock=lambda: now[0])
    for _ in range(20):  # 20 s of 100 points per second
        now[0] += 1.0
        stats.record_commit(100, 0.001)
    snap = stats.snapshot()
    assert snap.points_total == 2_000 and snap.commits_total == 20
    assert snap.window_seconds == pytest.approx(10.0)
    assert snap.points_per_second == pytest.approx(110.0)  # 11 buckets of 100 over 10 s
    now[0] += 30.0
    assert stats.snapshot().points_per_second == 0.0


def test_max_connection_age_maps_to_grpc_options():
    ns = _parse(["--max-connection-age", "300", "--grace", "20"])
    options = dict(_grpc_options(from_args(ns, environ={})))
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 20_000
    from_env = from_args(_parse([]), environ={"KETCH_MAX_CONNECTION_AGE_SECONDS": "60"})
    assert dict(_grpc_options(from_env))["grpc.max_connection_age_ms"] == 60_000
    assert "grpc.max_connection_age_ms" not in dict(_grpc_options(Settings()))


def _parse(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


# ------------------------------------------------------------------- the client side


def test_client_interceptor_adds_traceparent_only_under_an_active_span():
    from ketch._tracing import TraceContextInterceptor
    from opentelemetry import propagate

    seen = []
    interceptor = TraceContextInterceptor(trace.get_current_span, propagate.inject)
    details = grpc.ClientCallDetails()
    details.method, details.timeout, details.metadata = "/m", None, [("a", "1")]
    details.credentials = details.wait_for_ready = details.compression = None

    interceptor.intercept_unary_unary(lambda d, r: seen.append(d.metadata), details, None)
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        interceptor.intercept_stream_stream(lambda d, r: seen.append(d.metadata), details, None)
    assert seen[0] == [("a", "1")]
    traceparent = dict(seen[1])["traceparent"]
    assert traceparent.split("-")[1] == f"{span.get_span_context().trace_id:032x}"


# ------------------------------------------------------------------ the real server


class _Collector:
    """A minimal OTLP/gRPC collector that keeps what it receives."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2,
            metrics_service_pb2_grpc,
        )
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        self.spans: list[tuple[str, str]] = []  # (service.name, span name)
        self.metrics: dict[str, float] = {}
        self.lock = threading.Lock()
        collector = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                with collector.lock:
                    for rs in request.resource_spans:
                        service = _attribute(rs.resource, "service.name")
                        for ss in rs.scope_spans:
                            collector.spans += [(service, s.name) for s in ss.spans]
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                with collector.lock:
                    for rm in request.resource_metrics:
                        for sm in rm.scope_metrics:
                            for m in sm.metrics:
                                if m.HasField("sum"):
                                    total = sum(p.as_int or p.as_double for p in m.sum.data_points)
                                    collector.metrics[m.name] = total
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def _attribute(resource, key: str) -> str:
    return next((a.value.string_value for a in resource.attributes if a.key == key), "")


@pytest.mark.e2e
def test_server_process_exports_spans_and_metrics_over_otlp(tmp_path, monkeypatch):
    collector = _Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")  # the final flush at stop
    server = ServerProcess(tmp_path / "data")
    try:
        run = ketch.init(
            experiment="otlp", uri=server.uri, capture_environment=False, system_metrics=False
        )
        for step in range(500):
            run.log({"loss": 1.0}, step=step)
        run.finish()
    finally:
        assert server.stop() == 0, server.output()
        collector.server.stop(0)
    assert ("ketch", RPC + "StreamMetrics") in collector.spans, collector.spans
    assert any(name.startswith(("SELECT", "INSERT")) for _, name in collector.spans)
    assert collector.metrics.get("ketch.ingest.points") == 500, collector.metrics


def test_server_runs_without_opentelemetry(tmp_path):
    """With the otel extra missing but OTEL_* set, the server warns and serves."""
    script = textwrap.dedent(
        f"""
        import asyncio, logging, pathlib, sys
        sys.modules["opentelemetry"] = None  # as if ketch[otel] were not installed
        logging.basicConfig(level=logging.WARNING)
        import grpc
        from ketch._tracing import intercept
        from ketch_server.app import build_server
        from ketch_server.settings import Settings

        async def main():
            app = await build_server(Settings(port=0, data_dir=pathlib.Path({str(tmp_path)!r})))
            assert not app.telemetry.enabled
            await app.start()
            channel = grpc.insecure_channel(f"127.0.0.1:{{app.port}}")
            assert intercept(channel) is channel
            from ketch._operations import get_server_status
            from ketch._transport import Transport
            status = await asyncio.to_thread(
                get_server_status, Transport(f"grpc://127.0.0.1:{{app.port}}")
            )
            print("status", status.version)
            await app.stop(0)

        asyncio.run(main())
        """
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "status 0.1.0" in done.stdout
    assert "not installed" in done.stderr
