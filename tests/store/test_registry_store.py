"""The registry contract on every backend (SQLite and PostgreSQL), through the service
(validation, denial records) over the store (locking, audit numbering): versions,
URIs, lineage, policies and votes, gates, expiry, etags, idempotency, concurrent
promotions across two replicas, and the watch stream's cursor."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time

import pytest
from ketch_server.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from ketch_server.domain.identity import ANONYMOUS, Principal, PrincipalKind, Role
from ketch_server.domain.lineage import Direction, NodeKind, NodeRef
from ketch_server.domain.models import MetricColumns, RunEnvironment, RunSource, etag_of
from ketch_server.domain.pagination import encode_token, fingerprint
from ketch_server.domain.registry import (
    Action,
    Evidence,
    Stage,
    TransitionState,
    parse_model_uri,
    policy_with,
)
from ketch_server.services.registry import RegistryService
from ketch_server.store.direct_pg import DirectReader
from ketch_server.store.engine import create_engine, upgrade_schema
from ketch_server.store.inline_sqlite import InlineReader
from ketch_server.store.lineage import LineageStore
from ketch_server.store.registry import RegistryStore
from ketch_server.store.registry_sql import RESOLVE, selector
from ketch_server.store.schema import artifacts, blobs
from sqlalchemy import text, update

ALICE = Principal("alice", PrincipalKind.USER, Role.WRITER, "token")
BOB = Principal("bob", PrincipalKind.USER, Role.APPROVER, "token")
CAROL = Principal("carol", PrincipalKind.USER, Role.APPROVER, "token")
DAVE = Principal("dave", PrincipalKind.USER, Role.APPROVER, "token")
WALT = Principal("walt", PrincipalKind.USER, Role.WRITER, "token")
ERIN = Principal("erin", PrincipalKind.USER, Role.ADMIN, "token")
MANIFEST = "models/churn/MLmodel.json"
NO_EVIDENCE = Evidence()


class Registry:
    """A migrated database with a registry service (one "replica") and helpers."""

    def __init__(self, engine, experiment_id: str = "") -> None:
        self.engine = engine
        self.tracking = LineageStore(engine)
        self.store = RegistryStore(engine)
        self.service = RegistryService(self.store, poll_interval=0.05)
        self.experiment_id = experiment_id

    async def run(self, metrics: dict[str, float] | None = None) -> str:
        run = await self.tracking.create_run(
            self.experiment_id,
            display_name="train",
            parent_run_id=None,
            user="u",
            params_={},
            tags_={},
            source=RunSource(),
            environment=RunEnvironment(),
            request_id=None,
            start_time=None,
        )
        if metrics:
            await self.log(run.id, metrics)
        return run.id

    async def log(self, run_id: str, metrics: dict[str, float]) -> None:
        keys = tuple(metrics)
        steps = [0] * len(keys)
        batch = MetricColumns(keys, list(range(len(keys))), steps, [], list(metrics.values()))
        await self.tracking.log_metrics(run_id, batch)

    async def artifact(self, run_id: str, path: str = MANIFEST, sha: str = "a" * 64) -> None:
        """An uploaded artifact, as CommitUpload leaves it."""
        async with self.engine.begin() as conn:
            blob = {"sha256": sha, "size": 1, "storage_key": sha, "create_time": 1}
            await conn.execute(self.store._insert(blobs).values(blob).on_conflict_do_nothing())
            row = {"run_id": run_id, "path": path, "sha256": sha, "size": 1, "create_time": 1}
            await conn.execute(artifacts.insert().values(row))

    async def version(self, *, metrics=None, stage: Stage | None = None, model="churn") -> int:
        run_id = await self.run(metrics)
        await self.artifact(run_id)
        v = await self.service.create_version(
            ANONYMOUS,
            f"models/{model}",
            f"runs/{run_id}",
            "models/churn",
            description="",
            tags={},
            request_id="",
        )
        if stage is not None:
            await self.service.transition_stage(ANONYMOUS, v.resource, stage, "setup", "")
        return v.version

    async def model(self, name: str = "churn", **policies) -> None:
        await self.service.create_model(ANONYMOUS, name, description="", tags={}, request_id="")
        for stage, fields in policies.items():
            await self.service.set_policy(
                ANONYMOUS, name, policy_with(Stage.parse(stage), **fields)
            )

    async def request(self, actor, version: int, target: Stage, **kw):
        return await self.service.request_transition(
            actor,
            vname(version),
            target,
            comment=kw.get("comment", ""),
            request_id=kw.get("request_id", ""),
            etag=kw.get("etag", ""),
        )

    async def events(self, model: str = "churn", *actions: Action) -> list:
        return (await self.store.audit_log(model, list(actions), 1000, "")).items


async def new_registry(db_url: str) -> Registry:
    engine = create_engine(db_url)
    await upgrade_schema(engine)
    reg = Registry(engine)
    try:
        exp = await reg.tracking.get_experiment_by_name("registry")
    except NotFound:
        exp = await reg.tracking.create_experiment("registry", "")
    reg.experiment_id = exp.id
    return reg


@pytest.fixture
async def reg(db_url):
    r = await new_registry(db_url)
    yield r
    await r.engine.dispose()


def vname(version: int, model: str = "churn") -> str:
    return f"models/{model}/versions/{version}"


def reasons(events) -> list[str]:
    return [json.loads(e.after).get("reason") for e in events]


# ----------------------------------------------------------------- versions


async def test_versions_uris_aliases_and_lineage(reg):
    await reg.model()
    again = await reg.service.create_model(
        ANONYMOUS, "churn-2", description="d", tags={"team": "ads"}, request_id="rq-1"
    )
    retried = await reg.service.create_model(
        ANONYMOUS, "churn-2", description="other", tags={}, request_id="rq-1"
    )
    assert retried == again and retried.tags == {"team": "ads"}
    with pytest.raises(AlreadyExists):
        await reg.service.create_model(ANONYMOUS, "churn", description="", tags={}, request_id="")

    run_id = await reg.run()
    await reg.artifact(run_id)
    v1 = await reg.service.create_version(
        ALICE, "models/churn", run_id, "models/churn", description="", tags={}, request_id="v-1"
    )
    same = await reg.service.create_version(
        ALICE, "models/churn", run_id, MANIFEST, description="", tags={}, request_id="v-1"
    )
    assert (v1.version, v1.source_path, v1.digest, v1.creator) == (1, MANIFEST, "a" * 64, "alice")
    assert same == v1  # the retry created nothing
    v2 = await reg.version(stage=Stage.STAGING)
    v3 = await reg.version(stage=Stage.STAGING)
    assert (v2, v3) == (2, 3)
    await reg.service.set_alias(ALICE, "models/churn", "champion", 2, "")
    await reg.service.set_alias(ALICE, "models/churn", "champion", 3, "")  # moves it
    await reg.service.set_alias(ALICE, "models/churn", "candidate", 3, "")

    resolve = reg.service.resolve
    assert (await resolve("models:/churn/1")).version == 1
    by_alias = await resolve("models:/churn@champion")
    assert (by_alias.version, by_alias.aliases) == (3, ("candidate", "champion"))
    assert (await resolve("models:/churn/staging")).version == 3  # entered Staging last
    assert (await resolve("models:/churn/Staging")).stage is Stage.STAGING
    assert (await resolve("models:/churn/latest")).version == 3
    assert (await resolve("models/churn/versions/2")).aliases == ()
    for uri, message in [
        ("models:/churn@nobody", "no alias 'nobody'"),
        ("models:/churn/Production", "no version in Production"),
        ("models:/churn/9", "no version 9"),
        ("models:/ghost/1", "'ghost' not found"),
    ]:
        with pytest.raises(NotFound, match=message):
            await resolve(uri)

    model = await reg.service.get_model("models/churn")
    assert model.aliases == {"candidate": 3, "champion": 3} and model.latest_version == 3
    page = await reg.service.list_versions("models/churn", None, 2, "")
    assert [v.version for v in page.items] == [3, 2]
    rest = await reg.service.list_versions("models/churn", None, 2, page.next_page_token)
    assert [v.version for v in rest.items] == [1] and rest.next_page_token == ""
    staged = await reg.service.list_versions("models/churn", Stage.STAGING, 10, "")
    assert [v.version for v in staged.items] == [3, 2]
    forged = encode_token(fingerprint("model_versions", "churn", ""), ["3 OR 1=1"])
    with pytest.raises(InvalidArgument):
        await reg.service.list_versions("models/churn", None, 2, forged)

    nodes, edges = await reg.tracking.get_lineage(
        NodeRef(NodeKind.RUN, run_id), Direction.DOWN, 2, 10
    )
    assert [(n.kind, n.ref, n.exists) for n in nodes[1:]] == [
        (NodeKind.MODEL_VERSION, "churn/1", True)
    ]
    assert edges[0].context == "registered"

    with pytest.raises(NotFound, match="no artifact"):
        await reg.service.create_version(
            ALICE, "models/churn", run_id, "models/other", description="", tags={}, request_id=""
        )
    actions = [e.action for e in await reg.events()]
    assert actions.count(Action.VERSION_REGISTERED) == 3
    assert actions.count(Action.ALIAS_SET) == 3


async def resolves_through_the_engine(reg):
    """A model with three Staging versions and an alias; then, for every kind of model
    URI (one that matches nothing too), the resolve statement, its parameters and the
    rows the engine's own path gives: what the direct readers must give as well."""
    await reg.model()
    for _ in range(3):
        await reg.version(stage=Stage.STAGING)
    await reg.service.set_alias(ANONYMOUS, "models/churn", "champion", 2, "")
    uris = ["models:/churn/1", "models:/churn@champion", "models:/churn/Staging"]
    uris += ["models:/churn/latest", "models:/churn@nobody"]
    for uri in uris:
        kind, params = selector(parse_model_uri(uri))
        async with reg.engine.connect() as conn:
            expected = [dict(r) for r in (await conn.execute(RESOLVE[kind], params)).mappings()]
        yield uri, RESOLVE[kind], params, expected


