"""In-process copy of every advertiser's catalog and popular items.

Ad decisions read products from here, never from Redis. A background task re-checks the
catalog versions (one pipelined round trip for all advertisers) every `interval` seconds and
reloads only the catalogs whose version moved, so every server process sees a new feed within
about a second without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from adserver.catalog import Product
from adserver.store import RedisError, Store

log = logging.getLogger(__name__)


class CatalogCache:
    def __init__(self, store: Store, advertisers: Sequence[str]) -> None:
        self.store = store
        self.advertisers = list(advertisers)
        self._versions: dict[str, int] = {}
        self._products: dict[str, Mapping[str, Product]] = {}
        self._popular: dict[str, Sequence[str]] = {}

    def catalog(self, advertiser: str) -> Mapping[str, Product]:
        return self._products.get(advertiser, {})

    def popular(self, advertiser: str) -> Sequence[str]:
        return self._popular.get(advertiser, ())

    async def refresh(self) -> None:
        snapshot = await self.store.catalog_snapshot(self.advertisers)
        for advertiser in self.advertisers:
            version = snapshot.versions.get(advertiser, 0)
            if self._versions.get(advertiser) != version:
                self._products[advertiser] = await self.store.load_catalog(advertiser)
                self._versions[advertiser] = version
        self._popular = dict(snapshot.popular)

    async def run(self, interval: float) -> None:
        """Refresh forever; a failed refresh keeps serving the last good copy."""
        while True:
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("catalog refresh failed, serving cached copy: %s", exc)
            await asyncio.sleep(interval)
