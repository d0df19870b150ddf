"""SDK configuration from arguments and KETCH_* environment variables."""

from __future__ import annotations

import dataclasses
import os
import socket
from urllib.parse import urlsplit

from ketch.errors import InvalidArgument

__all__ = ["DEFAULT_URI", "Endpoint", "parse_uri", "resolve_mode"]

DEFAULT_URI = "grpc://127.0.0.1:50051"
MODES = ("online", "offline", "disabled")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the servers are: a gRPC target, whether to use TLS, and the name the
    servers' certificates carry when the target lists addresses."""

    target: str
    secure: bool
    authority: str | None = None


def _bad_uri(uri: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"tracking URI {uri!r} {why}; use grpc://host:port, grpcs://host:port, several "
        "servers as grpc://h1:p1,h2:p2, or dns:///name:port",
        metadata={"field": "uri"},
    )


def _host_port(uri: str, text: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(f"//{text}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise _bad_uri(uri, f"has a bad port in {text!r}") from None
    if not parts.hostname or parts.path or parts.query or parts.fragment or parts.username:
        raise _bad_uri(uri, f"has a bad server address {text!r}")
    return parts.hostname, port


def _address_list(uri: str, hosts: list[tuple[str, int]]) -> str:
    """An ``ipv4:`` / ``ipv6:`` target listing every address of every host."""
    v4: list[str] = []
    v6: list[str] = []
    for host, port in hosts:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise _bad_uri(uri, f"names {host!r}, which does not resolve ({exc})") from None
        for family, _, _, _, addr in infos:
            if family == socket.AF_INET and f"{addr[0]}:{port}" not in v4:
                v4.append(f"{addr[0]}:{port}")
            elif family == socket.AF_INET6 and f"[{addr[0]}]:{port}" not in v6:
                v6.append(f"[{addr[0]}]:{port}")
    return "ipv4:" + ",".join(v4) if v4 else "ipv6:" + ",".join(v6)


def parse_uri(uri: str | None = None) -> Endpoint:
    """Parse a tracking URI (default KETCH_TRACKING_URI).

    * ``grpc://host:port`` / ``grpcs://host:port`` (TLS): one server, or every address
      the name resolves to (a headless Service), balanced round-robin.
    * ``grpc://h1:p1,h2:p2,h3:p3``: several servers, balanced round-robin; calls go to
      the ones that answer, so a replica that dies is skipped (failover).
    * ``dns:///name:port``: gRPC's DNS resolver, re-resolved as replicas come and go.
    """
    uri = (uri or os.environ.get("KETCH_TRACKING_URI") or DEFAULT_URI).strip()
    scheme, sep, rest = uri.partition("://")
    if scheme == "dns" and uri.startswith("dns:///"):
        host, port = _host_port(uri, uri[len("dns:///") :], 50051)
        return Endpoint(target=f"dns:///{_join(host, port)}", secure=False)
    if not sep or scheme not in ("grpc", "grpcs"):
        raise _bad_uri(uri, "has an unknown scheme")
    secure = scheme == "grpcs"
    rest = rest[:-1] if rest.endswith("/") else rest
    if "/" in rest or "?" in rest or "#" in rest:
        raise _bad_uri(uri, "must not have a path, query or fragment")
    hosts = [_host_port(uri, h.strip(), 443 if secure else 50051) for h in rest.split(",")]
    if len(hosts) == 1:
        host, port = hosts[0]
        return Endpoint(target=_join(host, port), secure=secure)
    return Endpoint(target=_address_list(uri, hosts), secure=secure, authority=hosts[0][0])


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_mode(mode: str | None) -> str:
    mode = (mode or os.environ.get("KETCH_MODE") or "online").lower()
    if mode not in MODES:
        raise InvalidArgument(
            f"mode {mode!r} is not one of {', '.join(MODES)}", metadata={"field": "mode"}
        )
    return mode
