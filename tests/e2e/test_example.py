"""The churn example against a real server subprocess, checked through the CLI."""

from __future__ import annotations

import json
import platform
import re
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "churn_random_forest.py"
FAST = ["--n-estimators", "20", "--max-depth", "4", "--rows", "400"]
PARAMS = {"n_estimators": "20", "max_depth": "4", "min_samples_split": "5", "random_state": "42"}


def run_example(env: dict[str, str], *args: str) -> str:
    """Run the example (from the repository root, as a user would); return its run id."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *FAST, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"^run id: ([0-9a-f]{32})$", proc.stdout, re.MULTILINE)
    assert found, proc.stdout
    return found.group(1)


def ketch_json(env: dict[str, str], *args: str):
    proc = subprocess.run(
        [sys.executable, "-m", "ketch._cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_example_run_is_tracked_with_params_metrics_and_reproducibility_facts(cli_env):
    run_id = run_example(cli_env)

    runs = ketch_json(cli_env, "runs", "list", "--experiment", "customer-churn")["runs"]
    run = ketch_json(cli_env, "runs", "show", run_id)

    [listed] = [r for r in runs if r["id"] == run_id]
    assert listed["state"] == "FINISHED"
    assert listed["name"] == "rf-baseline"
    assert listed["experiment"] == "customer-churn"
    assert listed["params"] == PARAMS
    assert run["params"] == PARAMS
    assert_metrics(run["metrics"])
    assert_reproducibility_facts(run["environment"], run["source"])


def assert_metrics(metrics: dict) -> None:
    for key in ("accuracy", "f1", "roc_auc", "val_accuracy", "train_roc_auc"):
        assert 0.0 <= metrics[key]["last"] <= 1.0, key
    assert metrics["val_accuracy"]["count"] == 2  # 10 trees, then 20
    assert metrics["val_accuracy"]["step"] == 1
    assert metrics["trees"]["last"] == 20


def assert_reproducibility_facts(env: dict, src: dict) -> None:
    assert env["python_version"] == platform.python_version()
    assert env["hostname"] == socket.gethostname()
    assert env["packages"] and env["package_count"] == len(env["packages"])
    assert env["seed"] == 42
    assert "churn_random_forest.py" in src["entry_point"]
    assert "--n-estimators" in src["argv"]
    if (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", src["git_commit"])
