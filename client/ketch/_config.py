"""SDK configuration from arguments and KETCH_* environment variables."""

from __future__ import annotations

import dataclasses
import os
from urllib.parse import urlsplit

from ketch.errors import InvalidArgument

__all__ = ["DEFAULT_URI", "Endpoint", "parse_uri", "resolve_mode"]

DEFAULT_URI = "grpc://127.0.0.1:50051"
MODES = ("online", "offline", "disabled")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the server is: a gRPC target and whether to use TLS."""

    target: str
    secure: bool


def parse_uri(uri: str | None = None) -> Endpoint:
    """Parse ``grpc://host:port`` or ``grpcs://host:port`` (default KETCH_TRACKING_URI)."""
    uri = uri or os.environ.get("KETCH_TRACKING_URI") or DEFAULT_URI
    parts = urlsplit(uri)
    if parts.scheme not in ("grpc", "grpcs") or not parts.hostname:
        raise InvalidArgument(
            f"tracking URI {uri!r} is not grpc://host:port or grpcs://host:port",
            metadata={"field": "uri"},
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidArgument(
            f"tracking URI {uri!r} must not have a path, query or fragment",
            metadata={"field": "uri"},
        )
    secure = parts.scheme == "grpcs"
    port = parts.port or (443 if secure else 50051)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Endpoint(target=f"{host}:{port}", secure=secure)


def resolve_mode(mode: str | None) -> str:
    mode = (mode or os.environ.get("KETCH_MODE") or "online").lower()
    if mode not in MODES:
        raise InvalidArgument(
            f"mode {mode!r} is not one of {', '.join(MODES)}", metadata={"field": "mode"}
        )
    return mode
