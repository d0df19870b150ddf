"""Group commit: writes to one key that queue up behind a commit share the next one.

A hot write that serializes on a lock (every alias move takes its model's row lock and
the audit counter's) is bounded by how long each transaction holds the lock: a handful
of round trips, each waiting its turn on a busy event loop. :class:`GroupCommit` turns
a queue of such writes into fewer, larger transactions:

* The first write for a key starts a group on the event loop's next turn, without
  waiting for company (writes submitted in the same turn join it).
* Writes submitted while a group for that key is committing wait, and go together in
  the next group, up to ``max_group`` of them.
* ``commit(key, items)`` applies a whole group in one transaction and returns one
  outcome per item, in order: its result, or the exception that item alone raises (an
  etag mismatch, a missing version). Each item is applied as if alone, in the order
  submitted, so the outcome is the one a serial execution would give.
* If ``commit`` raises, every item of the group gets that exception, as the callers of
  one failed transaction would: nothing was committed when it failed before COMMIT
  (the database went away, a constraint the items' own checks did not foresee), and
  the outcome is unknown when COMMIT itself was interrupted. The next group is tried
  afterwards.

Durability is unchanged: a caller's future resolves only after its group committed.
A caller that is cancelled before its group starts is left out of it; one cancelled
later (its deadline passed mid-commit) has its write committed or not with the rest,
as a single transaction that was already sent would be. If the draining task itself
is cancelled (shutdown), the writes still queued are cancelled too; a later submit
starts a new drain. Single-threaded: use it from one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit"]

Item = TypeVar("Item")

Commit = Callable[[Any, list[Item]], Awaitable[Sequence[Any]]]


class GroupCommit(Generic[Item]):
    """Per-key queues of writes, each drained by one task, a group per transaction.

    Args:
        commit: Applies a group in one transaction; returns one outcome per item (a
            result, or an exception instance to raise to that item's caller).
        max_group: The most items one transaction takes.
    """

    def __init__(self, commit: Commit, *, max_group: int = 256) -> None:
        self._commit = commit
        self.max_group = max_group
        self._queues: dict[Hashable, list[tuple[Item, asyncio.Future]]] = {}
        self._drains: dict[Hashable, asyncio.Task] = {}
        self.groups = 0  # transactions run: tests and benchmarks compare it with items

    async def submit(self, key: Hashable, item: Item) -> Any:
        """Queue ``item`` for ``key``; its outcome once its group has committed."""
        done = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append((item, done))
        drain = self._drains.get(key)
        if drain is None or drain.done():  # done: cancelled before it ever ran
            self._drains[key] = asyncio.ensure_future(self._drain(key))
        return await done

    async def _drain(self, key: Hashable) -> None:
        me = asyncio.current_task()
        try:
            while group := self._next_group(key):
                await self._run(key, group)
        except BaseException:
            for _, done in self._queues.pop(key, []):  # nobody is left to run them
                done.cancel()
            raise
        finally:
            # No await between the last look at the queue and these: a submit cannot
            # slip in after the loop ended and find a drain that is gone.
            if self._drains.get(key) is me:
                del self._drains[key]
            if not self._queues.get(key, True):
                del self._queues[key]

    def _next_group(self, key: Hashable) -> list[tuple[Item, asyncio.Future]]:
        """Up to ``max_group`` queued writes whose callers still wait, off the queue."""
        queue = self._queues.get(key, [])
        group: list[tuple[Item, asyncio.Future]] = []
        taken = 0
        for item, done in queue:
            if len(group) == self.max_group:
                break
            taken += 1
            if not done.done():
                group.append((item, done))
        del queue[:taken]
        return group

    async def _run(self, key: Hashable, group: list[tuple[Item, asyncio.Future]]) -> None:
        self.groups += 1
        try:
            outcomes = list(await self._commit(key, [item for item, _ in group]))
            if len(outcomes) != len(group):
                raise RuntimeError(f"group commit gave {len(outcomes)} outcomes for {len(group)}")
        except BaseException as exc:
            for _, done in group:
                _settle(done, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, done), outcome in zip(group, outcomes, strict=True):
            _settle(done, outcome)


def _settle(done: asyncio.Future, outcome: Any) -> None:
    if done.done():  # its caller stopped waiting
        return
    if isinstance(outcome, asyncio.CancelledError):
        done.cancel()
    elif isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
