"""Authentication and authorization for every ketch RPC, in one interceptor.

:class:`AuthInterceptor` wraps the handlers of all four RPC shapes. For each
call it finds the caller:

* ``--auth none``: a bearer token, when the call carries one, is still checked
  and names the caller; otherwise the caller is the anonymous principal (admin).
  Only allowed on loopback unless ``--allow-anonymous`` was passed.
* ``--auth token``: ``authorization: Bearer ketch_<id>_<secret>`` is required.
* ``--auth mtls``: the TLS layer has verified the client certificate against the
  client CA; its subject common name names the caller. A bearer token, when
  present, takes precedence (CI bots behind a mesh).

It then checks the caller's role against the role the RPC declares in its proto
(``option (ketch.api.v1.required_role)``), binds the principal for the call
(:func:`ketch_server.domain.identity.current_principal`), and counts open
streaming calls per principal against ``max_streams_per_principal``. Health
checks and reflection are not ketch methods and stay open.

Failures abort with UNAUTHENTICATED or PERMISSION_DENIED and an ``ErrorInfo``
(reason TOKEN_INVALID, ROLE_REQUIRED, ...), without reaching the handler.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from ketch.api.v1 import auth_pb2

from ketch_server.api.admin import role_from_pb
from ketch_server.api.errors import to_status
from ketch_server.domain.errors import (
    InvalidArgument,
    KetchError,
    ResourceExhausted,
    Unauthenticated,
)
from ketch_server.domain.identity import (
    ANONYMOUS,
    AuthMode,
    Principal,
    Role,
    bind_principal,
    require_role,
    unbind_principal,
)
from ketch_server.services.identity import IdentityService

__all__ = ["AuthInterceptor", "required_roles"]

log = logging.getLogger("ketch.auth")


def required_roles(services: Iterable[str]) -> dict[str, Role]:
    """``/package.Service/Method`` → the role its proto declares, for every method.

    Raises:
        SystemExit: when a method declares no role (a server must not start with an
            RPC nobody decided the access of).
    """
    pool = descriptor_pool.Default()
    table: dict[str, Role] = {}
    missing: list[str] = []
    for name in services:
        for method in pool.FindServiceByName(name).methods:
            try:
                role = role_from_pb(method.GetOptions().Extensions[auth_pb2.required_role])
            except InvalidArgument:  # UNSPECIFIED: the option is missing
                missing.append(method.full_name)
                continue
            table[f"/{name}/{method.name}"] = role
    if missing:
        raise SystemExit(
            "ketch: these RPCs declare no (ketch.api.v1.required_role) option: "
            + ", ".join(missing)
        )
    return table


def _bearer(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        return None
    if len(values) > 1:  # which one counts would depend on proxies: refuse the ambiguity
        raise Unauthenticated(
            "the call carries several authorization headers; send exactly one",
            reason="AUTHORIZATION_MALFORMED",
        )
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthenticated(
            "the authorization header must be 'Bearer <token>'",
            reason="AUTHORIZATION_MALFORMED",
        )
    return credentials.strip()


def _certificate_name(context: grpc.aio.ServicerContext) -> str | None:
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode("utf-8", "replace") if names else None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """See the module docstring. One instance per server."""

    def __init__(
        self,
        mode: AuthMode,
        identity: IdentityService,
        roles: Mapping[str, Role],
        *,
        max_streams_per_principal: int = 512,
    ) -> None:
        self.mode = mode
        self.identity = identity
        self.roles = dict(roles)
        self.max_streams = max_streams_per_principal
        self.open_streams: collections.Counter[str] = collections.Counter()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith("/ketch."):
            return handler
        role = self.roles.get(method)
        if role is None:  # a ketch method the table was not built with: deny, loudly
            log.error("no required role known for %s; denying it", method)
            role = Role.ADMIN + 1  # type: ignore[assignment]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, role, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, role, handler.stream_unary, stream=True),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, role, handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, role, handler.stream_stream),
            handler.request_deserializer,
            handler.response_serializer,
        )

    # ------------------------------------------------------------ per call

    async def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        """The caller of this call, or raise Unauthenticated."""
        bearer = _bearer(context.invocation_metadata())
        if bearer is not None:
            return await self.identity.authenticate_bearer(bearer)
        if self.mode is AuthMode.MTLS:
            name = _certificate_name(context)
            if name is None:
                raise Unauthenticated(
                    "this server requires a client certificate or an API token",
                    reason="CREDENTIALS_MISSING",
                )
            return await self.identity.authenticate_certificate(name)
        if self.mode is AuthMode.TOKEN:
            raise Unauthenticated(
                "this server requires an API token: set KETCH_API_TOKEN (or send "
                "'authorization: Bearer <token>'); an admin creates one with "
                "`ketch admin token create`",
                reason="CREDENTIALS_MISSING",
            )
        return ANONYMOUS

    async def _admit(self, context, method: str, role: Role) -> Principal:
        try:
            principal = await self.authenticate(context)
            if role > Role.ADMIN:
                raise Unauthenticated(f"{method} is not open to anyone", reason="METHOD_UNKNOWN")
            require_role(principal, role, method.rsplit("/", 1)[-1])
        except KetchError as exc:
            if isinstance(exc, Unauthenticated):
                log.info("unauthenticated call to %s: %s", method, exc.reason)
            status = to_status(exc)
            await context.abort(status.code, status.details, status.trailing_metadata)
            raise AssertionError("unreachable") from None
        return principal

    def _unary(self, method: str, role: Role, fn: Callable[..., Any], *, stream: bool = False):
        async def handler(request, context):
            principal = await self._admit(context, method, role)
            if stream:
                await self._open(context, principal)
            token = bind_principal(principal)
            try:
                return await fn(request, context)
            finally:
                unbind_principal(token)
                if stream:
                    self._close(principal)

        return handler

    def _streaming(self, method: str, role: Role, fn: Callable[..., Any]):
        async def handler(request, context):
            principal = await self._admit(context, method, role)
            await self._open(context, principal)
            token = bind_principal(principal)
            try:
                async for item in fn(request, context):
                    yield item
            finally:
                with contextlib.suppress(ValueError):  # closed from another context
                    unbind_principal(token)
                self._close(principal)

        return handler

    async def _open(self, context, principal: Principal) -> None:
        if self.open_streams[principal.name] >= self.max_streams:
            exc = ResourceExhausted(
                "max_streams_per_principal",
                f"{principal.name} already has {self.max_streams} open streams "
                "(max_streams_per_principal); close some, or raise the limit with "
                "--max-streams-per-principal",
            )
            status = to_status(exc)
            await context.abort(status.code, status.details, status.trailing_metadata)
        self.open_streams[principal.name] += 1

    def _close(self, principal: Principal) -> None:
        self.open_streams[principal.name] -= 1
        if self.open_streams[principal.name] <= 0:
            del self.open_streams[principal.name]
