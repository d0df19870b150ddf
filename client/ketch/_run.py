"""Runs in training code: ``ketch.init`` and the :class:`Run` handle.

``Run.log`` appends to in-memory column buffers and returns; a background
thread hands columnar batches to the run's sink: the server's metric stream
(online) or the local spool (offline). Memory is bounded: when
``max_buffered_points`` are waiting, ``log`` waits for the sender; while the
server is unreachable the stream spills to the spool instead, so points are
never dropped silently.
"""

from __future__ import annotations

import base64
import collections
import logging
import math
import numbers
import os
import pathlib
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ketch import _distributed, _lifecycle, _repro, _spool, _system, _wire, errors
from ketch._client import Client, _param_str
from ketch._config import resolve_mode
from ketch._sinks import DeferredSink, OfflineSink, OnlineSink
from ketch._stream import points
from ketch._types import RunRecord

__all__ = ["Run", "active_run", "finish", "init", "log", "log_params", "set_seed", "set_tags"]

log_ = logging.getLogger("ketch")

_STATES = {"RUNNING": 1, "FINISHED": 2, "FAILED": 3, "KILLED": 4}
_KEY = re.compile(r"^[A-Za-z0-9_\-. /:@=+]{1,250}$")

_active: Run | None = None
_active_lock = threading.Lock()


