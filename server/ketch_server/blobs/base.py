"""The blob store contract shared by the local directory and S3.

Blob stores are synchronous (the service calls them in worker threads) and
thread-safe. Keys are made by the server only (never from a user path). A key
becomes visible to :meth:`BlobStore.exists` / :meth:`BlobStore.open_read` only
once its bytes are complete: a local write goes to a temporary file that is
fsynced and renamed into place; an S3 object appears when its PUT or multipart
upload completes. The relational store decides which blobs exist as far as the
API is concerned (the ``blobs`` table); a key with no row is garbage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ketch_server.domain.artifacts import PlannedPart

if TYPE_CHECKING:
    from ketch_server.settings import Settings

__all__ = ["BlobStore", "open_blob_store"]


@runtime_checkable
class BlobStore(Protocol):
    """Where artifact bytes live.

    Attributes:
        presigned: True when clients send and fetch bytes directly with presigned URLs
            (S3); False when bytes flow through the server (the local directory).
    """

    presigned: bool

    def exists(self, key: str) -> bool:
        """Whether a complete blob is stored under ``key``."""

    def size(self, key: str) -> int | None:
        """The size of the blob at ``key``, or None when there is none."""

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
        """Store ``chunks`` under ``key`` atomically; return (size, sha256 hex)."""

    def open_read(self, key: str, offset: int = 0, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Yield the bytes of ``key`` from ``offset`` in chunks of at most ``chunk_bytes``.

        Raises:
            FileNotFoundError: no blob at ``key``.
        """

    def digest(self, key: str) -> tuple[int, str]:
        """(size, sha256 hex) of the blob at ``key``, computed by reading it once."""

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is absent."""

    def presign_put(
        self,
        key: str,
        parts: list[PlannedPart],
        ttl_s: int,
        backend_upload_id: str | None = None,
    ) -> tuple[str | None, list[PlannedPart]]:
        """Prepare a direct upload of ``parts`` to ``key``: (backend upload id or None for
        a single PUT, the parts with their URLs). Only when ``presigned``. Passing the
        ``backend_upload_id`` of an earlier call signs the same upload's parts again."""

    def complete_put(self, key: str, backend_upload_id: str | None, etags: Mapping[int, str]):
        """Finish a direct upload (complete the multipart upload).

        Raises:
            FailedPrecondition(UPLOAD_INCOMPLETE): parts are missing or ETags are wrong.
        """

    def abort_put(self, key: str, backend_upload_id: str | None) -> None:
        """Discard a direct upload and any bytes it sent; idempotent."""

    def presign_get(self, key: str, ttl_s: int) -> str | None:
        """A URL to GET ``key`` directly, or None when bytes come through the server."""


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name: ``s3://bucket/prefix`` or the local default
    (``<data_dir>/artifacts``, or a plain directory given as ``artifacts``)."""
    target = settings.artifacts or ""
    if target.startswith("s3://"):
        from ketch_server.blobs.s3 import S3BlobStore

        return S3BlobStore.from_settings(settings)
    from ketch_server.blobs.local import LocalBlobStore

    root = target.removeprefix("file://") if target else settings.data_dir / "artifacts"
    return LocalBlobStore(root)
