"""The per-shopper value record: its update on an order and its short encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adserver.core.value_record import (
    MAX_CENTS,
    MAX_DAY,
    MAX_ENCODED,
    RecordError,
    ValueRecord,
    decode_record,
    encode_record,
    with_order,
)


def test_a_first_order_starts_the_record() -> None:
    record = with_order(None, 20_000, 2_599, "A-1")
    assert (record.first_day, record.last_day, record.orders, record.revenue_cents) == (
        20_000,
        20_000,
        1,
        2_599,
    )
    assert record.mean_interval is None


def test_orders_arriving_out_of_order_give_the_exact_mean_interval() -> None:
    record = None
    for day, order in ((20_030, "b"), (20_000, "a"), (20_090, "c")):  # a replay arrives late
        record = with_order(record, day, 1_000, order)
    assert record is not None
    assert (record.first_day, record.last_day, record.orders) == (20_000, 20_090, 3)
    assert record.mean_interval == pytest.approx((30 + 60) / 2)
    assert record.revenue_cents == 3_000


def test_the_same_order_applied_twice_in_a_row_counts_once() -> None:
    once = with_order(with_order(None, 20_000, 500, "A-1"), 20_010, 700, "A-2")
    assert with_order(once, 20_010, 700, "A-2") == once


def test_revenue_never_wraps_and_negative_revenue_adds_nothing() -> None:
    record = with_order(None, 20_000, MAX_CENTS, "a")
    record = with_order(record, 20_001, MAX_CENTS, "b")
    assert record.revenue_cents == MAX_CENTS
    assert with_order(record, 20_002, -50, "c").revenue_cents == MAX_CENTS


@given(
    first=st.integers(0, MAX_DAY),
    span=st.integers(0, MAX_DAY),
    orders=st.integers(1, 10**9),
    cents=st.integers(0, 10**20),
    order_ids=st.lists(st.text(min_size=1, max_size=64), min_size=1, max_size=3),
)
def test_any_record_encodes_within_the_budget_and_decodes_back(
    first: int, span: int, orders: int, cents: int, order_ids: list[str]
) -> None:
    record = None
    for i, order in enumerate(order_ids):
        record = with_order(record, first + i * span, cents, order)
    assert record is not None
    encoded = encode_record(record)
    assert len(encoded.encode()) <= MAX_ENCODED <= 60
    assert decode_record(encoded) == record
    assert decode_record(encoded.encode()) == record


def test_a_typical_record_is_a_few_dozen_bytes() -> None:
    record = with_order(with_order(None, 20_400, 4_990, "10023"), 20_455, 12_450, "10544")
    encoded = encode_record(record)
    assert len(encoded) <= 30, encoded
    assert decode_record(encoded) == record


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "2.fsg.0.1.1jh.abcdef",
        "1.fsg.0.0.1jh.abcdef",  # no order
        "1.-fsg.0.1.1jh.abcdef",
        "1.fsg.0.1.1 jh.abcdef",
        "1.fsg.0.1.1jh.ABC-EF",
        "1.zzzz.zzzz.1.1.abcdef",  # the last day past MAX_DAY
        "1.fsg.0.1.1jh.abcdef.x",
        "1." + "1" * 60,
    ],
)
def test_a_foreign_value_is_refused_not_trusted(text: str) -> None:
    with pytest.raises(RecordError):
        decode_record(text)


def test_the_derived_figures() -> None:
    record = ValueRecord(first_day=100, last_day=190, orders=4, revenue_cents=10_000)
    assert record.repeat_orders == 3
    assert record.mean_interval == 30
    assert record.mean_order_cents == 2_500
