"""How the SDK proves who it is and whom it talks to.

Settings come from arguments, else environment variables:

======================  =====================================================
``KETCH_API_TOKEN``     bearer token (``ketch_<id>_<secret>``), sent on every call
``KETCH_TLS_CA``        CA bundle (PEM) that signs the server's certificate, for
                        ``grpcs://`` servers with a private CA (default: the
                        system roots bundled with gRPC)
``KETCH_TLS_CERT``      client certificate (PEM), for servers with ``--auth mtls``
``KETCH_TLS_KEY``       its private key (PEM)
======================  =====================================================

``KETCH_ALLOW_PLAINTEXT_TOKEN=1`` lifts the cleartext rule below, for meshes that
encrypt the connection outside ketch.

A token is only sent over TLS, or to a loopback address (where nothing else can
see it): sending it in cleartext across a network would hand it to anyone on
the path, so that is refused with a message saying how to fix it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import grpc

from ketch import errors
from ketch._metadata import MetadataInterceptor

__all__ = ["Credentials", "open_channel"]


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What to present to the server; empty fields mean none."""

    api_token: str | None = None
    ca_file: pathlib.Path | None = None
    cert_file: pathlib.Path | None = None
    key_file: pathlib.Path | None = None

    @classmethod
    def resolve(
        cls, api_token: str | None = None, env: Mapping[str, str] = os.environ
    ) -> Credentials:
        """Credentials from the argument, else KETCH_API_TOKEN and KETCH_TLS_* variables."""

        def path(name: str) -> pathlib.Path | None:
            value = env.get(name, "").strip()
            return pathlib.Path(value).expanduser() if value else None

        token = (api_token or env.get("KETCH_API_TOKEN", "")).strip() or None
        creds = cls(token, path("KETCH_TLS_CA"), path("KETCH_TLS_CERT"), path("KETCH_TLS_KEY"))
        if (creds.cert_file is None) != (creds.key_file is None):
            raise errors.InvalidArgument(
                "KETCH_TLS_CERT and KETCH_TLS_KEY go together: set both (client certificate "
                "and its key) or neither",
                metadata={"field": "KETCH_TLS_CERT"},
            )
        return creds

    def ssl(self) -> grpc.ChannelCredentials:
        def read(p: pathlib.Path | None, what: str) -> bytes | None:
            if p is None:
                return None
            try:
                return p.read_bytes()
            except OSError as exc:
                raise errors.InvalidArgument(
                    f"cannot read the {what} {p}: {exc.strerror}", metadata={"field": what}
                ) from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file, "KETCH_TLS_CA"),
            private_key=read(self.key_file, "KETCH_TLS_KEY"),
            certificate_chain=read(self.cert_file, "KETCH_TLS_CERT"),
        )


def _is_loopback(target: str) -> bool:
    """Whether every address of a gRPC target is on this machine."""
    for prefix in ("ipv4:", "ipv6:", "dns:///"):
        target = target.removeprefix(prefix)
    for address in target.split(","):
        host = address.rsplit(":", 1)[0].strip("[]")
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


class _BearerInterceptor(MetadataInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call, all four shapes."""

    def __init__(self, token: str) -> None:
        self._header = [("authorization", f"Bearer {token}")]

    def extra(self) -> list[tuple[str, str]]:
        return self._header


def open_channel(
    target: str, secure: bool, credentials: Credentials, options: list[tuple[str, Any]]
) -> grpc.Channel:
    """A channel to ``target``: TLS when ``secure`` (with the CA and client certificate
    given), carrying the bearer token when there is one.

    Raises:
        ketch.errors.InvalidArgument: a token for a plaintext non-loopback server, or a
            client certificate for a plaintext server.
    """
    if secure:
        channel = grpc.secure_channel(target, credentials.ssl(), options)
    else:
        if credentials.cert_file is not None:
            raise errors.InvalidArgument(
                f"a client certificate (KETCH_TLS_CERT) needs a grpcs:// URI, not plaintext "
                f"{target}",
                metadata={"field": "uri"},
            )
        if (
            credentials.api_token
            and not _is_loopback(target)
            and os.environ.get("KETCH_ALLOW_PLAINTEXT_TOKEN", "") not in ("1", "true")
        ):
            raise errors.InvalidArgument(
                f"refusing to send the API token in cleartext to {target}: use a grpcs:// "
                "URI (set KETCH_TLS_CA for a private CA), or KETCH_ALLOW_PLAINTEXT_TOKEN=1 "
                "when a service mesh encrypts the connection",
                metadata={"field": "uri"},
            )
        channel = grpc.insecure_channel(target, options)
    if credentials.api_token:
        channel = grpc.intercept_channel(channel, _BearerInterceptor(credentials.api_token))
    return channel
