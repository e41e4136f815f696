"""Ranking related products for a shopper at decision time.

`rank_neighbours` (pure) merges the neighbour lists of the shopper's most recent items, the
newest weighing most. `NeighbourCache` keeps lists in process for a few seconds so that a
decision rarely waits on Redis for them; misses for one decision are fetched in one round trip.
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from adserver.shopper import AdvertiserHistory, Shopper
from adserver.store.learning import EMPTY_LIST, LearningStore, NeighbourList

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


@dataclass(frozen=True, slots=True)
class Suggestions:
    """Ranked candidates for one shop, before catalog and purchase filtering."""

    related: tuple[str, ...] = ()
    cross_sell: tuple[str, ...] = ()


def _norm(count: float, exponent: float) -> float:
    return count**exponent if count > 0 and exponent else 1.0


def rank_neighbours(
    recent: Sequence[str], lists: Mapping[str, NeighbourList], config: RankingConfig
) -> list[str]:
    """Merge the neighbour lists of `recent` (distinct items, newest first) into one ranking:
    score(c) = sum_k decay^k * w(a_k, c) / (views(a_k)^a * views(c)^b), plus a boost for the
    shopper's own recent items (shoppers often come back to what they looked at)."""
    scores: dict[str, float] = defaultdict(float)
    views: dict[str, float] = {}
    for position, item in enumerate(recent[: config.recent_items]):
        found = lists.get(item)
        if found is None:
            continue
        views[item] = found.count
        weight = config.recency_decay**position / _norm(found.count, config.source_exponent)
        for sku, score, count in found.neighbours:
            views[sku] = count
            scores[sku] += weight * score / _norm(count, config.candidate_exponent)
    if config.session_boost:
        best = max(scores.values(), default=1.0)
        for position, item in enumerate(recent):
            scores[item] += config.session_boost * best * config.session_decay**position
    return sorted(scores, key=lambda sku: (-scores[sku], -views.get(sku, 0.0), sku))


def wanted_lists(history: AdvertiserHistory, config: RankingConfig) -> list[Request]:
    adv = history.advertiser
    return [("viewed", adv, item) for item in history.viewed[: config.recent_items]] + [
        ("bought", adv, item) for item in history.bought[: config.recent_items]
    ]


def suggestions_for(
    history: AdvertiserHistory, lists: Mapping[Request, NeighbourList], config: RankingConfig
) -> Suggestions:
    adv = history.advertiser
    recent_views, recent_buys = history.viewed[: config.recent_items], history.bought
    viewed = {i: lists.get(("viewed", adv, i), EMPTY_LIST) for i in recent_views}
    bought = {
        i: lists.get(("bought", adv, i), EMPTY_LIST) for i in recent_buys[: config.recent_items]
    }
    return Suggestions(
        related=tuple(rank_neighbours(history.viewed, viewed, config)),
        cross_sell=tuple(rank_neighbours(history.bought, bought, _no_boost(config))),
    )


def _no_boost(config: RankingConfig) -> RankingConfig:
    """Cross-sell shows what goes with a purchase, never the purchase itself."""
    return replace(config, session_boost=0.0)


class NeighbourCache:
    """Neighbour lists kept in process for `ttl` seconds (a bounded LRU)."""

    def __init__(
        self,
        learning: LearningStore,
        config: RankingConfig,
        ttl: float = 5.0,
        max_entries: int = 100_000,
    ) -> None:
        self.learning = learning
        self.config = config
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[Request, tuple[float, NeighbourList]] = OrderedDict()

    async def lists(self, wanted: Sequence[Request]) -> dict[Request, NeighbourList]:
        now = time.monotonic()
        found: dict[Request, NeighbourList] = {}
        missing: list[Request] = []
        for request in dict.fromkeys(wanted):
            entry = self._entries.get(request)
            if entry is not None and entry[0] > now:
                self._entries.move_to_end(request)
                found[request] = entry[1]
            else:
                missing.append(request)
        if missing:
            fetched = await self.learning.neighbours(missing, self.config.depth)
            for request, neighbours in fetched.items():
                self._entries[request] = (now + self.ttl, neighbours)
                found[request] = neighbours
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return found

    async def suggest(self, shopper: Shopper) -> dict[str, Suggestions]:
        """Related and cross-sell candidates for every shop in the shopper's history."""
        wanted = [r for history in shopper.histories for r in wanted_lists(history, self.config)]
        if not wanted:
            return {}
        lists = await self.lists(wanted)
        return {h.advertiser: suggestions_for(h, lists, self.config) for h in shopper.histories}
