"""Optuna: one ketch run per study, one child run per trial.

::

    from ketch.integrations.optuna import KetchCallback

    callback = KetchCallback(experiment="churn-gb", metric_name="f1")
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=20, n_jobs=4, callbacks=[callback])
    callback.finish()  # else ketch finishes the study run at exit

What is recorded:

* The **study run** (named after the study): param ``optuna.direction``; tags
  ``optuna.study_name``, ``optuna.sampler``, ``optuna.pruner``; the metric
  ``metric_name`` (one point per completed trial, step = trial number) and
  ``best_value`` (the study's best value when that trial finished); and, as the
  best trial changes, the tags ``best_trial`` (its number), ``best_trial_run``
  (its run id) and ``best_value``.
* A **child run per finished trial** (``parent`` = the study run, named
  ``trial-<number>``): the trial's params; its value as metric ``metric_name``
  (several names for a multi-objective study); its intermediate values
  (``trial.report``) as metric ``intermediate_value`` at their steps;
  ``duration_s``; tags ``optuna.trial_number``, ``optuna.state``, user attrs as
  ``optuna.user_attrs.<key>``, and ``best_trial`` (``true`` on the best trial's run
  only). Its state: COMPLETE → FINISHED, PRUNED → KILLED, FAIL → FAILED.

Sharing a study: the callback is thread-safe (``study.optimize(n_jobs=...)``), and
processes that share a study through Optuna storage (RDB, journal) share its
study run: the run is created with a request id derived from the storage, study
name and id, so concurrent first calls get one run, and its id is kept in the
study's user attr ``ketch_run_id`` (later sessions attach to it). The best-trial
tags are reconciled with the storage after every trial, so they converge to the
study's best trial whichever process finished it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import ketch
from ketch.integrations._common import clean_key, metric_values, param_values, require, stable_id

require("optuna", extra="optuna")

from optuna.study import Study  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

__all__ = ["STUDY_RUN_ATTR", "KetchCallback"]

log = logging.getLogger("ketch")

#: The study user attr that holds the study run's id.
STUDY_RUN_ATTR = "ketch_run_id"

_STATES = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "KILLED",
    TrialState.FAIL: "FAILED",
}
_RECONCILE_ROUNDS = 5


class KetchCallback:
    """An Optuna callback (``study.optimize(..., callbacks=[cb])``) that tracks a study.

    One callback tracks one study. Thread-safe; see the module docstring for what
    is recorded and how processes share a study.

    Args:
        experiment: ketch experiment; default KETCH_EXPERIMENT, else "Default".
        metric_name: name of the objective value, or one name per objective of a
            multi-objective study.
        run_name: name of the study run; default the study's name.
        tags: extra tags of the study run.
        uri: server URI; default KETCH_TRACKING_URI.
        capture_environment: record git state, packages and hardware on the study run
            (trial runs never repeat it).
    """

    def __init__(
        self,
        experiment: str | None = None,
        *,
        metric_name: str | Sequence[str] = "value",
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        uri: str | None = None,
        capture_environment: bool = True,
    ) -> None:
        names = [metric_name] if isinstance(metric_name, str) else list(metric_name)
        if not names:
            raise ValueError("metric_name must name at least one objective")
        self._metric_names = [clean_key(n) for n in names]
        self._experiment = experiment
        self._run_name = run_name
        self._tags = dict(tags or {})
        self._uri = uri
        self._capture = capture_environment
        self._lock = threading.Lock()
        self._best_lock = threading.Lock()
        self._study_run: ketch.Run | None = None
        self._study_key: tuple[str, int] | None = None
        self._children: dict[int, str] = {}
        self._client: ketch.Client | None = None

    # ------------------------------------------------------------------ public

    @property
    def study_run(self) -> ketch.Run | None:
        """The study run, once the first trial has finished."""
        return self._study_run

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        """Record ``trial`` (called by Optuna after each trial, in the trial's thread)."""
        study_run = self._ensure_study_run(study)
        if not study_run.id:  # ketch is disabled
            return
        child_id = self._log_trial(study, trial, study_run)
        self._log_progress(study, trial, study_run)
        if child_id and len(self._metric_names) == 1 and not study_run.offline:
            self._reconcile_best(study, study_run.id)

    def finish(self, state: str = "FINISHED") -> None:
        """Flush and mark the study run ``state`` (FINISHED, FAILED or KILLED).

        Processes sharing a study each mark it when they finish; the last one wins.
        """
        with self._lock:
            run, self._study_run = self._study_run, None
            client, self._client = self._client, None
        if run is not None:
            run.finish(state)
        if client is not None:
            client.close()

    # -------------------------------------------------------------- study run

    def _ensure_study_run(self, study: Study) -> ketch.Run:
        key = (study.study_name, getattr(study, "_study_id", 0))
        with self._lock:
            if self._study_run is not None:
                if key != self._study_key:
                    raise ValueError(
                        f"this KetchCallback tracks study {self._study_key[0]!r}; "  # type: ignore[index]
                        f"make one callback per study (got {key[0]!r})"
                    )
                return self._study_run
            self._study_run = self._open_study_run(study)
            self._study_key = key
            return self._study_run

    def _open_study_run(self, study: Study) -> ketch.Run:
        directions = [d.name.lower() for d in study.directions]
        config = {"optuna.direction": ",".join(directions)}
        tags = {
            "optuna.study_name": study.study_name,
            "optuna.sampler": type(study.sampler).__name__,
            "optuna.pruner": type(getattr(study, "pruner", None)).__name__,
            **self._tags,
        }
        common: dict[str, Any] = {
            "name": self._run_name or study.study_name,
            "config": config,
            "tags": tags,
            "uri": self._uri,
            "capture_environment": self._capture,
            "system_metrics": False,
            "activate": False,
        }
        existing = study.user_attrs.get(STUDY_RUN_ATTR)
        if existing:
            return ketch.init(self._experiment, run_id=str(existing), **common)
        request_id = stable_id(
            "ketch-optuna-study",
            _storage_identity(study),
            self._experiment or "",
            study.study_name,
            getattr(study, "_study_id", ""),
        )
        run = ketch.init(self._experiment, request_id=request_id, **common)
        if run.id and not run.offline:
            study.set_user_attr(STUDY_RUN_ATTR, run.id)
        return run

    def _log_progress(self, study: Study, trial: FrozenTrial, study_run: ketch.Run) -> None:
        """The value (and the best so far) on the study run, at step = trial number."""
        if trial.state != TrialState.COMPLETE or trial.values is None:
            return
        points: dict[str, float] = self._named_values(trial.values)
        if len(self._metric_names) == 1:
            try:
                points["best_value"] = study.best_value
            except ValueError:  # no completed trial visible yet
                pass
        study_run.log(points, step=trial.number)

    # -------------------------------------------------------------- trial runs

    def _log_trial(self, study: Study, trial: FrozenTrial, study_run: ketch.Run) -> str:
        """Create, fill and finish the trial's child run; return its id."""
        tags: dict[str, Any] = {
            "optuna.study_name": study.study_name,
            "optuna.trial_number": trial.number,
            "optuna.state": trial.state.name,
            "best_trial": "false",
        }
        tags.update({f"optuna.user_attrs.{k}": v for k, v in trial.user_attrs.items()})
        reason = trial.system_attrs.get("fail_reason")  # Optuna < 5 keeps the error here
        if reason:
            tags["optuna.fail_reason"] = str(reason)[:2000]
        parent = None if study_run.offline else study_run.id
        run = ketch.init(
            self._experiment,
            name=f"trial-{trial.number}",
            config=param_values(trial.params),
            tags={clean_key(k): v for k, v in tags.items()},
            uri=self._uri,
            parent=parent,
            request_id=stable_id("ketch-optuna-trial", study_run.id, trial._trial_id),
            capture_environment=False,
            system_metrics=False,
            activate=False,
        )
        try:
            for step, value in sorted(trial.intermediate_values.items()):
                run.log({"intermediate_value": value}, step=step)
            last = max(trial.intermediate_values, default=0)
            final: dict[str, Any] = {}
            if trial.values is not None:
                final.update(self._named_values(trial.values))
            if trial.duration is not None:
                final["duration_s"] = trial.duration.total_seconds()
            run.log(metric_values(final), step=last)
        finally:
            run.finish(_STATES.get(trial.state, "FINISHED"))
        with self._best_lock:
            self._children[trial.number] = run.id
        return run.id

    def _named_values(self, values: Sequence[float]) -> dict[str, float]:
        """Objective values by metric name (``<first name>_<i>`` when the counts differ)."""
        names = self._metric_names
        if len(names) != len(values):
            names = [f"{names[0]}_{i}" for i in range(len(values))]
        return dict(zip(names, values, strict=True))

    # ------------------------------------------------------------- best trial

    def _reconcile_best(self, study: Study, study_run_id: str) -> None:
        """Make the best-trial tags match the storage's best trial.

        Every process runs this after each of its trials. Each round reads the best
        trial from the storage and the tags from the server, then writes: so the
        last writer in any process has read the storage after its write, and the
        tags converge to the best trial.
        """
        with self._best_lock:
            client = self._tracking_client()
            for _ in range(_RECONCILE_ROUNDS):
                try:
                    best = study.best_trial
                except ValueError:
                    return
                tags = client.get_run(study_run_id).tags
                if tags.get("best_trial") == str(best.number):
                    return
                child = self._child_run_id(client, study_run_id, best.number)
                if child is None:
                    return  # its process has not recorded it yet; it will tag it
                previous = tags.get("best_trial_run")
                if previous and previous != child:
                    client.set_tags(previous, {"best_trial": "false"})
                client.set_tags(child, {"best_trial": "true"})
                client.set_tags(
                    study_run_id,
                    {"best_trial": best.number, "best_trial_run": child, "best_value": best.value},
                )

    def _child_run_id(self, client: ketch.Client, study_run_id: str, number: int) -> str | None:
        known = self._children.get(number)
        if known:
            return known
        found = client.search_runs(
            f'parent_run_id = "{study_run_id}" and tags.optuna.trial_number = "{number}"',
            max_results=1,
        )
        return found[0].id if found else None

    def _tracking_client(self) -> ketch.Client:
        if self._client is None:
            self._client = ketch.Client(self._uri)
        return self._client


def _storage_identity(study: Study) -> str:
    """What names the storage across processes: an RDB URL or a journal file path.

    In-memory storage is private to one process: a fresh id.
    """
    storage: Any = study._storage
    for candidate in (storage, getattr(storage, "_backend", None)):
        if candidate is None:
            continue
        url = getattr(candidate, "url", None)
        if isinstance(url, str) and url:
            return url
        backend = getattr(candidate, "_backend", None)
        path = getattr(backend, "_file_path", None) or getattr(candidate, "_file_path", None)
        if path:
            return f"journal:{path}"
    return f"memory:{uuid.uuid4().hex}"
