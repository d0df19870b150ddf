"""The LineageStore contract on every backend (SQLite and PostgreSQL): datasets,
lineage events, the recursive graph query and run forks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ketch_server.domain.errors import FailedPrecondition, NotFound, OutOfRange, ResourceExhausted
from ketch_server.domain.lineage import (
    Dataset,
    Direction,
    EdgeKind,
    IOEntity,
    NodeKind,
    NodeRef,
)
from ketch_server.domain.models import Lifecycle, MetricColumns, RunEnvironment, RunSource
from ketch_server.store.lineage import FORK_TAG, LineageStore


@pytest.fixture
async def lstore(db_url):
    from ketch_server.store.engine import create_engine, upgrade_schema

    engine = create_engine(db_url)
    await upgrade_schema(engine)
    yield LineageStore(engine)
    await engine.dispose()


def ds(name: str, digest: str = "sha256:aa", **fields) -> Dataset:
    base = {"source": "", "schema": "", "num_rows": None}
    return Dataset("", name, digest, **{**base, **fields}, create_time=0)


async def new_run(store: LineageStore, exp_id: str, name: str = "", parent: str | None = None):
    run = await store.create_run(
        exp_id,
        display_name=name,
        parent_run_id=parent,
        user="u",
        params_={},
        tags_={},
        source=RunSource(),
        environment=RunEnvironment(),
        request_id=None,
        start_time=None,
    )
    return run.id


def run_node(run_id: str) -> NodeRef:
    return NodeRef(NodeKind.RUN, run_id)


async def names(store, root, direction, depth=5, max_nodes=1000):
    nodes, edges = await store.get_lineage(root, direction, depth, max_nodes)
    return {n.ref: n.depth for n in nodes}, edges


async def test_datasets_are_created_once_per_name_and_digest(lstore):
    a = await lstore.create_dataset(ds("train", "sha256:1"))
    again = await lstore.create_dataset(
        ds("train", "sha256:1", source="s3://b/t", num_rows=10, schema='{"x": "int"}')
    )
    assert again.id == a.id
    assert (again.source, again.num_rows, again.schema) == ("s3://b/t", 10, '{"x": "int"}')
    kept = await lstore.create_dataset(ds("train", "sha256:1", source="s3://other", num_rows=99))
    assert (kept.source, kept.num_rows) == ("s3://b/t", 10)  # known fields never change
    other = await lstore.create_dataset(ds("train", "sha256:2"))
    assert other.id != a.id
    assert (await lstore.get_dataset_by_key("train", "sha256:2")).id == other.id
    assert (await lstore.get_dataset(a.id)).label == "train@sha256:1"
    with pytest.raises(NotFound):
        await lstore.get_dataset_by_key("train", "sha256:3")
    with pytest.raises(NotFound):
        await lstore.get_dataset("f" * 32)


async def test_inputs_outputs_and_the_graph_in_each_direction(lstore):
    exp = await lstore.create_experiment("lineage", "")
    prep = await new_run(lstore, exp.id, "prep")
    train = await new_run(lstore, exp.id, "train")
    raw, clean = ds("raw", "d1"), ds("clean", "d2", num_rows=5)
    await lstore.log_io(prep, [IOEntity("raw", dataset=raw)], EdgeKind.CONSUMED)
    (clean_node,) = await lstore.log_io(prep, [IOEntity("", dataset=clean)], EdgeKind.PRODUCED)
    await lstore.log_io(train, [IOEntity("training", dataset=clean)], EdgeKind.CONSUMED)
    model = NodeRef(NodeKind.ARTIFACT, f"{train}/model/weights.pt")
    await lstore.log_io(train, [IOEntity("", artifact=model)], EdgeKind.PRODUCED)
    # The same events again are no-ops.
    await lstore.log_io(train, [IOEntity("training", dataset=clean)], EdgeKind.CONSUMED)
    await lstore.log_io(train, [IOEntity("", artifact=model)], EdgeKind.PRODUCED)

    up, edges = await names(lstore, model, Direction.UP)
    raw_id = (await lstore.get_dataset_by_key("raw", "d1")).id
    assert up == {model.ref: 0, train: 1, clean_node.ref: 2, prep: 3, raw_id: 4}
    assert len(edges) == 4
    assert {e.kind for e in edges} == {EdgeKind.CONSUMED, EdgeKind.PRODUCED}
    consumed = [e for e in edges if e.downstream.ref == train]
    assert [(e.kind, e.upstream.ref, e.context) for e in consumed] == [
        (EdgeKind.CONSUMED, clean_node.ref, "training")
    ]

    down, _ = await names(lstore, NodeRef(NodeKind.DATASET, raw_id), Direction.DOWN)
    assert down == {raw_id: 0, prep: 1, clean_node.ref: 2, train: 3, model.ref: 4}

    limited, edges = await names(lstore, NodeRef(NodeKind.DATASET, raw_id), Direction.DOWN, 2)
    assert limited == {raw_id: 0, prep: 1, clean_node.ref: 2}
    assert len(edges) == 2

    both, _ = await names(lstore, run_node(train), Direction.BOTH, 1)
    assert both == {train: 0, clean_node.ref: 1, model.ref: 1}

    nodes, _ = await lstore.get_lineage(model, Direction.UP, 5, 1000)
    by_ref = {n.ref: n for n in nodes}
    assert nodes[0].ref == model.ref and nodes[0].display_name == "model/weights.pt"
    assert not nodes[0].exists  # referenced, not uploaded
    assert by_ref[train].display_name == "train" and by_ref[train].run_state == "RUNNING"
    assert by_ref[clean_node.ref].display_name == "clean@d2"
    assert by_ref[clean_node.ref].dataset.num_rows == 5

    with pytest.raises(ResourceExhausted):
        await lstore.get_lineage(model, Direction.UP, 5, 3)


async def test_parent_child_edges_come_from_the_runs(lstore):
    exp = await lstore.create_experiment("hpo", "")
    study = await new_run(lstore, exp.id, "study")
    trials = [await new_run(lstore, exp.id, f"t{i}", parent=study) for i in range(3)]
    down, edges = await names(lstore, run_node(study), Direction.DOWN)
    assert down == {study: 0, **{t: 1 for t in trials}}
    assert {(e.kind, e.upstream.ref, e.downstream.ref) for e in edges} == {
        (EdgeKind.CHILD_OF, study, t) for t in trials
    }
    up, _ = await names(lstore, run_node(trials[0]), Direction.UP)
    assert up == {trials[0]: 0, study: 1}
    both, _ = await names(lstore, run_node(trials[0]), Direction.BOTH)
    assert both == {trials[0]: 0, study: 1}  # siblings are not ancestors or descendants


async def test_cycles_terminate_within_the_depth(lstore):
    exp = await lstore.create_experiment("cycle", "")
    a = await new_run(lstore, exp.id, "a")
    b = await new_run(lstore, exp.id, "b")
    data = ds("loop", "d")
    # a reads and writes the same dataset, b too: a <-> data <-> b, cycles both ways.
    for run in (a, b):
        await lstore.log_io(run, [IOEntity("", dataset=data)], EdgeKind.CONSUMED)
        await lstore.log_io(run, [IOEntity("", dataset=data)], EdgeKind.PRODUCED)
    data_id = (await lstore.get_dataset_by_key("loop", "d")).id
    for direction in Direction:
        got, edges = await names(lstore, run_node(a), direction, 32)
        assert got == {a: 0, data_id: 1, b: 2}, direction
        assert len(edges) == 4
    got, _ = await names(lstore, run_node(a), Direction.UP, 1)
    assert got == {a: 0, data_id: 1}


async def test_graph_roots_must_exist(lstore):
    with pytest.raises(NotFound):
        await lstore.get_lineage(run_node("e" * 32), Direction.BOTH, 3, 10)
    with pytest.raises(NotFound):
        await lstore.get_lineage(NodeRef(NodeKind.DATASET, "e" * 32), Direction.BOTH, 3, 10)
    with pytest.raises(NotFound):
        await lstore.get_lineage(NodeRef(NodeKind.ARTIFACT, "e" * 32 + "/x"), Direction.UP, 3, 10)
    exp = await lstore.create_experiment("io", "")
    run = await new_run(lstore, exp.id)
    alone, edges = await names(lstore, run_node(run), Direction.BOTH)
    assert alone == {run: 0} and edges == []
    with pytest.raises(NotFound):
        await lstore.log_io("e" * 32, [IOEntity("", dataset=ds("x"))], EdgeKind.CONSUMED)
    await lstore.update_run(run, {"lifecycle": Lifecycle.DELETED})
    with pytest.raises(FailedPrecondition):
        await lstore.log_io(run, [IOEntity("", dataset=ds("x"))], EdgeKind.CONSUMED)


def batch(key: str, steps, values) -> MetricColumns:
    n = len(steps)
    return MetricColumns((key,), [0] * n, list(steps), [1000 + s for s in steps], list(values))


async def test_fork_copies_params_tags_and_history_up_to_the_step(lstore):
    exp = await lstore.create_experiment("fork", "")
    src = await lstore.create_run(
        exp.id,
        display_name="base",
        parent_run_id=None,
        user="alice",
        params_={"lr": "0.1", "layers": "4"},
        tags_={"team": "a", "ketch.internal": "x"},
        source=RunSource(git_commit="abc"),
        environment=RunEnvironment(python_version="3.11"),
        request_id=None,
        start_time=None,
    )
    # loss: chunks [0..9], [10..19], [20..29]; acc: one chunk [0..29]; late: [25..29].
    for lo in (0, 10, 20):
        steps = range(lo, lo + 10)
        await lstore.log_metrics(src.id, batch("loss", steps, [100.0 - s for s in steps]))
    await lstore.log_metrics(
        src.id, batch("acc", range(30), [math.nan if s == 14 else s / 100 for s in range(30)])
    )
    await lstore.log_metrics(src.id, batch("late", range(25, 30), [1.0] * 5))
    before = await lstore.read_metric_history(src.id, [], None, None)

    fork_id = await lstore.fork_run(src.id, 14, display_name="", request_id="fork-1", user="")
    fork = await lstore.get_run(fork_id)
    assert fork.experiment_id == exp.id and fork.display_name == "base-fork-14"
    assert fork.params == src.params and fork.user == "alice"
    assert fork.tags == {"team": "a", FORK_TAG: f"runs/{src.id}@14"}
    assert fork.source.git_commit == "abc" and fork.environment.python_version == "3.11"
    series = {s[0]: s for s in await lstore.read_metric_history(fork_id, [], None, None)}
    assert sorted(series) == ["acc", "loss"]  # `late` has no point at or below 14
    _, steps, stamps, values, _ = series["loss"]
    assert steps.tolist() == list(range(15))
    assert values.tolist() == [100.0 - s for s in range(15)]
    assert stamps.tolist() == [1000 + s for s in range(15)]
    _, steps, _, values, _ = series["acc"]
    assert steps.tolist() == list(range(15)) and math.isnan(values[14])
    summaries = {m.key: m for m in fork.metrics}
    loss = summaries["loss"]
    assert (loss.count, loss.last_step, loss.last_value) == (15, 14, 86.0)
    assert (loss.min_value, loss.max_value, loss.last_timestamp) == (86.0, 100.0, 1014)
    acc = summaries["acc"]
    assert (acc.count, acc.last_step, acc.min_value, acc.max_value) == (15, 14, 0.0, 0.13)
    assert math.isnan(acc.last_value)

    # The source is untouched.
    after = await lstore.read_metric_history(src.id, [], None, None)
    for old, new in zip(before, after, strict=True):
        assert old[0] == new[0] and all(
            np.array_equal(a, b, equal_nan=True) for a, b in zip(old[1:], new[1:], strict=True)
        )
    assert (await lstore.get_run(src.id)).tags == src.tags

    # Lineage: source -> fork at 14.
    _, edges = await names(lstore, run_node(fork_id), Direction.UP)
    assert [(e.kind, e.upstream.ref, e.step) for e in edges] == [(EdgeKind.FORKED_FROM, src.id, 14)]
    # Idempotent by request id; a fork at a chunk boundary copies whole chunks.
    assert await lstore.fork_run(src.id, 14, display_name="", request_id="fork-1", user="") == (
        fork_id
    )
    edge = await lstore.fork_run(src.id, 19, display_name="b", request_id=None, user="bob")
    ((_, steps, _, _, _),) = await lstore.read_metric_history(edge, ["loss"], None, None)
    assert steps.tolist() == list(range(20))
    # A fork of a fork drops the inherited system tag for its own.
    twice = await lstore.get_run(
        await lstore.fork_run(fork_id, 3, display_name="", request_id=None, user="")
    )
    assert twice.tags == {"team": "a", FORK_TAG: f"runs/{fork_id}@3"}
    assert {m.key: m.count for m in twice.metrics} == {"acc": 4, "loss": 4}

    with pytest.raises(OutOfRange):
        await lstore.fork_run(src.id, 30, display_name="", request_id=None, user="")
    with pytest.raises(NotFound):
        await lstore.fork_run("e" * 32, 1, display_name="", request_id=None, user="")
    await lstore.update_run(src.id, {"lifecycle": Lifecycle.DELETED})
    with pytest.raises(FailedPrecondition):
        await lstore.fork_run(src.id, 1, display_name="", request_id=None, user="")


async def test_fork_keeps_the_write_order_of_equal_steps(lstore):
    """Two ranks write the same steps; the straddling chunk must stay before the
    later-written chunk it shares steps with, so ties resolve as in the source."""
    exp = await lstore.create_experiment("ranks", "")
    src = await new_run(lstore, exp.id)
    await lstore.log_metrics(src, batch("loss", range(0, 10), [1.0] * 10))  # straddles 5
    await lstore.log_metrics(src, batch("loss", range(0, 5), [2.0] * 5))  # whole, later
    fork = await lstore.fork_run(src, 5, display_name="", request_id=None, user="")
    ((_, steps, _, values, _),) = await lstore.read_metric_history(fork, ["loss"], None, None)
    assert steps.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert values.tolist() == [1.0, 2.0] * 5 + [1.0]
    (summary,) = (await lstore.get_run(fork)).metrics
    assert (summary.last_step, summary.last_value, summary.count) == (5, 1.0, 11)