# SQLite answers resolve inline on the loop's thread (store/inline_sqlite.py); the async
# path stays the fallback. Both must give the same rows and see every commit at once.
async def test_inline_sqlite_resolve_matches_the_async_path_and_sees_each_move(sqlite_url):
    reg = await new_registry(sqlite_url)
    try:
        inline = InlineReader.for_engine(reg.engine)
        assert inline is not None and reg.store._inline is not None
        async for uri, statement, params, expected in resolves_through_the_engine(reg):
            assert inline.rows(statement, params) == expected, uri
        for target in (3, 1, 2):  # each move is visible to the very next resolve
            await reg.service.set_alias(ANONYMOUS, "models/churn", "champion", target, "")
            assert (await reg.service.resolve("models:/churn@champion")).version == target
        inline.close()
    finally:
        await reg.engine.dispose()


async def test_a_locked_sqlite_database_sends_resolve_to_the_waiting_async_path(sqlite_url):
    reg = await new_registry(sqlite_url)
    try:
        await reg.model()
        await reg.version()
        await reg.service.set_alias(ANONYMOUS, "models/churn", "champion", 1, "")
        await reg.engine.dispose()  # WAL connections share the file; let one take it alone
        holder = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE model_aliases SET update_time = update_time")
        kind, params = selector(parse_model_uri("models:/churn@champion"))
        assert InlineReader.for_engine(reg.engine).rows(RESOLVE[kind], params) is None
        pending = asyncio.create_task(reg.service.resolve("models:/churn@champion"))
        await asyncio.sleep(0.3)
        assert not pending.done()  # waiting on the lock, not failed
        holder.execute("COMMIT")
        holder.close()
        assert (await asyncio.wait_for(pending, 30)).version == 1
        assert (await reg.service.resolve("models:/churn@champion")).version == 1  # inline again
    finally:
        await reg.engine.dispose()


