"""Helpers for the security suite: every ketch RPC found from the descriptors, raw
calls of all four shapes without generated stubs, token minting on a running
server's database, and the ``ErrorInfo`` of a failed call.

RPCs are enumerated from ``ketch_server.app.SERVICES`` and the default descriptor
pool, so a service registered in the server later (registry, operations...) is
covered by every test built on :data:`RPCS` without touching these files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ketch.api.v1 import auth_pb2
from ketch_server.app import SERVICES
from ketch_server.domain.identity import PrincipalKind, Role

ROLES: dict[str, Role] = {
    "reader": Role.READER,
    "writer": Role.WRITER,
    "approver": Role.APPROVER,
    "admin": Role.ADMIN,
}
_ROLE_FROM_PB = {
    auth_pb2.ROLE_READER: Role.READER,
    auth_pb2.ROLE_WRITER: Role.WRITER,
    auth_pb2.ROLE_APPROVER: Role.APPROVER,
    auth_pb2.ROLE_ADMIN: Role.ADMIN,
}


@dataclasses.dataclass(frozen=True)
class Rpc:
    """One RPC of a ketch service, as its descriptor declares it."""

    service: str
    method: MethodDescriptor

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method.name}"

    @property
    def label(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.method.name}"

    @property
    def shape(self) -> str:
        client, server = self.method.client_streaming, self.method.server_streaming
        return {
            (False, False): "unary",
            (True, False): "client_streaming",
            (False, True): "server_streaming",
            (True, True): "bidi",
        }[(client, server)]

    @property
    def long_lived(self) -> bool:
        """A server stream that follows events until the client leaves (Watch*)."""
        return self.shape == "server_streaming" and self.name.startswith("Watch")

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def declared_role(self) -> Role | None:
        """The role its proto option declares, or None when it declares none."""
        value = self.method.GetOptions().Extensions[auth_pb2.required_role]
        return _ROLE_FROM_PB.get(value)


def ketch_rpcs(services: Iterable[str] = SERVICES) -> list[Rpc]:
    pool = descriptor_pool.Default()
    return [
        Rpc(name, method) for name in services for method in pool.FindServiceByName(name).methods
    ]


RPCS = ketch_rpcs()


def _identity(data: bytes) -> bytes:
    return data


#: How long a long-lived stream is followed before the call counts as admitted and open.
FOLLOW_SECONDS = 0.5


def call(
    channel: grpc.Channel,
    rpc: Rpc,
    requests: Message | bytes | Sequence[Message | bytes],
    *,
    metadata: Sequence[tuple[str, str | bytes]] | None = None,
    timeout: float = 20,
) -> list[bytes]:
    """Call ``rpc`` in its own shape with messages (or raw bytes); return the raw
    responses. Streaming requests take a sequence, unary ones a single message.

    A long-lived stream (:attr:`Rpc.long_lived`) still open after ``FOLLOW_SECONDS``
    is cancelled and returns what it sent so far: the server accepted the request.
    """

    def raw(m: Message | bytes) -> bytes:
        return m if isinstance(m, bytes) else m.SerializeToString()

    kw: dict[str, Any] = {"request_serializer": _identity, "response_deserializer": _identity}
    if rpc.method.client_streaming:
        items = [raw(m) for m in (requests if isinstance(requests, Sequence) else [requests])]
    else:
        assert not isinstance(requests, list)
        item = raw(requests)  # type: ignore[arg-type]
    if rpc.shape == "unary":
        return [channel.unary_unary(rpc.path, **kw)(item, metadata=metadata, timeout=timeout)]
    if rpc.shape == "client_streaming":
        fn = channel.stream_unary(rpc.path, **kw)
        return [fn(iter(items), metadata=metadata, timeout=timeout)]
    if rpc.shape == "server_streaming":
        wait = min(timeout, FOLLOW_SECONDS) if rpc.long_lived else timeout
        stream = channel.unary_stream(rpc.path, **kw)(item, metadata=metadata, timeout=wait)
        responses = []
        try:
            responses.extend(stream)
        except grpc.RpcError as err:
            if rpc.long_lived and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return responses
            raise
        return responses
    fn = channel.stream_stream(rpc.path, **kw)
    return list(fn(iter(items), metadata=metadata, timeout=timeout))


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The one ``ErrorInfo`` in the call's ``google.rpc.Status`` trailer, or None."""
    return error_info_in(err.trailing_metadata())


def error_info_in(trailing_metadata) -> error_details_pb2.ErrorInfo | None:
    raw = dict(trailing_metadata or ()).get("grpc-status-details-bin")
    if raw is None:
        return None
    status = status_pb2.Status.FromString(raw)
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def _summary(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    info = error_info(err)
    if info is None:
        return err.code(), "", {"details": err.details() or ""}
    return err.code(), info.reason, dict(info.metadata)


def rejection(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(code, ErrorInfo reason, ErrorInfo metadata) of a call that must fail; without
    an ErrorInfo, the reason is empty and the metadata holds the status details."""
    try:
        fn()
    except grpc.RpcError as err:
        return _summary(err)
    raise AssertionError("the call was accepted")


def outcome(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """Like :func:`rejection`, but OK (with empty reason) when the call succeeds."""
    try:
        fn()
    except grpc.RpcError as err:
        return _summary(err)
    return grpc.StatusCode.OK, "", {}


def serving(channel: grpc.Channel, metadata=None) -> bool:
    stub = health_pb2_grpc.HealthStub(channel)
    resp = stub.Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10)
    return resp.status == health_pb2.HealthCheckResponse.SERVING


def mint(
    server,
    role: Role | str,
    principal: str | None = None,
    *,
    ttl_seconds: int = 0,
    kind: PrincipalKind = PrincipalKind.USER,
) -> str:
    """A bearer token of ``role`` made directly on ``server``'s database (as the
    ``ketch admin token create --db`` bootstrap does), created by the server's loop."""
    from ketch_server.store.identity import IdentityStore

    if isinstance(role, str):
        role = ROLES[role]
    principal = principal or f"{role.name.lower()}-user"
    store = IdentityStore(server.app.store.engine)
    _, secret = server.run(
        store.create_token(principal, kind, role, "security tests", ttl_seconds, "tests")
    )
    return secret


def channel_of(server) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{server.app.port}")
