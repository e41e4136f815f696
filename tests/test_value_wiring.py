"""Customer value on the hot path (issue 16): purchases write the shopper's value record once
per order, from the pixel, the `/e` batch and the shop's postback alike."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.core.shopper import ShopperEvent
from adserver.core.value_prediction import model_of, predicted_cents
from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import ShopperValue, classify
from adserver.http.app_keys import MARKET, STORE
from adserver.store import Store, keys
from adserver.value.refresh import ValueRefresher
from tests.conftest import OPERATOR_TOKEN, SHOP, SHOP_TOKEN, counted, refresh_catalog, sell
from tests.test_campaign_api import auth, put_campaign, view
from tests.test_worker import worker_for

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}
DEBUG = {"pub": "news1", "size": "300x250", "debug": "1"}


def uid_of(client: TestClient[Any, Any]) -> str:
    return str(client.session.cookie_jar.filter_cookies(client.make_url("/"))["uid"].value)


async def record(client: TestClient[Any, Any]) -> ValueRecord | None:
    await counted(client)
    store: Store = client.app[STORE]
    return await store.values.read(uid_of(client), SHOP)


async def buy(client: TestClient[Any, Any], order: str, sku: str = "sku-1") -> None:
    params = {"a": SHOP, "e": "purchase", "o": order, "i": sku, "v": "19.90", "cur": "EUR"}
    response = await client.get("/px", params=params)
    assert response.status == 200


async def test_each_order_updates_the_value_record_once_whatever_the_path(
    stocked: TestClient[Any, Any],
) -> None:
    client = stocked
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})
    assert await record(client) is None  # a view writes no record
    await buy(client, "o-1")
    first = await record(client)
    assert first is not None and (first.orders, first.revenue_cents) == (1, 1990)
    await buy(client, "o-1")  # the same order again (a reload of the thank-you page)
    assert await record(client) == first
    response = await client.post(
        "/e",
        json={"events": [{"advertiser": SHOP, "event": "purchase", "order": "o-2",
                          "items": [{"id": "sku-2", "price": "19.90", "quantity": 2}],
                          "revenue": "39.80", "currency": "EUR"}]},
    )  # fmt: skip
    assert response.status < 300, await response.text()
    second = await record(client)
    assert second is not None and (second.orders, second.revenue_cents) == (2, 1990 + 3980)
    for order in ("o-3", "o-1"):  # a new order, then one the browser reported already
        response = await client.post(
            f"/api/v1/advertisers/{SHOP}/conversions",
            json={"uid": uid_of(client), "order": order, "revenue": "10", "currency": "EUR",
                  "items": ["sku-3"]},
            headers=AUTH,
        )  # fmt: skip
        assert response.status == 200, await response.text()
    third = await record(client)
    assert third is not None and (third.orders, third.revenue_cents) == (3, 1990 + 3980 + 1000)


async def test_a_replayed_write_folds_its_order_once(stocked: TestClient[Any, Any]) -> None:
    store: Store = stocked.app[STORE]
    uid, at = "R" * 22, 1_795_089_600.0
    purchase = ShopperEvent(SHOP, "purchase", ("sku-1",), order="r-1", revenue=Decimal("12.50"))
    entries = [(uid, purchase, at)]
    await store.record_many(entries, [("w-1", 1)])
    await store.record_many(entries, [("w-1", 1)])  # its answer was lost: sent again
    await store.record_many([(uid, purchase, at + 60)])  # and the same order a minute later
    kept = await store.values.read(uid, SHOP)
    assert kept is not None
    assert (kept.orders, kept.revenue_cents, kept.first_day) == (1, 1250, int(at // 86400))


async def test_purchases_fill_the_buyers_index_and_the_repeat_gaps(
    stocked: TestClient[Any, Any],
) -> None:
    store: Store = stocked.app[STORE]
    uid, day = "G" * 22, 86400.0
    at = time.time() - 25 * day

    def order(name: str, *skus: str) -> ShopperEvent:
        return ShopperEvent(SHOP, "purchase", skus, order=name, revenue=Decimal("5"))

    await store.record_many([(uid, order("g-1", "sku-1", "sku-2"), at)])
    assert (await store.values.sample(SHOP, 10)).indexed == 1
    assert await store.values.repeat_gaps(SHOP, int(at // day) + 25) == []
    await store.record_many([(uid, order("g-2", "sku-1", "sku-3"), at + 20 * day)])
    await store.record_many([(uid, order("g-2", "sku-1"), at + 21 * day)])  # seen: no gap
    await store.record_many([(uid, order("g-3", "sku-3"), at + 20.5 * day)])  # same day: none
    gaps = await store.values.repeat_gaps(SHOP, int(at // day) + 25)
    assert gaps == [(uid, "sku-1", 20.0)]
    sample = await store.values.sample(SHOP, 10)
    assert sample.indexed == 1 and [r.orders for r in sample.records] == [3]


async def test_the_profile_read_carries_the_record_and_the_purchase_days(
    stocked: TestClient[Any, Any],
) -> None:
    store: Store = stocked.app[STORE]
    uid, day = "L" * 22, 86400.0
    at = time.time() - 10 * day
    sold = ShopperEvent(SHOP, "purchase", ("sku-1",), order="l-1", revenue=Decimal("3"))
    viewed = ShopperEvent(SHOP, "view", ("sku-2",))
    await store.record_many([(uid, sold, at), (uid, viewed, at + day)])
    await store.record_many([(uid, sold, at + 2 * day)])  # the same order: nothing moves
    (history,) = (await store.load_shopper(uid)).histories
    assert history.bought == ("sku-1",) and history.viewed == ("sku-2",)
    assert [round(t) for t in history.bought_times] == [round(at)]
    assert history.value is not None
    assert (history.value.orders, history.value.last_day) == (1, int(at // day))
    await store.redis.hset(keys.user_facts(uid, SHOP), keys.VALUE_FIELD, "not a record")
    (history,) = (await store.load_shopper(uid)).histories
    assert history.value is None and history.orders == 1  # never made-up numbers
    only_viewed = "N" * 22
    await store.record_many([(only_viewed, viewed, at)])
    (history,) = (await store.load_shopper(only_viewed)).histories
    assert history.value is None and history.bought_times == ()


async def explain(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/ad.json", params=DEBUG, headers=auth(OPERATOR_TOKEN))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_after_purchases_and_the_refresh_segments_and_replenish_serve(
    stocked: TestClient[Any, Any],
) -> None:
    client = stocked
    store: Store = client.app[STORE]
    now, day = time.time(), 86400.0
    for n in range(20):  # 20 shoppers bought sku-1 twice, 10 days apart: its interval
        other = f"b{n:021d}"
        twice = [
            (other, ShopperEvent(SHOP, "purchase", ("sku-1",), order=f"{n}-{k}",
                                 revenue=Decimal("5")), now - (25 - 10 * k) * day)
            for k in range(2)
        ]  # fmt: skip
        await store.record_many(twice)
    await view(client, "sku-2")
    uid = uid_of(client)
    earlier = ShopperEvent(SHOP, "purchase", ("sku-1",), order="t-1", revenue=Decimal("50"))
    await store.record_many([(uid, earlier, now - 10 * day)])  # backdated: 10 days ago
    await buy(client, "t-2", "sku-3")  # and one today, through the pixel
    await put_campaign(client, "flat", bid={"type": "cpm", "amount": "1"})
    before = {c["campaign"]: c for c in (await explain(client))["explanation"]["campaigns"]}

    refreshed = await ValueRefresher(store.values, lambda: [SHOP], fit_in="thread").refresh(SHOP)
    assert refreshed.intervals == 1  # sku-1's, learnt from the 20 repeat buyers
    await refresh_catalog(client)  # the market cache reads the new standing and intervals
    market = client.app[MARKET]
    assert market.intervals(SHOP) == {"sku-1": 10.0}
    today = int(now // day)
    record = await store.values.read(uid, SHOP)
    name = classify(ShopperValue(record, market.standing(SHOP)), today).segment
    assert name is not None and record is not None and record.orders == 2
    response = await client.get(
        f"/api/v1/advertisers/{SHOP}/report", params={"by": "segment"}, headers=auth()
    )
    rows = {r["segment"]: r for r in (await response.json())["rows"]}
    assert sum(r["customers"] for r in rows.values()) == 21 and rows[name]["customers"] >= 1

    await put_campaign(
        client, "seg", who={"segments": [name]}, bid={"type": "cpm", "amount": "1"},
        bid_multipliers={name: 3},
    )  # fmt: skip
    await put_campaign(
        client, "again", what={"strategies": ["replenish"]}, bid={"type": "cpm", "amount": "9"}
    )
    await refresh_catalog(client)
    explained = await explain(client)
    considered = {c["campaign"]: c for c in explained["explanation"]["campaigns"]}
    assert "skipped" not in considered["seg"] and considered["seg"]["bid_factor"] == 3.0
    assert explained["strategy"] == "replenish" and explained["campaign"] == "again"
    assert [p["id"] for p in explained["products"]] == ["sku-1"]  # its interval has passed
    assert "bid_factor" not in before["flat"]

    client.session.cookie_jar.clear()  # another shopper, who only viewed
    await view(client, "sku-2")
    explained = await explain(client)
    considered = {c["campaign"]: c for c in explained["explanation"]["campaigns"]}
    assert considered["seg"].get("skipped") == "no value segment known"
    assert explained["campaign"] != "again" and explained["strategy"] != "replenish"


async def test_debug_shows_the_shoppers_predicted_12_month_value_once_the_models_are_fitted(
    stocked: TestClient[Any, Any],
) -> None:
    client = stocked
    store: Store = client.app[STORE]
    now, day = time.time(), 86400.0
    for n in range(60):  # 60 buyers (a fit needs 50): 1 to 4 orders, 3 days apart
        spent = Decimal(10 + n % 7)
        orders = [
            (f"b{n:021d}", ShopperEvent(SHOP, "purchase", ("sku-1",), order=f"{n}-{k}",
                                        revenue=spent), now - (2 + n % 9 + 3 * k) * day)
            for k in range(1 + n % 4)
        ]  # fmt: skip
        await store.record_many(orders)
    await view(client, "sku-2")
    earlier = ShopperEvent(SHOP, "purchase", ("sku-1",), order="t-1", revenue=Decimal("50"))
    await store.record_many([(uid_of(client), earlier, now - 6 * day)])
    await buy(client, "t-2", "sku-3")
    await put_campaign(client, "flat", bid={"type": "cpm", "amount": "1"})
    await refresh_catalog(client)
    before = (await explain(client))["explanation"]["campaigns"]
    assert before and all("predicted_12m_value" not in note for note in before)  # no standing

    done = await ValueRefresher(store.values, lambda: [SHOP], fit_in="thread").refresh(SHOP)
    assert len(done.standing.model) == 7
    await refresh_catalog(client)
    record = await store.values.read(uid_of(client), SHOP)
    assert record is not None and record.orders == 2
    cents = predicted_cents(model_of(client.app[MARKET].standing(SHOP)), record, int(now // day))
    assert cents is not None and cents > 0
    expected = str((Decimal(round(cents)) / 100).quantize(Decimal("0.01")))
    notes = {c["campaign"]: c for c in (await explain(client))["explanation"]["campaigns"]}
    assert notes["flat"]["predicted_12m_value"] == expected
    assert "segment" in notes["flat"]

    client.session.cookie_jar.clear()  # another shopper, who only viewed: no record, no value
    await view(client, "sku-2")
    notes = {c["campaign"]: c for c in (await explain(client))["explanation"]["campaigns"]}
    assert "predicted_12m_value" not in notes["flat"]


async def test_forgetting_or_opting_out_erases_the_record_and_the_index_entry(
    stocked: TestClient[Any, Any],
) -> None:
    client = stocked
    store: Store = client.app[STORE]
    await buy(client, "f-1")
    forgotten = uid_of(client)
    client.session.cookie_jar.clear()
    await buy(client, "f-2")
    opted_out = uid_of(client)
    assert (await store.values.sample(SHOP, 10)).indexed == 2
    response = await client.delete(f"/api/v1/users/{forgotten}", headers=auth(OPERATOR_TOKEN))
    assert response.status == 200, await response.text()
    assert await store.values.read(forgotten, SHOP) is None
    assert await store.values.read(opted_out, SHOP) is not None
    response = await client.get("/optout")
    assert response.status == 200, await response.text()
    assert await store.values.read(opted_out, SHOP) is None
    assert await store.redis.zcard(keys.value_buyers(SHOP)) == 0


async def test_the_value_record_costs_a_buyer_a_few_dozen_bytes_and_no_key(
    stocked: TestClient[Any, Any],
) -> None:
    """A buyer with 50 views, a cart and 3 orders (profile, orders, learner state): the value
    record is a field of their facts hash, not a key of its own (a string key's overhead was
    about 90 bytes more)."""
    store: Store = stocked.app[STORE]
    await sell(store, SHOP, [f"sku-{n}" for n in range(1, 51)])
    uid, start = "M" * 22, time.time() - 3600
    events: list[ShopperEvent] = [ShopperEvent(SHOP, "view", (f"sku-{n}",)) for n in range(1, 51)]
    events += [ShopperEvent(SHOP, "cart", ("sku-7",))]
    events += [
        ShopperEvent(SHOP, "purchase", (f"sku-{n}", f"sku-{n + 1}"), order=f"order-{n:08d}",
                     revenue=Decimal("123.45"))
        for n in (3, 5, 7)
    ]  # fmt: skip
    await store.record_many([(uid, event, start + n) for n, event in enumerate(events)])
    await worker_for(store).drain()
    names = [k async for k in store.redis.scan_iter(match=f"u:{{{uid}}}:*")]
    sizes = {k: await store.redis.memory_usage(k, samples=0) or 0 for k in names}
    total = sum(sizes.values())
    assert keys.user_value(uid, SHOP).encode() not in sizes  # the record is in the facts hash
    await store.redis.hdel(keys.user_facts(uid, SHOP), keys.VALUE_FIELD)
    without = await store.redis.memory_usage(keys.user_facts(uid, SHOP), samples=0) or 0
    record = sizes[keys.user_facts(uid, SHOP).encode()] - without
    print(f"buyer: {total} B in {len(sizes)} keys, of which the value record {record} B")
    assert record <= 48