# On PostgreSQL resolve goes straight through asyncpg (store/direct_pg.py), falling back
# to the engine's pool when it cannot answer.
@pytest.mark.postgres
async def test_direct_postgres_resolve_matches_the_pool_and_survives_a_lost_connection(
    postgres_url,
):
    reg = await new_registry(postgres_url)
    try:
        direct = reg.store._direct
        assert direct is not None
        async for uri, statement, params, expected in resolves_through_the_engine(reg):
            assert await direct.rows(statement, params) == expected, uri

        # The server drops the reader's connection: that read falls back to the pool,
        # and the next one opens a new connection.
        (conn,) = direct._idle
        async with reg.engine.connect() as admin:
            pid = conn.get_server_pid()
            await admin.execute(text(f"SELECT pg_terminate_backend({pid})"))
        await asyncio.sleep(0.1)
        kind, params = selector(parse_model_uri("models:/churn@champion"))
        assert await direct.rows(RESOLVE[kind], params) is None
        for target in (3, 1):
            await reg.service.set_alias(ANONYMOUS, "models/churn", "champion", target, "")
            assert (await reg.service.resolve("models:/churn@champion")).version == target
        (fresh,) = direct._idle
        assert fresh.get_server_pid() != pid

        await reg.engine.dispose()  # the reader's connections close with the engine
        assert not direct._idle and fresh.is_closed()
        assert await direct.rows(RESOLVE[kind], params) is None  # and it opens no more
        assert not direct._idle
    finally:
        await reg.engine.dispose()


async def test_direct_reader_answers_none_quickly_when_postgres_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none")
    direct = DirectReader.for_engine(engine)
    kind, params = selector(parse_model_uri("models:/churn@champion"))
    started = time.monotonic()
    assert await direct.rows(RESOLVE[kind], params) is None
    assert direct._next_connect > time.monotonic()  # no new attempt for a while
    assert await direct.rows(RESOLVE[kind], params) is None
    assert time.monotonic() - started < 3
    await engine.dispose()


def test_direct_readers_serve_only_their_own_backend(tmp_path):
    assert DirectReader.for_engine(create_engine(f"sqlite:///{tmp_path}/k.db")) is None
    assert DirectReader.for_engine(create_engine("postgresql+asyncpg://u@h/db")) is not None
    assert InlineReader.for_engine(create_engine("sqlite+aiosqlite:///:memory:")) is None
    assert InlineReader.for_engine(create_engine("postgresql+asyncpg://u@h/db")) is None
    assert InlineReader.for_engine(create_engine(f"sqlite:///{tmp_path}/k.db")) is not None


