"""The pure decision core: which campaign wins a slot, and which products it shows."""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from adserver.core.campaigns import Campaign, default_campaign, expected_value, parse_campaign
from adserver.core.decision import (
    Explanation,
    Slot,
    decide,
    may_serve_newcomers,
    rank_for_newcomers,
)
from adserver.core.product import Product
from adserver.core.shopper import AdvertiserHistory, Shopper
from adserver.core.suggestions import Suggestions
from adserver.delivery.market_cache import upsell_index
from adserver.feeds.validation import parse_product
from tests.conftest import product_row

NOW = 1_800_000_000.0
SIZES = ("300x250", "728x90", "320x50")


def product(sku: str, **overrides: str) -> Product:
    parsed = parse_product(product_row(sku, **overrides))
    assert isinstance(parsed, Product)
    return parsed


def campaign(advertiser: str, campaign_id: str, **body: Any) -> Campaign:
    document = {"name": campaign_id, "bid": {"type": "cpm", "amount": "1"}, **body}
    parsed = parse_campaign(advertiser, campaign_id, document, SIZES)
    assert isinstance(parsed, Campaign), parsed
    return parsed


@dataclass
class FakeMarket:
    products: dict[str, dict[str, Product]] = field(default_factory=dict)
    most_viewed: dict[str, list[str]] = field(default_factory=dict)
    running: dict[str, list[Campaign]] = field(default_factory=dict)
    ctrs: dict[str, float] = field(default_factory=dict)

    def catalog(self, advertiser: str) -> Mapping[str, Product]:
        return self.products.get(advertiser, {})

    def popular(self, advertiser: str) -> Sequence[str]:
        return self.most_viewed.get(advertiser, [])

    def upsell(self, advertiser: str, sku: str) -> Sequence[str]:
        return upsell_index(self.catalog(advertiser)).get(sku, [])

    def campaigns(self, advertiser: str) -> Sequence[Campaign]:
        return self.running.get(advertiser) or [default_campaign(advertiser)]

    def ctr(self, advertiser: str, campaign: str) -> float:
        return self.ctrs.get(campaign, 0.005)

    def newcomer_campaigns(self, advertiser: str, size: str) -> Sequence[Campaign]:
        ctr = functools.partial(self.ctr, advertiser)
        value = lambda c: expected_value(c, ctr(c.id))  # noqa: E731
        pool = [c for c in self.campaigns(advertiser) if may_serve_newcomers(c)]
        return rank_for_newcomers(pool, value, size)


def shop(*skus: str, popular: Sequence[str] = (), out_of_stock: Sequence[str] = ()) -> FakeMarket:
    products = {
        s: product(s, availability="out_of_stock" if s in out_of_stock else "in_stock")
        for s in skus
    }
    return FakeMarket({"shop1": products}, {"shop1": list(popular)})


SLOT3 = Slot("pub", "728x90", 3)


def history(advertiser: str = "shop1", **kwargs: Any) -> AdvertiserHistory:
    viewed = kwargs.pop("viewed", ())
    kwargs.setdefault("view_times", tuple(NOW - 60 * (n + 1) for n in range(len(viewed))))
    return AdvertiserHistory(advertiser, kwargs.pop("last_seen", NOW - 60), viewed=viewed, **kwargs)


def shopper(*histories: AdvertiserHistory) -> Shopper:
    return Shopper("u" * 22, histories)


def picks(decision: object) -> list[tuple[str, str]]:
    assert decision is not None
    return [(p.product.id, p.strategy) for p in decision.picks]  # type: ignore[attr-defined]


def test_cart_then_recent_then_related_then_popular() -> None:
    market = shop("a", "b", "c", "d", popular=["d", "a"])
    related = {"shop1": Suggestions(related=("c",))}
    decision = decide(
        shopper(history(viewed=("b", "a"), cart=("a",))),
        market,
        Slot("p", "x", 4),
        [],
        NOW,
        related,
    )
    assert picks(decision) == [("a", "cart"), ("b", "recent"), ("c", "related"), ("d", "popular")]


def test_purchased_out_of_stock_and_unknown_items_are_never_picked() -> None:
    market = shop("a", "b", "c", popular=["a", "b", "c"], out_of_stock=["b"])
    decision = decide(
        shopper(history(viewed=("x", "b", "a", "c"), bought=("a",))), market, SLOT3, [], NOW
    )
    assert picks(decision) == [("c", "recent")]


def test_buyer_sees_cross_sell_items_and_never_the_purchase() -> None:
    market = shop("tent", "pegs", "lamp")
    suggestions = {"shop1": Suggestions(cross_sell=("tent", "pegs"))}
    decision = decide(shopper(history(bought=("tent",))), market, SLOT3, [], NOW, suggestions)
    assert picks(decision) == [("pegs", "cross_sell")]


