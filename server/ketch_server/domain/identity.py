"""Who is calling: principals, roles and API tokens (pure rules, no I/O).

A :class:`Principal` is the authenticated caller of one RPC. The API layer's
auth interceptor builds it (from a bearer token, a client certificate, or the
anonymous principal when authentication is off) and hands it to services
explicitly; services record ``principal.name`` as the actor of every write.
Nothing below the API layer reads identity from request fields.

Roles are ordered: reader < writer < approver < admin; a principal may call an
RPC when its role is at least the RPC's required role.

Tokens look like ``ketch_<id>_<secret>``: ``id`` (16 hex digits) finds the row,
``secret`` (43 url-safe characters, 256 random bits) is checked against the
stored SHA-256. A slow hash would add nothing for 256-bit random secrets and
would cost every call.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import hashlib
import hmac
import re
import secrets
from datetime import datetime

from ketch_server.domain.errors import InvalidArgument, PermissionDenied, Unauthenticated

__all__ = [
    "ANONYMOUS",
    "AuthMode",
    "Principal",
    "PrincipalKind",
    "Role",
    "Token",
    "bind_principal",
    "check_principal_name",
    "current_principal",
    "hash_secret",
    "new_token_secret",
    "parse_token",
    "require_role",
    "secret_matches",
    "unbind_principal",
]

TOKEN_PREFIX = "ketch_"
_TOKEN_RE = re.compile(r"^ketch_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
MAX_TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600


class Role(enum.IntEnum):
    """Ordered roles; each includes the powers of the ones below it."""

    READER = 1
    WRITER = 2
    APPROVER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, value: str, *, field: str = "role") -> Role:
        """A role from its name (case-insensitive), e.g. ``approver``.

        Raises:
            InvalidArgument: naming ``field`` when the name is not a role.
        """
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise InvalidArgument(field, f"unknown role {value!r}; one of {names}") from None


class PrincipalKind(enum.Enum):
    USER = "user"
    SERVICE = "service"
    ANONYMOUS = "anonymous"


class AuthMode(enum.Enum):
    """How the server authenticates callers."""

    NONE = "none"
    TOKEN = "token"
    MTLS = "mtls"


@dataclasses.dataclass(frozen=True)
class Principal:
    """The authenticated caller of one RPC.

    Attributes:
        name: Unique principal name (``alice``, ``ci-bot``, a certificate's common name);
            recorded as the actor of writes.
        kind: user, service or anonymous.
        role: The role of this call (the token's, or the certificate principal's).
        authenticated_by: ``none``, ``token`` or ``mtls``.
        token_id: The token used, when authenticated by token.
    """

    name: str
    kind: PrincipalKind
    role: Role
    authenticated_by: str
    token_id: str | None = None

    def can(self, role: Role) -> bool:
        return self.role >= role


#: The caller when authentication is off: the embedded server on loopback, or a server
#: started with --allow-anonymous. Everyone is this one principal, with every power.
ANONYMOUS = Principal("anonymous", PrincipalKind.ANONYMOUS, Role.ADMIN, "none")


@dataclasses.dataclass(frozen=True)
class Token:
    """An API token as stored (the secret itself is never stored)."""

    id: str
    principal: str
    role: Role
    description: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    kind: PrincipalKind = PrincipalKind.USER

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def check_principal_name(name: str, *, field: str = "principal") -> str:
    """Validate a principal name: 1-128 of letters, digits, ``. _ @ -``, starting with a
    letter or digit.

    Raises:
        InvalidArgument: naming ``field``.
    """
    if not _NAME_RE.match(name):
        raise InvalidArgument(
            field,
            f"{name!r} is not a valid principal name: use 1-128 letters, digits, '.', '_', "
            "'@' or '-', starting with a letter or digit",
        )
    return name


def new_token_secret() -> tuple[str, str, str]:
    """A fresh token: ``(token_id, secret, bearer)`` where bearer is what the user keeps."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"{TOKEN_PREFIX}{token_id}_{secret}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_token(bearer: str) -> tuple[str, str]:
    """Split a presented bearer token into ``(token_id, secret)``.

    Raises:
        Unauthenticated: when it does not have the shape of a ketch token.
    """
    found = _TOKEN_RE.match(bearer)
    if not found:
        raise Unauthenticated(
            "the bearer token is not a ketch API token (expected ketch_<id>_<secret>); "
            "create one with `ketch admin token create`"
        )
    return found.group(1), found.group(2)


def require_role(principal: Principal, role: Role, method: str) -> None:
    """Raise PermissionDenied unless ``principal`` holds at least ``role``."""
    if not principal.can(role):
        raise PermissionDenied(
            f"{principal.name} has role {principal.role.name.lower()}; {method} needs "
            f"{role.name.lower()} or higher. Ask an admin for a token with that role.",
            reason="ROLE_REQUIRED",
            required_role=role.name.lower(),
            principal=principal.name,
        )


_current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "ketch_principal", default=ANONYMOUS
)


def current_principal() -> Principal:
    """The principal of the RPC being served (set by the API layer's auth interceptor).

    Stores read it to record the actor of a write; code that decides on identity
    (registry approvals) takes the principal as an explicit argument instead.
    Outside an RPC (tests, migrations, the admin CLI on the database) it is
    :data:`ANONYMOUS`.
    """
    return _current.get()


def bind_principal(principal: Principal) -> contextvars.Token[Principal]:
    """Make ``principal`` current for this task; undo with :func:`unbind_principal`."""
    return _current.set(principal)


def unbind_principal(token: contextvars.Token[Principal]) -> None:
    _current.reset(token)