# Concurrent resolves of one URI share a query that began after each of them arrived
# (store/flights.py). The inline SQLite reader is switched off so both backends take
# that path: a move that committed must be seen by every resolve that starts after it,
# even while a shared query that began before it is still running.
async def test_resolves_sharing_a_query_never_miss_a_committed_move(db_url):
    reg = await new_registry(db_url)
    try:
        reg.store._inline = None
        await reg.model()
        for _ in range(3):
            await reg.version()
        await reg.service.set_alias(ANONYMOUS, "models/churn", "champion", 1, "")
        calls, stop = 0, asyncio.Event()

        async def storm() -> None:
            nonlocal calls
            while not stop.is_set():
                found = await reg.service.resolve("models:/churn@champion")
                assert found.version in (1, 2, 3) and "champion" in found.aliases
                calls += 1

        storms = [asyncio.create_task(storm()) for _ in range(20)]
        await asyncio.sleep(0.05)
        for target in (2, 3, 1, 3, 2, 1, 2):
            await reg.service.set_alias(ANONYMOUS, "models/churn", "champion", target, "")
            assert (await reg.service.resolve("models:/churn@champion")).version == target
        stop.set()
        await asyncio.gather(*storms)
        assert reg.store._resolves.flown < calls  # shared, yet never stale
        with pytest.raises(NotFound, match="no alias 'nobody'"):
            await asyncio.gather(*(reg.service.resolve("models:/churn@nobody") for _ in range(5)))
    finally:
        await reg.engine.dispose()


def serial_alias_moves(moves, revision: int):
    """What alias moves from no aliases give one at a time: per move ``(version,
    aliases of that version after it)`` or the refusal's type; the ALIAS_SET events
    ``(mover index, alias, before, after)``; the final aliases; the final revision."""
    points: dict[str, int] = {}
    outcomes: list = []
    events = []
    for k, (alias, version, etag) in enumerate(moves):
        if etag and etag != etag_of(revision):
            outcomes.append(Aborted)
        elif version not in (1, 2, 3):
            outcomes.append(NotFound)
        else:
            if points.get(alias) != version:
                events.append((f"ci-{k}", alias, points.get(alias), version))
                points[alias] = version
                revision += 1
            outcomes.append((version, tuple(sorted(a for a, v in points.items() if v == version))))
    return outcomes, events, points, revision


async def test_concurrent_alias_moves_are_grouped_with_their_serial_outcomes(db_url):
    """Alias moves of one model queued behind a commit share the next transaction
    (store/group_commit.py); each must still get what it would have got alone, in
    submission order: its version and aliases, a refusal of its own (missing version,
    stale etag), or nothing changed (already there), one audit event per real move,
    and an etag that counts every real move, across groups."""
    reg = await new_registry(db_url)
    try:
        await reg.model()
        for _ in range(3):
            await reg.version()
        start = await reg.service.get_model("churn")
        seq0 = await reg.store.last_sequence()
        moves = [(f"a{i % 12}", 1 + (i * 7) % 3, "") for i in range(48)]
        moves[5] = moves[4]  # the same move twice in a row: the second changes nothing
        moves.insert(20, ("a1", 99, ""))  # no such version
        moves.append(("a0", 1, start.etag))  # stale by then: earlier moves changed the model
        # A move guarded by the etag the model has just before it, in a later group.
        _, events_before, _, revision = serial_alias_moves(moves[:33], start.revision)
        moves.insert(33, ("a5", 3, etag_of(revision)))
        expected, expected_events, points, revision = serial_alias_moves(moves, start.revision)
        assert events_before and expected[33] != Aborted

        tasks = []
        for k, (alias, version, etag) in enumerate(moves):
            actor = Principal(f"ci-{k}", PrincipalKind.SERVICE, Role.WRITER, "token")
            call = reg.service.set_alias(actor, "models/churn", alias, version, etag)
            tasks.append(asyncio.create_task(call))
            if k % 10 == 9:  # the next moves arrive while a group is committing
                await asyncio.sleep(0.002)
        results = await asyncio.gather(*tasks, return_exceptions=True)

        for k, (want, got) in enumerate(zip(expected, results, strict=True)):
            if isinstance(want, type):
                assert isinstance(got, want), (k, got)
            else:
                assert not isinstance(got, Exception), (k, got)
                assert (got.version, got.aliases) == want, k
        assert 1 < reg.store._alias_moves.groups < len(moves)  # they did share transactions

        events = [e for e in await reg.events("churn", Action.ALIAS_SET) if e.seq > seq0]
        assert [e.seq for e in events] == list(range(seq0 + 1, seq0 + 1 + len(events)))
        got_events = [
            (
                e.actor,
                json.loads(e.after)["alias"],
                json.loads(e.before)["version"],
                json.loads(e.after)["version"],
            )
            for e in events
        ]
        assert got_events == expected_events
        assert (await reg.service.get_model("churn")).revision == revision
        for alias, version in points.items():
            assert (await reg.service.resolve(f"models:/churn@{alias}")).version == version

        missing = [reg.service.set_alias(ANONYMOUS, "models/nope", "a", 1, "") for _ in range(3)]
        for refused in await asyncio.gather(*missing, return_exceptions=True):
            assert isinstance(refused, NotFound) and "nope" in str(refused)
    finally:
        await reg.engine.dispose()


