"""Trace context from the SDK to the server: W3C ``traceparent`` in call metadata.

When the ``opentelemetry`` API is importable, :func:`intercept` wraps the SDK's
channel with :class:`TraceContextInterceptor`. At the start of each call it
looks at the current OpenTelemetry span; when one is active it injects the
current context with the configured propagator (``OTEL_PROPAGATORS``, default
W3C ``traceparent`` and ``baggage``) into the call's metadata, so the server's
RPC span becomes its child. Without an active span nothing is added, and
without ``opentelemetry`` installed the channel is returned unwrapped.

This adds context propagation only: the SDK records no spans of its own, so an
application that traces (``tracer.start_as_current_span(...)`` around
``run.log`` / ``client.search_runs``) sees the server's spans under its own.
A long-lived metric stream carries the context active when it opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from ketch._metadata import MetadataInterceptor

__all__ = ["TraceContextInterceptor", "intercept"]


class TraceContextInterceptor(MetadataInterceptor):
    """Adds the active OpenTelemetry context to the metadata of every call shape.

    Args:
        current_span: returns the active span (``opentelemetry.trace.get_current_span``).
        inject: writes the current context into a dict carrier
            (``opentelemetry.propagate.inject``).
    """

    def __init__(
        self, current_span: Callable[[], Any], inject: Callable[[dict[str, str]], None]
    ) -> None:
        self._current_span = current_span
        self._inject = inject

    def extra(self) -> list[tuple[str, str]]:
        if not self._current_span().get_span_context().is_valid:
            return []
        carrier: dict[str, str] = {}
        self._inject(carrier)
        return list(carrier.items())


def intercept(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with trace-context propagation when ``opentelemetry`` is importable,
    else ``channel`` itself."""
    try:
        from opentelemetry import propagate, trace
    except ImportError:
        return channel
    interceptor = TraceContextInterceptor(trace.get_current_span, propagate.inject)
    return grpc.intercept_channel(channel, interceptor)
