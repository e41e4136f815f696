"""What each advertiser sells, as the related-items learner needs to know it: the product ids
of every catalog that can be shown now (in stock, preorder or backorder), read again only when
its version moves (a feed landed). One small read per batch learnt (the versions hash), off the
pixel's hot path.

A product sold out is in the catalog but never in an ad: were its views learnt, anyone could
fill the popularity top (and a product's neighbour list) with a shop's sold-out products, as
with made-up ids, and blank the ads that fall back on them. It is learnt again once a feed
has it back in stock.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from adserver.core.product import SELLABLE
from adserver.store import keys
from adserver.store.base import text


class Assortment:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._versions: dict[str, int] = {}
        self._skus: dict[str, frozenset[str]] = {}

    async def refresh(self) -> None:
        raw: Any = await self.redis.hgetall(keys.CATALOG_VERSIONS)
        for advertiser, version in ((text(a), int(v)) for a, v in raw.items()):
            if self._versions.get(advertiser) != version:
                products: Any = await self.redis.hgetall(keys.catalog(advertiser))
                self._skus[advertiser] = frozenset(
                    text(sku) for sku, document in products.items() if _sellable(document)
                )
                self._versions[advertiser] = version

    def sells(self, advertiser: str, sku: str) -> bool:
        return sku in self._skus.get(advertiser, ())


def _sellable(document: bytes | str) -> bool:
    """Whether a stored product (see `Product.from_json`) can be shown now."""
    availability = orjson.loads(document).get("availability", "in_stock")
    return availability in SELLABLE
