"""Blobs in an S3-compatible object store (AWS S3, MinIO, ...) via the ``minio`` client.

Clients send and fetch bytes directly with presigned URLs; the server only signs
URLs, drives multipart uploads and verifies. Each upload goes to its own key,
``<prefix>/sha256/ab/cd/<digest>/<upload id>``: nothing a client sends can overwrite
a committed blob, and the ``blobs`` table maps each digest to the one key that
holds it (a duplicate committed by a concurrent upload is deleted).

Verification: S3 ETags are not sha256 digests, and a multipart upload's checksums
(``x-amz-checksum-sha256``) are per part, combined into a checksum of checksums, not
the sha256 of the whole object. So :meth:`S3BlobStore.digest` streams the object back
once and hashes it on the server before the artifact is recorded. That costs one
read of the object inside the object store's network on commit; it is what makes
content addressing trustworthy when clients cannot be.
"""

from __future__ import annotations

import hashlib
import io
import queue
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ketch_server.domain.artifacts import PlannedPart
from ketch_server.domain.errors import FailedPrecondition

if TYPE_CHECKING:
    from ketch_server.settings import Settings

__all__ = ["S3BlobStore", "parse_s3_target"]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def parse_s3_target(target: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (bucket, "some/prefix").

    Raises:
        SystemExit: with what to write instead, when it is not such a URL.
    """
    parts = urlsplit(target)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if parts.scheme != "s3" or not _BUCKET.match(bucket) or parts.query or parts.fragment:
        raise SystemExit(f"ketch: --artifacts {target!r} is not s3://bucket[/prefix]")
    return bucket, prefix


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterable of chunks (for minio's put_object)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._buf:
            chunk = next(self._it, None)
            if chunk is None:
                return 0
            self.hash.update(chunk)
            self.size += len(chunk)
            self._buf = chunk
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class S3BlobStore:
    """Blobs in ``bucket`` under ``prefix`` (see the module docstring). Thread-safe."""

    presigned = True

    def __init__(self, client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if not client.bucket_exists(bucket):
            from minio.error import S3Error

            try:
                client.make_bucket(bucket)
            except S3Error as exc:  # created concurrently by another replica
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        try:
            from minio import Minio
        except ImportError:
            raise SystemExit(
                "ketch: --artifacts s3://... needs the minio client: pip install 'ketch[s3]'"
            ) from None
        bucket, prefix = parse_s3_target(settings.artifacts or "")
        endpoint = settings.s3_endpoint or "s3.amazonaws.com"
        parsed = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        secure = settings.s3_secure if parsed.scheme == "" else parsed.scheme == "https"
        client = Minio(
            parsed.netloc,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region,
            secure=secure,
        )
        return cls(client, bucket, prefix)

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    def object_name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    # ---------------------------------------------------------- contract

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        from minio.error import S3Error

        try:
            return self.client.stat_object(self.bucket, self.object_name(key)).size
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"):
                return None
            raise

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
        reader = _ChunkReader(chunks)
        self.client.put_object(
            self.bucket, self.object_name(key), reader, length=-1, part_size=64 * 1024 * 1024
        )
        return reader.size, reader.hash.hexdigest()

    def open_read(self, key: str, offset: int = 0, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        from minio.error import S3Error

        try:
            resp = self.client.get_object(self.bucket, self.object_name(key), offset=offset)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                raise FileNotFoundError(key) from exc
            raise
        try:
            yield from resp.stream(chunk_bytes)
        finally:
            resp.close()
            resp.release_conn()

    def digest(self, key: str) -> tuple[int, str]:
        """(size, sha256) of a stored object, read back once. A reader thread keeps the
        next chunks coming while this one hashes (both release the GIL), so the pass
        takes about as long as the slower of the two rather than their sum."""
        chunks: queue.Queue = queue.Queue(maxsize=4)

        def read() -> None:
            try:
                for chunk in self.open_read(key, chunk_bytes=8 << 20):
                    chunks.put(chunk)
                chunks.put(None)
            except BaseException as exc:
                chunks.put(exc)

        reader = threading.Thread(target=read, name="ketch-s3-digest", daemon=True)
        reader.start()
        h, size = hashlib.sha256(), 0
        while (chunk := chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            h.update(chunk)
            size += len(chunk)
        reader.join()
        return size, h.hexdigest()

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self.object_name(key))

    def presign_put(
        self,
        key: str,
        parts: list[PlannedPart],
        ttl_s: int,
        backend_upload_id: str | None = None,
    ) -> tuple[str | None, list[PlannedPart]]:
        name, ttl = self.object_name(key), timedelta(seconds=ttl_s)
        if len(parts) == 1:
            url = self.client.get_presigned_url("PUT", self.bucket, name, expires=ttl)
            return None, [PlannedPart(1, parts[0].offset, parts[0].size, url)]
        upload_id = backend_upload_id or self.client._create_multipart_upload(self.bucket, name, {})
        signed = [
            PlannedPart(
                p.part_number,
                p.offset,
                p.size,
                self.client.get_presigned_url(
                    "PUT",
                    self.bucket,
                    name,
                    expires=ttl,
                    extra_query_params={"partNumber": str(p.part_number), "uploadId": upload_id},
                ),
            )
            for p in parts
        ]
        return upload_id, signed

    def complete_put(
        self, key: str, backend_upload_id: str | None, etags: Mapping[int, str]
    ) -> None:
        if backend_upload_id is None:
            return  # a single PUT is complete when it returns
        from minio.datatypes import Part
        from minio.error import S3Error

        parts = [Part(n, etags[n].strip('"')) for n in sorted(etags)]
        try:
            self.client._complete_multipart_upload(
                self.bucket, self.object_name(key), backend_upload_id, parts
            )
        except S3Error as exc:
            raise FailedPrecondition(
                f"the object store refused to complete the upload ({exc.code}: {exc.message}); "
                "send every part and pass each part's ETag",
                reason="UPLOAD_INCOMPLETE",
            ) from exc

    def abort_put(self, key: str, backend_upload_id: str | None) -> None:
        from minio.error import S3Error

        if backend_upload_id is not None:
            try:
                self.client._abort_multipart_upload(
                    self.bucket, self.object_name(key), backend_upload_id
                )
            except S3Error as exc:
                if exc.code != "NoSuchUpload":
                    raise
        self.delete(key)

    def presign_get(self, key: str, ttl_s: int) -> str | None:
        return self.client.get_presigned_url(
            "GET", self.bucket, self.object_name(key), expires=timedelta(seconds=ttl_s)
        )
