"""Writes that must survive Redis trouble: the pixel's events (`EventWriter`), and clicks,
impressions and renders (`BufferedWriter`s with the codecs of `delivery_counts`).

Entries go to Redis by group commit (see `group_commit`). A request waits for its write at most
`deadline` seconds (`write`), or not at all (`write_later`: counters that need not hold up an
answer); past that, or when Redis fails, or while the circuit breaker is open, the entries go to
a bounded in-memory buffer that a background task replays in order once Redis answers again.
A full buffer drops the oldest entries and counts them: never silent.

On shutdown `drain` finishes the writes under way and replays the buffer, retrying for a few
seconds while Redis is away; what still cannot be written is `spill`ed to a file in the data
directory, and the next start (`load_spilled`) puts it back in the buffer. A `SpillCodec` says
how one kind of entry looks in that file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from adserver.group_commit import Batch, GroupCommit
from adserver.shopper import EVENT_KINDS, LineItem, ShopperEvent
from adserver.store import RedisError
from adserver.waiting import pause

log = logging.getLogger(__name__)

Entry = tuple[str, ShopperEvent, float]  # uid, event, time
E = TypeVar("E")
REPLAY_BATCH = 1000
DRAIN_SECONDS = 2.0  # on shutdown, how long to keep retrying a Redis that is away
DRAIN_RETRY_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class SpillCodec(Generic[E]):
    """How entries of one kind are kept on disk (one JSON document per line) and whose they
    are. `decode` raises KeyError, TypeError or ValueError on a line that is not one."""

    name: str  # file names start with it: each kind has its own files
    encode: Callable[[E], dict[str, Any]]
    decode: Callable[[dict[str, Any]], E]
    uid_of: Callable[[E], str | None]

    @property
    def pattern(self) -> str:
        return f"{self.name}-*.jsonl"


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

    def failed(self, times: int = 1) -> None:
        self.failures += times
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


class BufferedWriter(Generic[E]):
    def __init__(
        self,
        write: Callable[[Sequence[E]], Awaitable[object]],
        *,
        codec: SpillCodec[E],
        deadline: float = 0.04,
        capacity: int = 100_000,
        linger: float = 0.0,
        on_overflow: Callable[[int], None] = lambda n: None,
        on_keep: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._write = write
        self.codec = codec
        self.deadline = deadline
        self.buffer: deque[E] = deque()
        self.capacity = capacity
        self.breaker = CircuitBreaker()
        self._on_overflow = on_overflow
        self._on_keep = on_keep
        self._commit = GroupCommit[list[E]](self._flush_batches, linger=linger)
        self._attempts: set[asyncio.Future[None]] = set()  # writes under way
        self._replaying = asyncio.Lock()  # one replay at a time: the replayer task, drain
        self._dropped = 0  # entries dropped from the front of the buffer so far (overflow)
        self.replayed = 0

    async def _flush_batches(self, batches: Sequence[list[E]]) -> None:
        await self._write([entry for batch in batches for entry in batch])

    async def write(self, entries: list[E]) -> bool:
        """Store entries; True when Redis acknowledged them within the deadline, False when
        they were buffered (or are still on their way)."""
        batch = self._attempt(entries)
        if batch is None:
            return False
        if not await batch.settled_within(self.deadline):
            return False  # still on its way: buffered by _settle should it fail
        return not batch.written.cancelled() and batch.written.exception() is None

    def write_later(self, entries: list[E]) -> None:
        """Store entries without waiting (after `linger`, with whatever else comes along);
        buffered for a replay should the write fail."""
        self._attempt(entries)

    def _attempt(self, entries: list[E]) -> Batch[list[E]] | None:
        """Queue `entries` for the next group commit; None when they went to the buffer."""
        if self.buffer or self.breaker.open:
            self._keep(entries)  # behind what is already waiting, to keep the order
            return None
        batch = self._commit.enqueue(entries)
        if len(batch.items) == 1:  # a new batch: settled once, with all it will hold
            attempt = batch.written  # shared by the batch's writers
            self._attempts.add(attempt)
            attempt.add_done_callback(lambda done: self._settle(done, batch.items))
        return batch

    async def discard(self, uid: str) -> int:
        """Drop one shopper's buffered entries (they asked to be forgotten); returns how many.
        Waits for a replay under way, which owns the front of the buffer."""
        async with self._replaying:
            kept = [entry for entry in self.buffer if self.codec.uid_of(entry) != uid]
            dropped = len(self.buffer) - len(kept)
            if dropped:
                self.buffer = deque(kept)
            return dropped

    async def flush(self) -> None:
        """Wait for the writes queued so far (those that fail are buffered)."""
        await self._commit.drain()
        while self._attempts:
            await asyncio.wait(set(self._attempts))

    def _settle(self, attempt: asyncio.Future[None], writes: list[list[E]]) -> None:
        """A batch was written, or failed: then its entries go to the buffer, in order, and
        each write in it counts as a failure for the breaker."""
        self._attempts.discard(attempt)
        if attempt.cancelled() or attempt.exception() is not None:
            self.breaker.failed(len(writes))
            self._keep([entry for entries in writes for entry in entries])
        else:
            self.breaker.succeeded()

    def _keep(self, entries: Sequence[E]) -> None:
        overflow = len(self.buffer) + len(entries) - self.capacity
        if overflow > 0:
            dropped = min(overflow, len(self.buffer))
            for _ in range(dropped):
                self.buffer.popleft()
            self._dropped += dropped
            self._on_overflow(overflow)
        self.buffer.extend(entries[-self.capacity :])
        self._on_keep(len(entries))

    async def replay_once(self, *, probe: bool = False) -> int:
        """Write the oldest buffered entries; returns how many went out. `probe` tries even
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
                    log.warning(
                        "replay of %d buffered %s failed: %s", len(batch), self.codec.name, exc
                    )
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
                await pause(0)  # replays Redis took: stop here if asked to
            await pause(interval)

    async def drain(self, retry_seconds: float = DRAIN_SECONDS) -> int:
        """On shutdown: finish the writes under way (a failed one lands in the buffer), then
        replay the buffer, retrying for up to `retry_seconds` while Redis is away. Returns
        how many entries are still buffered (see `spill`)."""
        await self.flush()  # the done-callbacks of the writes under way buffer what failed
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
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # shoppers' events: private
        path = directory / f"{self.codec.name}-{time.time_ns()}-{os.getpid()}.jsonl"
        partial = path.with_suffix(".partial")
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            for entry in self.buffer:
                out.write(orjson.dumps(self.codec.encode(entry)) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        partial.rename(path)
        self.buffer.clear()
        return path

    def load_spilled(self, directory: Path) -> int:
        """Put the entries earlier processes spilled into `directory` back in the buffer
        (ahead of anything newer); returns how many. Each file is claimed by renaming it, so with
        several server processes only one replays it."""
        loaded: list[E] = []
        for path in sorted(directory.glob(self.codec.pattern)):
            claimed = path.with_name(f"{path.name}.{os.getpid()}.replaying")
            try:
                path.rename(claimed)
            except FileNotFoundError:  # another process claimed it first
                continue
            for number, line in enumerate(claimed.read_bytes().splitlines(), 1):
                entry = self._decode(line) if line.strip() else None
                if entry is None:
                    log.error("%s line %d: not a spilled entry, skipped", path.name, number)
                else:
                    loaded.append(entry)
            claimed.unlink()
        self.buffer.extendleft(reversed(loaded))
        return len(loaded)

    def _decode(self, line: bytes) -> E | None:
        """A spilled entry, or None if the line is not one (a damaged file)."""
        try:
            document = orjson.loads(line)
            if not isinstance(document, dict):
                return None
            return self.codec.decode(document)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation):
            return None


class EventWriter(BufferedWriter[Entry]):
    """The pixel's and the tag's shopper events."""

    def __init__(
        self,
        write: Callable[[Sequence[Entry]], Awaitable[object]],
        *,
        deadline: float = 0.04,
        capacity: int = 100_000,
        on_overflow: Callable[[int], None] = lambda n: None,
    ) -> None:
        super().__init__(
            write, codec=EVENTS, deadline=deadline, capacity=capacity, on_overflow=on_overflow
        )


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


def _decode(raw: dict[str, Any]) -> Entry:
    if raw["kind"] not in EVENT_KINDS:
        raise ValueError(f"not an event kind: {raw['kind']!r}")
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


EVENTS: SpillCodec[Entry] = SpillCodec("events", _encode, _decode, lambda entry: entry[0])
