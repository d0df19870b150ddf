"""Hugging Face Transformers: :class:`KetchCallback`, a ``TrainerCallback``.

::

    from ketch.integrations.transformers import KetchCallback

    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir="out", logging_steps=10, report_to="none"),
        train_dataset=train,
        eval_dataset=val,
        callbacks=[KetchCallback(experiment="sentiment")],
    )
    trainer.train()

What is recorded, from the main process only (``state.is_world_process_zero``):
the ``TrainingArguments`` as params, and the model's config as params under
``model_config.``; every numeric value the Trainer logs (loss, learning rate,
grad norm, eval metrics, runtime figures) at step ``state.global_step``;
optionally each saved checkpoint directory as artifacts under
``checkpoints/checkpoint-<step>/``. The run is the one passed in, else the active
run (``ketch.init`` before ``trainer.train()``), else one the callback creates
at the start of training and finishes at its end (a later ``evaluate`` attaches
to it again).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import ketch
from ketch.integrations._common import metric_values, param_values, require

require("transformers", extra="transformers")

from transformers import TrainerCallback  # noqa: E402

__all__ = ["KetchCallback"]

log = logging.getLogger("ketch")


class KetchCallback(TrainerCallback):
    """A Trainer callback that writes to a ketch run; see the module docstring.

    Args:
        run: log into this run (never finished by the callback).
        experiment: ketch experiment of a run the callback creates; default
            KETCH_EXPERIMENT, else "Default".
        run_name: its name; default ``args.run_name``.
        tags: its tags.
        uri: server URI; default KETCH_TRACKING_URI.
        log_model_config: log the model's config as params.
        log_checkpoints: upload each checkpoint directory the Trainer saves.
        **init_kwargs: passed on to :func:`ketch.init` when the callback creates the run.
    """

    def __init__(
        self,
        run: ketch.Run | None = None,
        *,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        uri: str | None = None,
        log_model_config: bool = True,
        log_checkpoints: bool = False,
        **init_kwargs: Any,
    ) -> None:
        self._run = run
        self._owned = False
        self._run_id: str | None = None
        self._experiment = experiment
        self._run_name = run_name
        self._tags = dict(tags or {})
        self._uri = uri
        self._log_model_config = log_model_config
        self._log_checkpoints = log_checkpoints
        self._init_kwargs = init_kwargs

    @property
    def run(self) -> ketch.Run | None:
        """The run written to (None before training starts)."""
        return self._run

    def _ensure_run(self, args: Any) -> ketch.Run:
        """The run to write to: the given or current one, the one this callback made
        before (attached again), the active run, or a new one."""
        if self._run is not None:
            return self._run
        active = ketch.active_run()
        if active is not None and not self._run_id:
            self._run = active
            return active
        self._run = ketch.init(
            self._experiment,
            self._run_name or _run_name(args),
            run_id=self._run_id,
            tags=self._tags,
            uri=self._uri,
            **self._init_kwargs,
        )
        self._owned = True
        return self._run

    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        """Log the training arguments (and the model config) as params."""
        if not state.is_world_process_zero:
            return
        run = self._ensure_run(args)
        params: dict[str, Any] = dict(args.to_sanitized_dict())
        config = getattr(model, "config", None)
        if self._log_model_config and config is not None and hasattr(config, "to_dict"):
            params["model_config"] = config.to_dict()
        try:
            run.log_params(param_values(params))
        except ketch.errors.ParamConflict as exc:
            log.warning("ketch: training arguments not logged again: %s", exc.message)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        """Log the numeric entries of ``logs`` at ``state.global_step``."""
        if not state.is_world_process_zero or not logs:
            return
        values = metric_values(logs)
        if values:
            self._ensure_run(args).log(values, step=state.global_step)

    def on_save(self, args, state, control, **kwargs) -> None:
        """Upload the checkpoint just saved, when ``log_checkpoints``."""
        if not (self._log_checkpoints and state.is_world_process_zero):
            return
        name = f"checkpoint-{state.global_step}"
        folder = os.path.join(args.output_dir, name)
        if os.path.isdir(folder):
            self._ensure_run(args).log_artifacts(folder, f"checkpoints/{name}")

    def on_train_end(self, args, state, control, **kwargs) -> None:
        """Finish the run if the callback created it."""
        if not state.is_world_process_zero or not self._owned or self._run is None:
            return
        run, self._run = self._run, None
        self._run_id = run.id or None
        run.finish("FINISHED")


def _run_name(args: Any) -> str | None:
    """``args.run_name`` unless it is the default (the output directory)."""
    name = getattr(args, "run_name", None)
    return name if name and name != getattr(args, "output_dir", None) else None
