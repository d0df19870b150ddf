"""Who may call what: every RPC of every service in ``app.SERVICES``, for every role and
the anonymous caller, on a server with ``auth="token"``; then the token lifecycle
(revoked, expired, malformed, forged), the open endpoints (health, reflection) and
``auth="none"``.

The expected table comes from the ``(ketch.api.v1.required_role)`` option of each
method and is pinned below for the services that exist today, so weakening an
option (or adding a method without deciding its role here) fails this file. Services
added later are enumerated from the descriptors and checked against the option and
a verb rule (reads may be open to readers; anything else needs a writer or more).

A call counts as admitted when its status is neither UNAUTHENTICATED nor
PERMISSION_DENIED: requests are empty messages, so handlers answer INVALID_ARGUMENT
or NOT_FOUND, which proves the call passed the auth interceptor.
"""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ketch.api.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    tracking_pb2,
    tracking_pb2_grpc,
)
from ketch_server.app import SERVICES
from ketch_server.domain.identity import Role

from tests.security._rpc import (
    RPCS,
    Rpc,
    bearer,
    call,
    channel_of,
    mint,
    outcome,
    rejection,
    serving,
)

R, W, P, A = Role.READER, Role.WRITER, Role.APPROVER, Role.ADMIN
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED

#: The least role of every RPC that exists today. Changing a role, or adding a method
#: to one of these services, must change this table too: that is the review point.
PINNED: dict[str, dict[str, Role]] = {
    "ketch.api.v1.TrackingService": {
        "CreateExperiment": W,
        "GetExperiment": R,
        "GetExperimentByName": R,
        "ListExperiments": R,
        "UpdateExperiment": W,
        "DeleteExperiment": W,
        "UndeleteExperiment": W,
        "CreateRun": W,
        "GetRun": R,
        "UpdateRun": W,
        "DeleteRun": W,
        "UndeleteRun": W,
        "SearchRuns": R,
        "LogParams": W,
        "SetTags": W,
        "DeleteTag": W,
        "LogMetrics": W,
        "StreamMetrics": W,
        "ReadMetricHistory": R,
    },
    "ketch.api.v1.ArtifactService": {
        "BeginUpload": W,
        "UploadChunks": W,
        "CommitUpload": W,
        "AbortUpload": W,
        "GetArtifact": R,
        "ListArtifacts": R,
        "DownloadArtifact": R,
        "ReadArtifact": R,
    },
    "ketch.api.v1.LineageService": {
        "CreateDataset": W,
        "GetDataset": R,
        "LogInputs": W,
        "LogOutputs": W,
        "GetLineage": R,
        "ForkRun": W,
    },
    "ketch.api.v1.AdminService": {
        "GetCallerIdentity": R,
        "CreateToken": A,
        "ListTokens": A,
        "RevokeToken": A,
        "SetPrincipalRole": A,
    },
    "ketch.api.v1.OperationsService": {
        "GetServerStatus": R,
    },
}

#: Least roles that must hold for services still taking shape (>=, not ==): what would
#: let a writer bypass the approval policy of the model registry.
FLOORS: dict[str, dict[str, Role]] = {
    "ketch.api.v1.RegistryService": {
        "Approve": P,
        "Reject": P,
        "TransitionStage": A,  # moves a stage without approvals
        "SetStagePolicy": A,  # decides who must approve
    },
}

#: Verbs of methods that only read; every other verb changes state.
READ_VERBS = ("Get", "List", "Search", "Read", "Watch", "Download", "Resolve", "Compare")
#: Verbs that decide registry moves: never below approver.
DECIDING_VERBS = ("Approve", "Reject")

CALLERS = ("anonymous", "reader", "writer", "approver", "admin")


@pytest.fixture(scope="module")
def token_server(module_servers):
    return module_servers(auth="token", token_cache_seconds=1.0)


@pytest.fixture(scope="module")
def tokens(token_server) -> dict[str, str]:
    return {role: mint(token_server, role) for role in ("reader", "writer", "approver", "admin")}


@pytest.fixture(scope="module")
def channel(token_server):
    with channel_of(token_server) as ch:
        yield ch


def _metadata(tokens: dict[str, str], caller: str):
    return None if caller == "anonymous" else bearer(tokens[caller])


def _caller_role(caller: str) -> Role | None:
    return None if caller == "anonymous" else Role[caller.upper()]


# ------------------------------------------------------------- the table itself


