"""The Optuna callback with real studies against a real server: threads, pruned and
failed trials, and processes sharing one study through RDB storage."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

optuna = pytest.importorskip("optuna")

from ketch.integrations.optuna import STUDY_RUN_ATTR, KetchCallback  # noqa: E402

pytestmark = pytest.mark.e2e

STATES = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -4.0, 4.0)
    trial.suggest_categorical("kind", ["a", "b"])
    trial.set_user_attr("note", f"n{trial.number}")
    for step in range(3):
        trial.report((x - 1) ** 2 + 3 - step, step)
    if trial.number % 5 == 3:
        raise optuna.TrialPruned()
    if trial.number % 5 == 4:
        raise ValueError("boom")
    return (x - 1) ** 2


def children_by_number(client, study_run_id: str) -> dict[int, object]:
    runs = client.search_runs(f'parent_run_id = "{study_run_id}"')
    return {int(r.tags["optuna.trial_number"]): r for r in runs}


def assert_best_tags(client, study, study_run_id: str, children: dict) -> None:
    best = study.best_trial
    flagged = [n for n, r in children.items() if r.tags["best_trial"] == "true"]
    assert flagged == [best.number]
    tags = client.get_run(study_run_id).tags
    assert tags["best_trial"] == str(best.number)
    assert tags["best_trial_run"] == children[best.number].id
    assert float(tags["best_value"]) == best.value


def test_threaded_study_records_each_trial_as_a_child_run(tracking):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="quadratic", sampler=optuna.samplers.RandomSampler(seed=7)
    )
    callback = KetchCallback(experiment="optuna-threads", metric_name="loss")
    study.optimize(objective, n_trials=10, n_jobs=3, callbacks=[callback], catch=(ValueError,))
    callback.finish()

    [study_run] = tracking.search_runs("parent_run_id IS NULL", experiment_names=["optuna-threads"])
    assert study_run.name == "quadratic"
    assert study_run.state == "FINISHED"
    assert study_run.params["optuna.direction"] == "minimize"
    assert study_run.tags["optuna.sampler"] == "RandomSampler"
    assert study.user_attrs[STUDY_RUN_ATTR] == study_run.id

    children = children_by_number(tracking, study_run.id)
    assert sorted(children) == list(range(10))
    for trial in study.trials:
        run = children[trial.number]
        assert run.name == f"trial-{trial.number}"
        assert run.state == STATES[trial.state.name], trial.number
        assert run.tags["optuna.state"] == trial.state.name
        assert run.tags["optuna.user_attrs.note"] == f"n{trial.number}"
        assert run.params == {"x": repr(trial.params["x"]), "kind": trial.params["kind"]}
        curve = tracking.get_metric_history(run.id, "intermediate_value")
        assert list(curve.steps) == [0, 1, 2]
        assert list(curve.values) == [trial.intermediate_values[s] for s in range(3)]
        if trial.state.name == "COMPLETE":
            assert run.metrics["loss"].last == trial.value
    assert_best_tags(tracking, study, study_run.id, children)

    complete = sorted(t.number for t in study.trials if t.state.name == "COMPLETE")
    history = tracking.get_metric_history(study_run.id, "loss")
    assert sorted(history.steps) == complete
    assert min(tracking.get_metric_history(study_run.id, "best_value").values) == study.best_value


WORKER = """
    import sys
    import optuna
    from ketch.integrations.optuna import KetchCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="shared", storage=sys.argv[1])
    callback = KetchCallback(experiment="optuna-shared")
    study.optimize(
        lambda t: (t.suggest_float("x", -3.0, 3.0) - 1.0) ** 2,
        n_trials=int(sys.argv[2]),
        callbacks=[callback],
    )
    callback.finish()
"""


def test_processes_sharing_an_rdb_study_share_its_study_run(tracking, ketch_env, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="shared", storage=storage)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), storage, "6"],
            env=ketch_env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err

    study = optuna.load_study(study_name="shared", storage=storage)
    [study_run] = tracking.search_runs("parent_run_id IS NULL", experiment_names=["optuna-shared"])
    assert study.user_attrs[STUDY_RUN_ATTR] == study_run.id
    assert len(study_run.writers) == 2  # one stream per process
    children = children_by_number(tracking, study_run.id)
    assert sorted(children) == list(range(12))
    assert {r.state for r in children.values()} == {"FINISHED"}
    assert_best_tags(tracking, study, study_run.id, children)


def test_one_callback_tracks_one_study(tracking):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    callback = KetchCallback(experiment="optuna-two")
    optuna.create_study().optimize(lambda t: t.suggest_float("x", 0, 1), 1, callbacks=[callback])
    with pytest.raises(ValueError, match="one callback per study"):
        optuna.create_study().optimize(
            lambda t: t.suggest_float("x", 0, 1), 1, callbacks=[callback]
        )
    callback.finish()
