"""Pure converters between ketch.api.v1 registry messages and domain objects.

Enum values outside the proto's range are INVALID_ARGUMENT naming the field;
``tests/unit/test_registry_convert.py`` round-trips every converter.
"""

from __future__ import annotations

from collections.abc import Iterable

from ketch.api.v1 import registry_pb2

from ketch_server.api.admin import role_from_pb, role_to_pb
from ketch_server.api.convert import timestamp_to_pb
from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.registry import (
    Action,
    AuditEvent,
    Decision,
    Evidence,
    ModelVersion,
    RegisteredModel,
    Stage,
    StagePolicy,
    TransitionRequest,
    TransitionState,
    Vote,
    policy_with,
)

__all__ = [
    "action_from_pb",
    "action_to_pb",
    "actions_from_pb",
    "event_to_pb",
    "evidence_from_pb",
    "evidence_to_pb",
    "model_to_pb",
    "policy_to_pb",
    "request_to_pb",
    "stage_from_pb",
    "stage_policy_from_pb",
    "stage_policy_to_pb",
    "stage_to_pb",
    "state_from_pb",
    "state_to_pb",
    "version_to_pb",
    "vote_to_pb",
]

_STAGE_TO_PB = {s: registry_pb2.Stage.Value(f"STAGE_{s.value}") for s in Stage}
_STAGE_FROM_PB = {v: k for k, v in _STAGE_TO_PB.items()}
_STATE_TO_PB = {
    s: registry_pb2.TransitionState.Value(f"TRANSITION_STATE_{s.value}") for s in TransitionState
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}
_ACTION_TO_PB = {a: registry_pb2.AuditAction.Value(f"AUDIT_ACTION_{a.value}") for a in Action}
_ACTION_FROM_PB = {v: k for k, v in _ACTION_TO_PB.items()}
_DECISION_TO_PB = {d: registry_pb2.Decision.Value(f"DECISION_{d.value}") for d in Decision}


# ------------------------------------------------------------------- enums


def stage_to_pb(stage: Stage) -> int:
    return _STAGE_TO_PB[stage]


def stage_from_pb(value: int, *, field: str, required: bool = True) -> Stage | None:
    """The stage of an enum value; None for UNSPECIFIED when not ``required``."""
    if value == registry_pb2.STAGE_UNSPECIFIED and not required:
        return None
    try:
        return _STAGE_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(
            field, "required: a stage (NONE, STAGING, PRODUCTION, ARCHIVED)"
        ) from None


def state_to_pb(state: TransitionState) -> int:
    return _STATE_TO_PB[state]


def state_from_pb(value: int, *, field: str = "state") -> TransitionState | None:
    """The state of an enum value; None for UNSPECIFIED (no filter)."""
    if value == registry_pb2.TRANSITION_STATE_UNSPECIFIED:
        return None
    try:
        return _STATE_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(field, f"unknown transition state {value}") from None


def action_to_pb(action: Action) -> int:
    return _ACTION_TO_PB[action]


def action_from_pb(value: int, *, field: str) -> Action:
    try:
        return _ACTION_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(field, f"unknown audit action {value}") from None


def actions_from_pb(values: Iterable[int], *, field: str = "actions") -> list[Action]:
    return [action_from_pb(v, field=f"{field}[{i}]") for i, v in enumerate(values)]


# ---------------------------------------------------------------- resources


def model_to_pb(m: RegisteredModel) -> registry_pb2.RegisteredModel:
    return registry_pb2.RegisteredModel(
        name=f"models/{m.name}",
        description=m.description,
        tags=dict(m.tags),
        owner=m.owner,
        create_time=timestamp_to_pb(m.create_time),
        update_time=timestamp_to_pb(m.update_time),
        latest_version=m.latest_version,
        aliases=dict(m.aliases),
        etag=m.etag,
    )


