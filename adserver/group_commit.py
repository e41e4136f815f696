"""Group commit: writes that arrive together share one pipelined round trip to Redis.

The first write of a loop tick starts a flush task; everything queued until it runs goes out
in one batch. `submit` waits until its own batch is acknowledged (nothing acknowledged to a
client is ever lost); `submit_nowait` is for counters that need not hold up an answer, and
`drain` waits for those on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class GroupCommit(Generic[Item]):
    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[object]],
        *,
        max_batch: int = 512,
        on_error: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self._on_error = on_error
        self._queue: list[tuple[Item, asyncio.Future[None] | None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: Item) -> None:
        """Queue `item` and wait until the batch holding it is written (or raise its error)."""
        await self.enqueue(item)

    def enqueue(self, item: Item) -> asyncio.Future[None]:
        """Queue `item`; the future is done when the batch holding it is written (or failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(item, future)
        return future

    def submit_nowait(self, item: Item) -> None:
        """Queue `item` without waiting; a failed batch is reported to `on_error`."""
        self._enqueue(item, None)

    async def drain(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def _enqueue(self, item: Item, future: asyncio.Future[None] | None) -> None:
        self._queue.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                await self._flush([item for item, _ in batch])
            except Exception as exc:  # every waiter gets the error; counters are reported
                self._fail(batch, exc)
            else:
                self.batches += 1
                self.items += len(batch)
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_result(None)

    def _fail(self, batch: list[tuple[Item, asyncio.Future[None] | None]], exc: Exception) -> None:
        unwaited = 0
        for _, future in batch:
            if future is None:
                unwaited += 1
            elif not future.done():
                future.set_exception(exc)
        if unwaited and self._on_error is not None:
            self._on_error(exc, unwaited)
        elif unwaited:
            log.warning("%d queued writes failed: %s", unwaited, exc)
