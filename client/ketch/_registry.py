"""The model registry (the SDK half): models, versions, URIs, stages, approvals, the
audit trail and the watch stream.

:class:`RegistryMethods` is mixed into :class:`ketch.Client`. Versions are named by
model URIs::

    models:/churn/3             version 3
    models:/churn@champion      the version alias ``champion`` points at
    models:/churn/Production    the version in Production (the latest to enter it)
    models:/churn/latest        the highest version number

Stages are ``NONE``, ``STAGING``, ``PRODUCTION`` and ``ARCHIVED`` (any case on
input). A move is a transition request; the model's policy says how many approvals
it needs, who may give them, and which metric gates the source run must pass.
Errors carry a stable ``reason`` (e.g. ``SELF_APPROVAL``, ``GATES_FAILED``,
``STAGE_OCCUPIED``); see ``protos/ketch/api/v1/registry.proto``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import pathlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc

from ketch import errors
from ketch._transport import Transport
from ketch._types import _time
from ketch.api.v1 import auth_pb2, registry_pb2, registry_pb2_grpc

__all__ = [
    "ModelVersion",
    "RegisteredModel",
    "RegistryEvent",
    "RegistryMethods",
    "StagePolicy",
    "TransitionRequest",
    "Vote",
    "download_model",
]

STAGES = ("NONE", "STAGING", "PRODUCTION", "ARCHIVED")
STATES = ("PENDING", "APPLIED", "REJECTED", "CANCELLED", "EXPIRED", "FAILED")
MANIFEST = "MLmodel.json"
_SERVICE = registry_pb2_grpc.RegistryServiceStub
# Seconds between reconnect attempts of a watch, growing to the last.
_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix) if value in enum.values() else "UNSPECIFIED"


def _stage_pb(stage: str, *, field: str = "stage") -> int:
    name = stage.strip().upper()
    if name not in STAGES:
        raise errors.InvalidArgument(
            f"{field} {stage!r} is not one of {', '.join(s.title() for s in STAGES)}",
            metadata={"field": field},
        )
    return registry_pb2.Stage.Value(f"STAGE_{name}")


def _role_pb(role: str) -> int:
    try:
        return auth_pb2.Role.Value(f"ROLE_{role.strip().upper()}")
    except ValueError:
        raise errors.InvalidArgument(
            f"role {role!r} is not one of reader, writer, approver, admin",
            metadata={"field": "approver_roles"},
        ) from None


def _action_pb(action: str) -> int:
    try:
        return registry_pb2.AuditAction.Value(f"AUDIT_ACTION_{action.strip().upper()}")
    except ValueError:
        names = [n.removeprefix("AUDIT_ACTION_") for n in registry_pb2.AuditAction.keys()[1:]]
        raise errors.InvalidArgument(
            f"action {action!r} is not one of {', '.join(names)}", metadata={"field": "actions"}
        ) from None


def _state_pb(state: str) -> int:
    name = state.strip().upper()
    if name not in STATES:
        raise errors.InvalidArgument(
            f"state {state!r} is not one of {', '.join(STATES)}", metadata={"field": "state"}
        )
    return registry_pb2.TransitionState.Value(f"TRANSITION_STATE_{name}")


def _model_name(name: str) -> str:
    return name if name.startswith("models/") else f"models/{name}"


def _request_name(request_id: str) -> str:
    return request_id if request_id.startswith("requests/") else f"requests/{request_id}"


def _bare(name: str) -> str:
    return name.rpartition("/")[2]


# ---------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """A registered model: its versions are numbered 1, 2, ...; ``aliases`` maps alias
    to version; ``etag`` changes with every change to the model, its aliases, its
    policy, its set of versions or their stages."""

    name: str
    description: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    owner: str = ""
    latest_version: int = 0
    aliases: dict[str, int] = dataclasses.field(default_factory=dict)
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None
    etag: str = ""

    @classmethod
    def _from_proto(cls, pb: registry_pb2.RegisteredModel) -> RegisteredModel:
        return cls(
            name=_bare(pb.name),
            description=pb.description,
            tags=dict(pb.tags),
            owner=pb.owner,
            latest_version=pb.latest_version,
            aliases=dict(sorted(pb.aliases.items())),
            create_time=_time(pb.create_time),
            update_time=_time(pb.update_time),
            etag=pb.etag,
        )


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One immutable version: the artifact ``source_path`` of run ``run_id`` (usually
    ``models/<name>/MLmodel.json``), whose sha256 was ``digest`` when registered."""

    model: str
    version: int
    stage: str
    aliases: tuple[str, ...] = ()
    run_id: str = ""
    source_path: str = ""
    digest: str = ""
    description: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    creator: str = ""
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None
    stage_time: dt.datetime | None = None
    etag: str = ""

    @property
    def name(self) -> str:
        """The resource name ``models/{model}/versions/{version}``."""
        return f"models/{self.model}/versions/{self.version}"

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"

    @property
    def artifact_dir(self) -> str:
        """The run's artifact directory holding the model's files."""
        if self.source_path.endswith(f"/{MANIFEST}") or self.source_path == MANIFEST:
            return self.source_path.rpartition("/")[0]
        return self.source_path

    @classmethod
    def _from_proto(cls, pb: registry_pb2.ModelVersion) -> ModelVersion:
        return cls(
            model=_bare(pb.model),
            version=pb.version,
            stage=_enum_name(registry_pb2.Stage, pb.stage, "STAGE_"),
            aliases=tuple(pb.aliases),
            run_id=_bare(pb.source_run),
            source_path=pb.source_path,
            digest=pb.digest,
            description=pb.description,
            tags=dict(pb.tags),
            creator=pb.creator,
            create_time=_time(pb.create_time),
            update_time=_time(pb.update_time),
            stage_time=_time(pb.stage_time),
            etag=pb.etag,
        )


