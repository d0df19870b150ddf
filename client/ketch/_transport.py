"""The SDK's gRPC transport: one lazily created channel per process.

Only this module and ``_convert`` touch generated types. Channels are created on
first use in the calling process (fork safety: a forked child makes its own).
Calls are synchronous, thread-safe, and raise :mod:`ketch.errors` exceptions.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from ketch import _tracing, errors
from ketch._config import DEFAULT_URI, Endpoint, parse_uri
from ketch._credentials import Credentials, open_channel
from ketch.api.v1 import tracking_pb2_grpc

__all__ = ["Transport"]

T = TypeVar("T")

_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.enable_retries", 1),
]


def _balancing(endpoint: Endpoint) -> list[tuple[str, Any]]:
    """Round-robin over every address of the target: calls spread across replicas and
    skip the ones that are down; with TLS, certificates are checked against the name in
    the URI even when the target lists addresses."""
    options: list[tuple[str, Any]] = [("grpc.lb_policy_name", "round_robin")]
    if endpoint.authority:
        options.append(("grpc.default_authority", endpoint.authority))
        if endpoint.secure:
            options.append(("grpc.ssl_target_name_override", endpoint.authority))
    return options


class Transport:
    """Synchronous access to the tracking service at ``uri``."""

    def __init__(
        self, uri: str | None = None, *, timeout: float = 30.0, api_token: str | None = None
    ) -> None:
        self.uri = uri or os.environ.get("KETCH_TRACKING_URI") or DEFAULT_URI
        self.endpoint: Endpoint = parse_uri(self.uri)
        self.credentials = Credentials.resolve(api_token)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._channel: grpc.Channel | None = None
        self._stubs: dict[type, Any] = {}

    def stub_for(self, stub_class: type[T]) -> T:
        """This process's stub of a service (channel and stubs made on first use, and
        again in a forked child)."""
        with self._lock:
            if self._channel is None or self._pid != os.getpid():
                self._channel = open_channel(
                    self.endpoint.target,
                    self.endpoint.secure,
                    self.credentials,
                    [*_OPTIONS, *_balancing(self.endpoint)],
                )
                self._channel = _tracing.intercept(self._channel)
                self._pid = os.getpid()
                self._stubs = {}
            stub = self._stubs.get(stub_class)
            if stub is None:
                stub = self._stubs[stub_class] = stub_class(self._channel)
            return stub

    @property
    def stub(self) -> tracking_pb2_grpc.TrackingServiceStub:
        return self.stub_for(tracking_pb2_grpc.TrackingServiceStub)

    @property
    def channel(self) -> grpc.Channel:
        """This process's channel (created on first use)."""
        _ = self.stub
        assert self._channel is not None
        return self._channel

    def call(
        self,
        method: str,
        request: Any,
        *,
        retries: int = 0,
        timeout: float | None = None,
        service: type = tracking_pb2_grpc.TrackingServiceStub,
    ):
        """Call a unary method of ``service``; retry UNAVAILABLE ``retries`` times with
        backoff. Only pass ``retries`` for idempotent calls (reads, creates with request_id).
        """
        fn: Callable[..., Any] = getattr(self.stub_for(service), method)
        for attempt in range(retries + 1):
            try:
                return fn(request, timeout=timeout or self.timeout)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == retries:
                    raise errors.from_rpc_error(err) from None
                time.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def pages(
        self, method: str, make_request: Callable[[str], Any], *, service: type | None = None
    ) -> Iterator[Any]:
        """Every page of a paginated read: ``make_request(page_token)`` builds each request."""
        token = ""
        while True:
            resp = self.call(
                method,
                make_request(token),
                retries=3,
                service=service or tracking_pb2_grpc.TrackingServiceStub,
            )
            yield resp
            token = resp.next_page_token
            if not token:
                return

    def stream(self, method: str, request: Any, *, timeout: float | None = None) -> Iterator[Any]:
        """Iterate a server-streaming method, translating errors."""
        try:
            yield from getattr(self.stub, method)(request, timeout=timeout or self.timeout * 10)
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from None

    def close(self) -> None:
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = None
            self._stubs = {}
