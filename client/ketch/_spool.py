"""The local spool: an append-only, checksummed, fsynced log of a run's writes.

A spool directory holds ``meta.json`` (which run, which writer, where to send)
and ``records.bin``, a sequence of records::

    magic "KSP1" | type u8 | crc32 u32 | seq i64 | length u32 | payload

``crc32`` covers type, seq and payload. Each append is fsynced before it
returns, so a record that was written survives a crash of the process or the
machine. A torn tail (a crash mid-append) is detected by its length or
checksum and ignored by readers: everything before it is intact.

Record types: BATCH (a MetricBatch, with the seq the writer gave it), PARAMS
and TAGS (LogParams/SetTags maps), FINISH (the final run state).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BATCH",
    "FINISH",
    "PARAMS",
    "TAGS",
    "Record",
    "SpoolWriter",
    "default_root",
    "read_meta",
    "read_records",
]

BATCH, PARAMS, TAGS, FINISH = 1, 2, 3, 4
_MAGIC = b"KSP1"
_HEADER = struct.Struct("<4sBIqI")
_MAX_PAYLOAD = 256 * 1024 * 1024
META = "meta.json"
RECORDS = "records.bin"
SYNCED = "synced.json"


def default_root() -> pathlib.Path:
    """KETCH_SPOOL_DIR, else ~/.ketch/spool."""
    root = os.environ.get("KETCH_SPOOL_DIR")
    return pathlib.Path(root) if root else pathlib.Path.home() / ".ketch" / "spool"


@dataclasses.dataclass(frozen=True)
class Record:
    type: int
    seq: int
    payload: bytes


class SpoolWriter:
    """Appends records to one spool directory. Thread-safe.

    Args:
        directory: created if missing.
        meta: written to meta.json once (JSON-able); merged with what is there.
    """

    def __init__(self, directory: pathlib.Path, meta: dict[str, Any]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        write_meta(directory, {**read_meta(directory), **meta})
        self._lock = threading.Lock()
        self._file = open(directory / RECORDS, "ab")  # noqa: SIM115 - closed in close()
        self.bytes_written = 0

    @classmethod
    def create(cls, root: pathlib.Path | None, meta: dict[str, Any]) -> SpoolWriter:
        """A new spool directory under ``root`` (default :func:`default_root`)."""
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        return cls((root or default_root()) / name, meta)

    def append(self, type_: int, seq: int, payload: bytes) -> None:
        """Append one record and fsync it; returns only once it is on disk."""
        header = _HEADER.pack(_MAGIC, type_, _crc(type_, seq, payload), seq, len(payload))
        with self._lock:
            self._file.write(header + payload)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.bytes_written += len(header) + len(payload)

    def update_meta(self, **changes: Any) -> None:
        with self._lock:
            write_meta(self.directory, {**read_meta(self.directory), **changes})

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def _crc(type_: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<Bq", type_, seq)))


def read_records(directory: pathlib.Path, offset: int = 0) -> Iterator[tuple[Record, int]]:
    """Yield (record, offset after it) from ``offset``; stop quietly at a torn tail."""
    path = directory / RECORDS
    if not path.exists():
        return
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            magic, type_, crc, seq, length = _HEADER.unpack(header)
            if magic != _MAGIC or length > _MAX_PAYLOAD:
                return
            payload = f.read(length)
            if len(payload) < length or _crc(type_, seq, payload) != crc:
                return
            offset += _HEADER.size + length
            yield Record(type_, seq, payload), offset


def read_meta(directory: pathlib.Path) -> dict[str, Any]:
    try:
        return json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return {}


def write_meta(directory: pathlib.Path, meta: dict[str, Any]) -> None:
    """Replace meta.json atomically (write, fsync, rename)."""
    tmp = directory / f".{META}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / META)
