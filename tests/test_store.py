"""Store contract, against a real Redis: layout, TTLs, caps, one round trip reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from adserver.core.shopper import LineItem, ShopperEvent
from adserver.store import Placement, Store, StoreLimits, connect

UID = "A" * 22


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(connect(redis_url), StoreLimits(lookback_seconds=3600, max_views=5))
    yield store
    await store.close()


def view(*skus: str) -> ShopperEvent:
    return ShopperEvent("shop1", "view", skus)


async def test_views_are_newest_first_deduplicated_and_capped(store: Store) -> None:
    for n, sku in enumerate(["a", "b", "c", "a", "d", "e", "f", "g"]):
        await store.record_events(UID, [view(sku)], now=1000 + n)
    shopper = await store.load_shopper(UID, now=1010)
    assert shopper.histories[0].viewed == ("g", "f", "e", "d", "a")


async def test_every_per_user_key_expires_with_the_lookback(store: Store) -> None:
    purchase = ShopperEvent("shop1", "purchase", ("a",), order="o1", lines=(LineItem("a"),))
    cart = ShopperEvent("shop1", "cart", ("b",))
    await store.record_events(UID, [view("a"), cart, purchase])
    user_keys = [k async for k in store.redis.scan_iter(match=f"u:{{{UID}}}:*")]
    assert len(user_keys) >= 4
    for key in user_keys:
        ttl = await store.redis.ttl(key)
        assert 0 < ttl <= 3600, key


async def test_every_per_user_key_of_delivery_counting_expires(store: Store) -> None:
    """An impression (caps, last touch), a click and attributed purchases past the daily cap
    of browser-reported conversions (counted on the shopper's facts) write per-user keys too."""
    placement = Placement("shop1", "c1", "news1", "recent", "300x250")
    await store.ledger.record_impression(UID, placement, ["a"])
    await store.ledger.record_click(UID, placement, "a", token_id="t1")
    orders = [
        ShopperEvent("shop1", "purchase", ("a",), order=f"o{n}", lines=(LineItem("a"),))
        for n in range(8)
    ]
    assert len(await store.record_events(UID, orders)) == store.limits.browser_conversions_per_day
    user_keys = [k async for k in store.redis.scan_iter(match=f"u:{{{UID}}}:*")]
    assert len(user_keys) >= 5
    for key in user_keys:
        ttl = await store.redis.ttl(key)
        assert 0 < ttl <= store.limits.click_window_seconds, key


async def test_all_keys_of_a_user_share_one_hash_slot(store: Store) -> None:
    await store.record_events(UID, [view("a"), ShopperEvent("shop2", "cart", ("b",))])
    user_keys = [k.decode() async for k in store.redis.scan_iter(match="u:*")]
    assert len(user_keys) == 4  # advertisers, shop1 views, shop2 cart, shop2 facts
    for key in user_keys:
        # Redis Cluster hashes only the first {...} section: it must be the uid.
        assert key[key.index("{") + 1 : key.index("}")] == UID


async def test_views_older_than_the_lookback_are_ignored(store: Store) -> None:
    await store.record_events(UID, [view("old")], now=1000)
    await store.record_events(UID, [view("new")], now=1000 + 3000)
    shopper = await store.load_shopper(UID, now=1000 + 3700)
    assert shopper.histories[0].viewed == ("new",)


async def test_purchase_clears_the_cart_and_is_deduplicated(store: Store) -> None:
    await store.record_events(UID, [ShopperEvent("shop1", "cart", ("a", "b"))])
    purchase = ShopperEvent("shop1", "purchase", ("a",), order="o1")
    await store.record_events(UID, [purchase, purchase])
    shopper = await store.load_shopper(UID)
    assert shopper.histories[0].cart == ()
    assert shopper.histories[0].purchased == {"a"}


async def test_events_reach_the_stream_for_workers(store: Store) -> None:
    await store.record_events(UID, [view("a"), ShopperEvent("shop1", "home")], now=5)
    events = await store.read_events()
    assert [(e["uid"], e["event"], e["items"], e["ts"]) for e in events] == [
        (UID, "view", ["a"], 5000),
        (UID, "home", [], 5000),
    ]


async def test_shopper_is_read_in_one_round_trip(store: Store) -> None:
    await store.record_events(UID, [view("a"), ShopperEvent("shop2", "view", ("b",))])
    await store.load_shopper(UID)  # the script is loaded now
    before = await store.redis.info("commandstats")
    await store.load_shopper(UID)
    after = await store.redis.info("commandstats")
    called = {
        name.removeprefix("cmdstat_")
        for name, stats in after.items()
        if stats["calls"] > before.get(name, {"calls": 0})["calls"]
    }
    # One EVALSHA from the client; the rest ran inside the script (and INFO took the reading).
    assert "evalsha" in called
    assert called <= {"evalsha", "zrevrangebyscore", "zrevrange", "hmget", "hget", "info"}
    assert after["cmdstat_evalsha"]["calls"] - before["cmdstat_evalsha"]["calls"] == 1


async def test_a_redis_that_lost_its_scripts_still_gets_every_event_once(store: Store) -> None:
    await store.record_events(UID, [view("a")])
    await store.redis.script_flush()  # what a Redis restart does to the script cache
    await store.record_events(UID, [view("b"), view("c")])
    await store.redis.script_flush()  # and the profile read finds its script gone too
    shopper = await store.load_shopper(UID)
    assert shopper.histories[0].viewed[:3] == ("c", "b", "a")
    assert [e["items"] for e in await store.read_events()] == [["a"], ["b"], ["c"]]


async def test_an_event_write_is_one_round_trip(store: Store) -> None:
    await store.record_events(UID, [view("a")])  # the script is loaded now
    before = await store.redis.info("commandstats")
    await store.record_events(UID, [view("b"), view("c")])
    after = await store.redis.info("commandstats")
    assert "cmdstat_script|exists" not in after or after["cmdstat_script|exists"] == before.get(
        "cmdstat_script|exists"
    )
    # Two profile scripts and one stream append (the write's events of one shard, once).
    assert after["cmdstat_evalsha"]["calls"] - before["cmdstat_evalsha"]["calls"] == 3


def test_packed_commands_are_what_redis_py_sends() -> None:
    from redis.asyncio.connection import Connection

    from adserver.store.base import pack

    command = ("EVALSHA", "a" * 40, 2, "u:{x}:a", "ключ", 1700000000000, "", b'{"d":"\xc3\xa9"}')
    assert pack(command) == b"".join(Connection().pack_command(*command))
    # What redis-py refuses to encode goes as its text.
    assert pack(("HINCRBYFLOAT", "k", "f", Decimal("1.50"))) == pack(
        ("HINCRBYFLOAT", "k", "f", "1.50")
    )
