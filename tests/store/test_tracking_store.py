"""The TrackingStore contract, run on every backend (SQLite and PostgreSQL).

Each test takes the ``store`` fixture (tests/conftest.py), so it runs once per
backend against a freshly migrated database. A fresh PostgreSQL database costs
a few hundred milliseconds, so related checks share one test; tables of cases
run in a loop that reports every mismatch at once. Inputs are valid unless a
test says otherwise: validation is the service layer's job, tested through the
API in tests/api/test_tracking_api.py.
"""

from __future__ import annotations

import asyncio
import base64
import math

import numpy as np
import pytest
from ketch_server.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ParamConflict,
)
from ketch_server.domain.filters import parse_filter, parse_order_by
from ketch_server.domain.ids import new_id
from ketch_server.domain.models import (
    GpuInfo,
    Lifecycle,
    MetricColumns,
    RunEnvironment,
    RunSource,
    RunState,
    View,
)
from ketch_server.domain.pagination import encode_token
from ketch_server.store.tracking import now_ms

T0 = 1_700_000_000_000  # a fixed start time (ms) for runs that need one

# ------------------------------------------------------------------ helpers


async def make_run(
    store,
    experiment_id: str,
    name: str = "",
    *,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, list[tuple[int, float]]] | None = None,
    start_time: int | None = None,
    parent: str | None = None,
    request_id: str | None = None,
):
    """Create a run, then log ``metrics`` (key -> [(step, value), ...]) as one batch."""
    run = await store.create_run(
        experiment_id,
        display_name=name,
        parent_run_id=parent,
        user="tester",
        params_=params or {},
        tags_=tags or {},
        source=RunSource(),
        environment=RunEnvironment(),
        request_id=request_id,
        start_time=start_time,
    )
    if metrics:
        await store.log_metrics(
            run.id, batch({k: ([s for s, _ in p], [v for _, v in p]) for k, p in metrics.items()})
        )
    return run


def batch(series: dict[str, tuple[list[int], list[float]]], *, timestamps=None) -> MetricColumns:
    """A columnar batch: key -> (steps, values); the keys' points follow each other."""
    keys = tuple(series)
    key_index, steps, values = [], [], []
    for i, (s, v) in enumerate(series.values()):
        key_index += [i] * len(s)
        steps += list(s)
        values += list(v)
    return MetricColumns(keys, key_index, steps, timestamps or [], values)


async def history(store, run_id: str, key: str, start=None, end=None):
    ((name, steps, timestamps, values, ranks),) = await store.read_metric_history(
        run_id, [key], start, end
    )
    assert name == key
    assert not ranks.any()  # written without a rank
    return steps, timestamps, values


async def summary(store, run_id: str, key: str):
    run = await store.get_run(run_id)
    (found,) = [m for m in run.metrics if m.key == key]
    return found


async def search(store, text: str = "", order=(), *, exps=(), view=View.ACTIVE_ONLY):
    """Display names of the runs matching ``text``, in result order (one page)."""
    page = await store.search_runs(
        list(exps), parse_filter(text), parse_order_by(list(order)), 1000, "", view
    )
    assert page.next_page_token == ""
    return [r.display_name for r in page.items]


async def all_pages(store, text: str, order, size: int) -> tuple[list[str], int]:
    """Run ids of every page of a search, and the number of pages."""
    where, keys = parse_filter(text), parse_order_by(list(order))
    out, token, pages = [], "", 0
    while True:
        page = await store.search_runs([], where, keys, size, token, View.ACTIVE_ONLY)
        out += [r.id for r in page.items]
        pages += 1
        token = page.next_page_token
        if not token:
            assert len(page.items) <= size
            return out, pages
        assert len(page.items) == size


async def check_cases(store, cases) -> None:
    """Every (filter, expected sorted names) case; all mismatches reported together."""
    wrong = []
    for text, expected in cases:
        got = sorted(await search(store, text))
        if got != sorted(expected):
            wrong.append(f"{text!r}: got {got}, expected {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


# -------------------------------------------------------------- experiments


async def test_create_get_and_duplicate_experiments(store):
    created = await store.create_experiment("churn", "predict churn")
    assert (created.display_name, created.description) == ("churn", "predict churn")
    assert created.lifecycle is Lifecycle.ACTIVE
    assert created.delete_time is None
    assert created.create_time == created.update_time > 0
    assert await store.get_experiment(created.id) == created
    assert await store.get_experiment_by_name("churn") == created
    with pytest.raises(NotFound):
        await store.get_experiment(new_id())
    with pytest.raises(NotFound):
        await store.get_experiment_by_name("nope")

    with pytest.raises(AlreadyExists) as info:
        await store.create_experiment("churn", "other")
    assert info.value.metadata["field"] == "display_name"
    other = await store.create_experiment("other", "")
    with pytest.raises(AlreadyExists):
        await store.update_experiment(other.id, {"display_name": "churn"}, other.etag)
    assert (await store.list_experiments(100, "", View.ALL)).items == [created, other]


async def test_list_experiments_pages_in_creation_order(store):
    created = [(await store.create_experiment(f"exp-{i:02d}", "")).id for i in range(25)]
    seen, token, sizes = [], "", []
    while True:
        page = await store.list_experiments(10, token, View.ACTIVE_ONLY)
        sizes.append(len(page.items))
        seen += [e.id for e in page.items]
        token = page.next_page_token
        if not token:
            break
    assert sizes == [10, 10, 5]
    assert seen == created
    # A token only continues the listing it came from.
    first = await store.list_experiments(10, "", View.ACTIVE_ONLY)
    with pytest.raises(InvalidArgument) as info:
        await store.list_experiments(10, first.next_page_token, View.ALL)
    assert info.value.field == "page_token"


async def test_update_experiment_is_guarded_by_etag(store):
    exp = await store.create_experiment("old", "d0")
    updated = await store.update_experiment(
        exp.id, {"display_name": "new", "description": "d1"}, exp.etag
    )
    assert (updated.display_name, updated.description) == ("new", "d1")
    assert updated.revision == exp.revision + 1
    assert updated.etag != exp.etag
    assert updated.create_time == exp.create_time
    with pytest.raises(Aborted):
        await store.update_experiment(exp.id, {"description": "stale"}, exp.etag)
    assert await store.get_experiment(exp.id) == updated
    again = await store.update_experiment(exp.id, {"description": "d2"})  # no etag: unguarded
    assert (again.description, again.revision) == ("d2", updated.revision + 1)
    with pytest.raises(NotFound):
        await store.update_experiment(new_id(), {"description": "x"})


async def test_concurrent_updates_with_one_etag_let_exactly_one_win(store):
    exp = await store.create_experiment("race", "")
    results = await asyncio.gather(
        *[store.update_experiment(exp.id, {"description": f"w{i}"}, exp.etag) for i in range(4)],
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Aborted) for r in results if r not in winners), results
    stored = await store.get_experiment(exp.id)
    assert stored == winners[0]
    assert stored.revision == exp.revision + 1
    # The same race on a run.
    run = await make_run(store, exp.id, "r")
    results = await asyncio.gather(
        *[store.update_run(run.id, {"display_name": f"w{i}"}, run.etag) for i in range(4)],
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Aborted) for r in results if r not in winners), results
    assert await store.get_run(run.id) == winners[0]