@dataclasses.dataclass(frozen=True)
class StagePolicy:
    """The rules for moves into ``stage``: ``approvals_required`` approvals from
    principals with at least one of ``approver_roles`` (admins always count), every
    gate in ``gates`` matching the source run, the current holders archived when
    ``archive_existing``, else at most ``max_versions`` holders (0: no limit)."""

    stage: str
    approvals_required: int
    approver_roles: tuple[str, ...]
    gates: tuple[str, ...]
    archive_existing: bool
    max_versions: int
    expiry_seconds: int
    allowed_from: tuple[str, ...] = ()
    is_default: bool = True

    @classmethod
    def _from_proto(cls, pb: registry_pb2.StagePolicy) -> StagePolicy:
        return cls(
            stage=_enum_name(registry_pb2.Stage, pb.stage, "STAGE_"),
            approvals_required=pb.approvals_required,
            approver_roles=tuple(
                _enum_name(auth_pb2.Role, r, "ROLE_").lower() for r in pb.approver_roles
            ),
            gates=tuple(pb.gates),
            archive_existing=pb.archive_existing,
            max_versions=pb.max_versions,
            expiry_seconds=pb.expiry_seconds,
            allowed_from=tuple(
                _enum_name(registry_pb2.Stage, s, "STAGE_") for s in pb.allowed_from
            ),
            is_default=pb.is_default,
        )

    def _to_proto(self) -> registry_pb2.StagePolicy:
        return registry_pb2.StagePolicy(
            stage=_stage_pb(self.stage),
            approvals_required=self.approvals_required,
            approver_roles=[_role_pb(r) for r in self.approver_roles],
            gates=list(self.gates),
            archive_existing=self.archive_existing,
            max_versions=self.max_versions,
            expiry_seconds=self.expiry_seconds,
            allowed_from=[_stage_pb(s, field="allowed_from") for s in self.allowed_from],
        )


@dataclasses.dataclass(frozen=True)
class Vote:
    """One principal's approval or rejection, with the evidence it cited."""

    principal: str
    decision: str
    role: str
    comment: str = ""
    evidence_url: str = ""
    checks: dict[str, str] = dataclasses.field(default_factory=dict)
    digest: str = ""
    create_time: dt.datetime | None = None

    @classmethod
    def _from_proto(cls, pb: registry_pb2.Vote) -> Vote:
        return cls(
            principal=pb.principal,
            decision=_enum_name(registry_pb2.Decision, pb.decision, "DECISION_"),
            role=_enum_name(auth_pb2.Role, pb.role, "ROLE_").lower(),
            comment=pb.comment,
            evidence_url=pb.evidence.url,
            checks=dict(pb.evidence.checks),
            digest=pb.digest,
            create_time=_time(pb.create_time),
        )


