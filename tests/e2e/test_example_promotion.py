"""examples/promote_to_production.py against a real server with --auth token: the model
reaches Production through two approvers, and a watcher sees every step in order."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import ketch
import pytest

from tests.conftest import ROOT, ServerProcess
from tests.e2e.test_cli import ok

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "promote_to_production.py"


@pytest.fixture
def token_server(tmp_path):
    proc = ServerProcess(tmp_path / "data", extra=["--auth", "token"])
    yield proc
    proc.stop()


def test_promotion_example_reaches_production_with_two_approvers(token_server):
    base = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}
    base["KETCH_TRACKING_URI"] = token_server.uri
    data = str(token_server.data_dir)

    def token(name: str, role: str) -> str:
        out = ok(base, "admin", "token", "create", "--data-dir", data, "--name", name,
                 "--role", role)  # fmt: skip
        return out.split()[-1]

    admin, trainer = token("admin", "admin"), token("trainer", "writer")
    approvers = [token("alice", "approver"), token("bob", "approver")]

    watcher = ketch.Client(token_server.uri, api_token=token("watcher", "reader"))
    events: list = []
    started = threading.Event()

    def watch() -> None:
        started.set()
        for event in watcher.watch_registry(["churn"], timeout=60):
            events.append(event)
            if event.action == "STAGE_CHANGED" and (event.after or {}).get("stage") == (
                "PRODUCTION"
            ):
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    started.wait(10)

    env = dict(
        base,
        KETCH_ADMIN_TOKEN=admin,
        KETCH_API_TOKEN=trainer,
        KETCH_APPROVER_TOKENS=",".join(approvers),
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--rows",
            "600",
            "--n-estimators",
            "20",
            "--min-accuracy",
            "0.7",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "staging: APPLIED" in proc.stdout
    assert re.search(r"production request \S+: PENDING", proc.stdout)
    assert "approved: PENDING (1/2 approvals)" in proc.stdout
    assert "approved: APPLIED (2/2 approvals)" in proc.stdout
    assert re.search(r"^production version: 1$", proc.stdout, re.MULTILINE)

    thread.join(60)
    actions = [(e.action, e.actor) for e in events]
    assert ("VERSION_REGISTERED", "trainer") in actions
    approvals = [actor for action, actor in actions if action == "TRANSITION_APPROVED"]
    assert approvals == ["alice", "bob"]
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    assert actions[-1][0] == "STAGE_CHANGED"
