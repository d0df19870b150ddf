"""The integration examples, run as a user would (a subprocess, fast settings) against
the real server subprocess, checked through ``ketch.Client``."""

from __future__ import annotations

import re
import subprocess
import sys

import ketch
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples"


def run_example(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        env=dict(env, KETCH_SYSTEM_METRICS="0"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_optuna_gradient_boosting_search(cli_env, server_process):
    pytest.importorskip("optuna")
    trials = 6
    out = run_example(
        cli_env,
        str(EXAMPLES / "optuna_gradient_boosting.py"),
        *("--trials", str(trials), "--rows", "300", "--jobs", "2"),
    )
    study_run_id = re.search(r"^study run id: (\w+)$", out, re.MULTILINE).group(1)
    best_number = int(re.search(r"^best trial (\d+): f1=", out, re.MULTILINE).group(1))

    with ketch.Client(server_process.uri) as client:
        study = client.get_run(study_run_id)
        children = client.search_runs(f'parent_run_id = "{study_run_id}"')
    assert study.name == "churn-gb"
    assert study.state == "FINISHED"
    assert study.tags["best_trial"] == str(best_number)
    assert len(children) == trials
    assert {c.state for c in children} <= {"FINISHED", "KILLED"}
    for child in children:
        assert set(child.params) == {"n_estimators", "learning_rate", "max_depth", "subsample"}
        assert child.metrics["intermediate_value"].count >= 1
    finished = [c for c in children if c.state == "FINISHED"]
    best = max(finished, key=lambda c: c.metrics["f1"].last)
    assert best.tags["best_trial"] == "true"
    assert best.tags["optuna.trial_number"] == str(best_number)
    assert study.tags["best_trial_run"] == best.id
    assert [c for c in children if c.tags["best_trial"] == "true"] == [best]
    assert study.metrics["best_value"].max == pytest.approx(best.metrics["f1"].last)


def test_ray_tune_asha_search(cli_env, server_process, tmp_path):
    pytest.importorskip("ray.tune")
    samples, epochs = 4, 4
    run_example(
        cli_env,
        str(EXAMPLES / "ray_tune_asha.py"),
        *("--samples", str(samples), "--epochs", str(epochs), "--rows", "300"),
        *("--storage-path", str(tmp_path / "ray")),
    )

    with ketch.Client(server_process.uri) as client:
        [parent] = client.search_runs(
            "parent_run_id IS NULL", experiment_names=["customer-churn-tune"]
        )
        trials = client.search_runs(f'parent_run_id = "{parent.id}"')
        histories = {t.id: client.get_metric_history(t.id, "val_loss") for t in trials}
        train_f1 = {t.id: client.get_metric_history(t.id, "train_f1") for t in trials}
    assert parent.name == "churn-sgd-asha"
    assert parent.state == "FINISHED"
    assert len(trials) == samples
    for trial in trials:
        steps = list(histories[trial.id].steps)
        assert steps == list(range(1, len(steps) + 1))  # training_iteration
        assert list(train_f1[trial.id].steps) == steps  # from setup_run, inside the trainable
        assert set(trial.params) >= {"alpha", "eta0", "epochs", "rows"}
        if trial.state == "KILLED":
            assert trial.tags["ray.termination"] == "early_stopped"
            assert len(steps) < epochs
        else:
            assert trial.state == "FINISHED"
            assert len(steps) == epochs
    assert any(t.state == "FINISHED" for t in trials)


def test_torchrun_ddp_streams_from_both_ranks(cli_env, server_process):
    pytest.importorskip("torch")
    epochs, rows, batch = 2, 800, 64
    out = run_example(
        cli_env,
        *("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        str(EXAMPLES / "torch_ddp.py"),
        *("--epochs", str(epochs), "--rows", str(rows), "--batch-size", str(batch)),
    )
    run_id = re.search(r"^run id: (\w+)$", out, re.MULTILINE).group(1)

    with ketch.Client(server_process.uri) as client:
        [run] = client.search_runs(experiment_names=["churn-ddp"])
        train = client.get_metric_history(run_id, "train/loss")
        val = client.get_metric_history(run_id, "val/loss")
    assert run.id == run_id
    assert run.state == "FINISHED"
    assert run.ranks == [0, 1]
    assert run.params["world_size"] == "2"
    assert run.tags["torch.distributed.backend"] == "gloo"
    steps_per_rank = epochs * -(-(rows * 8 // 10) // 2 // batch)
    for rank in (0, 1):
        mine = [s for s, r in zip(train.steps, train.ranks, strict=True) if r == rank]
        assert mine == list(range(steps_per_rank)), rank
    assert set(val.ranks) == {0}
    assert len(val) == epochs