async def test_soft_delete_views_and_undelete_experiment(store):
    await store.create_experiment("keep", "")
    gone = await store.create_experiment("gone", "")
    deleted = await store.update_experiment(gone.id, {"lifecycle": Lifecycle.DELETED})
    assert deleted.lifecycle is Lifecycle.DELETED
    assert deleted.delete_time is not None

    async def names(view):
        return [e.display_name for e in (await store.list_experiments(100, "", view)).items]

    assert await names(View.ACTIVE_ONLY) == ["keep"]
    assert await names(View.DELETED_ONLY) == ["gone"]
    assert await names(View.ALL) == ["keep", "gone"]
    assert (await store.get_experiment(gone.id)).lifecycle is Lifecycle.DELETED
    assert (await store.get_experiment_by_name("gone")).id == gone.id
    with pytest.raises(AlreadyExists):  # the name stays taken
        await store.create_experiment("gone", "")

    restored = await store.update_experiment(gone.id, {"lifecycle": Lifecycle.ACTIVE})
    assert restored.lifecycle is Lifecycle.ACTIVE
    assert restored.delete_time is None
    assert await names(View.ACTIVE_ONLY) == ["keep", "gone"]
    assert await names(View.DELETED_ONLY) == []


# --------------------------------------------------------------------- runs


async def test_create_run_round_trips_everything(store):
    exp = await store.create_experiment("e", "")
    source = RunSource(
        git_commit="a" * 40,
        git_branch="main",
        git_dirty=True,
        git_remote="git@example.com:team/repo.git",
        entry_point="train.py",
        argv=("train.py", "--lr", "0.01", "ünïcode"),
    )
    env = RunEnvironment(
        python_version="3.11.9",
        platform="Linux-6.1-x86_64",
        hostname="box",
        cpu_count=16,
        packages=("numpy==2.0.0", "torch==2.3.0"),
        gpus=(GpuInfo("H100", 80 * 2**30, "GPU-1"), GpuInfo("H100", 80 * 2**30, "GPU-2")),
        gpu_driver_version="550.54",
        cuda_version="12.4",
        seed=1234,
    )
    run = await store.create_run(
        exp.id,
        display_name="bert-base",
        parent_run_id=None,
        user="ada",
        params_={"lr": "0.01", "layers": "12", "empty": ""},
        tags_={"team": "search", "note": "multi\nline"},
        source=source,
        environment=env,
        request_id=None,
        start_time=T0,
    )
    assert (run.experiment_id, run.display_name, run.user) == (exp.id, "bert-base", "ada")
    assert (run.state, run.lifecycle) == (RunState.RUNNING, Lifecycle.ACTIVE)
    assert run.start_time == T0
    assert run.end_time is None and run.delete_time is None and run.parent_run_id is None
    assert run.params == {"lr": "0.01", "layers": "12", "empty": ""}
    assert run.tags == {"team": "search", "note": "multi\nline"}
    assert run.metrics == ()
    assert run.source == source
    assert run.environment == env
    assert await store.get_run(run.id) == run

    before = now_ms()
    plain = await make_run(store, exp.id)
    assert plain.display_name == f"run-{plain.id[-8:]}"
    assert before <= plain.start_time <= now_ms()
    assert (plain.source, plain.environment) == (RunSource(), RunEnvironment())
    assert plain.environment.seed is None

    with pytest.raises(NotFound):
        await store.get_run(new_id())
    with pytest.raises(NotFound):
        await make_run(store, new_id())


async def test_request_id_makes_create_run_idempotent(store):
    exp = await store.create_experiment("e", "")
    first = await make_run(store, exp.id, "a", params={"lr": "1"}, request_id="req-1")
    again = await make_run(store, exp.id, "b", params={"lr": "2"}, request_id="req-1")
    assert again == first
    other = await make_run(store, exp.id, "c", request_id="req-2")
    assert other.id != first.id
    assert sorted(await search(store, view=View.ALL)) == ["a", "c"]
    # Retries racing each other still make one run.
    racers = await asyncio.gather(
        *[make_run(store, exp.id, f"try-{i}", request_id="req-3") for i in range(4)]
    )
    assert len({r.id for r in racers}) == 1
    assert len(await search(store, view=View.ALL)) == 3


