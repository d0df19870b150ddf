"""Datasets, run inputs and outputs, the lineage graph and run forks (the SDK half).

:class:`LineageMethods` is mixed into :class:`ketch.Client`. Nodes are named like
the ``ketch lineage`` command names them::

    run:RUN_ID                  (or runs/RUN_ID)
    dataset:NAME@DIGEST         (or datasets/DATASET_ID, or a ketch.Dataset)
    artifact:RUN_ID/PATH        (or runs/RUN_ID/artifacts/PATH)
    model:NAME/VERSION          (or models/NAME/versions/VERSION)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ketch import errors
from ketch._transport import Transport
from ketch._types import RunRecord
from ketch._wire import user
from ketch.api.v1 import lineage_pb2, lineage_pb2_grpc

__all__ = [
    "Dataset",
    "Lineage",
    "LineageEdge",
    "LineageMethods",
    "LineageNode",
    "parse_node",
]

_DIRECTIONS = {"up": 1, "down": 2, "both": 3}
_NODE_KINDS = {1: "run", 2: "dataset", 3: "artifact", 4: "model_version"}
_EDGE_KINDS = {1: "consumed", 2: "produced", 3: "child_of", 4: "forked_from"}
_RUN_STATES = {0: "", 1: "RUNNING", 2: "FINISHED", 3: "FAILED", 4: "KILLED"}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset: identified by ``name`` and ``digest`` (of its content), with where
    it lives, its schema (JSON text, or a JSON-serialisable mapping/list) and row
    count when known. ``id`` is set on datasets the server returns."""

    name: str
    digest: str
    source: str = ""
    schema: str | Mapping[str, Any] | Sequence[Any] | None = None
    num_rows: int | None = None
    id: str = ""

    def _to_proto(self) -> lineage_pb2.Dataset:
        schema = self.schema
        if schema is not None and not isinstance(schema, str):
            schema = json.dumps(schema, sort_keys=True)
        return lineage_pb2.Dataset(
            display_name=self.name,
            digest=self.digest,
            source=self.source,
            schema=schema or "",
            num_rows=self.num_rows,
        )

    @classmethod
    def _from_proto(cls, pb: lineage_pb2.Dataset) -> Dataset:
        return cls(
            name=pb.display_name,
            digest=pb.digest,
            source=pb.source,
            schema=pb.schema or None,
            num_rows=pb.num_rows if pb.HasField("num_rows") else None,
            id=pb.dataset_id,
        )


@dataclasses.dataclass(frozen=True)
class LineageNode:
    """A node of the lineage graph.

    ``kind`` is ``run``, ``dataset``, ``artifact`` or ``model_version``; ``name`` its
    resource name (unique); ``label`` what people call it (run name, ``name@digest``,
    artifact path); ``depth`` its distance from the root. ``exists`` is False for
    something referenced but not stored (e.g. an artifact not uploaded yet).
    """

    kind: str
    name: str
    label: str
    depth: int
    exists: bool = True
    run_state: str = ""
    experiment_id: str = ""
    dataset: Dataset | None = None
    run_id: str = ""
    path: str = ""

    @property
    def id(self) -> str:
        """The id of a run or dataset, ``RUN_ID/PATH`` of an artifact."""
        if self.kind == "artifact":
            return f"{self.run_id}/{self.path}"
        return self.name.rpartition("/")[2]

    @classmethod
    def _from_proto(cls, pb: lineage_pb2.LineageNode) -> LineageNode:
        return cls(
            kind=_NODE_KINDS.get(pb.kind, "unknown"),
            name=pb.name,
            label=pb.display_name,
            depth=pb.depth,
            exists=pb.exists,
            run_state=_RUN_STATES.get(pb.run_state, ""),
            experiment_id=pb.experiment.rpartition("/")[2],
            dataset=Dataset._from_proto(pb.dataset) if pb.HasField("dataset") else None,
            run_id=pb.run.rpartition("/")[2] if pb.run else "",
            path=pb.path,
        )


@dataclasses.dataclass(frozen=True)
class LineageEdge:
    """An edge, always pointing downstream (``upstream`` and ``downstream`` are node
    names). ``kind``: ``consumed`` (input -> run), ``produced`` (run -> output),
    ``child_of`` (parent -> child run) or ``forked_from`` (source -> fork, at ``step``)."""

    kind: str
    upstream: str
    downstream: str
    context: str = ""
    step: int | None = None
    create_time: dt.datetime | None = None

    @classmethod
    def _from_proto(cls, pb: lineage_pb2.LineageEdge) -> LineageEdge:
        created = None
        if pb.HasField("create_time"):
            created = pb.create_time.ToDatetime(tzinfo=dt.timezone.utc)
        return cls(
            kind=_EDGE_KINDS.get(pb.kind, "unknown"),
            upstream=pb.upstream,
            downstream=pb.downstream,
            context=pb.context,
            step=pb.step if pb.HasField("step") else None,
            create_time=created,
        )


