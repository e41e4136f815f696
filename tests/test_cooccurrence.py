"""The pure learner: what one batch of events teaches."""

from __future__ import annotations

from collections import defaultdict

import pytest

from adserver.core.lessons import PLAIN_COOCCURRENCE, LearningConfig, ShopperState, StreamEvent
from adserver.learning.cooccurrence import decay_factor, learn

NO_DECAY = LearningConfig(half_life_days=0)


def views(uid: str, *items: str, ts: int = 0) -> list[StreamEvent]:
    return [StreamEvent(uid, "shop1", "view", (item,), ts) for item in items]


def lessons_for(events: list[StreamEvent], config: LearningConfig = NO_DECAY):  # type: ignore[no-untyped-def]
    states: defaultdict[tuple[str, str], ShopperState] = defaultdict(ShopperState)
    return learn(events, states, config), states


def test_nearby_views_pair_both_ways_and_distance_weighs_less() -> None:
    lessons, _ = lessons_for(views("u", "a", "b", "c"))
    co = lessons.co_viewed
    assert co[("shop1", "a")]["b"] == co[("shop1", "b")]["a"] == 1.0
    assert co[("shop1", "a")]["c"] == pytest.approx(1 / 1.584962500721156)
    assert lessons.popular["shop1"] == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_a_spamming_shopper_credits_a_pair_at_most_once_per_order() -> None:
    lessons, _ = lessons_for(views("spammer", *["a", "b"] * 100))
    # a-then-b and b-then-a are credited once each: 2, however long the spam goes on.
    assert lessons.co_viewed[("shop1", "a")]["b"] == 2.0
    assert lessons.co_viewed[("shop1", "b")]["a"] == 2.0


def test_shopper_influence_stops_after_the_event_bound() -> None:
    config = LearningConfig(half_life_days=0, max_events_per_shopper=3)
    lessons, states = lessons_for(views("u", "a", "b", "c", "d", "e"), config)
    assert ("shop1", "d") not in lessons.co_viewed
    assert states[("u", "shop1")].events == 3


def test_repeated_view_teaches_no_pair_but_counts_as_a_view() -> None:
    lessons, _ = lessons_for(views("u", "a", "a"))
    assert lessons.co_viewed == {}
    assert lessons.popular["shop1"]["a"] == 2.0


def test_different_shoppers_do_not_pair_their_views() -> None:
    lessons, _ = lessons_for([*views("u1", "a"), *views("u2", "b")])
    assert lessons.co_viewed == {}


def test_state_carries_over_between_batches() -> None:
    states: defaultdict[tuple[str, str], ShopperState] = defaultdict(ShopperState)
    learn(views("u", "a"), states, NO_DECAY)
    lessons = learn(views("u", "b"), states, NO_DECAY)
    assert lessons.co_viewed[("shop1", "a")]["b"] == 1.0


def test_purchases_pair_within_the_order_and_with_earlier_purchases() -> None:
    events = [
        StreamEvent("u", "shop1", "purchase", ("tent", "pegs"), 0),
        StreamEvent("u", "shop1", "purchase", ("lamp",), 0),
    ]
    lessons, _ = lessons_for(events)
    assert lessons.co_bought[("shop1", "tent")] == {"pegs": 1.0, "lamp": 1.0}
    assert lessons.co_bought[("shop1", "lamp")] == {"tent": 1.0, "pegs": 1.0}


def test_newer_evidence_weighs_exponentially_more() -> None:
    day = 86_400_000
    assert decay_factor(2_000_000_000_000 + 30 * day, 30) == pytest.approx(
        2 * decay_factor(2_000_000_000_000, 30)
    )
    assert decay_factor(123, 0) == 1.0


def test_plain_mode_counts_every_pair_like_association_rules() -> None:
    lessons, _ = lessons_for(views("u", "a", "b", "a"), PLAIN_COOCCURRENCE)
    co = lessons.co_viewed
    assert co[("shop1", "a")]["b"] == 2.0  # (a,b) and (b,a) both pair a with b
    assert co[("shop1", "a")]["a"] == 2.0  # a repeat pairs with itself, both ways


def test_credit_is_remembered_for_the_pairs_of_the_window_only() -> None:
    others = [f"x{n}" for n in range(10)]  # pushes a and b out of the 10-view window
    lessons, states = lessons_for(views("u", "a", "b", *others, "a", "b"))
    # a-then-b credited when first seen together, and again once they came back together.
    assert lessons.co_viewed[("shop1", "a")]["b"] == 2.0
    credit = states[("u", "shop1")].credit
    window = set(states[("u", "shop1")].viewed)
    assert credit and all(set(pair.split("\x1f")) <= window for pair in credit)
    assert len(credit) <= 10 * 9  # bounded by the window, whatever the history


def test_stored_credit_names_items_by_their_place_in_the_window() -> None:
    from adserver.store.learning import decode_credit, encode_credit

    window = ["a", "b", "a", "c"]
    credit = {"a\x1fb": 1.0, "b\x1fc": 0.63, "c\x1fa": 0.5, "gone\x1fa": 1.0}
    blob = encode_credit(window, credit)
    assert len(blob) == 3 * 4
    decoded = decode_credit(window, blob)
    assert decoded.keys() == {"a\x1fb", "b\x1fc", "c\x1fa"}
    for pair, weight in decoded.items():  # rounded up: a pair is never credited twice
        assert credit[pair] <= weight <= credit[pair] + 1 / 65535
    assert decode_credit(["a"], blob) == {}  # places beyond a shorter window are ignored
