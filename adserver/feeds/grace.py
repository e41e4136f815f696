"""Views and carts of products no feed has brought yet, kept a short while in case one does.

A shop's pages often name a new product a few minutes before the next feed brings it. Such
items (see `pixel.screening`) wait here, in this process's memory, for `seconds`; when a
catalog that sells them is loaded (`MarketCache` calls `release` on every catalog it loads)
they go the normal way to Redis with their original time, as if they had arrived late. After
`seconds` they are dropped and counted.

Bounded whatever the traffic: at most `capacity` product ids wait per advertiser (beyond it
the oldest are dropped and counted), so a flood of made-up ids costs a few megabytes and can
only push out other made-up ids and the views of products that no feed has brought yet. It
is a grace, not a promise: what waits is lost when the process stops.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from adserver.core.shopper import ShopperEvent

Entry = tuple[str, ShopperEvent, float]  # uid, event (its unknown items only), time
CAPACITY = 10_000  # product ids waiting per advertiser


class FeedGrace:
    def __init__(
        self,
        seconds: float,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seconds = seconds
        self.capacity = capacity
        self._clock = clock
        self._waiting: dict[str, deque[Entry]] = defaultdict(deque)
        self._items: dict[str, int] = defaultdict(int)  # product ids waiting, per advertiser

    def waiting(self, advertiser: str) -> int:
        return self._items.get(advertiser, 0)

    def park(self, entries: Sequence[Entry]) -> int:
        """Keep entries waiting; returns how many product ids were dropped meanwhile (expired,
        beyond the capacity, or all of them when there is no grace)."""
        if self.seconds <= 0:
            return sum(len(event.items) for _, event, _ in entries)
        dropped = 0
        for entry in entries:
            advertiser = entry[1].advertiser
            self._waiting[advertiser].append(entry)
            self._items[advertiser] += len(entry[1].items)
        for advertiser in {event.advertiser for _, event, _ in entries}:
            dropped += self._expire(advertiser)
            while self._items[advertiser] > self.capacity:
                dropped += self._pop(advertiser)
        return dropped

    def release(self, advertiser: str, catalog: Collection[str]) -> tuple[list[Entry], int]:
        """The waiting entries of `advertiser` whose products `catalog` sells (each with those
        items only), no longer waiting; and how many product ids expired meanwhile."""
        expired = self._expire(advertiser)
        queue = self._waiting.get(advertiser)
        if not queue:
            return [], expired
        released: list[Entry] = []
        still: deque[Entry] = deque()
        for uid, event, at in queue:
            sold = tuple(sku for sku in event.items if sku in catalog)
            unsold = tuple(sku for sku in event.items if sku not in catalog)
            if sold:
                released.append((uid, replace(event, items=sold), at))
            if unsold:
                still.append((uid, replace(event, items=unsold), at))
        self._waiting[advertiser] = still
        self._items[advertiser] = sum(len(event.items) for _, event, _ in still)
        return released, expired

    def discard(self, uid: str) -> int:
        """Drop one shopper's waiting entries (they opted out or asked to be forgotten)."""
        dropped = 0
        for advertiser, queue in self._waiting.items():
            kept = deque(entry for entry in queue if entry[0] != uid)
            dropped += len(queue) - len(kept)
            self._waiting[advertiser] = kept
            self._items[advertiser] = sum(len(event.items) for _, event, _ in kept)
        return dropped

    def _expire(self, advertiser: str) -> int:
        queue = self._waiting.get(advertiser)
        cutoff = self._clock() - self.seconds
        dropped = 0
        while queue and queue[0][2] < cutoff:
            dropped += self._pop(advertiser)
        return dropped

    def _pop(self, advertiser: str) -> int:
        _, event, _ = self._waiting[advertiser].popleft()
        self._items[advertiser] -= len(event.items)
        return len(event.items)


def releaser(
    grace: FeedGrace,
    write_later: Callable[[list[Entry]], bool],
    counted: Callable[[int], None],
    dropped: Callable[[int], None],
) -> Callable[[str, Collection[str]], None]:
    """What to call when a catalog is loaded: the waiting entries it sells go to the writer
    (`write_later` answers whether it took them: a full buffer sheds them, counted dropped)."""

    def release(advertiser: str, catalog: Collection[str]) -> None:
        entries, expired = grace.release(advertiser, catalog)
        if expired:
            dropped(expired)
        if entries:
            items = sum(len(event.items) for _, event, _ in entries)
            (counted if write_later(entries) else dropped)(items)

    return release