async def test_parent_runs_and_deleted_experiments(store):
    exp = await store.create_experiment("e", "")
    parent = await make_run(store, exp.id, "study")
    child = await make_run(store, exp.id, "trial", parent=parent.id)
    assert child.parent_run_id == parent.id
    assert (await store.get_run(child.id)).parent_run_id == parent.id
    with pytest.raises(NotFound):
        await make_run(store, exp.id, "orphan", parent=new_id())
    assert await search(store, "parent_run_id IS NOT NULL") == ["trial"]

    await store.update_experiment(exp.id, {"lifecycle": Lifecycle.DELETED})
    with pytest.raises(FailedPrecondition):
        await make_run(store, exp.id, "late")
    assert sorted(await search(store, view=View.ALL)) == ["study", "trial"]


async def test_update_run_state_and_display_name(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id, "before")
    finished = await store.update_run(run.id, {"state": RunState.FINISHED}, run.etag)
    assert finished.state is RunState.FINISHED
    assert finished.end_time is not None and finished.end_time >= run.start_time
    assert finished.revision == run.revision + 1
    assert await store.get_run(run.id) == finished
    with pytest.raises(Aborted):
        await store.update_run(run.id, {"display_name": "stale"}, run.etag)
    assert await store.get_run(run.id) == finished
    # Back to RUNNING (a resumed run) clears the end time; an explicit one is kept.
    resumed = await store.update_run(run.id, {"state": RunState.RUNNING})
    assert (resumed.state, resumed.end_time) == (RunState.RUNNING, None)
    failed = await store.update_run(run.id, {"state": RunState.FAILED, "end_time": T0 + 5})
    assert (failed.state, failed.end_time) == (RunState.FAILED, T0 + 5)
    renamed = await store.update_run(run.id, {"display_name": "after"}, failed.etag)
    assert renamed.display_name == "after"
    assert (renamed.state, renamed.end_time) == (RunState.FAILED, T0 + 5)
    with pytest.raises(NotFound):
        await store.update_run(new_id(), {"display_name": "x"})


async def test_delete_and_undelete_run(store):
    exp = await store.create_experiment("e", "")
    await make_run(store, exp.id, "keep", start_time=T0)
    gone = await make_run(store, exp.id, "gone", start_time=T0 + 1, params={"p": "1"})
    deleted = await store.update_run(gone.id, {"lifecycle": Lifecycle.DELETED})
    assert deleted.lifecycle is Lifecycle.DELETED
    assert deleted.delete_time is not None
    assert deleted.params == {"p": "1"}
    assert await store.get_run(gone.id) == deleted
    assert await search(store) == ["keep"]
    assert await search(store, view=View.DELETED_ONLY) == ["gone"]
    assert await search(store, view=View.ALL) == ["gone", "keep"]

    restored = await store.update_run(gone.id, {"lifecycle": Lifecycle.ACTIVE})
    assert (restored.lifecycle, restored.delete_time) == (Lifecycle.ACTIVE, None)
    assert await search(store) == ["gone", "keep"]
    assert await search(store, view=View.DELETED_ONLY) == []


