"""Shared flights (store/flights.py): concurrent reads of one key share a query, and
every caller's answer comes from a query that began after it called."""

from __future__ import annotations

import asyncio
import gc

import pytest
from ketch_server.store.flights import Flights


class Source:
    """A value that writes change, read by a query that takes ``delay`` seconds; each
    query returns the value as of its start and records that it ran."""

    def __init__(self, delay: float = 0.02) -> None:
        self.value = 0
        self.delay = delay
        self.queries = 0
        self.fail_with: Exception | None = None

    async def read(self) -> int:
        self.queries += 1
        seen = self.value
        await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return seen


async def test_one_caller_runs_its_own_query():
    flights, source = Flights(), Source(delay=0)
    assert [await flights.run("k", source.read) for _ in range(3)] == [0, 0, 0]
    assert source.queries == flights.flown == 3


async def test_callers_arriving_during_a_flight_share_the_next_one():
    flights, source = Flights(), Source()
    first = asyncio.create_task(flights.run("k", source.read))
    await asyncio.sleep(0.005)  # the first flight is running
    later = [asyncio.create_task(flights.run("k", source.read)) for _ in range(20)]
    results = await asyncio.gather(first, *later)
    assert results == [0] * 21
    assert source.queries == flights.flown == 2  # 21 callers, two queries


async def test_a_caller_never_gets_an_answer_read_before_it_called():
    """A write lands while a flight is running; a caller that saw the write committed
    must not be handed that flight's (older) answer."""
    flights, source = Flights(), Source()
    early = asyncio.create_task(flights.run("k", source.read))
    await asyncio.sleep(0.005)
    source.value = 1  # committed before the next caller arrives
    late = asyncio.create_task(flights.run("k", source.read))
    assert await early == 0  # read before the write: may be old
    assert await late == 1


async def test_keys_do_not_share():
    flights, source = Flights(), Source()
    results = await asyncio.gather(*(flights.run(k, source.read) for k in "abc"))
    assert results == [0, 0, 0] and source.queries == 3


async def test_a_failed_flight_fails_its_callers_and_the_next_call_asks_again():
    flights, source = Flights(), Source()
    source.fail_with = LookupError("no alias 'champion'")
    first = asyncio.create_task(flights.run("k", source.read))
    await asyncio.sleep(0.005)
    shared = [asyncio.create_task(flights.run("k", source.read)) for _ in range(3)]
    for task in (first, *shared):
        with pytest.raises(LookupError, match="champion"):
            await task
    source.fail_with = None
    assert await flights.run("k", source.read) == 0
    assert source.queries == 3


async def test_a_cancelled_caller_does_not_cancel_the_query_others_share():
    flights, source = Flights(), Source(delay=0.05)
    first = asyncio.create_task(flights.run("k", source.read))
    await asyncio.sleep(0.01)
    source.value = 7
    impatient = asyncio.create_task(flights.run("k", source.read))
    patient = asyncio.create_task(flights.run("k", source.read))
    assert await first == 0
    await asyncio.sleep(0.01)  # the second flight, shared by both, has started
    impatient.cancel()
    assert await patient == 7
    assert impatient.cancelled() and source.queries == 2
    assert await flights.run("k", source.read) == 7  # nothing left behind


async def test_a_cancelled_first_caller_leaves_its_flight_to_those_waiting_behind_it():
    flights, source = Flights(), Source(delay=0.05)
    starter = asyncio.create_task(flights.run("k", source.read))
    await asyncio.sleep(0.01)
    behind = asyncio.create_task(flights.run("k", source.read))
    starter.cancel()
    assert await behind == 0
    assert starter.cancelled() and source.queries == 2
    assert not flights._slots  # nothing left behind


async def test_a_flight_that_nobody_waits_for_any_more_fails_quietly():
    unretrieved: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unretrieved.append(ctx))
    flights, source = Flights(), Source(delay=0.03)
    first = asyncio.create_task(flights.run("k", source.read))
    await asyncio.sleep(0.005)
    source.fail_with = LookupError("gone")
    gone = asyncio.create_task(flights.run("k", source.read))
    await asyncio.sleep(0.005)
    gone.cancel()
    first.cancel()
    await asyncio.sleep(0.1)  # both flights land with nobody waiting
    del first, gone  # their tracebacks hold the futures they waited on
    gc.collect()
    await asyncio.sleep(0)
    assert not flights._slots
    assert not unretrieved, unretrieved
