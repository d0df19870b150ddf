"""Runs in training code: ``ketch.init`` and the :class:`Run` handle.

``Run.log`` appends to in-memory column buffers and returns; a background
thread sends the buffered points in columnar batches. Memory is bounded: when
``max_buffered_points`` are waiting (the server is slow or away), ``log``
blocks until the sender catches up; points are never dropped silently.
"""

from __future__ import annotations

import array
import atexit
import logging
import math
import numbers
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

from google.protobuf import field_mask_pb2, timestamp_pb2

from ketch import _repro, errors
from ketch._client import Client, _param_str
from ketch._config import resolve_mode
from ketch._stream import MetricStream
from ketch._types import RunRecord
from ketch.api.v1 import common_pb2, tracking_pb2

__all__ = ["Run", "active_run", "finish", "init", "log", "log_params", "set_seed", "set_tags"]

log_ = logging.getLogger("ketch")

_MAX_KEYS_PER_BATCH = 1_000
_MAX_POINTS_PER_BATCH = 100_000
_STATES = {"RUNNING": 1, "FINISHED": 2, "FAILED": 3, "KILLED": 4}

_active: Run | None = None
_active_lock = threading.Lock()


class _Columns:
    """Column buffers of pending points: key index, step, timestamp (ms), value."""

    __slots__ = ("key_index", "steps", "timestamps", "values")

    def __init__(self) -> None:
        self.key_index = array.array("I")
        self.steps = array.array("q")
        self.timestamps = array.array("q")
        self.values = array.array("d")

    def __len__(self) -> int:
        return len(self.values)


