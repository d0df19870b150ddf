"""Tracking use cases: validate input, then call the store.

Everything arriving here is already a plain Python value (the API layer
converted it); everything raised is a domain error. Validation happens before
any write, so a rejected request changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ketch_server.domain import filters, metrics, validation
from ketch_server.domain.errors import InvalidArgument, ResourceExhausted
from ketch_server.domain.ids import EXPERIMENT, RUN, parse_name
from ketch_server.domain.models import (
    Experiment,
    Lifecycle,
    MetricColumns,
    Page,
    Run,
    RunEnvironment,
    RunSource,
    RunState,
    View,
)
from ketch_server.domain.validation import LIMITS
from ketch_server.store.tracking import TrackingStore

__all__ = ["TrackingService"]


class TrackingService:
    """The tracking use cases over one :class:`TrackingStore`. Stateless and task-safe."""

    def __init__(self, store: TrackingStore) -> None:
        self.store = store

    # --------------------------------------------------------- experiments

    async def create_experiment(self, display_name: str, description: str) -> Experiment:
        validation.check_display_name("display_name", display_name)
        validation.check_text("description", description, LIMITS.description_chars)
        return await self.store.create_experiment(display_name, description)

    async def get_experiment(self, name: str) -> Experiment:
        return await self.store.get_experiment(parse_name(name, EXPERIMENT, field="name"))

    async def get_experiment_by_name(self, display_name: str) -> Experiment:
        validation.check_display_name("display_name", display_name)
        return await self.store.get_experiment_by_name(display_name)

    async def list_experiments(self, page_size: int, page_token: str, view: View) -> Page:
        size = validation.check_page_size(page_size)
        return await self.store.list_experiments(size, page_token, view)

    async def update_experiment(
        self, name: str, fields: dict[str, Any], mask: Sequence[str], etag: str
    ) -> Experiment:
        experiment_id = parse_name(name, EXPERIMENT, field="experiment.name")
        changes = _masked(fields, mask, allowed=("display_name", "description"), field="experiment")
        if "display_name" in changes:
            validation.check_display_name("experiment.display_name", changes["display_name"])
        if "description" in changes:
            validation.check_text(
                "experiment.description", changes["description"], LIMITS.description_chars
            )
        return await self.store.update_experiment(experiment_id, changes, etag)

    async def set_experiment_lifecycle(
        self, name: str, lifecycle: Lifecycle, etag: str
    ) -> Experiment:
        experiment_id = parse_name(name, EXPERIMENT, field="name")
        return await self.store.update_experiment(experiment_id, {"lifecycle": lifecycle}, etag)

    # ---------------------------------------------------------------- runs

    async def create_run(
        self,
        experiment: str,
        *,
        display_name: str,
        parent_run: str,
        user: str,
        params: dict[str, str],
        tags: dict[str, str],
        source: RunSource,
        environment: RunEnvironment,
        request_id: str,
        start_time: int | None,
    ) -> Run:
        experiment_id = parse_name(experiment, EXPERIMENT, field="experiment")
        parent_id = parse_name(parent_run, RUN, field="parent_run") if parent_run else None
        validation.check_display_name("display_name", display_name, required=False)
        validation.check_display_name("user", user, required=False)
        validation.check_text("request_id", request_id, LIMITS.request_id_chars)
        validation.check_mapping("params", params, LIMITS.params_per_call, LIMITS.param_value_chars)
        validation.check_mapping("tags", tags, LIMITS.tags_per_call, LIMITS.tag_value_chars)
        if len(environment.packages) > 10_000:
            raise InvalidArgument("environment.packages", "more than 10000 packages listed")
        return await self.store.create_run(
            experiment_id,
            display_name=display_name,
            parent_run_id=parent_id,
            user=user,
            params_=params,
            tags_=tags,
            source=source,
            environment=environment,
            request_id=request_id or None,
            start_time=start_time,
        )

    async def get_run(self, name: str) -> Run:
        return await self.store.get_run(parse_name(name, RUN, field="name"))

    async def update_run(
        self,
        name: str,
        fields: dict[str, Any],
        mask: Sequence[str],
        etag: str,
        end_time: int | None,
    ) -> Run:
        run_id = parse_name(name, RUN, field="run.name")
        changes = _masked(fields, mask, allowed=("display_name", "state"), field="run")
        if "display_name" in changes:
            validation.check_display_name("run.display_name", changes["display_name"])
        if "state" in changes:
            if not isinstance(changes["state"], RunState):
                raise InvalidArgument("run.state", "must be RUNNING, FINISHED, FAILED or KILLED")
            changes["end_time"] = end_time
        return await self.store.update_run(run_id, changes, etag)

    async def set_run_lifecycle(self, name: str, lifecycle: Lifecycle) -> Run:
        run_id = parse_name(name, RUN, field="name")
        return await self.store.update_run(run_id, {"lifecycle": lifecycle})

    async def search_runs(
        self,
        experiments: Sequence[str],
        filter_text: str,
        order_by: Sequence[str],
        page_size: int,
        page_token: str,
        view: View,
    ) -> Page:
        experiment_ids = [
            parse_name(e, EXPERIMENT, field=f"experiments[{i}]") for i, e in enumerate(experiments)
        ]
        where = filters.parse_filter(filter_text)
        order = filters.parse_order_by(list(order_by))
        size = validation.check_page_size(page_size)
        return await self.store.search_runs(experiment_ids, where, order, size, page_token, view)

    # ---------------------------------------------------- params, tags, metrics

    async def log_params(self, run: str, params: dict[str, str]) -> None:
        run_id = parse_name(run, RUN, field="run")
        validation.check_mapping("params", params, LIMITS.params_per_call, LIMITS.param_value_chars)
        await self.store.log_params(run_id, params)

    async def set_tags(self, run: str, tags: dict[str, str]) -> None:
        run_id = parse_name(run, RUN, field="run")
        validation.check_mapping("tags", tags, LIMITS.tags_per_call, LIMITS.tag_value_chars)
        await self.store.set_tags(run_id, tags)

    async def delete_tag(self, run: str, key: str) -> None:
        run_id = parse_name(run, RUN, field="run")
        validation.check_key("key", key)
        await self.store.delete_tag(run_id, key)

    async def log_metrics(self, run: str, batch: MetricColumns) -> int:
        run_id = parse_name(run, RUN, field="run")
        validation.check_metric_columns(batch)
        return await self.store.log_metrics(run_id, batch)

    async def read_metric_history(
        self,
        run: str,
        keys: Sequence[str],
        start_step: int | None,
        end_step: int | None,
        *,
        runs: Sequence[str] = (),
        max_points: int = 0,
    ) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Series of ``run`` and ``runs`` (deduplicated; ``run`` may be empty when
        ``runs`` is not) as (run_id, key, steps, timestamps_ms, values, ranks): runs in
        the order given, then keys in the order given (every key, by name, when
        ``keys`` is empty). Each series is cut to the step window, then downsampled to
        at most ``max_points`` points (0: every point; see ``metrics.downsample``).

        Raises:
            InvalidArgument: a malformed run name, key, step window or max_points.
            ResourceExhausted: more than ``LIMITS.runs_per_read`` runs.
            NotFound: a run does not exist.
        """
        run_ids = _run_ids(run, runs)
        if len(keys) > LIMITS.keys_per_batch:
            raise InvalidArgument("keys", f"at most {LIMITS.keys_per_batch} keys per call")
        for i, key in enumerate(keys):
            validation.check_key(f"keys[{i}]", key)
        if start_step is not None and end_step is not None and start_step > end_step:
            raise InvalidArgument("start_step", "must not be greater than end_step")
        _check_max_points(max_points)
        series = await self.store.read_metric_histories(
            run_ids, list(dict.fromkeys(keys)), start_step, end_step
        )
        if not max_points:
            return series
        return [
            (run_id, key, *metrics.downsample(steps, stamps, values, ranks, max_points))
            for run_id, key, steps, stamps, values, ranks in series
        ]


