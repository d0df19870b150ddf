"""TrackingService servicer: short methods that convert and delegate.

No error handling here: :mod:`ketch_server.api.errors` translates every domain
error raised below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from ketch.api.v1 import common_pb2, tracking_pb2, tracking_pb2_grpc

from ketch_server.api import convert
from ketch_server.domain.errors import InvalidArgument, OutOfRange
from ketch_server.domain.models import Lifecycle
from ketch_server.services.ingest import Ingest
from ketch_server.services.tracking import TrackingService

__all__ = ["TrackingServicer"]

# Points per ReadMetricHistory response message (~24 bytes each on the wire).
_READ_CHUNK_POINTS = 65_536
# Batches of one stream read ahead of their acks; beyond it, HTTP/2 flow control
# pushes back on the client.
_STREAM_WINDOW = 64
_END = object()


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, service: TrackingService, ingest: Ingest) -> None:
        self.service = service
        self.ingest = ingest

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

    async def StreamMetrics(self, request_iterator, context):
        stats = self.ingest.stats
        stats.stream_opened()
        try:
            async for response in self._stream_metrics(request_iterator):
                yield response
        finally:
            stats.stream_closed()

    async def _stream_metrics(self, request_iterator):
        requests = request_iterator.__aiter__()
        first = await anext(requests, None)
        if first is None or first.WhichOneof("kind") != "open":
            raise InvalidArgument("open", "the first message of a stream must be `open`")
        o = first.open
        run_id, committed = await self.ingest.open(o.run, o.writer_id, o.rank, o.host)
        yield tracking_pb2.StreamMetricsResponse(
            opened=tracking_pb2.StreamOpened(committed_seq=committed)
        )
        pending: asyncio.Queue = asyncio.Queue(_STREAM_WINDOW)
        reader = asyncio.create_task(
            self._read_batches(requests, run_id, o.writer_id, o.rank, committed, pending)
        )
        try:
            while (fut := await pending.get()) is not _END:
                seq = await fut
                yield tracking_pb2.StreamMetricsResponse(
                    ack=tracking_pb2.StreamAck(committed_seq=seq)
                )
            await reader  # re-raises what ended the reading
        finally:
            reader.cancel()

    async def _read_batches(self, requests, run_id, writer_id, rank, committed, pending) -> None:
        """Turn incoming batches into futures of their commit, in order, then _END."""
        expected = committed + 1
        try:
            async for req in requests:
                if req.WhichOneof("kind") != "batch":
                    raise InvalidArgument("batch", "only batches may follow `open`")
                seq = req.batch.seq
                if seq < expected:  # a replay of something already committed
                    fut = asyncio.get_running_loop().create_future()
                    fut.set_result(seq)
                elif seq > expected:
                    raise OutOfRange(
                        f"batch seq {seq} skips ahead: {expected} was expected next; "
                        "resend from the committed seq the server reported",
                        field="batch.seq",
                    )
                else:
                    columns = convert.batch_from_pb(req.batch.batch)
                    fut = self.ingest.submit(run_id, writer_id, seq, columns, rank)
                    expected += 1
                await pending.put(fut)
        except BaseException as exc:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            await pending.put(failed)
            return
        await pending.put(_END)

    async def ReadMetricHistory(self, request, context):
        if request.encoding not in common_pb2.ColumnEncoding.values():
            raise InvalidArgument("encoding", f"unknown column encoding {request.encoding}")
        series = await self.service.read_metric_history(
            request.run,
            list(request.keys),
            request.start_step if request.HasField("start_step") else None,
            request.end_step if request.HasField("end_step") else None,
            runs=list(request.runs),
            max_points=request.max_points,
        )
        encode = (
            convert.series_to_raw_pb
            if request.encoding == common_pb2.COLUMN_ENCODING_RAW_LE
            else convert.series_to_pb
        )
        for pieces in _responses(series):
            yield tracking_pb2.ReadMetricHistoryResponse(series=[encode(*p) for p in pieces])


def _responses(series: list[tuple]) -> Iterator[list[tuple]]:
    """Group series into responses of at most _READ_CHUNK_POINTS points; a longer
    series is cut into consecutive pieces. Every series, even an empty one, is sent."""
    batch: list[tuple] = []
    points = 0
    for run_id, key, *columns in series:
        n = len(columns[0])
        for lo in range(0, max(n, 1), _READ_CHUNK_POINTS):
            size = min(n - lo, _READ_CHUNK_POINTS)
            if batch and points + size > _READ_CHUNK_POINTS:
                yield batch
                batch, points = [], 0
            batch.append((run_id, key, *(c[lo : lo + _READ_CHUNK_POINTS] for c in columns)))
            points += size
    if batch:
        yield batch
