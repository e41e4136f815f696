"""`/recs.json` when Redis stops answering, and the learner's day counts across an upgrade."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from typing import Any

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.core.lessons import LearningConfig
from adserver.http.app_keys import STORE
from adserver.runtime.embedded_redis import EmbeddedRedis
from adserver.store import keys
from adserver.store.learning import Journal, LearningStore
from tests.conftest import BROWSER, SHOP, learn_all, product_row, put_catalog


async def test_a_frozen_redis_answers_popular_products_within_the_deadline(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    assert own_redis.process is not None
    client = await aiohttp_client(
        create_app(replace(settings, redis_url=own_redis.url)), headers=BROWSER
    )
    await put_catalog(client, [product_row("sku-1"), product_row("sku-2")])
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    await learn_all(client)  # sku-1 is popular, in the process's market cache
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        for placement, item in (("home", ""), ("cart", ""), ("product", "sku-2"), ("trending", "")):
            started = time.monotonic()
            params = {"a": SHOP, "placement": placement, **({"item": item} if item else {})}
            response = await client.get("/recs.json", params=params)
            assert response.status == 200, placement
            body = await response.json()
            assert body["personalised"] is False
            assert [p["id"] for p in body["products"]] == ["sku-1"]
            assert time.monotonic() - started < 1.0  # the Redis deadline, not a socket timeout
    finally:
        own_redis.process.send_signal(signal.SIGCONT)


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
