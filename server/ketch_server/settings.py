"""Server settings: keyword-only, explicit, from flags and KETCH_* variables.

Precedence: command-line flag, then environment variable, then default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["Settings", "add_arguments", "from_args"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server needs to start. ``db_url`` None means SQLite under data_dir."""

    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: pathlib.Path = pathlib.Path("ketch-data")
    db_url: str | None = None
    log_level: str = "INFO"
    log_json: bool = False
    grace_seconds: float = 10.0
    max_message_bytes: int = 64 * 1024 * 1024
    # Close client connections after this long (then --grace for their calls): clients
    # reconnect and rebalance across replicas. None or 0: never.
    max_connection_age_seconds: float | None = None
    health_interval_seconds: float = 5.0
    # How often each replica expires pending transition requests past their expiry.
    expiry_sweep_seconds: float = 10.0
    migrate: bool = True
    allow_anonymous: bool = False
    # Artifact bytes: "" = <data_dir>/artifacts, a directory, or s3://bucket/prefix.
    artifacts: str = ""
    s3_endpoint: str = ""
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str | None = None
    s3_secure: bool = True
    # Identity: "none" (loopback only unless allow_anonymous), "token" or "mtls".
    auth: str = "none"
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    tls_client_ca: pathlib.Path | None = None
    certificate_role: str = "reader"
    token_cache_seconds: float = 5.0
    max_streams_per_principal: int = 512
    allow_plaintext_tokens: bool = False

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ketch.db').resolve()}"


def _auth_mode(value: str) -> str:
    if value.strip().lower() not in ("none", "token", "mtls"):
        raise ValueError(value)
    return value.strip().lower()


_auth_mode.__name__ = "auth mode (none, token or mtls)"


def _boolean(value: str) -> bool:
    if value.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(value)
    return value.strip().lower() in ("1", "true", "yes", "on")


# (flag, env var, Settings field, type, help)
_OPTIONS: Sequence[tuple[str, str, str, Callable[[str], Any], str]] = (
    ("--host", "KETCH_HOST", "host", str, "address to listen on (default 127.0.0.1)"),
    ("--port", "KETCH_PORT", "port", int, "port to listen on; 0 picks a free one (default 50051)"),
    (
        "--data-dir",
        "KETCH_HOME",
        "data_dir",
        pathlib.Path,
        "directory for the SQLite database and artifacts (default ./ketch-data)",
    ),
    (
        "--db",
        "KETCH_DB",
        "db_url",
        str,
        "database URL, e.g. postgresql+asyncpg://user@host/ketch (default: SQLite in --data-dir)",
    ),
    ("--log-level", "KETCH_LOG_LEVEL", "log_level", str, "DEBUG, INFO, WARNING or ERROR"),
    (
        "--grace",
        "KETCH_GRACE_SECONDS",
        "grace_seconds",
        float,
        "seconds in-flight calls may take to finish on shutdown (default 10)",
    ),
    (
        "--max-message-bytes",
        "KETCH_MAX_MESSAGE_BYTES",
        "max_message_bytes",
        int,
        "largest gRPC message accepted or sent (default 64 MiB)",
    ),
    (
        "--max-connection-age",
        "KETCH_MAX_CONNECTION_AGE_SECONDS",
        "max_connection_age_seconds",
        float,
        "seconds after which a client connection is closed (its calls get --grace more) so "
        "clients reconnect and rebalance across replicas (default: never)",
    ),
    (
        "--artifacts",
        "KETCH_ARTIFACTS",
        "artifacts",
        str,
        "where artifact bytes live: s3://bucket/prefix or a directory (default DATA_DIR/artifacts)",
    ),
    ("--s3-endpoint", "KETCH_S3_ENDPOINT", "s3_endpoint", str, "S3 endpoint, e.g. minio:9000"),
    ("--s3-access-key", "KETCH_S3_ACCESS_KEY", "s3_access_key", str, "S3 access key"),
    ("--s3-secret-key", "KETCH_S3_SECRET_KEY", "s3_secret_key", str, "S3 secret key"),
    ("--s3-region", "KETCH_S3_REGION", "s3_region", str, "S3 region"),
    (
        "--s3-secure",
        "KETCH_S3_SECURE",
        "s3_secure",
        _boolean,
        "use https for the S3 endpoint: true or false (default true)",
    ),
    (
        "--auth",
        "KETCH_AUTH",
        "auth",
        _auth_mode,
        "none (loopback only), token (API tokens) or mtls (client certificates or tokens)",
    ),
    ("--tls-cert", "KETCH_TLS_CERT", "tls_cert", pathlib.Path, "server certificate (PEM)"),
    ("--tls-key", "KETCH_TLS_KEY", "tls_key", pathlib.Path, "server private key (PEM)"),
    (
        "--tls-client-ca",
        "KETCH_TLS_CLIENT_CA",
        "tls_client_ca",
        pathlib.Path,
        "CA bundle (PEM) that signs client certificates; required by --auth mtls",
    ),
    (
        "--certificate-role",
        "KETCH_CERTIFICATE_ROLE",
        "certificate_role",
        str,
        "role of certificate principals nobody set a role for (default reader)",
    ),
    (
        "--token-cache-seconds",
        "KETCH_TOKEN_CACHE_SECONDS",
        "token_cache_seconds",
        float,
        "how long a replica trusts a verified token before re-reading it; bounds how long "
        "a revoked token still works on other replicas (default 5)",
    ),
    (
        "--max-streams-per-principal",
        "KETCH_MAX_STREAMS_PER_PRINCIPAL",
        "max_streams_per_principal",
        int,
        "open streaming calls one principal may hold on this replica (default 512)",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server flags to ``parser`` (defaults resolved later by :func:`from_args`)."""
    for flag, env, field, kind, text in _OPTIONS:
        parser.add_argument(flag, dest=field, type=kind, default=None, help=f"{text} [env {env}]")
    parser.add_argument(
        "--log-json", action="store_true", default=None, help="log one JSON object per line"
    )
    parser.add_argument(
        "--allow-plaintext-tokens",
        action="store_true",
        default=None,
        help="accept API tokens without TLS on a non-loopback address (only when TLS "
        "terminates in front of ketch, e.g. in a service mesh)",
    )
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=None,
        help="serve unauthenticated clients on a non-loopback address (dangerous)",
    )


def from_args(ns: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from parsed flags, falling back to environment variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for _flag, env, field, kind, _text in _OPTIONS:
        flag_value = getattr(ns, field, None)
        if flag_value is not None:
            values[field] = flag_value
        elif environ.get(env):
            try:
                values[field] = kind(environ[env])
            except ValueError:
                msg = f"ketch: {env}={environ[env]!r} is not a valid {kind.__name__}"
                raise SystemExit(msg) from None
    if getattr(ns, "log_json", None) or environ.get("KETCH_LOG_JSON", "").lower() in ("1", "true"):
        values["log_json"] = True
    if getattr(ns, "allow_anonymous", None):
        values["allow_anonymous"] = True
    if getattr(ns, "allow_plaintext_tokens", None):
        values["allow_plaintext_tokens"] = True
    return Settings(**values)