def test_every_rpc_declares_a_role_and_the_server_uses_it():
    from ketch_server.api.auth import required_roles

    undeclared = [rpc.label for rpc in RPCS if rpc.declared_role is None]
    assert undeclared == []
    assert required_roles(SERVICES) == {rpc.path: rpc.declared_role for rpc in RPCS}


def test_declared_roles_match_the_pinned_table():
    wrong = []
    for rpc in RPCS:
        pinned = PINNED.get(rpc.service)
        if pinned is None:
            continue
        if rpc.name not in pinned:
            wrong.append(f"{rpc.label} is new: decide its role and add it to PINNED")
        elif rpc.declared_role != pinned[rpc.name]:
            wrong.append(
                f"{rpc.label} declares {rpc.declared_role.name}, pinned {pinned[rpc.name].name}"
            )
    present = {(rpc.service, rpc.name) for rpc in RPCS}
    for service, methods in PINNED.items():
        if service not in SERVICES:
            continue  # not registered in this build
        wrong += [f"{service}.{m} vanished" for m in methods if (service, m) not in present]
    assert wrong == []


def test_registry_decisions_keep_their_floors():
    by_name = {(rpc.service, rpc.name): rpc for rpc in RPCS}
    wrong = []
    for service, methods in FLOORS.items():
        if service not in SERVICES:
            continue
        for method, floor in methods.items():
            rpc = by_name.get((service, method))
            if rpc is None:
                wrong.append(f"{service}.{method} is gone: update FLOORS")
            elif rpc.declared_role < floor:
                wrong.append(f"{rpc.label} needs only {rpc.declared_role.name}, floor {floor.name}")
    assert wrong == []


def test_every_rpc_follows_the_verb_rule():
    """Catches a new service whose write method was left open to readers."""
    wrong = []
    for rpc in RPCS:
        if rpc.name.startswith(DECIDING_VERBS) and rpc.declared_role < Role.APPROVER:
            wrong.append(f"{rpc.label} decides a move but needs only {rpc.declared_role.name}")
        elif not rpc.name.startswith(READ_VERBS) and rpc.declared_role < Role.WRITER:
            wrong.append(f"{rpc.label} changes state but needs only {rpc.declared_role.name}")
    assert wrong == []


def test_the_table_covers_all_four_rpc_shapes():
    shapes = {rpc.label: rpc.shape for rpc in RPCS}
    assert shapes["ArtifactService.UploadChunks"] == "client_streaming"
    assert shapes["TrackingService.ReadMetricHistory"] == "server_streaming"
    assert shapes["ArtifactService.ReadArtifact"] == "server_streaming"
    assert shapes["TrackingService.StreamMetrics"] == "bidi"
    assert set(shapes.values()) == {"unary", "client_streaming", "server_streaming", "bidi"}


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.label)
def test_authorization(rpc: Rpc, channel, tokens):
    """Anonymous: UNAUTHENTICATED; below the declared role: PERMISSION_DENIED with
    ROLE_REQUIRED naming the role; at or above it: admitted."""
    required = rpc.declared_role
    request = rpc.request_class()
    wrong = []
    for caller in CALLERS:
        got = outcome(
            lambda c=caller: call(
                channel,
                rpc,
                [request] if rpc.method.client_streaming else request,
                metadata=_metadata(tokens, c),
            )
        )
        code, reason, metadata = got
        role = _caller_role(caller)
        if role is None:
            expected = (UNAUTHENTICATED, "CREDENTIALS_MISSING")
            if (code, reason) != expected:
                wrong.append(f"{caller}: {got}, expected {expected}")
        elif role < required:
            if (code, reason) != (PERMISSION_DENIED, "ROLE_REQUIRED"):
                wrong.append(f"{caller}: {got}, expected PERMISSION_DENIED/ROLE_REQUIRED")
            elif metadata.get("required_role") != required.name.lower():
                wrong.append(f"{caller}: ErrorInfo names {metadata}, not {required.name}")
        elif code in (UNAUTHENTICATED, PERMISSION_DENIED):
            wrong.append(f"{caller} (role {role.name}) was refused: {got}")
        elif code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            wrong.append(f"{caller}: an empty request crashed the handler: {got}")
    assert wrong == [], f"{rpc.label} needs {required.name}"


