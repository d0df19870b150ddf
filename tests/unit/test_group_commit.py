"""Group commit (store/group_commit.py): writes queued behind a commit go together in
the next one, each with its own outcome, in the order submitted."""

from __future__ import annotations

import asyncio

import pytest
from ketch_server.store.group_commit import GroupCommit


class Ledger:
    """A commit function that records its groups; an item ``"bad"`` is refused alone,
    and ``fail_next`` makes the next whole transaction fail."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.groups: list[tuple[str, list[str]]] = []
        self.committed: list[str] = []
        self.fail_next: Exception | None = None

    async def commit(self, key: str, items: list[str]) -> list:
        self.groups.append((key, list(items)))
        fail, self.fail_next = self.fail_next, None
        await asyncio.sleep(self.delay)
        if fail is not None:
            raise fail
        outcomes: list = []
        for item in items:
            if item == "bad":
                outcomes.append(ValueError(f"{key}: bad item"))
            else:
                self.committed.append(item)
                outcomes.append(f"{key}:{item}")
        return outcomes


async def test_the_first_write_goes_alone_and_the_queue_behind_it_goes_together():
    ledger = Ledger()
    commits = GroupCommit(ledger.commit)
    first = asyncio.create_task(commits.submit("m", "a"))
    await asyncio.sleep(0.005)
    rest = [asyncio.create_task(commits.submit("m", x)) for x in "bcde"]
    assert await asyncio.gather(first, *rest) == ["m:a", "m:b", "m:c", "m:d", "m:e"]
    assert ledger.groups == [("m", ["a"]), ("m", ["b", "c", "d", "e"])]
    assert commits.groups == 2


async def test_each_item_gets_its_own_outcome():
    ledger = Ledger()
    commits = GroupCommit(ledger.commit)
    blocker = asyncio.create_task(commits.submit("m", "a"))
    await asyncio.sleep(0.005)
    tasks = [asyncio.create_task(commits.submit("m", x)) for x in ("b", "bad", "c")]
    results = await asyncio.gather(blocker, *tasks, return_exceptions=True)
    assert results[:2] == ["m:a", "m:b"] and results[3] == "m:c"
    assert isinstance(results[2], ValueError) and "bad item" in str(results[2])
    assert ledger.committed == ["a", "b", "c"]


async def test_a_failed_transaction_fails_its_group_only():
    ledger = Ledger()
    commits = GroupCommit(ledger.commit)
    first = asyncio.create_task(commits.submit("m", "a"))
    await asyncio.sleep(0.005)
    doomed = [asyncio.create_task(commits.submit("m", x)) for x in "bc"]
    ledger.fail_next = ConnectionError("database went away")  # hits the next group
    assert await first == "m:a"
    for task in doomed:
        with pytest.raises(ConnectionError, match="went away"):
            await task
    assert await commits.submit("m", "d") == "m:d"
    assert ledger.committed == ["a", "d"]


async def test_keys_commit_separately_and_groups_are_capped():
    ledger = Ledger()
    commits = GroupCommit(ledger.commit, max_group=2)
    first = asyncio.create_task(commits.submit("m", "a"))
    other = asyncio.create_task(commits.submit("n", "z"))
    await asyncio.sleep(0.005)
    rest = [asyncio.create_task(commits.submit("m", x)) for x in "bcd"]
    await asyncio.gather(first, other, *rest)
    assert [g for g in ledger.groups if g[0] == "m"] == [
        ("m", ["a"]),
        ("m", ["b", "c"]),
        ("m", ["d"]),
    ]
    assert ("n", ["z"]) in ledger.groups


async def test_a_caller_cancelled_while_queued_is_left_out():
    ledger = Ledger()
    commits = GroupCommit(ledger.commit)
    first = asyncio.create_task(commits.submit("m", "a"))
    await asyncio.sleep(0.005)
    gone = asyncio.create_task(commits.submit("m", "b"))
    stays = asyncio.create_task(commits.submit("m", "c"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == "m:a" and await stays == "m:c"
    assert gone.cancelled()
    assert ledger.committed == ["a", "c"]
    assert not commits._queues and not commits._drains  # nothing left behind


async def test_a_wrong_number_of_outcomes_fails_the_group_instead_of_hanging_it():
    async def short(_key, items):
        return items[:-1]

    commits = GroupCommit(short)
    with pytest.raises(RuntimeError, match="outcomes"):
        await commits.submit("m", "a")


async def test_a_cancelled_drain_cancels_what_is_queued_and_the_next_submit_starts_anew():
    ledger = Ledger(delay=0.05)
    commits = GroupCommit(ledger.commit)
    first = asyncio.create_task(commits.submit("m", "a"))
    await asyncio.sleep(0.005)
    queued = asyncio.create_task(commits.submit("m", "b"))
    await asyncio.sleep(0)
    commits._drains["m"].cancel()  # as at shutdown, mid-commit
    for task in (first, queued):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not commits._queues and not commits._drains
    assert await commits.submit("m", "c") == "m:c"


async def test_a_drain_cancelled_before_it_ran_is_replaced():
    ledger = Ledger(delay=0)
    commits = GroupCommit(ledger.commit)
    stuck = asyncio.create_task(commits.submit("m", "a"))
    await asyncio.sleep(0)  # the drain task exists but has not run yet
    commits._drains["m"].cancel()
    await asyncio.sleep(0)
    assert await commits.submit("m", "b") == "m:b"
    assert await stuck == "m:a"  # picked up by the new drain
