"""The value record in Redis: `CustomerValues` against a real server (and a cluster), its Lua
held to the pure `with_order`."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from adserver.core.value_record import MAX_ENCODED, ValueRecord, encode_record, with_order
from adserver.store import Store, StoreLimits, connect, keys
from adserver.store.customer_values import CustomerValues

pytestmark = pytest.mark.cluster

UID = "V" * 22
DAY = 86400
LOOKBACK = 30 * DAY
T0 = 1_795_089_600.0  # 2026-11-19 12:00 UTC, day 20776


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(connect(redis_url), StoreLimits(lookback_seconds=LOOKBACK))
    yield store
    await store.close()


@pytest.fixture
def values(store: Store) -> CustomerValues:
    return CustomerValues(store.redis, LOOKBACK)


async def test_orders_build_the_record_and_a_repeat_changes_nothing(
    values: CustomerValues,
) -> None:
    await values.record_order(UID, "shop1", "A-1", T0, Decimal("25.99"))
    await values.record_order(UID, "shop1", "A-2", T0 + 30 * DAY, Decimal("10"))
    again = await values.record_order(UID, "shop1", "A-2", T0 + 30 * DAY, Decimal("10"))
    kept = await values.read(UID, "shop1")
    assert kept == again
    assert kept is not None
    assert (kept.orders, kept.revenue_cents, kept.mean_interval) == (2, 3599, 30)
    assert kept.first_day == int(T0 // DAY)
    assert await values.read(UID, "shop2") is None


async def test_the_record_is_small_and_expires_with_the_lookback(
    values: CustomerValues, store: Store
) -> None:
    await values.record_order(UID, "shop1", "A-1", T0, Decimal("25.99"))
    key = keys.user_facts(UID, "shop1")
    raw = await store.redis.hget(key, keys.VALUE_FIELD)
    assert raw is not None and len(raw) <= MAX_ENCODED
    assert LOOKBACK - 5 <= await store.redis.ttl(key) <= LOOKBACK


async def test_the_script_folds_orders_exactly_as_with_order(values: CustomerValues) -> None:
    rng = random.Random(5)
    for shopper in range(20):
        uid = f"{shopper:022d}"
        expected: ValueRecord | None = None
        for n in range(rng.randint(1, 8)):
            order = f"o{rng.randint(0, 5)}"  # some ids come again, some right after themselves
            at = T0 + rng.uniform(-400, 400) * DAY
            revenue = Decimal(rng.randint(0, 10**7)) / 100
            expected = with_order(expected, int(at // DAY), int(revenue * 100), order)
            got = await values.record_order(uid, "shop1", order, at, revenue)
            assert got == expected, (shopper, n)
        assert expected is not None
        assert await values.read(uid, "shop1") == expected


async def test_forgetting_a_shopper_erases_the_record_and_refuses_older_orders(
    values: CustomerValues, store: Store
) -> None:
    await values.record_order(UID, "shop1", "A-1", T0, Decimal("5"))
    await store.forget(UID, ["shop1"])
    assert await values.read(UID, "shop1") is None
    late = await values.record_order(UID, "shop1", "A-0", time.time() - 60, Decimal("5"))
    assert late is None
    assert await values.read(UID, "shop1") is None


async def test_a_value_that_is_not_a_record_reads_as_none_and_starts_again(
    values: CustomerValues, store: Store
) -> None:
    await store.redis.hset(keys.user_facts(UID, "shop1"), keys.VALUE_FIELD, "not a record")
    assert await values.read(UID, "shop1") is None
    fresh = await values.record_order(UID, "shop1", "A-1", T0, Decimal("1.50"))
    assert fresh is not None and encode_record(fresh).startswith("1.")
    assert (fresh.orders, fresh.revenue_cents) == (1, 150)
