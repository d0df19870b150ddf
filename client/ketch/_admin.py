"""Tokens and principals through a server's AdminService (admin role required).

Records are plain dataclasses; the generated types stay in this module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

from ketch import errors
from ketch._transport import Transport
from ketch.api.v1 import auth_pb2, auth_pb2_grpc

__all__ = ["Identity", "TokenRecord", "create_token", "list_tokens", "revoke_token", "whoami"]

ROLES = ("reader", "writer", "approver", "admin")
KINDS = ("user", "service")


def _time(pb: Any, field: str) -> dt.datetime | None:
    if not pb.HasField(field):
        return None
    return getattr(pb, field).ToDatetime(tzinfo=dt.timezone.utc)


def _role_name(value: int) -> str:
    return auth_pb2.Role.Name(value).removeprefix("ROLE_").lower()


def _role_pb(role: str) -> int:
    if role not in ROLES:
        raise errors.InvalidArgument(
            f"role {role!r} is not one of {', '.join(ROLES)}", metadata={"field": "role"}
        )
    return auth_pb2.Role.Value(f"ROLE_{role.upper()}")


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    """An API token as the server describes it (never the secret)."""

    id: str
    principal: str
    role: str
    description: str
    created_by: str
    create_time: dt.datetime | None
    expire_time: dt.datetime | None
    revoke_time: dt.datetime | None
    last_used_time: dt.datetime | None

    @classmethod
    def _from_proto(cls, pb: Any) -> TokenRecord:
        return cls(
            id=pb.id,
            principal=pb.principal,
            role=_role_name(pb.role),
            description=pb.description,
            created_by=pb.created_by,
            create_time=_time(pb, "create_time"),
            expire_time=_time(pb, "expire_time"),
            revoke_time=_time(pb, "revoke_time"),
            last_used_time=_time(pb, "last_used_time"),
        )


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who the server thinks the caller is."""

    principal: str
    kind: str
    role: str
    authenticated_by: str


def _call(transport: Transport, method: str, request: Any, **kw: Any) -> Any:
    return transport.call(method, request, service=auth_pb2_grpc.AdminServiceStub, **kw)


def whoami(transport: Transport) -> Identity:
    pb = _call(transport, "GetCallerIdentity", auth_pb2.GetCallerIdentityRequest(), retries=2)
    return Identity(
        principal=pb.id,
        kind=auth_pb2.PrincipalKind.Name(pb.kind).removeprefix("PRINCIPAL_KIND_").lower(),
        role=_role_name(pb.role),
        authenticated_by=pb.authenticated_by,
    )


def create_token(
    transport: Transport,
    principal: str,
    role: str,
    *,
    kind: str = "user",
    description: str = "",
    ttl_seconds: int = 0,
) -> tuple[TokenRecord, str]:
    """Create a token; returns its record and the bearer secret (shown only now)."""
    if kind not in KINDS:
        raise errors.InvalidArgument(
            f"kind {kind!r} is not one of {', '.join(KINDS)}", metadata={"field": "kind"}
        )
    request = auth_pb2.CreateTokenRequest(
        principal=principal,
        kind=auth_pb2.PrincipalKind.Value(f"PRINCIPAL_KIND_{kind.upper()}"),
        role=_role_pb(role),
        description=description,
        ttl_seconds=ttl_seconds,
    )
    pb = _call(transport, "CreateToken", request)
    return TokenRecord._from_proto(pb.token), pb.secret


def list_tokens(
    transport: Transport, principal: str = "", *, include_revoked: bool = False
) -> Iterator[TokenRecord]:
    def request(token: str) -> Any:
        return auth_pb2.ListTokensRequest(
            principal=principal, include_revoked=include_revoked, page_token=token
        )

    for page in transport.pages("ListTokens", request, service=auth_pb2_grpc.AdminServiceStub):
        yield from (TokenRecord._from_proto(t) for t in page.tokens)


def revoke_token(transport: Transport, token_id: str) -> TokenRecord:
    pb = _call(transport, "RevokeToken", auth_pb2.RevokeTokenRequest(name=f"tokens/{token_id}"))
    return TokenRecord._from_proto(pb)
