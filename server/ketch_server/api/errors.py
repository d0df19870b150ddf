"""The one place where domain errors become gRPC statuses.

:class:`ErrorInterceptor` wraps every handler (all four RPC shapes). A
:class:`KetchError` becomes its status code with a ``google.rpc.Status`` whose
details hold an ``ErrorInfo(reason, domain="ketch.ml", metadata)``; metadata
names the offending field or limit. Anything else becomes INTERNAL with a
generic message, and its traceback is logged with an incident id that the
message repeats, so an operator can find it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ketch_server.domain import errors

__all__ = ["ErrorInterceptor", "to_status"]

log = logging.getLogger("ketch.api")

DOMAIN = "ketch.ml"

_CODES: list[tuple[type[errors.KetchError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Aborted, grpc.StatusCode.ABORTED),
    (errors.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
]


def _code_of(exc: errors.KetchError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


# Error messages quote what the caller sent; capped so that the status trailers stay
# well under clients' metadata limits (16 KiB by default in gRPC) whatever was sent.
MAX_MESSAGE_CHARS = 1024
MAX_METADATA_CHARS = 256


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "...(truncated)"


def to_status(exc: errors.KetchError) -> grpc.Status:
    """The rich status for a domain error (message and metadata values capped)."""
    code = _code_of(exc)
    metadata = {k[:64]: _cap(v, MAX_METADATA_CHARS) for k, v in list(exc.metadata.items())[:16]}
    info = error_details_pb2.ErrorInfo(reason=exc.reason[:64], domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name),
        message=_cap(exc.message, MAX_MESSAGE_CHARS),
        details=[detail],
    )
    return rpc_status.to_status(status)


def _parser(deserialize: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    """Parse request bytes here rather than in gRPC, so that bytes that are not the
    method's message become INVALID_ARGUMENT with ErrorInfo instead of a bare UNKNOWN."""
    service_method = method.rsplit("/", 1)[-1]

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as exc:
            raise errors.InvalidArgument(
                "request",
                f"the bytes sent to {service_method} are not a valid request message "
                f"({type(exc).__name__}); check that client and server use the same API",
                reason="MALFORMED_REQUEST",
            ) from None

    return parse


async def _parsed(raw_requests: AsyncIterator[bytes], parse: Callable[[bytes], Any]):
    async for raw in raw_requests:
        yield parse(raw)


def _internal(method: str, exc: BaseException) -> grpc.Status:
    incident = uuid.uuid4().hex[:12]
    log.error(
        "unhandled error in %s (incident %s)",
        method,
        incident,
        exc_info=exc,
        extra={"rpc": method, "incident": incident},
    )
    status = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (incident {incident}); the server log has the details",
    )
    return rpc_status.to_status(status)


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: BaseException) -> None:
    status = to_status(exc) if isinstance(exc, errors.KetchError) else _internal(method, exc)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _wrap_unary(method: str, fn: Callable[..., Awaitable[Any]], parse, streaming: bool):
    async def handler(request, context):
        try:
            request = _parsed(request, parse) if streaming else parse(request)
            return await fn(request, context)
        except (grpc.aio.AbortError, grpc.aio.UsageError):  # context.abort already called
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    return handler


def _wrap_stream(method: str, fn: Callable[..., Any], parse, streaming: bool):
    async def handler(request, context):
        try:
            request = _parsed(request, parse) if streaming else parse(request)
            async for item in fn(request, context):
                yield item
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Translate exceptions escaping any handler into statuses (see module docstring)."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith("/ketch."):
            return handler  # health and reflection keep their own semantics
        parse = _parser(handler.request_deserializer or (lambda raw: raw), method)
        # request_deserializer=None: the wrapped handler gets bytes and parses them.
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, parse, False),
                None,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(method, handler.stream_unary, parse, True),
                None,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream, parse, False),
                None,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(method, handler.stream_stream, parse, True),
            None,
            handler.response_serializer,
        )
