"""The ``ketch.init`` options the integrations are built on: ``request_id`` (processes
meet in one run), ``activate`` (runs managed beside the active one) and ``owner``
(an extra writer leaves the state to the run's owner)."""

from __future__ import annotations

import sys
import threading
import time

import ketch
import pytest

pytestmark = pytest.mark.e2e

QUIET = {"capture_environment": False, "system_metrics": False}


def test_the_same_request_id_gives_the_same_run(tracking):
    first = ketch.init("hooks", "shared", request_id="job-7f3a", activate=False, **QUIET)
    second = ketch.init("hooks", "shared", request_id="job-7f3a", activate=False, **QUIET)
    other = ketch.init("hooks", "shared", activate=False, **QUIET)
    first.log({"x": 1.0}, step=0)
    second.log({"x": 2.0}, step=1)
    for run in (first, second, other):
        run.finish()
    assert first.id == second.id != other.id
    assert list(tracking.get_metric_history(first.id, "x").values) == [1.0, 2.0]
    assert len(tracking.get_run(first.id).writers) == 2


def test_a_run_started_with_activate_false_leaves_the_active_run_alone(tracking):
    with ketch.init("hooks", "main", **QUIET) as main:
        side = ketch.init("hooks", "side", activate=False, **QUIET)
        assert ketch.active_run() is main
        side.finish()
        assert ketch.active_run() is main
    assert ketch.active_run() is None


def test_a_writer_that_is_not_the_owner_leaves_the_state_alone(tracking):
    owner = ketch.init("hooks", "owned", activate=False, **QUIET)
    with ketch.init(run_id=owner.id, owner=False, activate=False, **QUIET) as helper:
        helper.log({"helper": 1.0}, step=0)
        owner.finish("KILLED")
        with pytest.raises(ValueError):
            raise ValueError("the helper fails after the owner ended the run")
    record = tracking.get_run(owner.id)
    assert record.state == "KILLED"
    assert record.metrics["helper"].last == 1.0


def test_finish_waits_for_a_finish_under_way_in_another_thread(tracking):
    # A Ray trainable's thread finishes its run while the process exits: the exit's
    # finish must not return (and the process end) before that one is done.
    points = 300_000
    run = ketch.init("hooks", "two-finishers", activate=False, **QUIET)
    run.log({"x": 1.0}, step=0)
    for step in range(1, points):
        run.log({"x": float(step)}, step=step)
    other = threading.Thread(target=run.finish)
    other.start()
    while run._finisher is None:  # the other thread has started finishing
        time.sleep(0.001)
    run.finish()
    record = tracking.get_run(run.id)
    other.join()
    assert record.state == "FINISHED"
    assert record.metrics["x"].count == points


def test_sys_exit_0_inside_a_run_is_a_clean_finish(tracking):
    with pytest.raises(SystemExit), ketch.init("hooks", "exits", **QUIET) as run:
        sys.exit(0)
    assert tracking.get_run(run.id).state == "FINISHED"
    with pytest.raises(SystemExit), ketch.init("hooks", "exits-2", **QUIET) as failed:
        sys.exit(3)
    assert tracking.get_run(failed.id).state == "FAILED"