async def test_etags_guard_models_aliases_and_versions(reg):
    await reg.model()
    v = await reg.version()
    model = await reg.service.get_model("churn")
    updated = await reg.service.update_model(
        ALICE, "models/churn", {"description": "new"}, ["description"], model.etag
    )
    assert updated.description == "new" and updated.etag != model.etag
    with pytest.raises(Aborted):
        await reg.service.update_model(
            ALICE, "churn", {"description": "x"}, ["description"], model.etag
        )
    with pytest.raises(Aborted):
        await reg.service.set_alias(ALICE, "churn", "champion", v, model.etag)
    version = await reg.service.get_version(vname(v))
    await reg.service.update_version(ALICE, vname(v), {"tags": {"k": "v"}}, ["tags"], version.etag)
    with pytest.raises(Aborted):
        await reg.request(ALICE, v, Stage.STAGING, etag=version.etag)
    denied = await reg.events("churn", Action.TRANSITION_DENIED)
    assert reasons(denied) == ["ABORTED"]


# ------------------------------------------------------------ transitions


async def test_approvals_self_approval_roles_votes_and_final_states(reg):
    await reg.model(production={"approvals_required": 2})
    v = await reg.version(stage=Stage.STAGING)
    req = await reg.request(ALICE, v, Stage.PRODUCTION, comment="ship it")
    assert (req.state, req.approvals_required, req.requester) == (
        TransitionState.PENDING,
        2,
        "alice",
    )
    with pytest.raises(FailedPrecondition) as pending:
        await reg.request(WALT, v, Stage.PRODUCTION)
    assert pending.value.reason == "REQUEST_PENDING"

    name = req.resource
    with pytest.raises(PermissionDenied) as self_vote:
        await reg.service.approve(ALICE, name, "", NO_EVIDENCE)
    assert self_vote.value.reason == "ROLE_REQUIRED"  # a writer cannot approve at all
    approver_alice = Principal("alice", PrincipalKind.USER, Role.APPROVER, "token")
    with pytest.raises(PermissionDenied) as self_vote:
        await reg.service.approve(approver_alice, name, "", NO_EVIDENCE)
    assert self_vote.value.reason == "SELF_APPROVAL"
    with pytest.raises(PermissionDenied) as no_role:
        await reg.service.approve(WALT, name, "", NO_EVIDENCE)
    assert no_role.value.reason == "ROLE_REQUIRED"

    evidence = Evidence("https://ci/1", {"accuracy": "0.93"})
    first = await reg.service.approve(BOB, name, "looks good", evidence)
    assert (first.state, first.approvals) == (TransitionState.PENDING, 1)
    assert first.votes[0].evidence == evidence and first.votes[0].digest == "a" * 64
    with pytest.raises(AlreadyExists) as twice:
        await reg.service.approve(BOB, name, "again", NO_EVIDENCE)
    assert twice.value.reason == "ALREADY_VOTED"
    applied = await reg.service.approve(CAROL, name, "", NO_EVIDENCE)
    assert (applied.state, applied.approvals) == (TransitionState.APPLIED, 2)
    assert (await reg.service.resolve("models:/churn/production")).version == v
    with pytest.raises(FailedPrecondition) as final:
        await reg.service.approve(DAVE, name, "", NO_EVIDENCE)
    assert final.value.reason == "REQUEST_FINAL"

    denied = await reg.events("churn", Action.TRANSITION_DENIED)
    assert reasons(denied) == [
        "REQUEST_PENDING",
        "ROLE_REQUIRED",
        "SELF_APPROVAL",
        "ROLE_REQUIRED",
        "ALREADY_VOTED",
        "REQUEST_FINAL",
    ]
    assert [e.actor for e in denied] == ["walt", "alice", "alice", "walt", "bob", "dave"]

    # A policy may restrict approvals to admins; admins always count.
    await reg.service.set_policy(
        ANONYMOUS,
        "churn",
        policy_with(Stage.STAGING, approvals_required=1, approver_roles=(Role.ADMIN,)),
    )
    v2 = await reg.version()
    req2 = await reg.request(ALICE, v2, Stage.STAGING)
    with pytest.raises(PermissionDenied, match="needs admin"):
        await reg.service.approve(BOB, req2.resource, "", NO_EVIDENCE)
    assert (
        await reg.service.approve(ERIN, req2.resource, "", NO_EVIDENCE)
    ).state is TransitionState.APPLIED

    v3 = await reg.version(stage=Stage.STAGING)
    req3 = await reg.request(ALICE, v3, Stage.PRODUCTION)
    rejected = await reg.service.reject(BOB, req3.resource, "accuracy regressed")
    assert (rejected.state, rejected.resolution) == (TransitionState.REJECTED, "accuracy regressed")
    with pytest.raises(FailedPrecondition, match="rejected"):
        await reg.service.approve(CAROL, req3.resource, "", NO_EVIDENCE)
    req4 = await reg.request(ALICE, v3, Stage.PRODUCTION)
    with pytest.raises(PermissionDenied) as not_mine:
        await reg.service.cancel(WALT, req4.resource, "")
    assert not_mine.value.reason == "NOT_REQUESTER"
    cancelled = await reg.service.cancel(ALICE, req4.resource, "wrong version")
    assert cancelled.state is TransitionState.CANCELLED


