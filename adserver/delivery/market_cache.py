"""In-process copy of what every advertiser sells and runs: catalogs, popular items, an upsell
index, campaigns and their delivery totals (for CTR estimates).

Ad decisions read all of it from here, never from Redis. A background task checks the catalog
and campaign versions (one pipelined round trip for all advertisers) every `interval` seconds,
reloads only what moved, and refreshes popularity and campaign totals, so every server process
sees a new feed or campaign within about a second without a restart.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from decimal import Decimal

from adserver.core.campaigns import (
    Campaign,
    default_campaign,
    expected_value,
    parse_campaign,
    smoothed_ctr,
)
from adserver.core.context import ProductContext, context_index
from adserver.core.decision import may_serve_newcomers, rank_for_newcomers
from adserver.core.product import Product
from adserver.core.value_segments import ValueStanding
from adserver.runtime.loop_share import LOOP_SHARE, no_full_collections
from adserver.runtime.waiting import pause
from adserver.store import RedisError, Store

log = logging.getLogger(__name__)
UPSELL_DEPTH = 5
STEP = 256  # products per step of the upsell index build
SORT_RUN = 2048  # products sorted at once (a few milliseconds at most)
VALUE_RELOAD_SECONDS = 3600.0  # a shop's replenishment intervals, at the latest


class MarketCache:
    def __init__(
        self,
        store: Store,
        advertisers: Sequence[str],
        sizes: Collection[str],
        max_campaigns: int = 10_000,
    ) -> None:
        self.store = store
        self.advertisers = list(advertisers)
        self.sizes = sizes
        self.max_campaigns = max_campaigns
        self._newcomers: dict[tuple[str, str], Sequence[Campaign]] = {}
        self._newcomer_pool: dict[str, list[Campaign]] = {}
        self._versions: dict[str, int] = {}
        self._campaign_versions: dict[str, int] = {}
        self._products: dict[str, Mapping[str, Product]] = {}
        self._upsell: dict[str, dict[str, list[str]]] = {}
        self._popular: dict[str, Sequence[str]] = {}
        self._contexts: dict[str, dict[str, ProductContext]] = {}  # of popular products
        self._campaigns: dict[str, list[Campaign]] = {}
        self._totals: dict[str, dict[str, int]] = {}
        # Customer value (issue 16): each shop's standing (as stored, decoded) and its
        # replenishment intervals, reloaded when the value refresh writes a new standing (it
        # writes the intervals first) and at least every VALUE_RELOAD_SECONDS.
        self._standings: dict[str, tuple[bytes | str, ValueStanding]] = {}
        self._intervals: dict[str, Mapping[str, float]] = {}
        self._intervals_read: dict[str, float] = {}
        # Called with each catalog loaded (a feed landed): see adserver.feeds.grace.
        self.on_catalog: list[Callable[[str, Mapping[str, Product]], None]] = []

    def catalog(self, advertiser: str) -> Mapping[str, Product]:
        return self._products.get(advertiser, {})

    def known_catalog(self, advertiser: str) -> Mapping[str, Product] | None:
        """The catalog, or None while there is none to check against: this process has not
        read it yet (Redis away at start-up), or the advertiser never loaded a feed."""
        return self._products.get(advertiser) if self._versions.get(advertiser) else None

    def popular(self, advertiser: str) -> Sequence[str]:
        return self._popular.get(advertiser, ())

    def product_context(self, advertiser: str, sku: str) -> ProductContext | None:
        return self._contexts.get(advertiser, {}).get(sku)

    def upsell(self, advertiser: str, sku: str) -> Sequence[str]:
        return self._upsell.get(advertiser, {}).get(sku, ())

    def campaigns(self, advertiser: str) -> Sequence[Campaign]:
        """The advertiser's campaigns; one that has none runs the default campaign."""
        return self._campaigns.get(advertiser) or [default_campaign(advertiser)]

    def standing(self, advertiser: str) -> ValueStanding | None:
        kept = self._standings.get(advertiser)
        return None if kept is None else kept[1]

    def intervals(self, advertiser: str) -> Mapping[str, float]:
        return self._intervals.get(advertiser, {})

    def ctr(self, advertiser: str, campaign: str) -> float:
        totals = self._totals.get(advertiser, {})
        return smoothed_ctr(totals.get(f"click:{campaign}", 0), totals.get(f"imp:{campaign}", 0))

    def newcomer_campaigns(self, advertiser: str, size: str) -> Sequence[Campaign]:
        """Ranked once per change of the advertiser's campaigns or delivery totals (which move
        CPC campaigns' expected values), then read by every decision."""
        ranked = self._newcomers.get((advertiser, size))
        if ranked is None:

            def value(campaign: Campaign) -> float:
                return expected_value(campaign, self.ctr(advertiser, campaign.id))

            pool = self._newcomer_pool.get(advertiser)
            if pool is None:  # campaigns change far less often than totals: kept apart
                pool = [c for c in self.campaigns(advertiser) if may_serve_newcomers(c)]
                self._newcomer_pool[advertiser] = pool
            ranked = rank_for_newcomers(pool, value, size)
            self._newcomers[(advertiser, size)] = ranked
        return ranked

    async def refresh(self) -> None:
        snapshot = await self.store.catalog_snapshot(self.advertisers)
        campaign_versions = await self.store.campaigns.versions(self.advertisers)
        for advertiser in self.advertisers:
            version = snapshot.versions.get(advertiser, 0)
            if self._versions.get(advertiser) != version:
                await self._load_catalog(advertiser, version)
            if self._campaign_versions.get(advertiser) != campaign_versions[advertiser]:
                self._campaigns[advertiser] = await self._load_campaigns(advertiser)
                self._campaign_versions[advertiser] = campaign_versions[advertiser]
                self._newcomer_pool.pop(advertiser, None)
                self._forget_ranking(advertiser)
        self._popular = {  # only what is sold now (a feed may have dropped a popular product)
            a: [sku for sku in skus if sku in self._products.get(a, {})]
            for a, skus in snapshot.popular.items()
        }
        # What the contextual strategy matches, worked out once per product and catalog load
        # (popular lists are short: POPULAR_DEPTH), never per request.
        self._contexts = {
            a: context_index(self._products.get(a, {}), skus, self._contexts.get(a, {}))
            for a, skus in self._popular.items()
        }
        await self._refresh_values()
        totals = await self.store.ledger.campaign_totals(self.advertisers)
        for advertiser in self.advertisers:
            if totals.get(advertiser) != self._totals.get(advertiser):
                self._forget_ranking(advertiser)
        self._totals = totals

    async def _refresh_values(self) -> None:
        """The shops' standings (one round trip); a shop's intervals when its standing moved
        or were read more than VALUE_RELOAD_SECONDS ago."""
        standings = await self.store.values.read_standings(self.advertisers)
        now = time.monotonic()
        for advertiser, found in standings.items():
            kept = self._standings.get(advertiser)
            if found is None:
                self._standings.pop(advertiser, None)
                self._intervals.pop(advertiser, None)
                continue
            stale = now - self._intervals_read.get(advertiser, -math.inf) > VALUE_RELOAD_SECONDS
            if kept is None or kept[0] != found[0] or stale:
                self._intervals[advertiser] = await self.store.values.read_intervals(advertiser)
                self._intervals_read[advertiser] = now
            self._standings[advertiser] = found

    async def _load_catalog(self, advertiser: str, version: int) -> None:
        """Read and decode the catalog and build its upsell index in small steps, sharing the
        event loop (a catalog of 200,000 products took ~9 s of loop time in one go). A catalog
        replaced during the read is read again at the next refresh."""
        products: dict[str, Product] = {}
        upsell: dict[str, list[str]] = {}
        with no_full_collections():
            async for page in self.store.catalog_pages(advertiser):
                for sku, document in page:
                    products[sku] = Product.from_json(document)
                await LOOP_SHARE.pause_if_due()
            if await self.store.catalog_version(advertiser) != version:
                return
            for _ in upsell_steps(products, upsell):
                await LOOP_SHARE.pause_if_due()
        self._products[advertiser] = products
        self._upsell[advertiser] = upsell
        self._contexts.pop(advertiser, None)  # a product's title or category may have moved
        self._versions[advertiser] = version
        for listener in self.on_catalog:
            listener(advertiser, products)

    def _forget_ranking(self, advertiser: str) -> None:
        for key in [k for k in self._newcomers if k[0] == advertiser]:
            del self._newcomers[key]

    async def _load_campaigns(self, advertiser: str) -> list[Campaign]:
        campaigns = []
        for campaign_id, document in sorted((await self.store.campaigns.load(advertiser)).items()):
            parsed = parse_campaign(advertiser, campaign_id, document, self.sizes)
            if isinstance(parsed, list):  # validated on the way in; a stale size, say
                log.warning("campaign %s/%s skipped: %s", advertiser, campaign_id, parsed)
            else:
                campaigns.append(parsed)
        if len(campaigns) > self.max_campaigns:  # stored before KAERU_MAX_CAMPAIGNS was set
            log.warning(
                "%s has %d campaigns, serving the first %d (KAERU_MAX_CAMPAIGNS)",
                *(advertiser, len(campaigns), self.max_campaigns),
            )
        return campaigns[: self.max_campaigns]

    async def run(self, interval: float) -> None:
        """Refresh forever; a failed refresh keeps serving the last good copy."""
        while True:
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("market refresh failed, serving cached copy: %s", exc)
            await pause(interval)


