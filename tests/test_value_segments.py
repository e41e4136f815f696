"""What the decision asks of a shopper's value (pure): segment and due status against the
advertiser's standing, bid factors, replenishment, and the standing's stored form."""

from __future__ import annotations

import pytest

from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import (
    MAX_FACTOR,
    MIN_FACTOR,
    RfmCuts,
    ShopperValue,
    StandingError,
    ValueClass,
    ValueStanding,
    bid_factor,
    classify,
    decode_standing,
    encode_standing,
    replenish,
)
from adserver.value.refresh import compute_standing

TODAY = 20_000
# Quintiles of a shop: recency 10/30/60/120 days, frequency 1/1/2/4 orders, 20/40/80/200.00.
CUTS = RfmCuts((10, 30, 60, 120), (1, 1, 2, 4), (2000, 4000, 8000, 20000))
STANDING = ValueStanding(TODAY, 500, CUTS, 30.0, (0.9, 80, 0.9, 5, 6, 4, 1500))


def value(record: ValueRecord | None, standing: ValueStanding | None = STANDING) -> ShopperValue:
    return ShopperValue(record, standing)


def test_a_recent_frequent_big_spender_is_a_champion_and_due_on_rhythm() -> None:
    # 6 orders 30 days apart, the last 29 days ago: next expected today, within the tolerance.
    record = ValueRecord(TODAY - 29 - 150, TODAY - 29, 6, 30_000)
    assert classify(value(record), TODAY) == ValueClass("champions", "due_now")


def test_a_one_time_buyer_has_a_segment_but_no_due_status() -> None:
    record = ValueRecord(TODAY - 5, TODAY - 5, 1, 3000)
    assert classify(value(record), TODAY) == ValueClass("new", None)


def test_a_buyer_long_gone_is_lost_and_lapsed() -> None:
    record = ValueRecord(TODAY - 400, TODAY - 300, 2, 3000)
    assert classify(value(record), TODAY) == ValueClass("lost", "lapsed")


def test_without_a_record_or_a_standing_nothing_is_known() -> None:
    record = ValueRecord(TODAY - 5, TODAY - 5, 1, 3000)
    assert classify(None, TODAY) == ValueClass()
    assert classify(value(None), TODAY).names == ()
    assert classify(value(record, None), TODAY).names == ()


def test_a_standing_without_a_typical_interval_gives_segments_only() -> None:
    standing = ValueStanding(TODAY, 10, CUTS, None)
    record = ValueRecord(TODAY - 29 - 150, TODAY - 29, 6, 30_000)
    assert classify(value(record, standing), TODAY) == ValueClass("champions", None)


def test_bid_factors_multiply_and_stay_within_bounds() -> None:
    factors = {"champions": 2.0, "due_now": 1.5, "lost": 0.5}
    assert bid_factor(factors, ["viewers", "champions", "due_now"]) == 3.0
    assert bid_factor(factors, ["viewers"]) == 1.0
    assert bid_factor({"champions": 10.0, "due_now": 10.0}, ["champions", "due_now"]) == MAX_FACTOR
    assert bid_factor({"lost": 0.1, "lapsed": 0.1}, ["lost", "lapsed"]) == MIN_FACTOR


def test_replenish_gives_products_whose_interval_passed_most_overdue_first() -> None:
    shopper = ShopperValue(
        bought_days={"soap": TODAY - 30, "razor": TODAY - 50, "tent": TODAY - 30, "gum": TODAY},
        intervals={"soap": 30.0, "razor": 30.0, "gum": 30.0},  # tent: nobody rebuys tents
    )
    # soap: 30/30 = 1.0, razor: 50/30 = 1.67 (within twice), gum: bought today, tent: no interval
    assert replenish(shopper, TODAY) == ["razor", "soap"]


def test_replenish_starts_at_80_percent_and_stops_at_twice_the_interval() -> None:
    def due(days_ago: float) -> list[str]:
        shopper = ShopperValue(bought_days={"soap": TODAY - days_ago}, intervals={"soap": 30.0})
        return replenish(shopper, TODAY)

    assert due(23.9) == []
    assert due(24) == ["soap"]
    assert due(60) == ["soap"]
    assert due(60.1) == []
    assert replenish(None, TODAY) == []


def test_the_standing_round_trips_in_a_few_hundred_bytes() -> None:
    encoded = encode_standing(STANDING)
    assert len(encoded) < 300
    assert decode_standing(encoded) == STANDING
    assert decode_standing(encoded.encode()) == STANDING


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "[]",
        '{"v": 2}',
        '{"v":1,"day":1,"n":1,"r":[1,2,3,4,5,6],"f":[],"m":[],"t":null,"model":[]}',
        '{"v":1,"day":1,"n":1,"r":[],"f":[],"m":[],"t":-3,"model":[]}',
        '{"v":1,"day":1,"n":1,"r":["x"],"f":[],"m":[],"t":null,"model":[]}',
        '{"v":1,"day":1,"n":1,"r":[],"f":[],"m":[],"t":null,"model":[1e999]}',
        "x" * 5000,
    ],
)
def test_a_value_that_is_not_a_standing_is_refused(raw: str) -> None:
    with pytest.raises(StandingError):
        decode_standing(raw)


def test_compute_standing_scores_its_own_sample_and_fits_past_50_buyers() -> None:
    records = [
        ValueRecord(TODAY - 200 - n, TODAY - (n % 100), 1 + n % 5, 1000 * (1 + n % 7))
        for n in range(200)
    ]
    standing = compute_standing(records, TODAY)
    assert standing.sampled == 200 and standing.day == TODAY
    assert len(standing.cuts.recency) == 4 and standing.typical_interval is not None
    assert len(standing.model) == 7
    small = compute_standing(records[:10], TODAY)
    assert small.model == () and small.sampled == 10
    empty = compute_standing([], TODAY)
    assert empty.cuts == RfmCuts((), (), ()) and empty.typical_interval is None
