"""Where a run's writes go: the server (online) or only the local spool (offline).

Both sinks take columnar MetricBatch messages, params, tags and the final
state. Neither raises on a transport problem: online, what cannot reach the
server is spooled for ``ketch sync``; offline, everything is spooled.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import threading
import time
import uuid
from collections.abc import Mapping

from google.protobuf import field_mask_pb2

from ketch import _spool, errors
from ketch._client import Client
from ketch._stream import MetricStream
from ketch.api.v1 import common_pb2, tracking_pb2

__all__ = ["DeferredSink", "OfflineSink", "OnlineSink", "state_request"]

log = logging.getLogger("ketch")


def state_request(run_name: str, state: int) -> tracking_pb2.UpdateRunRequest:
    return tracking_pb2.UpdateRunRequest(
        run=tracking_pb2.Run(name=run_name, state=state),
        update_mask=field_mask_pb2.FieldMask(paths=["state"]),
    )


class OnlineSink:
    """Streams batches to the server; spills to the spool while it is unreachable."""

    def __init__(
        self,
        client: Client,
        run_name: str,
        *,
        rank: int = 0,
        spool_root: pathlib.Path | None = None,
        spool: bool = True,
    ) -> None:
        self.client = client
        self.run_name = run_name
        self.rank = rank
        self.writer_id = f"{rank}-{uuid.uuid4().hex}"
        self._spool_root = spool_root
        self._spool_enabled = spool
        self._spool: _spool.SpoolWriter | None = None
        self.stream = MetricStream(
            client._transport,
            run_name,
            writer_id=self.writer_id,
            rank=rank,
            spool=self._make_spool if spool else None,
        )

    def _make_spool(self) -> _spool.SpoolWriter:
        if self._spool is None:
            self._spool = _spool.SpoolWriter.create(
                self._spool_root,
                {
                    "version": 1,
                    "uri": self.client._transport.uri,
                    "run": self.run_name,
                    "writer_id": self.writer_id,
                    "rank": self.rank,
                },
            )
            log.warning(
                "ketch: the server is unreachable; spooling %s to %s until it returns",
                self.run_name,
                self._spool.directory,
            )
        return self._spool

    def send(self, batch: common_pb2.MetricBatch) -> bool:
        return self.stream.submit(batch)

    def flush(self, timeout: float | None) -> bool:
        return self.stream.wait_acked(timeout)

    def log_params(self, params: Mapping[str, str]) -> None:
        self._call(
            "LogParams",
            tracking_pb2.LogParamsRequest(run=self.run_name, params=params),
            _spool.PARAMS,
        )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._call(
            "SetTags", tracking_pb2.SetTagsRequest(run=self.run_name, tags=tags), _spool.TAGS
        )

    def finish(self, state: int | None, timeout: float) -> None:
        """Close the stream, then set ``state`` (None: leave the state as it is)."""
        self.stream.close(timeout)
        if state is not None:
            self._call("UpdateRun", state_request(self.run_name, state), _spool.FINISH)

    def _call(self, method: str, request, record_type: int) -> None:
        """A unary call; while the server is unreachable, spool it instead."""
        try:
            self.client._transport.call(method, request, retries=2)
        except (errors.Unavailable, errors.DeadlineExceeded) as exc:
            if not self._spool_enabled:
                raise
            spool = self._make_spool()
            spool.append(record_type, 0, request.SerializeToString())
            log.warning("ketch: %s spooled (%s); `ketch sync` will send it", method, exc.message)

    @property
    def failure(self) -> errors.KetchError | None:
        return self.stream.failure


class OfflineSink:
    """Writes everything to a spool directory for a later ``ketch sync``."""

    def __init__(self, spool: _spool.SpoolWriter) -> None:
        self.spool = spool
        self._seq = 0
        self.failure: errors.KetchError | None = None

    def send(self, batch: common_pb2.MetricBatch) -> bool:
        self._seq += 1
        self.spool.append(_spool.BATCH, self._seq, batch.SerializeToString())
        return True

    def flush(self, timeout: float | None) -> bool:
        return True

    def log_params(self, params: Mapping[str, str]) -> None:
        req = tracking_pb2.LogParamsRequest(params=params)
        self.spool.append(_spool.PARAMS, 0, req.SerializeToString())

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.spool.append(
            _spool.TAGS, 0, tracking_pb2.SetTagsRequest(tags=tags).SerializeToString()
        )

    def _close(self, state: int | None) -> None:
        if state is not None:
            self.spool.append(_spool.FINISH, 0, state_request("", state).SerializeToString())
        self.spool.close()

    def finish(self, state: int | None, timeout: float) -> None:
        self._close(state)
        log.info(
            "ketch: offline run spooled to %s; upload it with `ketch sync`", self.spool.directory
        )


class DeferredSink(OfflineSink):
    """For a run started while the server was unreachable: writes the spool, and a
    background thread uploads it (incrementally, idempotently) whenever the server
    answers. ``finish`` makes a last upload attempt within ``finish_timeout``; what
    is left stays in the spool for ``ketch sync``."""

    def __init__(
        self,
        spool: _spool.SpoolWriter,
        *,
        uri: str | None,
        finish_timeout: float,
        interval: float = 1.0,
    ) -> None:
        super().__init__(spool)
        self.uri = uri
        self.run_id = ""
        self._finish_timeout = finish_timeout
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._upload_loop, name="ketch-upload", daemon=True)
        self._thread.start()

    def _upload(self) -> bool:
        from ketch import _sync  # _sync imports this module

        with self._lock:
            try:
                result = _sync.sync_spool(self.spool.directory, uri=self.uri)
            except errors.KetchError as exc:
                log.debug("ketch: upload of %s deferred: %s", self.spool.directory, exc)
                return False
        if not self.run_id:
            log.warning(
                "ketch: the server answered; run %s now holds the spooled points", result.run_id
            )
        self.run_id = result.run_id
        return True

    def _upload_loop(self) -> None:
        delay = self._interval
        while not self._stop.wait(delay):
            delay = self._interval if self._upload() else min(delay * 2, 15.0)

    def finish(self, state: int | None, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._close(state)
        deadline = time.monotonic() + timeout
        while not self._upload():
            if time.monotonic() > deadline:
                log.warning(
                    "ketch: the server is still unreachable; run `ketch sync %s` later",
                    self.spool.directory,
                )
                return
            time.sleep(0.5)
        shutil.rmtree(self.spool.directory, ignore_errors=True)
