"""Artifact transfer for the SDK: hashing, uploads, downloads, model manifests.

Files are never read into memory whole: they are hashed in a first streaming
pass (the server needs the sha256 up front: identical content is not sent again),
then sent in chunks — through the server (``UploadChunks``) for its local store, or
straight to S3 with presigned URLs, the parts of a large file in parallel threads.
Downloads land in a temporary file beside the destination, are hashed while they
are written, and are renamed into place only when size and sha256 match.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import hashlib
import http.client
import json
import os
import pathlib
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc

from ketch import errors
from ketch._transport import Transport
from ketch.api.v1 import artifacts_pb2, artifacts_pb2_grpc

__all__ = ["ArtifactInfo", "ArtifactTransfer", "FileInfo", "file_digest"]

Progress = Callable[[int, int], None]
_READ = 8 * 1024 * 1024
_SEND = 1024 * 1024
_MAX_PARALLEL = 8


@dataclasses.dataclass(frozen=True)
class ArtifactInfo:
    """One stored artifact: its path under the run, size in bytes and sha256."""

    run_id: str
    path: str
    size: int
    sha256: str
    create_time: datetime.datetime | None = None

    @classmethod
    def _from_proto(cls, pb: artifacts_pb2.Artifact) -> ArtifactInfo:
        created = (
            pb.create_time.ToDatetime(datetime.timezone.utc) if pb.create_time.seconds else None
        )
        return cls(pb.run.rpartition("/")[2], pb.path, pb.size, pb.sha256, created)


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """An entry of :meth:`ketch.Client.list_artifacts` (MLflow's shape): a file, or a
    directory (``is_dir``, ``file_size`` None) that holds artifacts."""

    path: str
    is_dir: bool
    file_size: int | None


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 8 MiB pieces."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        buf = bytearray(_READ)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def _run_name(run_id: str) -> str:
    return run_id if run_id.startswith("runs/") else f"runs/{run_id}"


class _Counter:
    """Thread-safe byte counter feeding an optional progress callback."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self._progress = total, 0, progress
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            self.done += n
            self._progress(self.done, self.total)


def _http(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return cls(parts.netloc, timeout=timeout), target


def _http_error(what: str, resp: http.client.HTTPResponse) -> errors.KetchError:
    body = resp.read(2000).decode(errors="replace")
    return errors.Unavailable(
        f"{what} failed: HTTP {resp.status} {resp.reason}: {body}", reason="OBJECT_STORE_ERROR"
    )


class ArtifactTransfer:
    """Artifact calls over one :class:`Transport`. Thread-safe."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @property
    def stub(self) -> artifacts_pb2_grpc.ArtifactServiceStub:
        return self._transport.stub_for(artifacts_pb2_grpc.ArtifactServiceStub)

    def _call(self, method: str, request: Any, *, retries: int = 0, timeout: float | None = None):
        return self._transport.call(
            method,
            request,
            retries=retries,
            timeout=timeout,
            service=artifacts_pb2_grpc.ArtifactServiceStub,
        )

    # ----------------------------------------------------------------- upload

    def upload_file(
        self,
        run_id: str,
        local_path: str | os.PathLike[str],
        path: str,
        *,
        progress: Progress | None = None,
    ) -> ArtifactInfo:
        """Store one file as artifact ``path`` of the run; returns what was recorded.

        Raises:
            ketch.errors.InvalidArgument: an unsafe ``path`` (field ``path``).
            ketch.errors.AlreadyExists: ``path`` already holds different content.
            ketch.errors.FailedPrecondition: the server found other bytes than declared.
        """
        size, digest = file_digest(local_path)
        begin = artifacts_pb2.BeginUploadRequest(
            run=_run_name(run_id),
            path=path,
            size=size,
            sha256=digest,
            request_id=uuid.uuid4().hex,
        )
        resp = self._call("BeginUpload", begin, retries=3)
        if resp.already_stored:
            if progress:
                progress(size, size)
            return ArtifactInfo._from_proto(resp.artifact)
        plan = resp.plan
        counter = _Counter(size, progress)
        try:
            if plan.mode == artifacts_pb2.UPLOAD_MODE_PRESIGNED:
                etags = self._put_parts(local_path, plan, counter)
            else:
                self._stream(local_path, plan, counter)
                etags = []
            commit = artifacts_pb2.CommitUploadRequest(upload_id=plan.upload_id, parts=etags)
            done = self._call("CommitUpload", commit, timeout=max(self._transport.timeout, 600))
        except BaseException:
            with contextlib.suppress(Exception):
                self._call(
                    "AbortUpload", artifacts_pb2.AbortUploadRequest(upload_id=plan.upload_id)
                )
            raise
        return ArtifactInfo._from_proto(done)

    def _stream(self, local_path, plan, counter: _Counter) -> None:
        chunk = min(plan.chunk_bytes or _SEND, _SEND)

        def requests() -> Iterator[artifacts_pb2.UploadChunksRequest]:
            yield artifacts_pb2.UploadChunksRequest(upload_id=plan.upload_id)
            with open(local_path, "rb") as f:
                while data := f.read(chunk):
                    yield artifacts_pb2.UploadChunksRequest(data=data)
                    counter.add(len(data))

        try:
            self.stub.UploadChunks(requests(), timeout=None)
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from None

    def _put_parts(self, local_path, plan, counter: _Counter) -> list[artifacts_pb2.CompletedPart]:
        workers = max(1, min(_MAX_PARALLEL, len(plan.parts)))
        with concurrent.futures.ThreadPoolExecutor(workers, "ketch-upload") as pool:
            futures = [
                pool.submit(self._put_part, local_path, part, counter) for part in plan.parts
            ]
            etags = [f.result() for f in futures]
        return [
            artifacts_pb2.CompletedPart(part_number=p.part_number, etag=etag)
            for p, etag in zip(plan.parts, etags, strict=True)
        ]

    def _put_part(self, local_path, part, counter: _Counter) -> str:
        conn, target = _http(part.url, timeout=max(self._transport.timeout, 60))
        try:
            conn.putrequest("PUT", target, skip_accept_encoding=True)
            conn.putheader("Content-Length", str(part.size))
            conn.putheader("Content-Type", "application/octet-stream")
            conn.endheaders()
            with open(local_path, "rb") as f:
                f.seek(part.offset)
                left = part.size
                while left:
                    data = f.read(min(_SEND, left))
                    if not data:
                        raise errors.FailedPrecondition(
                            f"{local_path} changed while it was being uploaded"
                        )
                    conn.send(data)
                    left -= len(data)
                    counter.add(len(data))
            resp = conn.getresponse()
            if resp.status // 100 != 2:
                raise _http_error(f"uploading part {part.part_number}", resp)
            resp.read()
            return (resp.getheader("ETag") or "").strip('"')
        finally:
            conn.close()

    # --------------------------------------------------------------- download

    def list(self, run_id: str, prefix: str = "", page_size: int = 0) -> Iterator[ArtifactInfo]:
        pages = self._transport.pages(
            "ListArtifacts",
            lambda token: artifacts_pb2.ListArtifactsRequest(
                run=_run_name(run_id), path_prefix=prefix, page_size=page_size, page_token=token
            ),
            service=artifacts_pb2_grpc.ArtifactServiceStub,
        )
        for resp in pages:
            yield from (ArtifactInfo._from_proto(a) for a in resp.artifacts)

    def get(self, run_id: str, path: str) -> ArtifactInfo:
        req = artifacts_pb2.GetArtifactRequest(run=_run_name(run_id), path=path)
        return ArtifactInfo._from_proto(self._call("GetArtifact", req, retries=3))

    def download_file(
        self,
        run_id: str,
        path: str,
        dst: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> pathlib.Path:
        """Fetch artifact ``path`` into file ``dst``; verify size and sha256 first.

        Raises:
            ketch.errors.KetchError(reason DIGEST_MISMATCH): the bytes received are not
                the artifact's; ``dst`` is left untouched.
        """
        req = artifacts_pb2.DownloadArtifactRequest(run=_run_name(run_id), path=path)
        resp = self._call("DownloadArtifact", req, retries=3)
        info = resp.artifact
        dst = pathlib.Path(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".{dst.name}.ketch-{uuid.uuid4().hex[:8]}"
        counter = _Counter(info.size, progress)
        h = hashlib.sha256()
        size = 0
        # Hash in a second thread (hashlib releases the GIL), overlapping the network.
        pending: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        hasher = threading.Thread(
            target=lambda: [h.update(c) for c in iter(pending.get, None)], daemon=True
        )
        hasher.start()
        try:
            with open(tmp, "wb") as f:
                try:
                    for chunk in self._chunks(run_id, path, resp.url):
                        pending.put(chunk)
                        f.write(chunk)
                        size += len(chunk)
                        counter.add(len(chunk))
                finally:
                    pending.put(None)
                    hasher.join()
            if size != info.size or h.hexdigest() != info.sha256:
                raise errors.KetchError(
                    f"downloaded {size} bytes hashing to {h.hexdigest()}, but artifact "
                    f"{path!r} is {info.size} bytes with sha256 {info.sha256}; nothing was "
                    "written, retry the download",
                    reason="DIGEST_MISMATCH",
                )
            os.replace(tmp, dst)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return dst

    def _chunks(self, run_id: str, path: str, url: str) -> Iterator[bytes]:
        if url:
            conn, target = _http(url, timeout=max(self._transport.timeout, 60))
            try:
                conn.request("GET", target)
                resp = conn.getresponse()
                if resp.status != 200:
                    raise _http_error(f"downloading {path!r}", resp)
                while chunk := resp.read(_READ):
                    yield chunk
            finally:
                conn.close()
            return
        req = artifacts_pb2.ReadArtifactRequest(run=_run_name(run_id), path=path)
        try:
            for resp in self.stub.ReadArtifact(req, timeout=None):
                yield resp.data
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from None


# ------------------------------------------------------------------ models

_FLAVORS = (  # (suffix or name, flavor), first match wins
    (".safetensors", "safetensors"),
    (".pt", "pytorch"),
    (".pth", "pytorch"),
    (".ckpt", "pytorch"),
    (".onnx", "onnx"),
    (".keras", "keras"),
    (".h5", "keras"),
    ("saved_model.pb", "tensorflow"),
    (".gguf", "gguf"),
    (".xgb", "xgboost"),
    (".ubj", "xgboost"),
    (".lgb", "lightgbm"),
    (".cbm", "catboost"),
    (".joblib", "sklearn"),
    (".pkl", "pickle"),
    (".pickle", "pickle"),
)


def guess_flavor(files: list[str]) -> str:
    """The framework a model directory most likely belongs to, from file names only
    (nothing is loaded or unpickled). ``config.json`` beside weights means a Hugging
    Face transformers layout."""
    names = {pathlib.PurePosixPath(f).name for f in files}
    if "config.json" in names and any(n.endswith((".safetensors", ".bin")) for n in names):
        return "transformers"
    for f in files:
        for suffix, flavor in _FLAVORS:
            if f.endswith(suffix):
                return flavor
    return "unknown"


def read_signature(root: pathlib.Path) -> dict[str, Any] | None:
    """A signature shipped with the model (``signature.json`` or an ``MLmodel``'s
    signature block as JSON), when there is one; never executes anything."""
    candidate = root / "signature.json"
    if candidate.is_file():
        with contextlib.suppress(ValueError, OSError):
            value = json.loads(candidate.read_text())
            if isinstance(value, dict):
                return value
    return None


def model_manifest(
    name: str,
    flavor: str,
    files: list[ArtifactInfo],
    base: str,
    signature: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "manifest_version": 1,
        "name": name,
        "flavor": flavor,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "files": [
            {"path": f.path.removeprefix(base + "/"), "size": f.size, "sha256": f.sha256}
            for f in files
        ],
        "total_size": sum(f.size for f in files),
        "signature": signature,
        "metadata": metadata or {},
    }


def _join(*parts: str | None) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _files_under(local_dir: pathlib.Path) -> list[pathlib.Path]:
    """Regular files under ``local_dir`` in a stable order; symlinks are not followed
    out of the tree (a link to a file is stored as that file's content)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(local_dir):
        dirnames.sort()
        out.extend(pathlib.Path(dirpath) / f for f in sorted(filenames))
    return [p for p in out if p.is_file()]


class ArtifactMethods:
    """The artifact half of :class:`ketch.Client` (MLflow's names). Needs ``_transport``."""

    _transport: Transport

    @property
    def _artifacts(self) -> ArtifactTransfer:
        transfer = self.__dict__.get("_artifact_transfer")
        if transfer is None:
            transfer = self.__dict__["_artifact_transfer"] = ArtifactTransfer(self._transport)
        return transfer

    def log_artifact(
        self,
        run_id: str,
        local_path: str | os.PathLike[str],
        artifact_path: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> ArtifactInfo:
        """Store file ``local_path`` as ``<artifact_path>/<file name>`` of the run.

        Identical content already on the server (any run) is not sent again.

        Raises:
            ketch.errors.InvalidArgument: unsafe ``artifact_path`` (``..``, absolute, ...).
            ketch.errors.AlreadyExists: that path already holds different content.
        """
        local = pathlib.Path(local_path)
        if not local.is_file():
            raise errors.InvalidArgument(
                f"{local} is not a file; use log_artifacts for a directory",
                metadata={"field": "local_path"},
            )
        path = _join(artifact_path, local.name)
        return self._artifacts.upload_file(run_id, local, path, progress=progress)

    def log_artifacts(
        self,
        run_id: str,
        local_dir: str | os.PathLike[str],
        artifact_path: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[ArtifactInfo]:
        """Store every file under ``local_dir`` below ``artifact_path``, keeping the tree."""
        root = pathlib.Path(local_dir)
        if not root.is_dir():
            raise errors.InvalidArgument(
                f"{root} is not a directory", metadata={"field": "local_dir"}
            )
        files = _files_under(root)
        total = sum(f.stat().st_size for f in files)
        done = [0]

        def each(n: int, _total: int, base: int) -> None:
            if progress:
                progress(base + n, total)

        out = []
        for f in files:
            rel = f.relative_to(root).as_posix()
            base = done[0]
            out.append(
                self._artifacts.upload_file(
                    run_id,
                    f,
                    _join(artifact_path, rel),
                    progress=lambda n, t, b=base: each(n, t, b),
                )
            )
            done[0] += f.stat().st_size
        return out

    def iter_artifacts(self, run_id: str, path: str | None = None) -> Iterator[ArtifactInfo]:
        """Every artifact of the run (recursively under ``path``), in path order."""
        return self._artifacts.list(run_id, (path or "").strip("/"))

    def get_artifact(self, run_id: str, path: str) -> ArtifactInfo:
        return self._artifacts.get(run_id, path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The direct children of directory ``path`` ("" or None: the root), MLflow style:
        files with their size, and sub-directories (``is_dir``)."""
        base = (path or "").strip("/")
        seen: dict[str, FileInfo] = {}
        for a in self.iter_artifacts(run_id, base):
            if a.path == base:  # `path` names a file
                return [FileInfo(a.path, False, a.size)]
            rest = a.path[len(base) + 1 :] if base else a.path
            head, sep, _ = rest.partition("/")
            child = _join(base, head)
            if child not in seen:
                seen[child] = FileInfo(child, True, None) if sep else FileInfo(child, False, a.size)
        return list(seen.values())

    def download_artifacts(
        self,
        run_id: str,
        path: str = "",
        dst_path: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
    ) -> str:
        """Download artifact ``path`` (a file, or a directory with everything under it;
        "" for all) into ``dst_path`` (default: the current directory). Each file's size
        and sha256 are verified before it is put in place. Returns the local path of
        the file or directory.

        Raises:
            ketch.errors.NotFound: the run has nothing at ``path``.
        """
        base = path.strip("/")
        dst = pathlib.Path(dst_path or ".")
        items = list(self.iter_artifacts(run_id, base))
        if not items:
            raise errors.NotFound(f"runs/{run_id} has no artifact at {path!r}")
        total = sum(a.size for a in items)
        done = 0
        for a in items:
            if a.path == base:
                target = dst / pathlib.PurePosixPath(base).name
            else:
                rel = a.path[len(base) + 1 :] if base else a.path
                target = dst / (pathlib.PurePosixPath(base).name if base else "") / rel
            # Paths were validated by the server; check again before touching the disk.
            if not target.resolve().is_relative_to(dst.resolve()):
                raise errors.InvalidArgument(f"refusing to write outside {dst}: {a.path!r}")
            self._artifacts.download_file(
                run_id,
                a.path,
                target,
                progress=(lambda n, t, b=done: progress(b + n, total)) if progress else None,
            )
            done += a.size
        if len(items) == 1 and items[0].path == base:
            return str(dst / pathlib.PurePosixPath(base).name)
        return str(dst / pathlib.PurePosixPath(base).name) if base else str(dst)

    def log_model(
        self,
        run_id: str,
        path_or_dir: str | os.PathLike[str],
        name: str,
        *,
        flavor: str | None = None,
        signature: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> ArtifactInfo:
        """Store a model (a file or a directory) under ``models/<name>/`` plus a manifest
        ``models/<name>/MLmodel.json``: every file's path, size and sha256, the flavor
        (given, or guessed from file names: nothing is imported or unpickled), the
        signature (given, or a ``signature.json`` shipped in the directory) and
        ``metadata``. Returns the manifest's artifact record.
        """
        src = pathlib.Path(path_or_dir)
        base = _join("models", name)
        if src.is_dir():
            files = self.log_artifacts(run_id, src, base, progress=progress)
            sig = signature if signature is not None else read_signature(src)
        else:
            files = [self.log_artifact(run_id, src, base, progress=progress)]
            sig = signature
        rel = [f.path.removeprefix(base + "/") for f in files]
        manifest = model_manifest(name, flavor or guess_flavor(rel), files, base, sig, metadata)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="ketch-model-") as tmp:
            out = pathlib.Path(tmp) / "MLmodel.json"
            out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            return self._artifacts.upload_file(run_id, out, _join(base, "MLmodel.json"))
