"""Registry use cases: models, versions, aliases, policies, transitions, audit, watch.

Everything arriving here is a plain Python value; everything raised is a domain
error. Input is validated before any write. The acting principal is always an
explicit argument (the API layer passes the authenticated caller); nothing here
reads identity from request fields.

Denied attempts at moving a stage (a missing role, self-approval, a second vote,
an illegal move, failing gates, an occupied stage, a stale etag) change nothing but
are recorded in the audit trail as TRANSITION_DENIED, in their own transaction,
so the trail shows every attempt.

The watch stream reads the audit table by sequence number, so any replica serves
any watcher (see ``store/registry.py`` for why the numbers have no gaps). Watchers
poll every ``poll_interval`` seconds; writes made through this process wake its
watchers at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ketch_server.domain import registry as reg
from ketch_server.domain import validation
from ketch_server.domain.artifacts import check_artifact_path
from ketch_server.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    KetchError,
    PermissionDenied,
    ResourceExhausted,
)
from ketch_server.domain.identity import Principal, PrincipalKind, Role, require_role
from ketch_server.domain.ids import RUN, parse_name
from ketch_server.domain.models import Page
from ketch_server.domain.registry import (
    LIMITS,
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
)
from ketch_server.store.registry import Outcome, RegistryStore

__all__ = ["AuditSignal", "RegistryService", "parse_cursor"]

log = logging.getLogger("ketch.registry")

T = TypeVar("T")

REQUESTS = "requests"
# Events read per query while a watcher catches up.
WATCH_BATCH = 500
# Errors that refuse a stage move without changing anything: recorded as denied.
_DENIALS = (PermissionDenied, FailedPrecondition, Aborted, AlreadyExists)


class AuditSignal:
    """Wakes this process's watchers when a registry write commits here.

    Other replicas' writes are found by polling; this only makes local ones quick.
    Single event loop; not thread-safe.
    """

    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return when a write happened after ``version`` was ``seen``, or after ``timeout``."""
        if self.version != seen:
            return
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            pass


def parse_cursor(cursor: str, *, field: str = "from_cursor") -> int:
    """The sequence number in a watch cursor.

    Raises:
        InvalidArgument: naming ``field`` when it is not a cursor this server issued.
    """
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidArgument(field, f"{cursor!r} is not a registry cursor; pass one unchanged")
    return int(cursor)


# The actor of the expiries the server finds by itself. ':' is in no principal's name,
# so no caller can pass for it (the direct-database admin's actor has one too).
EXPIRY_SWEEPER = Principal("ketch:expiry", PrincipalKind.SERVICE, Role.ADMIN, "none")