async def test_writes_to_deleted_or_unknown_runs_fail_and_change_nothing(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(
        store, exp.id, "r", params={"p": "1"}, tags={"t": "1"}, metrics={"m": [(0, 1.0)]}
    )
    deleted = await store.update_run(run.id, {"lifecycle": Lifecycle.DELETED})

    def writes(run_id):
        return [
            lambda: store.log_params(run_id, {"q": "2"}),
            lambda: store.set_tags(run_id, {"t": "2"}),
            lambda: store.delete_tag(run_id, "t"),
            lambda: store.log_metrics(run_id, batch({"m": ([1], [2.0])})),
            lambda: store.log_metrics(run_id, batch({})),
        ]

    for write in writes(run.id):
        with pytest.raises(FailedPrecondition):
            await write()
    assert await store.get_run(run.id) == deleted
    steps, _, values = await history(store, run.id, "m")
    assert (steps.tolist(), values.tolist()) == ([0], [1.0])

    missing = new_id()
    for write in [*writes(missing), lambda: store.read_metric_history(missing, [], None, None)]:
        with pytest.raises(NotFound):
            await write()


# ------------------------------------------------------------ params, tags


async def test_params_are_write_once(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id, params={"lr": "0.01"})
    other = await make_run(store, exp.id, params={"lr": "0.5"})
    await store.log_params(run.id, {"lr": "0.01", "layers": "12"})  # same value: fine
    await store.log_params(run.id, {})
    with pytest.raises(ParamConflict) as info:
        await store.log_params(run.id, {"lr": "0.02"})
    assert isinstance(info.value, FailedPrecondition)
    assert info.value.reason == "PARAM_CONFLICT"
    assert info.value.metadata == {"field": "params[lr]", "key": "lr"}
    assert "'0.01'" in info.value.message and "'0.02'" in info.value.message
    # A call with one conflict writes nothing at all, not even its fresh keys.
    with pytest.raises(ParamConflict):
        await store.log_params(run.id, {"fresh": "x", "layers": "24"})
    assert (await store.get_run(run.id)).params == {"lr": "0.01", "layers": "12"}
    assert (await store.get_run(other.id)).params == {"lr": "0.5"}


async def test_tags_last_write_wins_and_delete(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id, tags={"team": "ads"})
    other = await make_run(store, exp.id, tags={"team": "other"})
    await store.set_tags(run.id, {"team": "search", "stage": "dev"})
    await store.set_tags(run.id, {"stage": "prod"})
    assert (await store.get_run(run.id)).tags == {"team": "search", "stage": "prod"}
    await store.delete_tag(run.id, "team")
    assert (await store.get_run(run.id)).tags == {"stage": "prod"}
    for key in ("team", "never"):
        with pytest.raises(NotFound):
            await store.delete_tag(run.id, key)
    assert (await store.get_run(run.id)).tags == {"stage": "prod"}
    await store.set_tags(run.id, {"team": "back"})
    assert (await store.get_run(run.id)).tags == {"stage": "prod", "team": "back"}
    assert (await store.get_run(other.id)).tags == {"team": "other"}


# ------------------------------------------------------------------ metrics


async def test_log_metrics_of_several_keys_reads_back_exactly(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id)
    columns = MetricColumns(
        keys=("loss", "acc", "lr"),
        key_index=[0, 1, 2, 0, 1, 0, 2],
        steps=[0, 0, 0, 1, 1, 2, 10],
        timestamps=[T0, T0, T0, T0 + 5, T0 + 5, T0 + 9, T0 + 100],
        values=[1.5, 0.1, 0.01, 1.25, 0.2, 1.0, 0.001],
    )
    assert await store.log_metrics(run.id, columns) == 7
    series = await store.read_metric_history(run.id, [], None, None)
    assert [s[0] for s in series] == ["acc", "loss", "lr"]
    got = {key: (s.tolist(), t.tolist(), v.tolist()) for key, s, t, v, _ in series}
    assert got == {
        "loss": ([0, 1, 2], [T0, T0 + 5, T0 + 9], [1.5, 1.25, 1.0]),
        "acc": ([0, 1], [T0, T0 + 5], [0.1, 0.2]),
        "lr": ([0, 10], [T0, T0 + 100], [0.01, 0.001]),
    }
    for _, steps, timestamps, values, _ in series:
        assert (steps.dtype, timestamps.dtype, values.dtype) == (np.int64, np.int64, np.float64)
    subset = await store.read_metric_history(run.id, ["lr", "loss"], None, None)
    assert [s[0] for s in subset] == ["lr", "loss"]  # the caller's order

    # Without timestamps the server stamps "now".
    before = now_ms()
    await store.log_metrics(run.id, batch({"fresh": ([0, 1], [1.0, 2.0])}))
    _, timestamps, _ = await history(store, run.id, "fresh")
    assert all(before <= t <= now_ms() for t in timestamps.tolist())

    # An empty batch writes nothing.
    quiet = await make_run(store, exp.id)
    assert await store.log_metrics(quiet.id, batch({})) == 0
    assert await store.log_metrics(quiet.id, MetricColumns(("m",), [], [], [], [])) == 0
    assert (await store.get_run(quiet.id)).metrics == ()
    assert await store.read_metric_history(quiet.id, [], None, None) == []


async def test_steps_come_back_in_order_and_duplicates_keep_write_order(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id)
    writes = [
        ([5, 3, 4], [50.0, 30.0, 40.0]),  # out of order within a batch
        ([0, 1, 2], [0.0, 10.0, 20.0]),  # earlier steps in a later batch
        ([9, 3, 7], [90.0, 31.0, 70.0]),  # step 3 again, written later
        ([3], [32.0]),  # and again
        ([100, 6, 8], [1000.0, 60.0, 80.0]),  # a gap: steps are not contiguous
    ]
    for i, (steps, values) in enumerate(writes):
        stamps = [T0 + 1000 * i + j for j in range(len(steps))]
        await store.log_metrics(run.id, batch({"m": (steps, values)}, timestamps=stamps))
    steps, timestamps, values = await history(store, run.id, "m")
    assert steps.tolist() == [0, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9, 100]
    assert values.tolist() == [0, 10, 20, 30, 31, 32, 40, 50, 60, 70, 80, 90, 1000]
    assert timestamps.tolist()[3:6] == [T0 + 1, T0 + 2001, T0 + 3000]

    await store.log_metrics(run.id, batch({"d": ([2, 1, 2, 1, 2], [1.0, 2.0, 3.0, 4.0, 5.0])}))
    steps, _, values = await history(store, run.id, "d")
    assert steps.tolist() == [1, 1, 2, 2, 2]
    assert values.tolist() == [2.0, 4.0, 1.0, 3.0, 5.0]
    last = await summary(store, run.id, "d")
    assert (last.last_step, last.last_value) == (2, 5.0)


async def test_non_finite_values_are_stored_faithfully(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id)
    values = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, 1.0]
    await store.log_metrics(run.id, batch({"m": (list(range(len(values))), values)}))
    _, _, got = await history(store, run.id, "m")
    assert math.isnan(got[0])
    assert got[1] == math.inf and got[2] == -math.inf
    assert got[3] == 0.0 and math.copysign(1.0, got[3]) == -1.0
    assert got[4:].tolist() == values[4:]
    # Bit for bit, even a NaN with a payload.
    odd_nan = np.frombuffer(np.uint64(0x7FF8_0000_DEAD_BEEF).tobytes(), dtype=np.float64)
    await store.log_metrics(run.id, batch({"n": ([0], [float(odd_nan[0])])}))
    _, _, got = await history(store, run.id, "n")
    assert got.tobytes() == odd_nan.tobytes()
    s = await summary(store, run.id, "m")
    assert (s.min_value, s.max_value, s.last_value, s.count) == (-math.inf, math.inf, 1.0, 7)


