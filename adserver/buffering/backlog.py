"""What a `BufferedWriter` keeps for a replay: whole writes, each under the id it was first
sent with (so a store can tell a write it already applied), stored compactly.

A kept write is its entries encoded by the writer's `SpillCodec` into one JSON array,
compressed when that pays (zlib, level 1): an entry costs its encoded size, not a graph of
Python objects (a tag batch's event of 48 SKUs as a tuple of strings is about 3.5 KB; as bytes,
about 250).
"""

from __future__ import annotations

import os
import zlib
from base64 import urlsafe_b64encode
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any, Generic, TypeVar

import orjson

E = TypeVar("E")
COMPRESS_FROM = 512  # bytes of JSON: smaller writes are kept as they are


@dataclass(frozen=True, slots=True)
class SpillCodec(Generic[E]):
    """How entries of one kind are kept on disk (one JSON document per line) and whose they
    are. `decode` raises KeyError, TypeError or ValueError on a line that is not one."""

    name: str  # file names start with it: each kind has its own files
    encode: Callable[[E], dict[str, Any]]
    decode: Callable[[dict[str, Any]], E]
    uid_of: Callable[[E], str | None]
    cost: Callable[[E], int] = lambda entry: 1  # what writing it costs Redis, about

    @property
    def pattern(self) -> str:
        return f"{self.name}-*.jsonl"


_PROCESS = urlsafe_b64encode(os.urandom(9)).decode()
_SEQUENCE = count()


def new_write_id() -> str:
    """Unique across processes and restarts: 12 random characters per process, a counter."""
    return f"{_PROCESS}.{next(_SEQUENCE):x}"


@dataclass(frozen=True, slots=True)
class Kept:
    """One write waiting for a replay."""

    write: str
    blob: bytes  # a JSON array of encoded entries, zlib-compressed when large
    count: int
    cost: int  # what writing it costs Redis (see SpillCodec.cost)
    uids: tuple[str, ...]  # the distinct shoppers in it


class Backlog(Generic[E]):
    """Kept writes, oldest first. Iterating gives the entries (decoded), `len` their number."""

    def __init__(self, codec: SpillCodec[E]) -> None:
        self.codec = codec
        self._writes: deque[Kept] = deque()
        self._entries = 0

    def __len__(self) -> int:
        return self._entries

    def __bool__(self) -> bool:
        return self._entries > 0

    def __iter__(self) -> Iterator[E]:
        for kept in self._writes:
            yield from self.entries_of(kept)

    @property
    def writes(self) -> Sequence[Kept]:
        return self._writes

    def keep(self, entries: Sequence[E], write: str | None = None) -> None:
        """Keep a write (at the back), under the id it was sent with (a new one if none)."""
        if entries:
            self._add(self._pack(entries, write or new_write_id()), front=False)

    def extend(self, entries: Iterable[E]) -> None:
        self.keep(list(entries))

    def append(self, entry: E) -> None:
        self.keep([entry])

    def prepend(self, other: Backlog[E]) -> None:
        """Put another backlog's writes ahead of everything kept here (what a previous run
        spilled), in order; `other` is emptied."""
        for kept in reversed(other._writes):
            self._add(kept, front=True)
        other.clear()

    def entries_of(self, kept: Kept) -> list[E]:
        blob = kept.blob if kept.blob[:1] == b"[" else zlib.decompress(kept.blob)
        return [self.codec.decode(raw) for raw in orjson.loads(blob)]

    def pop_front(self, writes: int) -> None:
        for _ in range(writes):
            self._forget(self._writes.popleft())

    def discard(self, uid: str) -> int:
        """Drop one shopper's entries; returns how many. Other entries keep their write ids."""
        dropped = 0
        kept: deque[Kept] = deque()
        for write in self._writes:
            if uid in write.uids:
                self._forget(write)
                rest = [e for e in self.entries_of(write) if self.codec.uid_of(e) != uid]
                dropped += write.count - len(rest)
                if rest:
                    kept.append(self._count(self._pack(rest, write.write)))
            else:
                kept.append(write)
        self._writes = kept
        return dropped

    def clear(self) -> None:
        self._writes.clear()
        self._entries = 0

    def _pack(self, entries: Sequence[E], write: str) -> Kept:
        raw = orjson.dumps([self.codec.encode(entry) for entry in entries])
        # orjson's bytes keep a 4 KiB allocation: a small one is copied to its size.
        blob = zlib.compress(raw, 1) if len(raw) >= COMPRESS_FROM else bytes(memoryview(raw))
        uids = tuple(dict.fromkeys(u for u in map(self.codec.uid_of, entries) if u is not None))
        cost = sum(map(self.codec.cost, entries))
        return Kept(write, blob, len(entries), cost, uids)

    def _add(self, kept: Kept, *, front: bool) -> None:
        if front:
            self._writes.appendleft(self._count(kept))
        else:
            self._writes.append(self._count(kept))

    def _count(self, kept: Kept) -> Kept:
        self._entries += kept.count
        return kept

    def _forget(self, kept: Kept) -> None:
        self._entries -= kept.count