def _run_ids(run: str, runs: Sequence[str]) -> list[str]:
    """Parse ``run`` and ``runs[i]`` into distinct run ids, in the order given."""
    given = len(runs) + (1 if run else 0)
    if given > LIMITS.runs_per_read:
        raise ResourceExhausted(
            "runs_per_read",
            f"runs: {given} runs in one call; the limit is {LIMITS.runs_per_read}. "
            "Read them in several calls.",
        )
    if not run and not runs:
        raise InvalidArgument("run", "required: give a resource name like runs/<id>")
    named = [("run", run)] if run else []
    named += [(f"runs[{i}]", name) for i, name in enumerate(runs)]
    return list(dict.fromkeys(parse_name(name, RUN, field=field) for field, name in named))


def _check_max_points(max_points: int) -> None:
    if max_points < 0:
        raise InvalidArgument("max_points", "must not be negative (0 reads every point)")
    if 0 < max_points < 3:
        raise InvalidArgument("max_points", "must be 0 (every point) or at least 3")
    if max_points > LIMITS.max_points:
        raise InvalidArgument(
            "max_points", f"{max_points} exceeds the limit of {LIMITS.max_points:,}"
        )


def _masked(
    fields: dict[str, Any], mask: Sequence[str], *, allowed: Sequence[str], field: str
) -> dict[str, Any]:
    """The subset of ``fields`` named by an update mask (AIP-134)."""
    if not mask:
        raise InvalidArgument("update_mask", f"name the fields to change: {', '.join(allowed)}")
    changes = {}
    for path in mask:
        if path not in allowed:
            raise InvalidArgument(
                "update_mask", f"{field}.{path} cannot be updated; updatable: {', '.join(allowed)}"
            )
        changes[path] = fields[path]
    return changes