@dataclasses.dataclass(frozen=True)
class Lineage:
    """The answer of :meth:`ketch.Client.get_lineage`: the root node first, then the
    others by depth, and the edges between them."""

    root: LineageNode
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    direction: str = "both"

    def node(self, name: str) -> LineageNode | None:
        return next((n for n in self.nodes if n.name == name), None)


NodeLike = str | Dataset | LineageNode | RunRecord
# An artifact another run logged: (run_id, path) or "runs/RUN_ID/artifacts/PATH".
ArtifactLike = tuple[str, str] | str


def parse_node(node: NodeLike) -> lineage_pb2.NodeRef:
    """The NodeRef for a node spec (see the module docstring).

    Raises:
        ketch.errors.InvalidArgument: the spec has none of the accepted shapes.
    """
    if isinstance(node, Dataset):
        if node.id:
            return lineage_pb2.NodeRef(
                dataset=lineage_pb2.GetDatasetRequest(name=f"datasets/{node.id}")
            )
        return lineage_pb2.NodeRef(
            dataset=lineage_pb2.GetDatasetRequest(display_name=node.name, digest=node.digest)
        )
    if isinstance(node, RunRecord):
        return lineage_pb2.NodeRef(run=f"runs/{node.id}")
    if isinstance(node, LineageNode):
        node = node.name
    if not isinstance(node, str):
        raise _bad_node(node)
    kind, sep, rest = node.partition(":")
    if sep and rest:
        if kind == "run":
            return lineage_pb2.NodeRef(run=f"runs/{rest.removeprefix('runs/')}")
        if kind == "dataset":
            name, at, digest = rest.rpartition("@")
            if not at or not name or not digest:
                raise _bad_node(node, "a dataset is dataset:NAME@DIGEST")
            return lineage_pb2.NodeRef(
                dataset=lineage_pb2.GetDatasetRequest(display_name=name, digest=digest)
            )
        if kind == "artifact":
            run_id, slash, path = rest.partition("/")
            if not slash or not run_id or not path:
                raise _bad_node(node, "an artifact is artifact:RUN_ID/PATH")
            return lineage_pb2.NodeRef(
                artifact=lineage_pb2.ArtifactRef(run=f"runs/{run_id}", path=path)
            )
        if kind == "model":
            model, slash, version = rest.partition("/")
            if not slash or not model or not version:
                raise _bad_node(node, "a model version is model:NAME/VERSION")
            return lineage_pb2.NodeRef(model_version=f"models/{model}/versions/{version}")
        raise _bad_node(node)
    return _resource_node(node)


def _resource_node(name: str) -> lineage_pb2.NodeRef:
    parts = name.split("/")
    if len(parts) == 2 and parts[0] == "runs":
        return lineage_pb2.NodeRef(run=name)
    if len(parts) == 2 and parts[0] == "datasets":
        return lineage_pb2.NodeRef(dataset=lineage_pb2.GetDatasetRequest(name=name))
    if len(parts) >= 4 and parts[0] == "runs" and parts[2] == "artifacts":
        return lineage_pb2.NodeRef(
            artifact=lineage_pb2.ArtifactRef(run=f"runs/{parts[1]}", path="/".join(parts[3:]))
        )
    if len(parts) == 4 and parts[0] == "models" and parts[2] == "versions":
        return lineage_pb2.NodeRef(model_version=name)
    raise _bad_node(name)


def _bad_node(node: Any, hint: str = "") -> errors.InvalidArgument:
    return errors.InvalidArgument(
        f"node {node!r} is not one of run:ID, dataset:NAME@DIGEST, artifact:RUN_ID/PATH, "
        f"model:NAME/VERSION{f' ({hint})' if hint else ''}",
        metadata={"field": "node"},
    )


def _artifact_ref(item: ArtifactLike, own_run: str | None) -> lineage_pb2.ArtifactRef:
    if isinstance(item, tuple):
        run_id, path = item
        return lineage_pb2.ArtifactRef(run=_run_name(run_id), path=path)
    if item.startswith("artifact:") or item.startswith("runs/"):
        ref = parse_node(item)
        if ref.WhichOneof("node") == "artifact":
            return ref.artifact
    if own_run is None:
        raise errors.InvalidArgument(
            f"input {item!r}: name another run's artifact as (run_id, path) or "
            "'artifact:RUN_ID/PATH'",
            metadata={"field": "inputs"},
        )
    return lineage_pb2.ArtifactRef(run=_run_name(own_run), path=item)


def _io(item: Dataset | ArtifactLike, context: str, own_run: str | None) -> lineage_pb2.RunIO:
    if isinstance(item, Dataset):
        return lineage_pb2.RunIO(dataset=item._to_proto(), context=context)
    if isinstance(item, (str, tuple)):
        return lineage_pb2.RunIO(artifact=_artifact_ref(item, own_run), context=context)
    raise errors.InvalidArgument(
        f"{item!r} is neither a ketch.Dataset nor an artifact path",
        metadata={"field": "inputs" if own_run is None else "outputs"},
    )


