"""The in-process neighbour-list cache against a real Redis: one fetch per list however many
decisions want it, stale lists served (and refreshed once) instead of stalling decisions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adserver.core.lessons import LearningConfig
from adserver.core.shopper import AdvertiserHistory, Shopper
from adserver.learning.related import NeighbourCache, RankingConfig
from adserver.runtime.embedded_redis import free_port
from adserver.store import RedisError, Store, connect, keys
from adserver.store.learning import LearningStore
from tests.conftest import SHOP

CONFIG = LearningConfig(half_life_days=0)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(connect(redis_url))
    yield store
    await store.close()


async def neighbours_of(store: Store, item: str, **weights: float) -> None:
    await store.redis.delete(keys.co_viewed(SHOP, item))
    await store.redis.zadd(keys.co_viewed(SHOP, item), weights)
    await store.redis.zadd(keys.popular(SHOP), {item: 1.0, **dict.fromkeys(weights, 1.0)})


def viewer(*items: str) -> Shopper:
    return Shopper("u" * 22, (AdvertiserHistory(SHOP, 0.0, viewed=items),))


def cache_over(store: Store, ttl: float = 5.0) -> NeighbourCache:
    ranking = RankingConfig(session_boost=0.0)
    return NeighbourCache(LearningStore(store.redis, CONFIG), ranking, ttl=ttl)


async def test_decisions_wanting_the_same_list_at_once_fetch_it_once(store: Store) -> None:
    await neighbours_of(store, "a", b=2.0, c=1.0)
    cache = cache_over(store)
    assert cache.cached_suggestions(viewer("a")) is None  # never fetched: must wait for it
    answers = await asyncio.gather(*(cache.suggest(viewer("a")) for _ in range(20)))
    assert cache.fetches == 1
    assert {answer[SHOP].related for answer in answers} == {("b", "c")}
    cached = cache.cached_suggestions(viewer("a"))
    assert cached is not None and cached[SHOP].related == ("b", "c")


async def test_an_expired_list_is_served_while_one_refresh_replaces_it(store: Store) -> None:
    await neighbours_of(store, "a", b=2.0, c=1.0)
    cache = cache_over(store, ttl=0.05)
    await cache.suggest(viewer("a"))
    await neighbours_of(store, "a", c=5.0, b=1.0)  # the model moved on
    await asyncio.sleep(0.1)
    stale = [cache.cached_suggestions(viewer("a")) for _ in range(10)]
    assert all(s is not None and s[SHOP].related == ("b", "c") for s in stale)
    for _ in range(100):  # the one background refresh lands
        await asyncio.sleep(0.01)
        fresh = cache.cached_suggestions(viewer("a"))
        if fresh is not None and fresh[SHOP].related == ("c", "b"):
            break
    else:
        pytest.fail("the expired list was never refreshed")
    assert cache.fetches == 2


async def test_cached_lists_keep_serving_while_redis_is_unreachable(store: Store) -> None:
    await neighbours_of(store, "a", b=2.0)
    cache = cache_over(store, ttl=0.05)
    await cache.suggest(viewer("a"))
    dead = connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    cache.learning = LearningStore(dead, CONFIG)
    try:
        await asyncio.sleep(0.1)
        for _ in range(3):
            served = cache.cached_suggestions(viewer("a"))
            assert served is not None and served[SHOP].related == ("b",)
            await asyncio.sleep(0.3)  # refreshes fail in the background, quietly
        with pytest.raises((RedisError, OSError)):
            await cache.suggest(viewer("z"))  # a list never fetched cannot be made up
    finally:
        await dead.aclose()
