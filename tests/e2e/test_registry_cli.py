"""``ketch models`` against a real server subprocess: the commands, their JSON and
exit codes, and the CI pipeline with token auth (train -> register -> request -> two
approvers -> Production) while a watcher follows every event in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ketch
import pytest

from tests.conftest import ServerProcess
from tests.e2e.test_cli import ketch_cli, ok

pytestmark = pytest.mark.e2e

NOT_FOUND, DENIED, POLICY, CONFLICT = 3, 4, 5, 6


def train(uri: str, tmp_path, accuracy: float) -> str:
    """A run that logged ``accuracy`` and a model directory; returns its id."""
    model_dir = tmp_path / f"model-{accuracy}"
    model_dir.mkdir()
    (model_dir / "model.pkl").write_bytes(b"weights" + str(accuracy).encode())
    with ketch.init(
        experiment="churn", uri=uri, capture_environment=False, system_metrics=False
    ) as run:
        run.log({"accuracy": accuracy}, step=10)
        run.log_model(model_dir, "churn")
    return run.id


def doc(env, *args: str):
    return json.loads(ok(env, "models", *args, "--json"))


def fails(env, code: int, *args: str) -> str:
    proc = ketch_cli(env, "models", *args)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stderr


def test_models_commands_json_and_exit_codes(cli_env, server_process, tmp_path):
    good = train(server_process.uri, tmp_path, 0.95)
    weak = train(server_process.uri, tmp_path, 0.80)
    assert doc(cli_env, "create", "churn", "--tag", "team=growth")["tags"] == {"team": "growth"}
    v1 = doc(cli_env, "register", "churn", "--run", good)
    assert {k: v1[k] for k in ("name", "version", "stage", "aliases")} == {
        "name": "churn",
        "version": 1,
        "stage": "NONE",
        "aliases": [],
    }
    ok(cli_env, "models", "register", "churn", "--run", weak, "--path", "models/churn/MLmodel.json")
    policy = doc(
        cli_env,
        "policy",
        "set",
        "churn",
        "--stage",
        "production",
        "--approvals",
        "0",
        "--gate",
        "metrics.accuracy >= 0.9",
    )
    assert policy["gates"] == ["metrics.accuracy >= 0.9"] and policy["archive_existing"] is True
    for version in ("1", "2"):
        staged = doc(cli_env, "request", "churn", version, "--stage", "staging")
        assert staged["state"] == "APPLIED" and staged["approvals"] == 0

    gate = fails(cli_env, POLICY, "request", "churn", "2", "--stage", "production")
    assert "metrics.accuracy >= 0.9" in gate and "GATES_FAILED" in gate
    assert fails(cli_env, POLICY, "request", "churn", "2", "--stage", "none")
    promoted = doc(cli_env, "request", "churn", "1", "--stage", "production")
    assert (promoted["request_id"], promoted["state"]) == (promoted["request_id"], "APPLIED")
    assert "models:/churn@champion -> 1" in ok(cli_env, "models", "alias", "churn", "champion", "1")

    shown = doc(cli_env, "show", "churn")
    assert [(v["version"], v["stage"], v["aliases"]) for v in shown["versions"]] == [
        (2, "STAGING", []),
        (1, "PRODUCTION", ["champion"]),
    ]
    assert doc(cli_env, "resolve", "models:/churn@champion")["version"] == 1
    path = doc(cli_env, "download", "models:/churn@champion", "--dst", str(tmp_path / "dl"))["path"]
    assert sorted(os.listdir(path)) == ["MLmodel.json", "model.pkl"]

    assert "not found" in fails(cli_env, NOT_FOUND, "show", "ghost")
    ok(cli_env, "models", "policy", "set", "churn", "--stage", "production", "--approvals", "1")
    assert doc(cli_env, "policy", "show", "churn")["stages"][2]["gates"] == [
        "metrics.accuracy >= 0.9"
    ]  # flags left out keep their values
    ok(cli_env, "models", "policy", "set", "churn", "--stage", "archived", "--approvals", "1")
    pending = doc(cli_env, "request", "churn", "2", "--stage", "archived", "--comment", "old")
    assert (pending["state"], pending["approvals_required"]) == ("PENDING", 1)
    self_vote = fails(cli_env, DENIED, "approve", pending["request_id"])
    assert "SELF_APPROVAL" in self_vote
    assert fails(cli_env, POLICY, "request", "churn", "2", "--stage", "archived")  # pending
    listed = doc(cli_env, "requests", "churn", "--state", "pending")["requests"]
    assert [r["request_id"] for r in listed] == [pending["request_id"]]
    assert doc(cli_env, "cancel", pending["request_id"])["state"] == "CANCELLED"

    events = doc(cli_env, "history", "churn")["events"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    denied = [e["after"]["reason"] for e in events if e["action"] == "TRANSITION_DENIED"]
    assert denied == ["GATES_FAILED", "ILLEGAL_TRANSITION", "SELF_APPROVAL", "REQUEST_PENDING"]

    lines = ok(cli_env, "models", "watch", "churn", "--json", "--max-events", "3").splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == [1, 2, 3]
    resumed = ok(
        cli_env, "models", "watch", "--json", "--from", "3", "--max-events", "2"
    ).splitlines()
    assert [json.loads(line)["sequence"] for line in resumed] == [4, 5]
    assert ok(cli_env, "models", "watch", "--new", "--timeout", "0.5") == ""


# ------------------------------------------------------------ with tokens


@pytest.fixture
def token_server(tmp_path):
    proc = ServerProcess(tmp_path / "data", extra=["--auth", "token"])
    yield proc
    proc.stop()


def env_for(server: ServerProcess, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}
    env["KETCH_TRACKING_URI"] = server.uri
    if token:
        env["KETCH_API_TOKEN"] = token
    return env


def token(server: ServerProcess, admin: str | None, name: str, role: str) -> str:
    """A token for ``name``: the first (admin) one on the server's database, later ones
    through the server as ``admin``. The secret is the last word printed."""
    where = ["--data-dir", str(server.data_dir)] if admin is None else []
    out = ok(
        env_for(server, admin), "admin", "token", "create", *where, "--name", name, "--role", role
    )
    return out.split()[-1]


def test_ci_pipeline_two_approvers_promote_while_a_watcher_follows(
    token_server, tmp_path, monkeypatch
):
    root = token(token_server, None, "root", "admin")
    ci = token(token_server, root, "ci-bot", "writer")
    alice = token(token_server, root, "alice", "approver")
    bob = token(token_server, root, "bob", "approver")
    watcher_token = token(token_server, root, "deployer", "reader")
    expected = [
        "MODEL_CREATED",
        "VERSION_REGISTERED",
        "POLICY_SET",
        "TRANSITION_REQUESTED",
        "STAGE_CHANGED",
        "TRANSITION_REQUESTED",
        "TRANSITION_APPROVED",
        "TRANSITION_DENIED",
        "TRANSITION_APPROVED",
        "STAGE_CHANGED",
    ]
    watcher = subprocess.Popen(
        [
            *(sys.executable, "-m", "ketch._cli", "models", "watch", "churn", "--json"),
            *("--max-events", str(len(expected)), "--timeout", "60"),
        ],
        env=env_for(token_server, watcher_token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        monkeypatch.setenv("KETCH_API_TOKEN", ci)
        run_id = train(token_server.uri, tmp_path, 0.93)
        as_ci, as_root = env_for(token_server, ci), env_for(token_server, root)
        as_alice, as_bob = env_for(token_server, alice), env_for(token_server, bob)
        doc(as_ci, "create", "churn")
        assert doc(as_ci, "register", "churn", "--run", run_id)["version"] == 1
        gate = ["--gate", "metrics.accuracy >= 0.9", "--approver-role", "approver"]
        fails(as_ci, DENIED, "policy", "set", "churn", "--stage", "production", "--approvals", "2")
        doc(as_root, "policy", "set", "churn", "--stage", "production", "--approvals", "2", *gate)
        assert doc(as_ci, "request", "churn", "1", "--stage", "staging")["state"] == "APPLIED"
        req = doc(as_ci, "request", "churn", "1", "--stage", "production", "--comment", "ci #7")
        assert (req["state"], req["approvals"], req["approvals_required"]) == ("PENDING", 0, 2)
        rid = req["request_id"]

        assert "ROLE_REQUIRED" in fails(as_ci, DENIED, "approve", rid)  # a writer
        first = doc(
            as_alice, "approve", rid, "--evidence-url", "https://ci/7", "--check", "eval=passed"
        )
        assert (first["state"], first["approvals"]) == ("PENDING", 1)
        assert "ALREADY_VOTED" in fails(as_alice, CONFLICT, "approve", rid)
        final = doc(as_bob, "approve", rid, "--comment", "lgtm")
        assert (final["state"], final["approvals"]) == ("APPLIED", 2)
        assert [(v["principal"], v["role"]) for v in final["votes"]] == [
            ("alice", "approver"),
            ("bob", "approver"),
        ]
        assert final["votes"][0]["evidence_url"] == "https://ci/7"
        production = doc(as_ci, "resolve", "models:/churn/Production")
        assert (production["version"], production["stage"]) == (1, "PRODUCTION")

        out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, err
        seen = [json.loads(line) for line in out.splitlines()]
        assert [e["action"] for e in seen] == expected
        history = doc(as_ci, "history", "churn")["events"]
        assert [e["sequence"] for e in seen] == [e["sequence"] for e in history]
        assert [e["actor"] for e in seen] == [
            "ci-bot",
            "ci-bot",
            "root",
            "ci-bot",
            "ci-bot",
            "ci-bot",
            "alice",
            "alice",
            "bob",
            "bob",
        ]
        assert seen[-1]["after"] == {"stage": "PRODUCTION", "request": f"requests/{rid}"}
        assert seen[7]["after"]["reason"] == "ALREADY_VOTED"
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
