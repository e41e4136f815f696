"""What each advertiser sells, as the related-items learner needs to know it: the product ids
of every catalog, read again only when its version moves (a feed landed). One small read per
batch learnt (the versions hash), off the pixel's hot path.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

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
                skus: Any = await self.redis.hkeys(keys.catalog(advertiser))
                self._skus[advertiser] = frozenset(text(sku) for sku in skus)
                self._versions[advertiser] = version

    def sells(self, advertiser: str, sku: str) -> bool:
        return sku in self._skus.get(advertiser, ())
