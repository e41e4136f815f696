"""Writes that must survive Redis trouble (`BufferedWriter`): the pixel's events
(`EventWriter`), and clicks, impressions and renders, each kind with its codec of
`spill_codecs`.

Entries go to Redis by group commit (see `group_commit`). A request waits for its write at most
`deadline` seconds (`write`), or not at all (`write_later`: counters that need not hold up an
answer); past that, or when Redis fails, or while the circuit breaker is open, the write is
kept (see `backlog`) and a background task replays it once Redis answers again.

What a writer accepts it never drops: `capacity` bounds the entries it holds (on their way to
Redis or kept for a replay), and a write that does not fit is refused at once, `Outcome.SHED`,
for the caller to say so (`/e` answers 503 with Retry-After; `/px` counts it). The last tenth
of the capacity takes only small writes (a pixel, a shopper's few events), so a flood of big
batches is shed first. Every write
carries an id (`Marked.spans`), the same on its replays, so a store can apply it once even when
Redis applied it and only the answer was lost. New writes go to Redis at once, never behind a
backlog (the store applies a shopper's events in any order to the same result), which is
replayed in slices of bounded size (`REPLAY_BATCH`, `REPLAY_COST`), leaving Redis and the loop
to live requests at least half of the time.

On shutdown `drain` finishes the writes under way and replays the backlog, retrying for a few
seconds while Redis is away; what still cannot be written is `spill`ed to a file in the data
directory, and the next start (`load_spilled`) puts it back. A `SpillCodec` says how one kind
of entry looks in that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import InvalidOperation
from pathlib import Path
from typing import Generic, TypeVar

import orjson

from adserver.buffering.backlog import Backlog, SpillCodec, new_write_id
from adserver.buffering.group_commit import Batch, GroupCommit
from adserver.buffering.spill_codecs import EVENTS, Entry
from adserver.runtime.waiting import pause
from adserver.store import RedisError

__all__ = ["REPLAY_BATCH", "BufferedWriter", "EventWriter", "Marked", "Outcome", "SpillCodec"]

log = logging.getLogger(__name__)

Span = tuple[str, int]  # a write's id, how many entries it holds
E = TypeVar("E")
REPLAY_BATCH = 1000  # entries per replay slice (whole writes; one larger write goes alone)
REPLAY_COST = 5000  # ... and Redis work per slice (SpillCodec.cost: an event costs 1 + its SKUs)
MAX_WRITE = 1000  # entries per write id: what is kept, and replayed, as one
MAX_WRITE_COST = 5000  # ... and Redis work per write id
DRAIN_SECONDS = 2.0  # on shutdown, how long to keep retrying a Redis that is away
DRAIN_RETRY_SECONDS = 0.1
RETRY_AFTER_SECONDS = 5  # what a shed write is told (`/e`'s Retry-After)
SMALL_WRITE = 5  # entries: a write this small may use the room kept for them (see `fits`)


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


def _spans(costs: Sequence[int]) -> list[Span]:
    """Entries cut into writes of at most MAX_WRITE entries and MAX_WRITE_COST (one at least)."""
    spans: list[Span] = []
    count = cost = 0
    for one in costs:
        if count and (count >= MAX_WRITE or cost + one > MAX_WRITE_COST):
            spans.append((new_write_id(), count))
            count = cost = 0
        count, cost = count + 1, cost + one
    if count:
        spans.append((new_write_id(), count))
    return spans


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
        self._claims = SpillClaims()  # spilled files being replayed, kept until written
        self.in_flight = 0  # entries accepted and on their way (not kept)
        self.shed = 0
        self.replayed = 0

    @property
    def room(self) -> int:
        """How many more entries this writer may accept now."""
        return self.capacity - len(self.buffer) - self.in_flight

    def fits(self, count: int) -> bool:
        """Whether a write of `count` entries may be accepted. The last tenth of the room is
        kept for small writes (a pixel, a shopper's few events): a flood of big batches is shed
        before the shoppers' own writes are."""
        reserve = self.capacity // 10 if count > SMALL_WRITE else 0
        return count <= self.room - reserve

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
        if not self.fits(len(entries)):
            self.shed += len(entries)
            self._on_shed(len(entries))
            return Outcome.SHED
        if self.breaker.open:
            self._keep(entries)
            return Outcome.KEPT
        self.in_flight += len(entries)
        batch = self._commit.enqueue(entries)
        if len(batch.items) == 1:  # a new batch: settled once, with all it will hold
            attempt = batch.written  # shared by the batch's writers
            self._attempts.add(attempt)
            attempt.add_done_callback(self._settle)
        return batch

    async def _flush_batches(self, batches: Sequence[list[E]]) -> None:
        """One group commit: the entries to Redis, as writes of bounded size (`_spans`), each
        kept whole, under its id, if that fails."""
        live = [entry for batch in batches for entry in batch]
        try:
            spans = _spans([self.codec.cost(entry) for entry in live])
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
            self.in_flight -= len(live)

    def _keep(self, entries: Sequence[E], write: str | None = None) -> None:
        """Keep entries for a replay: under `write`, or as new writes of bounded size."""
        if not entries:
            return
        if write is not None:
            self.buffer.keep(entries, write)
        else:
            start = 0
            for new, count in _spans([self.codec.cost(entry) for entry in entries]):
                self.buffer.keep(entries[start : start + count], new)
                start += count
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
            cost = 0
            for kept in self.buffer.writes:
                too_many = len(entries) + kept.count > REPLAY_BATCH
                if spans and (too_many or cost + kept.cost > REPLAY_COST):
                    break
                entries += self.buffer.entries_of(kept)
                spans.append((kept.write, kept.count))
                cost += kept.cost
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
            self._claims.written(write for write, _ in spans)  # no await since the write
            if not self.buffer:
                self._claims.release_all()
            self.replayed += len(entries)
            return len(entries)

    async def run_replayer(self, interval: float = 0.25) -> None:
        while True:
            started = time.monotonic()
            replayed = await self.replay_once()
            # Between slices (one round trip each) live requests have the loop and Redis to
            # themselves as long as the slice took: a replay takes at most half of either.
            await pause(time.monotonic() - started if replayed else interval)

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
            self._claims.release_all()
            return None
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # shoppers' events: private
        path = directory / f"{self.codec.name}-{time.time_ns()}-{os.getpid()}.jsonl"
        partial = path.with_suffix(".partial")
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            for kept in self.buffer.writes:
                for entry in self.buffer.entries_of(kept):
                    line = {**self.codec.encode(entry), "write": kept.write}
                    out.write(orjson.dumps(line) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        partial.rename(path)
        self.buffer.clear()
        self._claims.release_all()  # what they still held is in the new file
        return path

    def load_spilled(self, directory: Path) -> int:
        """Put the entries earlier processes spilled into `directory` back in the backlog
        (ahead of anything newer, under their write ids); returns how many. Each file is
        claimed by renaming it, so with several server processes only one replays it. Read
        line by line and kept write by write: a large file never lives in memory decoded.
        A claimed file stays on disk until its writes are written (see SpillClaims): one that
        a process killed mid-replay left behind is claimed again, without what it had done."""
        loaded: Backlog[E] = Backlog(self.codec)
        for claimed in claim_spilled(directory, self.codec.pattern):
            done = read_done(claimed)
            before = len(loaded.writes)
            with claimed.open("rb") as lines:
                self._load_file(lines, claimed.name, loaded, done)
            self._claims.add(claimed, [kept.write for kept in list(loaded.writes)[before:]])
        count = len(loaded)
        self.buffer.prepend(loaded)
        return count

    def _load_file(
        self, lines: Iterable[bytes], name: str, into: Backlog[E], done: frozenset[str]
    ) -> None:
        """Lines of one spilled file into `into`, a write per run of lines with the same id
        (lines from before writes had ids: writes of bounded size, as `_spans` cuts them),
        but for the writes in `done` (written before)."""
        write: str | None = None
        group: list[E] = []
        cost = 0
        for number, line in enumerate(lines, 1):
            read = self._decode(line) if line.strip() else None
            if read is None:
                log.error("%s line %d: not a spilled entry, skipped", name, number)
                continue
            line_write, entry = read
            if line_write in done:
                continue
            full = len(group) >= MAX_WRITE or cost + self.codec.cost(entry) > MAX_WRITE_COST
            if group and (line_write != write or (write is None and full)):
                into.keep(group, write)
                group, cost = [], 0
            write = line_write
            group.append(entry)
            cost += self.codec.cost(entry)
        if group:
            into.keep(group, write)

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


REPLAYING = ".replaying"  # a claimed spill file: NAME.jsonl.PID.replaying
DONE = ".done"  # beside it: the ids of its writes written so far, one a line


def claim_spilled(directory: Path, pattern: str) -> list[Path]:
    """Spilled files of one kind, claimed for this process by renaming them (so with several
    server processes only one replays each): new ones, and those claimed by a process that
    is gone (killed mid-replay), oldest first."""
    claimed: list[Path] = []
    found = [*directory.glob(pattern), *directory.glob(f"{pattern}.*{REPLAYING}")]
    for path in sorted(found, key=lambda p: p.name):
        if path.name.endswith(REPLAYING):
            original, owner, _ = path.name.rsplit(".", 2)
            if path in _CLAIMED_HERE or not owner.isdigit() or _alive(int(owner)):
                continue  # being replayed by a live process
        else:
            original = path.name
        mine = path.with_name(f"{original}.{os.getpid()}{REPLAYING}")
        try:
            path.rename(mine)
        except FileNotFoundError:  # another process claimed it first
            continue
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + DONE).rename(mine.with_name(mine.name + DONE))
        claimed.append(mine)
        _CLAIMED_HERE.add(mine)
    return claimed


_CLAIMED_HERE: set[Path] = set()  # claims of this process (its pid may be a dead one's too)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # not claimed here: a previous life's, with the same pid (a container's 1)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not ours to take from
        return True
    return True


def read_done(claimed: Path) -> frozenset[str]:
    try:
        return frozenset(claimed.with_name(claimed.name + DONE).read_text().split())
    except FileNotFoundError:
        return frozenset()


class SpillClaims:
    """Spilled files this process replays. Each stays on disk until every write loaded from
    it is written; the ids of those written so far are appended (fsynced) to its `.done`
    file, so a process killed mid-replay (kill -9, the OOM killer) leaves the rest for the
    next start, which skips what was written: nothing acknowledged is lost, nothing applied
    twice (the writer deletes a write's mark in Redis once it saw it acknowledged, so the
    marks alone would not stop a second append)."""

    def __init__(self) -> None:
        self._files: dict[str, Path] = {}  # write id -> the claimed file it came from
        self._left: dict[Path, int] = {}  # claimed file -> its writes not yet written

    def add(self, claimed: Path, writes: Sequence[str]) -> None:
        self._left[claimed] = self._left.get(claimed, 0) + len(writes)
        self._files.update(dict.fromkeys(writes, claimed))
        if not writes:
            self._remove(claimed)

    def written(self, writes: Iterable[str]) -> None:
        by_file: dict[Path, list[str]] = {}
        for write in writes:
            if (claimed := self._files.pop(write, None)) is not None:
                by_file.setdefault(claimed, []).append(write)
        for claimed, done in by_file.items():
            self._left[claimed] -= len(done)
            if self._left[claimed] <= 0:
                self._remove(claimed)
                continue
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            with open(os.open(claimed.with_name(claimed.name + DONE), flags, 0o600), "a") as out:
                out.write("".join(f"{write}\n" for write in done))
                out.flush()
                os.fsync(out.fileno())

    def release_all(self) -> None:
        """Nothing loaded from the claimed files is left to write (or it was spilled anew)."""
        for claimed in list(self._left):
            self._remove(claimed)
        self._files.clear()

    def _remove(self, claimed: Path) -> None:
        self._left.pop(claimed, None)
        _CLAIMED_HERE.discard(claimed)
        claimed.unlink(missing_ok=True)
        claimed.with_name(claimed.name + DONE).unlink(missing_ok=True)


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