class Run:
    """A live run. Create it with :func:`ketch.init`; it is also a context manager.

    Thread-safe: any thread may call ``log``. Logging never raises into the
    training loop (unless ``strict``): a value, key or step that cannot be
    stored is skipped, logged once per kind, and counted in ``rejected``.
    ``finish`` flushes (bounded by ``finish_timeout``) and ends the run.
    """

    def __init__(
        self,
        record: RunRecord | None,
        sink: OnlineSink | OfflineSink | None,
        *,
        run_id: str = "",
        flush_points: int = 10_000,
        flush_interval: float = 1.0,
        max_buffered_points: int = 1_000_000,
        finish_timeout: float = 60.0,
        strict: bool = False,
        rank: int = 0,
        owner: bool = True,
    ) -> None:
        self._record = record
        self._owner = owner
        self._sink = sink
        self._id = record.id if record else run_id
        self.experiment_id: str = record.experiment_id if record else ""
        self.rank = rank
        self.strict = strict
        self.rejected: collections.Counter[str] = collections.Counter()
        self.dropped_points = 0
        self._flush_points = flush_points
        self._flush_interval = flush_interval
        self._max_buffered = max_buffered_points
        self._finish_timeout = finish_timeout
        self._keys: dict[str, int] = {}
        self._key_list: list[str] = []
        self._buf = _wire.Columns()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._step = 0
        self._finished = sink is None
        self._closed = threading.Event()  # set once finish has done its work
        self._finisher: int | None = None  # the thread doing it
        if sink is None:
            self._closed.set()
        self._sampler: Any = None
        self._thread: threading.Thread | None = None
        if sink is not None:
            self._thread = threading.Thread(target=self._sender, name="ketch-sender", daemon=True)
            self._thread.start()

    @property
    def id(self) -> str:
        """The run's id; for a run started while the server was away, known once the
        spool's first upload created it (until then, a local ``offline-...`` id)."""
        server_id = getattr(self._sink, "run_id", "")
        return server_id or self._id

    @property
    def name(self) -> str:
        """The resource name ``runs/{id}``."""
        return f"runs/{self.id}" if self.id else ""

    @property
    def offline(self) -> bool:
        return isinstance(self._sink, OfflineSink)

    @property
    def spool_dir(self) -> pathlib.Path | None:
        """The local spool of this run, when anything was spooled."""
        if isinstance(self._sink, OfflineSink):
            return self._sink.spool.directory
        spool = self._sink.stream.spool if isinstance(self._sink, OnlineSink) else None
        return spool.directory if spool else None

    @property
    def failure(self) -> errors.KetchError | None:
        """Why the server refused this run's metrics, if it did."""
        return self._sink.failure if self._sink else None

    # ---------------------------------------------------------------- logging

    def log(
        self, data: Mapping[str, Any], step: int | None = None, *, timestamp: float | None = None
    ) -> None:
        """Record metric values at ``step``; returns immediately.

        Args:
            data: metric name → number (int, float, numpy or torch scalar). NaN and
                ±inf are kept as they are.
            step: integer step; default: one past the previous call's step.
            timestamp: seconds since the epoch; default now.
        """
        if self._finished:
            return
        if step is None:
            step = self._step
        elif type(step) is not int and (
            not isinstance(step, numbers.Integral) or isinstance(step, bool)
        ):
            step = self._checked_step(step)
            if step is None:
                return
        millis = int((time.time() if timestamp is None else timestamp) * 1000)
        self._append(data, step, millis, advance=True)

    def _append(self, data: Mapping[str, Any], step: int, millis: int, advance: bool) -> None:
        keys = self._keys
        with self._lock:
            if advance:
                self._step = step + 1
            while len(self._buf) >= self._max_buffered and not self._finished:
                self._wake.set()
                self._room.wait(0.5)
            buf = self._buf  # read under the lock: the sender swaps buffers
            for key, value in data.items():
                index = keys.get(key)
                if index is None:
                    index = self._add_key(key)
                    if index is None:
                        continue
                try:
                    buf.values.append(value)
                except TypeError:
                    number = self._checked_value(key, value)
                    if number is None:
                        continue
                    buf.values.append(number)
                buf.key_index.append(index)
                buf.steps.append(step)
                buf.timestamps.append(millis)
            pending = len(buf)
        if pending >= self._flush_points:
            self._wake.set()

    def _log_system(self, values: Mapping[str, float], step: int) -> None:
        """System metrics at their own sample index; leaves the training step alone."""
        if not self._finished:
            self._append(values, step, int(time.time() * 1000), advance=False)

    def _reject(self, kind: str, message: str, field: str) -> None:
        if self.strict:
            raise errors.InvalidArgument(message, metadata={"field": field})
        self.rejected[kind] += 1
        if self.rejected[kind] <= 3:
            log_.warning("ketch: %s (skipped; run.rejected counts these)", message)

    def _checked_step(self, step: Any) -> int | None:
        try:
            return _integral_step(step)
        except errors.InvalidArgument as exc:
            self._reject("step", exc.message, "step")
            return None

    def _checked_value(self, key: str, value: Any) -> float | None:
        try:
            return float(value)
        except (TypeError, ValueError):
            self._reject("value", f"metric {key!r}: value {value!r} is not a number", key)
            return None

    def _add_key(self, key: Any) -> int | None:
        if not isinstance(key, str) or not _KEY.match(key) or key != key.strip():
            self._reject(
                "key",
                f"metric key {key!r} must be 1-250 letters, digits, spaces or _-./:@=+",
                "key",
            )
            return None
        self._keys[key] = len(self._key_list)
        self._key_list.append(key)
        return self._keys[key]

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log hyperparameters (write-once; the same value again is fine).

        Raises:
            ketch.errors.ParamConflict: a param already has a different value.
        """
        if self._sink is not None and params:
            self._sink.log_params(_flatten(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (last write wins)."""
        if self._sink is not None and tags:
            self._sink.set_tags({k: str(v) for k, v in tags.items()})

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    # -------------------------------------------------------------- artifacts

    def _artifact_client(self) -> Client:
        client = getattr(self._sink, "client", None)
        if client is None:
            raise errors.FailedPrecondition(
                "artifacts need a server: this run is offline (or finished without one)"
            )
        return client

    def log_artifact(self, local_path: Any, artifact_path: str | None = None) -> Any:
        """Store a file as ``<artifact_path>/<file name>``; see ``Client.log_artifact``."""
        return self._artifact_client().log_artifact(self.id, local_path, artifact_path)

    def log_artifacts(self, local_dir: Any, artifact_path: str | None = None) -> list[Any]:
        """Store a directory tree below ``artifact_path``; see ``Client.log_artifacts``."""
        return self._artifact_client().log_artifacts(self.id, local_dir, artifact_path)

    def log_model(self, path_or_dir: Any, name: str, **kwargs: Any) -> Any:
        """Store a model and its manifest under ``models/<name>/``; see ``Client.log_model``."""
        return self._artifact_client().log_model(self.id, path_or_dir, name, **kwargs)

    # ---------------------------------------------------------------- lineage

    def log_input(self, dataset: Any, context: str = "training") -> Any:
        """Record that this run consumed ``dataset`` (a :class:`ketch.Dataset`, or another
        run's artifact as ``(run_id, path)``); see ``Client.log_inputs``. A no-op when
        ketch is disabled."""
        if self._sink is None:
            return None
        (node,) = self._lineage_client().log_inputs(self.id, [dataset], context=context)
        return node

    def log_output(self, dataset_or_artifact_path: Any, context: str = "") -> Any:
        """Record that this run produced a :class:`ketch.Dataset` or the artifact at a
        path of this run; see ``Client.log_outputs``. A no-op when ketch is disabled."""
        if self._sink is None:
            return None
        client = self._lineage_client()
        (node,) = client.log_outputs(self.id, [dataset_or_artifact_path], context=context)
        return node

    def _lineage_client(self) -> Client:
        client = getattr(self._sink, "client", None)
        if client is None:
            raise errors.FailedPrecondition(
                "lineage needs a server: this run is offline (log inputs and outputs "
                "with ketch.Client.log_inputs / log_outputs once it is synced)"
            )
        return client

    # ------------------------------------------------------------- sending

    def _take(self) -> tuple[list[str], _wire.Columns]:
        with self._lock:
            buf, self._buf = self._buf, _wire.Columns()
            self._room.notify_all()
            return list(self._key_list), buf

    def _sender(self) -> None:
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            keys, buf = self._take()
            if len(buf):
                self._send(keys, buf)
            if self._finished:
                return

    def _send(self, keys: list[str], buf: _wire.Columns) -> None:
        for batch in _wire.batches(keys, buf):
            if not self._sink.send(batch):  # type: ignore[union-attr]
                self.dropped_points += points(batch)

    def flush(self, timeout: float | None = 60.0) -> bool:
        """A barrier: send everything logged so far and wait until the server has
        committed it (offline: until it is in the spool). False when ``timeout`` passed."""
        if self._sink is None:
            return True
        keys, buf = self._take()
        if len(buf):
            self._send(keys, buf)
        return self._sink.flush(timeout)

    # ------------------------------------------------------------ lifecycle

    def finish(self, state: str = "FINISHED") -> None:
        """Flush pending points and mark the run ``state`` (FINISHED, FAILED, KILLED).

        Bounded by ``finish_timeout``: what the server has not confirmed by then
        stays in the local spool for ``ketch sync``. Never hangs the process. A run
        started with ``owner=False`` keeps the state its owner gives it: this only
        flushes and closes this process's stream.
        """
        global _active
        code = _STATES.get(state.upper())
        if code is None or code == 1:
            raise errors.InvalidArgument(
                f"state {state!r} must be FINISHED, FAILED or KILLED", metadata={"field": "state"}
            )
        with _active_lock:
            if _active is self:
                _active = None
            finishing = self._finished
            self._finished = True
            if not finishing:
                self._finisher = threading.get_ident()
        if finishing:
            # Another thread (say, a trainable's) is finishing it; process exit must not
            # end before that does. The finishing thread itself (a signal) goes on.
            if self._finisher != threading.get_ident():
                self._closed.wait(self._finish_timeout)
            return
        try:
            self._close(code, state)
        finally:
            self._closed.set()

    def _close(self, code: int, state: str) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self._finish_timeout)
        keys, buf = self._take()
        if len(buf):
            self._send(keys, buf)
        try:
            self._sink.finish(code if self._owner else None, self._finish_timeout)  # type: ignore[union-attr]
        except errors.KetchError as exc:
            log_.error("ketch: could not mark run %s %s: %s", self.id, state, exc)
        if self.failure is not None or self.dropped_points:
            log_.error(
                "ketch: run %s finished, but %d points were not stored: %s",
                self.id,
                self.dropped_points,
                self.failure,
            )

    end = finish

    def _forked_away(self) -> None:
        """In a forked child: stop using this run (the parent owns its stream)."""
        self._finished = True
        self._closed.set()
        self._sink = None
        self._sampler = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is KeyboardInterrupt:
            self.finish("KILLED")
        elif exc_type is SystemExit and exc.code in (0, None):
            self.finish("FINISHED")  # sys.exit(0): a clean exit
        elif exc_type is not None:
            self.finish("FAILED")
        else:
            self.finish("FINISHED")

    def __repr__(self) -> str:
        return f"<ketch.Run id={self.id!r}>"


