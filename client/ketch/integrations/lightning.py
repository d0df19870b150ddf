"""PyTorch Lightning: :class:`KetchLogger`, a ``lightning.pytorch`` logger.

::

    from ketch.integrations.lightning import KetchLogger

    logger = KetchLogger(experiment="mnist", run_name="cnn-baseline")
    checkpoints = ModelCheckpoint(monitor="val_loss")
    trainer = L.Trainer(max_epochs=3, logger=logger, callbacks=[checkpoints])
    trainer.fit(model, datamodule)

What is recorded, from global rank 0 only (other ranks get a no-op experiment):
the module's (and datamodule's) hyperparameters as params (nested ones dotted);
every metric Lightning logs, at step ``trainer.global_step``; each checkpoint
the ``ModelCheckpoint`` saves as an artifact under ``checkpoints/`` with the tags
``checkpoint.best`` (artifact path) and ``checkpoint.best_score``; the run's
state when the trainer is done: FINISHED, FAILED after an exception, KILLED when
a signal ended it. A later ``trainer.test`` or ``fit`` attaches to the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import ketch
from ketch.integrations._common import metric_values, param_values, require

require("lightning.pytorch", extra="lightning")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import Logger  # noqa: E402
from lightning.pytorch.loggers.logger import rank_zero_experiment  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402

__all__ = ["KetchLogger"]

log = logging.getLogger("ketch")

_STATES = {"success": "FINISHED", "failed": "FAILED", "finished": "KILLED"}


class KetchLogger(Logger):
    """A Lightning logger that writes to a ketch run; see the module docstring.

    The run is created on first use, on global rank 0 only. Lightning's ``name``
    is the experiment, ``version`` the run id.

    Args:
        experiment: ketch experiment; default KETCH_EXPERIMENT, else "Default".
        run_name: name of the run.
        run_id: attach to (resume) this run instead of creating one.
        tags: tags of the run.
        uri: server URI; default KETCH_TRACKING_URI.
        log_checkpoints: upload the checkpoints ``ModelCheckpoint`` saves.
        prefix: put before every metric key (``"<prefix>-<key>"``).
        **init_kwargs: passed on to :func:`ketch.init` (``config``,
            ``system_metrics`` ...).
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        experiment: str | None = None,
        *,
        run_name: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        uri: str | None = None,
        log_checkpoints: bool = True,
        prefix: str = "",
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        self._experiment_name = experiment or os.environ.get("KETCH_EXPERIMENT") or "Default"
        self._run_name = run_name
        self._run_id = run_id
        self._tags = dict(tags or {})
        self._uri = uri
        self._log_checkpoints = log_checkpoints
        self._prefix = prefix
        self._init_kwargs = init_kwargs
        self._run: ketch.Run | None = None
        self._uploaded: dict[str, tuple[float, str]] = {}  # file → (mtime, artifact path)
        self._versions: dict[str, int] = {}  # file name → next version

    @property
    def name(self) -> str:
        """The ketch experiment."""
        return self._experiment_name

    @property
    def version(self) -> str:
        """The run id (creating the run on rank 0; "" on other ranks before it is known)."""
        if self._run_id is None and getattr(rank_zero_only, "rank", 0) == 0:
            _ = self.experiment
        return self._run_id or ""

    @property
    @rank_zero_experiment
    def experiment(self) -> ketch.Run:
        """The ketch run (a no-op stand-in on ranks other than 0)."""
        if self._run is None:
            self._run = ketch.init(
                self._experiment_name,
                self._run_name,
                run_id=self._run_id,
                tags=self._tags,
                uri=self._uri,
                **self._init_kwargs,
            )
            self._run_id = self._run.id
        return self._run

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Log hyperparameters (a dict, an argparse Namespace or a dataclass) as params."""
        values = _as_dict(params)
        if not values:
            return
        try:
            self.experiment.log_params(param_values(values))
        except ketch.errors.ParamConflict as exc:
            log.warning("ketch: hyperparameters not logged again: %s", exc.message)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the numeric metrics at ``step`` (the trainer's global step)."""
        prefix = f"{self._prefix}{self.LOGGER_JOIN_CHAR}" if self._prefix else ""
        values = metric_values(metrics, prefix=prefix)
        if values:
            self.experiment.log(values, step=step)

    def save(self) -> None:
        """Nothing to do: points stream to the server in the background."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finish the run: "success" → FINISHED, "failed" → FAILED, "finished" → KILLED."""
        if self._run is None:
            return
        run, self._run = self._run, None
        run.finish(_STATES.get(status, "FINISHED"))

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        """Upload checkpoints saved since the last call; tag the best one."""
        if not self._log_checkpoints:
            return
        for path in _saved_checkpoints(checkpoint_callback):
            mtime = os.path.getmtime(path)
            if self._uploaded.get(path, (0.0, ""))[0] != mtime:
                self._uploaded[path] = (mtime, self._upload(path))
        best = getattr(checkpoint_callback, "best_model_path", "")
        if best in self._uploaded:
            tags = {"checkpoint.best": self._uploaded[best][1]}
            score = checkpoint_callback.best_model_score
            if score is not None:
                tags["checkpoint.best_score"] = repr(float(score))
            self.experiment.set_tags(tags)

    def _upload(self, path: str) -> str:
        """Upload ``path`` as ``checkpoints/<name>``; a name saved again (``last.ckpt``)
        goes to ``checkpoints/v<k>/<name>``, as artifact paths are write-once."""
        name = os.path.basename(path)
        first = self._versions.get(name, 0)
        for version in range(first, first + 100):
            folder = "checkpoints" if version == 0 else f"checkpoints/v{version}"
            try:
                self.experiment.log_artifact(path, folder)
            except ketch.errors.AlreadyExists:
                continue  # taken (e.g. by an earlier session of this run): next version
            self._versions[name] = version + 1
            return f"{folder}/{name}"
        raise ketch.errors.AlreadyExists(f"no free artifact path for checkpoint {name!r}")


def _as_dict(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, argparse.Namespace):
        return vars(params)
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.asdict(params)
    values = dict(params)
    return {k: getattr(v, "__name__", v) if callable(v) else v for k, v in values.items()}


def _saved_checkpoints(callback: ModelCheckpoint) -> list[str]:
    """The checkpoint files ``callback`` keeps: top k, best and last, oldest first."""
    paths = {*getattr(callback, "best_k_models", {})}
    paths.update(p for p in (callback.best_model_path, callback.last_model_path) if p)
    return sorted((p for p in paths if os.path.isfile(p)), key=os.path.getmtime)
