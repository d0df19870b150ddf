"""The registry API through a real in-process gRPC server, on SQLite and PostgreSQL:
the SDK (register from run.log_model, URIs, download, lineage, watch with resume) and
the generated stubs (status codes, ErrorInfo reasons and fields).

Authentication is off here, so every call is the anonymous admin; votes by several
principals are covered in tests/store/test_registry_store.py and, with tokens, in
tests/e2e/test_registry_cli.py."""

from __future__ import annotations

import pathlib
import threading

import grpc
import ketch
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ketch import errors
from ketch.api.v1 import registry_pb2, registry_pb2_grpc

from tests.security._rpc import rejection

IA = grpc.StatusCode.INVALID_ARGUMENT
FP = grpc.StatusCode.FAILED_PRECONDITION


def trained(server, tmp_path: pathlib.Path, accuracy: float = 0.93) -> str:
    """A finished run that logged metrics and a model directory (run.log_model)."""
    model_dir = tmp_path / f"model-{accuracy}"
    model_dir.mkdir()
    (model_dir / "weights.pkl").write_bytes(b"w" * 100 + str(accuracy).encode())
    (model_dir / "config.txt").write_text("depth=3\n")
    with ketch.init(
        experiment="registry",
        uri=server.uri,
        capture_environment=False,
        system_metrics=False,
    ) as run:
        run.log({"accuracy": accuracy}, step=1)
        run.log_model(model_dir, "churn")
    return run.id


def test_register_resolve_download_and_lineage(server, client, tmp_path):
    run_id = trained(server, tmp_path)
    model = client.create_model("churn", "churn classifier", {"team": "growth"})
    assert (model.name, model.owner, model.latest_version) == ("churn", "anonymous", 0)
    v1 = client.register_model("churn", run_id)  # models/churn holds MLmodel.json
    manifest = client.get_artifact(run_id, "models/churn/MLmodel.json")
    assert (v1.version, v1.stage, v1.digest) == (1, "NONE", manifest.sha256)
    assert v1.source_path == "models/churn/MLmodel.json" and v1.artifact_dir == "models/churn"
    v2 = client.register_model("fraud", trained(server, tmp_path, 0.97), "models/churn")
    assert (v2.model, v2.version) == ("fraud", 1)  # created on first registration

    client.set_policy("churn", "production", approvals=0, gates=["metrics.accuracy >= 0.9"])
    assert client.request_transition("churn", 1, "staging").state == "APPLIED"
    applied = client.request_transition("churn", 1, "Production", comment="ship")
    assert (applied.state, applied.target_stage, applied.approvals_required) == (
        "APPLIED",
        "PRODUCTION",
        0,
    )
    client.set_alias("churn", "champion", 1)
    for uri in ("models:/churn/1", "models:/churn@champion", "models:/churn/Production"):
        found = client.get_model_version(uri)
        assert (found.version, found.stage, found.aliases) == (1, "PRODUCTION", ("champion",))
    assert client.get_model_version("churn", 1).uri == "models:/churn/1"
    with pytest.raises(errors.NotFound, match="no alias 'nobody'"):
        client.get_model_version("models:/churn@nobody")
    with pytest.raises(errors.InvalidArgument):
        client.get_model_version("churn@champion")

    local = pathlib.Path(
        ketch.download_model("models:/churn@champion", tmp_path / "dl", tracking_uri=server.uri)
    )
    assert sorted(p.name for p in local.iterdir()) == ["MLmodel.json", "config.txt", "weights.pkl"]
    assert (local / "weights.pkl").read_bytes().startswith(b"w" * 100)

    graph = client.get_lineage("model:churn/1", direction="up", depth=1)
    assert graph.root.kind == "model_version" and graph.root.exists
    assert [(e.kind, e.context, e.upstream) for e in graph.edges] == [
        ("produced", "registered", f"runs/{run_id}")
    ]
    policy = client.get_policy("churn")
    assert policy["PRODUCTION"].gates == ("metrics.accuracy >= 0.9",)
    assert policy["PRODUCTION"].approvals_required == 0 and not policy["PRODUCTION"].is_default
    assert policy["STAGING"].is_default and policy["STAGING"].approver_roles == ("approver",)
    assert [m.name for m in client.iter_models()] == ["churn", "fraud"]
    assert [v.version for v in client.iter_model_versions("churn", stage="production")] == [1]