# ------------------------------------------------------------------ batching


def _integral_step(step: Any) -> int:
    """An integral step from an int-like value (2.0 is fine; NaN, 2.5 and "x" are not)."""
    try:
        as_float = float(step)
    except (TypeError, ValueError):
        as_float = math.nan
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise errors.InvalidArgument(
            f"step must be a finite integer, got {step!r}", metadata={"field": "step"}
        )
    return int(as_float)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dicts become dotted keys: {"opt": {"lr": 0.1}} → {"opt.lr": "0.1"}."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = _param_str(value)
    return out


def init(
    experiment: str | None = None,
    name: str | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
    run_id: str | None = None,
    parent: Run | str | None = None,
    fork_from: tuple[str, int] | None = None,
    mode: str | None = None,
    ranks: str | None = None,
    capture_environment: bool = True,
    system_metrics: bool | None = None,
    flush_interval: float = 1.0,
    finish_timeout: float = 60.0,
    strict: bool = False,
    spool_dir: str | os.PathLike | None = None,
    request_id: str | None = None,
    activate: bool = True,
    owner: bool = True,
) -> Run:
    """Start a run (or attach to one) and make it the active run.

    Args:
        experiment: experiment name; default KETCH_EXPERIMENT, else "Default".
            Created when missing.
        name: display name of the run.
        config: hyperparameters, logged as params (nested dicts become dotted keys).
        tags: initial tags.
        uri: server URI; default KETCH_TRACKING_URI, else grpc://127.0.0.1:50051.
        run_id: attach to (resume) this run instead of creating one; default KETCH_RUN_ID.
        parent: parent run (or its id), e.g. the study run of an HPO trial.
        fork_from: ``(run_id, step)``: continue a fork of that run, which starts with its
            params, tags and metric history up to and including ``step`` (online only).
        mode: "online" (default; KETCH_MODE), "offline" (write only the local spool;
            upload later with ``ketch sync``) or "disabled" (every call is a no-op).
        ranks: under torchrun, "zero" (default; KETCH_RANKS): only rank 0 logs, or
            "all": every rank logs into the same run with its rank.
        capture_environment: record git state, packages and hardware (default True).
        system_metrics: sample CPU, memory and GPUs every 10 s (default on;
            KETCH_SYSTEM_METRICS=0 turns it off).
        finish_timeout: seconds ``finish`` and process exit wait for the server.
        strict: raise on bad metric keys, values or steps instead of skipping them.
        spool_dir: where the local spool lives; default KETCH_SPOOL_DIR, else ~/.ketch/spool.
        request_id: idempotency key of the create (at most 128 characters): every
            process that passes the same key gets the same run, e.g. the workers of
            one HPO study. Default: a fresh key per call.
        activate: make the run the active one (``ketch.log``, ``ketch.active_run``);
            False for runs managed beside others, such as HPO trial runs.
        owner: whether this process sets the run's final state. False for an extra
            writer into a run another process manages (a Ray trainable writing into
            its driver's trial run): ``finish`` and exit then only flush and close.

    Raises:
        ketch.errors.KetchError: online, when the server refused the run or cannot be
            reached to create it.
    """
    global _active
    chosen = resolve_mode(mode)
    topology = _distributed.detect(ranks)
    if chosen == "disabled" or not topology.logs:
        return Run(None, None)
    experiment = experiment or os.environ.get("KETCH_EXPERIMENT") or "Default"
    request = _create_request(name, config, tags, parent, capture_environment)
    if request_id:
        request.request_id = request_id
    root = pathlib.Path(spool_dir) if spool_dir else None
    options = {
        "flush_interval": flush_interval,
        "finish_timeout": finish_timeout,
        "strict": strict,
        "rank": topology.rank,
        "owner": owner,
    }
    if fork_from is not None:
        run_id = _fork(uri, fork_from, name, experiment, topology, chosen)
    if chosen == "offline":
        run = _offline_run(experiment, request, uri, root, options)
    else:
        try:
            run = _online_run(
                experiment,
                request,
                uri,
                run_id,
                root,
                topology,
                config,
                tags,
                options,
                explicit_id=bool(request_id),
            )
        except (errors.Unavailable, errors.DeadlineExceeded) as exc:
            if run_id or os.environ.get("KETCH_RUN_ID"):
                raise
            log_.warning(
                "ketch: the server is unreachable (%s); logging to the local spool and "
                "uploading once it answers",
                exc.message,
            )
            run = _offline_run(experiment, request, uri, root, options, upload=True)
    if system_metrics if system_metrics is not None else _system.system_metrics_enabled():
        run._sampler = _system.SystemSampler(run._log_system, interval=_system.sampler_interval())
        run._sampler.start()
    if activate:
        with _active_lock:
            _active = run
    _lifecycle.track(run)
    return run


