"""The related-items worker: reads shopper events from the stream through a consumer group and
turns them into neighbour lists and decayed popularity (see adserver.cooccurrence).

Runs as `kaeru worker`, or inside `kaeru serve` / `kaeru demo` unless disabled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from adserver.cooccurrence import StreamEvent, learn
from adserver.store import RedisError
from adserver.store.learning import LearningStore

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
BLOCK_MS = 1000
RETRY_SECONDS = 1.0


def default_consumer_name() -> str:
    """Stable across restarts of the same worker, so its unacknowledged batch is found again."""
    return os.environ.get("KAERU_WORKER_NAME") or socket.gethostname()


class RelatedWorker:
    def __init__(
        self, learning: LearningStore, consumer: str | None = None, batch_size: int = BATCH_SIZE
    ) -> None:
        self.learning = learning
        self.consumer = consumer or default_consumer_name()
        self.batch_size = batch_size
        self.learnt = 0

    async def start(self) -> None:
        """Create the consumer group if needed and finish a batch a crash left unacknowledged."""
        await self.learning.ensure_group()
        while await self.step(pending=True):
            pass

    async def step(self, block_ms: int | None = None, pending: bool = False) -> int:
        """Learn from the next batch; returns the number of stream entries it consumed."""
        entries = await self.learning.read_batch(self.consumer, self.batch_size, block_ms, pending)
        if not entries:
            return 0
        events = [event for _, event in entries if event is not None]
        states = await self.learning.load_states(
            {(e.uid, e.advertiser) for e in events if _teaches(e)}
        )
        lessons = learn(events, states, self.learning.config)
        await self.learning.apply(lessons, states, [entry_id for entry_id, _ in entries])
        self.learnt += len(entries)
        return len(entries)

    async def drain(self) -> int:
        """Learn until the stream has nothing new (for `kaeru eval` and tests)."""
        await self.start()
        total = 0
        while consumed := await self.step():
            total += consumed
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Learn until `stop` is set (checked between batches, so a batch is never cut in two);
        Redis trouble pauses it, never kills it."""
        started = False
        while not stop.is_set():
            try:
                if not started:
                    await self.start()
                    started = True
                await self.step(BLOCK_MS)
            except (RedisError, OSError) as exc:
                log.warning("related-items worker paused: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)


def _teaches(event: StreamEvent) -> bool:
    return event.kind in ("view", "purchase")
