"""The registry store: models, versions, aliases, policies, transition requests, votes
and the audit trail, on SQLite and PostgreSQL.

Contract (every backend):

* Each public coroutine runs in one transaction and commits whole or changes nothing.
  The exceptions are the :class:`Outcome` methods (``vote``, ``cancel``): a request
  that fails or expires while being acted on is recorded (state, vote, audit event)
  and committed, and the failure is returned for the service to raise.
* Locking. Every write to a model takes that model's row lock with its first
  statement: ``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite an ``UPDATE`` of the
  row, which takes the database write lock before anything is read (what ``BEGIN
  IMMEDIATE`` does; pysqlite starts the transaction at the first write, so a read
  first would run outside it and could be stale). Writes to one model therefore
  serialize: of two concurrent promotions into a single-holder stage exactly one
  wins, and the other sees the winner. On SQLite this process's writers also queue
  on an asyncio lock before they begin (see :meth:`RegistryStore._write`). Alias
  moves, the hot write, are group-committed: those queued behind a commit share the
  next transaction (:meth:`RegistryStore.set_alias`).
* Audit. Every change appends its events in the same transaction, as its last
  statements, numbered in commit order without gaps (:mod:`ketch_server.store.audit`).
* Denied attempts (self-approval, missing role, failing gates...) leave no state
  behind; :meth:`record_denied` writes their audit event in its own transaction.
* Inputs are validated by the service layer; database failures become domain errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ketch_server.domain import registry as reg
from ketch_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    KetchError,
    NotFound,
    PermissionDenied,
)
from ketch_server.domain.identity import Principal, Role
from ketch_server.domain.lineage import EdgeKind, NodeKind
from ketch_server.domain.models import Lifecycle, Page, check_etag, etag_of
from ketch_server.domain.pagination import decode_token, encode_token, fingerprint
from ketch_server.domain.registry import (
    Action,
    AuditEvent,
    Decision,
    Evidence,
    ModelUri,
    ModelVersion,
    RegisteredModel,
    Stage,
    StagePolicy,
    TransitionRequest,
    TransitionState,
    Vote,
)
from ketch_server.store import search
from ketch_server.store.audit import AuditTrail
from ketch_server.store.audit import Change as _Change
from ketch_server.store.base import SqlStore, now_ms
from ketch_server.store.direct_pg import DirectReader
from ketch_server.store.flights import Flights
from ketch_server.store.group_commit import GroupCommit
from ketch_server.store.inline_sqlite import InlineReader
from ketch_server.store.registry_sql import (
    RESOLVE,
    Statements,
    aliases_of,
    dump,
    model_json,
    new_request_row,
    new_version_row,
    new_vote_row,
    policy_row,
    request_json,
    selector,
    state_clause,
    to_event,
    to_model,
    to_policy,
    to_request,
    to_version,
    to_vote,
    version_json,
    vote_json,
)
from ketch_server.store.schema import (
    approvals,
    artifacts,
    audit_events,
    lineage_edges,
    model_aliases,
    model_versions,
    registered_models,
    registry_policies,
    runs,
    transition_requests,
)

__all__ = ["MANIFEST", "Outcome", "RegistryStore"]

# The file log_model writes; a registered directory must hold one.
MANIFEST = "MLmodel.json"
# The lineage context of run -> model version edges.
_REGISTERED = "registered"

M = registered_models.c
V = model_versions.c
A = model_aliases.c
P = registry_policies.c
R = transition_requests.c


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a committed vote or cancellation left: the request, and the failure to
    report (an expired request, a move that could no longer apply), if any."""

    request: TransitionRequest
    failure: KetchError | None = None


@dataclasses.dataclass(frozen=True)
class _AliasMove:
    """One SetAlias waiting for its group (see :meth:`RegistryStore.set_alias`)."""

    actor: str
    alias: str
    version: int
    etag: str


