"""The artifact store: blobs, artifact paths and pending uploads in SQL.

Contract (SQLite and PostgreSQL):

* Each public coroutine is one transaction; it commits whole or changes nothing.
* ``blobs`` holds one row per sha256 (content stored once); ``artifacts`` maps
  (run, path) to a blob; ``uploads`` holds begun, uncommitted uploads. A blob row
  exists only for bytes that were verified, and an artifact only for a blob row.
* An artifact path is immutable: recording the same content again is a no-op,
  different content is ``AlreadyExists``.
* Database failures become domain errors (``Unavailable``); never SQLAlchemy errors.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ketch_server.domain.artifacts import Artifact, BlobRef, PendingUpload
from ketch_server.domain.errors import AlreadyExists, NotFound
from ketch_server.domain.identity import current_principal
from ketch_server.domain.models import Page
from ketch_server.domain.pagination import decode_token, encode_token, fingerprint
from ketch_server.store.base import SqlStore, now_ms
from ketch_server.store.schema import artifacts, blobs, runs, uploads

__all__ = ["ArtifactStore"]


def _artifact(row: Any) -> Artifact:
    return Artifact(row["run_id"], row["path"], row["size"], row["sha256"], row["create_time"])


def _upload(row: Any) -> PendingUpload:
    return PendingUpload(**{k: row[k] for k in PendingUpload.__dataclass_fields__})


def _conflict(run_id: str, path: str) -> AlreadyExists:
    return AlreadyExists(
        "artifacts",
        f"runs/{run_id} already has an artifact at {path!r} with different content; "
        "artifacts are immutable, so log the new content under another path",
        field="path",
    )


class ArtifactStore(SqlStore):
    """Artifact metadata over one async engine. See the module docstring."""

    # ---------------------------------------------------------------- reads

    async def check_run(self, run_id: str) -> None:
        """Raise NotFound unless the run exists."""
        async with self._tx() as conn:
            await self._check_run(conn, run_id)

    async def _check_run(self, conn: AsyncConnection, run_id: str) -> None:
        found = (await conn.execute(select(runs.c.id).where(runs.c.id == run_id))).first()
        if found is None:
            raise NotFound("runs", f"runs/{run_id} not found")

    async def get_blob(self, sha256: str) -> BlobRef | None:
        async with self._tx() as conn:
            return await self._blob(conn, sha256)

    async def _blob(self, conn: AsyncConnection, sha256: str) -> BlobRef | None:
        row = (await conn.execute(select(blobs).where(blobs.c.sha256 == sha256))).mappings().first()
        return None if row is None else BlobRef(row["sha256"], row["size"], row["storage_key"])

    async def get_artifact(self, run_id: str, path: str) -> tuple[Artifact, BlobRef]:
        """The artifact at (run, path) and its blob.

        Raises:
            NotFound: the run or the artifact does not exist.
        """
        stmt = (
            select(artifacts, blobs.c.storage_key)
            .join(blobs, blobs.c.sha256 == artifacts.c.sha256)
            .where(artifacts.c.run_id == run_id, artifacts.c.path == path)
        )
        async with self._tx() as conn:
            row = (await conn.execute(stmt)).mappings().first()
            if row is None:
                await self._check_run(conn, run_id)
                raise NotFound("artifacts", f"runs/{run_id} has no artifact at {path!r}")
        return _artifact(row), BlobRef(row["sha256"], row["size"], row["storage_key"])

    async def find_artifact(self, run_id: str, path: str) -> Artifact | None:
        async with self._tx() as conn:
            row = (
                (
                    await conn.execute(
                        select(artifacts).where(
                            artifacts.c.run_id == run_id, artifacts.c.path == path
                        )
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else _artifact(row)

    async def list_artifacts(
        self, run_id: str, prefix: str, page_size: int, page_token: str
    ) -> Page:
        """Artifacts of a run in path order: all, or ``prefix`` and what is under ``prefix/``.

        Raises:
            NotFound: the run does not exist.
            InvalidArgument(page_token): a token from another query.
        """
        query = fingerprint("artifacts", run_id, prefix)
        stmt = select(artifacts).where(artifacts.c.run_id == run_id)
        if prefix:
            # Keyset range instead of LIKE: paths may hold _ and %. '0' follows '/'.
            stmt = stmt.where(
                (artifacts.c.path == prefix)
                | and_(artifacts.c.path >= prefix + "/", artifacts.c.path < prefix + "0")
            )
        if page_token:
            (last,) = decode_token(page_token, query, 1)
            stmt = stmt.where(artifacts.c.path > str(last))
        stmt = stmt.order_by(artifacts.c.path).limit(page_size + 1)
        async with self._tx() as conn:
            await self._check_run(conn, run_id)
            rows = (await conn.execute(stmt)).mappings().all()
        items = [_artifact(r) for r in rows[:page_size]]
        token = encode_token(query, [items[-1].path]) if len(rows) > page_size else ""
        return Page(items, token)

    async def count(self) -> dict[str, int]:
        """Rows per artifact table (for tests and operators)."""
        from sqlalchemy import func

        out = {}
        async with self._tx() as conn:
            for table in (blobs, artifacts, uploads):
                out[table.name] = (
                    await conn.execute(select(func.count()).select_from(table))
                ).scalar_one()
        return out

    # --------------------------------------------------------------- writes

    async def record_existing(self, run_id: str, path: str, sha256: str) -> Artifact | None:
        """Record (run, path) → the stored blob ``sha256`` without any upload.

        Returns None when no such blob is stored.

        Raises:
            NotFound: the run does not exist.
            AlreadyExists: the path holds different content.
        """
        async with self._tx() as conn:
            await self._check_run(conn, run_id)
            blob = await self._blob(conn, sha256)
            if blob is None:
                return None
            return await self._record(conn, run_id, path, blob)

    async def _record(
        self, conn: AsyncConnection, run_id: str, path: str, blob: BlobRef
    ) -> Artifact:
        row = {
            "run_id": run_id,
            "path": path,
            "sha256": blob.sha256,
            "size": blob.size,
            "create_time": now_ms(),
            "created_by": current_principal().name,
        }
        await conn.execute(self._insert(artifacts).values(row).on_conflict_do_nothing())
        stored = (
            (
                await conn.execute(
                    select(artifacts).where(artifacts.c.run_id == run_id, artifacts.c.path == path)
                )
            )
            .mappings()
            .one()
        )
        if stored["sha256"] != blob.sha256:
            raise _conflict(run_id, path)
        return _artifact(stored)

    async def create_upload(self, upload: PendingUpload) -> tuple[PendingUpload, bool]:
        """Insert a pending upload; (upload, created). A request_id already used returns
        the upload it began (created False).

        Raises:
            NotFound: the run does not exist.
            AlreadyExists: the path already holds different content.
        """
        values = {k: getattr(upload, k) for k in PendingUpload.__dataclass_fields__}
        try:
            async with self._tx() as conn:
                await self._check_run(conn, upload.run_id)
                existing = (
                    (
                        await conn.execute(
                            select(artifacts.c.sha256).where(
                                artifacts.c.run_id == upload.run_id, artifacts.c.path == upload.path
                            )
                        )
                    )
                    .scalars()
                    .first()
                )
                if existing is not None and existing != upload.sha256:
                    raise _conflict(upload.run_id, upload.path)
                await conn.execute(uploads.insert().values(values))
            return upload, True
        except IntegrityError:
            if upload.request_id is None:
                raise
            async with self._tx() as conn:
                row = (
                    (
                        await conn.execute(
                            select(uploads).where(uploads.c.request_id == upload.request_id)
                        )
                    )
                    .mappings()
                    .first()
                )
            if row is None:  # committed or aborted since: nothing pending under that id
                raise NotFound(
                    "uploads", f"upload request {upload.request_id!r} is no longer pending"
                ) from None
            return _upload(row), False

    async def get_upload(self, upload_id: str) -> PendingUpload:
        async with self._tx() as conn:
            row = (
                (await conn.execute(select(uploads).where(uploads.c.id == upload_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(
                "uploads",
                f"upload {upload_id} is not pending (never begun, committed, aborted or "
                "expired); begin a new upload",
            )
        return _upload(row)

    async def delete_upload(self, upload_id: str) -> PendingUpload | None:
        """Remove a pending upload; the removed row, or None when there was none."""
        async with self._tx() as conn:
            row = (
                (await conn.execute(select(uploads).where(uploads.c.id == upload_id)))
                .mappings()
                .first()
            )
            if row is not None:
                await conn.execute(delete(uploads).where(uploads.c.id == upload_id))
        return None if row is None else _upload(row)

    async def commit_upload(self, upload: PendingUpload) -> tuple[Artifact, BlobRef]:
        """In one transaction: drop the pending upload, add its (verified) blob unless the
        same content is already stored, and record the artifact. Returns the artifact and
        the blob that holds it (whose key differs from the upload's when another upload
        stored the content first).

        Raises:
            NotFound: the upload is no longer pending (committed or aborted concurrently).
            AlreadyExists: the path holds different content.
        """
        async with self._tx() as conn:
            gone = await conn.execute(delete(uploads).where(uploads.c.id == upload.id))
            if gone.rowcount != 1:
                raise NotFound("uploads", f"upload {upload.id} is no longer pending")
            await conn.execute(
                self._insert(blobs)
                .values(
                    sha256=upload.sha256,
                    size=upload.size,
                    storage_key=upload.storage_key,
                    create_time=now_ms(),
                )
                .on_conflict_do_nothing()
            )
            blob = await self._blob(conn, upload.sha256)
            assert blob is not None
            return await self._record(conn, upload.run_id, upload.path, blob), blob

    async def expired_uploads(self, now: int, limit: int = 100) -> list[PendingUpload]:
        stmt = select(uploads).where(uploads.c.expire_time < now).limit(limit)
        async with self._tx() as conn:
            return [_upload(r) for r in (await conn.execute(stmt)).mappings().all()]
