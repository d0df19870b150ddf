"""Ray Tune: one ketch run per Tune experiment, one child run per trial.

On the driver, :class:`KetchLoggerCallback` records what Tune sees::

    from ketch.integrations.ray import KetchLoggerCallback

    tuner = tune.Tuner(
        train_fn,
        param_space={"lr": tune.loguniform(1e-4, 1e-1)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=ASHAScheduler()),
        run_config=tune.RunConfig(callbacks=[KetchLoggerCallback(experiment="mnist-tune")]),
    )

* The **experiment run** (named after the Tune experiment): params
  ``ray.num_samples`` and ``ray.total_num_samples``; tags ``ray.experiment`` and,
  at the end, ``ray.trials`` and ``ray.trials_<state>`` counts.
* A **child run per trial** (named after the trial): the trial's config as
  params; every numeric entry of each reported result as a metric (nested dicts
  flattened with ``/``) at step ``training_iteration``; tags ``ray.trial_id``,
  ``ray.trial_name``, ``ray.experiment`` and ``ray.termination``. Its state:
  FINISHED when the trainable returned or met its ``stop`` criteria; KILLED
  (``ray.termination=early_stopped``) when a scheduler such as ASHA stopped it
  early; FAILED (``ray.termination=error``, message in ``ray.error``) when it
  raised.

Inside a trainable, :func:`setup_run` returns the same trial run, so the
trainable can add its own metrics, params and artifacts::

    def train_fn(config):
        with setup_run(config) as run:
            ...
            run.log({"batch_loss": loss}, step=batch)
            tune.report({"loss": val_loss})

Both sides derive the trial run's identity from the experiment name and trial
id, so they meet in one run without talking to each other; ``setup_run`` also
works without the callback (then ``parent`` is up to the caller).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import ketch
from ketch.integrations._common import clean_key, metric_values, param_values, require, stable_id

require("ray.tune", extra="ray")

from ray import tune  # noqa: E402
from ray.tune.experiment import Trial  # noqa: E402
from ray.tune.logger import LoggerCallback  # noqa: E402
from ray.tune.utils import flatten_dict  # noqa: E402

__all__ = ["KetchLoggerCallback", "setup_run"]

log = logging.getLogger("ketch")

#: Result entries that describe the report rather than measure the trial.
RESULT_METADATA = frozenset(
    {
        "config",
        "date",
        "done",
        "experiment_id",
        "experiment_tag",
        "hostname",
        "iterations_since_restore",
        "node_ip",
        "pid",
        "should_checkpoint",
        "checkpoint_dir_name",
        "time_since_restore",
        "timestamp",
        "trial_id",
        "training_iteration",
    }
)


#: Tag on the trial runs the driver's callback manages (it sets their final state).
_MANAGED_TAG, _MANAGED_VALUE = "ray.logger", "KetchLoggerCallback"


def _trial_request_id(experiment_name: str, trial_id: str) -> str:
    return stable_id("ketch-ray-trial", experiment_name, trial_id)


def _quoted(text: str) -> str:
    """``text`` as a double-quoted literal of the run filter language."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _managed_by_callback(uri: str | None, experiment_name: str, trial_id: str) -> bool:
    """Whether a KetchLoggerCallback on the driver made this trial's run.

    The driver creates the run before Tune starts the trainable, so a lookup here
    finds it when there is one.
    """
    query = (
        f"tags.ray.trial_id = {_quoted(trial_id)} and "
        f"tags.ray.experiment = {_quoted(experiment_name)} and "
        f"tags.{_MANAGED_TAG} = {_quoted(_MANAGED_VALUE)}"
    )
    try:
        with ketch.Client(uri) as client:
            return bool(client.search_runs(query, max_results=1))
    except ketch.errors.KetchError as exc:
        log.debug("ketch: could not look up the trial run: %s", exc)
        return False


