"""The artifact path gate (pure domain rules)."""

from __future__ import annotations

import pytest
from ketch_server.domain.artifacts import check_artifact_path, check_path_prefix, plan_parts
from ketch_server.domain.errors import InvalidArgument

from tests.api.test_artifacts import TRAVERSAL


@pytest.mark.parametrize("path", TRAVERSAL)
def test_rejected(path):
    with pytest.raises(InvalidArgument) as err:
        check_artifact_path(path)
    assert err.value.field == "path"


@pytest.mark.parametrize("path", ["a", "a/b/c.txt", "models/m1/MLmodel.json", "a..b", "...", "a%b"])
def test_accepted(path):
    assert check_artifact_path(path) == path


def test_prefix():
    assert check_path_prefix("") == ""
    assert check_path_prefix("models/") == "models"
    with pytest.raises(InvalidArgument):
        check_path_prefix("../x")


def test_parts_cover_the_file():
    MiB = 1 << 20
    parts = plan_parts(200 * MiB + 1, 64 * MiB)
    assert [p.size for p in parts] == [64 * MiB] * 3 + [8 * MiB + 1]
    assert parts[-1].offset + parts[-1].size == 200 * MiB + 1
    assert len(plan_parts(10**13)) <= 10_000
