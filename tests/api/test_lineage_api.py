"""The lineage API through a real in-process gRPC server, on SQLite and PostgreSQL:
the generated stubs (status codes and ErrorInfo field names) and the SDK
(``ketch.Client``, ``run.log_input`` / ``log_output``, ``ketch.init(fork_from=...)``)."""

from __future__ import annotations

import math

import grpc
import ketch
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ketch import errors
from ketch.api.v1 import lineage_pb2, lineage_pb2_grpc, tracking_pb2, tracking_pb2_grpc

from tests.security._rpc import rejection

UNKNOWN = "0" * 31 + "1"
IA = grpc.StatusCode.INVALID_ARGUMENT


def test_validation_errors_name_the_field(channel):
    tracking = tracking_pb2_grpc.TrackingServiceStub(channel)
    stub = lineage_pb2_grpc.LineageServiceStub(channel)
    exp = tracking.CreateExperiment(tracking_pb2.CreateExperimentRequest(display_name="v"))
    run = tracking.CreateRun(tracking_pb2.CreateRunRequest(experiment=exp.name)).name
    ds = lineage_pb2.Dataset
    io = lineage_pb2.RunIO
    art = lineage_pb2.ArtifactRef
    cases = [
        (stub.LogInputs, lineage_pb2.LogInputsRequest(run=run), IA, "inputs"),
        (
            stub.LogInputs,
            lineage_pb2.LogInputsRequest(run="bad", inputs=[io(dataset=ds(display_name="a"))]),
            IA,
            "run",
        ),
        (
            stub.LogInputs,
            lineage_pb2.LogInputsRequest(run=run, inputs=[io(dataset=ds(display_name="a"))]),
            IA,
            "inputs[0].dataset.digest",
        ),
        (
            stub.LogInputs,
            lineage_pb2.LogInputsRequest(run=run, inputs=[io(dataset=ds(digest="d"))]),
            IA,
            "inputs[0].dataset.display_name",
        ),
        (
            stub.LogOutputs,
            lineage_pb2.LogOutputsRequest(
                run=run,
                outputs=[io(), io(dataset=ds(display_name="a", digest="d", schema="{nope"))],
            ),
            IA,
            "outputs[0]",
        ),
        (
            stub.LogOutputs,
            lineage_pb2.LogOutputsRequest(
                run=run, outputs=[io(dataset=ds(display_name="a", digest="d", schema="{nope"))]
            ),
            IA,
            "outputs[0].dataset.schema",
        ),
        (
            stub.LogOutputs,
            lineage_pb2.LogOutputsRequest(
                run=run, outputs=[io(dataset=ds(display_name="a", digest="d", num_rows=-1))]
            ),
            IA,
            "outputs[0].dataset.num_rows",
        ),
        (
            stub.LogOutputs,
            lineage_pb2.LogOutputsRequest(
                run=run, outputs=[io(artifact=art(run=run, path="../etc/passwd"))]
            ),
            IA,
            "outputs[0].artifact.path",
        ),
        (
            stub.LogOutputs,
            lineage_pb2.LogOutputsRequest(run=run, outputs=[io(artifact=art(run=run, path="/x"))]),
            IA,
            "outputs[0].artifact.path",
        ),
        (
            stub.LogInputs,
            lineage_pb2.LogInputsRequest(
                run=run,
                inputs=[io(dataset=ds(display_name="a", digest="d"), context="bad\ncontext")],
            ),
            IA,
            "inputs[0].context",
        ),
        (stub.GetLineage, lineage_pb2.GetLineageRequest(), IA, "node"),
        (
            stub.GetLineage,
            lineage_pb2.GetLineageRequest(node=lineage_pb2.NodeRef(run=run), depth=33),
            IA,
            "depth",
        ),
        (
            stub.GetLineage,
            lineage_pb2.GetLineageRequest(node=lineage_pb2.NodeRef(run=run), max_nodes=-1),
            IA,
            "max_nodes",
        ),
        (
            stub.GetLineage,
            lineage_pb2.GetLineageRequest(node=lineage_pb2.NodeRef(run=run), direction=9),
            IA,
            "direction",
        ),
        (
            stub.GetLineage,
            lineage_pb2.GetLineageRequest(
                node=lineage_pb2.NodeRef(model_version="models/m/versions/one")
            ),
            IA,
            "node.model_version",
        ),
        (stub.ForkRun, lineage_pb2.ForkRunRequest(source_run=run, step=-1), IA, "step"),
        (stub.ForkRun, lineage_pb2.ForkRunRequest(source_run="runs/x", step=1), IA, "source_run"),
        (stub.GetDataset, lineage_pb2.GetDatasetRequest(display_name="a"), IA, "name"),
        (stub.CreateDataset, lineage_pb2.CreateDatasetRequest(), IA, "dataset.display_name"),
    ]
    mismatches = []
    for method, request, code, field in cases:
        got_code, _, metadata = rejection(lambda m=method, r=request: m(r))
        if (got_code, metadata.get("field")) != (code, field):
            mismatches.append((field, got_code, metadata))
    assert mismatches == []
    # Nothing was recorded by the rejected calls.
    graph = stub.GetLineage(lineage_pb2.GetLineageRequest(node=lineage_pb2.NodeRef(run=run)))
    assert [n.name for n in graph.nodes] == [run] and not graph.edges

    code, _, _ = rejection(
        lambda: stub.ForkRun(lineage_pb2.ForkRunRequest(source_run=f"runs/{UNKNOWN}", step=1))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _, _ = rejection(
        lambda: stub.GetLineage(
            lineage_pb2.GetLineageRequest(
                node=lineage_pb2.NodeRef(
                    dataset=lineage_pb2.GetDatasetRequest(display_name="no", digest="such")
                )
            )
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_lineage_service_is_reflected(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (resp,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in resp.list_services_response.service}
    assert "ketch.api.v1.LineageService" in names


def test_sdk_records_inputs_outputs_and_reads_the_graph(server, client):
    train = ketch.Dataset("train", "sha256:t", source="s3://b/train", num_rows=100)
    with ketch.init(
        experiment="lineage",
        name="prep",
        uri=server.uri,
        capture_environment=False,
        system_metrics=False,
    ) as prep:
        raw = prep.log_input(ketch.Dataset("raw", "sha256:r", schema={"x": "int"}))
        out = prep.log_output(train, context="split")
        prep.log_input(ketch.Dataset("raw", "sha256:r"))  # again: no new event
    assert raw.kind == "dataset" and raw.dataset.schema == '{"x": "int"}'
    assert out.label == "train@sha256:t" and out.dataset.num_rows == 100
    with ketch.init(
        experiment="lineage",
        name="fit",
        uri=server.uri,
        capture_environment=False,
        system_metrics=False,
    ) as fit:
        fit.log_input(train)
        art = fit.log_output("model/weights.pt")
        fit.log_input((prep.id, "report.html"), context="reference")
    assert art.kind == "artifact" and art.path == "model/weights.pt"

    up = client.get_lineage(f"artifact:{fit.id}/model/weights.pt", direction="up", depth=5)
    assert up.root.kind == "artifact" and up.root.run_id == fit.id
    assert [(n.kind, n.label, n.depth) for n in up.nodes] == [
        ("artifact", "model/weights.pt", 0),
        ("run", "fit", 1),
        ("artifact", "report.html", 2),
        ("dataset", "train@sha256:t", 2),
        ("run", "prep", 3),
        ("dataset", "raw@sha256:r", 4),
    ]
    assert {(e.kind, e.context) for e in up.edges} == {
        ("produced", ""),
        ("consumed", "training"),
        ("consumed", "reference"),
        ("produced", "split"),
        ("consumed", "training"),
    }
    assert len(up.edges) == 5
    assert up.node(f"runs/{fit.id}").run_state == "FINISHED"
    down = client.get_lineage("dataset:raw@sha256:r", direction="down", depth=2)
    assert [n.label for n in down.nodes] == [
        "raw@sha256:r",
        "prep",
        "train@sha256:t",  # report.html is only referenced by fit, not produced by prep
    ]
    assert client.get_dataset("train", "sha256:t").source == "s3://b/train"
    assert client.get_dataset("train", "sha256:nope") is None
    with pytest.raises(errors.ResourceExhausted):
        client.get_lineage(f"run:{fit.id}", depth=5, max_nodes=2)
    with pytest.raises(errors.NotFound, match="models/churn/versions/1 not found"):
        client.get_lineage("model:churn/1")
    with pytest.raises(errors.InvalidArgument):
        client.get_lineage("dataset:no-digest")
    with pytest.raises(errors.NotFound):
        client.get_lineage(f"run:{UNKNOWN}")


def test_parent_and_child_runs_are_in_the_graph(server, client):
    study = ketch.init(
        experiment="hpo",
        name="study",
        uri=server.uri,
        capture_environment=False,
        system_metrics=False,
    )
    trial = ketch.init(
        experiment="hpo",
        name="trial",
        uri=server.uri,
        parent=study,
        capture_environment=False,
        system_metrics=False,
    )
    trial.finish()
    study.finish()
    graph = client.get_lineage(f"run:{trial.id}", direction="up")
    assert [(e.kind, e.upstream, e.downstream) for e in graph.edges] == [
        ("child_of", f"runs/{study.id}", f"runs/{trial.id}")
    ]


def test_fork_run_through_the_sdk(server, client):
    with ketch.init(
        experiment="fork",
        name="base",
        uri=server.uri,
        config={"lr": 0.1},
        tags={"team": "a"},
        capture_environment=False,
        system_metrics=False,
    ) as src:
        for step in range(50):
            src.log({"loss": 1.0 / (step + 1)}, step=step)
            if step % 7 == 6:
                src.flush()  # several chunks, one of them straddling step 20
    fork = client.fork_run(src.id, 20, name="from-20")
    assert fork.name == "from-20" and fork.experiment_id == src.experiment_id
    assert fork.params == {"lr": "0.1"} and fork.tags["team"] == "a"
    assert fork.tags["ketch.forked_from"] == f"runs/{src.id}@20"
    history = client.get_metric_history(fork.id, "loss")
    assert list(history.steps) == list(range(21))
    assert list(history.values) == [1.0 / (s + 1) for s in range(21)]
    summary = fork.metrics["loss"]
    assert (summary.count, summary.step, summary.last) == (21, 20, 1.0 / 21)
    assert math.isclose(summary.min, 1.0 / 21) and summary.max == 1.0
    assert len(client.get_metric_history(src.id, "loss")) == 50  # the source is untouched
    graph = client.get_lineage(f"run:{src.id}", direction="down")
    assert [(e.kind, e.step) for e in graph.edges] == [("forked_from", 20)]
    again = client.fork_run(src.id, 20, request_id="same")
    assert client.fork_run(src.id, 20, request_id="same").id == again.id
    with pytest.raises(errors.OutOfRange):
        client.fork_run(src.id, 50)
    with pytest.raises(errors.InvalidArgument):
        client.fork_run(src.id, -1)
    with pytest.raises(errors.NotFound):
        client.fork_run(UNKNOWN, 1)

    # ketch.init(fork_from=...) continues the fork.
    with ketch.init(
        experiment="fork",
        name="continued",
        uri=server.uri,
        fork_from=(src.id, 9),
        capture_environment=False,
        system_metrics=False,
    ) as cont:
        cont.log({"loss": 0.5}, step=10)
    history = client.get_metric_history(cont.id, "loss")
    assert list(history.steps) == list(range(11)) and history.values[-1] == 0.5
    assert client.get_run(cont.id).name == "continued"
