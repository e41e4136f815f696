"""The value refresh against a real Redis (and a cluster): the buyers' index it samples, the
repeat gaps it learns replenishment from, what it writes back, forgetting, and the segment
report built on it."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.core.value_segments import SEGMENTS, decode_standing
from adserver.delivery.reports import segment_rows
from adserver.http.app_keys import STORE
from adserver.store import Store, StoreLimits, connect, keys
from adserver.store.customer_values import STANDING_TTL_SECONDS, CustomerValues
from adserver.value.refresh import ValueRefresher, compute_standing
from tests.conftest import OTHER_TOKEN, SHOP
from tests.test_campaign_api import REPORT, auth

pytestmark = pytest.mark.cluster

DAY = 86400
LOOKBACK = 400 * DAY
NOW = time.time()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(connect(redis_url), StoreLimits(lookback_seconds=LOOKBACK))
    yield store
    await store.close()


@pytest.fixture
def values(store: Store) -> CustomerValues:
    return CustomerValues(store.redis, LOOKBACK)


def uid(n: int) -> str:
    return f"u{n:021d}"


async def buy(
    values: CustomerValues, n: int, orders: int, days_ago: float, gap: float = 30, shop: str = SHOP
) -> None:
    """Shopper n's orders, the last `days_ago`, `gap` days apart, 25.00 each; noted as the
    purchase wiring is to note them."""
    for k in range(orders):
        at = NOW - (days_ago + gap * (orders - 1 - k)) * DAY
        await values.record_order(uid(n), shop, f"o{k}", at, Decimal("25"))
        await values.note_buyer(uid(n), shop, at)


async def test_the_buyers_index_is_capped_trimmed_by_age_and_expires(
    values: CustomerValues, store: Store
) -> None:
    values.max_buyers = 5
    await values.note_buyer(uid(99), SHOP, NOW - LOOKBACK - DAY)  # older than the lookback
    for n in range(8):
        await values.note_buyer(uid(n), SHOP, NOW - (8 - n))
    key = keys.value_buyers(SHOP)
    kept = [m.decode() for m in await store.redis.zrange(key, 0, -1)]
    assert kept == [uid(n) for n in range(3, 8)]  # the newest five
    assert LOOKBACK - 5 <= await store.redis.ttl(key) <= LOOKBACK


async def test_the_sample_draws_without_repeats_and_drops_buyers_without_a_record(
    values: CustomerValues, store: Store
) -> None:
    for n in range(30):
        await buy(values, n, 1, 10)
    await values.note_buyer(uid(500), SHOP, NOW)  # no record: expired, or erased
    sample = await values.sample(SHOP, 10)
    gone = 10 - len(sample.records)  # the draw may hold the buyer without a record
    assert gone in (0, 1) and sample.indexed == 31 - gone
    whole = await values.sample(SHOP, 1000)
    assert len(whole.records) == 30 and whole.indexed == 30
    assert await store.redis.zscore(keys.value_buyers(SHOP), uid(500)) is None
    assert (await values.sample("nobody", 10)).records == ()


async def test_repeat_gaps_are_bounded_and_old_ones_dropped(
    values: CustomerValues, store: Store
) -> None:
    values.max_repeat_gaps = 3
    for n in range(3):
        assert await values.note_repeat(uid(n), SHOP, "soap", 30 + n, NOW)
    assert not await values.note_repeat(uid(3), SHOP, "soap", 30, NOW)  # full
    assert await values.note_repeat(uid(0), SHOP, "soap", 28, NOW)  # an update is fine
    assert await values.note_repeat(uid(1), SHOP, "soap", 31, NOW - LOOKBACK - 2 * DAY)
    today = int(NOW // DAY)
    assert sorted(await values.repeat_gaps(SHOP, today)) == [
        (uid(0), "soap", 28.0),
        (uid(2), "soap", 32.0),
    ]
    assert await store.redis.hlen(keys.value_repeat_gaps(SHOP)) == 2  # the old one deleted


async def test_forgetting_a_shopper_takes_them_out_of_the_index_and_the_gaps(
    values: CustomerValues, store: Store
) -> None:
    await buy(values, 1, 2, 5)
    await values.note_repeat(uid(1), SHOP, "soap", 30, NOW)
    await values.note_repeat(uid(1), SHOP, "razor", 30, NOW)
    await values.note_repeat(uid(1) + "x", SHOP, "soap", 30, NOW)  # a uid it is the prefix of
    await values.note_buyer(uid(2), SHOP, NOW)
    await store.forget(uid(1), [SHOP])
    members = [m.decode() for m in await store.redis.zrange(keys.value_buyers(SHOP), 0, -1)]
    assert members == [uid(2)]
    today = int(NOW // DAY)
    assert await values.repeat_gaps(SHOP, today) == [(uid(1) + "x", "soap", 30.0)]
    assert await values.read(uid(1), SHOP) is None


async def test_the_refresh_writes_the_standing_and_intervals_once_per_lease(
    values: CustomerValues, store: Store
) -> None:
    for n in range(60):
        await buy(values, n, 1 + n % 4, n % 50)
    for n in range(25):
        await values.note_repeat(uid(n), SHOP, "soap", 28 + n % 5, NOW)
    for n in range(5):  # five shoppers rebuying tents are not enough to learn an interval
        await values.note_repeat(uid(n), SHOP, "tent", 300, NOW)
    refresher = ValueRefresher(values, lambda: [SHOP, "empty-shop"], every_seconds=3600)
    done = await refresher.step(NOW)
    assert [d.advertiser for d in done] == [SHOP, "empty-shop"]
    assert done[0].standing.sampled == 60 and done[0].indexed == 60
    standing = await values.read_standing(SHOP)
    assert standing is not None and standing == decode_standing(
        await store.redis.get(keys.value_standing(SHOP))
    )
    assert standing.sampled == 60 and len(standing.model) == 7
    assert standing.typical_interval == 30.0
    assert await values.read_intervals(SHOP) == {"soap": 30.0}
    for key in (keys.value_standing(SHOP), keys.replenishment_intervals(SHOP)):
        assert STANDING_TTL_SECONDS - 5 <= await store.redis.ttl(key) <= STANDING_TTL_SECONDS
    empty = await values.read_standing("empty-shop")
    assert empty is not None and empty.sampled == 0 and empty.model == ()
    assert await refresher.step(NOW) == []  # another process (or this one) did it this hour
    records = (await values.sample(SHOP, 1000)).records
    computed = compute_standing(records, int(NOW // DAY)).cuts
    assert standing.cuts.recency == pytest.approx(computed.recency)
    assert (standing.cuts.frequency, standing.cuts.monetary) == (
        computed.frequency,
        computed.monetary,
    )


async def test_a_standing_that_is_not_one_reads_as_none(
    values: CustomerValues, store: Store
) -> None:
    await store.redis.set(keys.value_standing(SHOP), "garbage")
    await store.redis.hset(keys.replenishment_intervals(SHOP), mapping={"a": "x", "b": "-1"})
    assert await values.read_standing(SHOP) is None
    assert await values.read_intervals(SHOP) == {}


# -- GET /report?by=segment ------------------------------------------------------------------


async def segment_report(client: TestClient[Any, Any], **params: str) -> Any:
    response = await client.get(REPORT, params={"by": "segment", **params}, headers=auth())
    assert response.status == 200, await response.text()
    return await response.json()


async def test_the_segment_report_counts_customers_revenue_shares_and_conversions(
    client: TestClient[Any, Any],
) -> None:
    values = client.app[STORE].values
    for n in range(10):  # ten loyal-ish repeat buyers, recent: 4 orders each
        await buy(values, n, 4, 2)
    for n in range(10, 40):  # thirty one-time buyers long ago
        await buy(values, n, 1, 300)
    await buy(values, 77, 3, 1, shop="shop2")  # another shop's customer: not counted
    body = await segment_report(client)
    assert (body["buyers"], body["sampled"]) == (40, 40)
    assert body["cut_points"]["from"] == "sample"
    rows = {row["segment"]: row for row in body["rows"]}
    assert list(rows) == list(SEGMENTS)
    assert sum(r["customers"] for r in rows.values()) == 40
    assert sum(r["conversions"] for r in rows.values()) == 10 * 4 + 30
    assert sum(Decimal(r["revenue"]) for r in rows.values()) == Decimal("1750.00")
    top = rows["champions"]
    assert (top["customers"], top["conversions"], top["revenue"]) == (10, 40, "1000.00")
    assert top["customer_share"] == 25.0 and top["revenue_share"] == pytest.approx(57.14)
    assert rows["lost"]["customers"] + rows["hibernating"]["customers"] == 30

    refresher = ValueRefresher(values, lambda: [SHOP])
    await refresher.refresh(SHOP)
    after = await segment_report(client)
    assert after["cut_points"]["from"] == "refresh"
    assert after["rows"] == body["rows"]


async def test_the_segment_report_as_csv_and_for_another_advertisers_token(
    client: TestClient[Any, Any],
) -> None:
    await buy(client.app[STORE].values, 1, 2, 3)
    response = await client.get(REPORT, params={"by": "segment", "format": "csv"}, headers=auth())
    assert response.status == 200 and response.content_type == "text/csv"
    table = list(csv.reader(io.StringIO(await response.text())))
    assert table[0] == [
        "segment",
        "customers",
        "customer_share",
        "conversions",
        "revenue",
        "revenue_share",
        "predicted_12m_revenue",
    ]
    assert len(table) == 1 + len(SEGMENTS)
    assert all(row[-1] == "" for row in table[1:])  # no fit before a refresh: empty, not 0
    assert sum(int(row[1]) for row in table[1:]) == 1
    forbidden = await client.get(REPORT, params={"by": "segment"}, headers=auth(OTHER_TOKEN))
    assert forbidden.status == 403
    empty = await client.get(
        "/api/v1/advertisers/shop2/report", params={"by": "segment"}, headers=auth(OTHER_TOKEN)
    )
    assert empty.status == 200
    assert sum(r["customers"] for r in (await empty.json())["rows"]) == 0


async def test_after_a_fitted_refresh_the_report_predicts_each_segments_next_12_months(
    client: TestClient[Any, Any],
) -> None:
    values = client.app[STORE].values
    # 60 buyers (a fit needs 50) within the client's lookback: 1 to 5 orders, the last 1 to 28
    # days ago
    for n in range(60):
        await buy(values, n, 1 + n % 5, 1 + (n * 7) % 28, gap=1 + n % 3)
    before = await segment_report(client)
    assert all(row["predicted_12m_revenue"] is None for row in before["rows"])

    done = await ValueRefresher(values, lambda: [SHOP], fit_in="thread").refresh(SHOP)
    assert len(done.standing.model) == 7
    after = await segment_report(client)
    today = int(time.time() // DAY)
    sample = await values.sample(SHOP, 100)
    assert after["rows"] == segment_rows(sample.records, done.standing, today)
    predicted = {row["segment"]: Decimal(row["predicted_12m_revenue"]) for row in after["rows"]}
    assert sum(predicted.values()) > 0
    # recent repeat buyers are worth more per head next year than the long-lost ones
    heads = {row["segment"]: row["customers"] for row in after["rows"]}
    assert heads["champions"] and heads["lost"], heads
    assert predicted["champions"] / heads["champions"] > predicted["lost"] / heads["lost"]
