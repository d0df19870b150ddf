"""Pure converters between ketch.api.v1 lineage messages and domain objects."""

from __future__ import annotations

from ketch.api.v1 import lineage_pb2, tracking_pb2

from ketch_server.api.convert import timestamp_to_pb
from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.lineage import (
    Dataset,
    Direction,
    Edge,
    EdgeKind,
    IOEntity,
    Node,
    NodeKind,
    NodeRef,
    artifact_ref,
    node_name,
)
from ketch_server.domain.models import RunState
from ketch_server.domain.registry import parse_version_name

__all__ = [
    "dataset_from_pb",
    "dataset_key_from_pb",
    "dataset_to_pb",
    "direction_from_pb",
    "edge_to_pb",
    "entities_from_pb",
    "node_ref_from_pb",
    "node_to_pb",
]

_NODE_KIND_TO_PB = {
    NodeKind.RUN: lineage_pb2.NODE_KIND_RUN,
    NodeKind.DATASET: lineage_pb2.NODE_KIND_DATASET,
    NodeKind.ARTIFACT: lineage_pb2.NODE_KIND_ARTIFACT,
    NodeKind.MODEL_VERSION: lineage_pb2.NODE_KIND_MODEL_VERSION,
}
_EDGE_KIND_TO_PB = {
    EdgeKind.CONSUMED: lineage_pb2.EDGE_KIND_CONSUMED,
    EdgeKind.PRODUCED: lineage_pb2.EDGE_KIND_PRODUCED,
    EdgeKind.CHILD_OF: lineage_pb2.EDGE_KIND_CHILD_OF,
    EdgeKind.FORKED_FROM: lineage_pb2.EDGE_KIND_FORKED_FROM,
}
_DIRECTION_FROM_PB = {
    lineage_pb2.LINEAGE_DIRECTION_UNSPECIFIED: Direction.BOTH,
    lineage_pb2.LINEAGE_DIRECTION_UP: Direction.UP,
    lineage_pb2.LINEAGE_DIRECTION_DOWN: Direction.DOWN,
    lineage_pb2.LINEAGE_DIRECTION_BOTH: Direction.BOTH,
}
_RUN_STATE_TO_PB = {s.value: tracking_pb2.RunState.Value(f"RUN_STATE_{s.value}") for s in RunState}


def dataset_from_pb(d: lineage_pb2.Dataset) -> Dataset:
    """The fields a client may set; id and create_time are the server's."""
    return Dataset(
        id="",
        display_name=d.display_name,
        digest=d.digest,
        source=d.source,
        schema=d.schema,
        num_rows=d.num_rows if d.HasField("num_rows") else None,
        create_time=0,
    )


def dataset_to_pb(d: Dataset) -> lineage_pb2.Dataset:
    return lineage_pb2.Dataset(
        name=f"datasets/{d.id}",
        dataset_id=d.id,
        display_name=d.display_name,
        digest=d.digest,
        source=d.source,
        schema=d.schema,
        num_rows=d.num_rows,
        create_time=timestamp_to_pb(d.create_time),
    )


def dataset_key_from_pb(r: lineage_pb2.GetDatasetRequest) -> tuple[str, str, str]:
    return (r.name, r.display_name, r.digest)


def entities_from_pb(items, *, field: str) -> list[IOEntity]:
    out = []
    for i, item in enumerate(items):
        which = item.WhichOneof("entity")
        if which == "dataset":
            out.append(IOEntity(item.context, dataset=dataset_from_pb(item.dataset)))
        elif which == "artifact":
            a = item.artifact
            ref = artifact_ref(a.run, a.path, field=f"{field}[{i}].artifact")
            out.append(IOEntity(item.context, artifact=ref))
        else:
            raise InvalidArgument(f"{field}[{i}]", "set a dataset or an artifact")
    return out


def node_ref_from_pb(ref: lineage_pb2.NodeRef) -> NodeRef | tuple[str, str, str]:
    """A node, or a dataset key still to resolve (name, display_name, digest)."""
    from ketch_server.domain.ids import RUN, parse_name

    which = ref.WhichOneof("node")
    if which == "run":
        return NodeRef(NodeKind.RUN, parse_name(ref.run, RUN, field="node.run"))
    if which == "dataset":
        return dataset_key_from_pb(ref.dataset)
    if which == "artifact":
        return artifact_ref(ref.artifact.run, ref.artifact.path, field="node.artifact")
    if which == "model_version":
        model, version = parse_version_name(ref.model_version, field="node.model_version")
        return NodeRef(NodeKind.MODEL_VERSION, f"{model}/{version}")
    raise InvalidArgument("node", "required: a run, dataset, artifact or model_version")


def direction_from_pb(direction: int) -> Direction:
    try:
        return _DIRECTION_FROM_PB[direction]
    except KeyError:
        raise InvalidArgument("direction", f"unknown lineage direction {direction}") from None


def node_to_pb(n: Node) -> lineage_pb2.LineageNode:
    pb = lineage_pb2.LineageNode(
        kind=_NODE_KIND_TO_PB[n.kind],
        name=n.name,
        display_name=n.display_name,
        depth=n.depth,
        exists=n.exists,
    )
    if n.kind is NodeKind.RUN and n.exists:
        pb.run_state = _RUN_STATE_TO_PB.get(n.run_state, 0)
        pb.experiment = f"experiments/{n.experiment_id}"
    elif n.kind is NodeKind.DATASET and n.dataset is not None:
        pb.dataset.CopyFrom(dataset_to_pb(n.dataset))
    elif n.kind is NodeKind.ARTIFACT:
        run_id, _, path = n.ref.partition("/")
        pb.run = f"runs/{run_id}"
        pb.path = path
    return pb


def edge_to_pb(e: Edge) -> lineage_pb2.LineageEdge:
    return lineage_pb2.LineageEdge(
        kind=_EDGE_KIND_TO_PB[e.kind],
        upstream=node_name(e.upstream.kind, e.upstream.ref),
        downstream=node_name(e.downstream.kind, e.downstream.ref),
        context=e.context,
        step=e.step,
        create_time=timestamp_to_pb(e.create_time),
    )
