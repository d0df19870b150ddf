"""``ketch sync``: upload spooled runs (offline runs, or what a run spooled while the
server was away and could not deliver before its process ended).

Idempotent: the run is created with the request id recorded at ``init`` (so a
second sync finds the same run), params and tags are re-applied with the same
values, and batches are replayed under the writer's id and seqs, which the
server acks without writing when it already has them. Syncing twice adds
nothing. Incremental: meta.json remembers how far the spool was delivered, so
a later sync of a spool that grew sends only the new records; a spool whose
run finished is marked synced.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Iterator

import grpc

from ketch import _spool, errors
from ketch._client import Client
from ketch._sinks import state_request
from ketch._stream import points
from ketch._transport import Transport
from ketch.api.v1 import common_pb2, tracking_pb2

__all__ = ["SyncResult", "find_spools", "sync_spool"]

Progress = Callable[[int, int], None]
_ATTEMPTS = 5


@dataclasses.dataclass(frozen=True)
class SyncResult:
    directory: pathlib.Path
    run_id: str
    points: int
    skipped: bool = False


def find_spools(path: pathlib.Path) -> list[pathlib.Path]:
    """Spool directories at ``path``: itself when it is one, else its children."""
    if (path / _spool.META).exists():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if (p / _spool.META).exists())


def sync_spool(
    directory: pathlib.Path,
    *,
    uri: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> SyncResult:
    """Upload one spool directory; returns what was sent (see module docstring).

    Raises:
        ketch.errors.KetchError: the server refused something or cannot be reached;
            running sync again later resumes safely.
    """
    meta = _spool.read_meta(directory)
    done = directory / _spool.SYNCED
    if done.exists() and not force:
        previous = json.loads(done.read_text())
        return SyncResult(directory, previous.get("run_id", ""), 0, skipped=True)
    start = 0 if force else int(meta.get("synced_offset", 0))
    read = list(_spool.read_records(directory, start))
    records = [r for r, _ in read]
    with Client(uri or meta.get("uri") or None) as client:
        run_name = meta.get("run") or _create_run(client, meta, directory)
        points = _replay(client, run_name, meta, records, progress)
    if read:  # what is before this offset is on the server: later syncs skip it
        _spool.write_meta(directory, {**_spool.read_meta(directory), "synced_offset": read[-1][1]})
    run_id = run_name.rpartition("/")[2]
    if any(r.type == _spool.FINISH for r in records) or done.exists():
        done.write_text(json.dumps({"run_id": run_id, "points": points, "time": time.time()}))
    return SyncResult(directory, run_id, points)


def _create_run(client: Client, meta: dict, directory: pathlib.Path) -> str:
    request = tracking_pb2.CreateRunRequest.FromString(base64.b64decode(meta["create_run"]))
    experiment = client.get_or_create_experiment(meta.get("experiment") or "Default")
    request.experiment = f"experiments/{experiment.id}"
    run = client._transport.call("CreateRun", request, retries=5)
    _spool.write_meta(directory, {**meta, "run": run.name})
    return run.name


def _replay(client: Client, run_name: str, meta: dict, records, progress) -> int:
    transport = client._transport
    batches = [r for r in records if r.type == _spool.BATCH]
    for record in records:
        if record.type == _spool.PARAMS:
            req = tracking_pb2.LogParamsRequest.FromString(record.payload)
            req.run = run_name
            transport.call("LogParams", req, retries=5)
        elif record.type == _spool.TAGS:
            req = tracking_pb2.SetTagsRequest.FromString(record.payload)
            req.run = run_name
            transport.call("SetTags", req, retries=5)
    points = _stream(transport, run_name, meta, batches, progress) if batches else 0
    for record in records:
        if record.type == _spool.FINISH:
            state = tracking_pb2.UpdateRunRequest.FromString(record.payload).run.state
            transport.call("UpdateRun", state_request(run_name, state), retries=5)
    return points


def _stream(transport: Transport, run_name: str, meta: dict, batches, progress) -> int:
    """Send every spooled batch under its recorded seq; wait for the last ack."""
    decoded = [(r.seq, common_pb2.MetricBatch.FromString(r.payload)) for r in batches]
    total = sum(points(batch) for _, batch in decoded)

    def requests() -> Iterator[tracking_pb2.StreamMetricsRequest]:
        yield tracking_pb2.StreamMetricsRequest(
            open=tracking_pb2.StreamOpen(
                run=run_name,
                writer_id=meta["writer_id"],
                rank=int(meta.get("rank", 0)),
                host="ketch-sync",
            )
        )
        for seq, batch in decoded:
            yield tracking_pb2.StreamMetricsRequest(
                batch=tracking_pb2.SequencedBatch(seq=seq, batch=batch)
            )

    for attempt in range(_ATTEMPTS):
        try:
            return _send_all(transport, requests(), decoded, total, progress)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == _ATTEMPTS - 1:
                raise errors.from_rpc_error(err) from None
            time.sleep(0.5 * 2**attempt)  # a replay is safe: the server drops duplicates
    raise AssertionError("unreachable")


def _send_all(transport, requests, decoded, total: int, progress) -> int:
    sent, next_batch = 0, 0
    for response in transport.stub.StreamMetrics(requests, wait_for_ready=True, timeout=600):
        if response.WhichOneof("kind") != "ack":
            continue
        while next_batch < len(decoded) and decoded[next_batch][0] <= response.ack.committed_seq:
            sent += points(decoded[next_batch][1])
            next_batch += 1
        if progress:
            progress(sent, total)
    return sent