@dataclasses.dataclass(frozen=True)
class TransitionRequest:
    """A request to move a version into ``target_stage``. ``state`` is PENDING,
    APPLIED, REJECTED, CANCELLED, EXPIRED or FAILED (``resolution`` says why)."""

    id: str
    model: str
    version: int
    from_stage: str
    target_stage: str
    state: str
    approvals: int
    approvals_required: int
    requester: str = ""
    comment: str = ""
    digest: str = ""
    votes: tuple[Vote, ...] = ()
    resolution: str = ""
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None
    expire_time: dt.datetime | None = None

    @classmethod
    def _from_proto(cls, pb: registry_pb2.TransitionRequest) -> TransitionRequest:
        parts = pb.model_version.split("/")
        return cls(
            id=pb.id,
            model=parts[1] if len(parts) == 4 else "",
            version=int(parts[3]) if len(parts) == 4 else 0,
            from_stage=_enum_name(registry_pb2.Stage, pb.from_stage, "STAGE_"),
            target_stage=_enum_name(registry_pb2.Stage, pb.target_stage, "STAGE_"),
            state=_enum_name(registry_pb2.TransitionState, pb.state, "TRANSITION_STATE_"),
            approvals=pb.approvals,
            approvals_required=pb.approvals_required,
            requester=pb.requester,
            comment=pb.comment,
            digest=pb.digest,
            votes=tuple(Vote._from_proto(v) for v in pb.votes),
            resolution=pb.resolution,
            create_time=_time(pb.create_time),
            update_time=_time(pb.update_time),
            expire_time=_time(pb.expire_time),
        )


@dataclasses.dataclass(frozen=True)
class RegistryEvent:
    """An audit event. ``cursor`` resumes a watch right after it; ``before`` and
    ``after`` are the changed fields (None when there are none)."""

    cursor: str
    sequence: int
    action: str
    actor: str
    resource: str
    model: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    request_id: str = ""
    time: dt.datetime | None = None

    @classmethod
    def _from_proto(cls, pb: registry_pb2.RegistryEvent) -> RegistryEvent:
        return cls(
            cursor=pb.cursor,
            sequence=pb.sequence,
            action=_enum_name(registry_pb2.AuditAction, pb.action, "AUDIT_ACTION_"),
            actor=pb.actor,
            resource=pb.resource,
            model=_bare(pb.model),
            before=json.loads(pb.before) if pb.before else None,
            after=json.loads(pb.after) if pb.after else None,
            request_id=pb.request_id,
            time=_time(pb.time),
        )


# ---------------------------------------------------------------- methods


