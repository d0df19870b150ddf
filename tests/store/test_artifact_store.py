"""ArtifactStore contract on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ketch_server.domain.artifacts import PendingUpload
from ketch_server.domain.errors import AlreadyExists, InvalidArgument, NotFound
from ketch_server.domain.models import RunEnvironment, RunSource
from ketch_server.store.artifacts import ArtifactStore


@pytest.fixture
async def setup(store):
    exp = await store.create_experiment("e", "")
    run = await store.create_run(
        exp.id,
        display_name="r",
        parent_run_id=None,
        user="u",
        params_={},
        tags_={},
        source=RunSource(),
        environment=RunEnvironment(),
        request_id=None,
        start_time=None,
    )
    return ArtifactStore(store.engine), run.id


def upload(run_id: str, path: str, digest: str, n: int, request_id=None) -> PendingUpload:
    return PendingUpload(
        id=f"{n:032x}",
        run_id=run_id,
        path=path,
        size=10,
        sha256=digest,
        storage_key=f"k/{n}",
        backend_upload_id=None,
        part_size=64,
        request_id=request_id,
        create_time=1,
        expire_time=2,
    )


async def test_commit_dedup_conflict_and_pages(setup):
    arts, run_id = setup
    d1, d2 = "a" * 64, "b" * 64
    u1, created = await arts.create_upload(upload(run_id, "x/one", d1, 1, "req"))
    assert created
    again, created = await arts.create_upload(upload(run_id, "x/one", d1, 2, "req"))
    assert not created and again.id == u1.id
    art, blob = await arts.commit_upload(u1)
    assert (art.path, blob.storage_key) == ("x/one", "k/1")
    with pytest.raises(NotFound):
        await arts.commit_upload(u1)  # no longer pending
    # Same content under another path: recorded without an upload, one blob.
    assert (await arts.record_existing(run_id, "x/two", d1)).sha256 == d1
    u3, _ = await arts.create_upload(upload(run_id, "x/three", d1, 3))
    _, blob = await arts.commit_upload(u3)
    assert blob.storage_key == "k/1"  # the first stored copy wins
    with pytest.raises(AlreadyExists):
        await arts.create_upload(upload(run_id, "x/one", d2, 4))
    for i in range(5):
        await arts.record_existing(run_id, f"y_{i}", d1)
    page = await arts.list_artifacts(run_id, "x", 2, "")
    assert [a.path for a in page.items] == ["x/one", "x/three"]
    page = await arts.list_artifacts(run_id, "x", 2, page.next_page_token)
    assert [a.path for a in page.items] == ["x/two"] and page.next_page_token == ""
    with pytest.raises(InvalidArgument):
        await arts.list_artifacts(run_id, "y", 2, "bogus")
    assert await arts.count() == {"blobs": 1, "artifacts": 8, "uploads": 0}
    with pytest.raises(NotFound):
        await arts.list_artifacts("0" * 32, "", 10, "")
