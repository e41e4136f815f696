"""Test data: a catalog, shoppers with a history, and the related-items model learnt from it.

Profiles are written through Kaeru's own store (`Store.record_many`: the same Lua and stream
entries as the pixel), and the model by Kaeru's own worker draining the stream once, so ad
decisions are personalised (recent views, related items, popular) as in production.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Sequence

import orjson

from adserver.core.lessons import LearningConfig
from adserver.core.shopper import ShopperEvent
from adserver.learning.worker import RelatedWorker
from adserver.store import Store, StoreLimits, connect
from adserver.store.learning import LearningStore

ADVERTISER = "shop1"
CATALOG_SIZE = 60  # sku-1 … sku-60
VIEWS_PER_SHOPPER = 50  # distinct products, so the profile holds 50 tracked views
BATCH = 2000


def catalog_json() -> bytes:
    products = [
        {
            "id": f"sku-{n}",
            "title": f"Kaeru test product number {n}",
            "link": f"https://shop1.example/products/{n}",
            "image_link": f"https://cdn.shop1.example/images/{n}.jpg",
            "price": f"{9 + n % 40}.90",
            "currency": "EUR",
            "availability": "in_stock",
            "category": f"category-{n % 6}",
            "brand": "Kaeru",
        }
        for n in range(1, CATALOG_SIZE + 1)
    ]
    return orjson.dumps(products)


def upload_catalog(base_url: str, token: str) -> None:
    """PUT the test catalog through Kaeru's feed API; raises unless every product is accepted."""
    request = urllib.request.Request(
        f"{base_url}/api/v1/advertisers/{ADVERTISER}/products",
        data=catalog_json(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        summary = json.load(answer)
    if summary.get("accepted") != CATALOG_SIZE:
        raise RuntimeError(f"catalog not loaded: {summary}")


async def seed_profiles(redis_url: str, uids: Sequence[str], rng: random.Random) -> None:
    """Each shopper views VIEWS_PER_SHOPPER distinct products a minute apart, their visit
    ending between ten minutes and a day ago."""
    store = Store(connect(redis_url, timeout=30), StoreLimits())
    now = time.time()
    entries: list[tuple[str, ShopperEvent, float]] = []
    try:
        for uid in uids:
            start = now - rng.uniform(600, 86400) - 60 * VIEWS_PER_SHOPPER
            skus = rng.sample(range(1, CATALOG_SIZE + 1), VIEWS_PER_SHOPPER)
            for k, n in enumerate(skus):
                event = ShopperEvent(ADVERTISER, "view", (f"sku-{n}",))
                entries.append((uid, event, start + 60 * k))
            if len(entries) >= BATCH:
                await store.record_many(entries)
                entries = []
        if entries:
            await store.record_many(entries)
    finally:
        await store.close()


async def learn_related(redis_url: str) -> int:
    """Kaeru's related-items worker, run once over the whole stream."""
    redis = connect(redis_url, timeout=30)
    try:
        worker = RelatedWorker(LearningStore(redis, LearningConfig()), consumer="bench")
        return int(await worker.drain())
    finally:
        await redis.aclose()
