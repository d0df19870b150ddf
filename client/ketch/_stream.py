"""The SDK side of StreamMetrics: one long-lived stream per writer, with resume.

:class:`MetricStream` numbers batches (seq 1, 2, ...), keeps each batch until
the server acks it, and on a connection failure reconnects with backoff and
resends what is unacked; the server acks a replayed batch without writing it
again, so every point is stored exactly once per writer.

Memory is bounded by ``window`` batches. When the window is full and the
server is reachable, ``submit`` waits (backpressure). When the server is not
reachable, batches go to the local spool instead (fsynced, see ``_spool``),
together with the unacked batches still in memory, and are read back and sent
once the server returns. Invariant: every seq below the first one in memory or
in the spool is committed on the server.
"""

from __future__ import annotations

import collections
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from ketch import _spool, errors
from ketch._transport import Transport
from ketch.api.v1 import common_pb2, tracking_pb2

__all__ = ["MetricStream", "points"]

log = logging.getLogger("ketch")

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_CLOSE = object()


class MetricStream:
    """Sends the MetricBatch messages of one run as writer ``writer_id``. Thread-safe.

    Args:
        transport: the SDK transport (its channel is shared with unary calls).
        run_name: ``runs/{id}``.
        window: batches held in memory until acked.
        spool: makes the spool to spill into while the server is unreachable
            (None: never spill; ``submit`` waits instead).
    """

    def __init__(
        self,
        transport: Transport,
        run_name: str,
        *,
        writer_id: str | None = None,
        rank: int = 0,
        window: int = 32,
        spool: Callable[[], _spool.SpoolWriter] | None = None,
    ) -> None:
        self._transport = transport
        self.writer_id = writer_id or uuid.uuid4().hex
        self._open = tracking_pb2.StreamMetricsRequest(
            open=tracking_pb2.StreamOpen(
                run=run_name, writer_id=self.writer_id, rank=rank, host=socket.gethostname()[:256]
            )
        )
        self._window = window
        self._unacked: collections.OrderedDict[int, common_pb2.MetricBatch] = (
            collections.OrderedDict()
        )
        self._next_seq = 1
        self._cond = threading.Condition()
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing = False
        self._connected = False
        self._make_spool = spool
        self.spool: _spool.SpoolWriter | None = None
        self._spool_offset = 0  # where the next spooled batch to move to memory starts
        self._spool_max_seq = 0
        self._spooled = 0  # spooled batches not yet moved back to memory
        self.failure: errors.KetchError | None = None
        self.reconnects = 0
        self.acked_points = 0
        self.spooled_points = 0
        self._thread = threading.Thread(target=self._run, name="ketch-stream", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producer

    def submit(self, batch: common_pb2.MetricBatch, timeout: float | None = None) -> bool:
        """Queue a batch. Waits while the window is full and the server is reachable;
        spills to the spool while it is not. False on timeout or after a failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.failure is None:
                if not self._spooled and len(self._unacked) < self._window:
                    seq = self._take_seq()
                    self._unacked[seq] = batch
                    self._outbox.put(_request(seq, batch))
                    return True
                if self._spooled or (not self._connected and self._make_spool):
                    self._spill(self._take_seq(), batch)
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.2 if left is None else min(left, 0.2))
            return False

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _spill(self, seq: int, batch: common_pb2.MetricBatch) -> None:
        """Append to the spool (caller holds the lock); start one when needed."""
        self._spool_unacked()
        self._append(seq, batch)
        self._spooled += 1

    def _spool_unacked(self) -> None:
        """Make sure the spool holds every unacked batch in memory (caller holds the lock),
        so that it alone has everything not yet committed."""
        if self.spool is None:
            self.spool = self._make_spool()  # type: ignore[misc]
            self._spool_max_seq = 0
        for seq, batch in self._unacked.items():
            if seq > self._spool_max_seq:
                self._append(seq, batch)
        if not self._spooled:
            self._spool_offset = self.spool.bytes_written

    def _append(self, seq: int, batch: common_pb2.MetricBatch) -> None:
        self.spool.append(_spool.BATCH, seq, batch.SerializeToString())  # type: ignore[union-attr]
        self._spool_max_seq = seq
        self.spooled_points += points(batch)

    def _refill(self) -> None:
        """Move spooled batches back into the in-memory window (caller holds the lock)."""
        if not self._spooled or self.spool is None:
            return
        records = _spool.read_records(self.spool.directory, self._spool_offset)
        while self._spooled and len(self._unacked) < self._window:
            record, self._spool_offset = next(records)
            batch = common_pb2.MetricBatch.FromString(record.payload)
            self._unacked[record.seq] = batch
            self._outbox.put(_request(record.seq, batch))
            self._spooled -= 1

    def wait_acked(self, timeout: float | None = None) -> bool:
        """Block until every submitted batch is acked (durable). False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (not self._unacked and not self._spooled) or self.failure is not None,
                timeout,
            )

    @property
    def pending(self) -> int:
        """Batches submitted but not yet acked (in memory or spooled)."""
        return len(self._unacked) + self._spooled

    def close(self, timeout: float = 30.0) -> bool:
        """Wait up to ``timeout`` for acks, then end the stream. True when all were acked.

        What is still unacked then is spooled (when a spool is allowed) so that
        ``ketch sync`` can deliver it later.
        """
        done = self.wait_acked(timeout)
        with self._cond:
            if not done and self.failure is None and self._make_spool:
                self._spool_unacked()
            self._closing = True
            self._outbox.put(_CLOSE)
            self._cond.notify_all()
        self._thread.join(5)
        if not done and self.spool is not None:
            log.warning(
                "ketch: the server did not confirm %d points of %s within %.0fs; they are in the "
                "spool %s: run `ketch sync` to upload them",
                self.spooled_points,
                self._open.open.run,
                timeout,
                self.spool.directory,
            )
        elif not done:
            log.error(
                "ketch: %d batches of %s were not confirmed stored",
                self.pending,
                self._open.open.run,
            )
        return done

    # ------------------------------------------------------------ connection

    def _requests(self, outbox: queue.SimpleQueue):
        yield self._open
        while (item := outbox.get()) is not _CLOSE:
            yield item

    def _connect(self) -> queue.SimpleQueue:
        """A fresh outbox primed with every unacked batch, in seq order."""
        with self._cond:
            outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
            for seq, batch in self._unacked.items():
                outbox.put(_request(seq, batch))
            self._outbox = outbox
            self._refill()
            if self._closing:
                outbox.put(_CLOSE)
            return outbox

    def _run(self) -> None:
        delay = 0.1
        while True:
            outbox = self._connect()
            try:
                for response in self._transport.stub.StreamMetrics(self._requests(outbox)):
                    self._handle(response)
                    delay = 0.1
                if self._closing:
                    return
            except grpc.RpcError as err:
                self._set_connected(False)
                if err.code() not in _RETRYABLE:
                    self._fail(errors.from_rpc_error(err))
                    return
                if self._closing:
                    return
                log.warning(
                    "ketch stream interrupted (%s); %d batches will be resent in %.1fs",
                    err.code().name,
                    self.pending,
                    delay,
                )
            outbox.put(_CLOSE)  # ends the old request generator
            self.reconnects += 1
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _handle(self, response: tracking_pb2.StreamMetricsResponse) -> None:
        kind = response.WhichOneof("kind")
        if kind == "ack":
            self._acked(response.ack.committed_seq)
        elif kind == "opened":
            self._set_connected(True)
            self._acked(response.opened.committed_seq)
        elif kind == "control":
            log.warning("ketch server says: %s", response.control.reason)

    def _set_connected(self, connected: bool) -> None:
        with self._cond:
            self._connected = connected
            self._cond.notify_all()

    def _acked(self, seq: int) -> None:
        with self._cond:
            while self._unacked and next(iter(self._unacked)) <= seq:
                _, batch = self._unacked.popitem(last=False)
                self.acked_points += points(batch)
            self._refill()
            if self.spool is not None and not self._unacked and not self._spooled:
                self._retire_spool()
            self._cond.notify_all()

    def _retire_spool(self) -> None:
        """Everything spooled is committed: remove the spool (caller holds the lock)."""
        spool, self.spool = self.spool, None
        spool.close()  # type: ignore[union-attr]
        for name in (_spool.RECORDS, _spool.META):
            (spool.directory / name).unlink(missing_ok=True)  # type: ignore[union-attr]
        try:
            spool.directory.rmdir()  # type: ignore[union-attr]
        except OSError:
            pass

    def _fail(self, exc: errors.KetchError) -> None:
        with self._cond:
            lost = sum(points(b) for b in self._unacked.values())
            self.failure = exc
            self._cond.notify_all()
        log.error(
            "ketch: the server refused the metric stream of %s: %s (%d points not stored)",
            self._open.open.run,
            exc,
            lost,
        )


def points(batch: common_pb2.MetricBatch) -> int:
    """Points in a batch, whether its columns are repeated fields or raw bytes."""
    return len(batch.values) or len(batch.values_le) // 8


def _request(seq: int, batch: common_pb2.MetricBatch) -> tracking_pb2.StreamMetricsRequest:
    return tracking_pb2.StreamMetricsRequest(
        batch=tracking_pb2.SequencedBatch(seq=seq, batch=batch)
    )