async def test_illegal_moves_and_direct_moves(reg):
    await reg.model(production={"approvals_required": 0})
    v = await reg.version()
    with pytest.raises(FailedPrecondition) as illegal:
        await reg.request(ALICE, v, Stage.PRODUCTION)  # NONE -> PRODUCTION
    assert illegal.value.reason == "ILLEGAL_TRANSITION"
    with pytest.raises(PermissionDenied):
        await reg.service.transition_stage(BOB, vname(v), Stage.PRODUCTION, "", "")
    moved = await reg.service.transition_stage(ERIN, vname(v), Stage.PRODUCTION, "hotfix", "")
    assert moved.stage is Stage.PRODUCTION
    changed = (await reg.events("churn", Action.STAGE_CHANGED))[-1]
    assert json.loads(changed.after) == {"stage": "PRODUCTION", "direct": True, "comment": "hotfix"}
    assert changed.actor == "erin"
    # A policy may allow more moves.
    await reg.service.set_policy(
        ANONYMOUS,
        "churn",
        policy_with(Stage.PRODUCTION, approvals_required=0, allowed_from=(Stage.NONE,)),
    )
    v2 = await reg.version()
    assert (await reg.request(ALICE, v2, Stage.PRODUCTION)).state is TransitionState.APPLIED
    archived = await reg.service.get_version(vname(v))
    assert archived.stage is Stage.ARCHIVED  # the default: the holder is archived


async def test_gates_block_the_move_and_are_named(reg):
    gates = ("metrics.accuracy >= 0.9", "metrics.latency_ms < 50")
    await reg.model(staging={"gates": gates}, production={"approvals_required": 1, "gates": gates})
    v = await reg.version(metrics={"accuracy": 0.8, "latency_ms": 20})
    with pytest.raises(FailedPrecondition) as failing:
        await reg.request(ALICE, v, Stage.STAGING)
    assert failing.value.reason == "GATES_FAILED"
    assert failing.value.metadata["gates"] == "metrics.accuracy >= 0.9"
    version = await reg.service.get_version(vname(v))
    assert version.stage is Stage.NONE
    await reg.log(version.source_run_id, {"accuracy": 0.95})
    assert (await reg.request(ALICE, v, Stage.STAGING)).state is TransitionState.APPLIED
    # Gates are checked again when the approvals are in.
    req = await reg.request(ALICE, v, Stage.PRODUCTION)
    await reg.log(version.source_run_id, {"latency_ms": 80})
    with pytest.raises(FailedPrecondition) as late:
        await reg.service.approve(BOB, req.resource, "", NO_EVIDENCE)
    assert late.value.metadata["gates"] == "metrics.latency_ms < 50"
    failed = await reg.service.get_request(req.resource)
    assert failed.state is TransitionState.FAILED and "latency_ms" in failed.resolution
    assert (await reg.service.get_version(vname(v))).stage is Stage.STAGING
    actions = [e.action for e in await reg.events()]
    assert Action.TRANSITION_FAILED in actions and Action.TRANSITION_DENIED in actions


async def test_digest_change_fails_the_request(reg):
    await reg.model(production={"approvals_required": 1})
    v = await reg.version(stage=Stage.STAGING)
    req = await reg.request(ALICE, v, Stage.PRODUCTION)
    version = await reg.service.get_version(vname(v))
    async with reg.engine.begin() as conn:  # the manifest's content changes under it
        await conn.execute(
            reg.store._insert(blobs)
            .values(sha256="b" * 64, size=1, storage_key="b", create_time=1)
            .on_conflict_do_nothing()
        )
        await conn.execute(
            update(artifacts)
            .where(artifacts.c.run_id == version.source_run_id)
            .values(sha256="b" * 64)
        )
    with pytest.raises(FailedPrecondition) as changed:
        await reg.service.approve(BOB, req.resource, "", NO_EVIDENCE)
    assert changed.value.reason == "DIGEST_CHANGED"
    after = await reg.service.get_request(req.resource)
    assert after.state is TransitionState.FAILED and after.approvals == 1
    assert (await reg.service.get_version(vname(v))).stage is Stage.STAGING


