"""Lineage use cases: datasets, run inputs and outputs, the lineage graph, forks.

Everything arriving here is a plain Python value; everything raised is a domain
error. Validation happens before any write, so a rejected request changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ketch_server.domain import lineage, validation
from ketch_server.domain.errors import InvalidArgument, ResourceExhausted
from ketch_server.domain.ids import RUN, parse_name
from ketch_server.domain.lineage import (
    DATASETS,
    LIMITS,
    Dataset,
    Direction,
    Edge,
    EdgeKind,
    IOEntity,
    Node,
    NodeKind,
    NodeRef,
)
from ketch_server.domain.models import Run
from ketch_server.domain.validation import LIMITS as TRACKING_LIMITS
from ketch_server.store.lineage import LineageStore

__all__ = ["DatasetKey", "LineageService"]

# How a request names a dataset: `datasets/{id}`, or display_name and digest.
DatasetKey = tuple[str, str, str]


class LineageService:
    """The lineage use cases over one :class:`LineageStore`. Stateless and task-safe."""

    def __init__(self, store: LineageStore) -> None:
        self.store = store

    # ------------------------------------------------------------ datasets

    async def create_dataset(self, d: Dataset) -> Dataset:
        lineage.check_dataset("dataset", d)
        return await self.store.create_dataset(d)

    async def get_dataset(self, key: DatasetKey, *, field: str = "") -> Dataset:
        name, display_name, digest = key
        prefix = f"{field}." if field else ""
        if name:
            return await self.store.get_dataset(parse_name(name, DATASETS, field=f"{prefix}name"))
        if not display_name or not digest:
            raise InvalidArgument(
                f"{prefix}name", "required: give datasets/<id>, or display_name and digest"
            )
        validation.check_display_name(f"{prefix}display_name", display_name)
        validation.check_text(f"{prefix}digest", digest, LIMITS.digest_chars)
        return await self.store.get_dataset_by_key(display_name, digest)

    # ------------------------------------------------------ inputs, outputs

    async def log_inputs(self, run: str, inputs: Sequence[IOEntity]) -> list[Node]:
        return await self._log(run, inputs, "inputs", EdgeKind.CONSUMED)

    async def log_outputs(self, run: str, outputs: Sequence[IOEntity]) -> list[Node]:
        return await self._log(run, outputs, "outputs", EdgeKind.PRODUCED)

    async def _log(
        self, run: str, entities: Sequence[IOEntity], field: str, kind: EdgeKind
    ) -> list[Node]:
        run_id = parse_name(run, RUN, field="run")
        if not entities:
            raise InvalidArgument(field, "required: at least one dataset or artifact")
        if len(entities) > LIMITS.entities_per_call:
            raise ResourceExhausted(
                f"{field}_per_call",
                f"{field}: {len(entities)} entries in one call; the limit is "
                f"{LIMITS.entities_per_call}",
            )
        for i, entity in enumerate(entities):
            lineage.check_context(f"{field}[{i}].context", entity.context)
            if entity.dataset is not None:
                lineage.check_dataset(f"{field}[{i}].dataset", entity.dataset)
            elif entity.artifact is None:
                raise InvalidArgument(f"{field}[{i}]", "set a dataset or an artifact")
        return await self.store.log_io(run_id, entities, kind)

    # ---------------------------------------------------------------- graph

    async def get_lineage(
        self, root: NodeRef | DatasetKey, direction: Direction, depth: int, max_nodes: int
    ) -> tuple[list[Node], list[Edge]]:
        """The lineage around ``root``; a dataset may be named by its key, which is
        resolved first (NotFound when unknown)."""
        depth = lineage.check_depth(depth)
        max_nodes = lineage.check_max_nodes(max_nodes)
        if isinstance(root, tuple):
            root = NodeRef(
                NodeKind.DATASET, (await self.get_dataset(root, field="node.dataset")).id
            )
        return await self.store.get_lineage(root, direction, depth, max_nodes)

    # ----------------------------------------------------------------- fork

    async def fork_run(
        self, source_run: str, step: int, *, display_name: str, request_id: str, user: str
    ) -> Run:
        source_id = parse_name(source_run, RUN, field="source_run")
        if step < 0:
            raise InvalidArgument("step", "must not be negative")
        validation.check_display_name("display_name", display_name, required=False)
        validation.check_display_name("user", user, required=False)
        validation.check_text("request_id", request_id, TRACKING_LIMITS.request_id_chars)
        fork_id = await self.store.fork_run(
            source_id,
            step,
            display_name=display_name,
            request_id=request_id or None,
            user=user,
        )
        return await self.store.get_run(fork_id)


def dataset_ref(value: str, *, field: str) -> NodeRef:
    """The node of a ``datasets/{id}`` name."""
    return NodeRef(NodeKind.DATASET, parse_name(value, DATASETS, field=field))