class KetchLoggerCallback(LoggerCallback):
    """A Tune ``LoggerCallback`` that streams trials into ketch; see the module docstring.

    Runs on the driver (Tune calls it from one thread).

    Args:
        experiment: ketch experiment; default KETCH_EXPERIMENT, else "Default".
        run_name: name of the experiment run; default the Tune experiment's name.
        tags: extra tags of the experiment run.
        uri: server URI; default KETCH_TRACKING_URI.
        capture_environment: record git state, packages and hardware on the
            experiment run (trial runs never repeat it).
        exclude: result keys not to log, beside :data:`RESULT_METADATA`.
    """

    def __init__(
        self,
        experiment: str | None = None,
        *,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        uri: str | None = None,
        capture_environment: bool = True,
        exclude: Iterable[str] = (),
    ) -> None:
        self._experiment = experiment
        self._run_name = run_name
        self._tags = dict(tags or {})
        self._uri = uri
        self._capture = capture_environment
        self._exclude = RESULT_METADATA | set(exclude)
        self._spec: dict[str, Any] = {}
        self._parent: ketch.Run | None = None
        self._trial_runs: dict[Trial, ketch.Run] = {}
        self._iterations: dict[Trial, int] = {}
        self._endings: dict[Trial, _Ending] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment; open runs stay behind."""
        state = self.__dict__.copy()
        state.update(_parent=None, _trial_runs={}, _iterations={}, _endings={})
        return state

    # ----------------------------------------------------------- tune hooks

    def setup(self, *args: Any, **info: Any) -> None:
        """Called once before the first trial; keeps the experiment spec."""
        self._spec = {k: info[k] for k in ("num_samples", "total_num_samples") if k in info}

    def log_trial_start(self, trial: Trial) -> None:
        """Create the trial's run (once; a restarted trial keeps its run)."""
        if trial in self._trial_runs:
            return
        parent = self._experiment_run(trial.experiment_dir_name)
        self._trial_runs[trial] = ketch.init(
            self._experiment,
            name=str(trial),
            config=param_values(trial.config),
            tags={
                "ray.trial_id": trial.trial_id,
                "ray.trial_name": str(trial),
                "ray.experiment": trial.experiment_dir_name,
                _MANAGED_TAG: _MANAGED_VALUE,
            },
            uri=self._uri,
            parent=None if parent.offline else parent,
            request_id=_trial_request_id(trial.experiment_dir_name, trial.trial_id),
            capture_environment=False,
            system_metrics=False,
            activate=False,
        )

    def log_trial_result(self, iteration: int, trial: Trial, result: dict) -> None:
        """Log the numeric entries of ``result`` at step ``training_iteration``."""
        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        step = result.get("training_iteration")
        if isinstance(step, int):
            self._iterations[trial] = step
        flat = flatten_dict({k: v for k, v in result.items() if k not in self._exclude})
        self._trial_runs[trial].log(metric_values(flat), step=step)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        """Finish the trial's run as FINISHED, KILLED (stopped early) or FAILED."""
        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        run = self._trial_runs[trial]
        ending = _Ending.of(trial, failed)
        self._endings[trial] = ending
        state, tags = ending.outcome(self._iterations.get(trial, 0), self._longest())
        run.set_tags(tags)
        run.finish(state)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """Settle the trial states, record the counts and finish the experiment run.

        A trial Tune stopped counts as early-stopped only if it ran fewer iterations
        than the longest trial, which is known for sure only now; runs whose state
        or tags differ from that are corrected.
        """
        if self._parent is None:
            return
        for trial, run in self._trial_runs.items():  # still running: the experiment was cut
            if trial not in self._endings:
                self._endings[trial] = _Ending(cut=True)
                run.finish("KILLED")
        longest = self._longest()
        outcomes = {
            self._trial_runs[trial].id: ending.outcome(self._iterations.get(trial, 0), longest)
            for trial, ending in self._endings.items()
        }
        self._confirm(outcomes)
        counts = collections.Counter(state for state, _ in outcomes.values())
        self._parent.set_tags(
            {"ray.trials": len(trials), **{f"ray.trials_{s.lower()}": n for s, n in counts.items()}}
        )
        self._parent.finish("FINISHED")
        self._parent = None

    # -------------------------------------------------------------- helpers

    def _experiment_run(self, experiment_name: str) -> ketch.Run:
        if self._parent is None:
            self._parent = ketch.init(
                self._experiment,
                name=self._run_name or experiment_name,
                config={f"ray.{k}": v for k, v in self._spec.items()},
                tags={"ray.experiment": experiment_name, **self._tags},
                uri=self._uri,
                request_id=stable_id("ketch-ray-experiment", experiment_name),
                capture_environment=self._capture,
                system_metrics=False,
                activate=False,
            )
        return self._parent

    def _longest(self) -> int:
        return max(self._iterations.values(), default=0)

    def _confirm(self, outcomes: dict[str, tuple[str, dict[str, str]]]) -> None:
        """Write each trial run's final state and tags where the server has another."""
        if self._parent is None or not self._parent.id or self._parent.offline or not outcomes:
            return
        try:
            with ketch.Client(self._uri) as client:
                for run_id, (state, tags) in outcomes.items():
                    record = client.get_run(run_id)
                    if any(record.tags.get(k) != v for k, v in tags.items()):
                        client.set_tags(run_id, tags)
                    if record.state != state:
                        client.set_terminated(run_id, state)
        except ketch.errors.KetchError as exc:
            log.warning("ketch: could not confirm the trial runs' states: %s", exc)


