"""The related-items worker against a real Redis: learning, restarts, ranking, the ad."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.core.lessons import LearningConfig
from adserver.core.shopper import ShopperEvent
from adserver.learning.related import NeighbourCache, RankingConfig
from adserver.learning.worker import RelatedWorker
from adserver.store import Store, connect, keys
from adserver.store.learning import LearningStore
from tests.conftest import SHOP, learn_all, sell

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

CONFIG = LearningConfig(half_life_days=0)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(connect(redis_url))
    await sell(store, SHOP, [*"abcd", *(f"sku-{n}" for n in range(1, 51))])  # what is learnt
    yield store
    await store.close()


def worker_for(store: Store, name: str = "w1") -> RelatedWorker:
    return RelatedWorker(LearningStore(store.redis, CONFIG), consumer=name, batch_size=2)


async def shopper_views(store: Store, uid: str, *items: str) -> None:
    start = time.time()
    for n, item in enumerate(items):
        await store.record_events(uid, [ShopperEvent(SHOP, "view", (item,))], now=start + n)


async def co_viewed(store: Store, item: str) -> dict[str, float]:
    lists = await LearningStore(store.redis, CONFIG).neighbours([("viewed", SHOP, item)], 10)
    return {sku: weight for sku, weight, _ in lists[("viewed", SHOP, item)].neighbours}


async def test_worker_learns_neighbours_and_popularity(store: Store) -> None:
    await shopper_views(store, "u" * 22, "a", "b")
    await shopper_views(store, "v" * 22, "a", "b", "c")
    assert await worker_for(store).drain() == 5
    assert await co_viewed(store, "a") == {"b": 2.0, "c": pytest.approx(0.6309, abs=1e-4)}
    snapshot = await store.catalog_snapshot([SHOP])
    assert snapshot.popular[SHOP][:2] == ["b", "a"] or snapshot.popular[SHOP][:2] == ["a", "b"]


async def test_learning_twice_from_the_same_stream_counts_once(store: Store) -> None:
    await shopper_views(store, "u" * 22, "a", "b")
    await worker_for(store).drain()
    await worker_for(store).drain()  # a restart: the group remembers what was acknowledged
    assert await co_viewed(store, "a") == {"b": 1.0}


async def test_a_batch_read_but_not_applied_is_redone_after_a_crash(store: Store) -> None:
    await shopper_views(store, "u" * 22, "a", "b", "c")
    crashed = worker_for(store, "w1")
    await crashed.learning.ensure_group()
    shard = keys.event_shard("u" * 22)
    read = await crashed.learning.read_batches([shard], 2)  # read, then "crash" before apply
    assert len(read[shard]) == 2
    assert await co_viewed(store, "a") == {}
    restarted = worker_for(store, "w2")
    assert await restarted.drain() == 3  # the pending two first, then the third
    assert restarted.learnt == 3
    assert (await co_viewed(store, "a"))["b"] == 1.0
    assert await restarted.learning.backlog() == 0


async def test_ranking_merges_recent_items_and_boosts_the_shoppers_own(store: Store) -> None:
    await shopper_views(store, "u" * 22, "a", "b")
    await shopper_views(store, "v" * 22, "c", "d")
    await worker_for(store).drain()
    cache = NeighbourCache(LearningStore(store.redis, CONFIG), RankingConfig())
    await shopper_views(store, "w" * 22, "c", "a")
    suggestions = await cache.suggest(await store.load_shopper("w" * 22))
    # own items first (newest first), then the neighbours of the newest item before older ones
    assert suggestions[SHOP].related == ("a", "c", "b", "d")


async def test_fresh_shopper_sees_related_items_after_one_view(
    stocked: TestClient[Any, Any],
) -> None:
    for sku in ("sku-1", "sku-4"):
        await stocked.get("/px", params={"a": SHOP, "e": "view", "i": sku})
    stocked.session.cookie_jar.clear()
    await learn_all(stocked)
    await stocked.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    response = await stocked.get("/ad.json", params={"pub": "news1", "size": "728x90"})
    products = (await response.json())["products"]
    assert [(p["id"], p["strategy"]) for p in products[:2]] == [
        ("sku-1", "recent"),
        ("sku-4", "related"),
    ]


async def test_buyer_sees_what_others_bought_with_it(stocked: TestClient[Any, Any]) -> None:
    purchase = {"a": SHOP, "e": "purchase", "i": "sku-1,sku-2", "o": "o-1", "v": "9", "cur": "EUR"}
    await stocked.get("/px", params=purchase)
    stocked.session.cookie_jar.clear()
    await learn_all(stocked)
    await stocked.get("/px", params={**purchase, "i": "sku-1", "o": "o-2"})
    response = await stocked.get("/ad.json", params={"pub": "news1", "size": "320x50"})
    products = (await response.json())["products"]
    assert [(p["id"], p["strategy"]) for p in products] == [("sku-2", "cross_sell")]


async def test_a_shopper_with_50_views_takes_at_most_2_kib_of_redis(store: Store) -> None:
    """DESIGN.md's budget, for everything kept about the shopper: profile and learner state."""
    uid = "m" * 22
    start = time.time()
    events = [ShopperEvent(SHOP, "view", (f"sku-{n}",)) for n in range(1, 51)]
    await store.record_many([(uid, event, start + n) for n, event in enumerate(events)])
    await worker_for(store).drain()
    names = [k async for k in store.redis.scan_iter(match=f"u:{{{uid}}}:*")]
    assert any(b":wv:" in k for k in names) and any(b":wk:" in k for k in names)
    sizes = [await store.redis.memory_usage(k, samples=0) or 0 for k in names]
    assert sum(sizes) <= 2048, dict(zip(names, sizes, strict=True))
