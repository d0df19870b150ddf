"""Fixtures of the integration tests: one real server subprocess (SQLite) per test
module, a client of it, and the environment that points training code at it.

The server is shared by the tests of a module (each test uses its own experiment
names), which keeps the framework tests quick on small CI machines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def integration_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """The real server as a subprocess, shared by one test module."""
    proc = ServerProcess(tmp_path_factory.mktemp("ketch-server") / "data")
    yield proc
    proc.stop()


@pytest.fixture
def ketch_env(integration_server, tmp_path, monkeypatch) -> dict[str, str]:
    """An environment for training code that logs to ``integration_server`` (no system
    metrics, a private spool); also applied to this process for in-process code."""
    env = dict(os.environ)
    for key in ("KETCH_RUN_ID", "KETCH_EXPERIMENT", "KETCH_MODE", "KETCH_RANKS"):
        monkeypatch.delenv(key, raising=False)
        env.pop(key, None)
    settings = {
        "KETCH_TRACKING_URI": integration_server.uri,
        "KETCH_SYSTEM_METRICS": "0",
        "KETCH_SPOOL_DIR": str(tmp_path / "spool"),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    env.update(settings)
    return env


@pytest.fixture
def tracking(integration_server, ketch_env):
    """A ``ketch.Client`` of the shared server."""
    import ketch

    with ketch.Client(integration_server.uri) as client:
        yield client