async def test_requests_expire(reg):
    now = [1_000_000]
    reg.store.clock = lambda: now[0]
    await reg.model(production={"approvals_required": 1, "expiry_seconds": 60})
    v = await reg.version(stage=Stage.STAGING)
    req = await reg.request(ALICE, v, Stage.PRODUCTION)
    assert req.expire_time == 1_060_000
    now[0] = 1_060_000
    assert (await reg.service.get_request(req.resource)).state is TransitionState.EXPIRED
    expired = await reg.service.list_requests("churn", TransitionState.EXPIRED, 10, "")
    assert [r.id for r in expired.items] == [req.id]
    assert (await reg.service.list_requests("churn", TransitionState.PENDING, 10, "")).items == []
    with pytest.raises(FailedPrecondition) as late:
        await reg.service.approve(BOB, req.resource, "", NO_EVIDENCE)
    assert late.value.reason == "REQUEST_EXPIRED"
    with pytest.raises(FailedPrecondition) as final:  # expired for good: the same reason
        await reg.service.approve(CAROL, req.resource, "", NO_EVIDENCE)
    assert final.value.reason == "REQUEST_EXPIRED"
    assert [e.action for e in await reg.events("churn", Action.TRANSITION_EXPIRED)] == [
        Action.TRANSITION_EXPIRED
    ]
    # An expired request no longer blocks a new one.
    again = await reg.request(ALICE, v, Stage.PRODUCTION)
    assert again.state is TransitionState.PENDING


async def test_due_requests_are_expired_once_without_anyone_acting_on_them(db_url):
    """The server's sweep (RegistryService.expire_due) expires what is due, on two
    replicas at once, recording each expiry once, as ketch:expiry; requests not yet
    due, already decided or pending under a longer expiry are left alone."""
    a, b = await new_registry(db_url), await new_registry(db_url)
    try:
        now = [1_000_000]
        a.store.clock = b.store.clock = lambda: now[0]
        await a.model(
            production={"approvals_required": 1, "expiry_seconds": 60},
            staging={"approvals_required": 1, "expiry_seconds": 600},
        )
        due = [await a.request(ALICE, await a.version(stage=Stage.STAGING), Stage.PRODUCTION)]
        due.append(await a.request(WALT, await a.version(stage=Stage.STAGING), Stage.PRODUCTION))
        decided = await a.request(ALICE, await a.version(stage=Stage.STAGING), Stage.PRODUCTION)
        await a.service.approve(BOB, decided.resource, "", NO_EVIDENCE)
        later = await a.request(ALICE, await a.version(), Stage.STAGING)
        assert await a.service.expire_due() == []  # nothing due yet

        now[0] = 1_060_000
        swept = await asyncio.gather(a.service.expire_due(), b.service.expire_due())
        assert sorted(r.id for r in swept[0] + swept[1]) == sorted(r.id for r in due)
        assert all(r.state is TransitionState.EXPIRED for r in swept[0] + swept[1])
        events = await a.events("churn", Action.TRANSITION_EXPIRED)
        assert sorted(e.resource for e in events) == sorted(r.resource for r in due)
        assert {e.actor for e in events} == {"ketch:expiry"}
        assert (await a.service.get_request(decided.resource)).state is TransitionState.APPLIED
        assert (await a.service.get_request(later.resource)).state is TransitionState.PENDING
        assert await b.service.expire_due() == []  # once is enough
        # Voters and cancellers after the sweep hear the same reason as the first
        # caller after a lazy expiry would.
        with pytest.raises(FailedPrecondition) as late:
            await a.service.approve(BOB, due[0].resource, "", NO_EVIDENCE)
        assert late.value.reason == "REQUEST_EXPIRED"
        with pytest.raises(FailedPrecondition) as late:
            await a.service.cancel(ALICE, due[0].resource, "")
        assert late.value.reason == "REQUEST_EXPIRED"
        with pytest.raises(FailedPrecondition) as final:  # other final states: FINAL
            await a.service.cancel(ALICE, decided.resource, "")
        assert final.value.reason == "REQUEST_FINAL"
    finally:
        await a.engine.dispose()
        await b.engine.dispose()


async def test_idempotent_transition_requests(reg):
    await reg.model()
    v = await reg.version()
    first = await reg.request(ALICE, v, Stage.STAGING, request_id="ci-42")
    second = await reg.request(ALICE, v, Stage.STAGING, request_id="ci-42")
    assert first.id == second.id and second.state is TransitionState.APPLIED
    assert len(await reg.events("churn", Action.TRANSITION_REQUESTED)) == 1


