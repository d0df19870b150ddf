"""The tracking store: experiments, runs, params, tags and metrics in SQL.

Contract (every backend, SQLite and PostgreSQL):

* Each public coroutine runs in its own transaction; it either commits whole or
  changes nothing.
* Inputs are assumed validated by the service layer; the store still maps
  database constraint failures to domain errors (``AlreadyExists`` and friends)
  and lost connections to ``Unavailable``. It never raises SQLAlchemy errors.
* ``create_run`` with a ``request_id`` already used returns the stored run.
* ``log_metrics`` writes one chunk per key and folds the summaries in SQL, so
  concurrent writers to the same run never lose a count or an extreme.
* Safe for concurrent use from one event loop; holds no per-request state.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, case, delete, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ketch_server.domain import metrics as chunks
from ketch_server.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    ParamConflict,
)
from ketch_server.domain.filters import Node, OrderKey
from ketch_server.domain.identity import current_principal
from ketch_server.domain.ids import new_id
from ketch_server.domain.models import (
    Experiment,
    GpuInfo,
    Lifecycle,
    MetricColumns,
    MetricSummary,
    Page,
    Run,
    RunEnvironment,
    RunSource,
    RunState,
    RunWriter,
    SequencedBatch,
    View,
    check_etag,
    etag_of,
)
from ketch_server.domain.pagination import decode_token, encode_token, fingerprint
from ketch_server.store import search
from ketch_server.store.base import SqlStore, now_ms
from ketch_server.store.schema import (
    experiments,
    metric_chunks,
    metric_keys,
    metric_summaries,
    params,
    runs,
    stream_cursors,
    tags,
)

__all__ = ["TrackingStore", "now_ms"]


class TrackingStore(SqlStore):
    """Tracking persistence over one async engine. See the module docstring."""

    # --------------------------------------------------------- experiments

    async def create_experiment(self, display_name: str, description: str) -> Experiment:
        now = now_ms()
        row = {
            "id": new_id(),
            "display_name": display_name,
            "description": description,
            "lifecycle": Lifecycle.ACTIVE.value,
            "create_time": now,
            "update_time": now,
            "delete_time": None,
            "revision": 1,
            "created_by": current_principal().name,
        }
        try:
            async with self._tx() as conn:
                await conn.execute(experiments.insert().values(row))
        except IntegrityError as exc:
            raise AlreadyExists(
                "experiments",
                f"an experiment named {display_name!r} already exists; pick another name "
                "or fetch it with GetExperimentByName",
                field="display_name",
            ) from exc
        return _experiment(row)

    async def get_experiment(self, experiment_id: str) -> Experiment:
        async with self._tx() as conn:
            return await self._experiment(
                conn, experiments.c.id == experiment_id, f"experiments/{experiment_id}"
            )

    async def get_experiment_by_name(self, display_name: str) -> Experiment:
        async with self._tx() as conn:
            return await self._experiment(
                conn,
                experiments.c.display_name == display_name,
                f"experiment named {display_name!r}",
            )

    async def _experiment(self, conn: AsyncConnection, where, label: str) -> Experiment:
        row = (await conn.execute(select(experiments).where(where))).mappings().first()
        if row is None:
            raise NotFound(
                label.split(" ")[0] if "/" in label else "experiments", f"{label} not found"
            )
        return _experiment(row)

    async def list_experiments(self, page_size: int, page_token: str, view: View) -> Page:
        query = fingerprint("experiments", view.value)
        stmt = select(experiments).where(_lifecycle_clause(experiments, view))
        if page_token:
            (last_id,) = decode_token(page_token, query, 1)
            stmt = stmt.where(experiments.c.id > str(last_id))
        stmt = stmt.order_by(experiments.c.id).limit(page_size + 1)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        items = [_experiment(r) for r in rows[:page_size]]
        token = encode_token(query, [items[-1].id]) if len(rows) > page_size else ""
        return Page(items, token)

    async def update_experiment(
        self, experiment_id: str, changes: dict[str, Any], etag: str = ""
    ) -> Experiment:
        """Apply ``changes`` (display_name, description, lifecycle) guarded by ``etag``."""
        values = dict(changes)
        if "lifecycle" in values:
            deleted = values["lifecycle"] is Lifecycle.DELETED
            values["lifecycle"] = values["lifecycle"].value
            values["delete_time"] = now_ms() if deleted else None
        try:
            async with self._tx() as conn:
                current = await self._experiment(
                    conn, experiments.c.id == experiment_id, f"experiments/{experiment_id}"
                )
                check_etag(etag, current.etag, f"experiments/{experiment_id}")
                await _guarded_update(
                    conn,
                    experiments,
                    experiment_id,
                    current.revision if etag else None,
                    {**values, "update_time": now_ms()},
                )
                return await self._experiment(
                    conn, experiments.c.id == experiment_id, f"experiments/{experiment_id}"
                )
        except IntegrityError as exc:
            raise AlreadyExists(
                "experiments",
                f"an experiment named {changes.get('display_name')!r} already exists",
                field="experiment.display_name",
            ) from exc

    # ---------------------------------------------------------------- runs

    async def create_run(
        self,
        experiment_id: str,
        *,
        display_name: str,
        parent_run_id: str | None,
        user: str,
        params_: dict[str, str],
        tags_: dict[str, str],
        source: RunSource,
        environment: RunEnvironment,
        request_id: str | None,
        start_time: int | None,
    ) -> Run:
        if request_id:
            existing = await self._run_by_request_id(request_id)
            if existing is not None:
                return existing
        now = now_ms()
        run_id = new_id()
        row = {
            "id": run_id,
            "experiment_id": experiment_id,
            "display_name": display_name or _default_run_name(run_id),
            "state": RunState.RUNNING.value,
            "lifecycle": Lifecycle.ACTIVE.value,
            "start_time": start_time or now,
            "end_time": None,
            "update_time": now,
            "delete_time": None,
            "parent_run_id": parent_run_id,
            "user": user,
            "request_id": request_id or None,
            "source": json.dumps(dataclasses.asdict(source)),
            "environment": json.dumps(dataclasses.asdict(environment)),
            "revision": 1,
            "created_by": current_principal().name,
        }
        try:
            async with self._tx() as conn:
                exp = await self._experiment(
                    conn, experiments.c.id == experiment_id, f"experiments/{experiment_id}"
                )
                if exp.lifecycle is Lifecycle.DELETED:
                    raise FailedPrecondition(
                        f"experiments/{experiment_id} is deleted; undelete it or pick another",
                        field="experiment",
                    )
                if parent_run_id:
                    await self._run_row(conn, parent_run_id, label="parent_run")
                await conn.execute(runs.insert().values(row))
                if params_:
                    await conn.execute(
                        params.insert(),
                        [
                            {
                                "run_id": run_id,
                                "key": k,
                                "value": v,
                                "created_by": row["created_by"],
                            }
                            for k, v in params_.items()
                        ],
                    )
                if tags_:
                    await conn.execute(
                        tags.insert(),
                        [
                            {
                                "run_id": run_id,
                                "key": k,
                                "value": v,
                                "updated_by": row["created_by"],
                            }
                            for k, v in tags_.items()
                        ],
                    )
                return await self._load_run(conn, run_id)
        except IntegrityError:
            if request_id:
                existing = await self._run_by_request_id(request_id)
                if existing is not None:
                    return existing
            raise

    async def _run_by_request_id(self, request_id: str) -> Run | None:
        async with self._tx() as conn:
            found = (
                await conn.execute(select(runs.c.id).where(runs.c.request_id == request_id))
            ).scalar()
            return await self._load_run(conn, found) if found else None

    async def get_run(self, run_id: str) -> Run:
        async with self._tx() as conn:
            return await self._load_run(conn, run_id)

    async def _run_row(self, conn: AsyncConnection, run_id: str, *, label: str = "run"):
        row = (await conn.execute(select(runs).where(runs.c.id == run_id))).mappings().first()
        if row is None:
            raise NotFound(f"runs/{run_id}", f"{label} runs/{run_id} not found")
        return row

    async def _load_run(self, conn: AsyncConnection, run_id: str) -> Run:
        row = await self._run_row(conn, run_id)
        (run,) = await self._hydrate(conn, [row])
        return run

    async def _hydrate(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[Run]:
        """Attach params, tags and metric summaries to run rows, in three queries."""
        ids = [r["id"] for r in rows]
        if not ids:
            return []
        by_run: dict[str, dict[str, Any]] = {i: {"p": {}, "t": {}, "m": [], "w": []} for i in ids}
        for table, slot in ((params, "p"), (tags, "t")):
            result = await conn.execute(
                select(table.c.run_id, table.c.key, table.c.value).where(table.c.run_id.in_(ids))
            )
            for run_id, key, value in result:
                by_run[run_id][slot][key] = value
        result = await conn.execute(
            select(metric_summaries)
            .where(metric_summaries.c.run_id.in_(ids))
            .order_by(metric_summaries.c.key)
        )
        for m in result.mappings():
            by_run[m["run_id"]]["m"].append(_summary(m))
        for run_id in ids:
            by_run[run_id]["w"] = []
        result = await conn.execute(
            select(stream_cursors)
            .where(stream_cursors.c.run_id.in_(ids), stream_cursors.c.seq > 0)
            .order_by(stream_cursors.c.rank, stream_cursors.c.writer_id)
        )
        for w in result.mappings():
            by_run[w["run_id"]]["w"].append(
                RunWriter(w["writer_id"], w["rank"], w["host"], w["points"], w["seq"])
            )
        return [_run(r, **by_run[r["id"]]) for r in rows]

    async def update_run(self, run_id: str, changes: dict[str, Any], etag: str = "") -> Run:
        """Apply ``changes`` (display_name, state, end_time, lifecycle) guarded by ``etag``."""
        values = dict(changes)
        for key in ("state", "lifecycle"):
            if key in values:
                values[key] = values[key].value
        if "lifecycle" in changes:
            deleted = changes["lifecycle"] is Lifecycle.DELETED
            values["delete_time"] = now_ms() if deleted else None
        async with self._tx() as conn:
            row = await self._run_row(conn, run_id)
            check_etag(etag, etag_of(row["revision"]), f"runs/{run_id}")
            if "state" in changes:
                terminal = changes["state"].terminal
                values["end_time"] = (changes.get("end_time") or now_ms()) if terminal else None
            await _guarded_update(
                conn,
                runs,
                run_id,
                row["revision"] if etag else None,
                {**values, "update_time": now_ms()},
            )
            return await self._load_run(conn, run_id)

    async def search_runs(
        self,
        experiment_ids: Sequence[str],
        where: Node | None,
        order: Sequence[OrderKey],
        page_size: int,
        page_token: str,
        view: View,
    ) -> Page:
        """Runs matching ``where``, sorted by ``order`` then id; keyset-paginated."""
        query = fingerprint("runs", sorted(experiment_ids), repr(where), repr(order), view.value)
        sort = search.order_columns(order)
        stmt = select(runs, *[expr.label(f"_k{i}") for i, (expr, _) in enumerate(sort)])
        stmt = stmt.where(_lifecycle_clause(runs, view))
        if experiment_ids:
            stmt = stmt.where(runs.c.experiment_id.in_(list(experiment_ids)))
        if where is not None:
            stmt = stmt.where(search.compile_filter(where))
        if page_token:
            last = decode_token(page_token, query, len(sort))
            search.check_last(sort, last)
            stmt = stmt.where(search.after(sort, last))
        stmt = stmt.order_by(*search.order_clauses(sort)).limit(page_size + 1)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            items = await self._hydrate(conn, rows[:page_size])
        token = ""
        if len(rows) > page_size:
            last_row = rows[page_size - 1]
            token = encode_token(query, [_jsonable(last_row[f"_k{i}"]) for i in range(len(sort))])
        return Page(items, token)

    # ---------------------------------------------------------- params, tags

    async def _writable_run(self, conn: AsyncConnection, run_id: str):
        row = await self._run_row(conn, run_id)
        if row["lifecycle"] == Lifecycle.DELETED.value:
            raise FailedPrecondition(
                f"runs/{run_id} is deleted; undelete it before writing to it", field="run"
            )
        return row

    async def log_params(self, run_id: str, values: dict[str, str]) -> None:
        """Write-once params: equal re-writes are no-ops, different values raise ParamConflict."""
        if not values:
            return
        async with self._tx() as conn:
            await self._writable_run(conn, run_id)
            stored = dict(
                (
                    await conn.execute(
                        select(params.c.key, params.c.value).where(
                            params.c.run_id == run_id, params.c.key.in_(list(values))
                        )
                    )
                ).all()
            )
            for key, value in values.items():
                if key in stored and stored[key] != value:
                    raise ParamConflict(f"runs/{run_id}", key, stored[key], value)
            actor = current_principal().name
            fresh = [
                {"run_id": run_id, "key": k, "value": v, "created_by": actor}
                for k, v in values.items()
                if k not in stored
            ]
            if fresh:
                try:
                    await conn.execute(params.insert(), fresh)
                except IntegrityError as exc:
                    raise FailedPrecondition(
                        "a concurrent call logged the same params; retry to see the result",
                        reason="PARAM_RACE",
                    ) from exc

    async def set_tags(self, run_id: str, values: dict[str, str]) -> None:
        if not values:
            return
        async with self._tx() as conn:
            await self._writable_run(conn, run_id)
            stmt = self._insert(tags)
            stmt = stmt.on_conflict_do_update(
                index_elements=[tags.c.run_id, tags.c.key],
                set_={"value": stmt.excluded.value, "updated_by": stmt.excluded.updated_by},
            )
            actor = current_principal().name
            await conn.execute(
                stmt,
                [
                    {"run_id": run_id, "key": k, "value": v, "updated_by": actor}
                    for k, v in values.items()
                ],
            )

    async def delete_tag(self, run_id: str, key: str) -> None:
        async with self._tx() as conn:
            await self._writable_run(conn, run_id)
            result = await conn.execute(
                delete(tags).where(tags.c.run_id == run_id, tags.c.key == key)
            )
            if result.rowcount == 0:
                raise NotFound(f"runs/{run_id}/tags/{key}", f"runs/{run_id} has no tag {key!r}")

    # ------------------------------------------------------------- metrics

    async def log_metrics(self, run_id: str, batch: MetricColumns) -> int:
        """Store a validated batch as one chunk per key; returns the points written."""
        parts = chunks.split_batch(batch, now_ms()) if len(batch) else []
        async with self._tx() as conn:
            await self._writable_run(conn, run_id)
            await self._write_chunks(conn, run_id, [(0, c) for c in parts])
        return len(batch)

    async def open_stream(self, run_id: str, writer_id: str, rank: int, host: str) -> int:
        """Register a writer of a writable run; return its last committed seq (0 if new)."""
        async with self._tx() as conn:
            await self._writable_run(conn, run_id)
            stmt = self._insert(stream_cursors).on_conflict_do_nothing(
                index_elements=[stream_cursors.c.run_id, stream_cursors.c.writer_id]
            )
            row = {
                "run_id": run_id,
                "writer_id": writer_id,
                "seq": 0,
                "rank": rank,
                "host": host,
                "points": 0,
                "update_time": now_ms(),
                "principal": current_principal().name,
            }
            await conn.execute(stmt, [row])
            cursor = stream_cursors.c
            return (
                await conn.execute(
                    select(cursor.seq).where(cursor.run_id == run_id, cursor.writer_id == writer_id)
                )
            ).scalar_one()

    async def commit_sequenced(self, batches: Sequence[SequencedBatch]) -> None:
        """Commit batches of one or more writers in ONE transaction (a group commit).

        Each writer's batches must be consecutive seqs following its stored cursor;
        the cursor advances in the same transaction as the points, so an ack sent
        after this returns is durable and a replayed batch is recognisably old.

        Raises:
            Aborted: a writer's cursor moved meanwhile (two streams for one writer).
            FailedPrecondition / NotFound: a run was deleted or does not exist.
        """
        by_writer: dict[tuple[str, str], list[SequencedBatch]] = {}
        for b in batches:
            by_writer.setdefault((b.run_id, b.writer_id), []).append(b)
        now = now_ms()
        parts_by_run: dict[str, list[tuple[int, chunks.Chunk]]] = {}
        async with self._tx() as conn:
            for (run_id, writer_id), items in by_writer.items():
                fresh = await self._advance_cursor(conn, run_id, writer_id, items, now)
                for item in fresh:
                    parts_by_run.setdefault(run_id, []).extend(
                        (item.rank, c) for c in chunks.split_batch(item.columns, now)
                    )
            for run_id, parts in parts_by_run.items():
                await self._writable_run(conn, run_id)
                await self._write_chunks(conn, run_id, parts)

    async def _advance_cursor(self, conn, run_id, writer_id, items, now) -> list:
        """Lock the writer's cursor, keep the batches it has not committed yet, and
        advance it past them; return those batches.

        A group can hold a batch twice (a stream's queued batches still commit after
        it dropped, while the reconnected stream resends them), and batches at or
        below the cursor; both are skipped, so each seq is written exactly once.
        """
        cursor = stream_cursors.c
        mine = and_(cursor.run_id == run_id, cursor.writer_id == writer_id)
        stored = (await conn.execute(select(cursor.seq).where(mine).with_for_update())).scalar()
        if stored is None:
            raise Aborted(
                f"writer {writer_id!r} of runs/{run_id} has no open stream; reconnect",
                resource=f"runs/{run_id}",
            )
        fresh, expected = [], stored + 1
        for item in sorted(items, key=lambda i: i.seq):
            if item.seq < expected:
                continue
            if item.seq > expected:
                raise Aborted(
                    f"writer {writer_id!r} of runs/{run_id} skipped from seq {expected - 1} "
                    f"to {item.seq}; reconnect to resend from the committed seq",
                    resource=f"runs/{run_id}",
                )
            fresh.append(item)
            expected += 1
        if fresh:
            await conn.execute(
                update(stream_cursors)
                .where(mine)
                .values(
                    seq=expected - 1,
                    points=cursor.points + sum(len(i.columns) for i in fresh),
                    update_time=now,
                )
            )
        return fresh

    async def list_writers(self, run_id: str) -> list[dict[str, Any]]:
        """The stream writers of a run: writer_id, rank, host, seq, points, update_time."""
        async with self._tx() as conn:
            rows = await conn.execute(
                select(stream_cursors)
                .where(stream_cursors.c.run_id == run_id)
                .order_by(stream_cursors.c.rank, stream_cursors.c.writer_id)
            )
            return [dict(r) for r in rows.mappings()]

    async def _write_chunks(self, conn: AsyncConnection, run_id: str, parts) -> None:
        if not parts:
            return
        key_ids = await self._key_ids(conn, run_id, sorted({c.key for _, c in parts}))
        await conn.execute(
            metric_chunks.insert(),
            [_chunk_row(run_id, key_ids[c.key], rank, c) for rank, c in parts],
        )
        summaries: dict[str, MetricSummary] = {}
        for _, part in parts:
            summaries[part.key] = chunks.merge_summary(summaries.get(part.key), part)
        await self._fold_summaries(conn, run_id, list(summaries.values()))

    async def _key_ids(
        self, conn: AsyncConnection, run_id: str, names: list[str]
    ) -> dict[str, int]:
        stmt = self._insert(metric_keys).on_conflict_do_nothing(
            index_elements=[metric_keys.c.run_id, metric_keys.c.name]
        )
        await conn.execute(stmt, [{"run_id": run_id, "name": n} for n in names])
        result = await conn.execute(
            select(metric_keys.c.name, metric_keys.c.id).where(
                metric_keys.c.run_id == run_id, metric_keys.c.name.in_(names)
            )
        )
        return dict(result.all())

    async def _fold_summaries(
        self, conn: AsyncConnection, run_id: str, summaries: list[MetricSummary]
    ) -> None:
        stmt = self._insert(metric_summaries)
        new, old = stmt.excluded, metric_summaries.c
        newer = new.last_step >= old.last_step
        stmt = stmt.on_conflict_do_update(
            index_elements=[old.run_id, old.key],
            set_={
                "last_value": case((newer, new.last_value), else_=old.last_value),
                "last_timestamp": case((newer, new.last_timestamp), else_=old.last_timestamp),
                "last_step": case((newer, new.last_step), else_=old.last_step),
                "min_value": case(
                    (or_(old.min_value.is_(None), new.min_value < old.min_value), new.min_value),
                    else_=old.min_value,
                ),
                "max_value": case(
                    (or_(old.max_value.is_(None), new.max_value > old.max_value), new.max_value),
                    else_=old.max_value,
                ),
                "count": old.count + new.count,
            },
        )
        await conn.execute(stmt, [_summary_row(run_id, m) for m in summaries])

    async def read_metric_history(
        self,
        run_id: str,
        keys: Sequence[str],
        start_step: int | None,
        end_step: int | None,
    ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """One run's series as (key, steps, timestamps_ms, values, ranks); see
        :meth:`read_metric_histories`."""
        series = await self.read_metric_histories([run_id], keys, start_step, end_step)
        return [columns[1:] for columns in series]

    async def read_metric_histories(
        self,
        run_ids: Sequence[str],
        keys: Sequence[str],
        start_step: int | None,
        end_step: int | None,
    ) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Each run's requested keys, in step order, within the inclusive step window:
        (run_id, key, steps, timestamps_ms, values, ranks), runs in the order given,
        then keys in the order given.

        Unknown keys yield empty series; with ``keys`` empty every key of each run is
        read (sorted by name). One transaction, three queries whatever the number of
        runs.

        Raises:
            NotFound: a run does not exist (the first missing one is named).
        """
        async with self._tx() as conn:
            await self._check_runs_exist(conn, run_ids)
            k = metric_keys.c
            key_stmt = select(k.run_id, k.name, k.id).where(k.run_id.in_(list(run_ids)))
            if keys:
                key_stmt = key_stmt.where(k.name.in_(list(keys)))
            key_ids = {
                (run_id, name): key_id for run_id, name, key_id in await conn.execute(key_stmt)
            }
            decoded = await self._decode_chunks(conn, run_ids, keys, start_step, end_step)
        out = []
        for run_id in run_ids:
            names = keys or sorted(name for owner, name in key_ids if owner == run_id)
            for name in names:
                series = chunks.merge_series(decoded.get(key_ids.get((run_id, name), -1), []))
                out.append((run_id, name, *_step_window(series, start_step, end_step)))
        return out

    async def _check_runs_exist(self, conn: AsyncConnection, run_ids: Sequence[str]) -> None:
        found = set(
            (await conn.execute(select(runs.c.id).where(runs.c.id.in_(list(run_ids))))).scalars()
        )
        for run_id in run_ids:
            if run_id not in found:
                raise NotFound(f"runs/{run_id}", f"run runs/{run_id} not found")

    async def _decode_chunks(
        self,
        conn: AsyncConnection,
        run_ids: Sequence[str],
        keys: Sequence[str],
        start_step: int | None,
        end_step: int | None,
    ) -> dict[int, list[tuple[np.ndarray, ...]]]:
        """key_id -> decoded (steps, timestamps, values, ranks) of the chunks of these
        runs (and keys, unless empty) that may overlap the step window, in write order."""
        c = metric_chunks.c
        stmt = (
            select(c.key_id, c.rank, c.first_step, c.count, c.steps, c.timestamps, c["values"])
            .select_from(metric_chunks.join(metric_keys, c.key_id == metric_keys.c.id))
            .where(c.run_id.in_(list(run_ids)))
            .order_by(c.id)
        )
        if keys:
            stmt = stmt.where(metric_keys.c.name.in_(list(keys)))
        if start_step is not None:
            stmt = stmt.where(c.last_step >= start_step)
        if end_step is not None:
            stmt = stmt.where(c.first_step <= end_step)
        decoded: dict[int, list[tuple[np.ndarray, ...]]] = {}
        for key_id, rank, first, count, s, t, v in await conn.execute(stmt):
            steps, stamps, values = chunks.decode_chunk(first, count, s, t, v)
            ranks = np.full(count, rank, dtype=np.int32)
            decoded.setdefault(key_id, []).append((steps, stamps, values, ranks))
        return decoded