def test_a_denied_call_changes_nothing(channel, tokens):
    """PERMISSION_DENIED is decided before the handler runs: a reader's well-formed
    writes leave no trace, on unary and streaming RPCs alike."""
    stub = tracking_pb2_grpc.TrackingServiceStub(channel)
    writer, reader = bearer(tokens["writer"]), bearer(tokens["reader"])
    exp = stub.CreateExperiment(
        tracking_pb2.CreateExperimentRequest(display_name="denied-writes"), metadata=writer
    )
    run = stub.CreateRun(tracking_pb2.CreateRunRequest(experiment=exp.name), metadata=writer)

    def snapshot():
        return (
            stub.ListExperiments(tracking_pb2.ListExperimentsRequest(view=3), metadata=reader),
            stub.GetRun(tracking_pb2.GetRunRequest(name=run.name), metadata=reader),
        )

    before = snapshot()
    attempts = {
        "CreateExperiment": lambda: stub.CreateExperiment(
            tracking_pb2.CreateExperimentRequest(display_name="by-a-reader"), metadata=reader
        ),
        "LogParams": lambda: stub.LogParams(
            tracking_pb2.LogParamsRequest(run=run.name, params={"lr": "1"}), metadata=reader
        ),
        "DeleteRun": lambda: stub.DeleteRun(
            tracking_pb2.DeleteRunRequest(name=run.name), metadata=reader
        ),
        "StreamMetrics": lambda: list(
            stub.StreamMetrics(
                iter(
                    [
                        tracking_pb2.StreamMetricsRequest(
                            open=tracking_pb2.StreamOpen(run=run.name, writer_id="w")
                        )
                    ]
                ),
                metadata=reader,
            )
        ),
    }
    for name, attempt in attempts.items():
        code, reason, _ = rejection(attempt)
        assert (code, reason) == (PERMISSION_DENIED, "ROLE_REQUIRED"), name
    assert snapshot() == before
    assert not before[1].writers


# ------------------------------------------------------------- tokens


def _identity(channel, token: str) -> auth_pb2.Principal:
    return auth_pb2_grpc.AdminServiceStub(channel).GetCallerIdentity(
        auth_pb2.GetCallerIdentityRequest(), metadata=bearer(token), timeout=10
    )


def test_the_caller_is_the_token_principal(channel, token_server):
    token = mint(token_server, "writer", "ci-bot")
    me = _identity(channel, token)
    assert (me.id, me.role, me.authenticated_by) == ("ci-bot", auth_pb2.ROLE_WRITER, "token")


def test_revoked_token_is_refused(channel, token_server, tokens):
    token = mint(token_server, "writer", "leaver")
    assert _identity(channel, token).id == "leaver"  # cached as valid now
    admin = auth_pb2_grpc.AdminServiceStub(channel)
    token_id = token.split("_")[1]
    admin.RevokeToken(
        auth_pb2.RevokeTokenRequest(name=f"tokens/{token_id}"), metadata=bearer(tokens["admin"])
    )
    code, reason, _ = rejection(lambda: _identity(channel, token))
    assert (code, reason) == (UNAUTHENTICATED, "TOKEN_REVOKED")


def test_revocation_reaches_other_replicas_within_the_cache_window(
    channel, token_server, tokens, module_servers
):
    """Replica B caches a verified token for token_cache_seconds (1 s here): a token
    revoked on replica A keeps working on B for at most that long, then is refused."""
    replica_b = module_servers(
        db_url=token_server.settings.db_url, auth="token", token_cache_seconds=1.0
    )
    token = mint(token_server, "reader", "roaming")
    with channel_of(replica_b) as other:
        assert _identity(other, token).id == "roaming"
        admin = auth_pb2_grpc.AdminServiceStub(channel)
        admin.RevokeToken(
            auth_pb2.RevokeTokenRequest(name=token.split("_")[1]), metadata=bearer(tokens["admin"])
        )
        revoked_at = time.monotonic()
        assert rejection(lambda: _identity(channel, token))[1] == "TOKEN_REVOKED"
        while True:
            got = outcome(lambda: _identity(other, token))
            if got[0] != grpc.StatusCode.OK:
                break
            assert time.monotonic() - revoked_at < 3.0, "replica B never noticed the revocation"
            time.sleep(0.05)
        assert got[:2] == (UNAUTHENTICATED, "TOKEN_REVOKED")


def test_expired_token_is_refused(channel, token_server):
    token = mint(token_server, "reader", "short-lived", ttl_seconds=1)
    assert _identity(channel, token).id == "short-lived"
    deadline = time.monotonic() + 5
    while (got := outcome(lambda: _identity(channel, token)))[0] == grpc.StatusCode.OK:
        assert time.monotonic() < deadline, "the token outlived its ttl"
        time.sleep(0.05)
    assert got[:2] == (UNAUTHENTICATED, "TOKEN_EXPIRED")


