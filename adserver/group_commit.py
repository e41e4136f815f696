"""Group commit: writes that arrive together share one pipelined round trip to Redis.

The first write of a loop tick starts a flush task; everything queued until it runs goes out
in one batch. `submit` waits until its own batch is acknowledged (nothing acknowledged to a
client is ever lost); `submit_nowait` is for counters that need not hold up an answer, and
`drain` waits for those on shutdown.

The writers of one batch share one future, and `Batch.settled_within` one deadline timer: at
thousands of pixel requests a second, a future and a timer per request are a measurable share
of the request (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from adserver.waiting import deadline_waiter

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class Batch(Generic[Item]):
    """Items flushed together; `written` is done when they are acknowledged (or failed)."""

    __slots__ = ("_deadlines", "items", "unwaited", "written")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: list[Item] = []
        self.unwaited = 0  # items nobody waits for (their failure is reported instead)
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
        on_error: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self.linger = linger  # seconds a flush waits for company (for writes nobody waits on)
        self._on_error = on_error
        self._queue: list[Batch[Item]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: Item) -> None:
        """Queue `item` and wait until the batch holding it is written (or raise its error)."""
        await asyncio.shield(self.enqueue(item).written)

    def enqueue(self, item: Item) -> Batch[Item]:
        """Queue `item`; returns the batch it will be written with."""
        return self._add(item, waited=True)

    def submit_nowait(self, item: Item) -> None:
        """Queue `item` without waiting; a failed batch is reported to `on_error`."""
        self._add(item, waited=False)

    async def drain(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def _add(self, item: Item, waited: bool) -> Batch[Item]:
        loop = asyncio.get_running_loop()
        if not self._queue or len(self._queue[-1].items) >= self.max_batch:
            self._queue.append(Batch(loop))
        batch = self._queue[-1]
        batch.items.append(item)
        batch.unwaited += not waited
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._run())
        return batch

    async def _run(self) -> None:
        if self.linger:
            await asyncio.sleep(self.linger)
        while self._queue:
            batch = self._queue.pop(0)
            try:
                await self._flush(batch.items)
            except Exception as exc:  # every waiter gets the error; counters are reported
                self._fail(batch, exc)
            else:
                self.batches += 1
                self.items += len(batch.items)
                if not batch.written.done():
                    batch.written.set_result(None)

    def _fail(self, batch: Batch[Item], exc: Exception) -> None:
        if not batch.written.done():
            batch.written.set_exception(exc)
            if batch.unwaited == len(batch.items):
                batch.written.exception()  # nobody waits: reported below, not "never retrieved"
        if batch.unwaited and self._on_error is not None:
            self._on_error(exc, batch.unwaited)
        elif batch.unwaited:
            log.warning("%d queued writes failed: %s", batch.unwaited, exc)