def test_upsell_shows_a_pricier_item_of_the_same_category() -> None:
    market = FakeMarket(
        {
            "shop1": {
                "tent": product("tent", category="tents", price="100"),
                "big-tent": product("big-tent", category="tents", price="150"),
                "cheap-tent": product("cheap-tent", category="tents", price="50"),
                "mug": product("mug", category="kitchen", price="500"),
            }
        }
    )
    market.running["shop1"] = [campaign("shop1", "up", what={"strategies": ["upsell"]})]
    decision = decide(shopper(history(viewed=("tent",))), market, SLOT3, [], NOW)
    assert picks(decision) == [("big-tent", "upsell")]


def test_unknown_shopper_gets_popular_items_of_a_campaign_open_to_anyone() -> None:
    decision = decide(Shopper(None), shop("a", "b", popular=["b"]), SLOT3, ["shop1"], NOW)
    assert picks(decision) == [("b", "popular")]


def test_nothing_eligible_is_no_fill() -> None:
    assert decide(Shopper(None), shop("a"), SLOT3, ["shop1"], NOW) is None
    assert decide(shopper(history(viewed=("zz",))), shop("a"), SLOT3, [], NOW) is None


def test_daily_campaign_cap_stops_the_campaign_at_the_cap() -> None:
    market = shop("a")
    market.running["shop1"] = [campaign("shop1", "c1", when={"cap_per_day": 2})]
    below = history(viewed=("a",), caps={"c:c1": 1})
    at_cap = history(viewed=("a",), caps={"c:c1": 2})
    assert picks(decide(shopper(below), market, SLOT3, [], NOW)) == [("a", "recent")]
    explanation = Explanation()
    assert decide(shopper(at_cap), market, SLOT3, [], NOW, None, explanation) is None
    assert explanation.campaigns[0]["skipped"] == "cap_per_day 2 reached"


def test_per_item_cap_skips_only_that_item() -> None:
    market = shop("a", "b")
    market.running["shop1"] = [campaign("shop1", "c1", when={"cap_per_item_per_day": 1})]
    decision = decide(shopper(history(viewed=("a", "b"), caps={"i:a": 1})), market, SLOT3, [], NOW)
    assert picks(decision) == [("b", "recent")]


def test_denied_publisher_never_gets_the_campaign() -> None:
    market = shop("a")
    market.running["shop1"] = [
        campaign("shop1", "c1", where={"publishers": {"deny": ["spam-site"]}})
    ]
    assert (
        decide(shopper(history(viewed=("a",))), market, Slot("spam-site", "728x90", 3), [], NOW)
        is None
    )
    assert decide(shopper(history(viewed=("a",))), market, SLOT3, [], NOW) is not None


def test_the_higher_expected_value_wins_the_slot() -> None:
    market = FakeMarket(
        {"shop1": {"a": product("a")}, "shop2": {"b": product("b")}},
        running={
            "shop1": [campaign("shop1", "cheap", bid={"type": "cpm", "amount": "2"})],
            # CPC 1.00 x CTR 1% = 0.01 per impression, beating CPM 2.00 = 0.002
            "shop2": [campaign("shop2", "clicky", bid={"type": "cpc", "amount": "1"})],
        },
        ctrs={"clicky": 0.01},
    )
    both = shopper(history("shop1", viewed=("a",)), history("shop2", viewed=("b",)))
    decision = decide(both, market, SLOT3, [], NOW)
    assert decision is not None and decision.campaign == "clicky"
    market.ctrs["clicky"] = 0.001  # 0.001 < 0.002: now the CPM campaign is worth more
    decision = decide(both, market, SLOT3, [], NOW)
    assert decision is not None and decision.campaign == "cheap"


def test_audiences_select_the_matching_campaign() -> None:
    market = shop("a", "b")
    market.running["shop1"] = [
        campaign(
            "shop1",
            "abandoners",
            who={"include": ["cart_abandoners"]},
            bid={"type": "cpm", "amount": "5"},
        ),
        campaign("shop1", "viewers", who={"include": ["viewers"]}),
    ]
    fresh_cart = history(viewed=("a",), cart=("b",), cart_since=NOW - 60)
    old_cart = history(viewed=("a",), cart=("b",), cart_since=NOW - 7200)
    winner = decide(shopper(fresh_cart), market, SLOT3, [], NOW)
    assert winner is not None and winner.campaign == "viewers"
    winner = decide(shopper(old_cart), market, SLOT3, [], NOW)
    assert winner is not None and winner.campaign == "abandoners"


def test_most_recently_visited_shop_wins_a_tie() -> None:
    market = FakeMarket({"shop1": {"a": product("a")}, "shop2": {"b": product("b")}})
    both = shopper(history("shop2", viewed=("b",)), history("shop1", viewed=("a",)))
    decision = decide(both, market, SLOT3, [], NOW)
    assert decision is not None and decision.advertiser == "shop2"


def test_explanation_lists_every_campaign_and_the_winner() -> None:
    market = shop("a")
    market.running["shop1"] = [
        campaign("shop1", "paused", status="paused"),
        campaign("shop1", "live"),
    ]
    explanation = Explanation()
    decide(shopper(history(viewed=("a",))), market, SLOT3, [], NOW, None, explanation)
    report = explanation.as_json()
    assert [c["campaign"] for c in report["campaigns"]] == ["paused", "live"]
    assert "paused" in report["campaigns"][0]["skipped"]
    assert report["campaigns"][1]["candidates"]["recent"] == ["a"]
    assert report["winner"]["campaign"] == "live"


