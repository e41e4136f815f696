"""Group commit: writes that arrive together share one pipelined round trip to Redis.

The first write of a loop tick starts a flush task; everything queued until it runs goes out
in one batch. `enqueue` returns the batch an item goes out with: its `written` future is done
when the batch is acknowledged or failed (`buffered_writer` waits on it with a deadline, or only
watches it, and keeps what failed for a replay); `drain` waits for what is queued.

The writers of one batch share one future, and `Batch.settled_within` one deadline timer: at
thousands of pixel requests a second, a future and a timer per request are a measurable share
of the request (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from adserver.runtime.waiting import deadline_waiter

Item = TypeVar("Item")


class Batch(Generic[Item]):
    """Items flushed together; `written` is done when they are acknowledged (or failed)."""

    __slots__ = ("_deadlines", "items", "written")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: list[Item] = []
        self.written: asyncio.Future[None] = loop.create_future()
        self._deadlines: dict[float, asyncio.Future[None]] = {}

    async def settled_within(self, seconds: float) -> bool:
        """Wait at most `seconds` (from the batch's first wait) for the batch to be written or
        to fail; True if it did. Never cancels the write."""
        if self.written.done():
            return True
        waiter = self._deadlines.get(seconds)
        if waiter is None:
            waiter = self._deadlines[seconds] = deadline_waiter(self.written, seconds)
        await asyncio.shield(waiter)  # one caller giving up must not end the others' wait
        return self.written.done()


class GroupCommit(Generic[Item]):
    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[object]],
        *,
        max_batch: int = 512,
        linger: float = 0.0,
    ) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self.linger = linger  # seconds a flush waits for company (for writes nobody waits on)
        self._queue: list[Batch[Item]] = []
        self._flusher: asyncio.Task[None] | None = None

    def enqueue(self, item: Item) -> Batch[Item]:
        """Queue `item`; returns the batch it will be written with."""
        loop = asyncio.get_running_loop()
        if not self._queue or len(self._queue[-1].items) >= self.max_batch:
            self._queue.append(Batch(loop))
        batch = self._queue[-1]
        batch.items.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._run())
        return batch

    async def drain(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _run(self) -> None:
        if self.linger:
            await asyncio.sleep(self.linger)
        while self._queue:
            batch = self._queue.pop(0)
            try:
                await self._flush(batch.items)
            except Exception as exc:  # the batch's future carries it to whoever watches
                batch.written.set_exception(exc)
            else:
                batch.written.set_result(None)
