"""Writes that must survive Redis trouble: the pixel's events (`EventWriter`), and clicks,
impressions and renders (`BufferedWriter`s with the codecs of `delivery_counts`).

Entries go to Redis by group commit (see `group_commit`). A request waits for its write at most
`deadline` seconds (`write`), or not at all (`write_later`: counters that need not hold up an
answer); past that, or when Redis fails, or while the circuit breaker is open, the write is
kept (see `backlog`) and a background task replays it once Redis answers again.

What a writer accepts it never drops: `capacity` bounds the entries it holds (on their way to
Redis or kept for a replay), and a write that does not fit is refused at once, `Outcome.SHED`,
for the caller to say so (`/e` answers 503 with Retry-After; `/px` counts it). Every write
carries an id (`Marked.spans`), the same on its replays, so a store can apply it once even when
Redis applied it and only the answer was lost. A shopper's entries stay in order: while some
of theirs are kept, their next ones are kept behind them; everybody else's go to Redis at once,
never behind a backlog, which is replayed in slices of at most `REPLAY_BATCH` entries.

On shutdown `drain` finishes the writes under way and replays the backlog, retrying for a few
seconds while Redis is away; what still cannot be written is `spill`ed to a file in the data
directory, and the next start (`load_spilled`) puts it back. A `SpillCodec` says how one kind
of entry looks in that file.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal, InvalidOperation
from itertools import groupby
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from adserver.backlog import Backlog, SpillCodec, new_write_id
from adserver.group_commit import Batch, GroupCommit
from adserver.shopper import EVENT_KINDS, LineItem, ShopperEvent
from adserver.store import RedisError

__all__ = ["REPLAY_BATCH", "BufferedWriter", "EventWriter", "Marked", "Outcome", "SpillCodec"]

log = logging.getLogger(__name__)

Entry = tuple[str, ShopperEvent, float]  # uid, event, time
Span = tuple[str, int]  # a write's id, how many entries it holds
E = TypeVar("E")
REPLAY_BATCH = 1000  # entries per replay slice (whole writes; one larger write goes alone)
MAX_WRITE = 1000  # entries per write id: what is kept, and replayed, as one
DRAIN_SECONDS = 2.0  # on shutdown, how long to keep retrying a Redis that is away
DRAIN_RETRY_SECONDS = 0.1
RETRY_AFTER_SECONDS = 5  # what a shed write is told (`/e`'s Retry-After)


class Outcome(enum.Enum):
    """What became of a write: truthy only when Redis acknowledged it within the deadline."""

    STORED = "stored"
    KEPT = "kept"  # accepted: on its way, or kept for a replay
    SHED = "shed"  # refused: the writer holds all it may; nothing of it is stored

    def __bool__(self) -> bool:
        return self is Outcome.STORED


class Marked(list[E]):
    """Entries on their way to Redis with the writes they belong to: `spans` lists each
    write's id and entry count, in order (a store applies each write once)."""

    def __init__(self, entries: Sequence[E], spans: Sequence[Span]) -> None:
        super().__init__(entries)
        self.spans: tuple[Span, ...] = tuple(spans)


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


def _spans(count: int) -> list[Span]:
    return [(new_write_id(), min(MAX_WRITE, count - s)) for s in range(0, count, MAX_WRITE)]


