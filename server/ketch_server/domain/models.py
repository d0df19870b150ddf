"""Plain domain objects; no protobuf, gRPC or SQL here.

Times are integers: milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from ketch_server.domain.errors import Aborted

__all__ = [
    "Experiment",
    "GpuInfo",
    "Lifecycle",
    "MetricColumns",
    "MetricSummary",
    "Page",
    "Run",
    "RunEnvironment",
    "RunSource",
    "RunState",
    "RunWriter",
    "SequencedBatch",
    "View",
]


class RunState(enum.Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def terminal(self) -> bool:
        return self is not RunState.RUNNING


class Lifecycle(enum.Enum):
    ACTIVE = "ACTIVE"
    DELETED = "DELETED"


class View(enum.Enum):
    """Which resources a list or search returns with respect to soft deletion."""

    ACTIVE_ONLY = "ACTIVE_ONLY"
    DELETED_ONLY = "DELETED_ONLY"
    ALL = "ALL"


@dataclasses.dataclass(frozen=True)
class Experiment:
    id: str
    display_name: str
    description: str
    lifecycle: Lifecycle
    create_time: int
    update_time: int
    delete_time: int | None
    revision: int

    @property
    def etag(self) -> str:
        return etag_of(self.revision)


@dataclasses.dataclass(frozen=True)
class RunSource:
    git_commit: str = ""
    git_branch: str = ""
    git_dirty: bool = False
    git_remote: str = ""
    entry_point: str = ""
    argv: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_total_bytes: int = 0
    uuid: str = ""


@dataclasses.dataclass(frozen=True)
class RunEnvironment:
    python_version: str = ""
    platform: str = ""
    hostname: str = ""
    cpu_count: int = 0
    packages: tuple[str, ...] = ()
    gpus: tuple[GpuInfo, ...] = ()
    gpu_driver_version: str = ""
    cuda_version: str = ""
    seed: int | None = None


@dataclasses.dataclass(frozen=True)
class MetricSummary:
    """Latest value (at the highest step; ties go to the later write) and extremes."""

    key: str
    last_value: float
    last_step: int
    last_timestamp: int
    min_value: float
    max_value: float
    count: int


@dataclasses.dataclass(frozen=True)
class RunWriter:
    """A process that streamed metrics into a run."""

    writer_id: str
    rank: int
    host: str
    points: int
    committed_seq: int


@dataclasses.dataclass(frozen=True)
class Run:
    id: str
    experiment_id: str
    display_name: str
    state: RunState
    lifecycle: Lifecycle
    start_time: int
    end_time: int | None
    update_time: int
    delete_time: int | None
    parent_run_id: str | None
    user: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: tuple[MetricSummary, ...]
    source: RunSource
    environment: RunEnvironment
    revision: int
    writers: tuple[RunWriter, ...] = ()
    created_by: str = ""

    @property
    def etag(self) -> str:
        return etag_of(self.revision)


@dataclasses.dataclass(frozen=True)
class MetricColumns:
    """Columnar metric points: parallel sequences (lists, arrays or numpy arrays).

    ``key_index[i]`` indexes ``keys``; ``timestamps`` may be empty, meaning "now".
    """

    keys: tuple[str, ...]
    key_index: Any
    steps: Any
    timestamps: Any
    values: Any

    def __len__(self) -> int:
        return len(self.values)


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of a list: the items and the token of the next page ("" at the end)."""

    items: list[Any]
    next_page_token: str


@dataclasses.dataclass(frozen=True)
class SequencedBatch:
    """One streamed batch: writer ``writer_id`` of run ``run_id`` sent it as ``seq``."""

    run_id: str
    writer_id: str
    seq: int
    columns: MetricColumns
    rank: int = 0


def etag_of(revision: int) -> str:
    """The weak etag of a resource at ``revision`` (every resource's etags look alike)."""
    return f'W/"{revision}"'


def check_etag(given: str, stored: str, resource: str) -> None:
    """An update's precondition: ``given`` empty (none) or equal to ``stored``.

    Raises:
        Aborted: naming ``resource``, when the resource changed since it was read.
    """
    if given and given != stored:
        raise Aborted(
            f"{resource} changed since you read it (etag {given} is now {stored}); re-read it "
            "and retry",
            resource=resource,
        )
