"""Group commit: writes arriving together share one flush; each waiter sees its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from adserver.buffering.group_commit import GroupCommit


async def submit(commit: GroupCommit[int], item: int) -> None:
    """Queue `item` and wait for its batch (what a pixel request does, without a deadline)."""
    await asyncio.shield(commit.enqueue(item).written)


async def test_concurrent_writes_share_one_batch_and_each_waits_for_it() -> None:
    flushed: list[list[int]] = []

    async def flush(items: Sequence[int]) -> None:
        await asyncio.sleep(0)
        flushed.append(list(items))

    commit = GroupCommit[int](flush)
    await asyncio.gather(*(submit(commit, n) for n in range(10)))
    assert flushed == [list(range(10))]
    await submit(commit, 99)
    assert flushed[-1] == [99]


async def test_batches_are_capped() -> None:
    sizes: list[int] = []

    async def flush(items: Sequence[int]) -> None:
        sizes.append(len(items))

    commit = GroupCommit[int](flush, max_batch=4)
    await asyncio.gather(*(submit(commit, n) for n in range(10)))
    assert sizes == [4, 4, 2]


async def test_a_failed_batch_fails_all_its_writers() -> None:
    async def flush(items: Sequence[int]) -> None:
        raise ConnectionError("redis down")

    commit = GroupCommit[int](flush)
    batch = commit.enqueue(1)
    commit.enqueue(2)
    with pytest.raises(ConnectionError):
        await submit(commit, 3)
    assert batch.items == [1, 2, 3] and isinstance(batch.written.exception(), ConnectionError)


async def test_drain_waits_for_queued_writes() -> None:
    done: list[int] = []

    async def flush(items: Sequence[int]) -> None:
        await asyncio.sleep(0.01)
        done.extend(items)

    commit = GroupCommit[int](flush)
    for n in range(3):
        commit.enqueue(n)
    await commit.drain()
    assert done == [0, 1, 2]


async def test_writers_of_a_batch_share_its_deadline_and_one_giving_up_stops_no_other() -> None:
    release = asyncio.Event()

    async def flush(items: Sequence[int]) -> None:
        await release.wait()

    commit = GroupCommit[int](flush)
    batches = [commit.enqueue(n) for n in range(3)]
    assert batches[0] is batches[1] is batches[2]
    impatient = asyncio.ensure_future(batches[0].settled_within(10))
    patient = [asyncio.ensure_future(b.settled_within(0.05)) for b in batches[1:]]
    await asyncio.sleep(0)
    impatient.cancel()
    assert await asyncio.gather(*patient) == [False, False]  # deadline passed, still writing
    assert not batches[0].written.done()  # the write itself was never cancelled
    release.set()
    await commit.drain()
    assert await batches[0].settled_within(0.05) and batches[0].written.result() is None


async def test_a_lingering_flush_gathers_writes_that_arrive_over_a_few_ms() -> None:
    flushed: list[list[int]] = []

    async def flush(items: Sequence[int]) -> None:
        flushed.append(list(items))

    commit = GroupCommit[int](flush, linger=0.05)
    commit.enqueue(1)
    await asyncio.sleep(0.01)  # a later loop tick, within the linger
    commit.enqueue(2)
    await commit.drain()
    assert flushed == [[1, 2]]
