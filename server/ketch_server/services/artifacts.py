"""Artifact use cases: validate, plan uploads, verify before recording, serve reads.

Invariants kept here:

* Nothing is recorded before its bytes are verified: a blob row (and so an
  artifact) exists only after the server itself has seen the declared size and
  sha256 (streamed uploads are hashed as they arrive; direct S3 uploads are read
  back and hashed on commit, see :mod:`ketch_server.blobs.s3`).
* Storage keys come from digests and upload ids, never from user paths.
* The server never interprets artifact bytes (no loading, no unpickling).
* A failed, aborted or expired upload leaves no artifact and no blob row, and its
  bytes are deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping

from ketch_server.blobs.base import BlobStore
from ketch_server.blobs.local import LocalBlobStore, content_key
from ketch_server.domain import validation
from ketch_server.domain.artifacts import (
    ARTIFACT_LIMITS,
    Artifact,
    Download,
    PendingUpload,
    UploadMode,
    UploadPlan,
    check_artifact_path,
    check_path_prefix,
    check_sha256,
    check_size,
    plan_parts,
)
from ketch_server.domain.errors import FailedPrecondition, InvalidArgument
from ketch_server.domain.ids import RUN, new_id, parse_name
from ketch_server.domain.models import Page
from ketch_server.domain.validation import LIMITS
from ketch_server.store.artifacts import ArtifactStore
from ketch_server.store.tracking import now_ms

__all__ = ["ArtifactService"]

log = logging.getLogger("ketch.artifacts")

_SWEEP_EVERY_S = 60.0


def _upload_id(value: str) -> str:
    if not value:
        raise InvalidArgument("upload_id", "required: the id BeginUpload returned")
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidArgument("upload_id", "is not an upload id this server issued")
    return value


class ArtifactService:
    """Artifact use cases over one :class:`ArtifactStore` and one :class:`BlobStore`."""

    def __init__(self, store: ArtifactStore, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs
        self._last_sweep = 0.0

    @property
    def _local(self) -> LocalBlobStore | None:
        return self.blobs if isinstance(self.blobs, LocalBlobStore) else None

    def _storage_key(self, sha256: str, upload_id: str) -> str:
        if self._local is not None:
            return content_key(sha256)  # verified before it is renamed into place
        return f"{content_key(sha256)}/{upload_id}"  # one key per upload; see blobs.s3

    # --------------------------------------------------------------- uploads

    async def begin_upload(
        self, run: str, path: str, size: int, sha256: str, request_id: str
    ) -> tuple[Artifact | None, UploadPlan | None]:
        """(artifact, None) when the content is already stored (recorded at once), else
        (None, plan).

        Raises:
            InvalidArgument: run, path, size, sha256 or request_id malformed.
            NotFound: no such run.
            AlreadyExists: the path holds different content.
        """
        run_id = parse_name(run, RUN, field="run")
        check_artifact_path(path)
        check_size(size)
        check_sha256(sha256)
        validation.check_text("request_id", request_id, LIMITS.request_id_chars)
        await self._maybe_sweep()
        stored = await self.store.record_existing(run_id, path, sha256)
        if stored is not None:
            if stored.size != size:
                raise InvalidArgument(
                    "size", f"content {sha256} is {stored.size} bytes, not {size}"
                )
            return stored, None
        now = now_ms()
        upload_id = new_id()
        parts = plan_parts(size)
        upload = PendingUpload(
            id=upload_id,
            run_id=run_id,
            path=path,
            size=size,
            sha256=sha256,
            storage_key=self._storage_key(sha256, upload_id),
            backend_upload_id=None,
            part_size=parts[0].size if len(parts) > 1 else ARTIFACT_LIMITS.part_size,
            request_id=request_id or None,
            create_time=now,
            expire_time=now + ARTIFACT_LIMITS.upload_ttl_ms,
        )
        if self.blobs.presigned:
            backend_id, parts = await asyncio.to_thread(
                self.blobs.presign_put, upload.storage_key, parts, ARTIFACT_LIMITS.url_ttl_s
            )
            upload = dataclasses.replace(upload, backend_upload_id=backend_id)
        upload, created = await self.store.create_upload(upload)
        if not created:  # a retry: sign the same upload's parts again
            if self.blobs.presigned and upload.backend_upload_id != backend_id:
                await asyncio.to_thread(
                    self.blobs.abort_put, self._storage_key(sha256, upload_id), backend_id
                )
            if self.blobs.presigned:
                _, parts = await asyncio.to_thread(
                    self.blobs.presign_put,
                    upload.storage_key,
                    plan_parts(upload.size, upload.part_size),
                    ARTIFACT_LIMITS.url_ttl_s,
                    upload.backend_upload_id,
                )
        return None, self._plan(upload, parts)

    def _plan(self, upload: PendingUpload, parts) -> UploadPlan:
        if self.blobs.presigned:
            return UploadPlan(upload.id, UploadMode.PRESIGNED, parts, 0, upload.expire_time)
        return UploadPlan(
            upload.id, UploadMode.STREAM, [], ARTIFACT_LIMITS.chunk_bytes, upload.expire_time
        )

    async def upload_chunks(self, upload_id: str, chunks: AsyncIterator[bytes]) -> tuple[int, str]:
        """Receive a streamed upload's bytes, checking size and digest as they arrive.
        Returns (bytes received, sha256). On any failure, nothing is kept.

        Raises:
            FailedPrecondition: the upload is presigned, or SIZE_MISMATCH / DIGEST_MISMATCH.
            InvalidArgument(data): a chunk larger than the plan's chunk_bytes.
            NotFound: the upload is not pending.
        """
        upload = await self.store.get_upload(_upload_id(upload_id))
        local = self._local
        if local is None:
            raise FailedPrecondition(
                "this upload goes straight to object storage: PUT the parts to their URLs",
                reason="WRONG_UPLOAD_MODE",
            )
        staged = await asyncio.to_thread(local.stage, upload.id)
        try:
            async for data in chunks:
                if len(data) > ARTIFACT_LIMITS.chunk_bytes:
                    raise InvalidArgument(
                        "data", f"chunks carry at most {ARTIFACT_LIMITS.chunk_bytes} bytes"
                    )
                await asyncio.to_thread(staged.write, data, upload.size)
            digest = await asyncio.to_thread(staged.finish, upload.size, upload.sha256)
        except BaseException:
            staged.discard()
            raise
        return staged.received, digest

    async def commit_upload(self, upload_id: str, etags: Mapping[int, str]) -> Artifact:
        """Verify the upload's bytes and record the artifact.

        Raises:
            FailedPrecondition: UPLOAD_INCOMPLETE (bytes missing; the upload stays pending),
                SIZE_MISMATCH or DIGEST_MISMATCH (the upload is discarded).
            NotFound: the upload is not pending.
            AlreadyExists: the path was given different content meanwhile.
        """
        upload = await self.store.get_upload(_upload_id(upload_id))
        local = self._local
        if local is not None:
            if not await asyncio.to_thread(local.is_staged, upload.id):
                raise FailedPrecondition(
                    f"upload {upload.id} has not received its bytes; send them with UploadChunks",
                    reason="UPLOAD_INCOMPLETE",
                )
            await asyncio.to_thread(local.promote, upload.id, upload.storage_key)
        else:
            await self._verify_remote(upload, etags)
        try:
            artifact, blob = await self.store.commit_upload(upload)
        except BaseException:
            if local is None:
                await self._discard_bytes(upload)
            raise
        if blob.storage_key != upload.storage_key:  # the same content was committed first
            await asyncio.to_thread(self.blobs.delete, upload.storage_key)
        return artifact

    async def _verify_remote(self, upload: PendingUpload, etags: Mapping[int, str]) -> None:
        expected = len(plan_parts(upload.size, upload.part_size))
        if upload.backend_upload_id is not None and sorted(etags) != list(range(1, expected + 1)):
            raise FailedPrecondition(
                f"pass the ETag of each of the {expected} parts", reason="UPLOAD_INCOMPLETE"
            )
        await asyncio.to_thread(
            self.blobs.complete_put, upload.storage_key, upload.backend_upload_id, etags
        )
        stored_size = await asyncio.to_thread(self.blobs.size, upload.storage_key)
        if stored_size is None:
            raise FailedPrecondition(
                f"upload {upload.id} has not received its bytes; PUT them to the URL",
                reason="UPLOAD_INCOMPLETE",
            )
        if stored_size != upload.size:
            await self._fail(
                upload, "SIZE_MISMATCH", f"{stored_size} bytes, declared {upload.size}"
            )
        size, digest = await asyncio.to_thread(self.blobs.digest, upload.storage_key)
        if digest != upload.sha256 or size != upload.size:
            await self._fail(
                upload, "DIGEST_MISMATCH", f"sha256 {digest}, declared {upload.sha256}"
            )

    async def _fail(self, upload: PendingUpload, reason: str, detail: str) -> None:
        await self.store.delete_upload(upload.id)
        await self._discard_bytes(upload)
        raise FailedPrecondition(
            f"upload {upload.id} was discarded: the stored bytes have {detail}", reason=reason
        )

    async def _discard_bytes(self, upload: PendingUpload) -> None:
        local = self._local
        try:
            if local is not None:
                await asyncio.to_thread(local.discard, upload.id)
            else:
                await asyncio.to_thread(
                    self.blobs.abort_put, upload.storage_key, upload.backend_upload_id
                )
        except Exception:  # best effort: a leftover object is garbage, not an artifact
            log.warning("could not discard the bytes of upload %s", upload.id, exc_info=True)

    async def abort_upload(self, upload_id: str) -> None:
        """Forget a pending upload and its bytes. Idempotent."""
        upload = await self.store.delete_upload(_upload_id(upload_id))
        if upload is not None:
            await self._discard_bytes(upload)

    async def _maybe_sweep(self) -> None:
        if time.monotonic() - self._last_sweep < _SWEEP_EVERY_S:
            return
        self._last_sweep = time.monotonic()
        for upload in await self.store.expired_uploads(now_ms()):
            if await self.store.delete_upload(upload.id) is not None:
                await self._discard_bytes(upload)

    # ----------------------------------------------------------------- reads

    async def get_artifact(self, run: str, path: str) -> Artifact:
        run_id = parse_name(run, RUN, field="run")
        check_artifact_path(path)
        artifact, _ = await self.store.get_artifact(run_id, path)
        return artifact

    async def list_artifacts(
        self, run: str, path_prefix: str, page_size: int, page_token: str
    ) -> Page:
        run_id = parse_name(run, RUN, field="run")
        prefix = check_path_prefix(path_prefix)
        size = validation.check_page_size(page_size)
        return await self.store.list_artifacts(run_id, prefix, size, page_token)

    async def download(self, run: str, path: str) -> Download:
        run_id = parse_name(run, RUN, field="run")
        check_artifact_path(path)
        artifact, blob = await self.store.get_artifact(run_id, path)
        url = await asyncio.to_thread(
            self.blobs.presign_get, blob.storage_key, ARTIFACT_LIMITS.url_ttl_s
        )
        expire = now_ms() + ARTIFACT_LIMITS.url_ttl_s * 1000 if url else 0
        return Download(artifact, url or "", expire, ARTIFACT_LIMITS.chunk_bytes)

    async def read(self, run: str, path: str, offset: int) -> AsyncIterator[bytes]:
        """The artifact's bytes from ``offset``, in chunks of at most chunk_bytes."""
        run_id = parse_name(run, RUN, field="run")
        check_artifact_path(path)
        artifact, blob = await self.store.get_artifact(run_id, path)
        if not 0 <= offset <= artifact.size:
            raise InvalidArgument("offset", f"must be between 0 and {artifact.size}")
        chunks = self.blobs.open_read(blob.storage_key, offset, ARTIFACT_LIMITS.chunk_bytes)
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            await asyncio.to_thread(chunks.close)
