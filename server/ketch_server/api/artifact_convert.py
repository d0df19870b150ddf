"""Pure conversions between artifact domain objects and ``artifacts_pb2`` messages."""

from __future__ import annotations

from ketch.api.v1 import artifacts_pb2

from ketch_server.api.convert import timestamp_to_pb
from ketch_server.domain.artifacts import Artifact, Download, UploadMode, UploadPlan

__all__ = ["artifact_to_pb", "download_to_pb", "etags_from_pb", "plan_to_pb"]

_MODES = {
    UploadMode.STREAM: artifacts_pb2.UPLOAD_MODE_STREAM,
    UploadMode.PRESIGNED: artifacts_pb2.UPLOAD_MODE_PRESIGNED,
}


def artifact_to_pb(a: Artifact) -> artifacts_pb2.Artifact:
    return artifacts_pb2.Artifact(
        name=f"runs/{a.run_id}/artifacts/{a.path}",
        run=f"runs/{a.run_id}",
        path=a.path,
        size=a.size,
        sha256=a.sha256,
        create_time=timestamp_to_pb(a.create_time),
    )


def plan_to_pb(p: UploadPlan) -> artifacts_pb2.UploadPlan:
    return artifacts_pb2.UploadPlan(
        upload_id=p.upload_id,
        mode=_MODES[p.mode],
        parts=[
            artifacts_pb2.UploadPart(
                part_number=part.part_number, offset=part.offset, size=part.size, url=part.url
            )
            for part in p.parts
        ],
        chunk_bytes=p.chunk_bytes,
        expire_time=timestamp_to_pb(p.expire_time),
    )


def download_to_pb(d: Download) -> artifacts_pb2.DownloadArtifactResponse:
    return artifacts_pb2.DownloadArtifactResponse(
        artifact=artifact_to_pb(d.artifact),
        url=d.url,
        expire_time=timestamp_to_pb(d.expire_time) if d.expire_time else None,
        chunk_bytes=d.chunk_bytes,
    )


def etags_from_pb(parts) -> dict[int, str]:
    return {p.part_number: p.etag for p in parts}
