"""``python -m ketch_server.healthcheck``: exit 0 when the local server is SERVING.

For container health checks (the Dockerfile's ``HEALTHCHECK``) and exec probes:
asks the standard ``grpc.health.v1`` service, which says NOT_SERVING while the
database is unreachable or the server is shutting down. Exit codes: 0 SERVING,
1 anything else (the reason on stderr).

Usage::

    python -m ketch_server.healthcheck [--address 127.0.0.1:50051] [--service NAME]
                                       [--timeout 3] [--tls-ca FILE] [--server-name NAME]
                                       [--tls-cert FILE --tls-key FILE]

With ``--tls-ca`` it connects with TLS; ``--tls-cert``/``--tls-key`` add a client
certificate, for servers that require one (``--auth mtls``).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["check", "main"]


def check(
    address: str,
    *,
    service: str = "",
    timeout: float = 3.0,
    tls_ca: pathlib.Path | None = None,
    server_name: str | None = None,
    client_cert: tuple[pathlib.Path, pathlib.Path] | None = None,
) -> str:
    """The health status name of ``service`` at ``address`` (e.g. ``"SERVING"``).

    Raises:
        grpc.RpcError: the server did not answer.
    """
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    if tls_ca is not None:
        cert, key = (
            (client_cert[0].read_bytes(), client_cert[1].read_bytes())
            if client_cert
            else (None, None)
        )
        creds = grpc.ssl_channel_credentials(
            root_certificates=tls_ca.read_bytes(), private_key=key, certificate_chain=cert
        )
        channel = grpc.secure_channel(address, creds, options)
    else:
        channel = grpc.insecure_channel(address, options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def main(argv: Sequence[str] | None = None) -> None:
    """Check once and exit 0 (SERVING) or 1."""
    port = os.environ.get("KETCH_PORT") or "50051"
    parser = argparse.ArgumentParser(
        prog="python -m ketch_server.healthcheck", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--address", default=f"127.0.0.1:{port}", help="host:port to ask")
    parser.add_argument("--service", default="", help="health service name ('' = the server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    parser.add_argument("--tls-ca", type=pathlib.Path, help="CA (PEM) to trust: connect with TLS")
    parser.add_argument("--server-name", help="name the server certificate is for (TLS)")
    parser.add_argument("--tls-cert", type=pathlib.Path, help="client certificate (PEM), mTLS")
    parser.add_argument("--tls-key", type=pathlib.Path, help="client private key (PEM), mTLS")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    try:
        status = check(
            args.address,
            service=args.service,
            timeout=args.timeout,
            tls_ca=args.tls_ca,
            server_name=args.server_name,
            client_cert=(args.tls_cert, args.tls_key) if args.tls_cert else None,
        )
    except grpc.RpcError as exc:
        code = exc.code().name if isinstance(exc, grpc.Call) else str(exc)
        print(f"ketch healthcheck: {args.address}: {code}", file=sys.stderr)
        sys.exit(1)
    if status != "SERVING":
        print(f"ketch healthcheck: {args.address}: {status}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
