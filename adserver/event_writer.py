"""The pixel's write path, built to survive Redis trouble.

Events go to Redis by group commit (see `group_commit`). A request waits for its write at most
`deadline` seconds; past that, or when Redis fails, or while the circuit breaker is open, its
events go to a bounded in-memory buffer that a background task replays in order once Redis
answers again. A full buffer drops the oldest events and counts them: never silent.

On shutdown `drain` finishes the writes under way and replays the buffer, retrying for a few
seconds while Redis is away; what still cannot be written is `spill`ed to a file in the data
directory, and the next start (`load_spilled`) puts it back in the buffer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from adserver.group_commit import GroupCommit
from adserver.shopper import EVENT_KINDS, LineItem, ShopperEvent
from adserver.store import RedisError

log = logging.getLogger(__name__)

Entry = tuple[str, ShopperEvent, float]  # uid, event, time
REPLAY_BATCH = 1000
DRAIN_SECONDS = 2.0  # on shutdown, how long to keep retrying a Redis that is away
DRAIN_RETRY_SECONDS = 0.1
SPILL_PATTERN = "events-*.jsonl"


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
        self._attempts: set[asyncio.Future[None]] = set()  # writes under way
        self._replaying = asyncio.Lock()  # one replay at a time: the replayer task, drain
        self._dropped = 0  # entries dropped from the front of the buffer so far (overflow)
        self.replayed = 0

    async def _flush_batches(self, batches: Sequence[list[Entry]]) -> None:
        await self._write([entry for batch in batches for entry in batch])

    async def write(self, entries: list[Entry]) -> bool:
        """Store entries; True when Redis acknowledged them within the deadline, False when
        they were buffered (or are still on their way)."""
        if self.buffer or self.breaker.open:
            self._keep(entries)  # behind what is already waiting, to keep the order
            return False
        batch = self._commit.enqueue(entries)
        attempt = batch.written  # shared by the batch's writers
        self._attempts.add(attempt)
        attempt.add_done_callback(lambda done: self._settle(done, entries))
        if not await batch.settled_within(self.deadline):
            return False  # still on its way: buffered by _settle should it fail
        return not attempt.cancelled() and attempt.exception() is None

    def _settle(self, attempt: asyncio.Future[None], entries: list[Entry]) -> None:
        self._attempts.discard(attempt)
        if attempt.cancelled() or attempt.exception() is not None:
            self.breaker.failed()
            self._keep(entries)
        else:
            self.breaker.succeeded()

    def _keep(self, entries: Sequence[Entry]) -> None:
        overflow = len(self.buffer) + len(entries) - self.capacity
        if overflow > 0:
            dropped = min(overflow, len(self.buffer))
            for _ in range(dropped):
                self.buffer.popleft()
            self._dropped += dropped
            self._on_overflow(overflow)
        self.buffer.extend(entries[-self.capacity :])

    async def replay_once(self, *, probe: bool = False) -> int:
        """Write the oldest buffered events; returns how many went out. `probe` tries even
        while the circuit breaker is open (shutdown: Redis may just have come back). Safe to
        call concurrently (the replayer task and `drain`): replays take turns, so a batch is
        written once and leaves the buffer once."""
        async with self._replaying:
            if not self.buffer or (self.breaker.open and not probe):
                return 0
            batch = [self.buffer[i] for i in range(min(REPLAY_BATCH, len(self.buffer)))]
            dropped = self._dropped
            try:
                await self._write(batch)
            except (RedisError, OSError) as exc:
                self.breaker.failed()
                if not probe:
                    log.warning("replay of %d buffered events failed: %s", len(batch), exc)
                return 0
            self.breaker.succeeded()
            # An overflow meanwhile dropped the oldest entries (of this batch first): only the
            # rest of the batch is still at the front of the buffer.
            written = max(0, len(batch) - (self._dropped - dropped))
            for _ in range(min(written, len(self.buffer))):
                self.buffer.popleft()
            self.replayed += len(batch)
            return len(batch)

    async def run_replayer(self, interval: float = 0.25) -> None:
        while True:
            while await self.replay_once():
                pass
            await asyncio.sleep(interval)

    async def drain(self, retry_seconds: float = DRAIN_SECONDS) -> int:
        """On shutdown: finish the writes under way (a failed one lands in the buffer), then
        replay the buffer, retrying for up to `retry_seconds` while Redis is away. Returns
        how many events are still buffered (see `spill`)."""
        await self._commit.drain()
        while self._attempts:  # their done-callbacks buffer what failed
            await asyncio.wait(set(self._attempts))
        deadline = time.monotonic() + retry_seconds
        while self.buffer:
            if await self.replay_once(probe=True):
                continue
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(DRAIN_RETRY_SECONDS)
        return len(self.buffer)

    def spill(self, directory: Path) -> Path | None:
        """Write the buffer to a new file in `directory` (fsynced, then renamed into place)
        and empty it; the next start replays the file. None when there was nothing to keep."""
        if not self.buffer:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"events-{time.time_ns()}-{os.getpid()}.jsonl"
        partial = path.with_suffix(".partial")
        with partial.open("wb") as out:
            for entry in self.buffer:
                out.write(orjson.dumps(_encode(entry)) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        partial.rename(path)
        self.buffer.clear()
        return path

    def load_spilled(self, directory: Path) -> int:
        """Put the events earlier processes spilled into `directory` back in the buffer (ahead
        of anything newer); returns how many. Each file is claimed by renaming it, so with
        several server processes only one replays it."""
        loaded: list[Entry] = []
        for path in sorted(directory.glob(SPILL_PATTERN)):
            claimed = path.with_name(f"{path.name}.{os.getpid()}.replaying")
            try:
                path.rename(claimed)
            except FileNotFoundError:  # another process claimed it first
                continue
            for number, line in enumerate(claimed.read_bytes().splitlines(), 1):
                entry = _decode(line) if line.strip() else None
                if entry is None:
                    log.error("%s line %d: not a spilled event, skipped", path.name, number)
                else:
                    loaded.append(entry)
            claimed.unlink()
        self.buffer.extendleft(reversed(loaded))
        return len(loaded)


def _encode(entry: Entry) -> dict[str, Any]:
    uid, event, at = entry
    return {
        "uid": uid,
        "at": at,
        "advertiser": event.advertiser,
        "kind": event.kind,
        "items": list(event.items),
        "order": event.order,
        "revenue": None if event.revenue is None else str(event.revenue),
        "currency": event.currency,
        "lines": [
            [line.sku, None if line.price is None else str(line.price), line.quantity]
            for line in event.lines
        ],
    }


def _decode(line: bytes) -> Entry | None:
    """A spilled entry, or None if the line is not one (a damaged file)."""
    try:
        raw = orjson.loads(line)
        if raw["kind"] not in EVENT_KINDS:
            return None
        event = ShopperEvent(
            advertiser=str(raw["advertiser"]),
            kind=raw["kind"],
            items=tuple(str(sku) for sku in raw["items"]),
            order=raw["order"],
            revenue=None if raw["revenue"] is None else Decimal(raw["revenue"]),
            currency=raw["currency"],
            lines=tuple(
                LineItem(str(sku), None if price is None else Decimal(price), int(quantity))
                for sku, price, quantity in raw["lines"]
            ),
        )
        return str(raw["uid"]), event, float(raw["at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation):
        return None
