"""TrackingService servicer: short methods that convert and delegate.

No error handling here: :mod:`ketch_server.api.errors` translates every domain
error raised below.
"""

from __future__ import annotations

from ketch.api.v1 import tracking_pb2, tracking_pb2_grpc

from ketch_server.api import convert
from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.models import Lifecycle
from ketch_server.services.tracking import TrackingService

__all__ = ["TrackingServicer"]

# Points per ReadMetricHistory response message (~24 bytes each on the wire).
_READ_CHUNK_POINTS = 65_536


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, service: TrackingService) -> None:
        self.service = service

    # --------------------------------------------------------- experiments

    async def CreateExperiment(self, request, context):
        exp = await self.service.create_experiment(request.display_name, request.description)
        return convert.experiment_to_pb(exp)

    async def GetExperiment(self, request, context):
        return convert.experiment_to_pb(await self.service.get_experiment(request.name))

    async def GetExperimentByName(self, request, context):
        exp = await self.service.get_experiment_by_name(request.display_name)
        return convert.experiment_to_pb(exp)

    async def ListExperiments(self, request, context):
        page = await self.service.list_experiments(
            request.page_size, request.page_token, convert.view_from_pb(request.view)
        )
        return tracking_pb2.ListExperimentsResponse(
            experiments=[convert.experiment_to_pb(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateExperiment(self, request, context):
        e = request.experiment
        exp = await self.service.update_experiment(
            e.name,
            {"display_name": e.display_name, "description": e.description},
            list(request.update_mask.paths),
            request.etag,
        )
        return convert.experiment_to_pb(exp)

    async def DeleteExperiment(self, request, context):
        exp = await self.service.set_experiment_lifecycle(
            request.name, Lifecycle.DELETED, request.etag
        )
        return convert.experiment_to_pb(exp)

    async def UndeleteExperiment(self, request, context):
        exp = await self.service.set_experiment_lifecycle(
            request.name, Lifecycle.ACTIVE, request.etag
        )
        return convert.experiment_to_pb(exp)

    # ---------------------------------------------------------------- runs

    async def CreateRun(self, request, context):
        start = (
            convert.timestamp_from_pb(request.start_time, field="start_time")
            if request.HasField("start_time")
            else None
        )
        run = await self.service.create_run(
            request.experiment,
            display_name=request.display_name,
            parent_run=request.parent_run,
            user=request.user,
            params=dict(request.params),
            tags=dict(request.tags),
            source=convert.source_from_pb(request.source),
            environment=convert.environment_from_pb(request.environment),
            request_id=request.request_id,
            start_time=start,
        )
        return convert.run_to_pb(run)

    async def GetRun(self, request, context):
        return convert.run_to_pb(await self.service.get_run(request.name))

    async def UpdateRun(self, request, context):
        r = request.run
        paths = list(request.update_mask.paths)
        state = convert.state_from_pb(r.state, field="run.state")
        if "state" in paths and state is None:
            raise InvalidArgument("run.state", "must be RUNNING, FINISHED, FAILED or KILLED")
        end = (
            convert.timestamp_from_pb(request.end_time, field="end_time")
            if request.HasField("end_time")
            else None
        )
        run = await self.service.update_run(
            r.name, {"display_name": r.display_name, "state": state}, paths, request.etag, end
        )
        return convert.run_to_pb(run)

    async def DeleteRun(self, request, context):
        run = await self.service.set_run_lifecycle(request.name, Lifecycle.DELETED)
        return convert.run_to_pb(run)

    async def UndeleteRun(self, request, context):
        run = await self.service.set_run_lifecycle(request.name, Lifecycle.ACTIVE)
        return convert.run_to_pb(run)

    async def SearchRuns(self, request, context):
        page = await self.service.search_runs(
            list(request.experiments),
            request.filter,
            list(request.order_by),
            request.page_size,
            request.page_token,
            convert.view_from_pb(request.view),
        )
        return tracking_pb2.SearchRunsResponse(
            runs=[convert.run_to_pb(r) for r in page.items], next_page_token=page.next_page_token
        )

    # ---------------------------------------------------- params, tags, metrics

    async def LogParams(self, request, context):
        await self.service.log_params(request.run, dict(request.params))
        return tracking_pb2.LogParamsResponse()

    async def SetTags(self, request, context):
        await self.service.set_tags(request.run, dict(request.tags))
        return tracking_pb2.SetTagsResponse()

    async def DeleteTag(self, request, context):
        await self.service.delete_tag(request.run, request.key)
        return tracking_pb2.DeleteTagResponse()

    async def LogMetrics(self, request, context):
        written = await self.service.log_metrics(request.run, convert.batch_from_pb(request.batch))
        return tracking_pb2.LogMetricsResponse(points_written=written)

    async def ReadMetricHistory(self, request, context):
        series = await self.service.read_metric_history(
            request.run,
            list(request.keys),
            request.start_step if request.HasField("start_step") else None,
            request.end_step if request.HasField("end_step") else None,
        )
        for key, steps, timestamps, values in series:
            for lo in range(0, max(len(steps), 1), _READ_CHUNK_POINTS):
                hi = lo + _READ_CHUNK_POINTS
                yield tracking_pb2.ReadMetricHistoryResponse(
                    series=[
                        convert.series_to_pb(key, steps[lo:hi], timestamps[lo:hi], values[lo:hi])
                    ]
                )
