"""Lineage in the shape of ML Metadata: nodes, immutable events (edges) and datasets.

A node is ``(kind, ref)``: a run (ref = run id), a dataset (dataset id), an
artifact (``{run_id}/{path}``) or a model version (``{model}/{version}``, from
the model registry). Every edge points downstream, from what came first to what
was derived from it:

* CONSUMED     dataset/artifact -> run that read it
* PRODUCED     run -> dataset/artifact it wrote
* CHILD_OF     parent run -> child run (derived from the runs' parent, never stored)
* FORKED_FROM  source run -> fork, at a step
* PRODUCED     run -> model version registered from its artifact (context "registered")

Pure: no gRPC, protobuf or SQL. The validation helpers raise ``InvalidArgument``
naming the field.
"""

from __future__ import annotations

import dataclasses
import enum
import json

from ketch_server.domain import validation
from ketch_server.domain.artifacts import check_artifact_path
from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.ids import RUN, parse_name

__all__ = [
    "LIMITS",
    "Dataset",
    "Direction",
    "Edge",
    "EdgeKind",
    "IOEntity",
    "LineageLimits",
    "Node",
    "NodeKind",
    "NodeRef",
    "artifact_ref",
    "check_context",
    "check_dataset",
    "check_depth",
    "check_max_nodes",
    "node_name",
]

DATASETS = "datasets"


class NodeKind(enum.Enum):
    RUN = "RUN"
    DATASET = "DATASET"
    ARTIFACT = "ARTIFACT"
    MODEL_VERSION = "MODEL_VERSION"


class EdgeKind(enum.Enum):
    CONSUMED = "CONSUMED"
    PRODUCED = "PRODUCED"
    CHILD_OF = "CHILD_OF"
    FORKED_FROM = "FORKED_FROM"


class Direction(enum.Enum):
    UP = "UP"
    DOWN = "DOWN"
    BOTH = "BOTH"


class LineageLimits:
    """The explicit limits of the lineage API (documented in the README)."""

    default_depth = 5
    max_depth = 32
    default_max_nodes = 1_000
    max_nodes = 10_000
    # Edges returned with the nodes; a graph denser than this is refused.
    max_edges = 50_000
    entities_per_call = 1_000
    context_chars = 128
    digest_chars = 256
    source_chars = 2_048
    schema_chars = 1_048_576
    # Bytes (UTF-8) of an artifact path: the node ref must stay indexable.
    artifact_path_bytes = 1_024


LIMITS = LineageLimits()


@dataclasses.dataclass(frozen=True)
class Dataset:
    id: str
    display_name: str
    digest: str
    source: str
    schema: str
    num_rows: int | None
    create_time: int

    @property
    def label(self) -> str:
        return f"{self.display_name}@{self.digest}"


@dataclasses.dataclass(frozen=True)
class NodeRef:
    """A node named by kind and ref (see the module docstring)."""

    kind: NodeKind
    ref: str


@dataclasses.dataclass(frozen=True)
class IOEntity:
    """One input or output of a run: a dataset to create-or-get, or an artifact."""

    context: str
    dataset: Dataset | None = None  # id and create_time unused
    artifact: NodeRef | None = None


@dataclasses.dataclass(frozen=True)
class Node:
    """A node with what people need to recognise it; ``exists`` is False for a node
    that edges name but that is not stored (e.g. an artifact not uploaded yet)."""

    kind: NodeKind
    ref: str
    display_name: str
    depth: int
    exists: bool = True
    run_state: str = ""
    experiment_id: str = ""
    dataset: Dataset | None = None

    @property
    def name(self) -> str:
        return node_name(self.kind, self.ref)


@dataclasses.dataclass(frozen=True)
class Edge:
    kind: EdgeKind
    upstream: NodeRef
    downstream: NodeRef
    context: str
    step: int | None
    create_time: int


def node_name(kind: NodeKind, ref: str) -> str:
    """The resource name of a node."""
    if kind is NodeKind.RUN:
        return f"runs/{ref}"
    if kind is NodeKind.DATASET:
        return f"datasets/{ref}"
    if kind is NodeKind.ARTIFACT:
        run_id, _, path = ref.partition("/")
        return f"runs/{run_id}/artifacts/{path}"
    model, _, version = ref.partition("/")
    return f"models/{model}/versions/{version}"


def artifact_ref(run: str, path: str, *, field: str) -> NodeRef:
    """The node of artifact ``path`` of ``run`` (a ``runs/{id}`` name), validated."""
    run_id = parse_name(run, RUN, field=f"{field}.run")
    check_artifact_path(path, field=f"{field}.path")  # the upload rules: one gate for paths
    return NodeRef(NodeKind.ARTIFACT, f"{run_id}/{path}")


def check_context(field: str, context: str) -> str:
    if context:
        validation.check_display_name(field, context)
    if len(context) > LIMITS.context_chars:
        raise InvalidArgument(field, f"is longer than {LIMITS.context_chars} characters")
    return context


def check_dataset(field: str, d: Dataset) -> None:
    """Check the fields of a dataset to create (id and create_time are ignored)."""
    validation.check_display_name(f"{field}.display_name", d.display_name)
    if not d.digest:
        raise InvalidArgument(f"{field}.digest", "required: e.g. sha256:<hex> of the content")
    if len(d.digest) > LIMITS.digest_chars or any(c.isspace() for c in d.digest):
        raise InvalidArgument(
            f"{field}.digest", f"must be 1-{LIMITS.digest_chars} characters without spaces"
        )
    validation.check_display_name(f"{field}.digest", d.digest)
    validation.check_text(f"{field}.source", d.source, LIMITS.source_chars)
    validation.check_text(f"{field}.schema", d.schema, LIMITS.schema_chars)
    if d.schema:
        try:
            json.loads(d.schema)
        except ValueError as exc:
            raise InvalidArgument(f"{field}.schema", f"is not valid JSON: {exc}") from None
    if d.num_rows is not None and d.num_rows < 0:
        raise InvalidArgument(f"{field}.num_rows", "must not be negative")


def check_depth(depth: int) -> int:
    """The effective depth: default when 0, error outside 1..max_depth."""
    if depth == 0:
        return LIMITS.default_depth
    if not 1 <= depth <= LIMITS.max_depth:
        raise InvalidArgument("depth", f"must be between 1 and {LIMITS.max_depth} (0: default)")
    return depth


def check_max_nodes(max_nodes: int) -> int:
    if max_nodes == 0:
        return LIMITS.default_max_nodes
    if not 1 <= max_nodes <= LIMITS.max_nodes:
        raise InvalidArgument("max_nodes", f"must be between 1 and {LIMITS.max_nodes} (0: default)")
    return max_nodes
