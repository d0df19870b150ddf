"""The SDK side of StreamMetrics: one long-lived stream per writer, with resume.

:class:`MetricStream` numbers batches (seq 1, 2, ...), keeps every batch until
the server acks it (a bounded window: ``submit`` blocks when it is full), and
on any connection failure reconnects with backoff and resends the unacked
batches. The server acks a replayed batch without writing it again, so every
point is stored exactly once per writer.
"""

from __future__ import annotations

import collections
import logging
import queue
import socket
import threading
import time
import uuid
from typing import Any

import grpc

from ketch import errors
from ketch._transport import Transport
from ketch.api.v1 import common_pb2, tracking_pb2

__all__ = ["MetricStream"]

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
    """Sends MetricBatch messages of one run as writer ``writer_id``. Thread-safe.

    Args:
        transport: the SDK transport (its channel is shared with unary calls).
        run_name: ``runs/{id}``.
        window: batches in flight before ``submit`` blocks.
    """

    def __init__(
        self,
        transport: Transport,
        run_name: str,
        *,
        writer_id: str | None = None,
        rank: int = 0,
        window: int = 32,
    ) -> None:
        self._transport = transport
        self._open = tracking_pb2.StreamMetricsRequest(
            open=tracking_pb2.StreamOpen(
                run=run_name,
                writer_id=writer_id or uuid.uuid4().hex,
                rank=rank,
                host=socket.gethostname()[:256],
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
        self.failure: errors.KetchError | None = None
        self.reconnects = 0
        self.acked_points = 0
        self._thread = threading.Thread(target=self._run, name="ketch-stream", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producer

    def submit(self, batch: common_pb2.MetricBatch, timeout: float | None = None) -> bool:
        """Queue a batch; blocks while the window is full. False if it timed out."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: len(self._unacked) < self._window or self.failure is not None, timeout
            ):
                return False
            if self.failure is not None:
                return False
            seq = self._next_seq
            self._next_seq += 1
            self._unacked[seq] = batch
            self._outbox.put(_request(seq, batch))
        return True

    def wait_acked(self, timeout: float | None = None) -> bool:
        """Block until every submitted batch is acked (durable). False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._unacked or self.failure is not None, timeout
            )

    @property
    def pending(self) -> int:
        return len(self._unacked)

    def close(self, timeout: float = 30.0) -> bool:
        """Wait up to ``timeout`` for acks, then end the stream. True when all were acked."""
        done = self.wait_acked(timeout)
        with self._cond:
            self._closing = True
            self._outbox.put(_CLOSE)
            self._cond.notify_all()
        self._thread.join(5)
        if not done:
            log.error(
                "ketch: %d batches of %s were not acknowledged within %.0fs; "
                "they were not confirmed stored",
                len(self._unacked),
                self._open.open.run,
                timeout,
            )
        return done

    # ------------------------------------------------------------ connection

    def _requests(self, outbox: queue.SimpleQueue):
        yield self._open
        while (item := outbox.get()) is not _CLOSE:
            yield item

    def _connect(self) -> queue.SimpleQueue:
        """A fresh outbox primed with every unacked batch (replayed in seq order)."""
        with self._cond:
            outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
            for seq, batch in self._unacked.items():
                outbox.put(_request(seq, batch))
            if self._closing:
                outbox.put(_CLOSE)
            self._outbox = outbox
            return outbox

    def _run(self) -> None:
        delay = 0.1
        while True:
            outbox = self._connect()
            try:
                for response in self._transport.stub.StreamMetrics(self._requests(outbox)):
                    if response.WhichOneof("kind") == "ack":
                        self._acked(response.ack.committed_seq)
                        delay = 0.1
                    elif response.WhichOneof("kind") == "control":
                        log.warning("ketch server says: %s", response.control.reason)
                if self._closing:
                    return
            except grpc.RpcError as err:
                if err.code() not in _RETRYABLE:
                    self._fail(errors.from_rpc_error(err))
                    return
                if self._closing and not self._unacked:
                    return
                log.warning(
                    "ketch stream interrupted (%s); %d batches will be resent in %.1fs",
                    err.code().name,
                    len(self._unacked),
                    delay,
                )
            outbox.put(_CLOSE)  # ends the old request generator
            self.reconnects += 1
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _acked(self, seq: int) -> None:
        with self._cond:
            while self._unacked and next(iter(self._unacked)) <= seq:
                _, batch = self._unacked.popitem(last=False)
                self.acked_points += len(batch.values)
            self._cond.notify_all()

    def _fail(self, exc: errors.KetchError) -> None:
        with self._cond:
            lost = sum(len(b.values) for b in self._unacked.values())
            self.failure = exc
            self._cond.notify_all()
        log.error(
            "ketch: the server refused the metric stream of %s: %s (%d points not stored)",
            self._open.open.run,
            exc,
            lost,
        )


def _request(seq: int, batch: common_pb2.MetricBatch) -> tracking_pb2.StreamMetricsRequest:
    return tracking_pb2.StreamMetricsRequest(
        batch=tracking_pb2.SequencedBatch(seq=seq, batch=batch)
    )
