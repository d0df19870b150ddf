"""Authentication through a real server: tokens, TLS, mTLS, identity of writes, and the
settings a server refuses to start with. (The RPC-by-role table and the bad-input corpus
live in tests/security.)"""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import ketch
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ketch import errors
from ketch.api.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    tracking_pb2,
    tracking_pb2_grpc,
)
from ketch_server.domain.identity import PrincipalKind, Role
from ketch_server.settings import Settings
from ketch_server.store.identity import IdentityStore

from tests._certs import Pki
from tests.conftest import ThreadServer


def mint(server: ThreadServer, name: str, role: Role, *, ttl: int = 0, kind=PrincipalKind.USER):
    """A bearer token made straight in the server's database (as `ketch admin` does)."""
    store = IdentityStore(server.app.store.engine)
    _token, bearer = server.run(store.create_token(name, kind, role, "test", ttl, "tests"))
    return bearer


@pytest.fixture
def token_server(db_url, tmp_path):
    settings = Settings(
        port=0, data_dir=tmp_path / "data", db_url=db_url, grace_seconds=1, auth="token"
    )
    srv = ThreadServer(settings).start()
    yield srv
    srv.stop()


def _stub(server, cls, token: str | None = None):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.app.port}")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return cls(channel), metadata


def test_token_mode_refuses_calls_without_a_valid_token(token_server):
    stub, _ = _stub(token_server, tracking_pb2_grpc.TrackingServiceStub)
    with pytest.raises(grpc.RpcError) as err:
        stub.ListExperiments(tracking_pb2.ListExperimentsRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "KETCH_API_TOKEN" in err.value.details()

    forged = "ketch_0123456789abcdef_" + "A" * 43
    with pytest.raises(errors.Unauthenticated) as exc:
        list(ketch.Client(token_server.uri, api_token=forged).list_experiments())
    assert exc.value.reason == "TOKEN_INVALID"

    real = mint(token_server, "alice", Role.READER)
    wrong_secret = real[: -len("AAAA")] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    with pytest.raises(errors.Unauthenticated):
        list(ketch.Client(token_server.uri, api_token=wrong_secret).list_experiments())


def test_health_stays_open_without_a_token(token_server):
    stub, _ = _stub(token_server, health_pb2_grpc.HealthStub)
    answer = stub.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_roles_gate_writes_and_admin_calls(token_server):
    reader = ketch.Client(token_server.uri, api_token=mint(token_server, "rita", Role.READER))
    writer = ketch.Client(token_server.uri, api_token=mint(token_server, "walt", Role.WRITER))
    exp = writer.create_experiment("gated")
    assert [e.name for e in reader.list_experiments()] == ["gated"]
    with pytest.raises(errors.PermissionDenied) as exc:
        reader.create_experiment("nope")
    assert exc.value.reason == "ROLE_REQUIRED"
    assert "writer" in exc.value.message and "rita" in exc.value.message
    assert [e.name for e in reader.list_experiments()] == [exp.name]  # nothing written

    stub, md = _stub(
        token_server, auth_pb2_grpc.AdminServiceStub, mint(token_server, "w2", Role.WRITER)
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateToken(
            auth_pb2.CreateTokenRequest(principal="x", role=auth_pb2.ROLE_ADMIN), metadata=md
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_writes_record_the_authenticated_principal_not_request_fields(token_server):
    token = mint(token_server, "ci-bot", Role.WRITER, kind=PrincipalKind.SERVICE)
    client = ketch.Client(token_server.uri, api_token=token)
    exp = client.create_experiment("ident")
    stub, md = _stub(token_server, tracking_pb2_grpc.TrackingServiceStub, token)
    run = stub.CreateRun(
        tracking_pb2.CreateRunRequest(experiment=f"experiments/{exp.id}", user="root"),
        metadata=md,
    )
    assert run.created_by == "ci-bot"
    assert run.user == "root"  # the client's claim is kept, but only as a label
    found = client.search_runs("created_by = 'ci-bot'", experiment_ids=[exp.id])
    assert [r.id for r in found] == [run.run_id]


def test_streaming_run_with_a_token_from_the_environment(token_server, monkeypatch, tmp_path):
    token = mint(token_server, "trainer", Role.WRITER)
    monkeypatch.setenv("KETCH_API_TOKEN", token)
    run = ketch.init(
        "streamed",
        uri=token_server.uri,
        system_metrics=False,
        capture_environment=False,
        spool_dir=tmp_path / "spool",
    )
    for step in range(500):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish()
    assert run.failure is None
    record = ketch.Client(token_server.uri).get_run(run.id)
    assert record.created_by == "trainer"
    assert record.metrics["loss"].count == 500
    assert len(record.writers) == 1
    from ketch_server.store.schema import stream_cursors
    from sqlalchemy import select

    async def principal_of_cursor():
        async with token_server.app.store.engine.connect() as conn:
            return (await conn.execute(select(stream_cursors.c.principal))).scalar_one()

    assert token_server.run(principal_of_cursor()) == "trainer"


def test_revoked_and_expired_tokens_stop_working(token_server):
    admin = ketch.Client(token_server.uri, api_token=mint(token_server, "root", Role.ADMIN))
    from ketch import _admin

    record, secret = _admin.create_token(admin._transport, "temp", "reader", ttl_seconds=1)
    assert record.expire_time is not None
    user = ketch.Client(token_server.uri, api_token=secret)
    list(user.list_experiments())
    token_server.run(asyncio.sleep(1.1))
    with pytest.raises(errors.Unauthenticated) as exc:
        list(user.list_experiments())
    assert exc.value.reason == "TOKEN_EXPIRED"

    record, secret = _admin.create_token(admin._transport, "gone", "writer")
    list(ketch.Client(token_server.uri, api_token=secret).list_experiments())
    revoked = _admin.revoke_token(admin._transport, record.id)
    assert revoked.revoke_time is not None
    with pytest.raises(errors.Unauthenticated) as exc:
        list(ketch.Client(token_server.uri, api_token=secret).list_experiments())
    assert exc.value.reason == "TOKEN_REVOKED"
    listed = {t.id for t in _admin.list_tokens(admin._transport)}
    assert record.id not in listed
    assert record.id in {t.id for t in _admin.list_tokens(admin._transport, include_revoked=True)}


def test_tokens_and_roles_are_audited_without_their_secrets(token_server):
    """Who may approve is part of whether an approval means anything: minting,
    revoking and role changes land in the audit trail (model ""), with their actor."""
    from ketch import _admin

    root = mint(token_server, "root", Role.ADMIN)
    admin = ketch.Client(token_server.uri, api_token=root)
    record, secret = _admin.create_token(admin._transport, "bob", "approver", ttl_seconds=3600)
    _admin.revoke_token(admin._transport, record.id)
    _admin.revoke_token(admin._transport, record.id)  # again: nothing new to record
    stub, metadata = _stub(token_server, auth_pb2_grpc.AdminServiceStub, root)
    for role in (auth_pb2.ROLE_APPROVER, auth_pb2.ROLE_APPROVER, auth_pb2.ROLE_READER):
        request = auth_pb2.SetPrincipalRoleRequest(
            principal="ci-cert", kind=auth_pb2.PRINCIPAL_KIND_SERVICE, role=role
        )
        stub.SetPrincipalRole(request, metadata=metadata)

    identity = ["TOKEN_CREATED", "TOKEN_REVOKED", "PRINCIPAL_ROLE_SET"]
    events = list(admin.audit_log(actions=identity))
    seen = [(e.action, e.actor, e.resource, e.model) for e in events]
    assert seen == [
        ("TOKEN_CREATED", "tests", seen[0][2], ""),  # root's, minted in the database
        ("TOKEN_CREATED", "root", f"tokens/{record.id}", ""),
        ("TOKEN_REVOKED", "root", f"tokens/{record.id}", ""),
        ("PRINCIPAL_ROLE_SET", "root", "principals/ci-cert", ""),  # created as approver
        ("PRINCIPAL_ROLE_SET", "root", "principals/ci-cert", ""),  # approver -> reader
    ]  # (setting approver twice changed nothing the second time: no event)
    assert events[1].after["principal"] == "bob" and events[1].after["role"] == "approver"
    assert events[1].after["principal_created"] is True
    assert events[1].after["expire_time"] is not None
    assert events[2].after["principal"] == "bob"
    assert (events[3].before, events[3].after["role"]) == (None, "approver")
    assert (events[4].before, events[4].after["role"]) == ({"role": "approver"}, "reader")
    text = repr(events)
    assert secret.startswith(f"ketch_{record.id}_")
    assert secret.split("_", 2)[2] not in text  # the secret part of the bearer
    watched = list(admin.watch_registry(actions=identity, timeout=0.5))
    assert [e.sequence for e in watched] == [e.sequence for e in events]
    stub, _ = _stub(token_server, registry_pb2_grpc.RegistryServiceStub)
    raw = stub.GetAuditLog(registry_pb2.GetAuditLogRequest(), metadata=metadata)
    assert {e.model for e in raw.events} == {""}  # on the wire too: no model

    # Who holds which token and role is an admin's to see (as ListTokens is): a
    # reader's audit log and watch skip identity events.
    reader = ketch.Client(token_server.uri, api_token=mint(token_server, "rita", Role.READER))
    assert list(reader.audit_log(actions=identity)) == []
    assert list(reader.audit_log()) == []  # nothing else happened on this server
    assert list(reader.watch_registry(timeout=0.5)) == []


def test_no_auth_mode_is_anonymous_admin_but_still_checks_presented_tokens(server):
    client = ketch.Client(server.uri)
    from ketch import _admin

    who = _admin.whoami(client._transport)
    assert (who.principal, who.role, who.authenticated_by) == ("anonymous", "admin", "none")
    named = ketch.Client(server.uri, api_token=mint(server, "bob", Role.READER))
    assert _admin.whoami(named._transport).principal == "bob"
    with pytest.raises(errors.PermissionDenied):
        named.create_experiment("bob-cannot")
    forged = ketch.Client(server.uri, api_token="ketch_0123456789abcdef_" + "B" * 43)
    with pytest.raises(errors.Unauthenticated):
        list(forged.list_experiments())


def test_sdk_refuses_to_send_a_token_in_cleartext_off_loopback():
    client = ketch.Client("grpc://10.255.255.1:50051", api_token="ketch_x", timeout=1)
    with pytest.raises(errors.InvalidArgument, match="cleartext"):
        list(client.list_experiments())


# ------------------------------------------------------------------ TLS, mTLS


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def _tls_server(tmp_path, pki: Pki, **extra) -> ThreadServer:
    cert, key = pki.issue("localhost", server=True)
    settings = Settings(
        port=0,
        data_dir=tmp_path / "data",
        grace_seconds=1,
        tls_cert=cert,
        tls_key=key,
        **extra,
    )
    return ThreadServer(settings).start()


def test_tls_with_a_private_ca_and_a_token(tmp_path, pki, monkeypatch):
    srv = _tls_server(tmp_path, pki, auth="token")
    try:
        uri = f"grpcs://localhost:{srv.app.port}"
        token = mint(srv, "alice", Role.WRITER)
        monkeypatch.setenv("KETCH_TLS_CA", str(pki.ca_file))
        client = ketch.Client(uri, api_token=token)
        assert client.create_experiment("over-tls").name == "over-tls"
        monkeypatch.delenv("KETCH_TLS_CA")  # the system roots do not know our CA
        with pytest.raises(errors.Unavailable):
            list(ketch.Client(uri, api_token=token, timeout=5).list_experiments())
        plain = grpc.insecure_channel(f"127.0.0.1:{srv.app.port}")
        with pytest.raises(grpc.RpcError) as err:
            tracking_pb2_grpc.TrackingServiceStub(plain).ListExperiments(
                tracking_pb2.ListExperimentsRequest(), timeout=5
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop()


def test_mtls_names_the_caller_by_certificate(tmp_path, pki, monkeypatch):
    srv = _tls_server(tmp_path, pki, auth="mtls", tls_client_ca=pki.ca_file)
    try:
        uri = f"grpcs://localhost:{srv.app.port}"
        monkeypatch.setenv("KETCH_TLS_CA", str(pki.ca_file))
        cert, key = pki.issue("carol", server=False)
        monkeypatch.setenv("KETCH_TLS_CERT", str(cert))
        monkeypatch.setenv("KETCH_TLS_KEY", str(key))
        from ketch import _admin

        client = ketch.Client(uri)
        who = _admin.whoami(client._transport)
        assert (who.principal, who.role, who.authenticated_by) == ("carol", "reader", "mtls")
        with pytest.raises(errors.PermissionDenied):
            client.create_experiment("carol-is-a-reader")
        store = IdentityStore(srv.app.store.engine)
        srv.run(store.set_principal_role("carol", PrincipalKind.USER, Role.WRITER, "tests"))
        assert ketch.Client(uri).create_experiment("carol-writes").name == "carol-writes"
        run = ketch.Client(uri)._transport.call(
            "CreateRun",
            tracking_pb2.CreateRunRequest(
                experiment=f"experiments/{ketch.Client(uri).get_experiment_by_name('carol-writes').id}"
            ),
        )
        assert run.created_by == "carol"

        # A certificate from another CA is refused at the handshake.
        other = Pki(tmp_path / "other", name="rogue CA")
        cert, key = other.issue("mallory", server=False)
        monkeypatch.setenv("KETCH_TLS_CERT", str(cert))
        monkeypatch.setenv("KETCH_TLS_KEY", str(key))
        with pytest.raises(errors.Unavailable):
            list(ketch.Client(uri, timeout=5).list_experiments())
        # No certificate at all: refused too.
        monkeypatch.delenv("KETCH_TLS_CERT")
        monkeypatch.delenv("KETCH_TLS_KEY")
        with pytest.raises((errors.Unavailable, errors.Unauthenticated)):
            list(ketch.Client(uri, timeout=5).list_experiments())
    finally:
        srv.stop()


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": "0.0.0.0"}, "without authentication"),
        ({"host": "0.0.0.0", "auth": "token"}, "in cleartext"),
        ({"auth": "mtls"}, "--tls-client-ca"),
        ({"certificate_role": "emperor"}, "unknown role"),
        ({"tls_cert": "cert-only.pem"}, "go together"),
    ],
)
def test_server_refuses_unsafe_settings(tmp_path, changes, message):
    from ketch_server.app import build_server

    settings = Settings(port=0, data_dir=tmp_path / "data")
    if "tls_cert" in changes:
        changes = {"tls_cert": tmp_path / changes["tls_cert"]}
    settings = dataclasses.replace(settings, **changes)
    with pytest.raises(SystemExit, match=message):
        asyncio.run(build_server(settings))


def test_every_rpc_must_declare_a_role():
    from ketch_server.api.auth import required_roles
    from ketch_server.app import SERVICES

    table = required_roles(SERVICES)
    assert table["/ketch.api.v1.TrackingService/CreateRun"] is Role.WRITER
    assert table["/ketch.api.v1.AdminService/CreateToken"] is Role.ADMIN
    with pytest.raises(SystemExit, match=r"grpc\.health\.v1\.Health\.Check"):
        required_roles([*SERVICES, "grpc.health.v1.Health"])
