"""The lineage store: datasets, lineage events, the recursive graph query, run forks.

Contract (every backend, SQLite and PostgreSQL), as for the tracking store:

* Each public coroutine runs in its own transaction; it commits whole or changes nothing.
* Inputs are validated by the service layer; database failures become domain errors.
* Datasets are identified by (display_name, digest) and created idempotently; a later
  call fills descriptive fields still unknown, never overwrites known ones.
* Lineage events are immutable and idempotent: the same (upstream, downstream, kind,
  context) again is a no-op.
* CHILD_OF edges are not stored: the graph query derives them from ``runs.parent_run_id``.
* The graph query is one recursive CTE that terminates on cyclic graphs: every row
  carries its depth, depth is bounded, and UNION drops repeated (direction, node,
  depth) rows, so at most 2 x nodes x (depth + 1) rows are ever produced.

Shares the tracking store's plumbing (transactions, run checks), hence the subclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    String,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    null,
    select,
    table,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ketch_server.domain import metrics as chunks
from ketch_server.domain.errors import FailedPrecondition, NotFound, OutOfRange, ResourceExhausted
from ketch_server.domain.identity import current_principal
from ketch_server.domain.ids import new_id
from ketch_server.domain.lineage import (
    LIMITS,
    Dataset,
    Direction,
    Edge,
    EdgeKind,
    IOEntity,
    Node,
    NodeKind,
    NodeRef,
    node_name,
)
from ketch_server.domain.models import Lifecycle, MetricColumns, RunState
from ketch_server.store.schema import (
    datasets,
    experiments,
    lineage_edges,
    metric_chunks,
    metric_keys,
    metric_summaries,
    model_versions,
    params,
    runs,
    tags,
)
from ketch_server.store.tracking import TrackingStore, now_ms

__all__ = ["FORK_TAG", "SYSTEM_TAG_PREFIX", "LineageStore"]

# Tags under this prefix belong to ketch; a fork does not inherit them.
SYSTEM_TAG_PREFIX = "ketch."
# Set on a fork: `runs/{source}@{step}`.
FORK_TAG = "ketch.forked_from"

# The artifacts table (migration 0004) as far as lineage relies on it: unique
# (run_id, path). Used only to tell whether a referenced artifact was uploaded.
_artifacts = table("artifacts", column("run_id"), column("path"))

_EDGE_KEY = [
    "upstream_kind",
    "upstream_ref",
    "downstream_kind",
    "downstream_ref",
    "kind",
    "context",
]


class LineageStore(TrackingStore):
    """Lineage persistence over one async engine. See the module docstring."""

    # ------------------------------------------------------------ datasets

    async def create_dataset(self, d: Dataset) -> Dataset:
        """Create-or-get the dataset (display_name, digest); see the module docstring."""
        async with self._tx() as conn:
            return await self._ensure_dataset(conn, d)

    async def get_dataset(self, dataset_id: str) -> Dataset:
        async with self._tx() as conn:
            row = (
                (await conn.execute(select(datasets).where(datasets.c.id == dataset_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"datasets/{dataset_id}", f"dataset datasets/{dataset_id} not found")
        return _dataset(row)

    async def get_dataset_by_key(self, display_name: str, digest: str) -> Dataset:
        async with self._tx() as conn:
            row = await self._dataset_row(conn, display_name, digest)
        if row is None:
            raise NotFound("datasets", f"no dataset {display_name}@{digest}")
        return _dataset(row)

    async def _dataset_row(self, conn: AsyncConnection, display_name: str, digest: str):
        stmt = select(datasets).where(
            datasets.c.display_name == display_name, datasets.c.digest == digest
        )
        return (await conn.execute(stmt)).mappings().first()

    async def _ensure_dataset(self, conn: AsyncConnection, d: Dataset) -> Dataset:
        stmt = self._insert(datasets).on_conflict_do_nothing(
            index_elements=[datasets.c.display_name, datasets.c.digest]
        )
        await conn.execute(
            stmt,
            [
                {
                    "id": new_id(),
                    "display_name": d.display_name,
                    "digest": d.digest,
                    "source": d.source,
                    "schema_json": d.schema,
                    "num_rows": d.num_rows,
                    "created_by": current_principal().name,
                    "create_time": now_ms(),
                }
            ],
        )
        row = await self._dataset_row(conn, d.display_name, d.digest)
        fill: dict[str, Any] = {}
        if d.source and not row["source"]:
            fill["source"] = d.source
        if d.schema and not row["schema_json"]:
            fill["schema_json"] = d.schema
        if d.num_rows is not None and row["num_rows"] is None:
            fill["num_rows"] = d.num_rows
        if fill:
            await conn.execute(update(datasets).where(datasets.c.id == row["id"]).values(fill))
            row = await self._dataset_row(conn, d.display_name, d.digest)
        return _dataset(row)

    # ------------------------------------------------------ inputs, outputs

    async def log_io(self, run_id: str, entities: Sequence[IOEntity], kind: EdgeKind) -> list[Node]:
        """Record CONSUMED (inputs) or PRODUCED (outputs) events of a writable run.

        Returns the nodes recorded, in the order given.

        Raises:
            NotFound: the run, or the run of a referenced artifact, does not exist.
            FailedPrecondition: the run is deleted.
        """
        out: list[Node] = []
        rows: list[dict[str, Any]] = []
        now = now_ms()
        async with self._tx() as conn:
            await self._writable_run(conn, run_id)
            for i, entity in enumerate(entities):
                node = await self._io_node(conn, entity, i)
                out.append(node)
                run_node = ("RUN", run_id)
                other = (node.kind.value, node.ref)
                up, down = (other, run_node) if kind is EdgeKind.CONSUMED else (run_node, other)
                rows.append(
                    {
                        "kind": kind.value,
                        "upstream_kind": up[0],
                        "upstream_ref": up[1],
                        "downstream_kind": down[0],
                        "downstream_ref": down[1],
                        "context": entity.context,
                        "step": None,
                        "create_time": now,
                    }
                )
            if rows:
                await self._record_edges(conn, rows)
        return out

    async def _io_node(self, conn: AsyncConnection, entity: IOEntity, i: int) -> Node:
        if entity.dataset is not None:
            d = await self._ensure_dataset(conn, entity.dataset)
            return Node(NodeKind.DATASET, d.id, d.label, 0, dataset=d)
        ref = entity.artifact
        assert ref is not None
        owner, _, path = ref.ref.partition("/")
        await self._run_row(conn, owner, label=f"artifact run (entity {i})")
        return Node(NodeKind.ARTIFACT, ref.ref, path, 0)

    async def _record_edges(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        stmt = self._insert(lineage_edges).on_conflict_do_nothing(
            index_elements=[lineage_edges.c[name] for name in _EDGE_KEY]
        )
        actor = current_principal().name
        await conn.execute(stmt, [{**row, "created_by": actor} for row in rows])

    # ---------------------------------------------------------------- graph

    async def get_lineage(
        self, root: NodeRef, direction: Direction, depth: int, max_nodes: int
    ) -> tuple[list[Node], list[Edge]]:
        """The nodes within ``depth`` edges of ``root`` in ``direction`` (the root first,
        then by depth) and the edges walked between them.

        Raises:
            NotFound: the root run or dataset (or the run of a root artifact) does not exist.
            ResourceExhausted: more than ``max_nodes`` nodes or ``LIMITS.max_edges`` edges.
        """
        async with self._tx() as conn:
            await self._check_root(conn, root)
            directed = _directed_edges(direction)
            walk = _walk(directed, root, direction, depth)
            reached = await self._reached(conn, walk, depth, max_nodes, root)
            edges = await self._walked_edges(conn, walk, directed, depth)
            nodes = await self._describe(conn, reached)
        return nodes, edges

    async def _check_root(self, conn: AsyncConnection, root: NodeRef) -> None:
        if root.kind is NodeKind.RUN:
            await self._run_row(conn, root.ref)
        elif root.kind is NodeKind.DATASET:
            found = await conn.execute(select(datasets.c.id).where(datasets.c.id == root.ref))
            if found.first() is None:
                raise NotFound(f"datasets/{root.ref}", f"dataset datasets/{root.ref} not found")
        elif root.kind is NodeKind.ARTIFACT:
            await self._run_row(conn, root.ref.partition("/")[0])
        elif root.kind is NodeKind.MODEL_VERSION and not await self._registered_versions(
            conn, [root.ref]
        ):
            name = node_name(root.kind, root.ref)
            raise NotFound(name, f"model version {name} not found")

    async def _registered_versions(self, conn: AsyncConnection, refs: list[str]) -> set[str]:
        """The refs (``{model}/{version}``) of registered model versions among ``refs``."""
        keys = [(m, int(v)) for m, _, v in (r.partition("/") for r in refs) if v.isdigit()]
        found: set[str] = set()
        for part in _chunked(keys):
            mv = model_versions.c
            rows = await conn.execute(
                select(mv.model, mv.version).where(tuple_(mv.model, mv.version).in_(part))
            )
            found.update(f"{m}/{v}" for m, v in rows)
        return found

    async def _reached(
        self, conn: AsyncConnection, walk, depth: int, max_nodes: int, root: NodeRef
    ) -> dict[tuple[str, str], int]:
        """(kind, ref) -> smallest depth. Reads at most the rows ``max_nodes`` nodes can
        make, so an oversized graph is detected without walking all of it."""
        cap = 2 * max_nodes * (depth + 1) + 1
        result = await conn.execute(select(walk.c.kind, walk.c.ref, walk.c.depth).limit(cap))
        reached: dict[tuple[str, str], int] = {}
        count = 0
        for kind, ref, d in result:
            count += 1
            key = (kind, ref)
            reached[key] = min(d, reached.get(key, d))
        if len(reached) > max_nodes or count >= cap:
            raise ResourceExhausted(
                "lineage_nodes",
                f"the lineage of {root.kind.value.lower()} {root.ref} within depth {depth} "
                f"has more than {max_nodes} nodes; lower the depth, pick one direction or "
                "raise max_nodes",
            )
        return reached

    async def _walked_edges(self, conn: AsyncConnection, walk, directed, depth: int) -> list[Edge]:
        d = directed.c
        stmt = (
            select(
                d.kind,
                d.up_kind,
                d.up_ref,
                d.down_kind,
                d.down_ref,
                d.context,
                d.step,
                d.create_time,
            )
            .distinct()
            .select_from(
                walk.join(
                    directed,
                    and_(
                        d.dir == walk.c.dir,
                        d.from_kind == walk.c.kind,
                        d.from_ref == walk.c.ref,
                    ),
                )
            )
            .where(walk.c.depth < depth)
            .limit(LIMITS.max_edges + 1)
        )
        rows = (await conn.execute(stmt)).all()
        if len(rows) > LIMITS.max_edges:
            raise ResourceExhausted(
                "lineage_edges",
                f"the lineage has more than {LIMITS.max_edges} edges; lower the depth",
            )
        edges = {
            (kind, uk, ur, dk, dr, ctx): Edge(
                EdgeKind(kind), NodeRef(NodeKind(uk), ur), NodeRef(NodeKind(dk), dr), ctx, step, t
            )
            for kind, uk, ur, dk, dr, ctx, step, t in rows
        }
        return sorted(
            edges.values(),
            key=lambda e: (e.create_time, e.kind.value, e.upstream.ref, e.downstream.ref),
        )

    async def _describe(
        self, conn: AsyncConnection, reached: dict[tuple[str, str], int]
    ) -> list[Node]:
        by_kind: dict[str, list[str]] = {}
        for kind, ref in reached:
            by_kind.setdefault(kind, []).append(ref)
        run_info = {}
        for part in _chunked(by_kind.get("RUN", [])):
            stmt = select(runs.c.id, runs.c.display_name, runs.c.state, runs.c.experiment_id)
            for rid, name, state, exp in await conn.execute(stmt.where(runs.c.id.in_(part))):
                run_info[rid] = (name, state, exp)
        dataset_info = {}
        for part in _chunked(by_kind.get("DATASET", [])):
            rows = await conn.execute(select(datasets).where(datasets.c.id.in_(part)))
            dataset_info.update((r["id"], _dataset(r)) for r in rows.mappings())
        uploaded: set[tuple[str, str]] = set()
        artifact_keys = [tuple(ref.split("/", 1)) for ref in by_kind.get("ARTIFACT", [])]
        for part in _chunked(artifact_keys):
            rows = await conn.execute(
                select(_artifacts.c.run_id, _artifacts.c.path).where(
                    tuple_(_artifacts.c.run_id, _artifacts.c.path).in_(part)
                )
            )
            uploaded.update((r, p) for r, p in rows)
        registered = await self._registered_versions(conn, by_kind.get("MODEL_VERSION", []))
        nodes = [
            _node(NodeKind(kind), ref, depth, run_info, dataset_info, uploaded, registered)
            for (kind, ref), depth in reached.items()
        ]
        nodes.sort(key=lambda n: (n.depth, n.kind.value, n.display_name, n.ref))
        return nodes

    # ----------------------------------------------------------------- fork

    async def fork_run(
        self, source_id: str, step: int, *, display_name: str, request_id: str | None, user: str
    ) -> str:
        """Create a fork of run ``source_id`` at ``step`` (see the LineageService
        contract); returns the new run's id. With a ``request_id`` already used, returns
        that run's id.

        Raises:
            NotFound: the source run does not exist.
            FailedPrecondition: the source run or its experiment is deleted.
            OutOfRange: ``step`` is past the last step the source logged.
        """
        if request_id:
            existing = await self._run_id_by_request_id(request_id)
            if existing:
                return existing
        try:
            async with self._tx() as conn:
                src = await self._fork_source(conn, source_id, step)
                fork_id = new_id()
                name = display_name or _fork_name(src["display_name"], step)
                await self._insert_fork_row(conn, src, fork_id, name, request_id, user)
                await self._copy_params_and_tags(conn, source_id, fork_id, step)
                key_ids = await self._copy_keys(conn, source_id, fork_id, step)
                await self._copy_chunks(conn, source_id, fork_id, step, key_ids)
                await self._recompute_summaries(conn, fork_id)
                await self._record_edges(
                    conn,
                    [
                        {
                            "kind": EdgeKind.FORKED_FROM.value,
                            "upstream_kind": NodeKind.RUN.value,
                            "upstream_ref": source_id,
                            "downstream_kind": NodeKind.RUN.value,
                            "downstream_ref": fork_id,
                            "context": "",
                            "step": step,
                            "create_time": now_ms(),
                        }
                    ],
                )
                return fork_id
        except IntegrityError:
            if request_id:
                existing = await self._run_id_by_request_id(request_id)
                if existing:
                    return existing
            raise

    async def _run_id_by_request_id(self, request_id: str) -> str | None:
        async with self._tx() as conn:
            stmt = select(runs.c.id).where(runs.c.request_id == request_id)
            return (await conn.execute(stmt)).scalar()

    async def _fork_source(self, conn: AsyncConnection, source_id: str, step: int):
        src = await self._run_row(conn, source_id, label="source_run")
        if src["lifecycle"] == Lifecycle.DELETED.value:
            raise FailedPrecondition(
                f"runs/{source_id} is deleted; undelete it before forking it", field="source_run"
            )
        exp_deleted = await conn.execute(
            select(experiments.c.id).where(
                experiments.c.id == src["experiment_id"],
                experiments.c.lifecycle == Lifecycle.DELETED.value,
            )
        )
        if exp_deleted.first() is not None:
            raise FailedPrecondition(
                f"experiments/{src['experiment_id']} of runs/{source_id} is deleted; "
                "undelete it before forking its runs",
                field="source_run",
            )
        last = (
            await conn.execute(
                select(func.max(metric_summaries.c.last_step)).where(
                    metric_summaries.c.run_id == source_id
                )
            )
        ).scalar()
        if last is not None and step > last:
            raise OutOfRange(
                f"step: runs/{source_id} logged no step past {last}; fork at a step "
                f"between 0 and {last}",
                field="step",
            )
        return src

    async def _insert_fork_row(self, conn, src, fork_id, display_name, request_id, user) -> None:
        now = now_ms()
        row = {
            "id": fork_id,
            "experiment_id": src["experiment_id"],
            "display_name": display_name,
            "state": RunState.RUNNING.value,
            "lifecycle": Lifecycle.ACTIVE.value,
            "start_time": now,
            "end_time": None,
            "update_time": now,
            "delete_time": None,
            "parent_run_id": None,
            "user": user or src["user"],
            "request_id": request_id or None,
            "source": src["source"],
            "environment": src["environment"],
            "revision": 1,
            "created_by": current_principal().name,
        }
        await conn.execute(runs.insert().values(row))

    async def _copy_params_and_tags(self, conn, source_id: str, fork_id: str, step: int) -> None:
        await conn.execute(
            params.insert().from_select(
                ["run_id", "key", "value", "created_by"],
                select(
                    literal(fork_id, String), params.c.key, params.c.value, params.c.created_by
                ).where(params.c.run_id == source_id),
            )
        )
        await conn.execute(
            tags.insert().from_select(
                ["run_id", "key", "value", "updated_by"],
                select(literal(fork_id, String), tags.c.key, tags.c.value, tags.c.updated_by).where(
                    tags.c.run_id == source_id, ~tags.c.key.startswith(SYSTEM_TAG_PREFIX)
                ),
            )
        )
        await conn.execute(
            tags.insert().values(
                run_id=fork_id,
                key=FORK_TAG,
                value=f"runs/{source_id}@{step}",
                updated_by=current_principal().name,
            )
        )

    async def _copy_keys(self, conn, source_id: str, fork_id: str, step: int) -> dict[int, int]:
        """Copy the metric keys with points at or below ``step``; source id -> fork id."""
        c = metric_chunks.c
        k = metric_keys.c
        used = select(c.key_id).where(c.run_id == source_id, c.first_step <= step).distinct()
        src_keys = dict(
            (
                await conn.execute(
                    select(k.name, k.id).where(k.run_id == source_id, k.id.in_(used))
                )
            ).all()
        )
        if not src_keys:
            return {}
        await conn.execute(
            metric_keys.insert(), [{"run_id": fork_id, "name": n} for n in sorted(src_keys)]
        )
        new_keys = dict((await conn.execute(select(k.name, k.id).where(k.run_id == fork_id))).all())
        return {src_keys[name]: new_keys[name] for name in src_keys}

    async def _copy_chunks(
        self, conn, source_id: str, fork_id: str, step: int, key_ids: dict[int, int]
    ) -> None:
        """Copy the source's chunks that start at or below ``step``, in write order:
        runs of chunks entirely at or below it as rows (INSERT ... SELECT, no decoding);
        a chunk straddling it decoded, cut after ``step`` and re-encoded."""
        c = metric_chunks.c
        meta = await conn.execute(
            select(c.id, c.last_step)
            .where(c.run_id == source_id, c.first_step <= step)
            .order_by(c.id)
        )
        segment: list[int] = []
        for chunk_id, last_step in meta.all():
            if last_step <= step:
                segment.append(chunk_id)
                continue
            await self._copy_whole(conn, source_id, fork_id, step, key_ids, segment)
            segment = []
            await self._copy_cut(conn, chunk_id, fork_id, step, key_ids)
        await self._copy_whole(conn, source_id, fork_id, step, key_ids, segment)

    async def _copy_whole(self, conn, source_id, fork_id, step, key_ids, segment) -> None:
        if not segment:
            return
        c = metric_chunks.c
        new_key = _mapped(c.key_id, key_ids)
        columns = ["first_step", "last_step", "count", "min_value", "max_value"]
        columns += ["steps", "timestamps", "values"]
        stmt = metric_chunks.insert().from_select(
            ["run_id", "key_id", "rank", *columns],
            select(literal(fork_id, String), new_key, c.rank, *(c[n] for n in columns))
            .where(
                c.run_id == source_id,
                c.id >= segment[0],
                c.id <= segment[-1],
                c.first_step <= step,
                c.last_step <= step,
            )
            .order_by(c.id),
        )
        await conn.execute(stmt)

    async def _copy_cut(self, conn, chunk_id: int, fork_id: str, step: int, key_ids) -> None:
        c = metric_chunks.c
        row = (await conn.execute(select(metric_chunks).where(c.id == chunk_id))).mappings().one()
        steps, stamps, values = chunks.decode_chunk(
            row["first_step"], row["count"], row["steps"], row["timestamps"], row["values"]
        )
        keep = steps <= step
        (cut,) = chunks.split_batch(
            MetricColumns(
                keys=("_",),
                key_index=np.zeros(int(keep.sum()), dtype=np.int64),
                steps=steps[keep],
                timestamps=stamps[keep],
                values=values[keep],
            ),
            now_ms(),
        )
        await conn.execute(
            metric_chunks.insert().values(
                run_id=fork_id,
                key_id=key_ids[row["key_id"]],
                rank=row["rank"],
                first_step=cut.first_step,
                last_step=cut.last_step,
                count=cut.count,
                min_value=cut.min_value,
                max_value=cut.max_value,
                steps=cut.steps_blob,
                timestamps=cut.timestamps_blob,
                values=cut.values_blob,
            )
        )

    async def _recompute_summaries(self, conn, fork_id: str) -> None:
        """Per key: count, min and max from the chunk columns; the latest value from the
        chunk with the highest last step (the later write on ties), decoded alone."""
        c = metric_chunks.c
        k = metric_keys.c
        totals = await conn.execute(
            select(c.key_id, func.sum(c.count), func.min(c.min_value), func.max(c.max_value))
            .where(c.run_id == fork_id)
            .group_by(c.key_id)
        )
        by_key = {key_id: (int(n), lo, hi) for key_id, n, lo, hi in totals}
        if not by_key:
            return
        top = (
            select(c.key_id, func.max(c.last_step).label("last_step"))
            .where(c.run_id == fork_id)
            .group_by(c.key_id)
            .subquery()
        )
        winners = (
            select(func.max(c.id))
            .select_from(
                metric_chunks.join(
                    top, and_(top.c.key_id == c.key_id, top.c.last_step == c.last_step)
                )
            )
            .where(c.run_id == fork_id)
            .group_by(c.key_id)
        )
        rows = await conn.execute(
            select(k.name, c.key_id, c.first_step, c.count, c.steps, c.timestamps, c["values"])
            .select_from(metric_chunks.join(metric_keys, k.id == c.key_id))
            .where(c.id.in_(winners))
        )
        summaries = []
        for name, key_id, first, count, s, t, v in rows:
            steps, stamps, values = chunks.decode_chunk(first, count, s, t, v)
            n, lo, hi = by_key[key_id]
            last = float(values[-1])
            summaries.append(
                {
                    "run_id": fork_id,
                    "key": name,
                    "last_value": None if last != last else last,
                    "last_step": int(steps[-1]),
                    "last_timestamp": int(stamps[-1]),
                    "min_value": lo,
                    "max_value": hi,
                    "count": n,
                }
            )
        await conn.execute(metric_summaries.insert(), summaries)


# ------------------------------------------------------------------ helpers


def _directed_edges(direction: Direction):
    """Every edge once per direction it can be walked in: (dir, from, to) plus the edge
    itself. CHILD_OF edges come from runs.parent_run_id."""
    e = lineage_edges.c
    r = runs.c
    stored = [e.kind, e.upstream_kind, e.upstream_ref, e.downstream_kind, e.downstream_ref]
    stored += [e.context, e.step, e.create_time]
    derived = [
        literal(EdgeKind.CHILD_OF.value, String(16)),
        literal(NodeKind.RUN.value, String(16)),
        r.parent_run_id,
        literal(NodeKind.RUN.value, String(16)),
        r.id,
        literal("", String(128)),
        cast(null(), BigInteger),
        r.start_time,
    ]
    has_parent = r.parent_run_id.is_not(None)
    names = ["kind", "up_kind", "up_ref", "down_kind", "down_ref", "context", "step"]
    names += ["create_time"]
    branches = []
    if direction in (Direction.UP, Direction.BOTH):
        # Walking up: from the downstream end to the upstream end.
        branches.append(_branch("UP", stored[3], stored[4], stored[1], stored[2], stored, names))
        branches.append(
            _branch("UP", derived[3], derived[4], derived[1], derived[2], derived, names).where(
                has_parent
            )
        )
    if direction in (Direction.DOWN, Direction.BOTH):
        branches.append(_branch("DOWN", stored[1], stored[2], stored[3], stored[4], stored, names))
        branches.append(
            _branch("DOWN", derived[1], derived[2], derived[3], derived[4], derived, names).where(
                has_parent
            )
        )
    return union_all(*branches).cte("lineage_directed")


def _branch(direction, from_kind, from_ref, to_kind, to_ref, cols, names):
    return select(
        literal(direction, String(8)).label("dir"),
        # No casts on the columns: the join on from_kind/from_ref must stay indexable.
        from_kind.label("from_kind"),
        from_ref.label("from_ref"),
        to_kind.label("to_kind"),
        to_ref.label("to_ref"),
        *(col.label(name) for col, name in zip(cols, names, strict=True)),
    )


def _walk(directed, root: NodeRef, direction: Direction, depth: int):
    """The recursive walk: (dir, kind, ref, depth) rows from the root outwards."""
    node = [
        literal(root.kind.value, String(16)).label("kind"),
        literal(root.ref, String(1100)).label("ref"),
        literal(0, BigInteger).label("depth"),
    ]
    if direction is Direction.BOTH:
        # One seed row per direction, from one SELECT: the initial term stays simple.
        dirs = union_all(
            *(select(literal(d, String(8)).label("dir")) for d in ("UP", "DOWN"))
        ).subquery("lineage_dirs")
        seed = select(dirs.c.dir, *node)
    else:
        seed = select(literal(direction.value, String(8)).label("dir"), *node)
    walk = seed.cte("lineage_walk", recursive=True)
    d = directed.c
    step = (
        select(walk.c.dir, d.to_kind, d.to_ref, walk.c.depth + 1)
        .select_from(
            walk.join(
                directed,
                and_(d.dir == walk.c.dir, d.from_kind == walk.c.kind, d.from_ref == walk.c.ref),
            )
        )
        .where(walk.c.depth < depth)
    )
    return walk.union(step)


def _mapped(column_, mapping: dict[int, int]):
    """A SQL expression mapping ``column_`` through ``mapping`` (small: one per key)."""
    return case(mapping, value=column_)


def _chunked(items: list, size: int = 500):
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]


def _dataset(row) -> Dataset:
    return Dataset(
        id=row["id"],
        display_name=row["display_name"],
        digest=row["digest"],
        source=row["source"],
        schema=row["schema_json"],
        num_rows=row["num_rows"],
        create_time=row["create_time"],
    )


def _node(
    kind: NodeKind, ref: str, depth: int, run_info, dataset_info, uploaded, registered=frozenset()
) -> Node:
    if kind is NodeKind.RUN:
        info = run_info.get(ref)
        if info is None:
            return Node(kind, ref, ref, depth, exists=False)
        name, state, exp = info
        return Node(kind, ref, name, depth, run_state=state, experiment_id=exp)
    if kind is NodeKind.DATASET:
        d = dataset_info.get(ref)
        if d is None:
            return Node(kind, ref, ref, depth, exists=False)
        return Node(kind, ref, d.label, depth, dataset=d)
    if kind is NodeKind.ARTIFACT:
        run_id, _, path = ref.partition("/")
        return Node(kind, ref, path, depth, exists=(run_id, path) in uploaded)
    model, _, version = ref.partition("/")
    return Node(kind, ref, f"{model} v{version}", depth, exists=ref in registered)


def _fork_name(source_name: str, step: int) -> str:
    suffix = f"-fork-{step}"
    return source_name[: 256 - len(suffix)] + suffix
