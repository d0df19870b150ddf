"""Registry converters: every enum and policy round-trips through protobuf, and every
resource survives the trip domain -> wire -> SDK record (and back, for policies)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from ketch import _registry as sdk
from ketch.api.v1 import registry_pb2
from ketch_server.api import registry_convert as rc
from ketch_server.domain.errors import InvalidArgument
from ketch_server.domain.identity import Role
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
    default_policy,
)

T0 = 1_795_000_000_123


def when(millis: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc)


def test_enums_round_trip_and_unknown_values_name_the_field():
    for stage in Stage:
        assert rc.stage_from_pb(rc.stage_to_pb(stage), field="s") is stage
    for state in TransitionState:
        assert rc.state_from_pb(rc.state_to_pb(state)) is state
    for action in Action:
        assert rc.action_from_pb(rc.action_to_pb(action), field="a") is action
    assert rc.stage_from_pb(0, field="stage", required=False) is None
    assert rc.state_from_pb(0) is None
    for call, field in [
        (lambda: rc.stage_from_pb(0, field="target_stage"), "target_stage"),
        (lambda: rc.stage_from_pb(99, field="stage", required=False), "stage"),
        (lambda: rc.state_from_pb(42), "state"),
        (lambda: rc.actions_from_pb([1, 77]), "actions[1]"),
    ]:
        with pytest.raises(InvalidArgument) as bad:
            call()
        assert bad.value.field == field


POLICIES = [
    default_policy(Stage.PRODUCTION),
    StagePolicy(
        stage=Stage.STAGING,
        approvals_required=3,
        approver_roles=(Role.WRITER, Role.ADMIN),
        gates=("metrics.accuracy >= 0.9", 'params.framework = "sklearn"'),
        archive_existing=True,
        max_versions=2,
        expiry_seconds=3600,
        allowed_from=(Stage.ARCHIVED, Stage.PRODUCTION),
        is_default=False,
    ),
]


@pytest.mark.parametrize("policy", POLICIES, ids=["default", "custom"])
def test_policies_round_trip_server_and_sdk(policy):
    pb = rc.stage_policy_to_pb(policy)
    assert rc.stage_policy_from_pb(pb) == dataclasses.replace(policy, is_default=False)
    record = sdk.StagePolicy._from_proto(pb)
    assert record.stage == policy.stage.value
    assert record.approver_roles == tuple(r.name.lower() for r in policy.approver_roles)
    assert record.is_default == policy.is_default
    assert rc.stage_policy_from_pb(record._to_proto()) == dataclasses.replace(
        policy, is_default=False
    )


def test_unset_policy_fields_take_the_stage_defaults():
    pb = registry_pb2.StagePolicy(stage=registry_pb2.STAGE_PRODUCTION, approvals_required=0)
    got = rc.stage_policy_from_pb(pb)
    expected = dataclasses.replace(
        default_policy(Stage.PRODUCTION), approvals_required=0, is_default=False
    )
    assert got == expected
    assert got.archive_existing and got.max_versions == 1


def test_model_and_version_reach_the_sdk_intact():
    model = RegisteredModel(
        name="churn",
        description="d",
        tags={"team": "ads"},
        owner="alice",
        create_time=T0,
        update_time=T0 + 5,
        latest_version=3,
        aliases={"champion": 3, "candidate": 2},
        revision=7,
    )
    record = sdk.RegisteredModel._from_proto(rc.model_to_pb(model))
    assert record == sdk.RegisteredModel(
        name="churn",
        description="d",
        tags={"team": "ads"},
        owner="alice",
        latest_version=3,
        aliases={"candidate": 2, "champion": 3},
        create_time=when(T0),
        update_time=when(T0 + 5),
        etag='W/"7"',
    )
    version = ModelVersion(
        model="churn",
        version=3,
        stage=Stage.PRODUCTION,
        aliases=("champion",),
        source_run_id="0" * 32,
        source_path="models/churn/MLmodel.json",
        digest="ab" * 32,
        description="v3",
        tags={"k": "v"},
        creator="bob",
        create_time=T0,
        update_time=T0 + 1,
        stage_time=T0 + 2,
        revision=4,
    )
    pb = rc.version_to_pb(version)
    assert pb.name == "models/churn/versions/3" and pb.model == "models/churn"
    got = sdk.ModelVersion._from_proto(pb)
    assert (got.model, got.version, got.stage, got.aliases) == (
        "churn",
        3,
        "PRODUCTION",
        ("champion",),
    )
    assert (got.run_id, got.source_path, got.digest) == (
        "0" * 32,
        version.source_path,
        version.digest,
    )
    assert (got.creator, got.stage_time, got.etag) == ("bob", when(T0 + 2), 'W/"4"')
    assert got.artifact_dir == "models/churn" and got.uri == "models:/churn/3"


def test_requests_votes_and_events_reach_the_sdk_intact():
    evidence = Evidence("https://ci/7", {"tests": "passed"})
    assert rc.evidence_from_pb(rc.evidence_to_pb(evidence)) == evidence
    vote = Vote("bob", Decision.APPROVE, Role.APPROVER, "ok", evidence, "cd" * 32, T0)
    request = TransitionRequest(
        id="1" * 32,
        model="churn",
        version=3,
        from_stage=Stage.STAGING,
        target_stage=Stage.PRODUCTION,
        state=TransitionState.PENDING,
        digest="cd" * 32,
        comment="ship",
        requester="alice",
        votes=(vote, dataclasses.replace(vote, principal="carol", decision=Decision.REJECT)),
        approvals_required=2,
        create_time=T0,
        update_time=T0,
        expire_time=T0 + 60_000,
        resolution="",
    )
    pb = rc.request_to_pb(request)
    assert pb.name == f"requests/{'1' * 32}" and pb.approvals == 1
    got = sdk.TransitionRequest._from_proto(pb)
    assert (got.id, got.model, got.version, got.state) == ("1" * 32, "churn", 3, "PENDING")
    assert (got.from_stage, got.target_stage, got.approvals, got.approvals_required) == (
        "STAGING",
        "PRODUCTION",
        1,
        2,
    )
    assert [(v.principal, v.decision, v.role) for v in got.votes] == [
        ("bob", "APPROVE", "approver"),
        ("carol", "REJECT", "approver"),
    ]
    assert got.votes[0].evidence_url == "https://ci/7" and got.votes[0].checks == {
        "tests": "passed"
    }
    assert got.expire_time == when(T0 + 60_000)

    event = AuditEvent(
        seq=42,
        time=T0,
        actor="alice",
        action=Action.STAGE_CHANGED,
        resource="models/churn/versions/3",
        model="churn",
        before=json.dumps({"stage": "STAGING"}),
        after=json.dumps({"stage": "PRODUCTION", "request": "requests/x"}),
        request_id="ci-1",
    )
    got_event = sdk.RegistryEvent._from_proto(rc.event_to_pb(event))
    assert got_event == sdk.RegistryEvent(
        cursor="42",
        sequence=42,
        action="STAGE_CHANGED",
        actor="alice",
        resource="models/churn/versions/3",
        model="churn",
        before={"stage": "STAGING"},
        after={"stage": "PRODUCTION", "request": "requests/x"},
        request_id="ci-1",
        time=when(T0),
    )
    empty = sdk.RegistryEvent._from_proto(
        rc.event_to_pb(dataclasses.replace(event, before="", after=""))
    )
    assert empty.before is None and empty.after is None
