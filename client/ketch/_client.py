"""``ketch.Client``: queries and administration, with names MLflow users know."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from google.protobuf import field_mask_pb2

from ketch import errors
from ketch._artifacts import ArtifactMethods
from ketch._lineage import LineageMethods
from ketch._registry import RegistryMethods
from ketch._transport import Transport
from ketch._types import Experiment, MetricHistory, RunRecord
from ketch.api.v1 import common_pb2, tracking_pb2

__all__ = ["Client"]

_VIEWS = {"active": 1, "deleted": 2, "all": 3}
_STATES = {"RUNNING": 1, "FINISHED": 2, "FAILED": 3, "KILLED": 4}
# The server reads at most this many runs per ReadMetricHistory call.
_RUNS_PER_READ = 100


def _run_name(run_id: str) -> str:
    return run_id if run_id.startswith("runs/") else f"runs/{run_id}"


def _experiment_name(experiment_id: str) -> str:
    return (
        experiment_id
        if experiment_id.startswith("experiments/")
        else f"experiments/{experiment_id}"
    )


def _view(view: str) -> int:
    try:
        return _VIEWS[view]
    except KeyError:
        raise errors.InvalidArgument(
            f"view {view!r} is not one of {', '.join(_VIEWS)}", metadata={"field": "view"}
        ) from None


class Client(ArtifactMethods, LineageMethods, RegistryMethods):
    """A synchronous, thread-safe client of one ketch server.

    Artifacts (``log_artifact``, ``log_artifacts``, ``list_artifacts``,
    ``download_artifacts``, ``log_model``) are documented in :mod:`ketch._artifacts`;
    datasets, lineage and forks (``log_inputs``, ``log_outputs``, ``get_lineage``,
    ``fork_run``, ``create_dataset``, ``get_dataset``) in :mod:`ketch._lineage`; the
    model registry (``create_model``, ``register_model``, ``get_model_version``,
    ``set_alias``, ``request_transition``, ``approve``, ``watch_registry``, ...) in
    :mod:`ketch._registry`.

    Args:
        uri: ``grpc://host:port`` or ``grpcs://host:port``; default KETCH_TRACKING_URI,
            else ``grpc://127.0.0.1:50051``.
        timeout: Seconds each call may take.
        api_token: bearer token; default KETCH_API_TOKEN. TLS settings come from
            KETCH_TLS_CA / KETCH_TLS_CERT / KETCH_TLS_KEY (see :mod:`ketch._credentials`).
    """

    def __init__(
        self, uri: str | None = None, *, timeout: float = 30.0, api_token: str | None = None
    ) -> None:
        self._transport = Transport(uri, timeout=timeout, api_token=api_token)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------- experiments

    def create_experiment(self, name: str, description: str = "") -> Experiment:
        pb = self._transport.call(
            "CreateExperiment",
            tracking_pb2.CreateExperimentRequest(display_name=name, description=description),
        )
        return Experiment._from_proto(pb)

    def get_experiment(self, experiment_id: str) -> Experiment:
        req = tracking_pb2.GetExperimentRequest(name=_experiment_name(experiment_id))
        return Experiment._from_proto(self._transport.call("GetExperiment", req, retries=3))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment called ``name``, or None when there is none."""
        req = tracking_pb2.GetExperimentByNameRequest(display_name=name)
        try:
            return Experiment._from_proto(
                self._transport.call("GetExperimentByName", req, retries=3)
            )
        except errors.NotFound:
            return None

    def get_or_create_experiment(self, name: str) -> Experiment:
        """Fetch ``name``, creating it when missing (safe when several processes race)."""
        found = self.get_experiment_by_name(name)
        if found is not None:
            return found
        try:
            return self.create_experiment(name)
        except errors.AlreadyExists:
            found = self.get_experiment_by_name(name)
            if found is None:
                raise
            return found

    def list_experiments(self, *, view: str = "active", page_size: int = 0) -> Iterator[Experiment]:
        """Iterate experiments (oldest first), fetching pages lazily."""
        pages = self._transport.pages(
            "ListExperiments",
            lambda token: tracking_pb2.ListExperimentsRequest(
                page_size=page_size, page_token=token, view=_view(view)
            ),
        )
        for resp in pages:
            yield from (Experiment._from_proto(e) for e in resp.experiments)

    def delete_experiment(self, experiment_id: str) -> None:
        req = tracking_pb2.DeleteExperimentRequest(name=_experiment_name(experiment_id))
        self._transport.call("DeleteExperiment", req)

    def restore_experiment(self, experiment_id: str) -> None:
        req = tracking_pb2.UndeleteExperimentRequest(name=_experiment_name(experiment_id))
        self._transport.call("UndeleteExperiment", req)

    # ---------------------------------------------------------------- runs

    def get_run(self, run_id: str) -> RunRecord:
        pb = self._transport.call(
            "GetRun", tracking_pb2.GetRunRequest(name=_run_name(run_id)), retries=3
        )
        return RunRecord._from_proto(pb)

    def iter_runs(
        self,
        filter: str = "",
        order_by: Sequence[str] = (),
        *,
        experiment_ids: Sequence[str] = (),
        experiment_names: Sequence[str] = (),
        view: str = "active",
        page_size: int = 0,
    ) -> Iterator[RunRecord]:
        """Iterate runs matching ``filter``, fetching pages lazily.

        Args:
            filter: e.g. ``params.lr = "0.01" and metrics.val_loss < 0.3``.
            order_by: e.g. ``["metrics.val_loss ASC", "start_time DESC"]``.
            experiment_ids / experiment_names: limit the search; default all experiments.
        """
        names = [_experiment_name(e) for e in experiment_ids]
        for exp_name in experiment_names:
            exp = self.get_experiment_by_name(exp_name)
            if exp is None:
                raise errors.NotFound(f"no experiment named {exp_name!r}")
            names.append(_experiment_name(exp.id))
        view_type = _view(view)
        pages = self._transport.pages(
            "SearchRuns",
            lambda token: tracking_pb2.SearchRunsRequest(
                experiments=names,
                filter=filter,
                order_by=list(order_by),
                page_size=page_size,
                page_token=token,
                view=view_type,
            ),
        )
        for resp in pages:
            yield from (RunRecord._from_proto(r) for r in resp.runs)

    def search_runs(
        self,
        filter: str = "",
        order_by: Sequence[str] = (),
        *,
        experiment_ids: Sequence[str] = (),
        experiment_names: Sequence[str] = (),
        view: str = "active",
        max_results: int = 1000,
    ) -> list[RunRecord]:
        """Like :meth:`iter_runs`, collected into a list of at most ``max_results`` runs."""
        out: list[RunRecord] = []
        for run in self.iter_runs(
            filter,
            order_by,
            experiment_ids=experiment_ids,
            experiment_names=experiment_names,
            view=view,
            page_size=min(max_results, 1000),
        ):
            out.append(run)
            if len(out) >= max_results:
                break
        return out

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> RunRecord:
        """Set a run's state (RUNNING, FINISHED, FAILED, KILLED); terminal ones set end time."""
        state = _STATES.get(status.upper())
        if state is None:
            raise errors.InvalidArgument(
                f"status {status!r} is not one of {', '.join(_STATES)}",
                metadata={"field": "status"},
            )
        req = tracking_pb2.UpdateRunRequest(
            run=tracking_pb2.Run(name=_run_name(run_id), state=state),
            update_mask=field_mask_pb2.FieldMask(paths=["state"]),
        )
        return RunRecord._from_proto(self._transport.call("UpdateRun", req))

    def rename_run(self, run_id: str, name: str) -> RunRecord:
        req = tracking_pb2.UpdateRunRequest(
            run=tracking_pb2.Run(name=_run_name(run_id), display_name=name),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
        return RunRecord._from_proto(self._transport.call("UpdateRun", req))

    def delete_run(self, run_id: str) -> None:
        self._transport.call("DeleteRun", tracking_pb2.DeleteRunRequest(name=_run_name(run_id)))

    def restore_run(self, run_id: str) -> None:
        self._transport.call("UndeleteRun", tracking_pb2.UndeleteRunRequest(name=_run_name(run_id)))

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        req = tracking_pb2.LogParamsRequest(
            run=_run_name(run_id), params={k: _param_str(v) for k, v in params.items()}
        )
        self._transport.call("LogParams", req, retries=3)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        req = tracking_pb2.SetTagsRequest(
            run=_run_name(run_id), tags={k: str(v) for k, v in tags.items()}
        )
        self._transport.call("SetTags", req, retries=3)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._transport.call(
            "DeleteTag", tracking_pb2.DeleteTagRequest(run=_run_name(run_id), key=key)
        )

    # ------------------------------------------------------------- metrics

    def get_metric_history(
        self,
        run_id: str,
        key: str,
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        max_points: int = 0,
    ) -> MetricHistory:
        """The points of metric ``key`` in step order (numpy arrays when numpy is installed).

        Args:
            start_step / end_step: inclusive step window; None leaves that side open.
            max_points: 0 reads every point. Otherwise at most this many (at least 3):
                the step range is split into ``max_points // 3`` equal buckets, each
                keeping its first, minimum and maximum points, so spikes survive in
                plots. A series with fewer points comes back whole.
        """
        histories = self.get_metric_histories(
            run_id, [key], start_step=start_step, end_step=end_step, max_points=max_points
        )
        return histories[key]

    def get_metric_histories(
        self,
        run_id: str,
        keys: Sequence[str] = (),
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        max_points: int = 0,
    ) -> dict[str, MetricHistory]:
        """Histories of ``keys`` (every key of the run when empty), streamed in chunks;
        the arguments are those of :meth:`get_metric_history`."""
        histories = self.get_metric_histories_for_runs(
            [run_id], keys, start_step=start_step, end_step=end_step, max_points=max_points
        )
        return {key: history for (_, key), history in histories.items()}

    def get_metric_histories_for_runs(
        self,
        run_ids: Sequence[str],
        keys: Sequence[str] = (),
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        max_points: int = 0,
    ) -> dict[tuple[str, str], MetricHistory]:
        """Histories of ``keys`` (every key of each run when empty) of several runs,
        keyed by ``(run_id, key)`` in the order of ``run_ids`` then ``keys``.

        Reads up to 100 runs per call to the server (more take several calls); the
        other arguments are those of :meth:`get_metric_history`. A run without a key
        gets an empty history for it when ``keys`` names it.

        Raises:
            ketch.errors.NotFound: a run does not exist.
        """
        ids = list(dict.fromkeys(_run_name(r).removeprefix("runs/") for r in run_ids))
        out: dict[tuple[str, str], MetricHistory] = {}
        for lo in range(0, len(ids), _RUNS_PER_READ):
            first, *rest = [_run_name(r) for r in ids[lo : lo + _RUNS_PER_READ]]
            req = tracking_pb2.ReadMetricHistoryRequest(
                run=first,
                runs=rest,
                keys=list(keys),
                start_step=start_step,
                end_step=end_step,
                max_points=max_points,
                encoding=_ENCODING,
            )
            parts: dict[tuple[str, str], list[common_pb2.MetricSeries]] = {}
            for resp in self._transport.stream("ReadMetricHistory", req):
                for series in resp.series:
                    run = series.run.rpartition("/")[2] or ids[lo]
                    parts.setdefault((run, series.key), []).append(series)
            out.update((ident, _history(*ident, chunks)) for ident, chunks in parts.items())
        return out


try:
    import numpy as _np

    # With numpy, ask for raw little-endian columns: decoding is a memory copy.
    _ENCODING = common_pb2.COLUMN_ENCODING_RAW_LE
except ImportError:  # pragma: no cover - numpy is optional for the SDK
    _np = None
    _ENCODING = common_pb2.COLUMN_ENCODING_UNSPECIFIED


def _history(run_id: str, key: str, chunks: list[common_pb2.MetricSeries]) -> MetricHistory:
    """One history from its pieces; a piece without ranks is all rank 0."""
    if _np is None:
        steps = [s for c in chunks for s in c.steps]
        stamps = [t for c in chunks for t in c.timestamps_ms]
        values = [v for c in chunks for v in c.values]
        ranks = [r for c in chunks for r in (c.ranks or [0] * len(c.steps))]
        return MetricHistory(key, steps, stamps, values, run_id=run_id, ranks=ranks)
    columns = [_columns(c) for c in chunks]
    steps, stamps, values, ranks = (_np.concatenate([c[i] for c in columns]) for i in range(4))
    return MetricHistory(key, steps, stamps, values, run_id=run_id, ranks=ranks)


def _columns(c: common_pb2.MetricSeries):
    """(steps, timestamps, values, ranks) arrays of one piece, raw or packed."""
    if c.steps_le or c.values_le:
        steps = _np.frombuffer(c.steps_le, dtype="<i8")
        stamps = _np.frombuffer(c.timestamps_ms_le, dtype="<i8")
        values = _np.frombuffer(c.values_le, dtype="<f8")
        ranks = _np.frombuffer(c.ranks_le, dtype="<i4") if c.ranks_le else None
    else:
        steps = _np.asarray(c.steps, dtype=_np.int64)
        stamps = _np.asarray(c.timestamps_ms, dtype=_np.int64)
        values = _np.asarray(c.values, dtype=_np.float64)
        ranks = _np.asarray(c.ranks, dtype=_np.int32) if len(c.ranks) else None
    if ranks is None:
        ranks = _np.zeros(len(steps), dtype=_np.int32)
    return steps, stamps, values, ranks


def _param_str(value: Any) -> str:
    return (
        value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    )
