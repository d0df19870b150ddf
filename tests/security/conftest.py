"""Servers for the security suite: started with explicit settings (auth mode, limits),
stopped when the scope that asked for them ends."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import ThreadServer

ServerFactory = Callable[..., ThreadServer]


@contextlib.contextmanager
def _servers(make_dir: Callable[[], pathlib.Path]) -> Iterator[ServerFactory]:
    from ketch_server.settings import Settings

    started: list[ThreadServer] = []

    def start(db_url: str | None = None, **overrides) -> ThreadServer:
        directory = make_dir()
        settings = Settings(
            port=0,
            data_dir=directory / "data",
            db_url=db_url or f"sqlite+aiosqlite:///{directory / 'ketch.db'}",
            grace_seconds=1,
            **overrides,
        )
        srv = ThreadServer(settings).start()
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory) -> Iterator[ServerFactory]:
    """Start SQLite (or ``db_url``) servers with settings overrides; one per call,
    all stopped at the end of the module."""
    with _servers(lambda: tmp_path_factory.mktemp("ketch")) as start:
        yield start


@pytest.fixture
def servers(tmp_path_factory) -> Iterator[ServerFactory]:
    """Like ``module_servers``, stopped at the end of the test."""
    with _servers(lambda: tmp_path_factory.mktemp("ketch")) as start:
        yield start