def upsell_index(products: Mapping[str, Product]) -> dict[str, list[str]]:
    """For each product, the next few pricier in-stock products of its category, cheapest
    first (the better item one step up). O(n log n): one sort per category."""
    index: dict[str, list[str]] = {}
    for _ in upsell_steps(products, index):
        pass
    return index


def _price_order(product: Product) -> tuple[Decimal, str]:
    return product.price, product.id


def upsell_steps(products: Mapping[str, Product], index: dict[str, list[str]]) -> Iterator[None]:
    """Builds `upsell_index` into `index`, yielding after every small step (a few hundred
    products) so that an async caller can share the loop: categories are sorted in runs of
    SORT_RUN products, merged lazily."""
    by_category: dict[str, list[Product]] = defaultdict(list)
    for n, product in enumerate(products.values()):
        if product.category and product.in_stock:
            by_category[product.category].append(product)
        if n % STEP == 0:
            yield
    prices: dict[str, list[Decimal]] = {}
    for category, members in by_category.items():
        runs = []
        for start in range(0, len(members), SORT_RUN):
            runs.append(sorted(members[start : start + SORT_RUN], key=_price_order))
            yield
        ordered: list[Product] = []
        ordered_prices: list[Decimal] = []
        for n, product in enumerate(heapq.merge(*runs, key=_price_order)):
            ordered.append(product)
            ordered_prices.append(product.price)
            if n % STEP == 0:
                yield
        by_category[category] = ordered
        prices[category] = ordered_prices
    for n, product in enumerate(products.values()):
        peers = by_category.get(product.category)
        if peers:
            start = bisect.bisect_right(prices[product.category], product.price)
            if start < len(peers):
                index[product.id] = [p.id for p in peers[start : start + UPSELL_DEPTH]]
        if n % STEP == 0:
            yield
