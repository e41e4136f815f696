"""The pixel's write path, built to survive Redis trouble.

Events go to Redis by group commit (see `group_commit`). A request waits for its write at most
`deadline` seconds; past that, or when Redis fails, or while the circuit breaker is open, its
events go to a bounded in-memory buffer that a background task replays in order once Redis
answers again. A full buffer drops the oldest events and counts them: never silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from adserver.group_commit import GroupCommit
from adserver.shopper import ShopperEvent
from adserver.store import RedisError

log = logging.getLogger(__name__)

Entry = tuple[str, ShopperEvent, float]  # uid, event, time
REPLAY_BATCH = 1000


class CircuitBreaker:
    """After `threshold` failures in a row, stop calling for `cooldown` seconds; then let one
    call through to probe."""

    def __init__(self, threshold: int = 3, cooldown: float = 1.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at = 0.0

    @property
    def open(self) -> bool:
        return self.failures >= self.threshold and (
            time.monotonic() - self.opened_at < self.cooldown
        )

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


class EventWriter:
    def __init__(
        self,
        write: Callable[[Sequence[Entry]], Awaitable[object]],
        *,
        deadline: float = 0.04,
        capacity: int = 100_000,
        on_overflow: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._write = write
        self.deadline = deadline
        self.buffer: deque[Entry] = deque()
        self.capacity = capacity
        self.breaker = CircuitBreaker()
        self._on_overflow = on_overflow
        self._commit = GroupCommit[list[Entry]](self._flush_batches)
        self.replayed = 0

    async def _flush_batches(self, batches: Sequence[list[Entry]]) -> None:
        await self._write([entry for batch in batches for entry in batch])

    async def write(self, entries: list[Entry]) -> bool:
        """Store entries; True when Redis acknowledged them within the deadline, False when
        they were buffered (or are still on their way)."""
        if self.buffer or self.breaker.open:
            self._keep(entries)  # behind what is already waiting, to keep the order
            return False
        attempt = asyncio.ensure_future(self._commit.submit(entries))
        attempt.add_done_callback(lambda done: self._settle(done, entries))
        try:
            await asyncio.wait_for(asyncio.shield(attempt), self.deadline)
        except (TimeoutError, RedisError, OSError):
            return False
        return True

    def _settle(self, attempt: asyncio.Future[None], entries: list[Entry]) -> None:
        if attempt.cancelled() or attempt.exception() is not None:
            self.breaker.failed()
            self._keep(entries)
        else:
            self.breaker.succeeded()

    def _keep(self, entries: Sequence[Entry]) -> None:
        overflow = len(self.buffer) + len(entries) - self.capacity
        if overflow > 0:
            for _ in range(min(overflow, len(self.buffer))):
                self.buffer.popleft()
            self._on_overflow(overflow)
        self.buffer.extend(entries[-self.capacity :])

    async def replay_once(self) -> int:
        """Write the oldest buffered events; returns how many went out."""
        if not self.buffer or self.breaker.open:
            return 0
        batch = [self.buffer[i] for i in range(min(REPLAY_BATCH, len(self.buffer)))]
        try:
            await self._write(batch)
        except (RedisError, OSError) as exc:
            self.breaker.failed()
            log.warning("replay of %d buffered events failed: %s", len(batch), exc)
            return 0
        self.breaker.succeeded()
        for _ in batch:
            self.buffer.popleft()
        self.replayed += len(batch)
        return len(batch)

    async def run_replayer(self, interval: float = 0.25) -> None:
        while True:
            while await self.replay_once():
                pass
            await asyncio.sleep(interval)

    async def drain(self) -> None:
        """On shutdown: finish queued writes and try once more to replay the buffer."""
        await self._commit.drain()
        while await self.replay_once():
            pass
        if self.buffer:
            log.error("%d buffered events could not be written before exit", len(self.buffer))
