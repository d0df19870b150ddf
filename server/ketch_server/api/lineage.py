"""LineageService servicer: short methods that convert and delegate.

No error handling here: :mod:`ketch_server.api.errors` translates every domain
error raised below.
"""

from __future__ import annotations

from ketch.api.v1 import lineage_pb2, lineage_pb2_grpc

from ketch_server.api import convert
from ketch_server.api import lineage_convert as lc
from ketch_server.services.lineage import LineageService

__all__ = ["LineageServicer"]


class LineageServicer(lineage_pb2_grpc.LineageServiceServicer):
    def __init__(self, service: LineageService) -> None:
        self.service = service

    async def CreateDataset(self, request, context):
        dataset = await self.service.create_dataset(lc.dataset_from_pb(request.dataset))
        return lc.dataset_to_pb(dataset)

    async def GetDataset(self, request, context):
        return lc.dataset_to_pb(await self.service.get_dataset(lc.dataset_key_from_pb(request)))

    async def LogInputs(self, request, context):
        nodes = await self.service.log_inputs(
            request.run, lc.entities_from_pb(request.inputs, field="inputs")
        )
        return lineage_pb2.LogInputsResponse(nodes=[lc.node_to_pb(n) for n in nodes])

    async def LogOutputs(self, request, context):
        nodes = await self.service.log_outputs(
            request.run, lc.entities_from_pb(request.outputs, field="outputs")
        )
        return lineage_pb2.LogOutputsResponse(nodes=[lc.node_to_pb(n) for n in nodes])

    async def GetLineage(self, request, context):
        nodes, edges = await self.service.get_lineage(
            lc.node_ref_from_pb(request.node),
            lc.direction_from_pb(request.direction),
            request.depth,
            request.max_nodes,
        )
        return lineage_pb2.GetLineageResponse(
            nodes=[lc.node_to_pb(n) for n in nodes], edges=[lc.edge_to_pb(e) for e in edges]
        )

    async def ForkRun(self, request, context):
        run = await self.service.fork_run(
            request.source_run,
            request.step,
            display_name=request.display_name,
            request_id=request.request_id,
            user=request.user,
        )
        return convert.run_to_pb(run)