# ------------------------------------------------------------- concurrency


async def test_fifty_concurrent_promotions_exactly_one_wins(db_url):
    """50 versions raced into a single-holder Production that keeps its holder, through
    two "replicas" (separate engines on one database): one wins, 49 are refused with
    STAGE_OCCUPIED, and the audit trail holds every attempt, numbered without gaps."""
    a, b = await new_registry(db_url), await new_registry(db_url)
    try:
        await a.model(production={"approvals_required": 0, "archive_existing": False})
        versions = [await a.version(stage=Stage.STAGING) for _ in range(50)]
        before = await a.store.last_sequence()

        async def promote(i: int, version: int):
            replica = (a, b)[i % 2]
            return await replica.request(
                Principal(f"ci-{i}", PrincipalKind.SERVICE, Role.WRITER, "token"),
                version,
                Stage.PRODUCTION,
            )

        results = await asyncio.gather(
            *(promote(i, v) for i, v in enumerate(versions)), return_exceptions=True
        )
        won = [r for r in results if not isinstance(r, Exception)]
        lost = [r for r in results if isinstance(r, Exception)]
        assert len(won) == 1 and won[0].state is TransitionState.APPLIED
        assert len(lost) == 49
        assert all(isinstance(e, FailedPrecondition) and e.reason == "STAGE_OCCUPIED" for e in lost)
        holders = await a.service.list_versions("churn", Stage.PRODUCTION, 100, "")
        assert [h.version for h in holders.items] == [won[0].version]

        events = [e for e in await a.events() if e.seq > before]
        assert [e.seq for e in events] == list(range(before + 1, before + 1 + len(events)))
        denied = [e for e in events if e.action is Action.TRANSITION_DENIED]
        assert len(denied) == 49 and set(reasons(denied)) == {"STAGE_OCCUPIED"}
        requested = [e for e in events if e.action is Action.TRANSITION_REQUESTED]
        assert len(requested) == 1
        assert {e.actor for e in denied} | {requested[0].actor} == {f"ci-{i}" for i in range(50)}

        # With the default policy the holder is archived instead: every move applies in
        # turn and still exactly one version holds Production.
        await a.service.set_policy(
            ANONYMOUS, "churn", policy_with(Stage.PRODUCTION, approvals_required=0)
        )
        others = [v for v in versions if v != won[0].version][:10]
        results = await asyncio.gather(*(promote(i, v) for i, v in enumerate(others)))
        assert all(r.state is TransitionState.APPLIED for r in results)
        holders = await a.service.list_versions("churn", Stage.PRODUCTION, 100, "")
        assert len(holders.items) == 1
    finally:
        await a.engine.dispose()
        await b.engine.dispose()


async def test_watch_resumes_from_a_cursor_without_gaps_or_duplicates(db_url):
    """A watcher on one replica follows writes made concurrently on another; it drops
    the stream midway and reconnects with the last cursor it saw."""
    writer, reader = await new_registry(db_url), await new_registry(db_url)
    try:
        await writer.model()
        total = 60

        async def write() -> None:
            for i in range(total):
                await writer.service.set_alias(ALICE, "churn", "champion", 1 + i % 2, "")
                await writer.service.update_model(
                    ALICE, "churn", {"description": str(i)}, ["description"], ""
                )

        await writer.version()
        await writer.version()
        seen: list[int] = []
        writing = asyncio.create_task(write())

        async def follow(cursor: str, limit: int) -> str:
            stream = reader.service.watch(ANONYMOUS, cursor, ["models/churn"], [])
            async for event in stream:
                seen.append(event.seq)
                cursor = str(event.seq)
                if len(seen) >= limit:
                    break
            await stream.aclose()
            return cursor

        cursor = await asyncio.wait_for(follow("", 25), 30)
        await asyncio.sleep(0.05)  # more events commit while nobody watches
        expected = 3 + 2 * total  # model, 2 versions, then an alias move and an update a round
        await asyncio.wait_for(follow(cursor, expected), 60)
        await writing
        assert seen == sorted(set(seen)) and len(seen) == expected
        all_events = await writer.events()
        assert seen == [e.seq for e in all_events]

        # start_at_end skips history; an unknown cursor is refused.
        tail = reader.service.watch(ANONYMOUS, "", [], [], start_at_end=True)
        nxt = asyncio.ensure_future(tail.__anext__())
        await asyncio.sleep(0.1)
        assert not nxt.done()
        await writer.service.set_alias(ALICE, "churn", "fresh", 1, "")
        event = await asyncio.wait_for(nxt, 10)
        assert event.action is Action.ALIAS_SET and json.loads(event.after)["alias"] == "fresh"
        await tail.aclose()
    finally:
        await writer.engine.dispose()
        await reader.engine.dispose()
