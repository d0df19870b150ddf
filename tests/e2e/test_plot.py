"""``ketch runs plot`` against a real server subprocess: text plots, JSON and PNG files."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import ketch
import pytest

pytestmark = pytest.mark.e2e

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def ketch_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ketch._cli", *args],
        env={**env, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def log_run(uri: str, name: str, scale: float) -> str:
    with ketch.init(experiment="plot", name=name, uri=uri, capture_environment=False) as run:
        for step in range(100):
            run.log({"loss": scale / (step + 1), "acc": step / 100}, step=step)
    return run.id


@pytest.fixture
def runs(server_process) -> tuple[str, str]:
    return log_run(server_process.uri, "fast", 2.0), log_run(server_process.uri, "slow", 4.0)


def test_plot_in_the_terminal(cli_env, runs):
    fast, slow = runs
    proc = ketch_cli(
        cli_env, "runs", "plot", fast, slow, "--key", "loss", "--key", "acc", "--width", "50"
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    loss, acc = out.split("\n\n")
    assert loss.splitlines()[0] == "loss" and acc.splitlines()[0] == "acc"
    # value range on the y axis: max 4/1 and min 2/100 (of both runs)
    assert loss.splitlines()[1].strip().startswith("4 ") and "0.02 " in loss
    assert "0.99" in acc.splitlines()[1] and " 0 " in acc
    # step range on the x axis, and a legend naming each run with its own marker
    assert any(line.split() == ["0", "99"] for line in loss.splitlines())
    legend = [line.strip() for line in loss.splitlines()[-2:]]
    assert legend == [f"• fast ({fast[:12]})", f"x slow ({slow[:12]})"]
    assert "•" in loss and "x" in "".join(loss.splitlines()[1:-4])
    plot_rows = [line for line in loss.splitlines() if "│" in line or "┤" in line]
    assert len(plot_rows) == 12  # default --height
    assert max(len(line) for line in plot_rows) <= len("    4 ┤") + 50


def test_plot_json_and_errors(cli_env, runs):
    fast, _ = runs
    proc = ketch_cli(cli_env, "runs", "plot", fast, "--key", "loss", "--max-points", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    (series,) = json.loads(proc.stdout)["series"]
    assert (series["run_id"], series["key"]) == (fast, "loss")
    assert 10 <= len(series["steps"]) <= 30
    assert series["steps"][0] == 0 and series["values"][0] == 2.0

    missing = "0" * 31 + "1"
    proc = ketch_cli(cli_env, "runs", "plot", fast, missing, "--key", "loss")
    assert proc.returncode == 1 and missing in proc.stderr and "not found" in proc.stderr
    proc = ketch_cli(cli_env, "runs", "plot", fast)  # --key is required
    assert proc.returncode == 2 and "--key" in proc.stderr
    proc = ketch_cli(cli_env, "runs", "plot", fast, "--key", "loss", "--max-points", "2")
    assert proc.returncode == 1 and "max_points" in proc.stderr


def test_plot_png(cli_env, runs, tmp_path):
    out = tmp_path / "curves.png"
    proc = ketch_cli(cli_env, "runs", "plot", *runs, "--key", "loss", "--out", str(out))
    if not HAVE_MATPLOTLIB:
        assert proc.returncode == 1
        assert "install matplotlib to write PNG files: pip install matplotlib" in proc.stderr
        assert not out.exists()
        pytest.skip("matplotlib is not installed: checked the message, not the file")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5_000
    assert "loss" in proc.stdout and f"wrote {out}" in proc.stdout
