"""RFM scores against the advertiser's own distribution, and the named segments."""

from __future__ import annotations

import itertools

import pytest

from adserver.core.value_record import ValueRecord
from adserver.value.rfm import (
    MIDDLE,
    SEGMENTS,
    Rfm,
    RfmCuts,
    quantiles,
    rfm_cuts,
    rfm_score,
    segment,
)

TODAY = 1_000


def record(days_ago: int, orders: int, cents: int) -> ValueRecord:
    last = TODAY - days_ago
    return ValueRecord(last - 30 * (orders - 1), last, orders, cents)


def test_quantiles_interpolate_like_numpy() -> None:
    assert quantiles([1, 2, 3, 4, 5]) == pytest.approx((1.8, 2.6, 3.4, 4.2))
    assert quantiles([7]) == (7, 7, 7, 7)
    assert quantiles([]) == ()


def test_one_time_buyers_share_the_lowest_frequency_and_repeat_buyers_rise() -> None:
    shop = [record(10, 1, 1_000)] * 80 + [record(10, n, 1_000) for n in range(2, 22)]
    cuts = rfm_cuts(shop, TODAY)
    assert rfm_score(record(10, 1, 1_000), cuts, TODAY).frequency == 1
    assert rfm_score(record(10, 3, 1_000), cuts, TODAY).frequency == 5


def test_recent_shoppers_score_high_recency_and_old_ones_low() -> None:
    shop = [record(days, 1, 1_000) for days in range(0, 500, 5)]
    cuts = rfm_cuts(shop, TODAY)
    assert rfm_score(record(0, 1, 1_000), cuts, TODAY).recency == 5
    assert rfm_score(record(499, 1, 1_000), cuts, TODAY).recency == 1
    assert rfm_score(record(250, 1, 1_000), cuts, TODAY).recency == 3


def test_scores_are_against_this_advertisers_distribution() -> None:
    small_spenders = rfm_cuts([record(10, 1, c) for c in range(100, 2_100, 20)], TODAY)
    big_spenders = rfm_cuts([record(10, 1, c) for c in range(10_000, 210_000, 2_000)], TODAY)
    shopper = record(10, 1, 5_000)
    assert rfm_score(shopper, small_spenders, TODAY).monetary == 5
    assert rfm_score(shopper, big_spenders, TODAY).monetary == 1


def test_without_a_distribution_every_score_is_the_middle() -> None:
    empty = RfmCuts((), (), ())
    assert rfm_score(record(3, 2, 100), empty, TODAY) == Rfm(MIDDLE, MIDDLE, MIDDLE)


@pytest.mark.parametrize(
    ("score", "orders", "expected"),
    [
        (Rfm(5, 1, 5), 1, "new"),
        (Rfm(5, 5, 5), 6, "champions"),
        (Rfm(3, 5, 4), 6, "loyal"),
        (Rfm(4, 2, 2), 2, "potential_loyal"),
        (Rfm(2, 5, 5), 8, "at_risk"),
        (Rfm(1, 4, 3), 5, "at_risk"),
        (Rfm(3, 1, 2), 1, "needs_attention"),
        (Rfm(2, 1, 1), 1, "hibernating"),
        (Rfm(1, 1, 2), 1, "lost"),
    ],
)
def test_the_segment_table(score: Rfm, orders: int, expected: str) -> None:
    assert segment(score, record(5, orders, 1_000)) == expected


def test_every_score_has_a_segment_and_every_segment_is_reachable() -> None:
    seen = set()
    for r, f, m, orders in itertools.product(range(1, 6), range(1, 6), range(1, 6), (1, 2)):
        seen.add(segment(Rfm(r, f, m), record(5, orders, 1_000)))
    assert seen == set(SEGMENTS)