class RegistryMethods:
    """The registry half of :class:`ketch.Client`. Needs ``_transport``."""

    _transport: Transport
    # Provided by ketch._artifacts.ArtifactMethods in ketch.Client.
    download_artifacts: Callable[..., str]

    def _registry_call(self, method: str, request: Any, *, retries: int = 0) -> Any:
        return self._transport.call(method, request, retries=retries, service=_SERVICE)

    # -------------------------------------------------------------- models

    def create_model(
        self,
        name: str,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        *,
        request_id: str | None = None,
    ) -> RegisteredModel:
        """Create a model owned by the caller. Retries are safe (``request_id``).

        Raises:
            ketch.errors.AlreadyExists: the name is taken.
        """
        req = registry_pb2.CreateModelRequest(
            model_id=name,
            model=registry_pb2.RegisteredModel(description=description, tags=dict(tags or {})),
            request_id=request_id or uuid.uuid4().hex,
        )
        return RegisteredModel._from_proto(self._registry_call("CreateModel", req, retries=3))

    def get_model(self, name: str) -> RegisteredModel:
        req = registry_pb2.GetModelRequest(name=_model_name(name))
        return RegisteredModel._from_proto(self._registry_call("GetModel", req, retries=3))

    def iter_models(self, *, page_size: int = 0) -> Iterator[RegisteredModel]:
        """Every model, in name order, fetched page by page."""
        pages = self._transport.pages(
            "ListModels",
            lambda token: registry_pb2.ListModelsRequest(page_size=page_size, page_token=token),
            service=_SERVICE,
        )
        for resp in pages:
            yield from (RegisteredModel._from_proto(m) for m in resp.models)

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        etag: str = "",
    ) -> RegisteredModel:
        """Replace the description and/or the tags (the whole mapping)."""
        model, mask = _update(description, tags)
        model.name = _model_name(name)
        req = registry_pb2.UpdateModelRequest(model=model, update_mask=mask, etag=etag)
        return RegisteredModel._from_proto(self._registry_call("UpdateModel", req))

    # ------------------------------------------------------------ versions

    def register_model(
        self,
        name: str,
        run_id: str,
        path: str | None = None,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        request_id: str | None = None,
        create: bool = True,
    ) -> ModelVersion:
        """Register the next version of model ``name`` from artifact ``path`` of the run
        (default ``models/<name>``: the directory ``run.log_model(..., name)`` wrote,
        whose ``MLmodel.json`` manifest is hashed). Creates the model first when it does
        not exist and ``create`` is set.

        Raises:
            ketch.errors.NotFound: the run or artifact (or the model, without ``create``).
        """
        req = registry_pb2.CreateModelVersionRequest(
            parent=_model_name(name),
            source_run=run_id if run_id.startswith("runs/") else f"runs/{run_id}",
            source_path=path or f"models/{name}",
            description=description,
            tags=dict(tags or {}),
            request_id=request_id or uuid.uuid4().hex,
        )
        try:
            pb = self._registry_call("CreateModelVersion", req, retries=3)
        except errors.NotFound as exc:
            if not create or exc.metadata.get("resource") != _model_name(name):
                raise
            try:
                self.create_model(name)
            except errors.AlreadyExists:
                pass
            pb = self._registry_call("CreateModelVersion", req, retries=3)
        return ModelVersion._from_proto(pb)

    def get_model_version(self, uri: str, version: int | str | None = None) -> ModelVersion:
        """The version a model URI names (see the module docstring), or
        ``get_model_version("churn", 3)``.

        Raises:
            ketch.errors.NotFound: nothing matches.
        """
        if version is not None:
            uri = f"models:/{_bare(uri)}/{version}"
        req = registry_pb2.ResolveModelVersionRequest(uri=uri)
        return ModelVersion._from_proto(self._registry_call("ResolveModelVersion", req, retries=3))

    def iter_model_versions(
        self, name: str, *, stage: str | None = None, page_size: int = 0
    ) -> Iterator[ModelVersion]:
        """Versions of a model, newest first, optionally only those in ``stage``."""
        stage_pb = _stage_pb(stage) if stage else 0
        pages = self._transport.pages(
            "ListModelVersions",
            lambda token: registry_pb2.ListModelVersionsRequest(
                parent=_model_name(name), stage=stage_pb, page_size=page_size, page_token=token
            ),
            service=_SERVICE,
        )
        for resp in pages:
            yield from (ModelVersion._from_proto(v) for v in resp.model_versions)

    def update_model_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        etag: str = "",
    ) -> ModelVersion:
        """Replace a version's description and/or tags."""
        model, mask = _update(description, tags)
        pb = registry_pb2.ModelVersion(
            name=f"{_model_name(name)}/versions/{version}",
            description=model.description,
            tags=dict(model.tags),
        )
        req = registry_pb2.UpdateModelVersionRequest(model_version=pb, update_mask=mask, etag=etag)
        return ModelVersion._from_proto(self._registry_call("UpdateModelVersion", req))

    def download_model(self, uri: str, dst_path: str | os.PathLike[str] | None = None) -> str:
        """Download the files of the version ``uri`` names into ``dst_path`` (default:
        the current directory); returns the local model directory. The manifest's
        sha256 must equal the version's digest, and every file is checked against its
        own sha256 on the way in.

        Raises:
            ketch.errors.NotFound: the URI names nothing.
            ketch.errors.FailedPrecondition: the manifest's digest does not match.
        """
        version = self.get_model_version(uri)
        fetched = self.download_artifacts(version.run_id, version.artifact_dir, dst_path)
        local = pathlib.Path(fetched)
        manifest = local / pathlib.PurePosixPath(version.source_path).name
        if manifest.is_file() and _sha256(manifest) != version.digest:
            raise errors.FailedPrecondition(
                f"{manifest} does not match {version.name} (sha256 {version.digest[:12]}…); "
                "the artifact changed after it was registered",
                reason="DIGEST_CHANGED",
            )
        return str(local)

    # ------------------------------------------------------------- aliases

    def set_alias(self, name: str, alias: str, version: int, *, etag: str = "") -> ModelVersion:
        """Point ``alias`` at ``version`` (moving it from another version)."""
        req = registry_pb2.SetAliasRequest(
            model=_model_name(name), alias=alias, version=version, etag=etag
        )
        return ModelVersion._from_proto(self._registry_call("SetAlias", req, retries=3))

    def delete_alias(self, name: str, alias: str, *, etag: str = "") -> RegisteredModel:
        req = registry_pb2.DeleteAliasRequest(model=_model_name(name), alias=alias, etag=etag)
        return RegisteredModel._from_proto(self._registry_call("DeleteAlias", req))

    # ------------------------------------------------------------ policies

    def get_policy(self, name: str) -> dict[str, StagePolicy]:
        """The effective policy of each target stage, keyed by stage."""
        req = registry_pb2.GetPolicyRequest(name=_model_name(name))
        pb = self._registry_call("GetPolicy", req, retries=3)
        return {p.stage: p for p in (StagePolicy._from_proto(s) for s in pb.stages)}

    def set_policy(
        self,
        name: str,
        stage: str,
        *,
        approvals: int | None = None,
        approver_roles: Iterable[str] = (),
        gates: Iterable[str] = (),
        archive_existing: bool | None = None,
        max_versions: int | None = None,
        expiry_seconds: int | None = None,
        allowed_from: Iterable[str] = (),
    ) -> dict[str, StagePolicy]:
        """Replace the policy for moves into ``stage`` (admins). Arguments left out take
        the stage's defaults. Returns every stage's effective policy."""
        pb = registry_pb2.StagePolicy(
            stage=_stage_pb(stage),
            approvals_required=approvals,
            approver_roles=[_role_pb(r) for r in approver_roles],
            gates=list(gates),
            archive_existing=archive_existing,
            max_versions=max_versions,
            expiry_seconds=expiry_seconds,
            allowed_from=[_stage_pb(s, field="allowed_from") for s in allowed_from],
        )
        req = registry_pb2.SetStagePolicyRequest(model=_model_name(name), policy=pb)
        resp = self._registry_call("SetStagePolicy", req, retries=3)
        return {p.stage: p for p in (StagePolicy._from_proto(s) for s in resp.stages)}

    # ---------------------------------------------------------- transitions

    def request_transition(
        self,
        name: str,
        version: int,
        stage: str,
        *,
        comment: str = "",
        request_id: str | None = None,
        etag: str = "",
    ) -> TransitionRequest:
        """Ask to move a version into ``stage``. Applied at once (state APPLIED) when the
        policy needs no approvals; else PENDING. Retries are safe (``request_id``).

        Raises:
            ketch.errors.FailedPrecondition: ILLEGAL_TRANSITION, GATES_FAILED (the
                ``gates`` metadata names them), STAGE_OCCUPIED, REQUEST_PENDING.
        """
        req = registry_pb2.RequestTransitionRequest(
            model_version=f"{_model_name(name)}/versions/{version}",
            target_stage=_stage_pb(stage),
            comment=comment,
            request_id=request_id or uuid.uuid4().hex,
            etag=etag,
        )
        return TransitionRequest._from_proto(
            self._registry_call("RequestTransition", req, retries=3)
        )

    def approve(
        self,
        request_id: str,
        *,
        comment: str = "",
        evidence_url: str = "",
        checks: Mapping[str, str] | None = None,
    ) -> TransitionRequest:
        """Approve a pending request as the authenticated caller; the approval that
        completes the policy applies the move.

        Raises:
            ketch.errors.PermissionDenied: SELF_APPROVAL or ROLE_REQUIRED.
            ketch.errors.AlreadyExists: ALREADY_VOTED.
            ketch.errors.FailedPrecondition: REQUEST_FINAL, REQUEST_EXPIRED, or the move
                could no longer apply (GATES_FAILED, DIGEST_CHANGED, ...).
        """
        evidence = registry_pb2.Evidence(url=evidence_url, checks=dict(checks or {}))
        req = registry_pb2.ApproveRequest(
            name=_request_name(request_id), comment=comment, evidence=evidence
        )
        return TransitionRequest._from_proto(self._registry_call("Approve", req))

    def reject(self, request_id: str, reason: str) -> TransitionRequest:
        """Reject a pending request (final)."""
        req = registry_pb2.RejectRequest(name=_request_name(request_id), reason=reason)
        return TransitionRequest._from_proto(self._registry_call("Reject", req))

    def cancel_transition_request(self, request_id: str, reason: str = "") -> TransitionRequest:
        req = registry_pb2.CancelTransitionRequestRequest(
            name=_request_name(request_id), reason=reason
        )
        return TransitionRequest._from_proto(self._registry_call("CancelTransitionRequest", req))

    def get_transition_request(self, request_id: str) -> TransitionRequest:
        req = registry_pb2.GetTransitionRequestRequest(name=_request_name(request_id))
        return TransitionRequest._from_proto(
            self._registry_call("GetTransitionRequest", req, retries=3)
        )

    def iter_transition_requests(
        self, model: str | None = None, *, state: str | None = None, page_size: int = 0
    ) -> Iterator[TransitionRequest]:
        """Requests, newest first, of one model or all, optionally in one state."""
        state_pb = _state_pb(state) if state else 0
        pages = self._transport.pages(
            "ListTransitionRequests",
            lambda token: registry_pb2.ListTransitionRequestsRequest(
                model=_model_name(model) if model else "",
                state=state_pb,
                page_size=page_size,
                page_token=token,
            ),
            service=_SERVICE,
        )
        for resp in pages:
            yield from (TransitionRequest._from_proto(r) for r in resp.requests)

    def transition_stage(
        self, name: str, version: int, stage: str, *, comment: str = "", etag: str = ""
    ) -> ModelVersion:
        """Move a version directly (admins only; audited as a direct move)."""
        req = registry_pb2.TransitionStageRequest(
            name=f"{_model_name(name)}/versions/{version}",
            stage=_stage_pb(stage),
            comment=comment,
            etag=etag,
        )
        return ModelVersion._from_proto(self._registry_call("TransitionStage", req))

    # ---------------------------------------------------------------- audit

    def audit_log(
        self, model: str | None = None, *, actions: Iterable[str] = (), page_size: int = 0
    ) -> Iterator[RegistryEvent]:
        """Audit events in order (every model, or one), fetched page by page."""
        codes = [_action_pb(a) for a in actions]
        pages = self._transport.pages(
            "GetAuditLog",
            lambda token: registry_pb2.GetAuditLogRequest(
                model=_model_name(model) if model else "",
                actions=codes,
                page_size=page_size,
                page_token=token,
            ),
            service=_SERVICE,
        )
        for resp in pages:
            yield from (RegistryEvent._from_proto(e) for e in resp.events)

    def watch_registry(
        self,
        models: Iterable[str] = (),
        *,
        actions: Iterable[str] = (),
        from_cursor: str = "",
        start_at_end: bool = False,
        timeout: float | None = None,
        reconnect: bool = True,
    ) -> Iterator[RegistryEvent]:
        """Events after ``from_cursor`` (or from the first; or only new ones with
        ``start_at_end``), then new events as they happen, until ``timeout`` seconds
        pass (None: forever) or the caller stops iterating.

        When the server goes away the watch reconnects (with ``reconnect``) from the
        last event it yielded: no event is skipped or repeated. Persist
        ``event.cursor`` to resume after a restart.

        Raises:
            ketch.errors.Unavailable: the server is unreachable and ``reconnect`` is off.
        """
        base = registry_pb2.WatchRegistryRequest(
            models=[_model_name(m) for m in models], actions=[_action_pb(a) for a in actions]
        )
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor, failures = from_cursor, 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            req = registry_pb2.WatchRegistryRequest()
            req.CopyFrom(base)
            req.from_cursor, req.start_at_end = cursor, start_at_end and not cursor
            call = self._transport.stub_for(_SERVICE).WatchRegistry(req, timeout=remaining)
            try:
                for pb in call:
                    failures = 0
                    event = RegistryEvent._from_proto(pb)
                    cursor = event.cursor
                    yield event
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    return
                if code != grpc.StatusCode.UNAVAILABLE or not reconnect:
                    raise errors.from_rpc_error(err) from None
                time.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
                failures += 1
            finally:
                call.cancel()


def _update(description: str | None, tags: Mapping[str, str] | None):
    """(a RegisteredModel carrying the new fields, the update mask naming them)."""
    from google.protobuf import field_mask_pb2

    model = registry_pb2.RegisteredModel(description=description or "", tags=dict(tags or {}))
    paths = [p for p, v in (("description", description), ("tags", tags)) if v is not None]
    if not paths:
        raise errors.InvalidArgument("give a description and/or tags to change")
    return model, field_mask_pb2.FieldMask(paths=paths)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_model(
    uri: str, dst_path: str | os.PathLike[str] | None = None, *, tracking_uri: str | None = None
) -> str:
    """Download the model version a URI names (``models:/churn@champion``) into
    ``dst_path``; see :meth:`ketch.Client.download_model`. ``tracking_uri`` defaults
    to KETCH_TRACKING_URI."""
    from ketch._client import Client

    with Client(tracking_uri) as client:
        return client.download_model(uri, dst_path)