async def test_summaries_fold_across_batches(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id)

    async def fold(steps, values):
        await store.log_metrics(run.id, batch({"m": (steps, values)}))
        s = await summary(store, run.id, "m")
        return s.last_step, s.last_value, s.min_value, s.max_value, s.count

    assert await fold([0, 1, 2], [math.nan, 3.0, 2.0]) == (2, 2.0, 2.0, 3.0, 3)
    # Lower steps later: the latest value stays at the highest step; extremes widen.
    assert await fold([0, 1], [-7.0, 11.0]) == (2, 2.0, -7.0, 11.0, 5)
    # A NaN at a new highest step becomes the latest value but not an extreme.
    last_step, last_value, *rest = await fold([10], [math.nan])
    assert last_step == 10 and math.isnan(last_value) and rest == [-7.0, 11.0, 6]
    # A tie on the highest step goes to the later write.
    assert await fold([10], [4.0]) == (10, 4.0, -7.0, 11.0, 7)
    assert await fold([3, 4], [math.inf, -math.inf]) == (10, 4.0, -math.inf, math.inf, 9)

    # All-NaN: NaN extremes, until a number arrives.
    await store.log_metrics(run.id, batch({"nan": ([0, 1], [math.nan, math.nan])}))
    s = await summary(store, run.id, "nan")
    assert math.isnan(s.min_value) and math.isnan(s.max_value) and math.isnan(s.last_value)
    assert s.count == 2
    await store.log_metrics(run.id, batch({"nan": ([2], [0.5])}))
    s = await summary(store, run.id, "nan")
    assert (s.min_value, s.max_value, s.last_value, s.count) == (0.5, 0.5, 0.5, 3)

    # One summary per key, sorted by key.
    other = await make_run(store, exp.id)
    await store.log_metrics(other.id, batch({"z": ([0], [1.0]), "a": ([0, 1], [2.0, 3.0])}))
    metrics = (await store.get_run(other.id)).metrics
    assert [(m.key, m.count, m.last_value) for m in metrics] == [("a", 2, 3.0), ("z", 1, 1.0)]


async def test_step_range_reads_and_unknown_keys(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id)
    await store.log_metrics(run.id, batch({"m": (list(range(10)), [float(i) for i in range(10)])}))
    await store.log_metrics(
        run.id, batch({"m": (list(range(10, 20)), [float(i) for i in range(10, 20)])})
    )
    await store.log_metrics(run.id, batch({"m": ([15, 5], [-15.0, -5.0])}))
    steps, _, values = await history(store, run.id, "m", 4, 15)
    assert steps.tolist() == [4, 5, 5, *range(6, 15), 15, 15]
    assert values.tolist() == [4.0, 5.0, -5.0, *map(float, range(6, 15)), 15.0, -15.0]
    for start, end, expected in [
        (18, None, [18, 19]),
        (None, 1, [0, 1]),
        (7, 7, [7]),
        (50, 60, []),
        (-5, -1, []),
    ]:
        steps, _, _ = await history(store, run.id, "m", start, end)
        assert steps.tolist() == expected, (start, end)

    series = await store.read_metric_history(run.id, ["nope", "m"], None, None)
    assert [s[0] for s in series] == ["nope", "m"]
    _, steps, timestamps, values, _ = series[0]
    assert (len(steps), len(timestamps), len(values)) == (0, 0, 0)
    assert values.dtype == np.float64
    other = await make_run(store, exp.id)
    assert await store.read_metric_history(other.id, [], None, None) == []
    steps, _, _ = await history(store, other.id, "m")
    assert len(steps) == 0  # another run's keys are not visible


async def test_large_batch_round_trips(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id)
    rng = np.random.default_rng(7)
    n = 50_000
    steps = np.arange(n, dtype=np.int64)
    values = rng.standard_normal(n)
    stamps = T0 + np.cumsum(rng.integers(0, 50, n))
    ragged = np.sort(rng.choice(10 * n, size=n, replace=False)).astype(np.int64)
    columns = MetricColumns(
        ("dense", "ragged"),
        np.repeat([0, 1], n),
        np.concatenate([steps, ragged]),
        np.concatenate([stamps, stamps]),
        np.concatenate([values, -values]),
    )
    assert await store.log_metrics(run.id, columns) == 2 * n
    s, t, v = await history(store, run.id, "dense")
    np.testing.assert_array_equal(s, steps)
    np.testing.assert_array_equal(t, stamps)
    assert v.tobytes() == values.tobytes()
    s, t, v = await history(store, run.id, "ragged")
    np.testing.assert_array_equal(s, ragged)
    np.testing.assert_array_equal(t, stamps)
    assert v.tobytes() == (-values).tobytes()
    m = await summary(store, run.id, "dense")
    assert (m.count, m.min_value, m.max_value) == (n, values.min(), values.max())
    assert (m.last_step, m.last_value, m.last_timestamp) == (n - 1, values[-1], stamps[-1])


async def test_concurrent_writers_keep_exact_count_and_extremes(store):
    exp = await store.create_experiment("e", "")
    run = await make_run(store, exp.id)
    writers, per = 8, 250

    async def write(w: int) -> int:
        steps = list(range(w * per, (w + 1) * per))
        values = [float(w * 1000 + i) for i in range(per)]
        return await store.log_metrics(run.id, batch({"m": (steps, values)}))

    assert await asyncio.gather(*[write(w) for w in range(writers)]) == [per] * writers
    s = await summary(store, run.id, "m")
    assert s.count == writers * per
    assert (s.min_value, s.max_value) == (0.0, float((writers - 1) * 1000 + per - 1))
    assert (s.last_step, s.last_value) == (writers * per - 1, s.max_value)
    steps, _, values = await history(store, run.id, "m")
    assert steps.tolist() == list(range(writers * per))
    assert len(values) == writers * per

    # Concurrent writers introducing new keys of one run.
    await asyncio.gather(
        *[
            store.log_metrics(run.id, batch({"shared": ([w], [float(w)]), f"own{w}": ([0], [1.0])}))
            for w in range(6)
        ]
    )
    metrics = {m.key: m for m in (await store.get_run(run.id)).metrics}
    assert sorted(metrics) == ["m", "own0", "own1", "own2", "own3", "own4", "own5", "shared"]
    shared = metrics["shared"]
    assert (shared.count, shared.min_value, shared.max_value) == (6, 0.0, 5.0)


