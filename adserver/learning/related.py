"""Ranking related products for a shopper at decision time.

`rank_neighbours` (pure) merges the neighbour lists of the shopper's most recent items, the
newest weighing most. `NeighbourCache` keeps lists in process for a few seconds so that a
decision rarely waits on Redis for them; misses for one decision are fetched in one round trip.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from adserver.core.shopper import AdvertiserHistory, Shopper
from adserver.core.suggestions import Suggestions
from adserver.store.learning import EMPTY_LIST, LearningStore, NeighbourList

log = logging.getLogger(__name__)

Request = tuple[str, str, str]  # (kind, advertiser, item)


@dataclass(frozen=True, slots=True)
class RankingConfig:
    """How neighbour lists merge into a ranking (tuned on diginetica, see README)."""

    recent_items: int = 5  # the shopper's latest distinct items that are looked at
    recency_decay: float = 0.5  # weight of the k-th latest of them: recency_decay ** k
    depth: int = 200  # neighbours read per item
    source_exponent: float = 0.5  # divide by views(item) ** this: popular items pair widely
    candidate_exponent: float = 0.25  # divide by views(neighbour) ** this
    session_boost: float = 2.0  # items the shopper viewed get boost * best score ...
    session_decay: float = 0.7  # ... times session_decay ** (their recency rank)


# Association rules (session-rec): the last item's raw co-occurrence counts.
PLAIN_RANKING = RankingConfig(
    recent_items=1,
    recency_decay=1.0,
    depth=100_000,
    source_exponent=0.0,
    candidate_exponent=0.0,
    session_boost=0.0,
)


def _norm(count: float, exponent: float) -> float:
    return count**exponent if count > 0 and exponent else 1.0


@dataclass(frozen=True, slots=True)
class PreparedList:
    """A neighbour list ready for ranking: each neighbour's weight already divided by its
    popularity norm (which depends only on the neighbour), computed once per cache fill."""

    count: float
    weights: tuple[tuple[str, float], ...]
    views: Mapping[str, float]

    @classmethod
    def of(cls, found: NeighbourList, config: RankingConfig) -> PreparedList:
        exponent = config.candidate_exponent
        return cls(
            found.count,
            tuple((sku, score / _norm(count, exponent)) for sku, score, count in found.neighbours),
            {sku: count for sku, _, count in found.neighbours},
        )


def rank_neighbours(
    recent: Sequence[str], lists: Mapping[str, PreparedList], config: RankingConfig
) -> list[str]:
    """Merge the neighbour lists of `recent` (distinct items, newest first) into one ranking:
    score(c) = sum_k decay^k * w(a_k, c) / (views(a_k)^a * views(c)^b), plus a boost for the
    shopper's own recent items (shoppers often come back to what they looked at)."""
    scores: dict[str, float] = {}
    views: dict[str, float] = {}
    for position, item in enumerate(recent[: config.recent_items]):
        found = lists.get(item)
        if found is None:
            continue
        views.update(found.views)
        views[item] = found.count
        weight = config.recency_decay**position / _norm(found.count, config.source_exponent)
        get = scores.get
        for sku, score in found.weights:
            scores[sku] = get(sku, 0.0) + weight * score
    if config.session_boost:
        best = max(scores.values(), default=1.0)
        for position, item in enumerate(recent):
            scores[item] = scores.get(item, 0.0) + (
                config.session_boost * best * config.session_decay**position
            )
    return sorted(scores, key=lambda sku: (-scores[sku], -views.get(sku, 0.0), sku))


def item_ranking(config: RankingConfig) -> RankingConfig:
    """The ranking for one item on its own (a product page's "viewed this also viewed"): its
    neighbour list only, with no boost of a shopper's own items."""
    return replace(config, recent_items=1, session_boost=0.0)


def rank_item(item: str, found: PreparedList, config: RankingConfig) -> list[str]:
    """The neighbours of `item` ranked as `rank_neighbours` ranks a one-item history, without
    the item itself."""
    ranked = rank_neighbours([item], {item: found}, item_ranking(config))
    return [sku for sku in ranked if sku != item]


def wanted_lists(history: AdvertiserHistory, config: RankingConfig) -> list[Request]:
    adv = history.advertiser
    return [("viewed", adv, item) for item in history.viewed[: config.recent_items]] + [
        ("bought", adv, item) for item in history.bought[: config.recent_items]
    ]


def suggestions_for(
    history: AdvertiserHistory, lists: Mapping[Request, PreparedList], config: RankingConfig
) -> Suggestions:
    """The shopper's rankings at one shop, each computed when a decision first needs it."""
    adv = history.advertiser
    empty = PreparedList.of(EMPTY_LIST, config)
    recent_views, recent_buys = history.viewed[: config.recent_items], history.bought
    viewed = {i: lists.get(("viewed", adv, i), empty) for i in recent_views}
    bought = {i: lists.get(("bought", adv, i), empty) for i in recent_buys[: config.recent_items]}
    return Suggestions(
        related=lambda: rank_neighbours(history.viewed, viewed, config),
        cross_sell=lambda: rank_neighbours(history.bought, bought, _no_boost(config)),
    )


