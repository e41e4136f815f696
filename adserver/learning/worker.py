"""The related-items worker: reads shopper events from the sharded event stream through a
consumer group and turns them into neighbour lists and decayed popularity (see
adserver.learning.cooccurrence),
of the products in the advertisers' catalogs only (`Assortment`: items
that reached the stream while a catalog could not be checked teach nothing).

Runs as `kaeru worker` (as many at once as wanted, on any hosts), or inside every process of
`kaeru serve` / `kaeru demo` unless disabled. One shopper's events all go to one shard, and a
shard is learnt from by one worker at a time, under a lease it renews: so a shopper's window is
never updated by two workers at once. Live workers announce themselves and each holds at most
its fair share of the shards; when a worker stops its shards are released, and when it dies
they are taken over once its leases expire (a few seconds). Batches are applied through a
journal (adserver.store.learning), so a crash at any point loses nothing and counts nothing
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Callable

from adserver.learning.cooccurrence import learn, sold_only
from adserver.runtime.waiting import pause
from adserver.store import RedisError, keys
from adserver.store.assortment import Assortment
from adserver.store.learning import Batch, Journal, LearningStore

log = logging.getLogger(__name__)

BATCH_SIZE = 1000  # stream entries per shard per batch
IDLE_SECONDS = 0.25  # wait when no shard has anything new
LEASE_SECONDS = 5.0  # a dead worker's shards are taken over after this long
RETRY_SECONDS = 1.0


def default_consumer_name() -> str:
    """A label for this worker in logs and in the list of live workers."""
    return os.environ.get("KAERU_WORKER_NAME") or socket.gethostname()


class RelatedWorker:
    def __init__(
        self,
        learning: LearningStore,
        consumer: str | None = None,
        batch_size: int = BATCH_SIZE,
        lease_seconds: float = LEASE_SECONDS,
        assortment: Assortment | None = None,
        on_unsold: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.learning = learning
        # Only products in the advertiser's catalog are learnt (popularity, neighbours).
        self.assortment = assortment or Assortment(learning.redis)
        self._on_unsold = on_unsold
        self.consumer = consumer or default_consumer_name()
        # Unique per running worker: two workers started with the same name never share a lease.
        self.token = f"{self.consumer}:{os.getpid()}:{secrets.token_hex(6)}"
        self.batch_size = batch_size
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.learnt = 0
        self.held: set[int] = set()  # shards this worker holds the lease of
        # Each worker prefers the shards in its own order, so starting workers rarely collide.
        self._preference = random.Random(self.token).sample(
            range(keys.EVENT_SHARDS), keys.EVENT_SHARDS
        )
        self._shared_at = -math.inf
        self._stop: asyncio.Event | None = None

    @property
    def renew_seconds(self) -> float:
        """How often leases are renewed and shares recomputed: well within a lease."""
        return self.lease_ms / 4000

    async def start(self) -> None:
        """Create the consumer groups if needed, announce this worker and take its shards."""
        await self.learning.ensure_group()
        await self._share(force=True)

    async def stop(self) -> None:
        """Release the shards (others take them over at once) and leave."""
        held, self.held = self.held, set()
        self._shared_at = -math.inf
        await self.learning.release(held, self.token)
        await self.learning.leave(self.token)

    async def step(self, wait_ms: int | None = None) -> int:
        """Learn from the next batch of every shard held; returns the number of stream entries
        consumed. A batch a crash (or a Redis error) left unacknowledged comes first. With
        `wait_ms`, waits a little when there was nothing to learn."""
        await self._share()
        shards = sorted(self.held)
        consumed = 0
        if shards:
            batches = await self.learning.read_batches(shards, self.batch_size, pending=True)
            waiting = {shard for shard, entries in batches.items() if entries}
            fresh = [shard for shard in shards if shard not in waiting]
            if fresh:
                batches.update(await self.learning.read_batches(fresh, self.batch_size))
            for shard in shards:
                if self._stop is not None and self._stop.is_set():
                    break  # what was read stays pending for whoever holds the shard next
                entries = batches[shard]
                if entries and shard in self.held:
                    consumed += await self._learn(shard, entries, shard in waiting)
                    await self._share()
        if not consumed and wait_ms:
            await asyncio.sleep(min(wait_ms / 1000, IDLE_SECONDS))
        return consumed

    async def drain(self) -> int:
        """Learn until the stream has nothing new (for `kaeru eval` and tests), then release
        the shards. With other workers alive, waits until they have learnt theirs too."""
        await self.start()
        total = 0
        try:
            while True:
                consumed = await self.step()
                total += consumed
                if consumed:
                    continue
                if len(self.held) == keys.EVENT_SHARDS or await self.learning.backlog() == 0:
                    return total
                await asyncio.sleep(self.renew_seconds)
        finally:
            await self.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Learn until `stop` is set (checked between batches, so a batch is never cut in two),
        then release the shards; Redis trouble pauses it, never kills it."""
        self._stop = stop
        started = False
        try:
            while not stop.is_set():
                try:
                    if not started:
                        await self.start()
                        started = True
                    await self.step(int(IDLE_SECONDS * 1000))
                except (RedisError, OSError) as exc:
                    log.warning("related-items worker paused: %s", exc)
                    await pause(RETRY_SECONDS)
                await pause(0)  # a cancellation swallowed on the way stops it here
        finally:
            self._stop = None
            with contextlib.suppress(RedisError, OSError):
                await self.stop()

    async def prepare(self, shard: int, entries: Batch) -> Journal | None:
        """Learn a batch read from `shard` and write its journal; None if the shard's lease
        was lost meanwhile (its next holder learns the batch)."""
        await self.assortment.refresh()
        events, unsold = sold_only(
            (event for _, event in entries if event is not None), self.assortment.sells
        )
        if unsold:
            self._on_unsold(unsold)
        states = await self.learning.load_states(
            {(e.uid, e.advertiser) for e in events if e.kind in ("view", "purchase") and e.items}
        )
        lessons = learn(events, states, self.learning.config)
        journal = self.learning.journal(
            shard, [entry_id for entry_id, _ in entries], lessons, states
        )
        if journal.empty or await self.learning.write_journal(journal, self.token, self.lease_ms):
            return journal
        self._lost(shard)
        return None

    async def commit(self, journal: Journal) -> int:
        """Apply a journal and acknowledge its batch; returns the entries acknowledged."""
        if not journal.empty:
            await self.learning.apply(journal)
        if not await self.learning.acknowledge(journal, self.token):
            self._lost(journal.shard)
            return 0
        self.learnt += len(journal.entry_ids)
        return len(journal.entry_ids)

    async def _learn(self, shard: int, entries: Batch, pending: bool) -> int:
        if pending:
            # Left by a crash: if it got as far as its journal, the shoppers' states may be
            # overwritten already, so replay the journal rather than learn the batch again.
            journal = await self.learning.load_journal(shard)
            if journal is not None:
                if journal.entry_ids[0] == entries[0][0]:
                    log.info("shard %d: replaying the journal of an interrupted batch", shard)
                    return await self.commit(journal)
                await self.learning.drop_journal(shard)  # not this batch's: stale
        journal = await self.prepare(shard, entries)
        return 0 if journal is None else await self.commit(journal)

    async def _share(self, force: bool = False) -> None:
        """Every `renew_seconds`: heartbeat, renew the leases held, and give shards up or take
        free ones so this worker holds its fair share (ceil(shards / live workers))."""
        now = time.monotonic()
        if not force and now - self._shared_at < self.renew_seconds:
            return
        live = await self.learning.heartbeat(self.token, self.lease_ms)
        before = set(self.held)
        self.held = await self.learning.renew(self.held, self.token, self.lease_ms)
        quota = -(-keys.EVENT_SHARDS // max(1, live))
        if len(self.held) > quota:
            extra = [s for s in reversed(self._preference) if s in self.held]
            extra = extra[: len(self.held) - quota]
            await self.learning.release(extra, self.token)
            self.held.difference_update(extra)
        elif len(self.held) < quota:
            candidates = [s for s in self._preference if s not in self.held]
            self.held |= await self.learning.acquire(
                candidates, quota - len(self.held), self.token, self.lease_ms
            )
        self._shared_at = now
        if self.held != before:
            log.info(
                "related-items worker %s: %d live, learning from shards %s",
                self.consumer,
                live,
                sorted(self.held) or "none",
            )

    def _lost(self, shard: int) -> None:
        if shard in self.held:
            log.warning("related-items worker %s lost shard %d", self.consumer, shard)
            self.held.discard(shard)
