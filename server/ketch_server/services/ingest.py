"""Streaming ingest: validation, sequencing and group commit of metric batches.

:class:`Ingest` is shared by every open stream of a server. Each submitted
batch lands in the commit lane of its writer; a lane drains everything queued
(up to a bound) into ONE transaction, so concurrent streams share commits and
the group size grows with load. A lane is sequential, so a writer's batches
commit in seq order. The future returned by :meth:`Ingest.submit` resolves
only after the commit: an ack sent then is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib

from ketch_server.domain import validation
from ketch_server.domain.errors import InvalidArgument, KetchError, Unavailable
from ketch_server.domain.ids import RUN, parse_name
from ketch_server.domain.models import MetricColumns, SequencedBatch
from ketch_server.store.tracking import TrackingStore
from ketch_server.telemetry import ServerStats

__all__ = ["Ingest"]

log = logging.getLogger("ketch.ingest")

_Item = tuple[SequencedBatch, asyncio.Future]


class Ingest:
    """Group commit of streamed batches over ``lanes`` parallel transactions.

    Args:
        store: where batches are committed.
        lanes: concurrent commit loops (1 suits SQLite, whose writes serialize anyway).
        max_group_points: a group stops growing at this many points.
        stats: counts commits, points and commit latency (a private one when None).
    """

    def __init__(
        self,
        store: TrackingStore,
        *,
        lanes: int = 1,
        max_group_points: int = 500_000,
        stats: ServerStats | None = None,
    ) -> None:
        self.store = store
        self.stats = stats or ServerStats()
        self.max_group_points = max_group_points
        self._queues: list[asyncio.Queue[_Item]] = [asyncio.Queue() for _ in range(lanes)]
        self._tasks: list[asyncio.Task] = []
        self.committed_points = 0
        self.committed_groups = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._lane(q), name=f"ketch-commit-{i}")
            for i, q in enumerate(self._queues)
        ]

    async def stop(self) -> None:
        """Stop the lanes; batches still queued fail with Unavailable (never acked)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self._queues:
            while not queue.empty():
                _, fut = queue.get_nowait()
                if not fut.done():
                    fut.set_exception(Unavailable("the server is shutting down; reconnect"))

    async def open(self, run: str, writer_id: str, rank: int, host: str) -> tuple[str, int]:
        """Validate a stream opening; return (run_id, the writer's committed seq)."""
        run_id = parse_name(run, RUN, field="open.run")
        validation.check_display_name("open.writer_id", writer_id)
        if len(writer_id) > 128:
            raise InvalidArgument("open.writer_id", "at most 128 characters")
        validation.check_text("open.host", host, 256)
        if rank < 0:
            raise InvalidArgument("open.rank", "must not be negative")
        return run_id, await self.store.open_stream(run_id, writer_id, rank, host)

    def submit(self, run_id: str, writer_id: str, seq: int, columns: MetricColumns, rank: int = 0):
        """Queue a validated batch; the returned future resolves once it is committed."""
        validation.check_metric_columns(columns)
        fut = asyncio.get_running_loop().create_future()
        lane = zlib.crc32(f"{run_id}/{writer_id}".encode()) % len(self._queues)
        self._queues[lane].put_nowait((SequencedBatch(run_id, writer_id, seq, columns, rank), fut))
        return fut

    async def _lane(self, queue: asyncio.Queue[_Item]) -> None:
        while True:
            group = [await queue.get()]
            points = len(group[0][0].columns)
            while not queue.empty() and points < self.max_group_points:
                item = queue.get_nowait()
                group.append(item)
                points += len(item[0].columns)
            await self._commit(group)

    async def _commit(self, group: list[_Item]) -> None:
        points = sum(len(b.columns) for b, _ in group)
        started = time.perf_counter()
        try:
            with self.stats.commit_span(len(group), points):
                await self.store.commit_sequenced([b for b, _ in group])
        except KetchError as exc:
            writers = {(b.run_id, b.writer_id) for b, _ in group}
            if len(writers) == 1:
                _fail(group, exc)
                return
            # One writer's problem must not fail the others: commit writer by writer.
            for writer in writers:
                await self._commit([i for i in group if (i[0].run_id, i[0].writer_id) == writer])
            return
        except Exception as exc:
            log.error("group commit of %d batches failed", len(group), exc_info=exc)
            _fail(group, exc)
            return
        self.committed_points += points
        self.committed_groups += 1
        self.stats.record_commit(points, time.perf_counter() - started)
        for batch, fut in group:
            if not fut.done():
                fut.set_result(batch.seq)


def _fail(group: list[_Item], exc: BaseException) -> None:
    for _, fut in group:
        if not fut.done():
            fut.set_exception(exc)
