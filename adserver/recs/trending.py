"""The `trending` placement: products whose views rise over the last day against the week.

The learner counts each product's views per UTC day, undecayed (`keys.popular_day`: at most
2,000 products a day per shop, kept 9 days). `rank_trending` (pure) compares, for the products
most viewed today or yesterday,

    last_day = today + yesterday * (1 - share of today gone)   (about the last 24 hours,
                                                                 yesterday taken as even)
    week     = the average day of the 7 days before today
    score    = last_day / (week + 1)

and keeps those with at least `MIN_VIEWS` views in the last day (so that 2 views of a new product
are not a trend), best score first, the busier first at a tie. A product new this week scores
its views: rising from nothing. `TrendingCache` keeps each shop's counts in process for a
minute (one round trip a minute and process, in the background once it has them)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from adserver.store.learning import LearningStore

log = logging.getLogger(__name__)
DAY = 86400
WEEK_DAYS = 7
DEPTH = 100  # of today's and of yesterday's most viewed products
MIN_VIEWS = 3.0
REFRESH_SECONDS = 60.0


def rank_trending(counts: Mapping[str, Sequence[float]], now: float) -> list[str]:
    """`counts`: sku -> views today, yesterday, and each day before (newest first)."""
    gone = (now % DAY) / DAY
    scored: list[tuple[float, float, str]] = []
    for sku, days in counts.items():
        today = days[0] if days else 0.0
        yesterday = days[1] if len(days) > 1 else 0.0
        last_day = today + yesterday * (1.0 - gone)
        if last_day < MIN_VIEWS:
            continue
        week = sum(days[1 : 1 + WEEK_DAYS]) / WEEK_DAYS
        scored.append((last_day / (week + 1.0), last_day, sku))
    scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
    return [sku for _, _, sku in scored]


class TrendingCache:
    """Each shop's trending ranking, kept in process for `ttl` seconds; an old one is served
    while one background fetch replaces it."""

    def __init__(self, learning: LearningStore, ttl: float = REFRESH_SECONDS) -> None:
        self.learning = learning
        self.ttl = ttl
        self._rankings: dict[str, tuple[float, list[str]]] = {}
        self._inflight: dict[str, asyncio.Task[list[str]]] = {}

    def cached(self, advertiser: str) -> list[str] | None:
        """The ranking without waiting (refreshed in the background when old); None before
        the first fetch (then `fetch`)."""
        found = self._rankings.get(advertiser)
        if found is None:
            return None
        if found[0] <= time.monotonic() and advertiser not in self._inflight:
            self._start(advertiser).add_done_callback(_quietly)
        return found[1]

    async def fetch(self, advertiser: str) -> list[str]:
        task = self._inflight.get(advertiser) or self._start(advertiser)
        await asyncio.wait([task])  # a caller giving up does not cancel the shared fetch
        return task.result()

    def _start(self, advertiser: str) -> asyncio.Task[list[str]]:
        task = asyncio.ensure_future(self._fetch(advertiser))
        self._inflight[advertiser] = task
        return task

    async def _fetch(self, advertiser: str) -> list[str]:
        try:
            now = time.time()
            counts = await self.learning.day_views(advertiser, int(now // DAY), WEEK_DAYS, DEPTH)
        finally:
            self._inflight.pop(advertiser, None)
        ranking = rank_trending(counts, now)
        self._rankings[advertiser] = (time.monotonic() + self.ttl, ranking)
        return ranking


def _quietly(task: asyncio.Task[list[str]]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("trending fetch failed: %r", task.exception())
