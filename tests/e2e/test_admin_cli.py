"""``ketch admin``: bootstrap the first admin token on the database of a running server
with ``--auth token``, then manage tokens through the server, as an operator would."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import ServerProcess
from tests.e2e.test_cli import ketch_cli, ok

pytestmark = pytest.mark.e2e


@pytest.fixture
def token_server(tmp_path):
    proc = ServerProcess(tmp_path / "data", extra=["--auth", "token"])
    yield proc
    proc.stop()


def _env(server: ServerProcess, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}
    env["KETCH_TRACKING_URI"] = server.uri
    if token:
        env["KETCH_API_TOKEN"] = token
    return env


def test_bootstrap_then_manage_tokens_through_the_server(token_server):
    anonymous = _env(token_server, None)
    denied = ketch_cli(anonymous, "experiments", "list")
    assert denied.returncode == 1
    assert "requires an API token" in denied.stderr

    out = ok(
        anonymous,
        "admin",
        "token",
        "create",
        "--data-dir",
        str(token_server.data_dir),
        "--name",
        "root",
        "--role",
        "admin",
    )
    root_token = out.split()[-1]
    assert root_token.startswith("ketch_")
    assert "shown only now" in out

    root = _env(token_server, root_token)
    assert json.loads(ok(root, "admin", "whoami", "--json")) == {
        "principal": "root",
        "kind": "user",
        "role": "admin",
        "authenticated_by": "token",
    }

    created = json.loads(
        ok(
            root,
            "admin",
            "token",
            "create",
            "--name",
            "ci-bot",
            "--role",
            "approver",
            "--kind",
            "service",
            "--ttl",
            "30d",
            "--json",
        )
    )
    bot = _env(token_server, created["secret"])
    assert created["token"]["principal"] == "ci-bot"
    assert created["token"]["role"] == "approver"
    assert created["token"]["created_by"] == "root"
    assert created["token"]["expire_time"] is not None
    assert json.loads(ok(bot, "admin", "whoami", "--json"))["kind"] == "service"

    # An approver is not an admin: it cannot mint tokens.
    refused = ketch_cli(bot, "admin", "token", "create", "--name", "x", "--role", "admin")
    assert refused.returncode == 1
    assert "needs admin" in refused.stderr

    listed = json.loads(ok(root, "admin", "token", "list", "--json"))["tokens"]
    assert {t["principal"] for t in listed} == {"root", "ci-bot"}
    assert all("secret" not in t for t in listed)

    ok(root, "admin", "token", "revoke", created["token"]["id"])
    gone = ketch_cli(bot, "experiments", "list")
    assert gone.returncode == 1
    assert "revoked" in gone.stderr
    listed = json.loads(ok(root, "admin", "token", "list", "--all", "--json"))["tokens"]
    [revoked] = [t for t in listed if t["principal"] == "ci-bot"]
    assert revoked["revoke_time"] is not None

    # The database holds only hashes: the secret appears nowhere in it.
    db = (token_server.data_dir / "ketch.db").read_bytes()
    assert root_token.split("_")[-1].encode() not in db
    assert created["secret"].split("_")[-1].encode() not in db


def test_bad_role_and_duration_are_usage_errors(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}
    for args in (["--role", "emperor"], ["--role", "reader", "--ttl", "soon"]):
        proc = ketch_cli(
            env, "admin", "token", "create", "--data-dir", str(tmp_path / "d"), "--name", "x", *args
        )
        assert proc.returncode == 2, proc.stderr
