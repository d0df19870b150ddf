"""ArtifactService servicer: short methods that convert and delegate.

Errors are translated by :mod:`ketch_server.api.errors`.
"""

from __future__ import annotations

from ketch.api.v1 import artifacts_pb2, artifacts_pb2_grpc

from ketch_server.api import artifact_convert as convert
from ketch_server.domain.errors import InvalidArgument
from ketch_server.services.artifacts import ArtifactService

__all__ = ["ArtifactServicer"]


class ArtifactServicer(artifacts_pb2_grpc.ArtifactServiceServicer):
    def __init__(self, service: ArtifactService) -> None:
        self.service = service

    async def BeginUpload(self, request, context):
        artifact, plan = await self.service.begin_upload(
            request.run, request.path, request.size, request.sha256, request.request_id
        )
        if artifact is not None:
            return artifacts_pb2.BeginUploadResponse(
                already_stored=True, artifact=convert.artifact_to_pb(artifact)
            )
        return artifacts_pb2.BeginUploadResponse(plan=convert.plan_to_pb(plan))

    async def UploadChunks(self, request_iterator, context):
        requests = request_iterator.__aiter__()
        first = await anext(requests, None)
        if first is None or not first.upload_id:
            raise InvalidArgument("upload_id", "the first message must name the upload")

        async def data():
            yield first.data
            async for req in requests:
                yield req.data

        received, digest = await self.service.upload_chunks(first.upload_id, data())
        return artifacts_pb2.UploadChunksResponse(received_bytes=received, sha256=digest)

    async def CommitUpload(self, request, context):
        artifact = await self.service.commit_upload(
            request.upload_id, convert.etags_from_pb(request.parts)
        )
        return convert.artifact_to_pb(artifact)

    async def AbortUpload(self, request, context):
        await self.service.abort_upload(request.upload_id)
        return artifacts_pb2.AbortUploadResponse()

    async def GetArtifact(self, request, context):
        artifact = await self.service.get_artifact(request.run, request.path)
        return convert.artifact_to_pb(artifact)

    async def ListArtifacts(self, request, context):
        page = await self.service.list_artifacts(
            request.run, request.path_prefix, request.page_size, request.page_token
        )
        return artifacts_pb2.ListArtifactsResponse(
            artifacts=[convert.artifact_to_pb(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def DownloadArtifact(self, request, context):
        return convert.download_to_pb(await self.service.download(request.run, request.path))

    async def ReadArtifact(self, request, context):
        async for chunk in self.service.read(request.run, request.path, request.offset):
            yield artifacts_pb2.ReadArtifactResponse(data=chunk)