def test_campaign_lookback_limits_recent_items() -> None:
    market = shop("old", "new")
    market.running["shop1"] = [campaign("shop1", "c1", when={"lookback_days": 1})]
    h = history(viewed=("new", "old"), view_times=(NOW - 60, NOW - 3 * 86400))
    assert picks(decide(shopper(h), market, SLOT3, [], NOW)) == [("new", "recent")]


def test_revenue_and_orders_make_high_value_shoppers() -> None:
    market = shop("a")
    market.running["shop1"] = [
        campaign(
            "shop1",
            "vip",
            who={"include": ["high_value"], "high_value": {"min_revenue": 100, "min_orders": 2}},
        )
    ]
    rich = history(viewed=("a",), revenue=Decimal(150), orders=2)
    poor = history(viewed=("a",), revenue=Decimal(150), orders=1)
    assert decide(shopper(rich), market, SLOT3, [], NOW) is not None
    assert decide(shopper(poor), market, SLOT3, [], NOW) is None


def test_a_ranking_is_only_computed_when_the_slot_needs_it() -> None:
    market = shop("a", "b", "c", "d")
    asked: list[str] = []

    def ranking() -> tuple[str, ...]:
        asked.append("related")
        return ("c", "d")

    full = decide(
        shopper(history(viewed=("a", "b"))),
        market,
        Slot("p", "x", 2),
        [],
        NOW,
        {"shop1": Suggestions(related=ranking)},
    )
    assert picks(full) == [("a", "recent"), ("b", "recent")] and asked == []
    wider = decide(
        shopper(history(viewed=("a", "b"))),
        market,
        Slot("p", "x", 3),
        [],
        NOW,
        {"shop1": Suggestions(related=ranking)},
    )
    assert picks(wider)[-1] == ("c", "related") and asked == ["related"]


# -- other shops' campaigns: ranked once, not checked one by one on every decision -----------


def random_campaign(rng: random.Random, advertiser: str, n: int) -> Campaign:
    body: dict[str, Any] = {
        "status": rng.choice(["active", "active", "paused"]),
        "bid": {"type": rng.choice(["cpm", "cpc"]), "amount": rng.choice(["1", "2", "0.5"])},
        "what": {"strategies": rng.choice([["popular"], ["recent", "popular"], ["cart"]])},
    }
    if rng.random() < 0.3:
        body["who"] = {"include": [rng.choice(["viewers", "past_buyers"])]}
    if rng.random() < 0.3:
        body["where"] = {"sizes": [rng.choice(SIZES)]}
    if rng.random() < 0.3:
        body["where"] = {"publishers": {"allow": [rng.choice(["pub", "other"])]}}
    if rng.random() < 0.2:
        body["when"] = {"hours": [rng.randrange(24), rng.randrange(1, 25)]}
    if body.get("when", {}).get("hours", [0, 1])[0] == body.get("when", {}).get("hours", [0, 1])[1]:
        body.pop("when")
    return campaign(advertiser, f"c{n:03d}", **body)


@pytest.mark.parametrize("seed", range(40))
def test_deciding_with_the_newcomer_ranking_gives_the_same_ad_as_checking_every_campaign(
    seed: int,
) -> None:
    rng = random.Random(seed)
    shops = ["shop1", "shop2", "shop3"]
    market = FakeMarket(
        {s: {sku: product(sku) for sku in ("a", "b", "c")} for s in shops},
        {s: rng.sample(["a", "b", "c", "zz"], rng.randrange(0, 4)) for s in shops},
        {s: [random_campaign(rng, s, n) for n in range(rng.randrange(0, 8))] for s in shops},
        {f"c{n:03d}": rng.choice([0.001, 0.005, 0.01]) for n in range(8)},
    )
    who = rng.choice([Shopper(None), shopper(history(viewed=("a",)))])
    slot = Slot(rng.choice(["pub", "other"]), rng.choice(SIZES), rng.randrange(1, 4))
    at = NOW + rng.randrange(86400)
    fast = decide(who, market, slot, shops, at)
    checked = decide(who, market, slot, shops, at, None, Explanation())
    assert fast == checked


@dataclass
class CountingMarket(FakeMarket):
    looked_at: list[str] = field(default_factory=list)

    def catalog(self, advertiser: str) -> Mapping[str, Product]:
        self.looked_at.append(advertiser)
        return super().catalog(advertiser)


def test_a_shop_with_many_campaigns_costs_other_shops_shoppers_one_look() -> None:
    """shop2's shopper sees one of shop1's 100 campaigns considered, not every one."""
    market = CountingMarket(
        {"shop1": {"a": product("a")}, "shop2": {"b": product("b")}},
        {"shop1": ["a"], "shop2": ["b"]},
        {"shop1": [campaign("shop1", f"c{n:03d}") for n in range(100)]},
    )
    decision = decide(
        shopper(history("shop2", viewed=("b",))), market, SLOT3, ["shop1", "shop2"], NOW
    )
    assert decision is not None
    assert market.looked_at.count("shop1") <= 1
