"""The registry's pure rules: URIs and names, the stage graph, policies and votes."""

from __future__ import annotations

import dataclasses

import pytest
from ketch_server.domain import registry as reg
from ketch_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)
from ketch_server.domain.identity import Principal, PrincipalKind, Role
from ketch_server.domain.registry import (
    Decision,
    Evidence,
    ModelUri,
    Stage,
    TransitionRequest,
    TransitionState,
    Vote,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/churn/3", ModelUri("churn", version=3)),
        ("models:/churn@champion", ModelUri("churn", alias="champion")),
        ("models:/churn/Production", ModelUri("churn", stage=Stage.PRODUCTION)),
        ("models:/churn/staging", ModelUri("churn", stage=Stage.STAGING)),
        ("models:/churn@Production", ModelUri("churn", stage=Stage.PRODUCTION)),
        ("models:/churn/latest", ModelUri("churn", latest=True)),
        ("models:/my.model-v2/12", ModelUri("my.model-v2", version=12)),
        ("models/churn/versions/7", ModelUri("churn", version=7)),
    ],
)
def test_model_uris(uri, expected):
    assert reg.parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "churn/3",
        "models:/churn",
        "models:/churn/",
        "models:/churn/0",
        "models:/churn/3/4",
        "models:/churn/prod",
        "models:/churn@",
        "models:/churn@latest",
        "models:/bad name/1",
        "models/churn/versions/x",
    ],
)
def test_bad_uris_name_the_field(uri):
    with pytest.raises(InvalidArgument) as bad:
        reg.parse_model_uri(uri)
    assert bad.value.field == "uri"


def test_names_and_aliases():
    assert reg.parse_model_name("models/churn", field="name") == "churn"
    assert reg.parse_version_name("models/churn/versions/3", field="n") == ("churn", 3)
    for alias in ("champion", "A-b_2"):
        assert reg.check_alias("alias", alias) == alias
    for alias in ("", "2fast", "staging", "Latest", "a b", "x" * 65):
        with pytest.raises(InvalidArgument):
            reg.check_alias("alias", alias)
    with pytest.raises(InvalidArgument):
        reg.parse_model_name("models/a/b", field="name")
    assert Stage.parse("pRoDuction") is Stage.PRODUCTION
    with pytest.raises(InvalidArgument, match="Production"):
        Stage.parse("prod")


def test_default_stage_graph_and_policy_extensions():
    production = reg.default_policy(Stage.PRODUCTION)
    legal = [
        (a, b)
        for a in Stage
        for b in Stage
        if a is not b
        and reg.is_legal_move(a, b, production if b is Stage.PRODUCTION else reg.default_policy(b))
    ]
    assert set(legal) == set(reg.DEFAULT_MOVES)
    with pytest.raises(FailedPrecondition) as illegal:
        reg.check_move("v1", Stage.NONE, Stage.PRODUCTION, production)
    assert illegal.value.reason == "ILLEGAL_TRANSITION"
    with pytest.raises(FailedPrecondition) as same:
        reg.check_move("v1", Stage.STAGING, Stage.STAGING, reg.default_policy(Stage.STAGING))
    assert same.value.reason == "ALREADY_IN_STAGE"
    relaxed = dataclasses.replace(production, allowed_from=(Stage.NONE,))
    reg.check_move("v1", Stage.NONE, Stage.PRODUCTION, relaxed)
    assert (
        production.approvals_required,
        production.archive_existing,
        production.max_versions,
    ) == (2, True, 1)
    staging = reg.default_policy(Stage.STAGING)
    assert (staging.approvals_required, staging.archive_existing, staging.max_versions) == (
        0,
        False,
        0,
    )
    assert reg.default_policy(Stage.ARCHIVED).approvals_required == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"approvals_required": 11}, "policy.approvals_required"),
        ({"approver_roles": ()}, "policy.approver_roles"),
        ({"gates": ("metrics.accuracy >>= 1",)}, "policy.gates[0]"),
        ({"gates": ("",)}, "policy.gates[0]"),
        ({"max_versions": -1}, "policy.max_versions"),
        ({"expiry_seconds": 0}, "policy.expiry_seconds"),
        ({"allowed_from": (Stage.PRODUCTION,)}, "policy.allowed_from"),
    ],
)
def test_bad_policies_name_the_field(fields, field):
    with pytest.raises(InvalidArgument) as bad:
        reg.check_stage_policy(reg.policy_with(Stage.PRODUCTION, **fields))
    assert bad.value.field == field


def request(**fields) -> TransitionRequest:
    base = {
        "id": "r1",
        "model": "churn",
        "version": 1,
        "from_stage": Stage.STAGING,
        "target_stage": Stage.PRODUCTION,
        "state": TransitionState.PENDING,
        "digest": "d",
        "comment": "",
        "requester": "alice",
        "votes": (),
        "approvals_required": 2,
        "create_time": 0,
        "update_time": 0,
        "expire_time": 10,
    }
    return TransitionRequest(**{**base, **fields})


def who(name: str, role: Role) -> Principal:
    return Principal(name, PrincipalKind.USER, role, "token")


def test_vote_rules():
    policy = reg.default_policy(Stage.PRODUCTION)
    reg.check_vote(who("bob", Role.APPROVER), request(), policy)
    reg.check_vote(who("root", Role.ADMIN), request(), policy)
    cases = [
        (who("alice", Role.ADMIN), request(), PermissionDenied, "SELF_APPROVAL"),
        (who("walt", Role.WRITER), request(), PermissionDenied, "ROLE_REQUIRED"),
        (
            who("bob", Role.APPROVER),
            request(votes=(Vote("bob", Decision.APPROVE, Role.APPROVER, "", Evidence(), "d", 0),)),
            AlreadyExists,
            "ALREADY_VOTED",
        ),
        (
            who("bob", Role.APPROVER),
            request(state=TransitionState.APPLIED),
            FailedPrecondition,
            "REQUEST_FINAL",
        ),
    ]
    for principal, req, error, reason in cases:
        with pytest.raises(error) as refused:
            reg.check_vote(principal, req, policy)
        assert refused.value.reason == reason
    admins_only = dataclasses.replace(policy, approver_roles=(Role.ADMIN,))
    with pytest.raises(PermissionDenied, match="needs admin"):
        reg.check_vote(who("bob", Role.APPROVER), request(), admins_only)
    writers_too = dataclasses.replace(policy, approver_roles=(Role.WRITER,))
    reg.check_vote(who("walt", Role.WRITER), request(), writers_too)
    reg.check_vote(who("bob", Role.APPROVER), request(), writers_too)  # higher roles count