start_run = init


def _fork(uri, fork_from, name, experiment, topology, chosen) -> str:
    """Fork ``fork_from = (run_id, step)``; every rank of one job gets the same fork."""
    if chosen == "offline":
        raise errors.FailedPrecondition(
            "fork_from needs a server; it cannot be used offline",
            metadata={"field": "fork_from"},
        )
    source, step = fork_from
    shared = _distributed.job_request_id(experiment, name or "") if topology.distributed else ""
    with Client(uri) as client:
        return client.fork_run(
            source, step, name, request_id=f"fork-{shared}" if shared else None
        ).id


def _online_run(
    experiment, request, uri, run_id, root, topology, config, tags, options, explicit_id=False
) -> Run:
    client = Client(uri)
    run_id = run_id or os.environ.get("KETCH_RUN_ID")
    if run_id:
        record = _resume(client, run_id)
        if config:
            client.log_params(record.id, _flatten(config))
        if tags:
            client.set_tags(record.id, dict(tags))
    else:
        record = _create(client, experiment, request, topology, explicit_id)
    sink = OnlineSink(client, f"runs/{record.id}", rank=topology.rank, spool_root=root)
    return Run(record, sink, **options)


def _offline_run(experiment, request, uri, root, options, upload: bool = False) -> Run:
    request.request_id = request.request_id or uuid.uuid4().hex
    spool = _spool.SpoolWriter.create(
        root,
        {
            "version": 1,
            "uri": uri or os.environ.get("KETCH_TRACKING_URI") or "",
            "experiment": experiment,
            "create_run": base64.b64encode(request.SerializeToString()).decode(),
            "writer_id": f"offline-{request.request_id}",
            "rank": options["rank"],
        },
    )
    if upload:
        sink = DeferredSink(spool, uri=uri, finish_timeout=options["finish_timeout"])
    else:
        log_.info("ketch: offline run; writing to %s (upload with `ketch sync`)", spool.directory)
        sink = OfflineSink(spool)
    return Run(None, sink, run_id=f"offline-{spool.directory.name}", **options)


