"""Fixtures shared by the API suites."""

from __future__ import annotations

import grpc
import pytest


@pytest.fixture
def channel(server):
    """A plain channel to the in-process server (the ``server`` fixture)."""
    with grpc.insecure_channel(server.uri.removeprefix("grpc://")) as ch:
        yield ch
