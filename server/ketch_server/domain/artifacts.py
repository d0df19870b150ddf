"""Artifacts in the language of the domain: records, upload plans and path rules.

Pure: no protobuf, gRPC, SQL or I/O. Paths are relative, ``/``-separated names under
a run's artifact root; :func:`check_artifact_path` is the one gate every path passes
through before anything is stored. Storage keys are never derived from a path: the
server makes them from digests and upload ids, so a path can name nothing outside
the run's root whatever it holds.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import unicodedata

from ketch_server.domain.errors import InvalidArgument

__all__ = [
    "ARTIFACT_LIMITS",
    "Artifact",
    "ArtifactLimits",
    "BlobRef",
    "Download",
    "PendingUpload",
    "PlannedPart",
    "UploadMode",
    "UploadPlan",
    "check_artifact_path",
    "check_path_prefix",
    "check_sha256",
    "check_size",
    "plan_parts",
]


class ArtifactLimits:
    """Explicit artifact limits (documented in the README)."""

    path_chars = 1024
    segment_chars = 255
    max_size = 5 * 1024**4  # 5 TiB, the S3 object limit
    part_size = 64 * 1024 * 1024  # presigned multipart part size
    max_parts = 10_000  # the S3 multipart limit
    chunk_bytes = 1024 * 1024  # UploadChunks / ReadArtifact message payload
    upload_ttl_ms = 24 * 3600 * 1000
    url_ttl_s = 3600


ARTIFACT_LIMITS = ArtifactLimits()


class UploadMode(enum.Enum):
    STREAM = "STREAM"  # bytes flow through the server into its local store
    PRESIGNED = "PRESIGNED"  # bytes go straight to the object store


@dataclasses.dataclass(frozen=True)
class Artifact:
    run_id: str
    path: str
    size: int
    sha256: str
    create_time: int


@dataclasses.dataclass(frozen=True)
class BlobRef:
    sha256: str
    size: int
    storage_key: str


@dataclasses.dataclass(frozen=True)
class PendingUpload:
    """An upload begun and not yet committed or aborted."""

    id: str
    run_id: str
    path: str
    size: int
    sha256: str
    storage_key: str
    backend_upload_id: str | None
    part_size: int
    request_id: str | None
    create_time: int
    expire_time: int


@dataclasses.dataclass(frozen=True)
class PlannedPart:
    part_number: int
    offset: int
    size: int
    url: str = ""


@dataclasses.dataclass(frozen=True)
class UploadPlan:
    upload_id: str
    mode: UploadMode
    parts: list[PlannedPart]
    chunk_bytes: int
    expire_time: int


@dataclasses.dataclass(frozen=True)
class Download:
    artifact: Artifact
    url: str  # "" when the bytes come through ReadArtifact
    expire_time: int
    chunk_bytes: int


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A URL scheme or a Windows drive at the start: `file:`, `s3:`, `C:`.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# Unicode categories that have no business in a file name: controls, format
# characters (bidi overrides, zero-width joiners), separators, surrogates, private use.
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _reject(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(field, why, reason="INVALID_ARTIFACT_PATH")


def _check_form(field: str, path: str) -> None:
    """The structural rules, applied to the path as given and to its NFKC form."""
    if path.startswith("/") or path.startswith("~"):
        raise _reject(field, "must be relative to the run's artifact root (no leading / or ~)")
    if "\\" in path:
        raise _reject(field, "must use / as separator; backslashes are not allowed")
    if _SCHEME.match(path):
        raise _reject(field, "must be a plain relative path, not a URL, scheme or drive")
    if "?" in path or "#" in path:
        raise _reject(field, "must not contain ? or # (no URL queries or fragments)")
    for segment in path.split("/"):
        if segment == "":
            raise _reject(field, "must not contain empty segments (//) or end with /")
        if segment in (".", ".."):
            raise _reject(field, "must not contain . or .. segments")
        if len(segment) > ARTIFACT_LIMITS.segment_chars:
            raise _reject(
                field,
                f"has a segment of {len(segment)} characters; the limit is "
                f"{ARTIFACT_LIMITS.segment_chars}",
            )


def check_artifact_path(path: str, *, field: str = "path") -> str:
    """Return ``path`` when it is a safe relative artifact path, else raise.

    Rejected: empty, longer than ``path_chars``; absolute (``/x``, ``~``), drive or
    scheme prefixes (``C:``, ``file:``, ``s3:``); backslashes; ``.``/``..`` or empty
    segments (``a//b``, trailing ``/``); ``?`` and ``#``; any percent-encoded byte
    (``%2e%2e``, ``%252e``: artifact paths are not URLs, so encoded forms have no
    legitimate use and are refused outright rather than decoded); NUL, control,
    format and other invisible characters; leading or trailing whitespace. The rules
    are checked on the path and on its NFKC compatibility form, so full-width look-alikes
    (U+FF0E U+FF0E U+FF0F) cannot smuggle a traversal past them.

    Raises:
        InvalidArgument(field, reason INVALID_ARTIFACT_PATH)
    """
    if not path:
        raise _reject(field, "required: a relative path such as model/weights.bin")
    if len(path) > ARTIFACT_LIMITS.path_chars:
        raise _reject(
            field, f"is {len(path)} characters long; the limit is {ARTIFACT_LIMITS.path_chars}"
        )
    for ch in path:
        if ch == "\x00" or unicodedata.category(ch) in _BAD_CATEGORIES:
            raise _reject(field, f"must not contain control or invisible characters ({ch!r})")
    if path != path.strip():
        raise _reject(field, "must not start or end with whitespace")
    if _PERCENT.search(path):
        raise _reject(field, "must not contain percent-encoded characters (e.g. %2e)")
    _check_form(field, path)
    folded = unicodedata.normalize("NFKC", path)
    if folded != path:
        _check_form(field, folded)
        if _PERCENT.search(folded):
            raise _reject(field, "must not contain percent-encoded characters")
    return path


def check_path_prefix(prefix: str, *, field: str = "path_prefix") -> str:
    """A directory to list under: "" for all, else a valid path (a trailing / is dropped)."""
    if not prefix:
        return ""
    return check_artifact_path(prefix[:-1] if prefix.endswith("/") else prefix, field=field)


def check_sha256(value: str, *, field: str = "sha256") -> str:
    if not _SHA256.match(value):
        raise InvalidArgument(field, "must be 64 lowercase hex digits (the sha256 of the content)")
    return value


def check_size(size: int, *, field: str = "size") -> int:
    if size < 0:
        raise InvalidArgument(field, "must not be negative")
    if size > ARTIFACT_LIMITS.max_size:
        raise InvalidArgument(field, f"{size} bytes exceeds the limit of 5 TiB")
    return size


def plan_parts(size: int, part_size: int = ARTIFACT_LIMITS.part_size) -> list[PlannedPart]:
    """Cut ``size`` bytes into consecutive parts of ``part_size`` (grown so that there
    are at most ``max_parts``); an empty file is one empty part."""
    per_part = max(part_size, -(-size // ARTIFACT_LIMITS.max_parts))
    if size == 0:
        return [PlannedPart(1, 0, 0)]
    return [
        PlannedPart(i + 1, offset, min(per_part, size - offset))
        for i, offset in enumerate(range(0, size, per_part))
    ]