def version_to_pb(v: ModelVersion) -> registry_pb2.ModelVersion:
    return registry_pb2.ModelVersion(
        name=v.resource,
        model=f"models/{v.model}",
        version=v.version,
        stage=stage_to_pb(v.stage),
        aliases=list(v.aliases),
        source_run=f"runs/{v.source_run_id}",
        source_path=v.source_path,
        digest=v.digest,
        description=v.description,
        tags=dict(v.tags),
        creator=v.creator,
        create_time=timestamp_to_pb(v.create_time),
        update_time=timestamp_to_pb(v.update_time),
        stage_time=timestamp_to_pb(v.stage_time),
        etag=v.etag,
    )


def stage_policy_to_pb(p: StagePolicy) -> registry_pb2.StagePolicy:
    return registry_pb2.StagePolicy(
        stage=stage_to_pb(p.stage),
        approvals_required=p.approvals_required,
        approver_roles=[role_to_pb(r) for r in p.approver_roles],
        gates=list(p.gates),
        archive_existing=p.archive_existing,
        max_versions=p.max_versions,
        expiry_seconds=p.expiry_seconds,
        allowed_from=[stage_to_pb(s) for s in p.allowed_from],
        is_default=p.is_default,
    )


def stage_policy_from_pb(pb: registry_pb2.StagePolicy) -> StagePolicy:
    """A policy to store: unset fields take the stage's defaults (``is_default`` ignored)."""
    stage = stage_from_pb(pb.stage, field="policy.stage")
    assert stage is not None
    given: dict[str, object] = {}
    for name in ("approvals_required", "archive_existing", "max_versions", "expiry_seconds"):
        if pb.HasField(name):
            given[name] = getattr(pb, name)
    if pb.approver_roles:
        given["approver_roles"] = tuple(
            role_from_pb(r, field=f"policy.approver_roles[{i}]")
            for i, r in enumerate(pb.approver_roles)
        )
    if pb.gates:
        given["gates"] = tuple(pb.gates)
    if pb.allowed_from:
        given["allowed_from"] = tuple(
            stage_from_pb(s, field=f"policy.allowed_from[{i}]")
            for i, s in enumerate(pb.allowed_from)
        )
    return policy_with(stage, **given)


def policy_to_pb(model: str, policies: Iterable[StagePolicy]) -> registry_pb2.Policy:
    return registry_pb2.Policy(
        name=f"models/{model}/policy", stages=[stage_policy_to_pb(p) for p in policies]
    )


def evidence_from_pb(pb: registry_pb2.Evidence) -> Evidence:
    return Evidence(url=pb.url, checks=dict(pb.checks))


def evidence_to_pb(e: Evidence) -> registry_pb2.Evidence:
    return registry_pb2.Evidence(url=e.url, checks=dict(e.checks))


def vote_to_pb(v: Vote) -> registry_pb2.Vote:
    return registry_pb2.Vote(
        principal=v.principal,
        decision=_DECISION_TO_PB[v.decision],
        role=role_to_pb(v.role),
        comment=v.comment,
        evidence=evidence_to_pb(v.evidence),
        digest=v.digest,
        create_time=timestamp_to_pb(v.create_time),
    )


def request_to_pb(r: TransitionRequest) -> registry_pb2.TransitionRequest:
    return registry_pb2.TransitionRequest(
        name=r.resource,
        id=r.id,
        model_version=r.version_resource,
        from_stage=stage_to_pb(r.from_stage),
        target_stage=stage_to_pb(r.target_stage),
        state=state_to_pb(r.state),
        digest=r.digest,
        comment=r.comment,
        requester=r.requester,
        votes=[vote_to_pb(v) for v in r.votes],
        approvals=r.approvals,
        approvals_required=r.approvals_required,
        create_time=timestamp_to_pb(r.create_time),
        update_time=timestamp_to_pb(r.update_time),
        expire_time=timestamp_to_pb(r.expire_time),
        resolution=r.resolution,
    )


def event_to_pb(e: AuditEvent) -> registry_pb2.RegistryEvent:
    return registry_pb2.RegistryEvent(
        cursor=str(e.seq),
        sequence=e.seq,
        time=timestamp_to_pb(e.time),
        actor=e.actor,
        action=action_to_pb(e.action),
        resource=e.resource,
        model=f"models/{e.model}" if e.model else "",  # identity events belong to none
        before=e.before,
        after=e.after,
        request_id=e.request_id,
    )