# ------------------------------------------------------------------- search

EXAMPLE = 'params.lr = "0.01" and metrics.val_loss < 0.3 and tags.team = "search"'


async def test_example_filter_selects_exactly_the_right_runs(store):
    exp = await store.create_experiment("e", "")
    other = await store.create_experiment("other", "")
    lr, team = "0.01", "search"
    cases = [
        ("hit-a", {"lr": lr}, {"team": team}, {"val_loss": [(0, 0.2)]}),
        ("hit-b", {"lr": lr}, {"team": team}, {"val_loss": [(0, 0.299)]}),
        ("hit-latest", {"lr": lr}, {"team": team}, {"val_loss": [(0, 0.9), (1, 0.1)]}),
        ("hit-highest-step", {"lr": lr}, {"team": team}, {"val_loss": [(5, 0.1), (1, 0.9)]}),
        ("boundary", {"lr": lr}, {"team": team}, {"val_loss": [(0, 0.3)]}),
        ("latest-too-high", {"lr": lr}, {"team": team}, {"val_loss": [(0, 0.1), (1, 0.5)]}),
        ("nan-latest", {"lr": lr}, {"team": team}, {"val_loss": [(0, 0.1), (1, math.nan)]}),
        ("wrong-team", {"lr": lr}, {"team": "ads"}, {"val_loss": [(0, 0.1)]}),
        ("wrong-lr", {"lr": "0.1"}, {"team": team}, {"val_loss": [(0, 0.1)]}),
        ("lr-spelled-differently", {"lr": "0.010"}, {"team": team}, {"val_loss": [(0, 0.1)]}),
        ("no-metric", {"lr": lr}, {"team": team}, {}),
        ("no-team", {"lr": lr}, {}, {"val_loss": [(0, 0.1)]}),
        ("no-lr", {}, {"team": team}, {"val_loss": [(0, 0.1)]}),
        ("other-metric", {"lr": lr}, {"team": team, "val_loss": "0.1"}, {"loss": [(0, 0.1)]}),
        ("param-as-tag", {"team": team}, {"lr": lr}, {"val_loss": [(0, 0.1)]}),
    ]
    for i, (name, p, t, m) in enumerate(cases):
        await make_run(store, exp.id, name, params=p, tags=t, metrics=m, start_time=T0 + i)
    hit = {"params": {"lr": lr}, "tags": {"team": team}, "metrics": {"val_loss": [(0, 0.1)]}}
    deleted = await make_run(store, exp.id, "deleted-hit", **hit, start_time=T0 + 100)
    await store.update_run(deleted.id, {"lifecycle": Lifecycle.DELETED})
    await make_run(store, other.id, "elsewhere-hit", **hit, start_time=T0 - 1)

    hits = ["hit-highest-step", "hit-latest", "hit-b", "hit-a"]  # newest first
    assert await search(store, EXAMPLE, exps=[exp.id]) == hits
    assert await search(store, EXAMPLE) == [*hits, "elsewhere-hit"]
    assert await search(store, EXAMPLE, exps=[exp.id], view=View.ALL) == ["deleted-hit", *hits]
    assert await search(store, EXAMPLE, exps=[exp.id], view=View.DELETED_ONLY) == ["deleted-hit"]


async def make_zoo(store) -> dict:
    """Six runs with distinct names, params, tags, states and start times."""
    exp = await store.create_experiment("zoo", "")
    spec = [
        ("bert-base", "adam", "search", RunState.FINISHED),
        ("bert-large", "adamw", "ads", RunState.FAILED),
        ("gpt-small", "sgd", "infra", RunState.RUNNING),
        ("gpt-50%", "adam", "search", RunState.KILLED),
        ("BERT-tiny", "sgd", "ads", RunState.FINISHED),
        ("t5_base", "adagrad", "search", RunState.RUNNING),
    ]
    runs = {}
    for i, (name, optimizer, team, state) in enumerate(spec):
        run = await make_run(
            store,
            exp.id,
            name,
            params={"optimizer": optimizer, "i": str(i)},
            tags={"team": team},
            start_time=T0 + 1000 * i,
        )
        if state is not RunState.RUNNING:
            run = await store.update_run(run.id, {"state": state, "end_time": T0 + 1000 * i + 1})
        runs[name] = run
    return runs


ALL_ZOO = ["BERT-tiny", "bert-base", "bert-large", "gpt-50%", "gpt-small", "t5_base"]


