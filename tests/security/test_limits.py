"""Per-principal limits: open streaming calls beyond ``max_streams_per_principal`` are
RESOURCE_EXHAUSTED naming the limit; other principals and unary calls are unaffected;
a stream closed (half-closed or cancelled) frees its slot."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import grpc
import pytest
from ketch.api.v1 import tracking_pb2, tracking_pb2_grpc

from tests.security._rpc import bearer, channel_of, error_info_in, mint

LIMIT = 2


@pytest.fixture
def limited(servers):
    srv = servers(auth="token", max_streams_per_principal=LIMIT)
    admin = mint(srv, "admin", "root")
    with channel_of(srv) as ch:
        stub = tracking_pb2_grpc.TrackingServiceStub(ch)
        exp = stub.CreateExperiment(
            tracking_pb2.CreateExperimentRequest(display_name="limits"), metadata=bearer(admin)
        )
        run = stub.CreateRun(
            tracking_pb2.CreateRunRequest(experiment=exp.name), metadata=bearer(admin)
        )
    return srv, run.name


@dataclasses.dataclass
class Refused:
    """How a call ended, read from the call itself (a write to a call the server has
    already ended fails on the client with its own error; the call keeps the real one)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: Any


async def _ended(call) -> Refused:
    return Refused(await call.code(), await call.details(), await call.trailing_metadata())


def _lost_race(result) -> bool:
    """Our `open` was still being sent when the server refused the call: the client then
    reports its own INTERNAL instead of the server's status. Nothing reached the server."""
    return (
        isinstance(result, Refused)
        and result.code == grpc.StatusCode.INTERNAL
        and ("from Core" in result.details)
    )


async def _open(stub, token: str, run: str, writer_id: str):
    """A StreamMetrics call that has been answered `opened`, or how it was refused."""
    for _ in range(20):
        result = await _open_once(stub, token, run, writer_id)
        if not _lost_race(result):
            return result
    return result


async def _open_once(stub, token: str, run: str, writer_id: str):
    call = stub.StreamMetrics(metadata=bearer(token))
    try:
        await call.write(
            tracking_pb2.StreamMetricsRequest(
                open=tracking_pb2.StreamOpen(run=run, writer_id=writer_id)
            )
        )
        first = await call.read()
    except grpc.aio.AioRpcError:
        return await _ended(call)
    if first is grpc.aio.EOF:
        return await _ended(call)
    assert first.WhichOneof("kind") == "opened"
    return call


def _exhausted(result) -> bool:
    if isinstance(result, grpc.aio.AioRpcError):
        result = Refused(result.code(), result.details(), result.trailing_metadata())
    if not isinstance(result, Refused):
        return False
    info = error_info_in(result.trailing_metadata)
    return (
        result.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        and info is not None
        and info.metadata.get("limit") == "max_streams_per_principal"
        and "max_streams_per_principal" in (result.details or "")
    )


async def _open_when_freed(stub, token, run, writer_id, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await _open(stub, token, run, writer_id)
        if not _exhausted(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_open_streams_per_principal_are_limited(limited):
    srv, run = limited
    alice = mint(srv, "writer", "alice")
    bob = mint(srv, "writer", "bob")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.app.port}") as ch:
        stub = tracking_pb2_grpc.TrackingServiceStub(ch)
        held = [await _open(stub, alice, run, f"a{i}") for i in range(LIMIT)]
        assert all(isinstance(c, grpc.aio.StreamStreamCall) for c in held), held

        third = await _open(stub, alice, run, "a-extra")
        assert _exhausted(third), third
        # Every streaming shape counts against the same limit...
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.ReadMetricHistory(
                tracking_pb2.ReadMetricHistoryRequest(run=run), metadata=bearer(alice)
            ):
                pass
        assert _exhausted(err.value)
        # ...unary calls do not.
        got = await stub.GetRun(tracking_pb2.GetRunRequest(name=run), metadata=bearer(alice))
        assert got.name == run

        # Another principal has its own budget.
        other = await _open(stub, bob, run, "b0")
        assert isinstance(other, grpc.aio.StreamStreamCall), other

        # A half-closed stream frees its slot once the server has finished it.
        await held[0].done_writing()
        assert await held[0].read() is grpc.aio.EOF
        assert await held[0].code() == grpc.StatusCode.OK
        again = await _open_when_freed(stub, alice, run, "a-again")
        assert isinstance(again, grpc.aio.StreamStreamCall), again
        assert _exhausted(await _open(stub, alice, run, "a-extra2"))

        # So does a cancelled one.
        held[1].cancel()
        again2 = await _open_when_freed(stub, alice, run, "a-again2")
        assert isinstance(again2, grpc.aio.StreamStreamCall), again2

        # Nothing leaks: with every stream closed, the whole budget is free again.
        for call in (again, again2, other, held[0]):
            call.cancel()
        refill = [await _open_when_freed(stub, alice, run, f"r{i}") for i in range(LIMIT)]
        assert all(isinstance(c, grpc.aio.StreamStreamCall) for c in refill), refill
        assert _exhausted(await _open(stub, alice, run, "r-extra"))
        for call in refill:
            call.cancel()
