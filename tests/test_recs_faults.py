"""`/recs.json` when Redis stops answering, and the learner's day counts across an upgrade."""

from __future__ import annotations

import time
from typing import Any

from adserver.config.settings import Settings
from adserver.core.lessons import LearningConfig
from adserver.http.app_keys import STORE
from adserver.runtime.embedded_redis import EmbeddedRedis
from adserver.store import keys
from adserver.store.learning import Journal, LearningStore
from tests.conftest import SHOP, frozen_after_a_view


async def test_a_frozen_redis_answers_popular_products_within_the_deadline(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    async with frozen_after_a_view(aiohttp_client, settings, own_redis) as client:
        for placement, item in (("home", ""), ("cart", ""), ("product", "sku-2"), ("trending", "")):
            started = time.monotonic()
            params = {"a": SHOP, "placement": placement, **({"item": item} if item else {})}
            response = await client.get("/recs.json", params=params)
            assert response.status == 200, placement
            body = await response.json()
            assert body["personalised"] is False
            assert [p["id"] for p in body["products"]] == ["sku-1"]
            assert time.monotonic() - started < 1.0  # the Redis deadline, not a socket timeout


async def test_a_journal_written_before_the_day_counts_still_applies(
    client: Any,
) -> None:
    """Journals carry each list's bounds; one written by the Kaeru of before (a plain cap, no
    day counts) is applied as it was, with the model's ttl."""
    learning = LearningStore(client.app[STORE].redis, LearningConfig())
    popular = keys.popular(SHOP)
    old = Journal(0, ("1-0",), {SHOP: ([popular], [100, 1, "sku-1", 2.5])}, {})
    await learning.apply(Journal.from_json(0, old.to_json()))
    redis = client.app[STORE].redis
    assert await redis.zscore(popular, "sku-1") == 2.5
    assert await redis.ttl(popular) > 100 * 86400
