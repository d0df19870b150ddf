"""The embedded blob store: a content-addressed directory tree.

Layout under ``root``::

    sha256/ab/cd/<digest>     committed blobs (the key is the content's address)
    tmp/<upload id>.part      an upload being received
    tmp/<upload id>.ok        an upload received whole and verified, awaiting commit

Every write goes to a temporary file in ``tmp/`` (same file system), is fsynced and
renamed into place, and the directory is fsynced: a crash leaves either the whole
blob or none of it. Bytes flow through the server (no presigned URLs).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping

from ketch_server.domain.artifacts import PlannedPart
from ketch_server.domain.errors import FailedPrecondition, InvalidArgument

__all__ = ["LocalBlobStore", "StagedUpload", "content_key"]

_KEY = re.compile(r"^sha256/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


def content_key(sha256: str) -> str:
    """The local key of a blob: ``sha256/ab/cd/<digest>``."""
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedUpload:
    """One upload being received into ``tmp/``: write chunks, then :meth:`finish`.

    Not thread-safe; one writer per upload.
    """

    def __init__(self, store: LocalBlobStore, upload_id: str) -> None:
        self._store = store
        self.path = store._staging(upload_id, "part")
        self.done = store._staging(upload_id, "ok")
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in finish/discard
        self._hash = hashlib.sha256()
        self.received = 0

    def write(self, data: bytes, limit: int) -> None:
        """Append ``data``; FailedPrecondition once more than ``limit`` bytes arrive."""
        self.received += len(data)
        if self.received > limit:
            raise FailedPrecondition(
                f"received more than the declared {limit} bytes", reason="SIZE_MISMATCH"
            )
        self._hash.update(data)
        self._file.write(data)

    def finish(self, size: int, sha256: str) -> str:
        """Check size and digest, fsync, and mark the upload verified; return the digest.

        Raises:
            FailedPrecondition: SIZE_MISMATCH or DIGEST_MISMATCH (the bytes are discarded).
        """
        digest = self._hash.hexdigest()
        if self.received != size:
            self.discard()
            raise FailedPrecondition(
                f"received {self.received} bytes, declared {size}", reason="SIZE_MISMATCH"
            )
        if digest != sha256:
            self.discard()
            raise FailedPrecondition(
                f"the bytes received hash to {digest}, not the declared {sha256}",
                reason="DIGEST_MISMATCH",
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.path, self.done)
        return digest

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class LocalBlobStore:
    """Blobs in a directory (see the module docstring). Thread-safe."""

    presigned = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = pathlib.Path(root).resolve()
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    # ------------------------------------------------------------ helpers

    def _path(self, key: str) -> pathlib.Path:
        if not _KEY.match(key):  # keys are made by the server; anything else is a bug
            raise ValueError(f"not a local blob key: {key!r}")
        return self.root / key

    def _staging(self, upload_id: str, suffix: str) -> pathlib.Path:
        if not _UPLOAD_ID.match(upload_id):
            raise InvalidArgument("upload_id", "is not an upload id this server issued")
        return self.root / "tmp" / f"{upload_id}.{suffix}"

    def _install(self, tmp: pathlib.Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        _fsync_dir(target.parent)

    # ---------------------------------------------------------- contract

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
        tmp = self.root / "tmp" / f"put-{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    digest.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            self._install(tmp, key)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return size, digest.hexdigest()

    def open_read(self, key: str, offset: int = 0, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        with open(self._path(key), "rb") as f:
            f.seek(offset)
            while chunk := f.read(chunk_bytes):
                yield chunk

    def digest(self, key: str) -> tuple[int, str]:
        h = hashlib.sha256()
        size = 0
        for chunk in self.open_read(key, chunk_bytes=4 << 20):
            h.update(chunk)
            size += len(chunk)
        return size, h.hexdigest()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def presign_put(self, key: str, parts: list[PlannedPart], ttl_s: int, backend_upload_id=None):
        raise NotImplementedError("the local store receives bytes through UploadChunks")

    def complete_put(self, key: str, backend_upload_id: str | None, etags: Mapping[int, str]):
        raise NotImplementedError("the local store receives bytes through UploadChunks")

    def abort_put(self, key: str, backend_upload_id: str | None) -> None:
        return None

    def presign_get(self, key: str, ttl_s: int) -> str | None:
        return None

    # ------------------------------------------------- streamed uploads

    def stage(self, upload_id: str) -> StagedUpload:
        """Start receiving the bytes of ``upload_id`` (any earlier attempt is replaced)."""
        return StagedUpload(self, upload_id)

    def is_staged(self, upload_id: str) -> bool:
        """Whether ``upload_id`` was received whole and verified."""
        return self._staging(upload_id, "ok").is_file()

    def promote(self, upload_id: str, key: str) -> None:
        """Move a verified upload to its content address (atomic; same content may
        already be there, which the rename replaces with identical bytes)."""
        self._install(self._staging(upload_id, "ok"), key)

    def discard(self, upload_id: str) -> None:
        """Forget the bytes of ``upload_id``, verified or not; idempotent."""
        for suffix in ("part", "ok"):
            with contextlib.suppress(FileNotFoundError):
                self._staging(upload_id, suffix).unlink()
