"""AdminService servicer and its pure converters: tokens and principals.

The caller is the principal the auth interceptor bound for the call; nothing
about identity is taken from request fields except the principal a token is
*for*, which only admins may choose.
"""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2
from ketch.api.v1 import auth_pb2, auth_pb2_grpc

from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.identity import Principal, PrincipalKind, Role, Token, current_principal
from ketch_server.services.identity import IdentityService

__all__ = [
    "AdminServicer",
    "kind_from_pb",
    "principal_to_pb",
    "role_from_pb",
    "role_to_pb",
    "token_to_pb",
]

_ROLES = {
    Role.READER: auth_pb2.ROLE_READER,
    Role.WRITER: auth_pb2.ROLE_WRITER,
    Role.APPROVER: auth_pb2.ROLE_APPROVER,
    Role.ADMIN: auth_pb2.ROLE_ADMIN,
}
_ROLES_BACK = {v: k for k, v in _ROLES.items()}
_KINDS = {
    PrincipalKind.USER: auth_pb2.PRINCIPAL_KIND_USER,
    PrincipalKind.SERVICE: auth_pb2.PRINCIPAL_KIND_SERVICE,
    PrincipalKind.ANONYMOUS: auth_pb2.PRINCIPAL_KIND_ANONYMOUS,
}


def role_to_pb(role: Role) -> int:
    return _ROLES[role]


def role_from_pb(value: int, *, field: str = "role") -> Role:
    """Raises InvalidArgument(field) for UNSPECIFIED or unknown enum numbers."""
    try:
        return _ROLES_BACK[value]
    except KeyError:
        raise InvalidArgument(
            field, "must be ROLE_READER, ROLE_WRITER, ROLE_APPROVER or ROLE_ADMIN"
        ) from None


def kind_from_pb(value: int, *, field: str = "kind") -> PrincipalKind:
    """UNSPECIFIED means a user; ANONYMOUS and unknown numbers are InvalidArgument."""
    if value in (auth_pb2.PRINCIPAL_KIND_UNSPECIFIED, auth_pb2.PRINCIPAL_KIND_USER):
        return PrincipalKind.USER
    if value == auth_pb2.PRINCIPAL_KIND_SERVICE:
        return PrincipalKind.SERVICE
    raise InvalidArgument(field, "must be PRINCIPAL_KIND_USER or PRINCIPAL_KIND_SERVICE")


def _ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def token_to_pb(token: Token) -> auth_pb2.Token:
    return auth_pb2.Token(
        name=f"tokens/{token.id}",
        id=token.id,
        principal=token.principal,
        role=role_to_pb(token.role),
        description=token.description,
        create_time=_ts(token.created_at),
        expire_time=_ts(token.expires_at),
        revoke_time=_ts(token.revoked_at),
        last_used_time=_ts(token.last_used_at),
        created_by=token.created_by,
    )


def principal_to_pb(principal: Principal) -> auth_pb2.Principal:
    return auth_pb2.Principal(
        name=f"principals/{principal.name}",
        id=principal.name,
        kind=_KINDS[principal.kind],
        role=role_to_pb(principal.role),
        authenticated_by=principal.authenticated_by,
    )


def _token_id(name: str) -> str:
    token_id = name.removeprefix("tokens/")
    if not token_id or len(token_id) != 16 or not all(c in "0123456789abcdef" for c in token_id):
        raise InvalidArgument("name", f"{name!r} is not tokens/<16 hex digits>")
    return token_id


class AdminServicer(auth_pb2_grpc.AdminServiceServicer):
    def __init__(self, service: IdentityService) -> None:
        self.service = service

    async def GetCallerIdentity(self, request, context):
        return principal_to_pb(current_principal())

    async def CreateToken(self, request, context):
        token, secret = await self.service.create_token(
            current_principal(),
            request.principal,
            kind_from_pb(request.kind),
            role_from_pb(request.role),
            request.description,
            request.ttl_seconds,
        )
        return auth_pb2.CreateTokenResponse(token=token_to_pb(token), secret=secret)

    async def ListTokens(self, request, context):
        page = await self.service.list_tokens(
            request.principal, request.include_revoked, request.page_size, request.page_token
        )
        return auth_pb2.ListTokensResponse(
            tokens=[token_to_pb(t) for t in page.items], next_page_token=page.next_page_token
        )

    async def RevokeToken(self, request, context):
        token = await self.service.revoke_token(current_principal(), _token_id(request.name))
        return token_to_pb(token)

    async def SetPrincipalRole(self, request, context):
        principal = current_principal()
        kind = kind_from_pb(request.kind)
        role = role_from_pb(request.role)
        await self.service.set_principal_role(principal, request.principal, kind, role)
        return principal_to_pb(Principal(request.principal, kind, role, "mtls"))