def _no_boost(config: RankingConfig) -> RankingConfig:
    """Cross-sell shows what goes with a purchase, never the purchase itself."""
    return replace(config, session_boost=0.0)


Entry = tuple[float, float, NeighbourList, PreparedList]  # fresh until, usable until, list


class NeighbourCache:
    """Neighbour lists kept in process (a bounded LRU) so a decision rarely waits on Redis.

    A list is fresh for 50-100% of `ttl` seconds; after that it is still served for up to
    `stale_ttl` seconds while one background fetch replaces it (so expiry never stalls
    decisions). Lists never fetched are fetched once however many decisions want them at the
    same time."""

    def __init__(
        self,
        learning: LearningStore,
        config: RankingConfig,
        ttl: float = 5.0,
        max_entries: int = 100_000,
        stale_ttl: float = 60.0,
    ) -> None:
        self.learning = learning
        self.config = config
        self.ttl = ttl
        self.stale_ttl = max(stale_ttl, ttl)
        self.max_entries = max_entries
        self._entries: OrderedDict[Request, Entry] = OrderedDict()
        self._inflight: dict[Request, asyncio.Task[dict[Request, Entry]]] = {}
        self.fetches = 0

    def _cached(self, wanted: Sequence[Request]) -> tuple[dict[Request, Entry], list[Request]]:
        """The usable entries and what must be fetched first; stale entries are served and
        refreshed in the background."""
        now = time.monotonic()
        found: dict[Request, Entry] = {}
        missing: list[Request] = []
        stale: list[Request] = []
        for request in wanted:
            entry = self._entries.get(request)
            if entry is None or entry[1] <= now:
                missing.append(request)
                continue
            found[request] = entry
            self._entries.move_to_end(request)
            if entry[0] <= now and request not in self._inflight:
                stale.append(request)
        if stale:
            self._start_fetch(stale).add_done_callback(_quietly)
        return found, missing

    def _start_fetch(self, requests: list[Request]) -> asyncio.Task[dict[Request, Entry]]:
        task = asyncio.ensure_future(self._fetch(requests))
        for request in requests:
            self._inflight[request] = task
        return task

    async def _fetch(self, requests: list[Request]) -> dict[Request, Entry]:
        try:
            self.fetches += 1
            fetched = await self.learning.neighbours(requests, self.config.depth)
        finally:
            for request in requests:
                self._inflight.pop(request, None)
        now = time.monotonic()
        # Fresh for a random 50-100% of the ttl: lists fetched together (at start, by a busy
        # decision) do not all expire together and make one burst of refreshes stall requests.
        fresh, usable = now + self.ttl * (0.5 + random.random() / 2), now + self.stale_ttl
        entries = {
            request: (fresh, usable, found, PreparedList.of(found, self.config))
            for request, found in fetched.items()
        }
        self._entries.update(entries)
        for request in entries:
            self._entries.move_to_end(request)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entries

    async def _entries_for(self, wanted: Sequence[Request]) -> dict[Request, Entry]:
        found, missing = self._cached(list(dict.fromkeys(wanted)))
        if missing:
            new = [r for r in missing if r not in self._inflight]
            if new:
                self._start_fetch(new).add_done_callback(_quietly)
            tasks = {self._inflight[r] for r in missing if r in self._inflight}
            if tasks:
                # asyncio.wait, not gather: a caller giving up must not cancel a shared fetch.
                await asyncio.wait(tasks)
            for task in tasks:
                found.update(task.result())
        return found

    async def lists(self, wanted: Sequence[Request]) -> dict[Request, NeighbourList]:
        return {r: entry[2] for r, entry in (await self._entries_for(wanted)).items()}

    def _wanted(self, shopper: Shopper) -> list[Request]:
        return [r for history in shopper.histories for r in wanted_lists(history, self.config)]

    def _suggestions(
        self, shopper: Shopper, entries: Mapping[Request, Entry]
    ) -> dict[str, Suggestions]:
        prepared = {request: entry[3] for request, entry in entries.items()}
        return {h.advertiser: suggestions_for(h, prepared, self.config) for h in shopper.histories}

    def cached_suggestions(self, shopper: Shopper) -> dict[str, Suggestions] | None:
        """Suggestions from the cache alone, without waiting; None when a list must be fetched
        first (then use `suggest`)."""
        wanted = self._wanted(shopper)
        if not wanted:
            return {}
        found, missing = self._cached(wanted)
        return None if missing else self._suggestions(shopper, found)

    async def related_to(self, advertiser: str, item: str) -> list[str]:
        """The products viewed together with `item` at `advertiser`, best first, for one item
        alone (no shopper history): what a product page's related block ranks."""
        request = ("viewed", advertiser, item)
        entry = (await self._entries_for([request])).get(request)
        if entry is None:
            return []
        return rank_item(item, entry[3], self.config)

    async def suggest(self, shopper: Shopper) -> dict[str, Suggestions]:
        """Related and cross-sell candidates for every shop in the shopper's history."""
        wanted = self._wanted(shopper)
        if not wanted:
            return {}
        return self._suggestions(shopper, await self._entries_for(wanted))


def _quietly(task: asyncio.Task[Any]) -> None:
    """Background fetches fail quietly (their waiters, if any, see the error)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("neighbour fetch failed: %r", task.exception())