class Run:
    """A live run. Create it with :func:`ketch.init`; it is also a context manager.

    Thread-safe: any thread may call ``log``. ``finish`` flushes and ends it.
    """

    def __init__(
        self,
        record: RunRecord | None,
        client: Client | None,
        *,
        flush_points: int = 10_000,
        flush_interval: float = 1.0,
        max_buffered_points: int = 1_000_000,
        finish_timeout: float = 60.0,
    ) -> None:
        self._record = record
        self._client = client
        self.id: str = record.id if record else ""
        self.name: str = f"runs/{self.id}" if record else ""
        self.experiment_id: str = record.experiment_id if record else ""
        self._flush_points = flush_points
        self._flush_interval = flush_interval
        self._max_buffered = max_buffered_points
        self._finish_timeout = finish_timeout
        self._keys: dict[str, int] = {}
        self._key_list: list[str] = []
        self._buf = _Columns()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._step = 0
        self._finished = False
        self._stream: MetricStream | None = None
        self._stream_lock = threading.Lock()
        self.dropped_points = 0
        self._thread: threading.Thread | None = None
        if client is not None:
            self._thread = threading.Thread(target=self._sender, name="ketch-sender", daemon=True)
            self._thread.start()

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

        Raises:
            ketch.errors.InvalidArgument: a key, value or step is not acceptable.
        """
        if self._client is None:
            return
        if step is None:
            step = self._step
        elif not isinstance(step, numbers.Integral) or isinstance(step, bool):
            step = _integral_step(step)
        millis = int((time.time() if timestamp is None else timestamp) * 1000)
        keys = self._keys
        with self._lock:
            self._step = step + 1
            while len(self._buf) >= self._max_buffered and not self._finished:
                self._wake.set()
                self._room.wait(0.5)
            buf = self._buf  # read under the lock: the sender swaps buffers
            for key, value in data.items():
                index = keys.get(key)
                if index is None:
                    index = self._add_key(key)
                try:
                    buf.values.append(value)
                except TypeError:
                    buf.values.append(_number(key, value))
                buf.key_index.append(index)
                buf.steps.append(step)
                buf.timestamps.append(millis)
            pending = len(buf)
        if pending >= self._flush_points:
            self._wake.set()

    def _add_key(self, key: str) -> int:
        if not isinstance(key, str) or not key or len(key) > 250:
            raise errors.InvalidArgument(
                f"metric key {key!r} must be a non-empty string of at most 250 characters",
                metadata={"field": "key"},
            )
        self._keys[key] = len(self._key_list)
        self._key_list.append(key)
        return self._keys[key]

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log hyperparameters (write-once; the same value again is fine)."""
        if self._client is not None and params:
            self._client.log_params(self.id, _flatten(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (last write wins)."""
        if self._client is not None and tags:
            self._client.set_tags(self.id, dict(tags))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    # ------------------------------------------------------------- sending

    def _take(self) -> tuple[list[str], _Columns]:
        with self._lock:
            buf, self._buf = self._buf, _Columns()
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

    def _send(self, keys: list[str], buf: _Columns) -> None:
        with self._stream_lock:
            if self._stream is None:
                self._stream = MetricStream(self._client._transport, self.name)  # type: ignore[union-attr]
        for batch in _batches(keys, buf):
            if not self._stream.submit(batch):
                self.dropped_points += len(batch.values)

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Send everything logged so far and wait until the server has committed it.

        Returns False when ``timeout`` passed first (the points stay queued).
        """
        if self._client is None:
            return True
        keys, buf = self._take()
        if len(buf):
            self._send(keys, buf)
        return self._stream.wait_acked(timeout) if self._stream else True

    @property
    def failure(self) -> errors.KetchError | None:
        """Why the server refused this run's metrics, if it did."""
        return self._stream.failure if self._stream else None

    # ------------------------------------------------------------ lifecycle

    def finish(self, state: str = "FINISHED") -> None:
        """Flush pending points and mark the run ``state`` (FINISHED, FAILED, KILLED)."""
        global _active
        if self._finished:
            return
        code = _STATES.get(state.upper())
        if code is None or code == 1:
            raise errors.InvalidArgument(
                f"state {state!r} must be FINISHED, FAILED or KILLED", metadata={"field": "state"}
            )
        self._finished = True
        with _active_lock:
            if _active is self:
                _active = None
        if self._client is None:
            return
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush(timeout=0)
        if self._stream is not None:
            self._stream.close(timeout=self._finish_timeout)
        req = tracking_pb2.UpdateRunRequest(
            run=tracking_pb2.Run(name=self.name, state=code),
            update_mask=field_mask_pb2.FieldMask(paths=["state"]),
        )
        self._client._transport.call("UpdateRun", req, retries=5)
        if self.failure is not None or self.dropped_points:
            log_.error(
                "run %s finished, but %d points were not stored: %s",
                self.id,
                self.dropped_points,
                self.failure,
            )

    end = finish

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is KeyboardInterrupt:
            self.finish("KILLED")
        elif exc_type is not None:
            self.finish("FAILED")
        else:
            self.finish("FINISHED")

    def __repr__(self) -> str:
        return f"<ketch.Run id={self.id!r}>"


# ------------------------------------------------------------------ batching


def _batches(keys: list[str], buf: _Columns):
    """Columnar MetricBatch messages within the per-batch point and key limits."""
    n = len(buf)
    if len(keys) <= _MAX_KEYS_PER_BATCH:
        for lo in range(0, n, _MAX_POINTS_PER_BATCH):
            hi = lo + _MAX_POINTS_PER_BATCH
            batch = common_pb2.MetricBatch(keys=keys)
            batch.key_index.extend(buf.key_index[lo:hi])
            batch.steps.extend(buf.steps[lo:hi])
            batch.timestamps_ms.extend(buf.timestamps[lo:hi])
            batch.values.extend(buf.values[lo:hi])
            yield batch
        return
    # Many keys: re-index per batch so each batch carries only the keys it uses.
    lo = 0
    while lo < n:
        local: dict[int, int] = {}
        batch = common_pb2.MetricBatch()
        hi = lo
        while hi < n and hi - lo < _MAX_POINTS_PER_BATCH:
            k = buf.key_index[hi]
            if k not in local:
                if len(local) == _MAX_KEYS_PER_BATCH:
                    break
                local[k] = len(local)
                batch.keys.append(keys[k])
            batch.key_index.append(local[k])
            hi += 1
        batch.steps.extend(buf.steps[lo:hi])
        batch.timestamps_ms.extend(buf.timestamps[lo:hi])
        batch.values.extend(buf.values[lo:hi])
        yield batch
        lo = hi


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


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise errors.InvalidArgument(
            f"metric {key!r}: value {value!r} is not a number", metadata={"field": key}
        ) from None


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


# -------------------------------------------------------------- module level


def init(
    experiment: str | None = None,
    name: str | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
    run_id: str | None = None,
    parent: Run | str | None = None,
    mode: str | None = None,
    capture_environment: bool = True,
    flush_interval: float = 1.0,
) -> Run:
    """Start a run (or resume one) and make it the active run.

    Args:
        experiment: experiment name; default KETCH_EXPERIMENT, else "Default".
            Created when missing.
        name: display name of the run.
        config: hyperparameters, logged as params (nested dicts become dotted keys).
        tags: initial tags.
        uri: server URI; default KETCH_TRACKING_URI, else grpc://127.0.0.1:50051.
        run_id: resume this run instead of creating one; default KETCH_RUN_ID.
        parent: parent run (or its id), e.g. the study run of an HPO trial.
        mode: "online" (default; KETCH_MODE) or "disabled" (every call is a no-op).
        capture_environment: record git state, packages and hardware (default True).

    Raises:
        ketch.errors.KetchError: the server refused the run or cannot be reached.
    """
    global _active
    chosen = resolve_mode(mode)
    if chosen == "disabled":
        return Run(None, None)
    if chosen == "offline":
        raise errors.FailedPrecondition(
            "KETCH_MODE=offline is not available in this version: it needs the local spool. "
            "Use online mode, or KETCH_MODE=disabled to turn tracking off.",
            metadata={"field": "mode"},
        )
    client = Client(uri)
    run_id = run_id or os.environ.get("KETCH_RUN_ID")
    if run_id:
        record = _resume(client, run_id)
    else:
        record = _create(client, experiment, name, config, tags, parent, capture_environment)
    run = Run(record, client, flush_interval=flush_interval)
    if run_id:
        if config:
            run.log_params(config)
        if tags:
            run.set_tags(tags)
    with _active_lock:
        _active = run
    _register_exit(run)
    return run


start_run = init


def _create(client, experiment, name, config, tags, parent, capture) -> RunRecord:
    exp = client.get_or_create_experiment(
        experiment or os.environ.get("KETCH_EXPERIMENT") or "Default"
    )
    parent_id = parent.id if isinstance(parent, Run) else parent or ""
    req = tracking_pb2.CreateRunRequest(
        experiment=f"experiments/{exp.id}",
        display_name=name or "",
        parent_run=f"runs/{parent_id}" if parent_id else "",
        user=_user(),
        params=_flatten(config or {}),
        tags={k: str(v) for k, v in (tags or {}).items()},
        request_id=uuid.uuid4().hex,
        start_time=_now_pb(),
    )
    if capture:
        _fill_environment(req)
    return RunRecord._from_proto(client._transport.call("CreateRun", req, retries=5))


def _resume(client: Client, run_id: str) -> RunRecord:
    record = client.get_run(run_id)
    if record.state != "RUNNING":
        record = client.set_terminated(record.id, "RUNNING")
    return record


def _fill_environment(req: tracking_pb2.CreateRunRequest) -> None:
    src = _repro.collect_source()
    env = _repro.collect_environment()
    req.source.CopyFrom(
        tracking_pb2.RunSource(
            git_commit=src.git_commit,
            git_branch=src.git_branch,
            git_dirty=src.git_dirty,
            git_remote=src.git_remote,
            entry_point=src.entry_point,
            argv=list(src.argv),
        )
    )
    req.environment.CopyFrom(
        tracking_pb2.RunEnvironment(
            python_version=env.python_version,
            platform=env.platform,
            hostname=env.hostname,
            cpu_count=env.cpu_count,
            packages=list(env.packages),
            gpus=[
                tracking_pb2.GpuInfo(
                    name=g.name, memory_total_bytes=g.memory_total_bytes, uuid=g.uuid
                )
                for g in env.gpus
            ],
            gpu_driver_version=env.gpu_driver_version,
            cuda_version=env.cuda_version,
            seed=env.seed,
        )
    )


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return ""


def _now_pb() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(int(time.time() * 1000))
    return ts


_exit_runs: weakref.WeakSet[Run] = weakref.WeakSet()
_exit_hooked = False


def _register_exit(run: Run) -> None:
    """Finish runs left open at interpreter exit: FAILED after an uncaught exception."""
    global _exit_hooked
    _exit_runs.add(run)
    if _exit_hooked:
        return
    _exit_hooked = True
    previous = sys.excepthook
    crashed = []

    def hook(exc_type, exc, tb):
        crashed.append(exc_type)
        previous(exc_type, exc, tb)

    def at_exit():
        for open_run in list(_exit_runs):
            try:
                open_run.finish("FAILED" if crashed else "FINISHED")
            except errors.KetchError as exc:
                log_.error("could not finish run %s at exit: %s", open_run.id, exc)

    sys.excepthook = hook
    atexit.register(at_exit)


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