async def test_boolean_operators_membership_and_patterns(store):
    await make_zoo(store)
    await check_cases(
        store,
        [
            ('tags.team = "ads" OR tags.team = "infra"', ["BERT-tiny", "bert-large", "gpt-small"]),
            ('NOT params.optimizer = "adam"', ["BERT-tiny", "bert-large", "gpt-small", "t5_base"]),
            ('params.optimizer != "adam"', ["BERT-tiny", "bert-large", "gpt-small", "t5_base"]),
            ('params.optimizer IN ("sgd", "adamw")', ["BERT-tiny", "bert-large", "gpt-small"]),
            ('params.optimizer NOT IN ("sgd", "adamw")', ["bert-base", "gpt-50%", "t5_base"]),
            ('params.optimizer LIKE "adam%"', ["bert-base", "bert-large", "gpt-50%"]),
            ('params.optimizer NOT LIKE "adam%"', ["BERT-tiny", "gpt-small", "t5_base"]),
            (
                '(tags.team = "search" OR tags.team = "infra") AND params.optimizer = "sgd"',
                ["gpt-small"],
            ),
            (
                'tags.team = "search" OR tags.team = "infra" AND params.optimizer = "sgd"',
                ["bert-base", "gpt-50%", "gpt-small", "t5_base"],
            ),
            ('NOT (tags.team = "search" OR params.optimizer = "sgd")', ["bert-large"]),
            ('NOT NOT tags.team = "infra"', ["gpt-small"]),
            ('params.i >= "3"', ["BERT-tiny", "gpt-50%", "t5_base"]),
            ("params.missing IS NULL", ALL_ZOO),
            ("params.missing IS NOT NULL", []),
            ("tags.team IS NOT NULL AND params.optimizer = 'adagrad'", ["t5_base"]),
            ('tags.team = "search" AND tags.team = "ads"', []),
        ],
    )


async def test_like_is_case_sensitive_and_honours_escapes(store):
    await make_zoo(store)
    await check_cases(
        store,
        [
            ('name LIKE "bert-%"', ["bert-base", "bert-large"]),
            ('display_name LIKE "BERT-%"', ["BERT-tiny"]),
            ('name NOT LIKE "bert-%"', ["BERT-tiny", "gpt-50%", "gpt-small", "t5_base"]),
            ('name ILIKE "bert-%"', ["BERT-tiny", "bert-base", "bert-large"]),
            ('name NOT ILIKE "bert-%"', ["gpt-50%", "gpt-small", "t5_base"]),
            ("name LIKE 't5_base'", ["t5_base"]),  # _ is a one-character wildcard
            ("name LIKE 't5\\_%'", ["t5_base"]),  # \_ is a literal underscore
            ("name LIKE 'gpt\\_%'", []),
            ("name LIKE '%50\\%'", ["gpt-50%"]),  # the filter docs' example of \%
            ("name LIKE '%0%'", ["gpt-50%"]),
            ('params.optimizer LIKE "ADAM%"', []),
            ('params.optimizer ILIKE "ADAM%"', ["bert-base", "bert-large", "gpt-50%"]),
        ],
    )


async def test_attribute_filters_and_default_order(store):
    runs = await make_zoo(store)
    await check_cases(
        store,
        [
            ('state = "finished"', ["BERT-tiny", "bert-base"]),
            ("status IN ('FAILED', 'killed')", ["bert-large", "gpt-50%"]),
            ('state != "RUNNING"', ["BERT-tiny", "bert-base", "bert-large", "gpt-50%"]),
            ('display_name = "gpt-small"', ["gpt-small"]),
            (
                'run_name != "gpt-small"',
                ["BERT-tiny", "bert-base", "bert-large", "gpt-50%", "t5_base"],
            ),
            ('name IN ("gpt-small", "t5_base", "nope")', ["gpt-small", "t5_base"]),
            (f"start_time >= {T0 + 3000}", ["BERT-tiny", "gpt-50%", "t5_base"]),
            (f"start_time < {T0 + 1000}", ["bert-base"]),
            (f"start_time IN ({T0}, {T0 + 2000})", ["bert-base", "gpt-small"]),
            ("end_time IS NULL", ["gpt-small", "t5_base"]),
            (f"end_time > {T0 + 3000}", ["BERT-tiny", "gpt-50%"]),
            ('user = "tester"', ALL_ZOO),
            ("parent_run_id IS NOT NULL", []),
            (f'run_id = "{runs["gpt-small"].id}"', ["gpt-small"]),
            (f'experiment_id = "{runs["gpt-small"].experiment_id}"', ALL_ZOO),
            (f'experiment_id = "{new_id()}"', []),
        ],
    )
    # Without order_by: newest first.
    assert await search(store) == [
        "t5_base",
        "BERT-tiny",
        "gpt-50%",
        "gpt-small",
        "bert-large",
        "bert-base",
    ]
    assert await search(store, order=["start_time"]) == [
        "bert-base",
        "bert-large",
        "gpt-small",
        "gpt-50%",
        "BERT-tiny",
        "t5_base",
    ]
    by_optimizer = await search(store, order=["params.optimizer DESC", "start_time DESC"])
    assert by_optimizer == [
        "BERT-tiny",
        "gpt-small",
        "bert-large",
        "gpt-50%",
        "bert-base",
        "t5_base",
    ]


async def test_order_by_metrics_sorts_runs_without_the_metric_last(store):
    exp = await store.create_experiment("e", "")
    values = {"b": 0.3, "a": 0.1, "d": -2.0, "c": 0.2}
    for i, name in enumerate(["none1", "b", "a", "none2", "d", "c"]):
        metrics = {"loss": [(0, values[name])]} if name in values else {"acc": [(0, 1.0)]}
        await make_run(store, exp.id, name, metrics=metrics, start_time=T0 + i)
    asc = await search(store, order=["metrics.loss ASC"])
    desc = await search(store, order=["metrics.loss DESC"])
    assert asc[:4] == ["d", "a", "c", "b"]
    assert desc[:4] == ["b", "c", "a", "d"]
    assert sorted(asc[4:]) == sorted(desc[4:]) == ["none1", "none2"]
    # Ties fall to the next key; the sort uses the latest value, not the last written.
    await make_run(store, exp.id, "a2", metrics={"loss": [(0, 0.1)]}, start_time=T0 + 100)
    await make_run(store, exp.id, "late", metrics={"loss": [(5, -9.0), (0, 9.0)]})
    got = await search(store, order=["metrics.loss", "start_time DESC"])
    assert got[:4] == ["late", "d", "a2", "a"]
    desc = await search(store, order=["metrics.loss DESC"])
    assert desc[:2] == ["b", "c"] and sorted(desc[2:4]) == ["a", "a2"]