def _create_request(name, config, tags, parent, capture):
    parent_id = parent.id if isinstance(parent, Run) else parent or ""
    return _wire.create_run_request(
        name=name or "",
        params=_flatten(config or {}),
        tags={k: str(v) for k, v in (tags or {}).items()},
        parent_id=parent_id,
        capture_environment=capture,
    )


def _create(
    client: Client, experiment: str, request, topology, explicit_id: bool = False
) -> RunRecord:
    """Create the run; under distributed training, the one run every rank shares."""
    if topology.distributed and not explicit_id:
        shared = _distributed.job_request_id(experiment, request.display_name)
        if shared:
            request.request_id = shared
        elif topology.mode == "all":
            return _create_via_broadcast(client, experiment, request, topology)
    exp = client.get_or_create_experiment(experiment)
    request.experiment = f"experiments/{exp.id}"
    return RunRecord._from_proto(client._transport.call("CreateRun", request, retries=5))


def _create_via_broadcast(client, experiment, request, topology) -> RunRecord:
    record = None
    if topology.rank == 0:
        exp = client.get_or_create_experiment(experiment)
        request.experiment = f"experiments/{exp.id}"
        record = RunRecord._from_proto(client._transport.call("CreateRun", request, retries=5))
    run_id = _distributed.broadcast_run_id(record.id if record else "")
    if run_id is None:
        raise errors.FailedPrecondition(
            "ranks='all' needs the ranks to agree on one run: set KETCH_RUN_ID, launch with "
            "torchrun (it sets TORCHELASTIC_RUN_ID), or call ketch.init after "
            "torch.distributed.init_process_group",
            metadata={"field": "ranks"},
        )
    return record or client.get_run(run_id)


def _resume(client: Client, run_id: str) -> RunRecord:
    record = client.get_run(run_id)
    if record.state != "RUNNING":
        record = client.set_terminated(record.id, "RUNNING")
    return record


def active_run() -> Run | None:
    """The run made by the last :func:`init` that is not finished yet."""
    return _active


def _require_active() -> Run:
    run = _active
    if run is None:
        raise errors.FailedPrecondition("no active run: call ketch.init() first")
    return run


def log(data: Mapping[str, Any], step: int | None = None, **kwargs: Any) -> None:
    """``active_run().log(...)``."""
    _require_active().log(data, step, **kwargs)


def log_params(params: Mapping[str, Any]) -> None:
    _require_active().log_params(params)


def set_tags(tags: Mapping[str, Any]) -> None:
    _require_active().set_tags(tags)


def finish(state: str = "FINISHED") -> None:
    run = _active
    if run is not None:
        run.finish(state)


def set_seed(seed: int, *, deterministic: bool = True) -> int:
    """Seed random, numpy and torch (when present), set deterministic flags, and log
    the seed as param ``seed`` of the active run, if any."""
    _repro.set_seed(seed, deterministic=deterministic)
    if _active is not None:
        _active.log_params({"seed": seed})
    return seed