def test_errors_carry_codes_reasons_and_fields(server, client, channel, tmp_path):
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    run_id = trained(server, tmp_path)
    client.create_model("churn")
    version = client.register_model("churn", run_id)
    vname = version.name
    cases = [
        (stub.CreateModel, registry_pb2.CreateModelRequest(model_id="bad name"), IA, "model_id"),
        (stub.GetModel, registry_pb2.GetModelRequest(name="models/a/b"), IA, "name"),
        (
            stub.CreateModelVersion,
            registry_pb2.CreateModelVersionRequest(
                parent="models/churn", source_run="runs/x", source_path="m"
            ),
            IA,
            "source_run",
        ),
        (
            stub.CreateModelVersion,
            registry_pb2.CreateModelVersionRequest(
                parent="models/churn", source_run=f"runs/{run_id}", source_path="../m"
            ),
            IA,
            "source_path",
        ),
        (
            stub.RequestTransition,
            registry_pb2.RequestTransitionRequest(model_version=vname),
            IA,
            "target_stage",
        ),
        (
            stub.SetAlias,
            registry_pb2.SetAliasRequest(model="models/churn", alias="Production", version=1),
            IA,
            "alias",
        ),
        (
            stub.SetStagePolicy,
            registry_pb2.SetStagePolicyRequest(
                model="models/churn",
                policy=registry_pb2.StagePolicy(stage=registry_pb2.STAGE_STAGING, gates=["x >"]),
            ),
            IA,
            "policy.gates[0]",
        ),
        (stub.ResolveModelVersion, registry_pb2.ResolveModelVersionRequest(uri="m:/x"), IA, "uri"),
        (
            stub.WatchRegistry,
            registry_pb2.WatchRegistryRequest(from_cursor="abc"),
            IA,
            "from_cursor",
        ),
    ]
    mismatches = []
    for method, request, code, field in cases:

        def call(m=method, r=request):
            result = m(r)
            if isinstance(result, grpc.Call) and hasattr(result, "__next__"):
                next(result)

        got_code, _, metadata = rejection(call)
        if (got_code, metadata.get("field")) != (code, field):
            mismatches.append((field, got_code, metadata))
    assert mismatches == []

    production = registry_pb2.STAGE_PRODUCTION
    code, reason, _ = rejection(
        lambda: stub.RequestTransition(
            registry_pb2.RequestTransitionRequest(model_version=vname, target_stage=production)
        )
    )
    assert (code, reason) == (FP, "ILLEGAL_TRANSITION")
    client.request_transition("churn", 1, "staging")
    request = client.request_transition("churn", 1, "production")  # needs 2 approvals
    assert (request.state, request.approvals_required) == ("PENDING", 2)
    code, reason, _ = rejection(
        lambda: stub.Approve(registry_pb2.ApproveRequest(name=f"requests/{request.id}"))
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SELF_APPROVAL")
    stale = client.get_model("churn").etag
    client.set_alias("churn", "champion", 1)
    code, _, _ = rejection(
        lambda: stub.SetAlias(
            registry_pb2.SetAliasRequest(model="models/churn", alias="x", version=1, etag=stale)
        )
    )
    assert code == grpc.StatusCode.ABORTED
    code, _, _ = rejection(lambda: stub.GetModel(registry_pb2.GetModelRequest(name="models/nope")))
    assert code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(errors.PermissionDenied) as denied:
        client.approve(request.id)
    assert denied.value.reason == "SELF_APPROVAL"
    with pytest.raises(errors.PermissionDenied):
        client.reject(request.id, "my own")
    assert client.cancel_transition_request(request.id, "not yet").state == "CANCELLED"
    denials = list(client.audit_log("churn", actions=["TRANSITION_DENIED"]))
    assert [e.after["reason"] for e in denials] == [
        "ILLEGAL_TRANSITION",
        "SELF_APPROVAL",
        "SELF_APPROVAL",
        "SELF_APPROVAL",
    ]


def test_watch_resumes_from_a_cursor_while_events_are_written(server, client, tmp_path):
    run_id = trained(server, tmp_path)
    client.create_model("churn")
    client.register_model("churn", run_id)
    client.register_model("churn", run_id)
    writes = 40
    done = threading.Event()

    def write() -> None:
        with ketch.Client(server.uri) as writer:
            for i in range(writes):
                writer.set_alias("churn", "champion", 1 + i % 2)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen = []
    for event in client.watch_registry(["churn"], timeout=30):
        seen.append(event)
        if len(seen) == 10:
            break  # drop the stream midway
    total = 3 + writes
    for event in client.watch_registry(["churn"], from_cursor=seen[-1].cursor, timeout=30):
        seen.append(event)
        if len(seen) == total:
            break
    thread.join(30)
    assert done.is_set()
    assert [e.sequence for e in seen] == [e.sequence for e in client.audit_log("churn")]
    assert len({e.cursor for e in seen}) == total
    assert [e.action for e in seen[:3]] == [
        "MODEL_CREATED",
        "VERSION_REGISTERED",
        "VERSION_REGISTERED",
    ]
    assert seen[-1].after == {"alias": "champion", "version": 2}
    # With a timeout and nothing new, the watch ends by itself.
    quiet = list(client.watch_registry(["churn"], start_at_end=True, timeout=0.5))
    assert quiet == []
    only = list(client.watch_registry(actions=["MODEL_CREATED"], timeout=0.5))
    assert [e.resource for e in only] == ["models/churn"]
    pages = list(client.audit_log(page_size=7))
    assert [e.sequence for e in pages] == list(range(1, total + 1))


@pytest.fixture
def sweeping_server(db_url, tmp_path):
    """A server that looks for due transition requests every 0.2 s."""
    from ketch_server.settings import Settings

    from tests.conftest import ThreadServer

    settings = Settings(
        port=0,
        data_dir=tmp_path / "data",
        db_url=db_url,
        grace_seconds=1,
        expiry_sweep_seconds=0.2,
    )
    srv = ThreadServer(settings).start()
    yield srv
    srv.stop()


def test_a_watcher_sees_a_request_expire_when_it_is_due(sweeping_server, tmp_path):
    """Nobody acts on the request: the server expires it by itself (reading a request
    past its expiry writes nothing), and the watch stream shows it, by ketch:expiry."""
    with ketch.Client(sweeping_server.uri) as client:
        run_id = trained(sweeping_server, tmp_path)
        client.create_model("churn")
        client.register_model("churn", run_id)
        client.set_policy("churn", "staging", approvals=1, expiry_seconds=1)
        request = client.request_transition("churn", 1, "staging")
        assert request.state == "PENDING"
        watch = client.watch_registry(["churn"], actions=["TRANSITION_EXPIRED"], timeout=15)
        event = next(iter(watch), None)
        assert event is not None, "no TRANSITION_EXPIRED event within 15 s"
        assert event.actor == "ketch:expiry" and event.resource == f"requests/{request.id}"
        assert client.get_transition_request(request.id).state == "EXPIRED"


def test_registry_service_is_reflected(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (resp,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    assert "ketch.api.v1.RegistryService" in {s.name for s in resp.list_services_response.service}