async def test_keyset_pagination_matches_one_big_page(store):
    """17 runs with tied, missing, NaN and infinite losses and equal start times."""
    exp = await store.create_experiment("paged", "")
    losses = [
        0.5,
        0.2,
        None,
        0.5,
        math.inf,
        0.2,
        None,
        0.5,
        -math.inf,
        math.nan,
        0.1,
        None,
        0.2,
        0.5,
        3.0,
        math.nan,
        0.5,
    ]
    for i, loss in enumerate(losses):
        await make_run(
            store,
            exp.id,
            f"r{i:02d}",
            params={"group": "ab"[i % 2]},
            tags={"bucket": str(i % 3)} if i % 4 else {},
            metrics={"loss": [(0, loss)]} if loss is not None else {},
            start_time=T0 + i // 3,
        )
    queries = [
        ("", ["metrics.loss ASC"]),
        ("", ["metrics.loss DESC"]),
        ("", ["metrics.loss ASC", "params.group DESC"]),
        ("", ["params.group", "metrics.loss DESC"]),
        ("", ["tags.bucket DESC", "metrics.loss"]),
        ("", []),
        ("", ["start_time"]),
        ("", ["display_name DESC"]),
        ('params.group = "a" OR metrics.loss > 0.3', ["metrics.loss DESC"]),
    ]
    wrong = []
    for text, order in queries:
        big, pages = await all_pages(store, text, order, 1000)
        assert pages == 1 and len(big) == len(set(big))
        assert len(big) == (17 if not text else 12), (text, len(big))
        for size in (3, 1):
            paged, pages = await all_pages(store, text, order, size)
            if paged != big or pages != math.ceil(len(big) / size):
                wrong.append(f"{text!r} {order} page_size={size}: {pages} pages")
    assert not wrong, "\n".join(wrong)


async def test_page_tokens_from_other_queries_or_forged_are_invalid(store):
    exp = await store.create_experiment("e", "")
    for i in range(5):
        await make_run(
            store, exp.id, f"r{i}", params={"group": "ab"[i % 2]}, metrics={"loss": [(0, i / 10)]}
        )
    where, order = parse_filter('params.group = "a"'), parse_order_by(["metrics.loss"])
    first = await store.search_runs([], where, order, 1, "", View.ACTIVE_ONLY)
    token = first.next_page_token
    assert token
    other_queries = [
        ([], parse_filter('params.group = "b"'), order, View.ACTIVE_ONLY),
        ([], where, parse_order_by(["metrics.loss DESC"]), View.ACTIVE_ONLY),
        ([], where, (), View.ACTIVE_ONLY),
        ([], where, order, View.ALL),
        ([exp.id], where, order, View.ACTIVE_ONLY),
    ]
    for exps, w, o, view in other_queries:
        with pytest.raises(InvalidArgument) as info:
            await store.search_runs(exps, w, o, 1, token, view)
        assert info.value.field == "page_token"
    # The same query with another page size may continue.
    rest = await store.search_runs([], where, order, 5, token, View.ACTIVE_ONLY)
    assert [r.display_name for r in rest.items] == ["r2", "r4"]
    # A list_experiments token is no search token, and forgeries fail.
    await store.create_experiment("x", "")
    exp_token = (await store.list_experiments(1, "", View.ALL)).next_page_token
    forged = [
        exp_token,
        "garbage",
        "!!!not base64!!!",
        "////",
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(b'{"v":1,"q":"abc","k":[[]]}').decode(),
        base64.urlsafe_b64encode(b'{"v":2,"q":"abc","k":[1,"x"]}').decode(),
        encode_token("0" * 16, [0.1, "x"]),
        token[:-4],
    ]
    for bad in forged:
        with pytest.raises(InvalidArgument) as info:
            await store.search_runs([], where, order, 1, bad, View.ACTIVE_ONLY)
        assert info.value.field == "page_token", bad
        with pytest.raises(InvalidArgument) as info:
            await store.list_experiments(1, bad if bad != exp_token else token, View.ALL)
        assert info.value.field == "page_token", bad


async def test_search_is_scoped_to_experiments_and_returns_hydrated_runs(store):
    exps = [await store.create_experiment(n, "") for n in ("a", "b", "c")]
    for i, exp in enumerate(exps):
        for j in range(2):
            await make_run(store, exp.id, f"{exp.display_name}{j}", start_time=T0 + 10 * i + j)
    assert await search(store, exps=[exps[0].id]) == ["a1", "a0"]
    assert await search(store, exps=[exps[2].id, exps[0].id]) == ["c1", "c0", "a1", "a0"]
    assert await search(store) == ["c1", "c0", "b1", "b0", "a1", "a0"]
    assert await search(store, exps=[new_id()]) == []

    run = await make_run(
        store, exps[1].id, "full", params={"p": "1"}, tags={"t": "2"}, metrics={"m": [(3, 4.0)]}
    )
    page = await store.search_runs(
        [exps[1].id], parse_filter('name = "full"'), (), 10, "", View.ACTIVE_ONLY
    )
    assert page.items == [await store.get_run(run.id)]
    assert (page.items[0].params, page.items[0].tags) == ({"p": "1"}, {"t": "2"})
    assert page.items[0].metrics[0].last_value == 4.0
