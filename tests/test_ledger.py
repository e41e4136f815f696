"""Delivery accounting against a real Redis: caps per UTC day, attribution windows."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from decimal import Decimal

import pytest
import redis

from adserver.buffering.buffered_writer import EventWriter
from adserver.config.redis_url import is_cluster_url, parse_cluster_url
from adserver.core.shopper import ShopperEvent
from adserver.store import Placement, Store, StoreLimits, connect, keys
from adserver.store.ledger import Shown

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

UID = "B" * 22
DAY = 86400.0
NOON = 1_795_089_600.0  # 2026-11-19 12:00 UTC
PLACEMENT = Placement("shop1", "c1", "news1", "recent", "300x250")


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(
        connect(redis_url),
        StoreLimits(click_window_seconds=int(30 * DAY), view_window_seconds=int(DAY)),
    )
    yield store
    await store.close()


async def purchase(store: Store, order: str, at: float) -> list[object]:
    event = ShopperEvent(
        "shop1", "purchase", ("sku-1",), order=order, revenue=Decimal("20"), currency="EUR"
    )
    return list(await store.record_events(UID, [event], now=at))


async def caps_at(store: Store, at: float) -> dict[str, int]:
    await store.record_events(UID, [ShopperEvent("shop1", "view", ("sku-1",))], now=at)
    shopper = await store.load_shopper(UID, now=at)
    return dict(shopper.histories[0].caps)


async def test_frequency_counters_count_today_and_reset_the_next_day(store: Store) -> None:
    for _ in range(3):
        await store.ledger.record_impression(UID, PLACEMENT, ["sku-1", "sku-2"], NOON)
    assert await caps_at(store, NOON + 60) == {"c:c1": 3, "i:sku-1": 3, "i:sku-2": 3}
    assert await caps_at(store, NOON + DAY) == {}
    await store.ledger.record_impression(UID, PLACEMENT, ["sku-1"], NOON + DAY)
    assert await caps_at(store, NOON + DAY + 60) == {"c:c1": 1, "i:sku-1": 1}


async def test_purchase_within_the_click_window_is_attributed_to_the_click(store: Store) -> None:
    await store.ledger.record_impression(UID, PLACEMENT, ["sku-1"], NOON)
    await store.ledger.record_click(UID, PLACEMENT, "sku-1", NOON)
    [conversion] = await purchase(store, "o1", NOON + 29 * DAY)
    assert conversion.touch == "click" and conversion.campaign == "c1"  # type: ignore[attr-defined]


async def test_after_the_click_window_nothing_is_attributed(store: Store) -> None:
    await store.ledger.record_click(UID, PLACEMENT, "sku-1", NOON)
    assert await purchase(store, "o1", NOON + 31 * DAY) == []


async def test_impression_within_the_view_window_is_attributed_as_a_view(store: Store) -> None:
    await store.ledger.record_impression(UID, PLACEMENT, ["sku-1"], NOON)
    [conversion] = await purchase(store, "o1", NOON + 0.5 * DAY)
    assert conversion.touch == "view"  # type: ignore[attr-defined]
    assert await purchase(store, "o2", NOON + 1.5 * DAY) == []


async def test_an_order_is_a_conversion_once(store: Store) -> None:
    await store.ledger.record_click(UID, PLACEMENT, "sku-1", NOON)
    assert len(await purchase(store, "o1", NOON + 60)) == 1
    assert await purchase(store, "o1", NOON + 120) == []
    day = "20261119"
    stats = (await store.ledger.daily_stats("shop1", [day]))[day]
    key = PLACEMENT.key
    assert stats[f"conv\t{key}"] == 1 and stats[f"revenue\t{key}"] == Decimal(20)


async def test_purchase_facts_feed_the_audiences(store: Store) -> None:
    await purchase(store, "o1", NOON)
    await purchase(store, "o2", NOON + 60)
    await store.record_events(UID, [ShopperEvent("shop1", "cart", ("sku-9",))], NOON + 90)
    history = (await store.load_shopper(UID, now=NOON + 120)).histories[0]
    assert (history.orders, history.revenue) == (2, Decimal(40))
    assert history.cart_since == pytest.approx(NOON + 90)


@contextmanager
def without_the_ledger(redis_url: str) -> Iterator[str]:
    """A URL for a Redis user who may write shoppers' profiles (with the erasure mark the
    profile script reads, `fg:`) and the event stream but not the advertisers' ledger (as if
    the conversion's round trip failed); removed afterwards."""
    name, password = f"no-ledger-{secrets.token_hex(4)}", secrets.token_hex(8)
    if is_cluster_url(redis_url):  # every node checks the commands it runs
        clients = [redis.Redis(host=h, port=p) for h, p in parse_cluster_url(redis_url).nodes]
    else:
        clients = [redis.Redis.from_url(redis_url)]
    scheme, _, hosts = redis_url.partition("://")
    try:
        for client in clients:
            client.acl_setuser(
                name, enabled=True, passwords=[f"+{password}"], keys=["u:*", "fg:*", "ev:*"],
                commands=["+@all"],
            )  # fmt: skip
        yield f"{scheme}://{name}:{password}@{hosts}"
    finally:
        for client in clients:
            with closing(client):
                client.acl_deluser(name)