# ------------------------------------------------------------------ helpers


def _step_window(series, start: int | None, end: int | None):
    steps = series[0]
    if start is None and end is None:
        return series
    mask = np.ones(len(steps), dtype=bool)
    if start is not None:
        mask &= steps >= start
    if end is not None:
        mask &= steps <= end
    return tuple(column[mask] for column in series)


async def _guarded_update(
    conn: AsyncConnection, table, row_id: str, revision: int | None, values: dict[str, Any]
) -> None:
    """Update one row and bump its revision; with ``revision`` given, only if it is
    still that one (the etag check is atomic even under concurrent writers)."""
    stmt = update(table).where(table.c.id == row_id)
    if revision is not None:
        stmt = stmt.where(table.c.revision == revision)
    result = await conn.execute(stmt.values(**values, revision=table.c.revision + 1))
    if result.rowcount != 1:
        raise Aborted(
            f"{table.name}/{row_id} was changed by another request meanwhile; re-read and retry",
            resource=f"{table.name}/{row_id}",
        )


def _lifecycle_clause(table, view: View):
    if view is View.ALL:
        return literal(True)
    wanted = Lifecycle.DELETED if view is View.DELETED_ONLY else Lifecycle.ACTIVE
    return table.c.lifecycle == wanted.value


def _experiment(row) -> Experiment:
    return Experiment(
        id=row["id"],
        display_name=row["display_name"],
        description=row["description"],
        lifecycle=Lifecycle(row["lifecycle"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
        delete_time=row["delete_time"],
        revision=row["revision"],
    )


def _run(row, *, p: dict, t: dict, m: list, w: list) -> Run:
    source = json.loads(row["source"])
    env = json.loads(row["environment"])
    return Run(
        id=row["id"],
        experiment_id=row["experiment_id"],
        display_name=row["display_name"],
        state=RunState(row["state"]),
        lifecycle=Lifecycle(row["lifecycle"]),
        start_time=row["start_time"],
        end_time=row["end_time"],
        update_time=row["update_time"],
        delete_time=row["delete_time"],
        parent_run_id=row["parent_run_id"],
        user=row["user"],
        params=p,
        tags=t,
        metrics=tuple(m),
        source=RunSource(**{**source, "argv": tuple(source.get("argv", ()))}),
        environment=RunEnvironment(
            **{
                **env,
                "packages": tuple(env.get("packages", ())),
                "gpus": tuple(GpuInfo(**g) for g in env.get("gpus", ())),
            }
        ),
        revision=row["revision"],
        writers=tuple(w),
        created_by=row["created_by"] or "",
    )


def _nan_to_null(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _null_to_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _summary(row) -> MetricSummary:
    return MetricSummary(
        key=row["key"],
        last_value=_null_to_nan(row["last_value"]),
        last_step=row["last_step"],
        last_timestamp=row["last_timestamp"],
        min_value=_null_to_nan(row["min_value"]),
        max_value=_null_to_nan(row["max_value"]),
        count=row["count"],
    )


def _chunk_row(run_id: str, key_id: int, rank: int, c: chunks.Chunk) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "key_id": key_id,
        "rank": rank,
        "first_step": c.first_step,
        "last_step": c.last_step,
        "count": c.count,
        "min_value": c.min_value,
        "max_value": c.max_value,
        "steps": c.steps_blob,
        "timestamps": c.timestamps_blob,
        "values": c.values_blob,
    }


def _summary_row(run_id: str, m: MetricSummary) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "key": m.key,
        "last_value": _nan_to_null(m.last_value),
        "last_step": m.last_step,
        "last_timestamp": m.last_timestamp,
        "min_value": _nan_to_null(m.min_value),
        "max_value": _nan_to_null(m.max_value),
        "count": m.count,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _default_run_name(run_id: str) -> str:
    return f"run-{run_id[-8:]}"
