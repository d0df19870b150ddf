"""Fixtures of the deploy tests: the repository's deploy/ files and the tools."""

from __future__ import annotations

import pathlib
from types import ModuleType

import pytest

from tests import _postgres
from tests.deploy import _tools

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "ketch"


@pytest.fixture(scope="session")
def helm() -> str:
    """A helm binary (skips, or fails in CI, when none can be had)."""
    path, reason = _tools.find_helm()
    if path is None:
        _postgres.skip_or_fail(reason)
    assert path is not None
    return path


@pytest.fixture(scope="session")
def kubernetes_validate() -> ModuleType:
    """The kubernetes-validate package (skips, or fails in CI, when missing)."""
    module, reason = _tools.find_kubernetes_validate()
    if module is None:
        _postgres.skip_or_fail(reason)
    assert module is not None
    return module