async def test_a_purchase_replayed_after_its_conversion_failed_is_counted_once(
    store: Store, redis_url: str
) -> None:
    """The profile write succeeds, the conversion's round trip fails: the event writer keeps
    the event and replays it, and the replay counts the conversion (once, however often)."""
    await store.ledger.record_click(UID, PLACEMENT, "sku-1", NOON)
    event = ShopperEvent(
        "shop1", "purchase", ("sku-1",), order="o1", revenue=Decimal("20"), currency="EUR"
    )
    with without_the_ledger(redis_url) as limited_url:
        limited = Store(connect(limited_url), store.limits)
        writes_to = [limited]
        writer = EventWriter(lambda batch: writes_to[-1].record_many(batch), deadline=5.0)
        try:
            assert not await writer.write([(UID, event, NOON + 60)])
        finally:
            await limited.close()
    assert len(writer.buffer) == 1  # the writer keeps it for a replay
    history = (await store.load_shopper(UID, now=NOON + 120)).histories[0]
    assert (history.orders, history.bought) == (1, ("sku-1",))  # the profile was written
    day = "20261119"
    conv = f"conv\t{PLACEMENT.key}"
    assert conv not in (await store.ledger.daily_stats("shop1", [day]))[day]  # not counted yet
    writes_to.append(store)  # the ledger answers again
    assert await writer.drain() == 0
    assert await store.record_many([(UID, event, NOON + 60)]) == []  # and once more: no change
    stats = (await store.ledger.daily_stats("shop1", [day]))[day]
    assert (stats[conv], stats[f"revenue\t{PLACEMENT.key}"]) == (1, Decimal(20))
    history = (await store.load_shopper(UID, now=NOON + 120)).histories[0]
    assert (history.orders, history.revenue) == (1, Decimal(20))  # the profile counted it once
    totals = await store.ledger.campaign_totals(["shop1"])
    assert totals["shop1"]["conv:c1"] == 1


async def test_an_order_in_the_old_set_of_orders_is_still_deduplicated_and_forgotten(
    store: Store,
) -> None:
    legacy = keys.user_orders_legacy(UID, "shop1")
    await store.redis.sadd(legacy, "o1")  # written before orders kept their attribution
    await store.ledger.record_click(UID, PLACEMENT, "sku-1", NOON)
    assert await purchase(store, "o1", NOON + 60) == []
    history = (await store.load_shopper(UID, now=NOON + 120)).histories[0]
    assert (history.orders, history.bought) == (0, ())
    await store.forget(UID, ["shop1"])
    assert not await store.redis.exists(legacy)


async def test_a_batch_of_impressions_counts_each_and_survives_a_lost_script_cache(
    store: Store,
) -> None:
    other = Placement("shop1", "c2", "news2", "related", "728x90")
    await store.redis.script_flush()  # what a Redis restart (or a failover) does
    served = [Shown(UID, PLACEMENT, ("sku-1",), NOON), Shown(UID, PLACEMENT, ("sku-2",), NOON)]
    served += [Shown(None, PLACEMENT, ("sku-1",), NOON), Shown(UID, other, ("sku-1",), NOON)]
    await store.ledger.record_shown(served)
    stats = (await store.ledger.daily_stats("shop1", ["20261119"]))["20261119"]
    assert stats[f"imp\t{PLACEMENT.key}"] == 3 and stats[f"imp\t{other.key}"] == 1
    assert await caps_at(store, NOON + 60) == {"c:c1": 2, "c:c2": 1, "i:sku-1": 2, "i:sku-2": 1}
    totals = await store.ledger.campaign_totals(["shop1"])
    assert totals["shop1"]["imp:c1"] == 3 and totals["shop1"]["imp:c2"] == 1