def _run_name(run_id: str) -> str:
    return run_id if run_id.startswith("runs/") else f"runs/{run_id}"


class LineageMethods:
    """The lineage half of :class:`ketch.Client`. Needs ``_transport``."""

    _transport: Transport

    def _lineage_call(self, method: str, request: Any, *, retries: int = 0) -> Any:
        return self._transport.call(
            method, request, retries=retries, service=lineage_pb2_grpc.LineageServiceStub
        )

    # ------------------------------------------------------------ datasets

    def create_dataset(self, dataset: Dataset) -> Dataset:
        """Create the dataset (name, digest), or return the stored one (idempotent)."""
        req = lineage_pb2.CreateDatasetRequest(dataset=dataset._to_proto())
        return Dataset._from_proto(self._lineage_call("CreateDataset", req, retries=3))

    def get_dataset(self, name: str, digest: str) -> Dataset | None:
        """The dataset ``name`` with ``digest``, or None when there is none."""
        req = lineage_pb2.GetDatasetRequest(display_name=name, digest=digest)
        try:
            return Dataset._from_proto(self._lineage_call("GetDataset", req, retries=3))
        except errors.NotFound:
            return None

    # ------------------------------------------------------ inputs, outputs

    def log_inputs(
        self, run_id: str, inputs: Iterable[Dataset | ArtifactLike], *, context: str = ""
    ) -> list[LineageNode]:
        """Record that the run consumed ``inputs``: datasets (created when new) or other
        runs' artifacts as ``(run_id, path)`` / ``"artifact:RUN_ID/PATH"``. Idempotent.

        Raises:
            ketch.errors.InvalidArgument: a malformed dataset or artifact reference.
            ketch.errors.NotFound: the run does not exist.
        """
        req = lineage_pb2.LogInputsRequest(
            run=_run_name(run_id), inputs=[_io(i, context, None) for i in inputs]
        )
        resp = self._lineage_call("LogInputs", req, retries=3)
        return [LineageNode._from_proto(n) for n in resp.nodes]

    def log_outputs(
        self, run_id: str, outputs: Iterable[Dataset | ArtifactLike], *, context: str = ""
    ) -> list[LineageNode]:
        """Record that the run produced ``outputs``: datasets, or artifact paths (a plain
        string is a path of this run's artifacts). Idempotent."""
        req = lineage_pb2.LogOutputsRequest(
            run=_run_name(run_id), outputs=[_io(o, context, run_id) for o in outputs]
        )
        resp = self._lineage_call("LogOutputs", req, retries=3)
        return [LineageNode._from_proto(n) for n in resp.nodes]

    # ---------------------------------------------------------------- graph

    def get_lineage(
        self, node: NodeLike, direction: str = "both", depth: int = 5, *, max_nodes: int = 0
    ) -> Lineage:
        """The lineage graph around ``node`` (see the module docstring for node names).

        Args:
            direction: ``up`` (ancestors: what it came from), ``down`` (descendants:
                what came from it) or ``both``.
            depth: edges to follow, 1-32.
            max_nodes: most nodes to accept (0: the server's default, 1000).

        Raises:
            ketch.errors.NotFound: the node does not exist.
            ketch.errors.ResourceExhausted: the graph is larger than ``max_nodes``.
        """
        if direction not in _DIRECTIONS:
            raise errors.InvalidArgument(
                f"direction {direction!r} is not one of {', '.join(_DIRECTIONS)}",
                metadata={"field": "direction"},
            )
        req = lineage_pb2.GetLineageRequest(
            node=parse_node(node),
            direction=_DIRECTIONS[direction],
            depth=depth,
            max_nodes=max_nodes,
        )
        resp = self._lineage_call("GetLineage", req, retries=3)
        nodes = [LineageNode._from_proto(n) for n in resp.nodes]
        edges = [LineageEdge._from_proto(e) for e in resp.edges]
        return Lineage(nodes[0], nodes, edges, direction)

    # ----------------------------------------------------------------- fork

    def fork_run(
        self, run_id: str, step: int, name: str | None = None, *, request_id: str | None = None
    ) -> RunRecord:
        """A new run in the same experiment that starts where ``run_id`` was at ``step``:
        its params, tags (not ``ketch.*`` ones) and metric history up to and including
        ``step``. The lineage records it as forked from the source at that step.

        Raises:
            ketch.errors.NotFound: the run does not exist.
            ketch.errors.InvalidArgument: a negative step.
            ketch.errors.OutOfRange: ``step`` is past the last step the run logged.
        """
        req = lineage_pb2.ForkRunRequest(
            source_run=_run_name(run_id),
            step=step,
            display_name=name or "",
            request_id=request_id or uuid.uuid4().hex,
            user=user(),
        )
        return RunRecord._from_proto(self._lineage_call("ForkRun", req, retries=3))
