"""The next order with shrinkage, and the due statuses."""

from __future__ import annotations

import pytest

from adserver.core.value_record import ValueRecord
from adserver.value.timing import (
    Due,
    due_status,
    expected_interval,
    next_order_day,
    typical_interval,
)


def buyer(first: int, last: int, orders: int) -> ValueRecord:
    return ValueRecord(first, last, orders, 1_000 * orders)


def test_the_typical_interval_is_the_median_of_the_repeat_buyers() -> None:
    shop = [buyer(0, 10, 2), buyer(0, 60, 3), buyer(0, 90, 2), buyer(50, 50, 1)]
    assert typical_interval(shop) == 30
    assert typical_interval([buyer(0, 0, 1)]) is None


def test_a_one_time_buyer_gets_the_shops_interval() -> None:
    assert expected_interval(buyer(100, 100, 1), typical=30) == 30
    assert next_order_day(buyer(100, 100, 1), typical=30) == 130


def test_own_rhythm_weighs_more_with_each_interval() -> None:
    one = expected_interval(buyer(0, 60, 2), typical=30, k=2)  # one interval of 60
    assert one == pytest.approx((1 * 60 + 2 * 30) / 3)
    many = expected_interval(buyer(0, 600, 11), typical=30, k=2)  # ten intervals of 60
    assert many == pytest.approx((10 * 60 + 2 * 30) / 12)
    assert 30 < one < many < 60
    assert expected_interval(buyer(0, 60, 2), typical=30, k=0) == 60


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (120, Due.NOT_YET),  # next order expected on day 140 (+/- 10)
        (130, Due.DUE_NOW),
        (150, Due.DUE_NOW),
        (151, Due.OVERDUE),
        (220, Due.OVERDUE),  # last + 3 intervals
        (221, Due.LAPSED),
    ],
)
def test_due_status_around_the_expected_day(today: int, expected: Due) -> None:
    regular = buyer(0, 100, 3)  # every 50 days, shrunk towards 30: 40
    assert due_status(regular, today, typical=30, k=2) == expected


def test_the_tolerance_is_at_least_a_few_days_for_fast_buyers() -> None:
    weekly = buyer(0, 70, 11)
    assert due_status(weekly, 80, typical=7, k=0) == Due.DUE_NOW  # 3 days late: still due
    assert due_status(weekly, 74, typical=7, k=0) == Due.DUE_NOW  # 3 days early


def test_a_one_time_buyer_has_no_due_status() -> None:
    assert due_status(buyer(0, 0, 1), 30, typical=30) is None