class RegistryStore(SqlStore):
    """Registry persistence over one async engine. See the module docstring.

    Args:
        engine: The async engine (shared with the other stores).
        clock: Milliseconds since the epoch; tests replace it to move time.
    """

    def __init__(self, engine, *, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(engine)
        self.clock = clock
        self._sqlite_writers = asyncio.Lock() if self._dialect == "sqlite" else None
        self._sql = Statements(self._insert)
        self._audit = AuditTrail(self._insert)
        # Single-statement reads on PostgreSQL run in autocommit: one statement reads
        # one snapshot anyway, and BEGIN/COMMIT would cost two more round trips.
        self._single_read = (
            SqlStore(engine.execution_options(isolation_level="AUTOCOMMIT"))
            if self._dialect == "postgresql"
            else self
        )
        # Resolve, the hot read: inline on the loop's thread on SQLite; on PostgreSQL
        # straight through asyncpg. Both fall back to the engine when they cannot answer.
        self._inline = InlineReader.for_engine(engine)
        self._direct = DirectReader.for_engine(engine)
        self._resolves = Flights()
        self._alias_moves = GroupCommit(self._apply_alias_moves)

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. On SQLite, which has one writer at a time anyway, this
        process's writers queue on an asyncio lock first: a waiter is woken as soon as
        the writer before it commits, instead of polling SQLite's busy handler (which
        sleeps up to 100 ms between tries) and inflating tail latency."""
        if self._sqlite_writers is None:
            async with self._tx() as conn:
                yield conn
            return
        async with self._sqlite_writers, self._tx() as conn:
            yield conn

    # ------------------------------------------------------------ plumbing

    async def _lock_model(self, conn: AsyncConnection, name: str):
        """Lock model ``name``'s row for the rest of the transaction and return it.

        Must be the transaction's first statement (see the module docstring).

        Raises:
            NotFound: no such model.
        """
        stmt = self._sql.lock_select if self._dialect == "postgresql" else self._sql.lock_touch
        row = (await conn.execute(stmt, {"model_name": name})).mappings().first()
        if row is None:
            raise _model_missing(name)
        return row

    async def _append(
        self, conn: AsyncConnection, actor: str, changes: Sequence[_Change], request_id: str = ""
    ) -> None:
        """Append ``changes`` to the audit trail (last statements of the transaction)."""
        await self._audit.append(conn, actor, changes, now=self.clock(), request_id=request_id)

    async def _bump_model(self, conn: AsyncConnection, name: str, now: int, **values) -> None:
        await conn.execute(
            update(registered_models)
            .where(M.name == name)
            .values(**values, revision=M.revision + 1, update_time=now)
        )

    # -------------------------------------------------------------- models

    async def create_model(
        self, actor: Principal, name: str, description: str, tags: dict[str, str], request_id: str
    ) -> RegisteredModel:
        """Create model ``name`` owned by ``actor``.

        Raises:
            AlreadyExists: the name is taken (and ``request_id`` is not the one that took it).
        """
        if request_id and (found := await self._model_by_request_id(request_id)):
            return found
        now = self.clock()
        row = {
            "name": name,
            "description": description,
            "tags": dump(tags),
            "owner": actor.name,
            "latest_version": 0,
            "request_id": request_id or None,
            "create_time": now,
            "update_time": now,
            "revision": 1,
        }
        model = to_model(row, {})
        try:
            async with self._write() as conn:
                await conn.execute(registered_models.insert().values(row))
                change = _Change(Action.MODEL_CREATED, _mres(name), name, None, model_json(model))
                await self._append(conn, actor.name, [change], request_id)
        except IntegrityError as exc:
            if request_id and (found := await self._model_by_request_id(request_id)):
                return found
            raise AlreadyExists(
                _mres(name),
                f"a model named {name!r} already exists; pick another name or register a "
                "new version of it",
                field="model_id",
            ) from exc
        return model

    async def _model_by_request_id(self, request_id: str) -> RegisteredModel | None:
        async with self._tx() as conn:
            stmt = select(M.name).where(M.request_id == request_id)
            name = (await conn.execute(stmt)).scalar()
            return await self._load_model(conn, name) if name else None

    async def get_model(self, name: str) -> RegisteredModel:
        async with self._tx() as conn:
            return await self._load_model(conn, name)

    async def _model_row(self, conn: AsyncConnection, name: str):
        stmt = select(registered_models).where(M.name == name)
        return (await conn.execute(stmt)).mappings().first()

    async def _load_model(self, conn: AsyncConnection, name: str) -> RegisteredModel:
        row = await self._model_row(conn, name)
        if row is None:
            raise _model_missing(name)
        aliases = await conn.execute(
            select(A.alias, A.version).where(A.model == name).order_by(A.alias)
        )
        return to_model(row, dict(aliases.all()))

    async def list_models(self, page_size: int, page_token: str) -> Page:
        """Models in name order, keyset-paginated."""
        query = fingerprint("registered_models")
        stmt = select(registered_models)
        if page_token:
            stmt = stmt.where(M.name > _token_value(page_token, query, str))
        stmt = stmt.order_by(M.name).limit(page_size + 1)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            names = [r["name"] for r in rows[:page_size]]
            aliases: dict[str, dict[str, int]] = {n: {} for n in names}
            found = await conn.execute(
                select(A.model, A.alias, A.version).where(A.model.in_(names)).order_by(A.alias)
            )
            for model, alias, version in found:
                aliases[model][alias] = version
        items = [to_model(r, aliases[r["name"]]) for r in rows[:page_size]]
        token = encode_token(query, [items[-1].name]) if len(rows) > page_size else ""
        return Page(items, token)

    async def update_model(
        self, actor: Principal, name: str, changes: dict[str, Any], etag: str
    ) -> RegisteredModel:
        """Set ``description`` and/or ``tags`` (a whole new mapping), guarded by ``etag``.

        Raises:
            NotFound: no such model. Aborted: the etag does not match.
        """
        async with self._write() as conn:
            await self._lock_model(conn, name)
            before = await self._load_model(conn, name)
            check_etag(etag, before.etag, _mres(name))
            values = {k: dump(v) if k == "tags" else v for k, v in changes.items()}
            await self._bump_model(conn, name, self.clock(), **values)
            after = await self._load_model(conn, name)
            change = _Change(
                Action.MODEL_UPDATED, _mres(name), name, model_json(before), model_json(after)
            )
            await self._append(conn, actor.name, [change])
        return after

    # ------------------------------------------------------------ versions

    async def create_version(
        self,
        actor: Principal,
        model: str,
        run_id: str,
        path: str,
        *,
        description: str,
        tags: dict[str, str],
        request_id: str,
    ) -> ModelVersion:
        """Register the next version of ``model`` from artifact ``path`` of ``run_id``
        (a file, or a directory holding ``MLmodel.json``); records the artifact's sha256
        and a lineage edge run -> version.

        Raises:
            NotFound: the model, the run or the artifact does not exist.
            FailedPrecondition: the run is deleted.
        """
        if request_id and (found := await self._version_by_request_id(request_id)):
            return found
        try:
            async with self._write() as conn:
                m = await self._lock_model(conn, model)
                await self._check_source_run(conn, run_id)
                path, digest = await self._manifest(conn, run_id, path)
                now = self.clock()
                row = new_version_row(model, m["latest_version"] + 1, run_id, path, digest, now)
                row.update(
                    description=description,
                    tags=dump(tags),
                    created_by=actor.name,
                    request_id=request_id or None,
                )
                await conn.execute(model_versions.insert().values(row))
                await self._bump_model(conn, model, now, latest_version=row["version"])
                version = to_version(row, ())
                await self._record_lineage(conn, actor, version, now)
                change = _Change(
                    Action.VERSION_REGISTERED,
                    version.resource,
                    model,
                    None,
                    version_json(version),
                )
                await self._append(conn, actor.name, [change], request_id)
        except IntegrityError:
            if request_id and (found := await self._version_by_request_id(request_id)):
                return found
            raise
        return version

    async def _check_source_run(self, conn: AsyncConnection, run_id: str) -> None:
        stmt = select(runs.c.lifecycle).where(runs.c.id == run_id)
        lifecycle = (await conn.execute(stmt)).scalar()
        if lifecycle is None:
            raise NotFound(f"runs/{run_id}", f"source run runs/{run_id} not found")
        if lifecycle == Lifecycle.DELETED.value:
            raise FailedPrecondition(
                f"runs/{run_id} is deleted; restore it before registering its model",
                field="source_run",
            )

    async def _manifest(self, conn: AsyncConnection, run_id: str, path: str) -> tuple[str, str]:
        """(path, sha256) of the artifact to register: ``path`` itself, else the
        manifest in directory ``path``."""
        candidates = [path, f"{path}/{MANIFEST}"]
        stmt = select(artifacts.c.path, artifacts.c.sha256).where(
            artifacts.c.run_id == run_id, artifacts.c.path.in_(candidates)
        )
        found = dict((await conn.execute(stmt)).all())
        for candidate in candidates:
            if candidate in found:
                return candidate, found[candidate]
        raise NotFound(
            f"runs/{run_id}/artifacts/{path}",
            f"runs/{run_id} has no artifact {path!r} (nor {path}/{MANIFEST}); log the model "
            "first: run.log_model(...) writes models/<name>/MLmodel.json",
        )

    async def _record_lineage(
        self, conn: AsyncConnection, actor: Principal, v: ModelVersion, now: int
    ) -> None:
        edge = {
            "kind": EdgeKind.PRODUCED.value,
            "upstream_kind": NodeKind.RUN.value,
            "upstream_ref": v.source_run_id,
            "downstream_kind": NodeKind.MODEL_VERSION.value,
            "downstream_ref": v.ref,
            "context": _REGISTERED,
            "step": None,
            "create_time": now,
            "created_by": actor.name,
        }
        await conn.execute(self._insert(lineage_edges).values(edge).on_conflict_do_nothing())

    async def _version_by_request_id(self, request_id: str) -> ModelVersion | None:
        async with self._tx() as conn:
            stmt = select(V.model, V.version).where(V.request_id == request_id)
            found = (await conn.execute(stmt)).first()
            return await self._load_version(conn, *found) if found else None

    async def get_version(self, model: str, version: int) -> ModelVersion:
        async with self._tx() as conn:
            return await self._load_version(conn, model, version)

    async def _version_row(self, conn: AsyncConnection, model: str, version: int):
        stmt = select(model_versions).where(V.model == model, V.version == version)
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise await self._version_missing(conn, model, version)
        return row

    async def _version_missing(self, conn: AsyncConnection, model: str, version: int):
        if await self._model_row(conn, model) is None:
            return _model_missing(model)
        return _no_version(model, version)

    async def _load_version(self, conn: AsyncConnection, model: str, version: int) -> ModelVersion:
        row = await self._version_row(conn, model, version)
        (loaded,) = await self._with_aliases(conn, [row])
        return loaded

    async def _with_aliases(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[ModelVersion]:
        if not rows:
            return []
        model = rows[0]["model"]
        numbers = [r["version"] for r in rows]
        stmt = (
            select(A.version, A.alias)
            .where(A.model == model, A.version.in_(numbers))
            .order_by(A.alias)
        )
        names: dict[int, list[str]] = {}
        for number, alias in await conn.execute(stmt):
            names.setdefault(number, []).append(alias)
        return [to_version(r, tuple(names.get(r["version"], ()))) for r in rows]

    async def list_versions(
        self, model: str, stage: Stage | None, page_size: int, page_token: str
    ) -> Page:
        """Versions of ``model``, newest first, optionally in one stage."""
        query = fingerprint("model_versions", model, stage.value if stage else "")
        stmt = select(model_versions).where(V.model == model)
        if stage is not None:
            stmt = stmt.where(V.stage == stage.value)
        if page_token:
            stmt = stmt.where(V.version < _token_value(page_token, query, int))
        stmt = stmt.order_by(V.version.desc()).limit(page_size + 1)
        async with self._tx() as conn:
            if await self._model_row(conn, model) is None:
                raise _model_missing(model)
            rows = (await conn.execute(stmt)).mappings().all()
            items = await self._with_aliases(conn, rows[:page_size])
        token = encode_token(query, [items[-1].version]) if len(rows) > page_size else ""
        return Page(items, token)

    async def update_version(
        self, actor: Principal, model: str, version: int, changes: dict[str, Any], etag: str
    ) -> ModelVersion:
        """Set ``description`` and/or ``tags`` of a version, guarded by its ``etag``."""
        async with self._write() as conn:
            await self._lock_model(conn, model)
            before = await self._load_version(conn, model, version)
            check_etag(etag, before.etag, before.resource)
            values = {k: dump(v) if k == "tags" else v for k, v in changes.items()}
            await conn.execute(
                update(model_versions)
                .where(V.model == model, V.version == version)
                .values(**values, revision=V.revision + 1, update_time=self.clock())
            )
            after = await self._load_version(conn, model, version)
            change = _Change(
                Action.VERSION_UPDATED,
                after.resource,
                model,
                version_json(before),
                version_json(after),
            )
            await self._append(conn, actor.name, [change])
        return after

    async def resolve(self, uri: ModelUri) -> ModelVersion:
        """The version ``uri`` names, with its aliases, in one indexed query.

        Raises:
            NotFound: the model, alias, stage holder or version does not exist.
        """
        kind, params = selector(uri)
        rows = self._inline.rows(RESOLVE[kind], params) if self._inline else None
        if rows is None:
            # Concurrent resolves of one URI share a query that began after each of
            # them arrived (see store/flights.py): same answers, one round trip.
            return await self._resolves.run(uri, lambda: self._resolve_async(uri))
        return await self._found(uri, rows)

    async def _resolve_async(self, uri: ModelUri) -> ModelVersion:
        kind, params = selector(uri)
        rows = await self._direct.rows(RESOLVE[kind], params) if self._direct else None
        if rows is None:
            async with self._single_read._tx() as conn:
                rows = (await conn.execute(RESOLVE[kind], params)).mappings().all()
        return await self._found(uri, rows)

    async def _found(self, uri: ModelUri, rows: Sequence[Any]) -> ModelVersion:
        """The version a resolve's rows name, or NotFound saying what is missing."""
        if not rows:
            async with self._single_read._tx() as conn:
                raise await self._unresolved(conn, uri)
        return to_version(rows[0], aliases_of(rows))

    async def _unresolved(self, conn: AsyncConnection, uri: ModelUri) -> NotFound:
        if await self._model_row(conn, uri.model) is None:
            return _model_missing(uri.model)
        if uri.alias:
            what = f"no alias {uri.alias!r}"
        elif uri.stage:
            what = f"no version in {uri.stage.title}"
        elif uri.latest:
            what = "no versions yet"
        else:
            what = f"no version {uri.version}"
        return NotFound(_mres(uri.model), f"model {uri.model} has {what}")

    # ------------------------------------------------------------- aliases

    async def set_alias(
        self, actor: Principal, model: str, alias: str, version: int, etag: str
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (moving it if needed), guarded by the model's
        etag, and return the version with its aliases. Setting an alias to where it
        already points changes nothing (not even the etag).

        Alias moves are a hot write that serializes on the model's row lock, so moves
        of one model that queue up behind a commit are applied together, in the order
        they came, in the next transaction (see store/group_commit.py): each gets the
        outcome it would have had alone, and returns once it is committed.

        Raises:
            NotFound: no such model or version.
            Aborted: ``etag`` is not the model's current one.
        """
        return await self._alias_moves.submit(model, _AliasMove(actor.name, alias, version, etag))

    async def _apply_alias_moves(
        self, model: str, moves: list[_AliasMove]
    ) -> list[ModelVersion | KetchError]:
        """Apply ``moves`` of ``model``'s aliases in one transaction, in order, and
        return the outcome of each: the lock, two reads, and when anything changed the
        alias upserts (one executemany), the revision and the audit events."""
        now = self.clock()
        outcomes: list[ModelVersion | KetchError] = []
        async with self._write() as conn:
            try:
                revision = (await self._lock_model(conn, model))["revision"]
            except NotFound as missing:
                return [missing] * len(moves)
            numbers = sorted({m.version for m in moves})
            params = {"model": model, "versions": numbers}
            found = (await conn.execute(self._sql.versions_in, params)).mappings().all()
            rows = {r["version"]: r for r in found}
            params["aliases"] = sorted({m.alias for m in moves})
            points = dict((await conn.execute(self._sql.aliases_near, params)).all())
            upserts: dict[str, dict[str, Any]] = {}
            changes: list[_Change] = []
            for move in moves:
                try:
                    check_etag(move.etag, etag_of(revision), _mres(model))
                    if move.version not in rows:
                        raise _no_version(model, move.version)
                except KetchError as refused:
                    outcomes.append(refused)
                    continue
                old = points.get(move.alias)
                if old != move.version:
                    points[move.alias] = move.version
                    revision += 1
                    upserts[move.alias] = {
                        "a_model": model,
                        "a_alias": move.alias,
                        "a_version": move.version,
                        "now": now,
                        "actor": move.actor,
                    }
                    before = {"alias": move.alias, "version": old}
                    after = {"alias": move.alias, "version": move.version}
                    changes.append(
                        _Change(Action.ALIAS_SET, _mres(model), model, before, after, move.actor)
                    )
                aliases = tuple(sorted(a for a, v in points.items() if v == move.version))
                outcomes.append(to_version(rows[move.version], aliases))
            if changes:
                await conn.execute(self._sql.alias_upsert, list(upserts.values()))
                revised = {"model_name": model, "revision": revision, "now": now}
                await conn.execute(self._sql.set_revision, revised)
                await self._append(conn, "", changes)
        return outcomes

    async def delete_alias(
        self, actor: Principal, model: str, alias: str, etag: str
    ) -> RegisteredModel:
        """Remove ``alias``.

        Raises:
            NotFound: the model has no such alias.
        """
        async with self._write() as conn:
            m = await self._lock_model(conn, model)
            check_etag(etag, etag_of(m["revision"]), _mres(model))
            stmt = select(A.version).where(A.model == model, A.alias == alias)
            old = (await conn.execute(stmt)).scalar()
            if old is None:
                raise NotFound(_mres(model), f"model {model} has no alias {alias!r}")
            await conn.execute(delete(model_aliases).where(A.model == model, A.alias == alias))
            await self._bump_model(conn, model, self.clock())
            before = {"alias": alias, "version": old}
            change = _Change(Action.ALIAS_DELETED, _mres(model), model, before, None)
            await self._append(conn, actor.name, [change])
            return await self._load_model(conn, model)

    # ------------------------------------------------------------ policies

    async def get_policies(self, model: str) -> list[StagePolicy]:
        """The effective policy of each target stage, in stage order."""
        async with self._tx() as conn:
            if await self._model_row(conn, model) is None:
                raise _model_missing(model)
            return await self._policies(conn, model)

    async def _policies(self, conn: AsyncConnection, model: str) -> list[StagePolicy]:
        rows = await conn.execute(select(registry_policies).where(P.model == model))
        stored = {r["stage"]: to_policy(r) for r in rows.mappings()}
        return [stored.get(s.value) or reg.default_policy(s) for s in Stage]

    async def _policy_for(self, conn: AsyncConnection, model: str, stage: Stage) -> StagePolicy:
        stmt = select(registry_policies).where(P.model == model, P.stage == stage.value)
        row = (await conn.execute(stmt)).mappings().first()
        return to_policy(row) if row else reg.default_policy(stage)

    async def set_policy(
        self, actor: Principal, model: str, policy: StagePolicy
    ) -> list[StagePolicy]:
        """Replace the policy for moves into ``policy.stage``; returns every stage's."""
        async with self._write() as conn:
            await self._lock_model(conn, model)
            before = await self._policy_for(conn, model, policy.stage)
            now = self.clock()
            row = policy_row(model, policy, now, actor.name)
            upsert = (
                self._insert(registry_policies)
                .values(row)
                .on_conflict_do_update(
                    index_elements=[P.model, P.stage],
                    set_={k: v for k, v in row.items() if k not in ("model", "stage")},
                )
            )
            await conn.execute(upsert)
            await self._bump_model(conn, model, now)
            change = _Change(
                Action.POLICY_SET,
                f"{_mres(model)}/policy",
                model,
                before.as_json(),
                policy.as_json(),
            )
            await self._append(conn, actor.name, [change])
            return await self._policies(conn, model)

    # ---------------------------------------------------------- transitions

    async def request_transition(
        self,
        actor: Principal,
        model: str,
        version: int,
        target: Stage,
        *,
        comment: str,
        request_id: str,
        etag: str,
    ) -> TransitionRequest:
        """Create a PENDING request bound to the version's digest and stage; with a
        policy needing no approvals, apply it at once (the result is APPLIED).

        Raises:
            NotFound: no such model or version.
            Aborted: ``etag`` is not the version's.
            FailedPrecondition: ILLEGAL_TRANSITION, ALREADY_IN_STAGE, REQUEST_PENDING,
                GATES_FAILED, STAGE_OCCUPIED (nothing is stored then).
        """
        if request_id and (found := await self._request_by_request_id(request_id)):
            return found
        try:
            async with self._write() as conn:
                await self._lock_model(conn, model)
                return await self._request(
                    conn, actor, model, version, target, comment, request_id, etag
                )
        except IntegrityError:
            if request_id and (found := await self._request_by_request_id(request_id)):
                return found
            raise

    async def _request(
        self, conn, actor, model, version, target, comment, request_id, etag
    ) -> TransitionRequest:
        vrow = await self._version_row(conn, model, version)
        label = _vres(model, version)
        check_etag(etag, etag_of(vrow["revision"]), label)
        policy = await self._policy_for(conn, model, target)
        reg.check_move(label, Stage(vrow["stage"]), target, policy)
        await self._check_no_pending(conn, model, version, target)
        failed = await self._failed_gates(conn, vrow["source_run_id"], policy.gates)
        if failed:
            raise reg.gates_failed(label, failed)
        now = self.clock()
        row = new_request_row(vrow, target, comment, actor.name, request_id, now, policy)
        await conn.execute(transition_requests.insert().values(row))
        changes = [
            _Change(
                Action.TRANSITION_REQUESTED, f"requests/{row['id']}", model, None, request_json(row)
            )
        ]
        if policy.approvals_required == 0:
            await self._move(
                conn, model, vrow, target, policy, {"request": f"requests/{row['id']}"}, changes
            )
            await self._finish(conn, row["id"], TransitionState.APPLIED, "", now)
        await self._append(conn, actor.name, changes, request_id)
        return await self._load_request(conn, row["id"])

    async def _check_no_pending(self, conn, model: str, version: int, target: Stage) -> None:
        stmt = select(R.id).where(
            R.model == model,
            R.version == version,
            R.state == TransitionState.PENDING.value,
            R.target_stage == target.value,
            R.expire_time > self.clock(),
        )
        pending = (await conn.execute(stmt)).scalar()
        if pending:
            raise FailedPrecondition(
                f"requests/{pending} already asks to move {_vres(model, version)} to "
                f"{target.title}; approve, reject or cancel it first",
                reason="REQUEST_PENDING",
                request=f"requests/{pending}",
            )

    async def _failed_gates(
        self, conn: AsyncConnection, run_id: str, gates: Sequence[str]
    ) -> list[str]:
        """The gates the run does not pass: each gate is a run search restricted to the
        source run, so the filter language means the same as in SearchRuns."""
        if not gates:
            return []
        checks = [
            select(runs.c.id)
            .where(runs.c.id == run_id, search.compile_filter(reg.check_gate("gate", gate)))
            .exists()
            .label(f"gate_{i}")
            for i, gate in enumerate(gates)
        ]
        passed = (await conn.execute(select(*checks))).one()
        return [gate for gate, ok in zip(gates, passed, strict=True) if not ok]

    async def _move(
        self,
        conn: AsyncConnection,
        model: str,
        vrow,
        target: Stage,
        policy: StagePolicy,
        cause: dict[str, Any],
        changes: list[_Change],
    ) -> None:
        """Put the version into ``target``: archive the stage's holders when the policy
        says so, else refuse a full stage (STAGE_OCCUPIED). Writes nothing before the
        checks pass."""
        number = vrow["version"]
        label = _vres(model, number)
        stmt = (
            select(V.version)
            .where(V.model == model, V.stage == target.value, V.version != number)
            .order_by(V.stage_time, V.version)
        )
        holders = list((await conn.execute(stmt)).scalars())
        archive = bool(holders) and policy.archive_existing and target is not Stage.ARCHIVED
        if not archive and policy.max_versions and len(holders) >= policy.max_versions:
            raise reg.stage_occupied(label, target, holders, policy.max_versions)
        now = self.clock()
        if archive:
            await conn.execute(
                update(model_versions)
                .where(V.model == model, V.version.in_(holders))
                .values(
                    stage=Stage.ARCHIVED.value,
                    stage_time=now,
                    update_time=now,
                    revision=V.revision + 1,
                )
            )
            changes += [
                _Change(
                    Action.STAGE_CHANGED,
                    _vres(model, h),
                    model,
                    {"stage": target.value},
                    {"stage": Stage.ARCHIVED.value, "archived_by": label},
                )
                for h in holders
            ]
        await conn.execute(
            update(model_versions)
            .where(V.model == model, V.version == number)
            .values(stage=target.value, stage_time=now, update_time=now, revision=V.revision + 1)
        )
        changes.append(
            _Change(
                Action.STAGE_CHANGED,
                label,
                model,
                {"stage": vrow["stage"]},
                {"stage": target.value, **cause},
            )
        )
        await self._bump_model(conn, model, now)

    async def _finish(
        self, conn: AsyncConnection, request_id: str, state: TransitionState, why: str, now: int
    ) -> None:
        await conn.execute(
            update(transition_requests)
            .where(R.id == request_id)
            .values(state=state.value, resolution=why, update_time=now)
        )

    async def vote(
        self,
        actor: Principal,
        request_id: str,
        decision: Decision,
        comment: str,
        evidence: Evidence,
        *,
        model: str | None = None,
    ) -> Outcome:
        """Record ``actor``'s vote. The approval that completes the policy applies the
        move in the same transaction, or fails the request (committed, returned as the
        outcome's failure) when the digest, the version's stage, the gates or the
        stage's holders no longer allow it. An expired request is marked EXPIRED
        (committed) and its expiry returned as the failure.

        Args:
            model: The request's model when the caller already knows it
                (:meth:`model_of_request`); saves a query.

        Raises:
            NotFound: no such request.
            FailedPrecondition: REQUEST_FINAL.
            PermissionDenied: SELF_APPROVAL, ROLE_REQUIRED.
            AlreadyExists: ALREADY_VOTED.
        """
        model = model or await self.model_of_request(request_id)
        async with self._write() as conn:
            await self._lock_model(conn, model)
            req, policy = await self._request_and_policy(conn, request_id, model)
            expired = await self._expire_if_due(conn, actor, req)
            if expired is not None:
                return expired
            reg.check_vote(actor, req, policy)
            return await self._record_vote(conn, actor, req, policy, decision, comment, evidence)

    async def _record_vote(self, conn, actor, req, policy, decision, comment, evidence) -> Outcome:
        now = self.clock()
        row = new_vote_row(req, actor, decision, comment, evidence, now)
        await conn.execute(approvals.insert().values(row))
        vote = vote_json(row)
        changes: list[_Change] = []
        failure: FailedPrecondition | None = None
        state, why = TransitionState.PENDING, ""
        if decision is Decision.REJECT:
            state, why = TransitionState.REJECTED, comment
            await self._finish(conn, req.id, state, why, now)
            changes.append(_Change(Action.TRANSITION_REJECTED, req.resource, req.model, None, vote))
        else:
            changes.append(_Change(Action.TRANSITION_APPROVED, req.resource, req.model, None, vote))
            if req.approvals + 1 >= policy.approvals_required:
                failure = await self._try_apply(conn, req, policy, changes)
                state = TransitionState.FAILED if failure else TransitionState.APPLIED
                why = failure.message if failure else ""
        await self._append(conn, actor.name, changes)
        voted = dataclasses.replace(
            req, votes=(*req.votes, to_vote(row)), state=state, resolution=why, update_time=now
        )
        return Outcome(voted, failure)

    async def _try_apply(
        self, conn: AsyncConnection, req: TransitionRequest, policy: StagePolicy, changes
    ) -> FailedPrecondition | None:
        """Apply an approved request, or mark it FAILED and return why."""
        now = self.clock()
        try:
            stmt = self._sql.version_and_artifact
            params = {"model": req.model, "version": req.version}
            vrow = (await conn.execute(stmt, params)).mappings().one()
            await self._check_still_valid(conn, req, vrow, policy)
            await self._move(
                conn, req.model, vrow, req.target_stage, policy, {"request": req.resource}, changes
            )
        except FailedPrecondition as exc:
            await self._finish(conn, req.id, TransitionState.FAILED, exc.message, now)
            after = {"reason": exc.reason, "message": exc.message}
            changes.append(_Change(Action.TRANSITION_FAILED, req.resource, req.model, None, after))
            return exc
        await self._finish(conn, req.id, TransitionState.APPLIED, "", now)
        return None

    async def _check_still_valid(self, conn, req: TransitionRequest, vrow, policy) -> None:
        label = req.version_resource
        if vrow["stage"] != req.from_stage.value:
            raise FailedPrecondition(
                f"{label} moved to {Stage(vrow['stage']).title} after {req.resource} was made "
                f"(from {req.from_stage.title}); request the transition again",
                reason="STAGE_CHANGED",
            )
        current = vrow["_current"]
        if not req.digest == vrow["digest"] == current:
            raise FailedPrecondition(
                f"the artifact of {label} changed after {req.resource} was made (requested "
                f"{req.digest[:12]}, now {(current or 'missing')[:12]}); nothing was promoted",
                reason="DIGEST_CHANGED",
            )
        failed = await self._failed_gates(conn, vrow["source_run_id"], policy.gates)
        if failed:
            raise reg.gates_failed(label, failed)

    async def _expire_if_due(
        self, conn: AsyncConnection, actor: Principal, req: TransitionRequest
    ) -> Outcome | None:
        """Mark a pending request past its expiry EXPIRED (with its audit event)."""
        if req.state is not TransitionState.EXPIRED:  # read as EXPIRED once past expiry
            return None
        now = self.clock()
        why = "not approved before it expired"
        stmt = (
            update(transition_requests)
            .where(
                R.id == req.id,
                R.state == TransitionState.PENDING.value,
                R.expire_time <= now,
            )
            .values(state=TransitionState.EXPIRED.value, resolution=why, update_time=now)
        )
        if (await conn.execute(stmt)).rowcount != 1:
            return None
        change = _Change(Action.TRANSITION_EXPIRED, req.resource, req.model, None, {"reason": why})
        await self._append(conn, actor.name, [change])
        expired = await self._load_request(conn, req.id)
        return Outcome(expired, reg.not_pending(expired, "take votes"))

    async def expire_due(self, actor: Principal, *, limit: int = 100) -> list[TransitionRequest]:
        """Mark up to ``limit`` pending requests past their expire time EXPIRED, oldest
        first, each in its own transaction under its model's lock and with its audit
        event (``actor`` recorded), as acting on one would. Returns the requests this
        call expired: one that another replica expired (or someone approved) first is
        left as it is, so each expiry is recorded once."""
        now = self.clock()
        due = (
            select(R.id, R.model)
            .where(R.state == TransitionState.PENDING.value, R.expire_time <= now)
            .order_by(R.expire_time)
            .limit(limit)
        )
        async with self._single_read._tx() as conn:
            found = (await conn.execute(due)).all()
        expired: list[TransitionRequest] = []
        for request_id, model in found:
            async with self._write() as conn:
                await self._lock_model(conn, model)
                outcome = await self._expire_if_due(
                    conn, actor, await self._load_request(conn, request_id)
                )
            if outcome is not None:
                expired.append(outcome.request)
        return expired

    async def cancel(self, actor: Principal, request_id: str, reason: str) -> Outcome:
        """Withdraw a pending request (its requester, or an admin).

        Raises:
            NotFound: no such request.
            FailedPrecondition: REQUEST_FINAL.
            PermissionDenied: NOT_REQUESTER.
        """
        model = await self.model_of_request(request_id)
        async with self._write() as conn:
            await self._lock_model(conn, model)
            req = await self._load_request(conn, request_id)
            expired = await self._expire_if_due(conn, actor, req)
            if expired is not None:
                return expired
            _check_cancellable(actor, req)
            await self._finish(conn, req.id, TransitionState.CANCELLED, reason, self.clock())
            change = _Change(
                Action.TRANSITION_CANCELLED, req.resource, model, None, {"reason": reason}
            )
            await self._append(conn, actor.name, [change])
            return Outcome(await self._load_request(conn, req.id))

    async def transition_stage(
        self, actor: Principal, model: str, version: int, target: Stage, comment: str, etag: str
    ) -> ModelVersion:
        """Move a version into ``target`` directly (admins; the caller checks the role):
        no request, approvals or gates; the stage's holders as the policy says.

        Raises:
            NotFound, Aborted, FailedPrecondition (ALREADY_IN_STAGE, STAGE_OCCUPIED).
        """
        async with self._write() as conn:
            await self._lock_model(conn, model)
            vrow = await self._version_row(conn, model, version)
            label = _vres(model, version)
            check_etag(etag, etag_of(vrow["revision"]), label)
            if vrow["stage"] == target.value:
                raise FailedPrecondition(
                    f"{label} is already in {target.title}", reason="ALREADY_IN_STAGE"
                )
            policy = await self._policy_for(conn, model, target)
            changes: list[_Change] = []
            cause = {"direct": True, "comment": comment}
            await self._move(conn, model, vrow, target, policy, cause, changes)
            await self._append(conn, actor.name, changes)
            return await self._load_version(conn, model, version)

    async def model_of_request(self, request_id: str) -> str:
        """The model a request belongs to (immutable, so read before locking).

        Raises:
            NotFound: no such request.
        """
        async with self._tx() as conn:
            model = (await conn.execute(select(R.model).where(R.id == request_id))).scalar()
        if model is None:
            raise NotFound(f"requests/{request_id}", f"requests/{request_id} not found")
        return model

    async def _request_by_request_id(self, request_id: str) -> TransitionRequest | None:
        async with self._tx() as conn:
            found = (await conn.execute(select(R.id).where(R.request_id == request_id))).scalar()
            return await self._load_request(conn, found) if found else None

    async def get_request(self, request_id: str) -> TransitionRequest:
        async with self._tx() as conn:
            return await self._load_request(conn, request_id)

    async def _request_and_policy(
        self, conn: AsyncConnection, request_id: str, model: str
    ) -> tuple[TransitionRequest, StagePolicy]:
        """A request of ``model`` with its votes, and its target stage's policy."""
        stmt = select(transition_requests).where(R.id == request_id, R.model == model)
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise NotFound(f"requests/{request_id}", f"requests/{request_id} not found")
        policy = await self._policy_for(conn, model, Stage(row["target_stage"]))
        stmt = (
            select(approvals)
            .where(approvals.c.transition_id == request_id)
            .order_by(approvals.c.create_time, approvals.c.principal)
        )
        votes = tuple(to_vote(v) for v in (await conn.execute(stmt)).mappings())
        return to_request(row, votes, policy.approvals_required, self.clock()), policy

    async def _load_request(self, conn: AsyncConnection, request_id: str) -> TransitionRequest:
        row = (
            (await conn.execute(select(transition_requests).where(R.id == request_id)))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"requests/{request_id}", f"requests/{request_id} not found")
        (loaded,) = await self._hydrate_requests(conn, [row])
        return loaded

    async def _hydrate_requests(self, conn, rows: Sequence[Any]) -> list[TransitionRequest]:
        """Attach votes and the approvals each request's policy needs now."""
        ids = [r["id"] for r in rows]
        votes: dict[str, list[Vote]] = {i: [] for i in ids}
        if ids:
            stmt = (
                select(approvals)
                .where(approvals.c.transition_id.in_(ids))
                .order_by(approvals.c.create_time, approvals.c.principal)
            )
            for v in (await conn.execute(stmt)).mappings():
                votes[v["transition_id"]].append(to_vote(v))
        needed: dict[tuple[str, str], int] = {}
        for r in rows:
            key = (r["model"], r["target_stage"])
            if key not in needed:
                policy = await self._policy_for(conn, r["model"], Stage(r["target_stage"]))
                needed[key] = policy.approvals_required
        now = self.clock()
        return [
            to_request(r, tuple(votes[r["id"]]), needed[(r["model"], r["target_stage"])], now)
            for r in rows
        ]

    async def list_requests(
        self, model: str, state: TransitionState | None, page_size: int, page_token: str
    ) -> Page:
        """Requests, newest first; a pending request past its expiry counts as EXPIRED."""
        query = fingerprint("transition_requests", model, state.value if state else "")
        stmt = select(transition_requests)
        if model:
            stmt = stmt.where(R.model == model)
        if state is not None:
            stmt = stmt.where(state_clause(state, self.clock()))
        if page_token:
            stmt = stmt.where(R.id < _token_value(page_token, query, str))
        stmt = stmt.order_by(R.id.desc()).limit(page_size + 1)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            items = await self._hydrate_requests(conn, rows[:page_size])
        token = encode_token(query, [items[-1].id]) if len(rows) > page_size else ""
        return Page(items, token)

    # ---------------------------------------------------------------- audit

    async def record_denied(
        self,
        actor: Principal,
        model: str,
        resource: str,
        attempt: dict[str, Any],
        error: KetchError,
        request_id: str = "",
    ) -> None:
        """Record a refused attempt (TRANSITION_DENIED) in its own transaction."""
        after = {**attempt, "reason": error.reason, "message": error.message}
        change = _Change(Action.TRANSITION_DENIED, resource, model, None, after)
        async with self._write() as conn:
            await self._append(conn, actor.name, [change], request_id)

    async def audit_log(
        self,
        model: str,
        actions: Sequence[Action],
        page_size: int,
        page_token: str,
        *,
        identity: bool = True,
    ) -> Page:
        """Audit events in sequence order, optionally of one model and some actions;
        without ``identity``, none of the model-less identity events."""
        query = fingerprint("audit_events", model, sorted(a.value for a in actions), identity)
        after = 0
        if page_token:
            after = _token_value(page_token, query, int)
        models = [model] if model else []
        items = await self.read_events(after, models, actions, page_size + 1, identity=identity)
        token = encode_token(query, [items[page_size - 1].seq]) if len(items) > page_size else ""
        return Page(items[:page_size], token)

    async def read_events(
        self,
        after: int,
        models: Iterable[str],
        actions: Iterable[Action],
        limit: int,
        *,
        identity: bool = True,
    ) -> list[AuditEvent]:
        """At most ``limit`` committed events with sequence above ``after``, in order
        (without ``identity``: only model events, no tokens or roles)."""
        stmt = select(audit_events).where(audit_events.c.seq > after)
        models, actions = list(models), list(actions)
        if models:
            stmt = stmt.where(audit_events.c.model.in_(models))
        elif not identity:
            stmt = stmt.where(audit_events.c.model != "")
        if actions:
            stmt = stmt.where(audit_events.c.action.in_([a.value for a in actions]))
        stmt = stmt.order_by(audit_events.c.seq).limit(limit)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [to_event(r) for r in rows]

    async def last_sequence(self) -> int:
        """The sequence number of the latest committed event (0 when there is none)."""
        async with self._tx() as conn:
            return (await conn.execute(select(func.max(audit_events.c.seq)))).scalar() or 0


# ------------------------------------------------------------------ helpers


def _mres(model: str) -> str:
    return f"models/{model}"


def _vres(model: str, version: int) -> str:
    return f"models/{model}/versions/{version}"


def _model_missing(name: str) -> NotFound:
    return NotFound(_mres(name), f"model {name!r} not found (see ketch models list)")


def _no_version(model: str, version: int) -> NotFound:
    return NotFound(
        _vres(model, version), f"model {model} has no version {version} (see ListModelVersions)"
    )


def _check_cancellable(actor: Principal, req: TransitionRequest) -> None:
    if req.state.final:
        raise reg.not_pending(req, "can be cancelled")
    if actor.name != req.requester and actor.role is not Role.ADMIN:
        raise PermissionDenied(
            f"only {req.requester} (who made {req.resource}) or an admin may cancel it",
            reason="NOT_REQUESTER",
            principal=actor.name,
        )


def _token_value(token: str, query: str, kind: type) -> Any:
    """The one sort value in a page token, checked to be of ``kind`` (``int`` values
    within BIGINT): a forged value is INVALID_ARGUMENT, not a database error."""
    (value,) = decode_token(token, query, 1)
    ok = type(value) is kind and (kind is not int or 0 <= value < 2**63)
    if not ok:
        raise InvalidArgument("page_token", "is not a token this server issued")
    return value