def test_a_token_with_a_wrong_secret_is_invalid(channel, token_server, module_servers):
    good = mint(token_server, "admin", "target")
    prefix, token_id, secret = good[:5], good[6:22], good[23:]
    assert f"{prefix}_{token_id}_{secret}" == good
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    elsewhere = mint(module_servers(auth="token"), "admin", "target")
    forged = {
        "one character off": f"ketch_{token_id}_{flipped}",
        "another token's secret": f"ketch_{token_id}_{elsewhere[23:]}",
        "unknown id": f"ketch_{'0' * 16}_{secret}",
        "a token of another server": elsewhere,
    }
    for label, token in forged.items():
        assert rejection(lambda t=token: _identity(channel, t))[:2] == (
            UNAUTHENTICATED,
            "TOKEN_INVALID",
        ), label


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Token ketch_0123456789abcdef_" + "a" * 43,
        "ketch_0123456789abcdef_" + "a" * 43,
    ],
)
def test_a_malformed_authorization_header_is_refused(channel, header):
    got = rejection(lambda: _call_with(channel, [("authorization", header)]))
    assert got[:2] == (UNAUTHENTICATED, "AUTHORIZATION_MALFORMED")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-ketch-token",
        "ketch_0123456789abcdef_short",
        "ketch_0123456789ABCDEF_" + "a" * 43,
        "ketch_0123456789abcdef_" + "a" * 42 + "=",
        "ketch_0123456789abcdef_" + "a" * 44,
        "ketch__" + "a" * 43,
        "' OR 1=1 --",
    ],
)
def test_a_token_that_is_not_shaped_like_one_is_refused(channel, token):
    code, reason, _ = rejection(lambda: _call_with(channel, bearer(token)))
    assert code == UNAUTHENTICATED and reason in ("UNAUTHENTICATED", "TOKEN_MALFORMED")


def _call_with(channel, metadata):
    return auth_pb2_grpc.AdminServiceStub(channel).GetCallerIdentity(
        auth_pb2.GetCallerIdentityRequest(), metadata=metadata, timeout=10
    )


def test_the_bearer_scheme_is_case_insensitive(channel, tokens):
    me = _call_with(channel, [("authorization", f"bearer {tokens['reader']}")])
    assert me.role == auth_pb2.ROLE_READER


# ------------------------------------------------------------- open endpoints


@pytest.mark.parametrize("metadata", [None, bearer("garbage")], ids=["no-token", "bad-token"])
def test_health_and_reflection_stay_open(channel, metadata):
    assert serving(channel, metadata)
    for service in SERVICES:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), metadata=metadata)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, service
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICES[0]),
    ]
    listed, described = stub.ServerReflectionInfo(iter(requests), metadata=metadata)
    names = {s.name for s in listed.list_services_response.service}
    assert set(SERVICES) <= names
    assert described.file_descriptor_response.file_descriptor_proto


# ------------------------------------------------------------- auth "none"


@pytest.fixture(scope="module")
def open_server(module_servers):
    return module_servers(auth="none")


def test_auth_none_makes_the_anonymous_caller_admin(open_server):
    with channel_of(open_server) as ch:
        me = _call_with(ch, None)
        assert (me.id, me.kind, me.role) == (
            "anonymous",
            auth_pb2.PRINCIPAL_KIND_ANONYMOUS,
            auth_pb2.ROLE_ADMIN,
        )
        admin = auth_pb2_grpc.AdminServiceStub(ch)
        made = admin.CreateToken(
            auth_pb2.CreateTokenRequest(principal="bob", role=auth_pb2.ROLE_READER)
        )
        assert made.token.created_by == "anonymous"


def test_auth_none_still_checks_a_presented_token(open_server):
    reader = mint(open_server, "reader", "nosy")
    with channel_of(open_server) as ch:
        assert rejection(lambda: _call_with(ch, bearer("ketch_" + "0" * 16 + "_" + "a" * 43)))[
            :2
        ] == (UNAUTHENTICATED, "TOKEN_INVALID")
        assert rejection(lambda: _call_with(ch, [("authorization", "Basic x")]))[0] == (
            UNAUTHENTICATED
        )
        # A valid token names the caller, with its own role, not the anonymous admin.
        assert _call_with(ch, bearer(reader)).id == "nosy"
        admin = auth_pb2_grpc.AdminServiceStub(ch)
        code, reason, _ = rejection(
            lambda: admin.ListTokens(auth_pb2.ListTokensRequest(), metadata=bearer(reader))
        )
        assert (code, reason) == (PERMISSION_DENIED, "ROLE_REQUIRED")
