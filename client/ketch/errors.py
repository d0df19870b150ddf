"""Typed exceptions raised by the ketch SDK.

Every failed call raises a subclass of :class:`KetchError`; a status code from
the server maps to one class, and the server's ``ErrorInfo`` (reason and
metadata, e.g. the offending ``field``) is kept on the exception.

Tree::

    KetchError
    ├── InvalidArgument (also ValueError)   bad input; .field names it
    ├── NotFound (also LookupError)
    ├── AlreadyExists
    ├── FailedPrecondition
    │   └── ParamConflict                   a param already has another value
    ├── Aborted                             etag mismatch; re-read and retry
    ├── OutOfRange
    ├── ResourceExhausted                   a limit; .metadata["limit"] names it
    ├── PermissionDenied
    ├── Unauthenticated
    ├── Unavailable                         the server cannot be reached
    ├── DeadlineExceeded
    └── Internal                            a server bug; the message has an incident id
"""

from __future__ import annotations

from typing import Any

import grpc

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "KetchError",
    "NotFound",
    "OutOfRange",
    "ParamConflict",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class KetchError(Exception):
    """Base of all SDK errors.

    Attributes:
        message: What happened, for people.
        code: The gRPC status code (None for errors raised before any call).
        reason: Stable identifier from the server's ErrorInfo, e.g. ``PARAM_CONFLICT``.
        metadata: Facts from ErrorInfo, e.g. ``{"field": "display_name"}``.
    """

    code: grpc.StatusCode | None = None

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        if code is not None:
            self.code = code

    @property
    def field(self) -> str:
        """The request field at fault, when the server named one."""
        return self.metadata.get("field", "")


class InvalidArgument(KetchError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(KetchError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(KetchError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(KetchError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ParamConflict(FailedPrecondition):
    pass


class Aborted(KetchError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(KetchError):
    code = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhausted(KetchError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(KetchError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(KetchError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(KetchError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(KetchError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(KetchError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[KetchError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        ResourceExhausted,
        PermissionDenied,
        Unauthenticated,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}
_BY_REASON: dict[str, type[KetchError]] = {"PARAM_CONFLICT": ParamConflict}


def _error_info(err: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """(reason, metadata) from google.rpc.ErrorInfo in the trailers, if present."""
    from google.rpc import error_details_pb2, status_pb2

    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason, dict(info.metadata)
    return "", {}


def from_rpc_error(err: Any) -> KetchError:
    """Translate a ``grpc.RpcError`` into the matching :class:`KetchError`."""
    code = err.code()
    reason, metadata = _error_info(err)
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code, KetchError)
    message = err.details() or code.name
    if cls is Unavailable:
        message = f"{message} (is the ketch server running and reachable?)"
    return cls(message, reason=reason, metadata=metadata, code=code)
