"""The registry store's SQL: its hot statements, built once, and the mapping between
rows and domain objects (pure functions; no I/O).

Kept apart from :mod:`ketch_server.store.registry` so that the store reads as the
transactions it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import BigInteger, String, and_, bindparam, func, or_, select, update

from ketch_server.domain.identity import Principal, Role
from ketch_server.domain.ids import new_id
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
from ketch_server.store.schema import (
    artifacts,
    model_aliases,
    model_versions,
    registered_models,
    transition_requests,
)

__all__ = [
    "RESOLVE",
    "Statements",
    "aliases_of",
    "dump",
    "load_json",
    "model_json",
    "new_request_row",
    "new_version_row",
    "new_vote_row",
    "policy_row",
    "request_json",
    "selector",
    "state_clause",
    "to_event",
    "to_model",
    "to_policy",
    "to_request",
    "to_version",
    "to_vote",
    "version_json",
    "vote_json",
]

# The counter row audit sequence numbers come from.

M = registered_models.c
V = model_versions.c
A = model_aliases.c
R = transition_requests.c


class Statements:
    """The hot statements, built once per store with bind parameters: SQLAlchemy then
    reuses their compiled form instead of rebuilding and recompiling them per call.

    Args:
        insert: The dialect's ``insert`` (for ON CONFLICT clauses).
    """

    def __init__(self, insert: Callable[[Any], Any]) -> None:
        name = bindparam("model_name", type_=String)
        self.lock_select = select(registered_models).where(M.name == name).with_for_update()
        self.lock_touch = (
            update(registered_models)
            .where(M.name == name)
            .values(revision=M.revision)
            .returning(*registered_models.c)
        )
        # Alias moves, applied a group at a time (RegistryStore._apply_alias_moves).
        model = bindparam("model", type_=String)
        self.versions_in = select(model_versions).where(
            V.model == model, V.version.in_(bindparam("versions", expanding=True))
        )
        self.aliases_near = select(A.alias, A.version).where(
            A.model == model,
            or_(
                A.version.in_(bindparam("versions", expanding=True)),
                A.alias.in_(bindparam("aliases", expanding=True)),
            ),
        )
        self.set_revision = (
            update(registered_models)
            .where(M.name == name)
            .values(
                revision=bindparam("revision", type_=BigInteger),
                update_time=bindparam("now", type_=BigInteger),
            )
        )
        with_artifact = model_versions.outerjoin(
            artifacts,
            and_(artifacts.c.run_id == V.source_run_id, artifacts.c.path == V.source_path),
        )
        self.version_and_artifact = (
            select(model_versions, artifacts.c.sha256.label("_current"))
            .select_from(with_artifact)
            .where(
                V.model == bindparam("model", type_=String),
                V.version == bindparam("version", type_=BigInteger),
            )
        )
        upsert = insert(model_aliases).values(
            model=bindparam("a_model", type_=String),
            alias=bindparam("a_alias", type_=String),
            version=bindparam("a_version", type_=BigInteger),
            update_time=bindparam("now", type_=BigInteger),
            updated_by=bindparam("actor", type_=String),
        )
        self.alias_upsert = upsert.on_conflict_do_update(
            index_elements=[A.model, A.alias],
            set_={
                "version": upsert.excluded.version,
                "update_time": upsert.excluded.update_time,
                "updated_by": upsert.excluded.updated_by,
            },
        )


def selector(uri: ModelUri) -> tuple[str, dict[str, Any]]:
    """Which prebuilt resolve statement serves ``uri``, and its parameters."""
    if uri.version is not None:
        return "version", {"model": uri.model, "selector": uri.version}
    if uri.alias is not None:
        return "alias", {"model": uri.model, "selector": uri.alias}
    if uri.stage is not None:
        return "stage", {"model": uri.model, "selector": uri.stage.value}
    return "latest", {"model": uri.model}


def _resolve_statements() -> dict[str, Any]:
    """One statement per kind of URI, built once (resolve is the hot read): the version
    row joined with every alias pointing at it; the number comes from the primary key,
    the alias row, or the (model, stage, stage_time) index."""
    model = bindparam("model", type_=String)
    every = model_aliases.alias("every_alias")
    holder = model_versions.alias("holder")
    picks = {
        "version": bindparam("selector", type_=BigInteger),
        "alias": select(A.version)
        .where(A.model == model, A.alias == bindparam("selector", type_=String))
        .scalar_subquery(),
        "stage": select(holder.c.version)
        .where(holder.c.model == model, holder.c.stage == bindparam("selector", type_=String))
        .order_by(holder.c.stage_time.desc(), holder.c.version.desc())
        .limit(1)
        .scalar_subquery(),
        "latest": select(func.max(holder.c.version))
        .where(holder.c.model == model)
        .scalar_subquery(),
    }
    joined = model_versions.outerjoin(
        every, and_(every.c.model == V.model, every.c.version == V.version)
    )
    return {
        kind: select(model_versions, every.c.alias.label("_alias"))
        .select_from(joined)
        .where(V.model == model, V.version == pick)
        .order_by(every.c.alias)
        for kind, pick in picks.items()
    }


RESOLVE = _resolve_statements()


def state_clause(state: TransitionState, now: int):
    """Rows whose effective state is ``state`` (pending past expiry is EXPIRED)."""
    if state is TransitionState.PENDING:
        return and_(R.state == state.value, R.expire_time > now)
    if state is TransitionState.EXPIRED:
        return or_(
            R.state == state.value,
            and_(R.state == TransitionState.PENDING.value, R.expire_time <= now),
        )
    return R.state == state.value


def aliases_of(rows: Sequence[Any]) -> tuple[str, ...]:
    """The aliases of a version read joined with its alias rows (``_alias``)."""
    return tuple(r["_alias"] for r in rows if r["_alias"] is not None)


def dump(value: Any) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def load_json(text: str) -> Any:
    return json.loads(text) if text else {}


def to_model(row, aliases: dict[str, int]) -> RegisteredModel:
    return RegisteredModel(
        name=row["name"],
        description=row["description"],
        tags=load_json(row["tags"]),
        owner=row["owner"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        latest_version=row["latest_version"],
        aliases=aliases,
        revision=row["revision"],
    )


def model_json(m: RegisteredModel) -> dict[str, Any]:
    return {"name": m.name, "description": m.description, "tags": dict(m.tags), "owner": m.owner}


def new_version_row(model, number, run_id, path, digest, now) -> dict[str, Any]:
    return {
        "model": model,
        "version": number,
        "stage": Stage.NONE.value,
        "stage_time": now,
        "source_run_id": run_id,
        "source_path": path,
        "digest": digest,
        "create_time": now,
        "update_time": now,
        "revision": 1,
    }


def to_version(row, aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        model=row["model"],
        version=row["version"],
        stage=Stage(row["stage"]),
        aliases=aliases,
        source_run_id=row["source_run_id"],
        source_path=row["source_path"],
        digest=row["digest"],
        description=row["description"],
        tags=load_json(row["tags"]),
        creator=row["created_by"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        stage_time=row["stage_time"],
        revision=row["revision"],
    )


def version_json(v: ModelVersion) -> dict[str, Any]:
    return {
        "model": v.model,
        "version": v.version,
        "stage": v.stage.value,
        "source_run": f"runs/{v.source_run_id}",
        "source_path": v.source_path,
        "digest": v.digest,
        "description": v.description,
        "tags": dict(v.tags),
    }


def policy_row(model: str, p: StagePolicy, now: int, actor: str) -> dict[str, Any]:
    return {
        "model": model,
        "stage": p.stage.value,
        "approvals_required": p.approvals_required,
        "approver_roles": ",".join(r.name for r in p.approver_roles),
        "gates": dump(list(p.gates)),
        "archive_existing": p.archive_existing,
        "max_versions": p.max_versions,
        "expiry_seconds": p.expiry_seconds,
        "allowed_from": ",".join(s.value for s in p.allowed_from),
        "update_time": now,
        "updated_by": actor,
    }


def to_policy(row) -> StagePolicy:
    return StagePolicy(
        stage=Stage(row["stage"]),
        approvals_required=row["approvals_required"],
        approver_roles=tuple(Role[r] for r in row["approver_roles"].split(",") if r),
        gates=tuple(json.loads(row["gates"])),
        archive_existing=bool(row["archive_existing"]),
        max_versions=row["max_versions"],
        expiry_seconds=row["expiry_seconds"],
        allowed_from=tuple(Stage(s) for s in row["allowed_from"].split(",") if s),
        is_default=False,
    )


def new_request_row(vrow, target, comment, requester, request_id, now, policy) -> dict[str, Any]:
    return {
        "id": new_id(),
        "model": vrow["model"],
        "version": vrow["version"],
        "from_stage": vrow["stage"],
        "target_stage": target.value,
        "state": TransitionState.PENDING.value,
        "digest": vrow["digest"],
        "comment": comment,
        "requested_by": requester,
        "resolution": "",
        "request_id": request_id or None,
        "create_time": now,
        "update_time": now,
        "expire_time": now + policy.expiry_seconds * 1000,
    }


def request_json(row) -> dict[str, Any]:
    return {
        "model_version": f"models/{row['model']}/versions/{row['version']}",
        "from_stage": row["from_stage"],
        "target_stage": row["target_stage"],
        "digest": row["digest"],
        "comment": row["comment"],
        "requester": row["requested_by"],
    }


def to_request(row, votes: tuple[Vote, ...], needed: int, now: int) -> TransitionRequest:
    state = TransitionState(row["state"])
    if state is TransitionState.PENDING and now >= row["expire_time"]:
        state = TransitionState.EXPIRED
    return TransitionRequest(
        id=row["id"],
        model=row["model"],
        version=row["version"],
        from_stage=Stage(row["from_stage"]),
        target_stage=Stage(row["target_stage"]),
        state=state,
        digest=row["digest"],
        comment=row["comment"],
        requester=row["requested_by"],
        votes=votes,
        approvals_required=needed,
        create_time=row["create_time"],
        update_time=row["update_time"],
        expire_time=row["expire_time"],
        resolution=row["resolution"],
    )


def new_vote_row(req, actor: Principal, decision, comment, evidence: Evidence, now) -> dict:
    return {
        "transition_id": req.id,
        "principal": actor.name,
        "decision": decision.value,
        "role": actor.role.name,
        "comment": comment,
        "evidence": dump({"url": evidence.url, "checks": dict(evidence.checks)}),
        "digest": req.digest,
        "create_time": now,
    }


def vote_json(row) -> dict[str, Any]:
    return {
        "principal": row["principal"],
        "decision": row["decision"],
        "role": row["role"],
        "comment": row["comment"],
        "evidence": json.loads(row["evidence"]),
        "digest": row["digest"],
    }


def to_vote(row) -> Vote:
    evidence = json.loads(row["evidence"])
    return Vote(
        principal=row["principal"],
        decision=Decision(row["decision"]),
        role=Role[row["role"]],
        comment=row["comment"],
        evidence=Evidence(evidence.get("url", ""), evidence.get("checks", {})),
        digest=row["digest"],
        create_time=row["create_time"],
    )


def to_event(row) -> AuditEvent:
    return AuditEvent(
        seq=row["seq"],
        time=row["event_time"],
        actor=row["actor"],
        action=Action(row["action"]),
        resource=row["resource"],
        model=row["model"],
        before=row["before_json"],
        after=row["after_json"],
        request_id=row["request_id"],
    )