class BufferedWriter(Generic[E]):
    def __init__(
        self,
        write: Callable[[Marked[E]], Awaitable[object]],
        *,
        codec: SpillCodec[E],
        deadline: float = 0.04,
        capacity: int = 100_000,
        linger: float = 0.0,
        on_shed: Callable[[int], None] = lambda n: None,
        on_keep: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._write = write
        self.codec = codec
        self.deadline = deadline
        self.buffer: Backlog[E] = Backlog(codec)
        self.capacity = capacity
        self.breaker = CircuitBreaker()
        self._on_shed = on_shed
        self._on_keep = on_keep
        self._commit = GroupCommit[list[E]](self._flush_batches, linger=linger)
        self._attempts: set[asyncio.Future[None]] = set()  # writes under way
        self._replaying = asyncio.Lock()  # one replay at a time: the replayer task, drain
        self.in_flight = 0  # entries accepted and on their way (not kept)
        self.shed = 0
        self.replayed = 0

    @property
    def room(self) -> int:
        """How many more entries this writer may accept now."""
        return self.capacity - len(self.buffer) - self.in_flight

    async def write(self, entries: list[E]) -> Outcome:
        """Store entries: STORED when Redis acknowledged them within the deadline, KEPT when
        they are on their way or kept for a replay, SHED when refused (the writer is full)."""
        batch = self._attempt(entries)
        if isinstance(batch, Outcome):
            return batch
        if not await batch.settled_within(self.deadline):
            return Outcome.KEPT  # still on its way: kept by _flush_batches should it fail
        failed = batch.written.cancelled() or batch.written.exception() is not None
        return Outcome.KEPT if failed else Outcome.STORED

    def write_later(self, entries: list[E]) -> Outcome:
        """Store entries without waiting (after `linger`, with whatever else comes along);
        kept for a replay should the write fail. KEPT (accepted) or SHED."""
        batch = self._attempt(entries)
        return batch if isinstance(batch, Outcome) else Outcome.KEPT

    def _attempt(self, entries: list[E]) -> Batch[list[E]] | Outcome:
        """Queue `entries` for the next group commit, or keep them, or refuse them."""
        if len(entries) > self.room:
            self.shed += len(entries)
            self._on_shed(len(entries))
            return Outcome.SHED
        if self.breaker.open or self._behind(entries):
            self._keep(entries)
            return Outcome.KEPT
        self.in_flight += len(entries)
        batch = self._commit.enqueue(entries)
        if len(batch.items) == 1:  # a new batch: settled once, with all it will hold
            attempt = batch.written  # shared by the batch's writers
            self._attempts.add(attempt)
            attempt.add_done_callback(self._settle)
        return batch

    def _behind(self, entries: Sequence[E]) -> bool:
        """Whether some of these entries' shoppers have entries kept (theirs go behind them)."""
        uid_of, backlog = self.codec.uid_of, self.buffer
        return bool(backlog) and any(backlog.waits_for(uid_of(entry)) for entry in entries)

    async def _flush_batches(self, batches: Sequence[list[E]]) -> None:
        """One group commit: the entries of shoppers who have some kept go behind them (kept
        since they were queued: a write before them failed); the rest to Redis, as writes of at
        most MAX_WRITE entries, kept whole if that fails."""
        entries = [entry for batch in batches for entry in batch]
        try:
            if self.buffer:
                waits = [self.buffer.waits_for(self.codec.uid_of(e)) for e in entries]
                self._keep([e for e, w in zip(entries, waits, strict=True) if w])
                live = [e for e, w in zip(entries, waits, strict=True) if not w]
            else:
                live = entries
            if not live:
                return
            spans = _spans(len(live))
            try:
                await self._write(Marked(live, spans))
            except BaseException:
                self.breaker.failed(len(batches))
                start = 0
                for write, n in spans:
                    self._keep(live[start : start + n], write)
                    start += n
                raise
            self.breaker.succeeded()
        finally:
            self.in_flight -= len(entries)

    def _keep(self, entries: Sequence[E], write: str | None = None) -> None:
        if entries:
            self.buffer.keep(entries, write)
            self._on_keep(len(entries))

    def _settle(self, attempt: asyncio.Future[None]) -> None:
        """A batch was written, or failed (then `_flush_batches` kept it)."""
        self._attempts.discard(attempt)
        if not attempt.cancelled():
            attempt.exception()  # seen here: the failure is handled by the replay

    async def discard(self, uid: str) -> int:
        """Drop one shopper's kept entries (they asked to be forgotten); returns how many.
        Waits for a replay under way, which owns the front of the backlog."""
        async with self._replaying:
            return self.buffer.discard(uid)

    async def flush(self) -> None:
        """Wait for the writes queued so far (those that fail are kept)."""
        await self._commit.drain()
        while self._attempts:
            await asyncio.wait(set(self._attempts))

    async def replay_once(self, *, probe: bool = False) -> int:
        """Write the oldest kept writes (a slice of at most REPLAY_BATCH entries, or the one
        oldest write), under their ids; returns how many entries went out. `probe` tries even
        while the circuit breaker is open (shutdown: Redis may just have come back). Safe to
        call concurrently (the replayer task and `drain`): replays take turns, so a write
        leaves the backlog once."""
        async with self._replaying:
            if not self.buffer or (self.breaker.open and not probe):
                return 0
            entries: list[E] = []
            spans: list[Span] = []
            for kept in self.buffer.writes:
                if spans and len(entries) + kept.count > REPLAY_BATCH:
                    break
                entries += self.buffer.entries_of(kept)
                spans.append((kept.write, kept.count))
            try:
                await self._write(Marked(entries, spans))
            except (RedisError, OSError) as exc:
                self.breaker.failed()
                if not probe:
                    log.warning(
                        "replay of %d buffered %s failed: %s", len(entries), self.codec.name, exc
                    )
                return 0
            self.breaker.succeeded()
            self.buffer.pop_front(len(spans))
            self.replayed += len(entries)
            return len(entries)

    async def run_replayer(self, interval: float = 0.25) -> None:
        while True:
            replayed = await self.replay_once()
            # Between slices (one round trip each), live requests get the loop and Redis.
            await asyncio.sleep(0 if replayed else interval)

    async def drain(self, retry_seconds: float = DRAIN_SECONDS) -> int:
        """On shutdown: finish the writes under way (a failed one is kept), then replay the
        backlog, retrying for up to `retry_seconds` while Redis is away. Returns how many
        entries are still kept (see `spill`)."""
        await self.flush()
        deadline = time.monotonic() + retry_seconds
        while self.buffer:
            if await self.replay_once(probe=True):
                continue
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(DRAIN_RETRY_SECONDS)
        return len(self.buffer)

    def spill(self, directory: Path) -> Path | None:
        """Write the backlog to a new file in `directory` (fsynced, then renamed into place)
        and empty it; the next start replays the file. Each line is an entry with the id of
        its write (`write`). None when there was nothing to keep."""
        if not self.buffer:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.codec.name}-{time.time_ns()}-{os.getpid()}.jsonl"
        partial = path.with_suffix(".partial")
        with partial.open("wb") as out:
            for kept in self.buffer.writes:
                for entry in self.buffer.entries_of(kept):
                    line = {**self.codec.encode(entry), "write": kept.write}
                    out.write(orjson.dumps(line) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        partial.rename(path)
        self.buffer.clear()
        return path

    def load_spilled(self, directory: Path) -> int:
        """Put the entries earlier processes spilled into `directory` back in the backlog
        (ahead of anything newer, under their write ids); returns how many. Each file is
        claimed by renaming it, so with several server processes only one replays it."""
        loaded: list[tuple[str, E]] = []
        for path in sorted(directory.glob(self.codec.pattern)):
            claimed = path.with_name(f"{path.name}.{os.getpid()}.replaying")
            try:
                path.rename(claimed)
            except FileNotFoundError:  # another process claimed it first
                continue
            legacy = 0  # lines of files from before writes had ids: MAX_WRITE to a new id
            for number, line in enumerate(claimed.read_bytes().splitlines(), 1):
                read = self._decode(line) if line.strip() else None
                if read is None:
                    log.error("%s line %d: not a spilled entry, skipped", path.name, number)
                    continue
                if read[0] is None and legacy % MAX_WRITE == 0:
                    file_write = new_write_id()
                legacy += read[0] is None
                loaded.append((read[0] or file_write, read[1]))
            claimed.unlink()
        self.buffer.prepend(
            (write, [entry for _, entry in group])
            for write, group in groupby(loaded, key=lambda pair: pair[0])
        )
        return len(loaded)

    def _decode(self, line: bytes) -> tuple[str | None, E] | None:
        """A spilled entry and its write id, or None if the line is not one (damaged)."""
        try:
            document = orjson.loads(line)
            if not isinstance(document, dict):
                return None
            write = document.get("write")
            return (write if isinstance(write, str) else None), self.codec.decode(document)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation):
            return None


class EventWriter(BufferedWriter[Entry]):
    """The pixel's and the tag's shopper events."""

    def __init__(
        self,
        write: Callable[[Marked[Entry]], Awaitable[object]],
        *,
        deadline: float = 0.04,
        capacity: int = 100_000,
        on_shed: Callable[[int], None] = lambda n: None,
    ) -> None:
        super().__init__(write, codec=EVENTS, deadline=deadline, capacity=capacity, on_shed=on_shed)


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
