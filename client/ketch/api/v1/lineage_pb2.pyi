import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from ketch.api.v1 import auth_pb2 as _auth_pb2
from ketch.api.v1 import tracking_pb2 as _tracking_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_KIND_UNSPECIFIED: _ClassVar[NodeKind]
    NODE_KIND_RUN: _ClassVar[NodeKind]
    NODE_KIND_DATASET: _ClassVar[NodeKind]
    NODE_KIND_ARTIFACT: _ClassVar[NodeKind]
    NODE_KIND_MODEL_VERSION: _ClassVar[NodeKind]

class EdgeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EDGE_KIND_UNSPECIFIED: _ClassVar[EdgeKind]
    EDGE_KIND_CONSUMED: _ClassVar[EdgeKind]
    EDGE_KIND_PRODUCED: _ClassVar[EdgeKind]
    EDGE_KIND_CHILD_OF: _ClassVar[EdgeKind]
    EDGE_KIND_FORKED_FROM: _ClassVar[EdgeKind]

class LineageDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINEAGE_DIRECTION_UNSPECIFIED: _ClassVar[LineageDirection]
    LINEAGE_DIRECTION_UP: _ClassVar[LineageDirection]
    LINEAGE_DIRECTION_DOWN: _ClassVar[LineageDirection]
    LINEAGE_DIRECTION_BOTH: _ClassVar[LineageDirection]
NODE_KIND_UNSPECIFIED: NodeKind
NODE_KIND_RUN: NodeKind
NODE_KIND_DATASET: NodeKind
NODE_KIND_ARTIFACT: NodeKind
NODE_KIND_MODEL_VERSION: NodeKind
EDGE_KIND_UNSPECIFIED: EdgeKind
EDGE_KIND_CONSUMED: EdgeKind
EDGE_KIND_PRODUCED: EdgeKind
EDGE_KIND_CHILD_OF: EdgeKind
EDGE_KIND_FORKED_FROM: EdgeKind
LINEAGE_DIRECTION_UNSPECIFIED: LineageDirection
LINEAGE_DIRECTION_UP: LineageDirection
LINEAGE_DIRECTION_DOWN: LineageDirection
LINEAGE_DIRECTION_BOTH: LineageDirection

class Dataset(_message.Message):
    __slots__ = ("name", "dataset_id", "display_name", "digest", "source", "schema", "num_rows", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    dataset_id: str
    display_name: str
    digest: str
    source: str
    schema: str
    num_rows: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., dataset_id: _Optional[str] = ..., display_name: _Optional[str] = ..., digest: _Optional[str] = ..., source: _Optional[str] = ..., schema: _Optional[str] = ..., num_rows: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("name", "display_name", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    digest: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("run", "path")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    run: str
    path: str
    def __init__(self, run: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class RunIO(_message.Message):
    __slots__ = ("dataset", "artifact", "context")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    artifact: ArtifactRef
    context: str
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ..., artifact: _Optional[_Union[ArtifactRef, _Mapping]] = ..., context: _Optional[str] = ...) -> None: ...

class LogInputsRequest(_message.Message):
    __slots__ = ("run", "inputs")
    RUN_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    run: str
    inputs: _containers.RepeatedCompositeFieldContainer[RunIO]
    def __init__(self, run: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[RunIO, _Mapping]]] = ...) -> None: ...

class LogInputsResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[LineageNode]
    def __init__(self, nodes: _Optional[_Iterable[_Union[LineageNode, _Mapping]]] = ...) -> None: ...

class LogOutputsRequest(_message.Message):
    __slots__ = ("run", "outputs")
    RUN_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    run: str
    outputs: _containers.RepeatedCompositeFieldContainer[RunIO]
    def __init__(self, run: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[RunIO, _Mapping]]] = ...) -> None: ...

class LogOutputsResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[LineageNode]
    def __init__(self, nodes: _Optional[_Iterable[_Union[LineageNode, _Mapping]]] = ...) -> None: ...

class NodeRef(_message.Message):
    __slots__ = ("run", "dataset", "artifact", "model_version")
    RUN_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    run: str
    dataset: GetDatasetRequest
    artifact: ArtifactRef
    model_version: str
    def __init__(self, run: _Optional[str] = ..., dataset: _Optional[_Union[GetDatasetRequest, _Mapping]] = ..., artifact: _Optional[_Union[ArtifactRef, _Mapping]] = ..., model_version: _Optional[str] = ...) -> None: ...

class LineageNode(_message.Message):
    __slots__ = ("kind", "name", "display_name", "depth", "run_state", "experiment", "dataset", "run", "path", "exists")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    RUN_STATE_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    kind: NodeKind
    name: str
    display_name: str
    depth: int
    run_state: _tracking_pb2.RunState
    experiment: str
    dataset: Dataset
    run: str
    path: str
    exists: bool
    def __init__(self, kind: _Optional[_Union[NodeKind, str]] = ..., name: _Optional[str] = ..., display_name: _Optional[str] = ..., depth: _Optional[int] = ..., run_state: _Optional[_Union[_tracking_pb2.RunState, str]] = ..., experiment: _Optional[str] = ..., dataset: _Optional[_Union[Dataset, _Mapping]] = ..., run: _Optional[str] = ..., path: _Optional[str] = ..., exists: _Optional[bool] = ...) -> None: ...

class LineageEdge(_message.Message):
    __slots__ = ("kind", "upstream", "downstream", "context", "step", "create_time")
    KIND_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    kind: EdgeKind
    upstream: str
    downstream: str
    context: str
    step: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[_Union[EdgeKind, str]] = ..., upstream: _Optional[str] = ..., downstream: _Optional[str] = ..., context: _Optional[str] = ..., step: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetLineageRequest(_message.Message):
    __slots__ = ("node", "direction", "depth", "max_nodes")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    node: NodeRef
    direction: LineageDirection
    depth: int
    max_nodes: int
    def __init__(self, node: _Optional[_Union[NodeRef, _Mapping]] = ..., direction: _Optional[_Union[LineageDirection, str]] = ..., depth: _Optional[int] = ..., max_nodes: _Optional[int] = ...) -> None: ...

class GetLineageResponse(_message.Message):
    __slots__ = ("nodes", "edges")
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[LineageNode]
    edges: _containers.RepeatedCompositeFieldContainer[LineageEdge]
    def __init__(self, nodes: _Optional[_Iterable[_Union[LineageNode, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[LineageEdge, _Mapping]]] = ...) -> None: ...

class ForkRunRequest(_message.Message):
    __slots__ = ("source_run", "step", "display_name", "request_id", "user")
    SOURCE_RUN_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    source_run: str
    step: int
    display_name: str
    request_id: str
    user: str
    def __init__(self, source_run: _Optional[str] = ..., step: _Optional[int] = ..., display_name: _Optional[str] = ..., request_id: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...
