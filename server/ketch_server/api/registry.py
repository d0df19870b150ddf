"""RegistryService servicer: short methods that convert and delegate.

The acting principal is the authenticated caller of the RPC
(:func:`ketch_server.domain.identity.current_principal`, bound by the auth
interceptor), passed explicitly to the service; request bodies never name it.
No error handling here: :mod:`ketch_server.api.errors` translates every domain
error raised below.
"""

from __future__ import annotations

from ketch.api.v1 import registry_pb2, registry_pb2_grpc

from ketch_server.api import registry_convert as rc
from ketch_server.domain.identity import current_principal
from ketch_server.domain.registry import Stage
from ketch_server.services.registry import RegistryService

__all__ = ["RegistryServicer"]


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, service: RegistryService) -> None:
        self.service = service

    # -------------------------------------------------------------- models

    async def CreateModel(self, request, context):
        model = await self.service.create_model(
            current_principal(),
            request.model_id,
            description=request.model.description,
            tags=dict(request.model.tags),
            request_id=request.request_id,
        )
        return rc.model_to_pb(model)

    async def GetModel(self, request, context):
        return rc.model_to_pb(await self.service.get_model(request.name))

    async def ListModels(self, request, context):
        page = await self.service.list_models(request.page_size, request.page_token)
        return registry_pb2.ListModelsResponse(
            models=[rc.model_to_pb(m) for m in page.items], next_page_token=page.next_page_token
        )

    async def UpdateModel(self, request, context):
        m = request.model
        model = await self.service.update_model(
            current_principal(),
            m.name,
            {"description": m.description, "tags": dict(m.tags)},
            list(request.update_mask.paths),
            request.etag,
        )
        return rc.model_to_pb(model)

    # ------------------------------------------------------------ versions

    async def CreateModelVersion(self, request, context):
        version = await self.service.create_version(
            current_principal(),
            request.parent,
            request.source_run,
            request.source_path,
            description=request.description,
            tags=dict(request.tags),
            request_id=request.request_id,
        )
        return rc.version_to_pb(version)

    async def GetModelVersion(self, request, context):
        return rc.version_to_pb(await self.service.get_version(request.name))

    async def ListModelVersions(self, request, context):
        page = await self.service.list_versions(
            request.parent,
            rc.stage_from_pb(request.stage, field="stage", required=False),
            request.page_size,
            request.page_token,
        )
        return registry_pb2.ListModelVersionsResponse(
            model_versions=[rc.version_to_pb(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateModelVersion(self, request, context):
        v = request.model_version
        version = await self.service.update_version(
            current_principal(),
            v.name,
            {"description": v.description, "tags": dict(v.tags)},
            list(request.update_mask.paths),
            request.etag,
        )
        return rc.version_to_pb(version)

    async def ResolveModelVersion(self, request, context):
        return rc.version_to_pb(await self.service.resolve(request.uri))

    # ------------------------------------------------------------- aliases

    async def SetAlias(self, request, context):
        version = await self.service.set_alias(
            current_principal(), request.model, request.alias, request.version, request.etag
        )
        return rc.version_to_pb(version)

    async def DeleteAlias(self, request, context):
        model = await self.service.delete_alias(
            current_principal(), request.model, request.alias, request.etag
        )
        return rc.model_to_pb(model)

    # ------------------------------------------------------------- policies

    async def GetPolicy(self, request, context):
        return rc.policy_to_pb(*await self.service.get_policy(request.name))

    async def SetStagePolicy(self, request, context):
        policy = rc.stage_policy_from_pb(request.policy)
        return rc.policy_to_pb(
            *await self.service.set_policy(current_principal(), request.model, policy)
        )

    # ---------------------------------------------------------- transitions

    async def RequestTransition(self, request, context):
        req = await self.service.request_transition(
            current_principal(),
            request.model_version,
            _target(request.target_stage, "target_stage"),
            comment=request.comment,
            request_id=request.request_id,
            etag=request.etag,
        )
        return rc.request_to_pb(req)

    async def GetTransitionRequest(self, request, context):
        return rc.request_to_pb(await self.service.get_request(request.name))

    async def ListTransitionRequests(self, request, context):
        page = await self.service.list_requests(
            request.model, rc.state_from_pb(request.state), request.page_size, request.page_token
        )
        return registry_pb2.ListTransitionRequestsResponse(
            requests=[rc.request_to_pb(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def Approve(self, request, context):
        req = await self.service.approve(
            current_principal(),
            request.name,
            request.comment,
            rc.evidence_from_pb(request.evidence),
        )
        return rc.request_to_pb(req)

    async def Reject(self, request, context):
        req = await self.service.reject(current_principal(), request.name, request.reason)
        return rc.request_to_pb(req)

    async def CancelTransitionRequest(self, request, context):
        req = await self.service.cancel(current_principal(), request.name, request.reason)
        return rc.request_to_pb(req)

    async def TransitionStage(self, request, context):
        version = await self.service.transition_stage(
            current_principal(),
            request.name,
            _target(request.stage, "stage"),
            request.comment,
            request.etag,
        )
        return rc.version_to_pb(version)

    # ---------------------------------------------------------------- audit

    async def GetAuditLog(self, request, context):
        page = await self.service.audit_log(
            current_principal(),
            request.model,
            rc.actions_from_pb(request.actions),
            request.page_size,
            request.page_token,
        )
        return registry_pb2.GetAuditLogResponse(
            events=[rc.event_to_pb(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def WatchRegistry(self, request, context):
        events = self.service.watch(
            current_principal(),
            request.from_cursor,
            list(request.models),
            rc.actions_from_pb(request.actions),
            start_at_end=request.start_at_end,
        )
        async for event in events:
            yield rc.event_to_pb(event)


def _target(value: int, field: str) -> Stage:
    stage = rc.stage_from_pb(value, field=field)
    assert stage is not None
    return stage
