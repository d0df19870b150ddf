"""The ``ketch`` command against a real server subprocess (and the server's shutdown).

The read-only commands share one server and two logged runs per module (``shared_env``);
each server start costs more than all the commands run against it.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import ketch
import pytest

from tests.conftest import ServerProcess, free_port

pytestmark = pytest.mark.e2e


def local_env() -> dict[str, str]:
    """The environment without KETCH_* settings that would point the CLI elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}


def ketch_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ketch ARGS`` as a user would; output as text."""
    return subprocess.run(
        [sys.executable, "-m", "ketch._cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(env: dict[str, str], *args: str) -> str:
    proc = ketch_cli(env, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def strict_json(text: str):
    """Parse JSON, refusing the non-standard NaN / Infinity literals."""

    def refuse(name: str):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def log_run(uri: str, name: str, lr: float, losses: list[float]) -> str:
    with ketch.init(
        experiment="cli-test",
        name=name,
        uri=uri,
        config={"lr": lr, "optimizer": "adam"},
        capture_environment=False,
    ) as run:
        for step, loss in enumerate(losses):
            run.log({"loss": loss, "accuracy": 1 - loss}, step=step)
    return run.id


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> ServerProcess:
    """One server for the read-only tests of this module (like ``server_process``)."""
    proc = ServerProcess(tmp_path_factory.mktemp("cli") / "data")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def two_runs(shared_server) -> tuple[str, str]:
    """Two finished runs in experiment cli-test: (fast-lr, slow-lr), oldest first."""
    return (
        log_run(shared_server.uri, "fast-lr", 0.1, [0.9, 0.5, 0.25]),
        log_run(shared_server.uri, "slow-lr", 0.01, [0.9, 0.8, 0.75]),
    )


@pytest.fixture
def shared_env(shared_server, two_runs) -> dict[str, str]:
    return {**local_env(), "KETCH_TRACKING_URI": shared_server.uri}


# ------------------------------------------------------------------- tables


def test_control_characters_in_stored_text_are_shown_escaped_not_obeyed(shared_server):
    # A tag value may hold any text, a name bidi overrides: a table must not let them
    # clear the screen, retitle the window or reorder what the reader sees.
    env = {**local_env(), "KETCH_TRACKING_URI": shared_server.uri}
    tag = "ok\x1b]0;pwned\x07\x1b[2J"
    with ketch.init(
        experiment="cli-escapes",
        name="report\u202excod.sh",
        uri=shared_server.uri,
        tags={"note": tag},
        capture_environment=False,
    ) as run:
        run.log({"loss": 0.5}, step=0)
    shown = ok(env, "runs", "show", run.id)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "ok\\x1b]0;pwned\\x07\\x1b[2J" in shown
    assert "report\\u202excod.sh" in shown
    record = strict_json(ok(env, "runs", "show", run.id, "--json"))
    assert record["tags"]["note"] == tag and record["name"] == "report\u202excod.sh"
    refused = ketch_cli(env, "runs", "show", "no-such-run\x1b[2J")
    assert refused.returncode != 0 and "\x1b" not in refused.stderr, refused.stderr


def test_runs_list_table_shows_names_states_metrics_and_params(shared_env, two_runs):
    out = ok(shared_env, "runs", "list", "--experiment", "cli-test")

    header, *rows = out.splitlines()
    for column in ("id", "name", "state", "start time", "duration", "loss", "accuracy", "lr"):
        assert column in header
    assert len(rows) == 2
    assert rows[0].startswith(two_runs[1][:12])  # newest first
    assert "slow-lr" in rows[0] and "FINISHED" in rows[0] and "0.75" in rows[0]
    assert "fast-lr" in rows[1] and "0.25" in rows[1] and "0.1" in rows[1]
    assert two_runs[0] not in out  # ids are shortened to 12 characters


def test_runs_list_json_filters_and_orders(shared_env, two_runs):
    doc = strict_json(
        ok(
            shared_env,
            "runs",
            "list",
            "--json",
            "--filter",
            'params.lr = "0.01"',
            "--experiment",
            "cli-test",
        )
    )
    assert [r["id"] for r in doc["runs"]] == [two_runs[1]]
    run = doc["runs"][0]
    assert run["params"] == {"lr": "0.01", "optimizer": "adam"}
    assert run["metrics"]["loss"] == {"last": 0.75, "step": 2, "min": 0.75, "max": 0.9, "count": 3}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", run["start_time"])

    doc = strict_json(
        ok(
            shared_env,
            "runs",
            "list",
            "--json",
            "--experiment",
            "cli-test",
            "--order-by",
            "metrics.loss ASC",
            "--max",
            "1",
        )
    )
    assert [r["id"] for r in doc["runs"]] == [two_runs[0]]


def test_runs_show_table_has_every_section(shared_env, two_runs):
    out = ok(shared_env, "runs", "show", two_runs[0])

    assert two_runs[0] in out
    assert "cli-test" in out and "fast-lr" in out and "FINISHED" in out
    for section in ("params", "tags", "metrics", "source", "environment"):
        assert re.search(rf"^{section}$", out, re.MULTILINE), section
    assert re.search(r"^\s+lr\s+0\.1$", out, re.MULTILINE)
    assert re.search(r"^\s+loss\s+0\.25\s+2\s+0\.25\s+0\.9\s+3$", out, re.MULTILINE)


def test_runs_compare_marks_differing_params(shared_env, two_runs):
    out = ok(shared_env, "runs", "compare", *two_runs)

    assert re.search(r"^\s+fast-lr\s+slow-lr$", out, re.MULTILINE)
    assert re.search(r"^\* params\.lr\s+0\.1\s+0\.01$", out, re.MULTILINE)
    assert re.search(r"^  params\.optimizer\s+adam\s+adam$", out, re.MULTILINE)
    assert re.search(r"^  metrics\.loss\s+0\.25\s+0\.75$", out, re.MULTILINE)

    doc = strict_json(ok(shared_env, "runs", "compare", *two_runs, "--json"))
    assert [r["id"] for r in doc["runs"]] == list(two_runs)
    assert doc["differing_params"] == ["lr"]


def test_experiments_list(shared_env, two_runs):
    assert re.search(
        r"^[0-9a-f]{32}\s+cli-test\s", ok(shared_env, "experiments", "list"), re.MULTILINE
    )
    doc = strict_json(ok(shared_env, "experiments", "list", "--json"))
    assert "cli-test" in [e["name"] for e in doc["experiments"]]


def test_json_encodes_nan_and_infinity_as_strings(shared_env, shared_server):
    with ketch.init(experiment="nan-test", uri=shared_server.uri, capture_environment=False) as run:
        run.log({"nan": math.nan, "up": math.inf, "down": -math.inf}, step=0)

    doc = strict_json(ok(shared_env, "runs", "show", run.id, "--json"))

    assert doc["metrics"]["nan"]["last"] == "NaN"
    assert doc["metrics"]["up"]["last"] == "Infinity"
    assert doc["metrics"]["down"]["last"] == "-Infinity"


# ------------------------------------------------------------------- errors


def assert_clean_failure(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("ketch: ")
    assert "Traceback" not in proc.stderr


def test_unknown_run_is_not_found(shared_env):
    proc = ketch_cli(shared_env, "runs", "show", "0123456789abcdef0123456789abcdef")

    assert_clean_failure(proc)
    assert "not found" in proc.stderr


def test_unreachable_server_names_the_uri_and_how_to_start_one():
    uri = f"grpc://127.0.0.1:{free_port()}"

    proc = ketch_cli(local_env(), "runs", "list", "--uri", uri)

    assert_clean_failure(proc)
    assert uri in proc.stderr
    assert "ketch server" in proc.stderr


def test_unquoted_string_in_filter_says_to_quote_it(shared_env):
    proc = ketch_cli(shared_env, "runs", "list", "--filter", "params.lr = 0.01")

    assert_clean_failure(proc)
    assert "quote" in proc.stderr
    assert 'params.lr = "0.01"' in proc.stderr


# --------------------------------------------------------------- database


def test_db_upgrade_creates_the_database_and_is_idempotent(tmp_path):
    data_dir = tmp_path / "fresh"
    assert ketch_cli(local_env(), "db", "current", "--data-dir", str(data_dir)).returncode == 1

    first = ok(local_env(), "db", "upgrade", "--data-dir", str(data_dir))
    again = ok(local_env(), "db", "upgrade", "--data-dir", str(data_dir))
    current = ok(local_env(), "db", "current", "--data-dir", str(data_dir))

    assert (data_dir / "ketch.db").is_file()
    revision = re.search(r"^database at revision (\w+)$", first, re.MULTILINE)
    assert revision, first
    assert f"database at revision {revision.group(1)}" in again
    assert current.strip() == f"database at revision {revision.group(1)}"


def test_db_upgrade_takes_a_database_url(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"

    out = ok(local_env(), "db", "upgrade", "--db", url)

    assert "database at revision" in out
    assert (tmp_path / "elsewhere.db").is_file()


# ----------------------------------------------------------------- server


def test_server_exits_cleanly_on_sigterm(server_process):
    assert server_process.stop() == 0
    assert "shutting down" in server_process.output()
    assert "Traceback" not in server_process.output()
