"""One base for client interceptors that add metadata to every call (all four shapes):
the bearer token (:mod:`ketch._credentials`) and the trace context
(:mod:`ketch._tracing`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import grpc

__all__ = ["MetadataInterceptor"]


@dataclasses.dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Subclasses say what to add in :meth:`extra`, evaluated at the start of each call."""

    def extra(self) -> Iterable[tuple[str, str]]:
        raise NotImplementedError

    def _details(self, details: Any) -> Any:
        added = list(self.extra())
        if not added:
            return details
        return _CallDetails(
            details.method,
            details.timeout,
            [*(details.metadata or ()), *added],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    intercept_unary_unary = _call
    intercept_unary_stream = _call
    intercept_stream_unary = _call
    intercept_stream_stream = _call