class RegistryService:
    """The registry use cases over one :class:`RegistryStore`. Task-safe on one loop.

    Args:
        store: The registry store.
        poll_interval: Seconds a caught-up watcher waits before looking for events that
            other replicas committed.
    """

    def __init__(self, store: RegistryStore, *, poll_interval: float = 0.15) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.signal = AuditSignal()

    # -------------------------------------------------------------- models

    async def create_model(
        self,
        actor: Principal,
        model_id: str,
        *,
        description: str,
        tags: dict[str, str],
        request_id: str,
    ) -> RegisteredModel:
        reg.check_model_name("model_id", model_id)
        validation.check_text("model.description", description, LIMITS.description_chars)
        reg.check_tags("model.tags", tags)
        _check_request_id(request_id)
        return await self._write(
            self.store.create_model(actor, model_id, description, tags, request_id)
        )

    async def get_model(self, name: str) -> RegisteredModel:
        return await self.store.get_model(reg.parse_model_name(name, field="name"))

    async def list_models(self, page_size: int, page_token: str) -> Page:
        return await self.store.list_models(validation.check_page_size(page_size), page_token)

    async def update_model(
        self, actor: Principal, name: str, fields: dict[str, Any], mask: Sequence[str], etag: str
    ) -> RegisteredModel:
        model = reg.parse_model_name(name, field="model.name")
        changes = _masked(fields, mask, field="model")
        _check_changes("model", changes)
        return await self._write(self.store.update_model(actor, model, changes, etag))

    # ------------------------------------------------------------ versions

    async def create_version(
        self,
        actor: Principal,
        parent: str,
        source_run: str,
        source_path: str,
        *,
        description: str,
        tags: dict[str, str],
        request_id: str,
    ) -> ModelVersion:
        model = reg.parse_model_name(parent, field="parent")
        run_id = parse_name(source_run, RUN, field="source_run")
        check_artifact_path(source_path.rstrip("/"), field="source_path")
        validation.check_text("description", description, LIMITS.description_chars)
        reg.check_tags("tags", tags)
        _check_request_id(request_id)
        return await self._write(
            self.store.create_version(
                actor,
                model,
                run_id,
                source_path.rstrip("/"),
                description=description,
                tags=tags,
                request_id=request_id,
            )
        )

    async def get_version(self, name: str) -> ModelVersion:
        return await self.store.get_version(*reg.parse_version_name(name, field="name"))

    async def list_versions(
        self, parent: str, stage: Stage | None, page_size: int, page_token: str
    ) -> Page:
        model = reg.parse_model_name(parent, field="parent")
        size = validation.check_page_size(page_size)
        return await self.store.list_versions(model, stage, size, page_token)

    async def update_version(
        self, actor: Principal, name: str, fields: dict[str, Any], mask: Sequence[str], etag: str
    ) -> ModelVersion:
        model, version = reg.parse_version_name(name, field="model_version.name")
        changes = _masked(fields, mask, field="model_version")
        _check_changes("model_version", changes)
        return await self._write(self.store.update_version(actor, model, version, changes, etag))

    async def resolve(self, uri: str) -> ModelVersion:
        """The version a model URI names (see :func:`reg.parse_model_uri`)."""
        return await self.store.resolve(reg.parse_model_uri(uri))

    # ------------------------------------------------------------- aliases

    async def set_alias(
        self, actor: Principal, model: str, alias: str, version: int, etag: str
    ) -> ModelVersion:
        name = reg.parse_model_name(model, field="model")
        reg.check_alias("alias", alias)
        number = reg.check_version_number("version", version)
        return await self._write(self.store.set_alias(actor, name, alias, number, etag))

    async def delete_alias(
        self, actor: Principal, model: str, alias: str, etag: str
    ) -> RegisteredModel:
        name = reg.parse_model_name(model, field="model")
        reg.check_alias("alias", alias)
        return await self._write(self.store.delete_alias(actor, name, alias, etag))

    # ------------------------------------------------------------- policies

    async def get_policy(self, name: str) -> tuple[str, list[StagePolicy]]:
        """(model, the effective policy of every target stage)."""
        model = reg.parse_model_name(name.removesuffix("/policy"), field="name")
        return model, await self.store.get_policies(model)

    async def set_policy(
        self, actor: Principal, model: str, policy: StagePolicy
    ) -> tuple[str, list[StagePolicy]]:
        require_role(actor, Role.ADMIN, "SetStagePolicy")
        name = reg.parse_model_name(model, field="model")
        reg.check_stage_policy(policy)
        return name, await self._write(self.store.set_policy(actor, name, policy))

    # ---------------------------------------------------------- transitions

    async def request_transition(
        self,
        actor: Principal,
        model_version: str,
        target: Stage,
        *,
        comment: str,
        request_id: str,
        etag: str,
    ) -> TransitionRequest:
        """Ask to move a version into ``target`` (applied at once when the policy needs
        no approvals and its gates pass). Refusals are audited as TRANSITION_DENIED."""
        model, version = reg.parse_version_name(model_version, field="model_version")
        validation.check_text("comment", comment, LIMITS.comment_chars)
        _check_request_id(request_id)
        attempt = {"attempt": "REQUEST", "target_stage": target.value}
        work = self.store.request_transition(
            actor,
            model,
            version,
            target,
            comment=comment,
            request_id=request_id,
            etag=etag,
        )
        return await self._attempt(
            actor, model, model_version, attempt, lambda: work, request_id=request_id
        )

    async def approve(
        self, actor: Principal, name: str, comment: str, evidence: Evidence
    ) -> TransitionRequest:
        """Approve as ``actor``; the approval that completes the policy applies the move.

        Raises:
            FailedPrecondition: the move could not apply (the request is now FAILED) or
                the request expired (now EXPIRED), among the other refusals.
        """
        validation.check_text("comment", comment, LIMITS.comment_chars)
        reg.check_evidence(evidence)
        return await self._vote(actor, name, Decision.APPROVE, comment, evidence)

    async def reject(self, actor: Principal, name: str, reason: str) -> TransitionRequest:
        validation.check_text("reason", reason, LIMITS.comment_chars, required=True)
        return await self._vote(actor, name, Decision.REJECT, reason, Evidence())

    async def _vote(
        self, actor: Principal, name: str, decision: Decision, comment: str, evidence: Evidence
    ) -> TransitionRequest:
        request_id = _parse_request_name(name)
        model = await self.store.model_of_request(request_id)
        resource = f"{REQUESTS}/{request_id}"
        method = "Approve" if decision is Decision.APPROVE else "Reject"

        async def work() -> Outcome:
            require_role(actor, Role.APPROVER, method)
            return await self.store.vote(
                actor, request_id, decision, comment, evidence, model=model
            )

        attempt = {"attempt": decision.value, "request": resource}
        outcome = await self._attempt(actor, model, resource, attempt, work)
        return _reported(outcome)

    async def cancel(self, actor: Principal, name: str, reason: str) -> TransitionRequest:
        validation.check_text("reason", reason, LIMITS.comment_chars)
        request_id = _parse_request_name(name)
        return _reported(await self._write(self.store.cancel(actor, request_id, reason)))

    async def expire_due(self) -> list[TransitionRequest]:
        """Expire the pending requests past their expire time, as ``ketch:expiry``, so
        that watchers see each expiry when it is due rather than when someone next acts
        on the request. Safe on every replica at once (each expiry is recorded once)."""
        expired = await self.store.expire_due(EXPIRY_SWEEPER)
        if expired:
            self.signal.notify()
        return expired

    async def transition_stage(
        self, actor: Principal, name: str, target: Stage, comment: str, etag: str
    ) -> ModelVersion:
        """An admin's direct move (no request); audited as ``direct``."""
        model, version = reg.parse_version_name(name, field="name")
        validation.check_text("comment", comment, LIMITS.comment_chars)

        async def work() -> ModelVersion:
            require_role(actor, Role.ADMIN, "TransitionStage")
            return await self.store.transition_stage(actor, model, version, target, comment, etag)

        attempt = {"attempt": "DIRECT", "target_stage": target.value}
        return await self._attempt(actor, model, name, attempt, work)

    async def get_request(self, name: str) -> TransitionRequest:
        return await self.store.get_request(_parse_request_name(name))

    async def list_requests(
        self, model: str, state: TransitionState | None, page_size: int, page_token: str
    ) -> Page:
        name = reg.parse_model_name(model, field="model") if model else ""
        size = validation.check_page_size(page_size)
        return await self.store.list_requests(name, state, size, page_token)

    # ---------------------------------------------------------------- audit

    async def audit_log(
        self,
        caller: Principal,
        model: str,
        actions: Sequence[Action],
        page_size: int,
        page_token: str,
    ) -> Page:
        """Audit events in order; identity events (tokens, roles) for admins only."""
        name = reg.parse_model_name(model, field="model") if model else ""
        size = validation.check_page_size(page_size)
        return await self.store.audit_log(
            name, actions, size, page_token, identity=_sees_identity(caller)
        )

    async def watch(
        self,
        caller: Principal,
        from_cursor: str,
        models: Sequence[str],
        actions: Sequence[Action],
        *,
        start_at_end: bool = False,
    ) -> AsyncIterator[AuditEvent]:
        """Events after ``from_cursor`` (or from the first, or after the latest with
        ``start_at_end``), then new ones as they commit, forever. Gap-free and
        duplicate-free because sequence numbers are allocated in commit order.
        Identity events (tokens, roles) are an admin's to see: others' streams skip
        them, as ``ListTokens`` is an admin's call."""
        if len(models) > LIMITS.watch_models:
            raise ResourceExhausted(
                "watch_models", f"watch at most {LIMITS.watch_models} models per stream"
            )
        names = [reg.parse_model_name(m, field=f"models[{i}]") for i, m in enumerate(models)]
        if from_cursor:
            after = parse_cursor(from_cursor)
        else:
            after = await self.store.last_sequence() if start_at_end else 0
        while True:
            seen = self.signal.version
            events = await self.store.read_events(
                after, names, actions, WATCH_BATCH, identity=_sees_identity(caller)
            )
            for event in events:
                yield event
                after = event.seq
            if len(events) < WATCH_BATCH:
                await self.signal.wait(seen, self.poll_interval)

    # ------------------------------------------------------------- plumbing

    async def _write(self, work: Awaitable[T]) -> T:
        """Run a write, then wake this process's watchers."""
        try:
            return await work
        finally:
            self.signal.notify()

    async def _attempt(
        self,
        actor: Principal,
        model: str,
        resource: str,
        attempt: dict[str, Any],
        work: Callable[[], Awaitable[T]],
        *,
        request_id: str = "",
    ) -> T:
        """Run a stage-move attempt; record it as denied when it is refused."""
        try:
            return await self._write(work())
        except _DENIALS as exc:
            await self._record_denied(actor, model, resource, attempt, exc, request_id)
            raise

    async def _record_denied(self, actor, model, resource, attempt, exc, request_id) -> None:
        try:
            await self.store.record_denied(actor, model, resource, attempt, exc, request_id)
        except KetchError as failure:  # the refusal matters more than its record
            log.warning("could not record a denied %s on %s: %s", attempt, resource, failure)
        self.signal.notify()


