"""``ketch artifacts`` against the real server as a subprocess (local store)."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import ketch
import pytest

from tests.e2e.test_cli import ketch_cli

pytestmark = pytest.mark.e2e


def test_upload_list_download(cli_env, server_process, tmp_path):
    with ketch.init(experiment="cli-artifacts", uri=server_process.uri) as run:
        run_id = run.id
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(3_000_000))
    (tmp_path / "single.txt").write_text("single")

    up = ketch_cli(cli_env, "artifacts", "upload", run_id, str(src), "--path", "data")
    assert up.returncode == 0, up.stderr
    assert "data/sub/b.bin" in up.stdout
    assert "100%" in up.stderr  # the progress bar
    up = ketch_cli(cli_env, "artifacts", "upload", run_id, str(tmp_path / "single.txt"))
    assert up.returncode == 0, up.stderr

    ls = ketch_cli(cli_env, "artifacts", "list", run_id, "--json")
    assert ls.returncode == 0, ls.stderr
    rows = [json.loads(line) for line in ls.stdout.splitlines()]
    assert [r["path"] for r in rows] == ["data/a.txt", "data/sub/b.bin", "single.txt"]
    ls = ketch_cli(cli_env, "artifacts", "list", run_id, "data/sub")
    assert "data/sub/b.bin" in ls.stdout and "a.txt" not in ls.stdout

    dst = tmp_path / "dst"
    down = ketch_cli(cli_env, "artifacts", "download", run_id, "data", "--dst", str(dst))
    assert down.returncode == 0, down.stderr
    out = pathlib.Path(down.stdout.strip())
    assert (out / "a.txt").read_text() == "alpha"
    got = hashlib.sha256((out / "sub" / "b.bin").read_bytes()).hexdigest()
    assert got == hashlib.sha256((src / "sub" / "b.bin").read_bytes()).hexdigest()


def test_bad_path_is_a_clean_error(cli_env, server_process, tmp_path):
    with ketch.init(experiment="cli-artifacts", uri=server_process.uri) as run:
        run_id = run.id
    (tmp_path / "f").write_text("x")
    bad = ketch_cli(cli_env, "artifacts", "upload", run_id, str(tmp_path / "f"), "--path", "../..")
    assert bad.returncode == 1
    assert bad.stderr.startswith("ketch: path:")
    missing = ketch_cli(cli_env, "artifacts", "download", run_id, "nope", "--dst", str(tmp_path))
    assert missing.returncode == 1 and "no artifact" in missing.stderr
