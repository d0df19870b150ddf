"""User-facing records returned by :class:`ketch.Client` (no protobuf in sight)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

__all__ = ["Experiment", "MetricHistory", "MetricSummary", "RunRecord", "RunWriter"]


def _time(ts: Any) -> dt.datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    description: str
    deleted: bool
    create_time: dt.datetime | None
    etag: str

    @classmethod
    def _from_proto(cls, pb: Any) -> Experiment:
        return cls(
            id=pb.experiment_id,
            name=pb.display_name,
            description=pb.description,
            deleted=pb.lifecycle_state == 2,
            create_time=_time(pb.create_time),
            etag=pb.etag,
        )


@dataclasses.dataclass(frozen=True)
class MetricSummary:
    """Latest value (at the highest step) and extremes of one metric of a run."""

    key: str
    last: float
    step: int
    min: float
    max: float
    count: int

    @classmethod
    def _from_proto(cls, pb: Any) -> MetricSummary:
        return cls(pb.key, pb.last_value, pb.last_step, pb.min_value, pb.max_value, pb.count)


@dataclasses.dataclass(frozen=True)
class RunWriter:
    """A process (one per rank under torchrun) that streamed metrics into a run."""

    writer_id: str
    rank: int
    host: str
    points: int
    committed_seq: int


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run as stored on the server."""

    id: str
    experiment_id: str
    name: str
    state: str
    deleted: bool
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    parent_run_id: str | None
    user: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, MetricSummary]
    source: dict[str, Any]
    environment: dict[str, Any]
    etag: str
    writers: tuple[RunWriter, ...] = ()
    created_by: str = ""

    @property
    def ranks(self) -> list[int]:
        """The ranks that streamed metrics into this run."""
        return sorted({w.rank for w in self.writers})

    @classmethod
    def _from_proto(cls, pb: Any) -> RunRecord:
        from google.protobuf.json_format import MessageToDict

        return cls(
            id=pb.run_id,
            experiment_id=pb.experiment.rpartition("/")[2],
            name=pb.display_name,
            state=pb.DESCRIPTOR.fields_by_name["state"]
            .enum_type.values_by_number[pb.state]
            .name.removeprefix("RUN_STATE_"),
            deleted=pb.lifecycle_state == 2,
            start_time=_time(pb.start_time),
            end_time=_time(pb.end_time) if pb.HasField("end_time") else None,
            parent_run_id=pb.parent_run.rpartition("/")[2] or None,
            user=pb.user,
            created_by=pb.created_by,
            params=dict(pb.params),
            tags=dict(pb.tags),
            metrics={m.key: MetricSummary._from_proto(m) for m in pb.metrics},
            source=MessageToDict(pb.source, preserving_proto_field_name=True),
            environment=MessageToDict(pb.environment, preserving_proto_field_name=True),
            etag=pb.etag,
            writers=tuple(
                RunWriter(w.writer_id, w.rank, w.host, w.points, w.committed_seq)
                for w in pb.writers
            ),
        )


@dataclasses.dataclass(frozen=True)
class MetricHistory:
    """The points of one metric of one run, in step order.

    ``steps``, ``timestamps`` (ms since the epoch), ``values`` and ``ranks`` (the
    rank of the process that logged each point; all zeros for single-process runs)
    are numpy arrays when numpy is installed, else lists. A history read with
    ``max_points`` holds a subsequence of the points (see
    :meth:`ketch.Client.get_metric_history`).
    """

    key: str
    steps: Sequence[int]
    timestamps: Sequence[int]
    values: Sequence[float]
    run_id: str = ""
    ranks: Sequence[int] = ()

    def __post_init__(self) -> None:
        if len(self.ranks) == 0 and len(self.steps):
            zeros: Any = [0] * len(self.steps)
            if hasattr(self.steps, "dtype"):  # numpy columns
                import numpy as np

                zeros = np.zeros(len(self.steps), dtype=np.int32)
            object.__setattr__(self, "ranks", zeros)

    def __len__(self) -> int:
        return len(self.steps)

    def to_pandas(self):
        """A DataFrame with columns step, timestamp (UTC datetime), value and rank."""
        import pandas as pd

        return pd.DataFrame(
            {
                "step": self.steps,
                "timestamp": pd.to_datetime(list(self.timestamps), unit="ms", utc=True),
                "value": self.values,
                "rank": self.ranks if len(self.ranks) else [],
            }
        )
