"""Domain errors: what went wrong, in the language of the domain.

The store translates database errors into these; the API layer's error
interceptor translates these into gRPC status codes (``api/errors.py``). Nothing
below the API layer knows about status codes.

Tree::

    KetchError
    ├── InvalidArgument      bad input; names the offending field
    ├── NotFound             the resource does not exist
    ├── AlreadyExists        a unique name or id is taken
    ├── FailedPrecondition   the request is valid but the state forbids it
    │   └── ParamConflict    a param was already logged with another value
    ├── Aborted              etag mismatch or a lost race; retry after re-reading
    ├── OutOfRange           a sequence or range outside what is allowed
    ├── ResourceExhausted    an explicit limit was exceeded; names the limit
    ├── Unavailable          a dependency (the database) cannot be reached
    ├── Unauthenticated      no credentials, or credentials that are not valid
    └── PermissionDenied     the caller is known but may not do this
"""

from __future__ import annotations

__all__ = [
    "Aborted",
    "AlreadyExists",
    "FailedPrecondition",
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
    """Base of every domain error.

    Attributes:
        message: A sentence for the user: what happened and what to do.
        reason: A stable UPPER_SNAKE identifier for programs (google.rpc.ErrorInfo.reason).
        metadata: Extra machine-readable facts (e.g. ``{"field": "display_name"}``).
    """

    default_reason = "KETCH_ERROR"

    def __init__(self, message: str, *, reason: str | None = None, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = {k: str(v) for k, v in metadata.items()}


class InvalidArgument(KetchError):
    """A request field is malformed or out of bounds."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(f"{field}: {message}", reason=reason, field=field)
        self.field = field


class NotFound(KetchError):
    """The named resource does not exist."""

    default_reason = "NOT_FOUND"

    def __init__(self, resource: str, message: str | None = None) -> None:
        super().__init__(message or f"{resource} not found", resource=resource)
        self.resource = resource


class AlreadyExists(KetchError):
    default_reason = "ALREADY_EXISTS"

    def __init__(self, resource: str, message: str, *, field: str = "") -> None:
        super().__init__(message, resource=resource, field=field)


class FailedPrecondition(KetchError):
    default_reason = "FAILED_PRECONDITION"


class ParamConflict(FailedPrecondition):
    default_reason = "PARAM_CONFLICT"

    def __init__(self, run: str, key: str, stored: str, given: str) -> None:
        super().__init__(
            f"param {key!r} of {run} is already {stored!r}; params are write-once, so it "
            f"cannot become {given!r}. Log the new value under another key or start a new run.",
            field=f"params[{key}]",
            key=key,
        )


class Aborted(KetchError):
    default_reason = "ABORTED"


class OutOfRange(KetchError):
    default_reason = "OUT_OF_RANGE"


class ResourceExhausted(KetchError):
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message, limit=limit)


class Unavailable(KetchError):
    default_reason = "UNAVAILABLE"


class Unauthenticated(KetchError):
    """The call carries no credentials, or ones the server does not accept."""

    default_reason = "UNAUTHENTICATED"


class PermissionDenied(KetchError):
    """The caller is authenticated but not allowed to do this (role, self-approval...)."""

    default_reason = "PERMISSION_DENIED"