def _reported(outcome: Outcome) -> TransitionRequest:
    """The request, or the failure recorded with it (already committed and audited)."""
    if outcome.failure is not None:
        raise outcome.failure
    return outcome.request


def _parse_request_name(name: str) -> str:
    return parse_name(name, REQUESTS, field="name")


def _check_request_id(request_id: str) -> None:
    validation.check_text("request_id", request_id, validation.LIMITS.request_id_chars)


def _masked(fields: dict[str, Any], mask: Sequence[str], *, field: str) -> dict[str, Any]:
    """The subset of ``fields`` named by an update mask (AIP-134)."""
    allowed = ("description", "tags")
    if not mask:
        raise InvalidArgument("update_mask", f"name the fields to change: {', '.join(allowed)}")
    unknown = [path for path in mask if path not in allowed]
    if unknown:
        raise InvalidArgument(
            "update_mask",
            f"{field}.{unknown[0]} cannot be updated; updatable: {', '.join(allowed)}",
        )
    return {path: fields[path] for path in mask}


def _check_changes(field: str, changes: dict[str, Any]) -> None:
    if "description" in changes:
        validation.check_text(
            f"{field}.description", changes["description"], LIMITS.description_chars
        )
    if "tags" in changes:
        reg.check_tags(f"{field}.tags", changes["tags"])


def _sees_identity(caller: Principal) -> bool:
    """Whether ``caller`` may see identity events: who holds which tokens and roles is
    what ListTokens shows, and that is an admin's call."""
    return caller.role >= Role.ADMIN