@dataclasses.dataclass(frozen=True)
class _Ending:
    """How a trial ended, as far as the driver can tell.

    Attributes:
        failed: the trainable raised.
        cut: Tune stopped it (a scheduler or stopper decision, or the end of the
            experiment) rather than the trainable returning or meeting its own
            ``stop`` criteria. A scheduler also stops the trials that reach its
            budget (ASHA's ``max_t``), so a cut trial counts as early-stopped only
            when it ran fewer iterations than the longest trial.
        error: the last line of the error, for a failed trial.
    """

    failed: bool = False
    cut: bool = False
    error: str = ""

    @classmethod
    def of(cls, trial: Trial, failed: bool) -> _Ending:
        if failed:
            lines = _error_text(trial).strip().splitlines()
            return cls(failed=True, error=lines[-1][:2000] if lines else "unknown error")
        last = dict(trial.last_result or {})
        met_criteria = trial.should_stop({**flatten_dict(last), "done": False})
        return cls(cut=bool(last.get("done")) and not met_criteria)

    def outcome(self, iterations: int, longest: int) -> tuple[str, dict[str, str]]:
        """The run state and the tags that say why."""
        if self.failed:
            return "FAILED", {"ray.termination": "error", "ray.error": self.error}
        if self.cut and iterations < longest:
            return "KILLED", {"ray.termination": "early_stopped"}
        return "FINISHED", {"ray.termination": "completed"}


def _error_text(trial: Trial) -> str:
    """The trial's error as Tune wrote it: the local error file, else the synced one."""
    try:
        if trial.error_file and os.path.exists(trial.error_file):
            with open(trial.error_file, encoding="utf-8", errors="replace") as f:
                return f.read()
        return str(trial.get_error() or "")
    except Exception:  # unreadable: the state still says FAILED
        return ""


def setup_run(
    config: Mapping[str, Any] | None = None,
    *,
    experiment: str | None = None,
    name: str | None = None,
    parent: ketch.Run | str | None = None,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
    **init_kwargs: Any,
) -> ketch.Run:
    """Start (or join) the ketch run of the current Tune trial, from inside its trainable.

    With :class:`KetchLoggerCallback` on the driver this is the run the callback
    streams the trial's results into (a child of the experiment run); without it,
    a new run, child of ``parent`` when given. Either way, calling it again in the
    same trial returns the same run. With the callback, the driver records the
    trial's final state (finishing this handle, or the trainable's exit, only
    flushes it); without it, this handle sets it: finish the run or use it as a
    context manager.

    Args:
        config: logged as params (the trial's config, usually).
        experiment: ketch experiment; default KETCH_EXPERIMENT, else "Default".
        name: run name; default the trial's name.
        parent: the parent run (or its id) when the run is created here.
        tags: extra tags.
        uri: server URI; default KETCH_TRACKING_URI (the workers inherit the
            driver's environment).
        **init_kwargs: passed on to :func:`ketch.init` (``system_metrics``, ``mode`` ...).

    Raises:
        RuntimeError: not called inside a Ray Tune trial.
    """
    context = tune.get_context()
    with warnings.catch_warnings():  # outside a trial Ray warns, then returns None
        warnings.simplefilter("ignore")
        trial_id = context.get_trial_id()
    if not trial_id:
        raise RuntimeError("setup_run() must be called inside a Ray Tune trainable")
    experiment_name = context.get_experiment_name()
    trial_name = context.get_trial_name()
    all_tags = {
        "ray.trial_id": trial_id,
        "ray.trial_name": trial_name,
        "ray.experiment": experiment_name,
        **{clean_key(k): v for k, v in (tags or {}).items()},
    }
    init_kwargs.setdefault("capture_environment", False)
    init_kwargs.setdefault("system_metrics", False)
    managed = _managed_by_callback(uri, experiment_name, trial_id)
    return ketch.init(
        experiment,
        name=name or trial_name,
        config=param_values(config or {}),
        tags=all_tags,
        uri=uri,
        parent=parent,
        request_id=_trial_request_id(experiment_name, trial_id),
        owner=not managed,
        **init_kwargs,
    )
