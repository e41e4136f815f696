"""A new catalog written as its feed is read: products go, a thousand at a time, into a
staging hash of this upload's own, which one RENAME then puts in place of the catalog (so
shoppers see the old catalog or the new one, never a mix, and two feeds at once never mix)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from redis.asyncio import Redis

from adserver.core.product import Product
from adserver.store import keys
from adserver.store.base import execute, write_in_order

STAGING_TTL = 3600  # an upload abandoned by a crashed process is cleaned up by Redis


class CatalogUpload:
    def __init__(self, redis: Redis, advertiser: str) -> None:
        self.redis = redis
        self.advertiser = advertiser
        self.staging = keys.catalog_staging(advertiser, secrets.token_hex(8))
        self.products = 0

    async def add(self, products: Iterable[Product]) -> None:
        batch = {product.id: product.to_json() for product in products}
        if not batch:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.staging, mapping=batch)  # type: ignore[arg-type]
        pipe.expire(self.staging, STAGING_TTL)
        await execute(pipe)
        self.products += len(batch)

    async def commit(self) -> int:
        """Put the new catalog in place; returns its version. (PERSIST first: RENAME keeps
        the staging hash's expiry.)"""
        _, _, version = await write_in_order(
            self.redis,
            ("PERSIST", self.staging),
            ("RENAME", self.staging, keys.catalog(self.advertiser)),
            ("HINCRBY", keys.CATALOG_VERSIONS, self.advertiser, 1),
        )
        return int(version)

    async def discard(self) -> None:
        await self.redis.delete(self.staging)
