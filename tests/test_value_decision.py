"""Customer value in the pure decision: segment and due audiences, bid multipliers, the
`replenish` strategy. The shopper's value is an optional input of `decide` (the profile read
does not carry the record yet: without it nothing changes)."""

from __future__ import annotations

from decimal import Decimal

from adserver.core.campaigns import Campaign
from adserver.core.decision import Explanation, decide
from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import RfmCuts, ShopperValue, ValueStanding
from tests.test_decision import NOW, SLOT3, campaign, history, picks, shop, shopper

TODAY = int(NOW // 86400)
CUTS = RfmCuts((10, 30, 60, 120), (1, 1, 2, 4), (2000, 4000, 8000, 20000))
STANDING = ValueStanding(TODAY, 500, CUTS, 30.0)
CHAMPION = ValueRecord(TODAY - 29 - 150, TODAY - 29, 6, 30_000)  # champions, due_now
LOST = ValueRecord(TODAY - 400, TODAY - 300, 2, 3000)  # lost, lapsed


def valued(record: ValueRecord | None, **kwargs: object) -> dict[str, ShopperValue]:
    return {"shop1": ShopperValue(record, STANDING, **kwargs)}  # type: ignore[arg-type]


def champions_only(**body: object) -> Campaign:
    return campaign("shop1", "champs", who={"segments": ["champions"]}, **body)


def test_a_segment_campaign_serves_its_segment_only() -> None:
    market = shop("a", popular=["a"])
    market.running["shop1"] = [champions_only()]
    buyer = shopper(history(viewed=("a",), orders=6))
    assert decide(buyer, market, SLOT3, [], NOW, values=valued(CHAMPION)) is not None
    assert decide(buyer, market, SLOT3, [], NOW, values=valued(LOST)) is None


def test_without_the_value_record_a_segment_campaign_does_not_serve_and_says_why() -> None:
    market = shop("a", popular=["a"])
    market.running["shop1"] = [champions_only()]
    explanation = Explanation()
    buyer = shopper(history(viewed=("a",)))
    assert decide(buyer, market, SLOT3, [], NOW, None, explanation) is None
    assert explanation.campaigns[0]["skipped"] == "no value segment known"
    explanation = Explanation()
    decide(buyer, market, SLOT3, [], NOW, None, explanation, valued(LOST))
    assert explanation.campaigns[0]["skipped"] == "segment lost not in: champions"


def test_due_conditions_pick_the_shoppers_due_now() -> None:
    market = shop("a", popular=["a"])
    market.running["shop1"] = [campaign("shop1", "due", who={"due": ["due_now", "overdue"]})]
    buyer = shopper(history(viewed=("a",)))
    assert decide(buyer, market, SLOT3, [], NOW, values=valued(CHAMPION)) is not None
    explanation = Explanation()
    assert decide(buyer, market, SLOT3, [], NOW, None, explanation, valued(LOST)) is None
    assert explanation.campaigns[0]["skipped"] == "due status lapsed not in: due_now, overdue"


def test_a_multiplier_wins_the_slot_for_the_segment_it_values_and_debug_shows_it() -> None:
    market = shop("a", popular=["a"])
    market.running["shop1"] = [
        campaign("shop1", "flat", bid={"type": "cpm", "amount": "2"}),
        campaign(
            "shop1",
            "valued",
            bid={"type": "cpm", "amount": "1"},
            bid_multipliers={"champions": 3, "due_now": "1.5", "lost": "0.5"},
        ),
    ]
    buyer = shopper(history(viewed=("a",)))
    explanation = Explanation()
    winner = decide(buyer, market, SLOT3, [], NOW, None, explanation, valued(CHAMPION))
    assert winner is not None and winner.campaign == "valued"
    assert winner.expected_value == 1 / 1000 * 4.5
    note = explanation.campaigns[1]
    assert (note["segment"], note["due"], note["bid_factor"]) == ("champions", "due_now", 4.5)
    loser = decide(buyer, market, SLOT3, [], NOW, values=valued(LOST))
    assert loser is not None and loser.campaign == "flat"


def test_an_audience_multiplier_applies_today_without_any_value_record() -> None:
    market = shop("a", popular=["a"])
    market.running["shop1"] = [
        campaign("shop1", "flat", bid={"type": "cpm", "amount": "2"}),
        campaign("shop1", "buyers", bid_multipliers={"past_buyers": 3}),
    ]
    buyer = shopper(history(viewed=("a",), orders=1, revenue=Decimal(10)))
    winner = decide(buyer, market, SLOT3, [], NOW)
    assert winner is not None and winner.campaign == "buyers"
    newcomer = decide(shopper(), market, SLOT3, ["shop1"], NOW)
    assert newcomer is not None and newcomer.campaign == "flat"


def test_replenish_shows_a_bought_item_again_once_its_interval_passed() -> None:
    market = shop("soap", "tent", "pegs", popular=["pegs"])
    market.running["shop1"] = [
        campaign("shop1", "refill", what={"strategies": ["replenish", "recent", "popular"]})
    ]
    buyer = shopper(history(viewed=("soap", "tent"), bought=("soap", "tent")))
    value = valued(
        CHAMPION,
        bought_days={"soap": TODAY - 31, "tent": TODAY - 31},
        intervals={"soap": 30.0},
    )
    decision = decide(buyer, market, SLOT3, [], NOW, values=value)
    # the tent was bought too, but nobody buys tents again: never shown
    assert picks(decision) == [("soap", "replenish"), ("pegs", "popular")]
    early = valued(CHAMPION, bought_days={"soap": TODAY - 3}, intervals={"soap": 30.0})
    assert picks(decide(buyer, market, SLOT3, [], NOW, values=early)) == [("pegs", "popular")]


def test_without_its_input_replenish_gives_nothing_and_bought_items_stay_hidden() -> None:
    market = shop("soap", "pegs", popular=["soap", "pegs"])
    market.running["shop1"] = [
        campaign("shop1", "refill", what={"strategies": ["replenish", "popular"]})
    ]
    buyer = shopper(history(viewed=("soap",), bought=("soap",)))
    assert picks(decide(buyer, market, SLOT3, [], NOW)) == [("pegs", "popular")]
