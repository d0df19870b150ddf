"""The Ray Tune callback and setup_run with a real (2-CPU) Ray cluster against a real
server: completed, early-stopped (ASHA) and failed trials."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

from ketch.integrations.ray import KetchLoggerCallback, setup_run  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler  # noqa: E402

pytestmark = pytest.mark.e2e

MAX_T = 4


def trainable(config: dict) -> None:
    with setup_run(config, experiment="ray-asha") as run:
        run.log_params({"from_trainable": "yes"})
        if config["quality"] < 0:
            raise ValueError("negative quality")
        for i in range(1, MAX_T + 1):
            run.log({"inner": i * 10}, step=i)
            run.flush()
            tune.report({"score": config["quality"] * i, "nested": {"half": i / 2}})


@pytest.fixture
def ray_cluster(ketch_env):
    """A local Ray cluster started after KETCH_TRACKING_URI is set: its workers inherit it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_trials_stream_into_child_runs_with_their_outcome(ray_cluster, tracking, tmp_path):
    # Two CPUs: the two best trials start first, so ASHA always cuts 0.1 at its first
    # rung, and the best trial always runs to MAX_T.
    tuner = tune.Tuner(
        trainable,
        param_space={"quality": tune.grid_search([3.0, 2.0, 0.1, -1.0])},
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            scheduler=ASHAScheduler(max_t=MAX_T, grace_period=1, reduction_factor=2),
        ),
        run_config=tune.RunConfig(
            name="asha-test",
            storage_path=str(tmp_path / "ray"),
            callbacks=[KetchLoggerCallback(experiment="ray-asha")],
            verbose=0,
        ),
    )
    results = tuner.fit()
    assert len(results.errors) == 1

    [parent] = tracking.search_runs("parent_run_id IS NULL", experiment_names=["ray-asha"])
    assert parent.name == "asha-test"
    assert parent.state == "FINISHED"
    assert parent.params["ray.total_num_samples"] == "4"
    assert parent.tags["ray.trials"] == "4"

    runs = tracking.search_runs(f'parent_run_id = "{parent.id}"')
    by_quality = {float(r.params["quality"]): r for r in runs}
    assert sorted(by_quality) == [-1.0, 0.1, 2.0, 3.0]
    for quality, run in by_quality.items():
        assert run.params["from_trainable"] == "yes"  # the trainable's run is the trial run
        assert run.tags["ray.experiment"] == "asha-test"
        assert run.tags["ray.logger"] == "KetchLoggerCallback"
        if quality < 0:
            assert run.state == "FAILED"
            assert run.tags["ray.termination"] == "error"
            assert "negative quality" in run.tags["ray.error"]
            continue
        score = tracking.get_metric_history(run.id, "score")
        assert list(score.values) == [quality * s for s in score.steps]
        assert list(score.steps) == list(range(1, len(score) + 1))
        half = tracking.get_metric_history(run.id, "nested/half")
        assert list(half.values) == [s / 2 for s in score.steps]
        assert tracking.get_metric_history(run.id, "inner").steps[0] == 1
        if run.state == "KILLED":
            assert run.tags["ray.termination"] == "early_stopped"
            assert len(score) < MAX_T
        else:
            assert run.state == "FINISHED", quality
            assert run.tags["ray.termination"] == "completed"
            assert len(score) == MAX_T
    assert by_quality[3.0].state == "FINISHED"
    assert by_quality[0.1].state == "KILLED"
    assert parent.tags["ray.trials_killed"] == str(
        sum(r.state == "KILLED" for r in by_quality.values())
    )


def test_setup_run_outside_a_trial_says_so():
    with pytest.raises(RuntimeError, match="inside a Ray Tune trainable"):
        setup_run({})
