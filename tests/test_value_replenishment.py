"""Replenishment: how long a product lasts, from everyone's repeat purchases of it."""

from __future__ import annotations

from adserver.value.replenishment import (
    Purchase,
    Replenishment,
    due_for_replenishment,
    replenishment_intervals,
)


def repeaters(product: str, shoppers: int, gap: float, who: str = "u") -> list[Purchase]:
    return [
        Purchase(f"{who}{i}", product, day)
        for i in range(shoppers)
        for day in (10.0 * i, 10.0 * i + gap)
    ]


def test_the_median_gap_of_a_product_bought_again_by_enough_shoppers() -> None:
    events = repeaters("coffee", 25, 30.0) + repeaters("coffee", 5, 90.0, who="w")
    learnt = replenishment_intervals(events, min_repeaters=20)
    assert learnt["coffee"] == Replenishment("coffee", 30.0, repeaters=30, gaps=30)


def test_a_product_few_shoppers_bought_again_gets_no_interval() -> None:
    events = repeaters("tent", 19, 365.0) + [Purchase(f"v{i}", "tent", 1.0) for i in range(500)]
    assert "tent" not in replenishment_intervals(events, min_repeaters=20)


def test_a_second_unit_the_same_day_is_not_a_repeat() -> None:
    events = repeaters("socks", 30, 0.2)
    assert replenishment_intervals(events, min_repeaters=20) == {}


def test_one_shoppers_many_repeats_count_as_one_repeater() -> None:
    habit = [Purchase("u1", "tea", float(day)) for day in range(0, 1000, 7)]
    assert replenishment_intervals(habit, min_repeaters=2) == {}
    assert replenishment_intervals(habit, min_repeaters=1)["tea"].median_days == 7


def test_due_for_replenishment_from_shortly_before_the_interval_to_twice_it() -> None:
    coffee = Replenishment("coffee", 30.0, repeaters=40, gaps=60)
    assert not due_for_replenishment(100, 120, coffee)
    assert due_for_replenishment(100, 124, coffee)
    assert due_for_replenishment(100, 160, coffee)
    assert not due_for_replenishment(100, 161, coffee)
