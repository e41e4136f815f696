"""Delivery accounting against a real Redis: caps per UTC day, attribution windows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from adserver.shopper import ShopperEvent
from adserver.store import Placement, Store, StoreLimits, connect

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
