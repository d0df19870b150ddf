"""Shared flights: concurrent identical reads answered by one query, never a stale one.

When fifty clients resolve ``models:/churn@champion`` at once, each running its own
query makes the database round trip (and, on PostgreSQL, the pool checkout around it)
the server's main cost. :class:`Flights` lets callers with the same key share a query
without weakening what each of them sees:

* A caller that finds no query running for its key starts one (a *flight*).
* A caller that arrives while a flight is running does not join it (that query may
  have read the database before a write the caller already saw committed); it waits
  for the *next* flight, which starts as soon as the running one lands, and which every
  caller that arrived meanwhile shares.

So every answer comes from a query that began after its caller arrived and ended before
it returned: each caller sees every write committed before it called, exactly as with
a query of its own (the reads stay linearizable), while under load one query serves
everyone who arrived during the previous one. With no concurrency it is one query per
call, as before.

A flight runs as a task of its own: a caller that is cancelled (its deadline passed,
its client went away) stops waiting without cancelling the query the others share.
An exception ends the flight for all of its callers. Single-threaded: use it from one
event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

__all__ = ["Flights"]


class _Slot:
    """The flight running for one key and the callers gathered for the next one."""

    __slots__ = ("next", "next_query", "running")

    def __init__(self, running: asyncio.Task) -> None:
        self.running = running
        self.next: asyncio.Future | None = None
        self.next_query: Callable[[], Awaitable[Any]] | None = None


class Flights:
    """At most one query per key in flight; callers arriving meanwhile share the next."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, _Slot] = {}
        self.flown = 0  # queries started: tests and benchmarks compare it with calls

    async def run(self, key: Hashable, query: Callable[[], Awaitable[Any]]) -> Any:
        """``await query()``, or the result of a flight shared with other callers of
        ``key`` that started after this call did. Raises what the query raised."""
        slot = self._slots.get(key)
        if slot is None:
            slot = _Slot(self._launch(key, query))
            self._slots[key] = slot
            waiting: asyncio.Future = slot.running
        else:
            if slot.next is None:
                slot.next = asyncio.get_running_loop().create_future()
                slot.next.add_done_callback(_retrieve)  # its callers may all have gone
                slot.next_query = query
            waiting = slot.next
        return await asyncio.shield(waiting)

    def _launch(self, key: Hashable, query: Callable[[], Awaitable[Any]]) -> asyncio.Task:
        self.flown += 1
        task = asyncio.ensure_future(query())
        task.add_done_callback(lambda done: self._landed(key, done))
        return task

    def _landed(self, key: Hashable, done: asyncio.Task) -> None:
        _retrieve(done)
        slot = self._slots[key]
        if slot.next is None:
            del self._slots[key]
            return
        gathered, query = slot.next, slot.next_query
        slot.next = slot.next_query = None
        assert query is not None
        try:
            slot.running = self._launch(key, query)
        except Exception as exc:  # the query could not even start: fail its callers
            del self._slots[key]
            gathered.set_exception(exc)
            return
        slot.running.add_done_callback(lambda flown: _settle(gathered, flown))


def _retrieve(done: asyncio.Future) -> None:
    """Mark a future's exception as seen (its callers may all have stopped waiting)."""
    if not done.cancelled():
        done.exception()


def _settle(gathered: asyncio.Future, flown: asyncio.Task) -> None:
    """Hand a flight's outcome to the callers gathered for it."""
    if gathered.done():
        return
    if flown.cancelled():
        gathered.cancel()
    elif (exc := flown.exception()) is not None:
        gathered.set_exception(exc)
    else:
        gathered.set_result(flown.result())
