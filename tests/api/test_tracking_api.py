"""The tracking API through a real in-process gRPC server, on SQLite and PostgreSQL.

Two levels: the generated stubs (status codes, messages and the
``google.rpc.Status``/``ErrorInfo`` details in the trailers) and the SDK
(``ketch.Client`` and ``ketch.init``). Tables of bad inputs run in one test per
resource, reporting every mismatch at once, because each test starts a server
and a fresh database; after every rejected call the stored data is re-read and
must be unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import grpc
import ketch
import numpy as np
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ketch.api.v1 import common_pb2, tracking_pb2, tracking_pb2_grpc

from tests.conftest import free_port

SERVICE = "ketch.api.v1.TrackingService"
UNKNOWN_ID = "0" * 31 + "1"
IA = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def stub(channel):
    return tracking_pb2_grpc.TrackingServiceStub(channel)


# ------------------------------------------------------------------ helpers


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def new_experiment(stub, name: str = "exp") -> tracking_pb2.Experiment:
    return stub.CreateExperiment(tracking_pb2.CreateExperimentRequest(display_name=name))


def new_run(stub, experiment: str, **fields: Any) -> tracking_pb2.Run:
    return stub.CreateRun(tracking_pb2.CreateRunRequest(experiment=experiment, **fields))


def columns(series: dict[str, tuple[list[int], list[float]]], **extra) -> common_pb2.MetricBatch:
    """A MetricBatch from key -> (steps, values)."""
    batch = common_pb2.MetricBatch(keys=list(series), **extra)
    for i, (steps, values) in enumerate(series.values()):
        batch.key_index.extend([i] * len(steps))
        batch.steps.extend(steps)
        batch.values.extend(values)
    return batch


def read(stub, run: str, keys=(), **bounds) -> dict[str, tuple[list, list, list]]:
    """Every point of ``keys`` (all keys when empty): key -> (steps, timestamps, values)."""
    req = tracking_pb2.ReadMetricHistoryRequest(run=run, keys=list(keys), **bounds)
    out: dict[str, tuple[list, list, list]] = {}
    for resp in stub.ReadMetricHistory(req, timeout=30):
        for s in resp.series:
            steps, stamps, values = out.setdefault(s.key, ([], [], []))
            steps += s.steps
            stamps += s.timestamps_ms
            values += s.values
    return out


@dataclasses.dataclass
class Case:
    """A call that must fail with ``code``, ``reason`` and ErrorInfo ``metadata``.

    ``mention`` must appear in the message; by default the field, resource or limit.
    """

    label: str
    call: Callable[[], Any]
    code: grpc.StatusCode
    metadata: dict[str, str]
    reason: str = ""
    mention: str = ""


def problems_of(case: Case) -> list[str]:
    """What is wrong with how the server rejected ``case`` (empty when all is right)."""
    try:
        case.call()
    except grpc.RpcError as err:
        return _check_rejection(case, err)
    return ["was accepted"]


def _check_rejection(case: Case, err: grpc.RpcError) -> list[str]:
    wrong = []
    if err.code() != case.code:
        wrong.append(f"code {err.code().name}, expected {case.code.name}: {err.details()}")
    mention = case.mention or next(
        (case.metadata[k] for k in ("field", "resource", "limit") if k in case.metadata), ""
    )
    if mention not in (err.details() or ""):
        wrong.append(f"message {err.details()!r} does not mention {mention!r}")
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        return [*wrong, "no grpc-status-details-bin trailer"]
    status = status_pb2.Status.FromString(raw)
    if status.code != case.code.value[0] or status.message != err.details():
        wrong.append(f"google.rpc.Status {status.code} {status.message!r} disagrees")
    infos = [i for i in map(_error_info, status.details) if i is not None]
    if len(infos) != 1:
        return [*wrong, f"{len(infos)} ErrorInfo details"]
    (info,) = infos
    reason = case.reason or case.code.name
    if (info.reason, info.domain) != (reason, "ketch.ml"):
        wrong.append(f"ErrorInfo {info.reason}@{info.domain}, expected {reason}@ketch.ml")
    for key, value in case.metadata.items():
        if info.metadata.get(key) != value:
            wrong.append(f"ErrorInfo.metadata[{key!r}] = {info.metadata.get(key)!r}, not {value!r}")
    return wrong


def _error_info(detail) -> error_details_pb2.ErrorInfo | None:
    info = error_details_pb2.ErrorInfo()
    return info if detail.Unpack(info) else None


def check_rejections(cases: list[Case], snapshot: Callable[[], Any]) -> None:
    """Run every case; each must be rejected as described and leave ``snapshot()`` as is."""
    before = snapshot()
    wrong = []
    for case in cases:
        wrong += [f"{case.label}: {p}" for p in problems_of(case)]
        if snapshot() != before:
            wrong.append(f"{case.label}: stored data changed")
    assert not wrong, "\n".join(wrong)


def ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


# -------------------------------------------------------------- bad inputs


def test_bad_experiment_requests_are_rejected_and_change_nothing(stub):
    exp = new_experiment(stub, "taken")
    new_experiment(stub, "other")
    S = tracking_pb2

    def create(**kw):
        return lambda: stub.CreateExperiment(S.CreateExperimentRequest(**kw))

    def update(paths=(), etag="", **fields):
        return lambda: stub.UpdateExperiment(
            S.UpdateExperimentRequest(
                experiment=S.Experiment(name=exp.name, **fields),
                update_mask=mask(*paths) if paths else None,
                etag=etag,
            )
        )

    def listing(**kw):
        return lambda: stub.ListExperiments(S.ListExperimentsRequest(**kw))

    field = {"field": "display_name"}
    missing = f"experiments/{UNKNOWN_ID}"
    cases = [
        Case("empty name", create(display_name=""), IA, field),
        Case("blank name", create(display_name="   "), IA, field),
        Case("300-char name", create(display_name="x" * 300), IA, field, mention="256"),
        Case("name with newline", create(display_name="a\nb"), IA, field),
        Case("name with tab", create(display_name="a\tb"), IA, field),
        Case("padded name", create(display_name=" a"), IA, field),
        Case(
            "NUL in description",
            create(display_name="n", description="a\0b"),
            IA,
            {"field": "description"},
        ),
        Case(
            "duplicate name",
            create(display_name="taken"),
            grpc.StatusCode.ALREADY_EXISTS,
            {"field": "display_name", "resource": "experiments"},
            mention="taken",
        ),
        Case(
            "malformed name",
            lambda: stub.GetExperiment(S.GetExperimentRequest(name="x/y")),
            IA,
            {"field": "name"},
        ),
        Case(
            "run name for experiment",
            lambda: stub.GetExperiment(S.GetExperimentRequest(name=f"runs/{UNKNOWN_ID}")),
            IA,
            {"field": "name"},
        ),
        Case(
            "unknown experiment",
            lambda: stub.GetExperiment(S.GetExperimentRequest(name=missing)),
            grpc.StatusCode.NOT_FOUND,
            {"resource": missing},
        ),
        Case(
            "lookup by empty name",
            lambda: stub.GetExperimentByName(S.GetExperimentByNameRequest(display_name="")),
            IA,
            field,
        ),
        Case("update without update_mask", update(description="d"), IA, {"field": "update_mask"}),
        Case(
            "update of an immutable field",
            update(["experiment_id"], experiment_id="x"),
            IA,
            {"field": "update_mask"},
        ),
        Case(
            "update to an empty name",
            update(["display_name"], display_name=""),
            IA,
            {"field": "experiment.display_name"},
        ),
        Case(
            "rename onto a taken name",
            update(["display_name"], display_name="other"),
            grpc.StatusCode.ALREADY_EXISTS,
            {"field": "experiment.display_name"},
            mention="other",
        ),
        Case(
            "stale etag",
            update(["description"], etag='W/"0"', description="d"),
            grpc.StatusCode.ABORTED,
            {"resource": exp.name},
        ),
        Case("page_size 5000", listing(page_size=5000), IA, {"field": "page_size"}, mention="1000"),
        Case("negative page_size", listing(page_size=-1), IA, {"field": "page_size"}),
        Case("unknown view", listing(view=99), IA, {"field": "view"}),
        Case("forged page token", listing(page_token="forged"), IA, {"field": "page_token"}),
        Case(
            "delete unknown",
            lambda: stub.DeleteExperiment(S.DeleteExperimentRequest(name=missing)),
            grpc.StatusCode.NOT_FOUND,
            {"resource": missing},
        ),
        Case(
            "delete with stale etag",
            lambda: stub.DeleteExperiment(S.DeleteExperimentRequest(name=exp.name, etag="W/0")),
            grpc.StatusCode.ABORTED,
            {"resource": exp.name},
        ),
    ]
    check_rejections(cases, lambda: listing(view=common_pb2.VIEW_TYPE_ALL, page_size=1000)())


def test_bad_run_requests_are_rejected_and_change_nothing(stub):
    exp = new_experiment(stub)
    run = new_run(stub, exp.name, display_name="r", params={"lr": "0.01"}, tags={"t": "1"})
    S = tracking_pb2
    missing = f"runs/{UNKNOWN_ID}"

    def create(**kw):
        kw.setdefault("experiment", exp.name)
        return lambda: stub.CreateRun(S.CreateRunRequest(**kw))

    def update(paths=(), etag="", end_time=None, **fields):
        return lambda: stub.UpdateRun(
            S.UpdateRunRequest(
                run=S.Run(name=run.name, **fields),
                update_mask=mask(*paths) if paths else None,
                etag=etag,
                end_time=end_time,
            )
        )

    def params(name=run.name, **values):
        return lambda: stub.LogParams(S.LogParamsRequest(run=name, params=values))

    def tags(values, name=run.name):
        return lambda: stub.SetTags(S.SetTagsRequest(run=name, tags=values))

    not_found = grpc.StatusCode.NOT_FOUND
    cases = [
        Case(
            "unknown run",
            lambda: stub.GetRun(S.GetRunRequest(name=missing)),
            not_found,
            {"resource": missing},
        ),
        Case(
            "malformed run name",
            lambda: stub.GetRun(S.GetRunRequest(name="runs/abc")),
            IA,
            {"field": "name"},
        ),
        Case(
            "experiment name as run",
            lambda: stub.GetRun(S.GetRunRequest(name=f"experiments/{UNKNOWN_ID}")),
            IA,
            {"field": "name"},
        ),
        Case("empty run name", lambda: stub.GetRun(S.GetRunRequest()), IA, {"field": "name"}),
        Case("create without experiment", create(experiment=""), IA, {"field": "experiment"}),
        Case(
            "create in unknown experiment",
            create(experiment=f"experiments/{UNKNOWN_ID}"),
            not_found,
            {"resource": f"experiments/{UNKNOWN_ID}"},
        ),
        Case("malformed parent", create(parent_run="runs/zz"), IA, {"field": "parent_run"}),
        Case("unknown parent", create(parent_run=missing), not_found, {"resource": missing}),
        Case(
            "display name with newline", create(display_name="a\nb"), IA, {"field": "display_name"}
        ),
        Case(
            "invalid param key", create(params={"bad!key": "1"}), IA, {"field": "params[bad!key]"}
        ),
        Case("invalid tag key", create(tags={"../up": "1"}), IA, {"field": "tags[../up]"}),
        Case("long request_id", create(request_id="r" * 129), IA, {"field": "request_id"}),
        Case("start_time before 1970", create(start_time=ts(-1)), IA, {"field": "start_time"}),
        Case(
            "param conflict",
            params(lr="0.02"),
            grpc.StatusCode.FAILED_PRECONDITION,
            {"field": "params[lr]", "key": "lr"},
            reason="PARAM_CONFLICT",
            mention="'lr'",
        ),
        Case(
            "param conflict beside a fresh key",
            params(lr="0.02", fresh="x"),
            grpc.StatusCode.FAILED_PRECONDITION,
            {"key": "lr"},
            reason="PARAM_CONFLICT",
            mention="'0.02'",
        ),
        Case(
            "params of an unknown run",
            params(name=missing, a="1"),
            not_found,
            {"resource": missing},
        ),
        Case("params of a malformed run", params(name="bogus", a="1"), IA, {"field": "run"}),
        Case(
            "invalid param key",
            params(**{"white space ": "1"}),
            IA,
            {"field": "params[white space ]"},
        ),
        Case(
            "param value too long",
            params(long="x" * 6001),
            IA,
            {"field": "params[long]"},
            mention="6000",
        ),
        Case("tag key with newline", tags({"a\nb": "1"}), IA, {"field": "tags[a\nb]"}),
        Case("empty tag key", tags({"": "1"}), IA, {"field": "tags[]"}),
        Case(
            "delete missing tag",
            lambda: stub.DeleteTag(S.DeleteTagRequest(run=run.name, key="nope")),
            not_found,
            {"resource": f"{run.name}/tags/nope"},
            mention="'nope'",
        ),
        Case(
            "delete tag with invalid key",
            lambda: stub.DeleteTag(S.DeleteTagRequest(run=run.name, key="a\0")),
            IA,
            {"field": "key"},
        ),
        Case("update without update_mask", update(display_name="x"), IA, {"field": "update_mask"}),
        Case(
            "update of an immutable field",
            update(["user"], user="eve"),
            IA,
            {"field": "update_mask"},
        ),
        Case(
            "unknown run state 99",
            update(["state"], state=99),
            IA,
            {"field": "run.state"},
            mention="99",
        ),
        Case("unspecified run state", update(["state"]), IA, {"field": "run.state"}),
        Case(
            "end_time before 1970",
            update(["state"], state=2, end_time=ts(-5)),
            IA,
            {"field": "end_time"},
        ),
        Case("rename to empty", update(["display_name"]), IA, {"field": "run.display_name"}),
        Case(
            "stale etag",
            update(["display_name"], etag='W/"7"', display_name="x"),
            grpc.StatusCode.ABORTED,
            {"resource": run.name},
        ),
        Case(
            "update unknown run",
            lambda: stub.UpdateRun(
                S.UpdateRunRequest(
                    run=S.Run(name=missing, display_name="x"), update_mask=mask("display_name")
                )
            ),
            not_found,
            {"resource": missing},
        ),
    ]
    check_rejections(
        cases,
        lambda: (
            stub.GetRun(S.GetRunRequest(name=run.name)),
            stub.SearchRuns(S.SearchRunsRequest(view=common_pb2.VIEW_TYPE_ALL)),
        ),
    )


def test_bad_metric_batches_are_rejected_and_change_nothing(stub):
    exp = new_experiment(stub)
    run = new_run(stub, exp.name)
    stub.LogMetrics(
        tracking_pb2.LogMetricsRequest(run=run.name, batch=columns({"loss": ([0, 1], [1.0, 0.5])}))
    )
    gone = new_run(stub, exp.name)
    stub.DeleteRun(tracking_pb2.DeleteRunRequest(name=gone.name))

    def log(batch, name=run.name):
        return lambda: stub.LogMetrics(tracking_pb2.LogMetricsRequest(run=name, batch=batch))

    def history(name=run.name, **kw):
        return lambda: list(
            stub.ReadMetricHistory(tracking_pb2.ReadMetricHistoryRequest(run=name, **kw))
        )

    B = common_pb2.MetricBatch
    too_many = 100_001
    cases = [
        Case(
            "mismatched steps",
            log(B(keys=["m"], key_index=[0, 0, 0], steps=[0, 1], values=[1, 2, 3])),
            IA,
            {"field": "batch.steps"},
        ),
        Case(
            "mismatched key_index",
            log(B(keys=["m"], key_index=[0], steps=[0, 1], values=[1, 2])),
            IA,
            {"field": "batch.key_index"},
        ),
        Case(
            "mismatched timestamps",
            log(B(keys=["m"], key_index=[0, 0], steps=[0, 1], timestamps_ms=[5], values=[1, 2])),
            IA,
            {"field": "batch.timestamps_ms"},
        ),
        Case(
            "key_index out of range",
            log(B(keys=["m", "n"], key_index=[0, 2], steps=[0, 1], values=[1, 2])),
            IA,
            {"field": "batch.key_index"},
        ),
        Case(
            "key_index without keys",
            log(B(key_index=[0], steps=[0], values=[1])),
            IA,
            {"field": "batch.key_index"},
        ),
        Case(
            "too many points",
            log(
                B(
                    keys=["m"],
                    key_index=[0] * too_many,
                    steps=range(too_many),
                    values=[0.0] * too_many,
                )
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            {"limit": "points_per_batch"},
            mention="100000",
        ),
        Case(
            "too many keys",
            log(B(keys=[f"k{i}" for i in range(1001)], key_index=[0], steps=[0], values=[1])),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            {"limit": "keys_per_batch"},
            mention="1000",
        ),
        Case(
            "key with newline",
            log(columns({"loss\n": ([2], [1.0])})),
            IA,
            {"field": "batch.keys[0]"},
        ),
        Case(
            "key with a bad character second",
            log(columns({"ok": ([2], [1.0]), "a;b": ([2], [1.0])})),
            IA,
            {"field": "batch.keys[1]"},
        ),
        Case(
            "key climbing up",
            log(columns({"a/../b": ([2], [1.0])})),
            IA,
            {"field": "batch.keys[0]"},
        ),
        Case("empty key", log(columns({"": ([2], [1.0])})), IA, {"field": "batch.keys[0]"}),
        Case(
            "duplicate keys",
            log(B(keys=["m", "m"], key_index=[0], steps=[2], values=[1])),
            IA,
            {"field": "batch.keys"},
        ),
        Case(
            "negative timestamp",
            log(columns({"m": ([2], [1.0])}, timestamps_ms=[-1])),
            IA,
            {"field": "batch.timestamps_ms"},
        ),
        Case(
            "timestamp after year 9999",
            log(columns({"m": ([2], [1.0])}, timestamps_ms=[2**62])),
            IA,
            {"field": "batch.timestamps_ms"},
        ),
        Case(
            "unknown run",
            log(columns({"m": ([0], [1.0])}), f"runs/{UNKNOWN_ID}"),
            grpc.StatusCode.NOT_FOUND,
            {"resource": f"runs/{UNKNOWN_ID}"},
        ),
        Case("malformed run", log(columns({"m": ([0], [1.0])}), "runs/"), IA, {"field": "run"}),
        Case(
            "deleted run",
            log(columns({"m": ([0], [1.0])}), gone.name),
            grpc.StatusCode.FAILED_PRECONDITION,
            {"field": "run"},
            mention=gone.name,
        ),
        Case("read with invalid key", history(keys=["ok", "a\nb"]), IA, {"field": "keys[1]"}),
        Case(
            "read with start after end",
            history(start_step=5, end_step=4),
            IA,
            {"field": "start_step"},
        ),
        Case(
            "read unknown run",
            history(f"runs/{UNKNOWN_ID}"),
            grpc.StatusCode.NOT_FOUND,
            {"resource": f"runs/{UNKNOWN_ID}"},
        ),
        Case("read malformed run", history("nope"), IA, {"field": "run"}),
    ]
    check_rejections(
        cases,
        lambda: (
            read(stub, run.name),
            read(stub, gone.name),
            stub.GetRun(tracking_pb2.GetRunRequest(name=run.name)).metrics,
        ),
    )


def test_bad_search_requests_are_rejected(stub):
    exp = new_experiment(stub)
    for i in range(3):
        new_run(stub, exp.name, display_name=f"r{i}", params={"lr": "0.01"})

    def search(**kw):
        return lambda: stub.SearchRuns(tracking_pb2.SearchRunsRequest(**kw))

    first = search(filter='params.lr = "0.01"', page_size=1)()
    assert first.next_page_token
    forged = first.next_page_token[:-6] + "AAAAAA"
    cases = [
        Case("dangling operator", search(filter="params.lr ="), IA, {"field": "filter"}),
        Case(
            "unquoted param value",
            search(filter="params.lr = 0.01"),
            IA,
            {"field": "filter"},
            mention='"0.01"',
        ),
        Case("unknown entity", search(filter="foo.bar = 1"), IA, {"field": "filter"}),
        Case("unbalanced parenthesis", search(filter='(params.lr = "1"'), IA, {"field": "filter"}),
        Case("NaN in a filter", search(filter="metrics.loss < nan"), IA, {"field": "filter"}),
        Case("bad order_by", search(order_by=["metrics.loss SIDEWAYS"]), IA, {"field": "order_by"}),
        Case("page_size 5000", search(page_size=5000), IA, {"field": "page_size"}),
        Case(
            "forged page token",
            search(filter='params.lr = "0.01"', page_size=1, page_token=forged),
            IA,
            {"field": "page_token"},
        ),
        Case("garbage page token", search(page_token="%%%"), IA, {"field": "page_token"}),
        Case(
            "token of another query",
            search(filter='params.lr = "0.02"', page_size=1, page_token=first.next_page_token),
            IA,
            {"field": "page_token"},
        ),
        Case(
            "token of another view",
            search(
                filter='params.lr = "0.01"', page_size=1, page_token=first.next_page_token, view=3
            ),
            IA,
            {"field": "page_token"},
        ),
        Case("unknown view", search(view=99), IA, {"field": "view"}),
        Case(
            "malformed experiment",
            search(experiments=[exp.name, "experiments/x"]),
            IA,
            {"field": "experiments[1]"},
        ),
    ]
    check_rejections(cases, lambda: search(view=3)())


# ------------------------------------------------------- behaviour over gRPC


def test_experiments_over_grpc(stub):
    S = tracking_pb2
    created = [new_experiment(stub, f"e{i:02d}") for i in range(12)]
    got = stub.GetExperiment(S.GetExperimentRequest(name=created[0].name))
    assert got == created[0]
    assert got.name == f"experiments/{got.experiment_id}"
    assert got.lifecycle_state == common_pb2.LIFECYCLE_STATE_ACTIVE
    assert not got.HasField("delete_time")
    assert stub.GetExperimentByName(S.GetExperimentByNameRequest(display_name="e03")) == created[3]
    # A bare id works too.
    assert stub.GetExperiment(S.GetExperimentRequest(name=got.experiment_id)) == got

    seen, token, pages = [], "", 0
    while True:
        page = stub.ListExperiments(S.ListExperimentsRequest(page_size=5, page_token=token))
        seen += [e.name for e in page.experiments]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert (seen, pages) == ([e.name for e in created], 3)

    exp = created[0]
    updated = stub.UpdateExperiment(
        S.UpdateExperimentRequest(
            experiment=S.Experiment(name=exp.name, description="new", display_name="ignored"),
            update_mask=mask("description"),
            etag=exp.etag,
        )
    )
    assert (updated.description, updated.display_name) == ("new", "e00")
    assert updated.etag != exp.etag

    deleted = stub.DeleteExperiment(S.DeleteExperimentRequest(name=exp.name, etag=updated.etag))
    assert deleted.lifecycle_state == common_pb2.LIFECYCLE_STATE_DELETED
    assert deleted.HasField("delete_time")

    def names(view):
        resp = stub.ListExperiments(S.ListExperimentsRequest(view=view))
        return [e.display_name for e in resp.experiments]

    assert "e00" not in names(common_pb2.VIEW_TYPE_UNSPECIFIED)
    assert names(common_pb2.VIEW_TYPE_DELETED_ONLY) == ["e00"]
    assert len(names(common_pb2.VIEW_TYPE_ALL)) == 12
    with pytest.raises(grpc.RpcError) as info:
        new_run(stub, exp.name)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    restored = stub.UndeleteExperiment(S.UndeleteExperimentRequest(name=exp.name))
    assert restored.lifecycle_state == common_pb2.LIFECYCLE_STATE_ACTIVE
    assert not restored.HasField("delete_time")
    assert names(common_pb2.VIEW_TYPE_DELETED_ONLY) == []


def test_runs_params_and_tags_over_grpc(stub):
    S = tracking_pb2
    exp = new_experiment(stub)
    source = S.RunSource(
        git_commit="c" * 40,
        git_branch="main",
        git_dirty=True,
        entry_point="train.py",
        argv=["train.py", "--lr=0.01"],
    )
    env = S.RunEnvironment(
        python_version="3.11",
        hostname="h",
        cpu_count=8,
        packages=["numpy==2.0"],
        seed=7,
        gpus=[S.GpuInfo(name="H100", memory_total_bytes=2**36, uuid="GPU-1")],
    )
    request = S.CreateRunRequest(
        experiment=exp.name,
        display_name="r",
        user="ada",
        params={"lr": "0.01"},
        tags={"team": "search"},
        source=source,
        environment=env,
        request_id="req-1",
        start_time=ts(1_700_000_000),
    )
    run = stub.CreateRun(request)
    assert stub.CreateRun(request) == run  # a retry with the same request_id
    assert stub.GetRun(S.GetRunRequest(name=run.name)) == run
    assert run.name == f"runs/{run.run_id}" and run.experiment == exp.name
    assert (run.state, run.user) == (S.RUN_STATE_RUNNING, "ada")
    assert run.start_time.seconds == 1_700_000_000 and not run.HasField("end_time")
    assert (run.source, run.environment) == (source, env)
    all_runs = stub.SearchRuns(S.SearchRunsRequest(experiments=[exp.name])).runs
    assert [r.name for r in all_runs] == [run.name]

    child = new_run(stub, exp.name, parent_run=run.name)
    assert child.parent_run == run.name

    stub.LogParams(S.LogParamsRequest(run=run.name, params={"lr": "0.01", "layers": "12"}))
    stub.SetTags(S.SetTagsRequest(run=run.name, tags={"team": "ads", "stage": "dev"}))
    stub.DeleteTag(S.DeleteTagRequest(run=run.name, key="stage"))
    got = stub.GetRun(S.GetRunRequest(name=run.name))
    assert dict(got.params) == {"lr": "0.01", "layers": "12"}
    assert dict(got.tags) == {"team": "ads"}

    finished = stub.UpdateRun(
        S.UpdateRunRequest(
            run=S.Run(name=run.name, state=S.RUN_STATE_FINISHED, display_name="renamed"),
            update_mask=mask("state", "display_name"),
            etag=got.etag,
        )
    )
    assert (finished.state, finished.display_name) == (S.RUN_STATE_FINISHED, "renamed")
    assert finished.HasField("end_time")
    assert finished.end_time.ToMilliseconds() >= finished.start_time.ToMilliseconds()

    deleted = stub.DeleteRun(S.DeleteRunRequest(name=run.name))
    assert deleted.lifecycle_state == common_pb2.LIFECYCLE_STATE_DELETED
    with pytest.raises(grpc.RpcError) as info:
        stub.SetTags(S.SetTagsRequest(run=run.name, tags={"x": "1"}))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    active = stub.SearchRuns(S.SearchRunsRequest(experiments=[exp.name])).runs
    assert [r.name for r in active] == [child.name]
    gone = stub.SearchRuns(S.SearchRunsRequest(view=common_pb2.VIEW_TYPE_DELETED_ONLY)).runs
    assert [r.name for r in gone] == [run.name]
    stub.UndeleteRun(S.UndeleteRunRequest(name=run.name))
    stub.SetTags(S.SetTagsRequest(run=run.name, tags={"x": "1"}))
    assert stub.GetRun(S.GetRunRequest(name=run.name)).tags["x"] == "1"


def test_metrics_over_grpc(stub):
    S = tracking_pb2
    exp = new_experiment(stub)
    run = new_run(stub, exp.name)
    n = 70_000  # more than one ReadMetricHistory response holds
    big = np.arange(n, dtype=np.float64) / 7
    resp = stub.LogMetrics(
        S.LogMetricsRequest(
            run=run.name,
            batch=columns(
                {
                    "big": (list(range(n)), big.tolist()),
                    "odd": ([3, 1, 2, 1], [math.nan, math.inf, -math.inf, 0.5]),
                },
            ),
        )
    )
    assert resp.points_written == n + 4
    stub.LogMetrics(
        S.LogMetricsRequest(
            run=run.name, batch=columns({"odd": ([0], [-1.0])}, timestamps_ms=[1_000])
        )
    )

    responses = list(stub.ReadMetricHistory(S.ReadMetricHistoryRequest(run=run.name, keys=["big"])))
    assert len(responses) == 2
    got = read(stub, run.name)
    assert sorted(got) == ["big", "odd"]
    steps, _, values = got["big"]
    assert steps == list(range(n))
    assert np.array_equal(np.array(values), big)
    steps, stamps, values = got["odd"]
    assert steps == [0, 1, 1, 2, 3]
    assert stamps[0] == 1_000
    assert values[:4] == [-1.0, math.inf, 0.5, -math.inf] and math.isnan(values[4])

    window = read(stub, run.name, ["big", "nope"], start_step=10, end_step=12)
    assert window["big"][0] == [10, 11, 12]
    assert window["nope"] == ([], [], [])

    summaries = {m.key: m for m in stub.GetRun(S.GetRunRequest(name=run.name)).metrics}
    odd = summaries["odd"]
    assert (odd.count, odd.last_step, odd.min_value, odd.max_value) == (5, 3, -math.inf, math.inf)
    assert math.isnan(odd.last_value)
    assert (summaries["big"].count, summaries["big"].last_value) == (n, big[-1])


def test_search_over_grpc(stub):
    S = tracking_pb2
    exp = new_experiment(stub)
    elsewhere = new_experiment(stub, "elsewhere")
    expected = []
    for i, (lr, team, loss) in enumerate(
        [
            ("0.01", "search", 0.2),
            ("0.01", "search", 0.4),
            ("0.1", "search", 0.1),
            ("0.01", "ads", 0.1),
            ("0.01", "search", 0.25),
            ("0.01", "search", None),
            ("0.01", "search", 0.05),
        ]
    ):
        run = new_run(stub, exp.name, display_name=f"r{i}", params={"lr": lr}, tags={"team": team})
        if loss is not None:
            stub.LogMetrics(
                S.LogMetricsRequest(run=run.name, batch=columns({"val_loss": ([0], [loss])}))
            )
        if lr == "0.01" and team == "search" and loss is not None and loss < 0.3:
            expected.append((loss, f"r{i}"))
    new_run(stub, elsewhere.name, display_name="x", params={"lr": "0.01"}, tags={"team": "search"})
    example = 'params.lr = "0.01" and metrics.val_loss < 0.3 and tags.team = "search"'
    resp = stub.SearchRuns(
        S.SearchRunsRequest(
            experiments=[exp.name], filter=example, order_by=["metrics.val_loss ASC"]
        )
    )
    assert [r.display_name for r in resp.runs] == [name for _, name in sorted(expected)]
    assert resp.next_page_token == ""

    def pages(size):
        names, token = [], ""
        while True:
            page = stub.SearchRuns(
                S.SearchRunsRequest(
                    experiments=[exp.name],
                    order_by=["metrics.val_loss DESC"],
                    page_size=size,
                    page_token=token,
                )
            )
            names += [r.display_name for r in page.runs]
            token = page.next_page_token
            if not token:
                return names

    everything = pages(100)
    assert len(everything) == 7 and everything[-1] == "r5"  # no val_loss: last
    assert pages(2) == pages(3) == everything


# --------------------------------------------------------------------- SDK


def test_sdk_logs_50k_points_exactly(server, client):
    keys = ["loss", "acc", "lr", "grad/norm", "val loss"]
    n = 10_000
    values = np.random.default_rng(3).standard_normal((len(keys), n))
    rows = values.T.tolist()
    started = int(time.time() * 1000)
    run = ketch.init(experiment="sdk", name="big", uri=server.uri, capture_environment=False)
    assert ketch.active_run() is run
    for step, row in enumerate(rows):
        run.log(dict(zip(keys, row, strict=True)), step=step)
    run.finish()
    assert ketch.active_run() is None
    assert run.failure is None and run.dropped_points == 0

    record = client.get_run(run.id)
    assert record.state == "FINISHED" and record.end_time is not None
    for k, key in enumerate(keys):
        h = client.get_metric_history(run.id, key)
        assert isinstance(h.values, np.ndarray) and h.values.dtype == np.float64
        np.testing.assert_array_equal(h.steps, np.arange(n))
        assert h.values.tobytes() == values[k].tobytes(), key
        assert np.all(np.diff(h.timestamps) >= 0) and h.timestamps[0] >= started - 1000
        m = record.metrics[key]
        assert (m.count, m.step, m.last) == (n, n - 1, values[k, -1])
        assert (m.min, m.max) == (values[k].min(), values[k].max())
    every = client.get_metric_histories(run.id)
    assert sorted(every) == sorted(keys)
    assert len(client.get_metric_history(run.id, "never")) == 0


def test_sdk_non_finite_values_and_steps(server, client):
    with ketch.init(experiment="sdk", uri=server.uri, capture_environment=False) as run:
        run.log({"x": math.nan}, step=0)
        run.log({"x": math.inf}, step=1)
        run.log({"x": -math.inf}, step=2.0)  # an integral float is a step
        run.log({"x": np.float32(1.5)}, step=np.int64(3))
        run.log({"x": 2})  # default step: one past the previous
        # Logging never raises into the training loop: bad input is skipped and counted.
        for bad in (math.nan, math.inf, 1.5, "x"):
            run.log({"x": 99.0, "other": 1.0}, step=bad)
        run.log({"x": "not a number"}, step=9)
        assert run.rejected == {"step": 4, "value": 1}
    h = client.get_metric_history(run.id, "x")
    assert h.steps.tolist() == [0, 1, 2, 3, 4]
    assert math.isnan(h.values[0])
    assert h.values[1:].tolist() == [math.inf, -math.inf, 1.5, 2.0]
    m = client.get_run(run.id).metrics
    assert sorted(m) == ["x"]  # nothing from the rejected calls arrived
    assert (m["x"].min, m["x"].max, m["x"].last, m["x"].count) == (-math.inf, math.inf, 2.0, 5)


def test_sdk_strict_mode_raises_on_bad_steps_and_values(server, client):
    with ketch.init(
        experiment="sdk",
        uri=server.uri,
        capture_environment=False,
        system_metrics=False,
        strict=True,
    ) as run:
        for bad in (math.nan, math.inf, 1.5, "x"):
            with pytest.raises(ketch.errors.InvalidArgument) as info:
                run.log({"x": 99.0, "other": 1.0}, step=bad)
            assert info.value.field == "step"
            assert isinstance(info.value, ValueError)
            assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(ketch.errors.InvalidArgument):
            run.log({"x": "not a number"}, step=9)
        with pytest.raises(ketch.errors.InvalidArgument):
            run.log({"bad\nkey": 1.0}, step=9)
    assert client.get_run(run.id).metrics == {}


def test_sdk_raises_typed_errors(server, client):
    errors = ketch.errors
    with pytest.raises(errors.InvalidArgument) as info:
        client.create_experiment("")
    assert info.value.field == "display_name" and info.value.reason == "INVALID_ARGUMENT"
    assert isinstance(info.value, ValueError)
    client.create_experiment("dup")
    with pytest.raises(errors.AlreadyExists):
        client.create_experiment("dup")
    with pytest.raises(errors.NotFound) as info:
        client.get_run(UNKNOWN_ID)
    assert isinstance(info.value, LookupError)
    assert info.value.metadata == {"resource": f"runs/{UNKNOWN_ID}"}
    assert client.get_experiment_by_name("missing") is None
    with pytest.raises(errors.InvalidArgument) as info:
        client.search_runs("params.lr = 0.01")
    assert info.value.field == "filter"

    run = ketch.init(
        experiment="dup",
        config={"lr": 0.01, "opt": {"name": "adam"}},
        uri=server.uri,
        capture_environment=False,
    )
    run.log_params({"lr": 0.01})  # the same value again: fine
    with pytest.raises(errors.ParamConflict) as info:
        run.log_params({"lr": 0.02})
    err = info.value
    assert isinstance(err, errors.FailedPrecondition)
    assert (err.code, err.reason, err.field) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PARAM_CONFLICT",
        "params[lr]",
    )
    with pytest.raises(errors.ParamConflict):
        client.log_params(run.id, {"opt.name": "sgd"})
    run.finish()
    assert client.get_run(run.id).params == {"lr": "0.01", "opt.name": "adam"}

    client.delete_run(run.id)
    with pytest.raises(errors.FailedPrecondition) as info:
        client.set_tags(run.id, {"a": 1})
    assert not isinstance(info.value, errors.ParamConflict)
    with pytest.raises(errors.InvalidArgument):
        client.set_terminated(run.id, "SIDEWAYS")

    nowhere = ketch.Client(f"grpc://127.0.0.1:{free_port()}", timeout=5)
    with nowhere, pytest.raises(errors.Unavailable):
        nowhere.create_experiment("x")


def test_sdk_context_manager_marks_failed_on_exception(server, client):
    crashed = ketch.init(experiment="cm", name="crash", uri=server.uri, capture_environment=False)
    with pytest.raises(RuntimeError, match="boom"), crashed:
        crashed.log({"loss": 1.0}, step=0)
        raise RuntimeError("boom")
    with ketch.init(
        experiment="cm", name="fine", uri=server.uri, capture_environment=False
    ) as fine:
        fine.log({"loss": 0.5}, step=0)
    assert ketch.active_run() is None
    got = client.get_run(crashed.id)
    assert got.state == "FAILED" and got.end_time is not None
    assert got.metrics["loss"].count == 1  # logged before the crash: kept
    assert client.get_run(fine.id).state == "FINISHED"


def test_sdk_search_runs_by_experiment_names(server, client):
    made = {}
    for exp, name, lr in [
        ("alpha", "a1", 0.01),
        ("alpha", "a2", 0.1),
        ("beta", "b1", 0.01),
        ("gamma", "g1", 0.01),
    ]:
        with ketch.init(
            experiment=exp, name=name, config={"lr": lr}, uri=server.uri, capture_environment=False
        ) as run:
            run.log({"val_loss": 0.1 if lr == 0.01 else 0.5}, step=0)
        made[name] = run.id

    def names(**kw):
        return sorted(r.name for r in client.search_runs(**kw))

    assert names(experiment_names=["alpha"]) == ["a1", "a2"]
    assert names(experiment_names=["alpha", "beta"]) == ["a1", "a2", "b1"]
    assert names(filter='params.lr = "0.01"', experiment_names=["alpha", "gamma"]) == ["a1", "g1"]
    assert names(filter="metrics.val_loss < 0.3") == ["a1", "b1", "g1"]
    ordered = client.search_runs(order_by=["metrics.val_loss DESC", "start_time"])
    assert ordered[0].name == "a2"
    assert len(list(client.iter_runs(page_size=1))) == 4
    assert names(experiment_ids=[client.get_experiment_by_name("beta").id]) == ["b1"]
    assert len(client.search_runs(max_results=2)) == 2
    with pytest.raises(ketch.errors.NotFound):
        client.search_runs(experiment_names=["nope"])
    client.delete_run(made["a1"])
    assert names(experiment_names=["alpha"]) == ["a2"]
    assert names(experiment_names=["alpha"], view="deleted") == ["a1"]
    assert names(experiment_names=["alpha"], view="all") == ["a1", "a2"]


def test_sdk_disabled_mode_does_nothing(server, client):
    before = ketch.active_run()
    run = ketch.init(experiment="off", config={"lr": 1}, uri=server.uri, mode="disabled")
    assert ketch.active_run() is before
    with run:
        assert run.id == ""
        run.log({"loss": 1.0}, step=0)
        run.log({"loss": 1.0}, step=math.nan)  # not even validated
        run.log_params({"lr": 2})
        run.set_tags({"t": 1})
        assert run.flush() is True
    assert ketch.active_run() is before
    assert list(client.list_experiments(view="all")) == []
    assert client.search_runs(view="all") == []


# ---------------------------------------------------------- errors, health


def test_unexpected_server_errors_become_generic_internal(server, stub, client):
    """A corrupted chunk row makes decoding fail inside the server: an honest bug path."""
    from ketch_server.store.schema import metric_chunks
    from sqlalchemy import update

    exp = new_experiment(stub)
    run = new_run(stub, exp.name)
    stub.LogMetrics(
        tracking_pb2.LogMetricsRequest(
            run=run.name, batch=columns({"m": ([0, 1, 2], [1.0, 2.0, 3.0])})
        )
    )

    async def corrupt() -> None:
        async with server.app.store.engine.begin() as conn:
            await conn.execute(
                update(metric_chunks)
                .where(metric_chunks.c.run_id == run.run_id)
                .values(values=b"\x00" * 8)
            )

    server.run(corrupt())
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    api_log = logging.getLogger("ketch.api")
    api_log.addHandler(handler)
    try:
        with pytest.raises(grpc.RpcError) as info:
            read(stub, run.name)
    finally:
        api_log.removeHandler(handler)
    err = info.value
    assert err.code() == grpc.StatusCode.INTERNAL
    message = err.details()
    assert "incident" in message
    for leak in ("Traceback", "ValueError", "corrupt", "File ", ".py", "metric_chunks"):
        assert leak not in message
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    status = status_pb2.Status.FromString(raw)
    assert (status.code, status.message) == (code_pb2.INTERNAL, message)
    assert list(status.details) == []  # no ErrorInfo, no debug info
    incident = message.split("incident ")[1].split(")")[0]
    logged = [r for r in records if incident in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the operator gets the traceback

    with pytest.raises(ketch.errors.Internal) as sdk_info:
        client.get_metric_history(run.run_id, "m")
    assert "incident" in sdk_info.value.message
    # The server keeps serving.
    assert stub.GetRun(tracking_pb2.GetRunRequest(name=run.name)).name == run.name


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, described = reflection.ServerReflectionInfo(iter(requests), timeout=5)
    services = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= services
    files = described.file_descriptor_response.file_descriptor_proto
    assert files and any(b"TrackingService" in f for f in files)
