"""Real training processes against a real server: distributed ranks, SIGTERM,
fork, and SIGKILL recovered by `ketch sync`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import ketch
import numpy as np
import pytest

pytestmark = pytest.mark.e2e

TIMEOUT = 60


def _script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def _env(cli_env, tmp_path, **extra) -> dict[str, str]:
    env = dict(cli_env, KETCH_SYSTEM_METRICS="0", KETCH_SPOOL_DIR=str(tmp_path / "spool"))
    env.update(extra)
    return env


RANKED = """
    import sys, ketch
    run = ketch.init(experiment="ddp", name="job", capture_environment=False)
    rank = int(sys.argv[1])
    for i in range(1000):
        run.log({"loss": rank * 1000 + i}, step=i)
    run.finish()
    print(run.id or "-")
"""


@pytest.mark.parametrize("mode", ["all", "zero"])
def test_torchrun_ranks_share_one_run(mode, server_process, cli_env, tmp_path):
    script = _script(tmp_path, "ranked", RANKED)
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(rank)],
            env=_env(
                cli_env,
                tmp_path,
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE="2",
                TORCHELASTIC_RUN_ID="job-42",
                KETCH_RANKS=mode,
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    ids = [p.communicate(timeout=TIMEOUT)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    with ketch.Client(server_process.uri) as client:
        record = client.get_run(ids[0])
        history = client.get_metric_history(ids[0], "loss")
    if mode == "all":
        assert ids[0] == ids[1]
        assert record.ranks == [0, 1]
        assert record.metrics["loss"].count == 2000
        assert sorted(zip(history.ranks.tolist(), history.values.tolist(), strict=True)) == sorted(
            [(0, float(i)) for i in range(1000)] + [(1, 1000.0 + i) for i in range(1000)]
        )
    else:
        assert ids[1] == "-"  # rank 1 does not log
        assert record.ranks == [0] and record.metrics["loss"].count == 1000
    shown = subprocess.run(
        [sys.executable, "-m", "ketch._cli", "runs", "show", ids[0], "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert json.loads(shown.stdout)["ranks"] == record.ranks


# A training process as a scheduler starts it: SIGTERM delivered and at its default. The
# test runner's own disposition is not inherited (a runner may ignore or block SIGTERM),
# and a stack dump lands in the log if the process is still alive after 40 s.
_DEFAULT_SIGTERM = """
    import faulthandler, signal
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    faulthandler.dump_traceback_later(40, exit=False)
"""


def _terminate(proc, log) -> int:
    """SIGTERM, then the exit code; a process still alive after TIMEOUT fails the test."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running {TIMEOUT}s after SIGTERM:\n{log.read_text()}")


def test_sigterm_flushes_and_marks_the_run_killed(server_process, cli_env, tmp_path):
    script = _script(
        tmp_path,
        "term",
        _DEFAULT_SIGTERM
        + """
    import time, ketch
    run = ketch.init(experiment="term", capture_environment=False)
    for i in range(5000):
        run.log({"loss": float(i)}, step=i)
    print(run.id, flush=True)
    time.sleep(60)
""",
    )
    log = tmp_path / "term.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, script],
            env=_env(cli_env, tmp_path),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        run_id = proc.stdout.readline().strip()
        code = _terminate(proc, log)
    assert code in (-signal.SIGTERM, 128 + signal.SIGTERM), log.read_text()  # still ends
    with ketch.Client(server_process.uri) as client:
        record = client.get_run(run_id)
    assert record.state == "KILLED", log.read_text()
    assert record.metrics["loss"].count == 5000, log.read_text()


def test_an_ignored_sigterm_stays_ignored_and_the_run_goes_on(server_process, cli_env, tmp_path):
    # A process that ignores SIGTERM before ketch starts (often inherited from its
    # launcher) is not ended by it, so its run must not be marked KILLED under it either.
    script = _script(
        tmp_path,
        "ignore",
        """
        import signal, sys, ketch
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run = ketch.init(experiment="term", capture_environment=False)
        for i in range(1000):
            run.log({"loss": float(i)}, step=i)
        print(run.id, flush=True)
        sys.stdin.readline()  # the test sends SIGTERM, then a line
        for i in range(1000, 2000):
            run.log({"loss": float(i)}, step=i)
        run.finish()
    """,
    )
    log = tmp_path / "ignore.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, script],
            env=_env(cli_env, tmp_path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        run_id = proc.stdout.readline().strip()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        proc.communicate("go\n", timeout=TIMEOUT)
    assert proc.returncode == 0, log.read_text()
    with ketch.Client(server_process.uri) as client:
        record = client.get_run(run_id)
    assert record.state == "FINISHED", log.read_text()
    assert record.metrics["loss"].count == 2000, log.read_text()


def test_a_forked_child_does_not_disturb_the_parents_run(server_process, cli_env, tmp_path):
    script = _script(
        tmp_path,
        "fork",
        """
        import os, sys, ketch
        run = ketch.init(experiment="fork", capture_environment=False, flush_interval=0.01)
        for i in range(1000):
            run.log({"loss": float(i)}, step=i)
        pid = os.fork()
        if pid == 0:  # a DataLoader-style worker: logs, then exits through atexit
            for i in range(1000):
                run.log({"child": float(i)}, step=i)
            sys.exit(0)
        os.waitpid(pid, 0)
        state = ketch.Client().get_run(run.id).state
        for i in range(1000, 2000):
            run.log({"loss": float(i)}, step=i)
        run.finish()
        print(run.id, state)
    """,
    )
    out = subprocess.run(
        [sys.executable, script],
        env=_env(cli_env, tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode == 0, out.stderr
    run_id, state_after_child = out.stdout.split()
    assert state_after_child == "RUNNING"  # the child's exit did not finish the run
    with ketch.Client(server_process.uri) as client:
        record = client.get_run(run_id)
        history = client.get_metric_history(run_id, "loss")
    assert record.state == "FINISHED" and sorted(record.metrics) == ["loss"]
    assert np.array_equal(history.steps, np.arange(2000))


def test_sigkilled_offline_process_is_recovered_by_sync(server_process, cli_env, tmp_path):
    script = _script(
        tmp_path,
        "killed",
        """
        import time, ketch
        run = ketch.init(experiment="crash", mode="offline", capture_environment=False)
        for i in range(10_000):
            run.log({"loss": float(i)}, step=i)
        run.flush()
        print("flushed", flush=True)
        time.sleep(60)
    """,
    )
    env = _env(cli_env, tmp_path)
    proc = subprocess.Popen([sys.executable, script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "flushed"
    proc.kill()
    proc.wait(TIMEOUT)
    for _ in range(2):  # syncing twice adds nothing
        out = subprocess.run(
            [sys.executable, "-m", "ketch._cli", "sync"],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert out.returncode == 0, out.stderr
    with ketch.Client(server_process.uri) as client:
        (record,) = client.search_runs(experiment_names=["crash"])
    assert record.metrics["loss"].count == 10_000
    assert record.state == "RUNNING"  # it never finished
