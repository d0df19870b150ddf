"""The model registry's rules: names and URIs, the stage graph, policies, votes.

Pure: no gRPC, protobuf or SQL. The store applies these rules inside its
transactions; the service validates requests with them before anything is written.

Stages and moves. A version is in one stage: NONE, STAGING, PRODUCTION or
ARCHIVED. The default legal moves are NONE->STAGING, STAGING->PRODUCTION,
any->ARCHIVED and ARCHIVED->STAGING; a stage's policy may allow more sources
(``allowed_from``). Admins may move a version anywhere directly (audited as such).

Policies. Each model has one :class:`StagePolicy` per target stage; stages without
a stored policy use :func:`default_policy`. A move into a stage applies once
``approvals_required`` approvals from principals whose role is at least one of
``approver_roles`` (admins always count) are in, and every gate (a run filter such
as ``metrics.accuracy >= 0.9``) matches the version's source run. On applying, the
stage's current holders are archived when ``archive_existing`` is set; otherwise a
stage already holding ``max_versions`` versions refuses the move (STAGE_OCCUPIED).

Votes. The requester may not vote on their own request (SELF_APPROVAL); each
principal votes once (ALREADY_VOTED); rejected, cancelled, expired, failed and
applied requests are final (REQUEST_FINAL).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ketch_server.domain import filters, validation
from ketch_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from ketch_server.domain.identity import Principal, Role
from ketch_server.domain.models import etag_of

__all__ = [
    "DEFAULT_MOVES",
    "LIMITS",
    "Action",
    "AuditEvent",
    "Decision",
    "Evidence",
    "ModelUri",
    "ModelVersion",
    "RegisteredModel",
    "RegistryLimits",
    "Stage",
    "StagePolicy",
    "TransitionRequest",
    "TransitionState",
    "Vote",
    "check_alias",
    "check_model_name",
    "check_move",
    "check_stage_policy",
    "check_tags",
    "check_vote",
    "default_policy",
    "not_pending",
    "parse_model_uri",
    "parse_version_name",
    "policy_with",
    "stage_occupied",
]


class RegistryLimits:
    """The explicit limits of the registry API (documented in the README)."""

    model_name_chars = 128
    alias_chars = 64
    description_chars = 10_000
    comment_chars = 10_000
    tags = 100
    tag_key_chars = 250
    tag_value_chars = 5_000
    max_approvals = 10
    gates = 16
    min_expiry_seconds = 1
    max_expiry_seconds = 365 * 24 * 3600
    default_expiry_seconds = 7 * 24 * 3600
    evidence_url_chars = 2_048
    evidence_checks = 100
    watch_models = 100


LIMITS = RegistryLimits()

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,17}$")
MODELS = "models"
URI_SCHEME = "models:/"


class Stage(enum.Enum):
    NONE = "NONE"
    STAGING = "STAGING"
    PRODUCTION = "PRODUCTION"
    ARCHIVED = "ARCHIVED"

    @property
    def title(self) -> str:
        """``Production``: how people write it in URIs."""
        return self.value.capitalize()

    @classmethod
    def parse(cls, value: str, *, field: str = "stage") -> Stage:
        """A stage from its name, case-insensitively (``production``, ``Production``).

        Raises:
            InvalidArgument: naming ``field``.
        """
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(s.title for s in cls)
            raise InvalidArgument(field, f"unknown stage {value!r}; one of {names}") from None


class TransitionState(enum.Enum):
    PENDING = "PENDING"
    APPLIED = "APPLIED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"

    @property
    def final(self) -> bool:
        return self is not TransitionState.PENDING


class Decision(enum.Enum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class Action(enum.Enum):
    """What an audit event records."""

    MODEL_CREATED = "MODEL_CREATED"
    MODEL_UPDATED = "MODEL_UPDATED"
    VERSION_REGISTERED = "VERSION_REGISTERED"
    VERSION_UPDATED = "VERSION_UPDATED"
    ALIAS_SET = "ALIAS_SET"
    ALIAS_DELETED = "ALIAS_DELETED"
    POLICY_SET = "POLICY_SET"
    TRANSITION_REQUESTED = "TRANSITION_REQUESTED"
    TRANSITION_APPROVED = "TRANSITION_APPROVED"
    TRANSITION_REJECTED = "TRANSITION_REJECTED"
    TRANSITION_CANCELLED = "TRANSITION_CANCELLED"
    TRANSITION_EXPIRED = "TRANSITION_EXPIRED"
    TRANSITION_FAILED = "TRANSITION_FAILED"
    TRANSITION_DENIED = "TRANSITION_DENIED"
    STAGE_CHANGED = "STAGE_CHANGED"
    # Identity changes (model ""): see store/identity.py.
    TOKEN_CREATED = "TOKEN_CREATED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    PRINCIPAL_ROLE_SET = "PRINCIPAL_ROLE_SET"


DEFAULT_MOVES: frozenset[tuple[Stage, Stage]] = frozenset(
    {
        (Stage.NONE, Stage.STAGING),
        (Stage.STAGING, Stage.PRODUCTION),
        (Stage.NONE, Stage.ARCHIVED),
        (Stage.STAGING, Stage.ARCHIVED),
        (Stage.PRODUCTION, Stage.ARCHIVED),
        (Stage.ARCHIVED, Stage.STAGING),
    }
)


# ---------------------------------------------------------------- resources


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    tags: Mapping[str, str]
    owner: str
    create_time: int
    update_time: int
    latest_version: int
    aliases: Mapping[str, int]
    revision: int

    @property
    def etag(self) -> str:
        return etag_of(self.revision)


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    stage: Stage
    aliases: tuple[str, ...]
    source_run_id: str
    source_path: str
    digest: str
    description: str
    tags: Mapping[str, str]
    creator: str
    create_time: int
    update_time: int
    stage_time: int
    revision: int

    @property
    def etag(self) -> str:
        return etag_of(self.revision)

    @property
    def ref(self) -> str:
        """The lineage node ref: ``{model}/{version}``."""
        return f"{self.model}/{self.version}"

    @property
    def resource(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


@dataclasses.dataclass(frozen=True)
class StagePolicy:
    """The rules for moves into ``stage`` (see the module docstring)."""

    stage: Stage
    approvals_required: int
    approver_roles: tuple[Role, ...]
    gates: tuple[str, ...]
    archive_existing: bool
    max_versions: int
    expiry_seconds: int
    allowed_from: tuple[Stage, ...] = ()
    is_default: bool = True

    def as_json(self) -> dict:
        return {
            "stage": self.stage.value,
            "approvals_required": self.approvals_required,
            "approver_roles": [r.name for r in self.approver_roles],
            "gates": list(self.gates),
            "archive_existing": self.archive_existing,
            "max_versions": self.max_versions,
            "expiry_seconds": self.expiry_seconds,
            "allowed_from": [s.value for s in self.allowed_from],
        }


@dataclasses.dataclass(frozen=True)
class Evidence:
    url: str = ""
    checks: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Vote:
    principal: str
    decision: Decision
    role: Role
    comment: str
    evidence: Evidence
    digest: str
    create_time: int


@dataclasses.dataclass(frozen=True)
class TransitionRequest:
    id: str
    model: str
    version: int
    from_stage: Stage
    target_stage: Stage
    state: TransitionState
    digest: str
    comment: str
    requester: str
    votes: tuple[Vote, ...]
    approvals_required: int
    create_time: int
    update_time: int
    expire_time: int
    resolution: str = ""

    @property
    def approvals(self) -> int:
        return sum(v.decision is Decision.APPROVE for v in self.votes)

    @property
    def resource(self) -> str:
        return f"requests/{self.id}"

    @property
    def version_resource(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    """One entry of the append-only audit trail; ``seq`` is its gap-free position."""

    seq: int
    time: int
    actor: str
    action: Action
    resource: str
    model: str
    before: str
    after: str
    request_id: str = ""


@dataclasses.dataclass(frozen=True)
class ModelUri:
    """A parsed model URI: exactly one of ``version``, ``alias``, ``stage``, ``latest``."""

    model: str
    version: int | None = None
    alias: str | None = None
    stage: Stage | None = None
    latest: bool = False


# ---------------------------------------------------------------- validation


def check_model_name(field: str, name: str) -> str:
    """A bare model name: 1-128 letters, digits, ``.``, ``_`` or ``-``.

    Raises:
        InvalidArgument: naming ``field``.
    """
    if not _MODEL_NAME.match(name or ""):
        raise InvalidArgument(
            field,
            f"{name!r} is not a valid model name: use 1-{LIMITS.model_name_chars} letters, "
            "digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def parse_model_name(value: str, *, field: str) -> str:
    """The bare name from ``models/{model}`` (or a bare name)."""
    name = value.removeprefix(f"{MODELS}/")
    if "/" in name:
        raise InvalidArgument(field, f"{value!r} is not a models/<model> resource name")
    return check_model_name(field, name)


def parse_version_name(value: str, *, field: str) -> tuple[str, int]:
    """(model, version) from ``models/{model}/versions/{version}``.

    Raises:
        InvalidArgument: naming ``field`` when it has another shape.
    """
    parts = (value or "").split("/")
    if len(parts) != 4 or parts[0] != MODELS or parts[2] != "versions":
        raise InvalidArgument(
            field, f"{value!r} is not a models/<model>/versions/<version> resource name"
        )
    check_model_name(field, parts[1])
    return parts[1], check_version_number(field, parts[3])


def check_version_number(field: str, value: str | int) -> int:
    text = str(value)
    if not _VERSION.match(text):
        raise InvalidArgument(field, f"{value!r} is not a version number (1, 2, ...)")
    return int(text)


def check_alias(field: str, alias: str) -> str:
    """An alias: 1-64 letters, digits, ``_`` or ``-`` starting with a letter; not a
    stage name nor ``latest`` (those mean something else in a model URI)."""
    if not _ALIAS.match(alias or ""):
        raise InvalidArgument(
            field,
            f"{alias!r} is not a valid alias: use 1-{LIMITS.alias_chars} letters, digits, "
            "'_' or '-', starting with a letter",
        )
    if alias.upper() in Stage.__members__ or alias.lower() == "latest":
        raise InvalidArgument(field, f"{alias!r} is reserved (a stage name or 'latest')")
    return alias


def check_tags(field: str, tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > LIMITS.tags:
        raise ResourceExhausted("tags", f"{field}: {len(tags)} tags; the limit is {LIMITS.tags}")
    for key, value in tags.items():
        validation.check_text(f"{field}[{key}]", key, LIMITS.tag_key_chars, required=True)
        validation.check_text(f"{field}[{key}]", value, LIMITS.tag_value_chars)
    return dict(tags)


def parse_model_uri(uri: str, *, field: str = "uri") -> ModelUri:
    """Parse ``models:/m/3``, ``models:/m@alias``, ``models:/m/Production`` (also
    ``models:/m@Production``: aliases cannot be stage names), ``models:/m/latest``, or a
    version's resource name ``models/m/versions/3``.

    Raises:
        InvalidArgument: naming ``field``, with the accepted shapes.
    """
    if uri.startswith(f"{MODELS}/") and "/versions/" in uri:
        model, version = parse_version_name(uri, field=field)
        return ModelUri(model, version=version)
    if not uri.startswith(URI_SCHEME):
        raise _bad_uri(field, uri)
    rest = uri[len(URI_SCHEME) :]
    if "@" in rest:
        model, _, alias = rest.partition("@")
        if alias.upper() in Stage.__members__:  # models:/churn@Production: the stage
            return ModelUri(_uri_model(field, model, uri), stage=Stage[alias.upper()])
        return ModelUri(_uri_model(field, model, uri), alias=check_alias(field, alias))
    model, slash, selector = rest.partition("/")
    if not slash or not selector or "/" in selector:
        raise _bad_uri(field, uri)
    model = _uri_model(field, model, uri)
    if selector.isdigit():
        return ModelUri(model, version=check_version_number(field, selector))
    if selector.lower() == "latest":
        return ModelUri(model, latest=True)
    if selector.upper() in Stage.__members__:
        return ModelUri(model, stage=Stage[selector.upper()])
    raise _bad_uri(field, uri)


def _uri_model(field: str, model: str, uri: str) -> str:
    if not _MODEL_NAME.match(model):
        raise _bad_uri(field, uri)
    return model


def _bad_uri(field: str, uri: str) -> InvalidArgument:
    return InvalidArgument(
        field,
        f"{uri!r} is not a model URI: use models:/<model>/<version>, models:/<model>@<alias>, "
        "models:/<model>/<stage> or models:/<model>/latest",
    )


# ------------------------------------------------------------------ policies


def default_policy(stage: Stage) -> StagePolicy:
    """The rules for moves into ``stage`` when the model has none stored."""
    production = stage is Stage.PRODUCTION
    return StagePolicy(
        stage=stage,
        approvals_required=2 if production else 0,
        approver_roles=(Role.APPROVER,),
        gates=(),
        archive_existing=production,
        max_versions=1 if production else 0,
        expiry_seconds=LIMITS.default_expiry_seconds,
    )


def policy_with(stage: Stage, **given: Any) -> StagePolicy:
    """The policy for ``stage``: the defaults, overridden by the fields ``given``."""
    return dataclasses.replace(default_policy(stage), **given, is_default=False)


def check_stage_policy(p: StagePolicy) -> StagePolicy:
    """Validate a policy to store; gates are parsed so that bad ones fail now.

    Raises:
        InvalidArgument: naming the offending ``policy.*`` field.
    """
    if not 0 <= p.approvals_required <= LIMITS.max_approvals:
        raise InvalidArgument(
            "policy.approvals_required", f"must be between 0 and {LIMITS.max_approvals}"
        )
    if not p.approver_roles:
        raise InvalidArgument("policy.approver_roles", "name at least one role")
    if len(p.gates) > LIMITS.gates:
        raise InvalidArgument("policy.gates", f"at most {LIMITS.gates} gates")
    for i, gate in enumerate(p.gates):
        check_gate(f"policy.gates[{i}]", gate)
    if p.max_versions < 0:
        raise InvalidArgument("policy.max_versions", "must not be negative (0: no limit)")
    if not LIMITS.min_expiry_seconds <= p.expiry_seconds <= LIMITS.max_expiry_seconds:
        raise InvalidArgument(
            "policy.expiry_seconds",
            f"must be between {LIMITS.min_expiry_seconds} and {LIMITS.max_expiry_seconds}",
        )
    if p.stage in p.allowed_from:
        raise InvalidArgument("policy.allowed_from", "a stage cannot be moved into from itself")
    if p.archive_existing and p.stage is Stage.ARCHIVED:
        raise InvalidArgument("policy.archive_existing", "makes no sense for the Archived stage")
    return p


def check_gate(field: str, gate: str) -> filters.Node:
    """Parse a gate (the run filter language); an empty gate is refused."""
    if not gate.strip():
        raise InvalidArgument(field, "an empty gate; write e.g. 'metrics.accuracy >= 0.9'")
    try:
        node = filters.parse_filter(gate)
    except InvalidArgument as exc:
        detail = exc.message.removeprefix("filter: ")
        raise InvalidArgument(field, f"{gate!r} is not a valid gate: {detail}") from None
    assert node is not None  # parse_filter returns None only for blank text
    return node


def is_legal_move(source: Stage, target: Stage, policy: StagePolicy) -> bool:
    return (source, target) in DEFAULT_MOVES or source in policy.allowed_from


def check_move(label: str, source: Stage, target: Stage, policy: StagePolicy) -> None:
    """Raise unless a request may move a version from ``source`` to ``target``.

    Raises:
        FailedPrecondition: ALREADY_IN_STAGE or ILLEGAL_TRANSITION.
    """
    if source is target:
        raise FailedPrecondition(
            f"{label} is already in {target.title}",
            reason="ALREADY_IN_STAGE",
            stage=target.value,
        )
    if not is_legal_move(source, target, policy):
        legal = sorted(f"{a.title}->{b.title}" for a, b in DEFAULT_MOVES)
        extra = [f"{s.title}->{target.title}" for s in policy.allowed_from]
        raise FailedPrecondition(
            f"{label} cannot move from {source.title} to {target.title}; legal moves: "
            f"{', '.join(legal + extra)}. An admin can allow it in the model's policy "
            "(allowed_from) or move it directly.",
            reason="ILLEGAL_TRANSITION",
            from_stage=source.value,
            target_stage=target.value,
        )


def stage_occupied(label: str, target: Stage, holders: Iterable[int], limit: int):
    """The error for a move into a full stage whose holders the policy keeps."""
    held = ", ".join(str(v) for v in holders)
    return FailedPrecondition(
        f"{label} cannot enter {target.title}: version(s) {held} already hold it and the "
        f"policy allows {limit} without archiving the current holder; archive it first, or "
        "have an admin set archive_existing in the policy",
        reason="STAGE_OCCUPIED",
        stage=target.value,
        holders=held,
    )


def gates_failed(label: str, failed: Iterable[str]) -> FailedPrecondition:
    names = list(failed)
    return FailedPrecondition(
        f"{label}: the source run does not pass the policy's gate(s): "
        + "; ".join(repr(g) for g in names),
        reason="GATES_FAILED",
        gates="; ".join(names),
    )


# --------------------------------------------------------------------- votes


def not_pending(request: TransitionRequest, only: str) -> FailedPrecondition:
    """The refusal to act on a request that is no longer pending: REQUEST_EXPIRED for
    an expired one (the same whoever recorded the expiry: the server's sweep or the
    first caller after it), REQUEST_FINAL for the other final states. ``only`` says
    what only pending requests do."""
    if request.state is TransitionState.EXPIRED:
        return FailedPrecondition(
            f"{request.resource} expired (it had to be approved by its expire time); "
            "request the transition again",
            reason="REQUEST_EXPIRED",
            state=request.state.value,
        )
    return FailedPrecondition(
        f"{request.resource} is {request.state.value.lower()}; only pending requests {only}",
        reason="REQUEST_FINAL",
        state=request.state.value,
    )


def check_vote(principal: Principal, request: TransitionRequest, policy: StagePolicy) -> None:
    """Raise unless ``principal`` may vote on ``request`` (expiry is the caller's).

    Raises:
        FailedPrecondition: REQUEST_EXPIRED or REQUEST_FINAL when the request is no
            longer pending.
        PermissionDenied: SELF_APPROVAL or ROLE_REQUIRED.
        AlreadyExists: ALREADY_VOTED.
    """
    if request.state.final:
        raise not_pending(request, "take votes. Request the transition again.")
    if principal.name == request.requester:
        raise PermissionDenied(
            f"{principal.name} requested {request.resource} and cannot vote on it; another "
            "approver must",
            reason="SELF_APPROVAL",
            principal=principal.name,
        )
    if not may_approve(principal, policy):
        roles = " or ".join(r.name.lower() for r in policy.approver_roles)
        raise PermissionDenied(
            f"{principal.name} has role {principal.role.name.lower()}; approving moves into "
            f"{policy.stage.title} of models/{request.model} needs {roles} (or admin)",
            reason="ROLE_REQUIRED",
            required_role=min(policy.approver_roles).name.lower(),
            principal=principal.name,
        )
    if any(v.principal == principal.name for v in request.votes):
        raise already_voted(principal.name, request.resource)


def already_voted(principal: str, resource: str) -> AlreadyExists:
    err = AlreadyExists(resource, f"{principal} has already voted on {resource}")
    err.reason = "ALREADY_VOTED"
    return err


def may_approve(principal: Principal, policy: StagePolicy) -> bool:
    """Admins always; others when their role is at least one of the policy's roles."""
    return principal.role is Role.ADMIN or any(principal.role >= r for r in policy.approver_roles)


def is_expired(request: TransitionRequest, now: int) -> bool:
    return request.state is TransitionState.PENDING and now >= request.expire_time


def check_evidence(e: Evidence) -> Evidence:
    validation.check_text("evidence.url", e.url, LIMITS.evidence_url_chars)
    if len(e.checks) > LIMITS.evidence_checks:
        raise InvalidArgument("evidence.checks", f"at most {LIMITS.evidence_checks} checks")
    for key, value in e.checks.items():
        validation.check_text(f"evidence.checks[{key}]", key, LIMITS.tag_key_chars, required=True)
        validation.check_text(f"evidence.checks[{key}]", value, LIMITS.tag_value_chars)
    return e
