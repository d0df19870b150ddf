"""The committed stubs must equal what scripts/gen_protos.py generates now."""

from __future__ import annotations

import filecmp
import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "client" / "ketch" / "api" / "v1"


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools missing")
def test_generated_stubs_are_fresh(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "ketch" / "api" / "v1"
    generated = sorted(p.name for p in fresh.iterdir())
    assert generated, "the generator produced nothing"
    committed = sorted(
        p.name
        for p in COMMITTED.iterdir()
        if p.suffix in (".py", ".pyi") and p.name != "__init__.py"
    )
    assert generated == committed, "stub files differ; run: python scripts/gen_protos.py"
    _, mismatch, errors = filecmp.cmpfiles(fresh, COMMITTED, generated, shallow=False)
    assert not mismatch and not errors, (
        f"stale stubs {mismatch + errors}; run: python scripts/gen_protos.py and commit"
    )
