"""The contextual strategy in the pure decision, and the parsing of `kw=`/`cat=` (issue 13 §5)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adserver.core.campaigns import DEFAULT_STRATEGIES, What
from adserver.core.context import (
    NO_CONTEXT,
    PageContext,
    ProductContext,
    category_path,
    context_index,
    words,
)
from adserver.core.decision import Explanation, Slot, decide
from adserver.core.shopper import Shopper
from adserver.http.ad_request import BadAdRequest, parse_ad_request, parse_context
from creatives.renderer import CreativeFormat
from tests.test_decision import (
    NOW,
    SIZES,
    FakeMarket,
    campaign,
    history,
    product,
    random_campaign,
    shopper,
)


@dataclass
class ContextMarket(FakeMarket):
    """A market that keeps product contexts like `MarketCache` (popular products only)."""

    asked: list[str] = field(default_factory=list)

    def product_context(self, advertiser: str, sku: str) -> ProductContext | None:
        self.asked.append(sku)
        index = context_index(self.catalog(advertiser), self.popular(advertiser), {})
        return index.get(sku)


def page(kw: str = "", cat: str = "") -> PageContext:
    parsed = parse_context({"kw": kw, "cat": cat})
    assert isinstance(parsed, PageContext), parsed
    return parsed


def slot(context: PageContext = NO_CONTEXT, max_products: int = 3) -> Slot:
    return Slot("pub", "728x90", max_products, context=context)


def market(**running: list[Any]) -> ContextMarket:
    catalog = {
        "shirt": product("shirt", title="Linen Shirt", category="Apparel > Shirts"),
        "boot": product("boot", title="Rain Boot", category="Apparel > Shoes > Boots"),
        "shoe": product("shoe", title="Trail Runner", category="apparel>shoes", brand="Hoppa"),
        "gone": product("gone", title="Old Shoe", category="Apparel > Shoes"),
        "sold": product(
            "sold", title="Shoe", category="Apparel > Shoes", availability="out_of_stock"
        ),
        "cold": product("cold", title="Shoe Polish", category="Apparel > Shoes"),  # not popular
    }
    popular = ["shirt", "sold", "boot", "ghost", "gone", "shoe"]
    return ContextMarket({"shop1": catalog}, {"shop1": popular}, dict(running))


def picks(decision: Any) -> list[tuple[str, str]]:
    assert decision is not None
    return [(p.product.id, p.strategy) for p in decision.picks]


# -- normalising ---------------------------------------------------------------------------


def test_words_are_letters_and_digits_of_any_script_casefolded() -> None:
    assert words("Trail-Runner, 2 GROSSE Straße!") == ["trail", "runner", "2", "grosse", "strasse"]
    assert words("軽量 スニーカー／ＡＢＣ") == ["軽量", "スニーカー", "abc"]
    assert words("snake_case") == ["snake", "case"]
    assert words("लाल जूते, รองเท้า") == ["लाल", "जूते", "รองเท้า"]  # vowel signs stay in


def test_a_category_is_a_path_of_normalised_levels() -> None:
    assert category_path("Apparel & Accessories >Shoes") == ("apparel accessories", "shoes")
    assert category_path("") == ()


def test_a_product_offers_its_title_category_and_brand_words() -> None:
    context = ProductContext.of(product("x", title="Rain Boot", category="A > B c", brand="Hoppa"))
    assert context.words == {"rain", "boot", "a", "b", "c", "hoppa"}
    assert context.category == ("a", "b c")
    assert context.matches(page(cat="a")) == "category"
    assert context.matches(page(cat="A > B  C")) == "category"
    assert context.matches(page(cat="A > B")) is None
    assert context.matches(page(kw="boots,hoppa")) == "keyword"
    assert context.matches(page(kw="boots")) is None


# -- parsing ------------------------------------------------------------------------------


def test_keywords_are_split_deduplicated_and_bounded() -> None:
    assert page(kw="Shoe, shoe  BOOT;sandal").keywords == {"shoe", "boot", "sandal"}
    assert page(kw=",".join(["same"] * 20)).keywords == {"same"}  # 10 once deduplicated
    assert page(kw="x" * 40).keywords == {"x" * 40}
    assert page() == NO_CONTEXT and not page()
    for bad in (" ".join(f"w{n}" for n in range(11)), "x" * 41, "a\tb", "a" * 1001):
        assert isinstance(parse_context({"kw": bad}), BadAdRequest), bad


def test_a_category_is_bounded() -> None:
    assert page(cat="x" * 200).category == ("x" * 200,)
    for bad in ("x" * 201, "a >", "> a", "a > ! > b", "a\x7fb", " > ".join("abcdefghijk")):
        parsed = parse_context({"cat": bad})
        assert isinstance(parsed, BadAdRequest) and parsed.reason == "bad_category", bad


def test_the_slot_carries_the_context() -> None:
    formats = {"728x90": CreativeFormat("728x90", 728, 90, 3, "728x90.html")}
    parsed = parse_ad_request({"pub": "p", "size": "728x90", "kw": "Boot", "cat": "A>B"}, formats)
    assert isinstance(parsed, Slot)
    assert parsed.context == PageContext(frozenset({"boot"}), ("a", "b"))


# -- deciding -----------------------------------------------------------------------------


def test_contextual_comes_just_before_popular_unless_named() -> None:
    assert What(DEFAULT_STRATEGIES).effective == (
        *("cart", "recent", "related", "cross_sell"),
        *("contextual", "popular"),
    )
    assert What(("popular", "recent")).effective == ("contextual", "popular", "recent")
    assert What(("recent", "contextual")).effective == ("recent", "contextual")
    assert What(("popular", "contextual")).effective == ("popular", "contextual")
    assert What(("cart",)).effective == ("cart",)


def test_a_newcomer_sees_popular_products_matching_the_category_most_popular_first() -> None:
    decision = decide(Shopper(None), market(), slot(page(cat="Apparel > Shoes")), ["shop1"], NOW)
    # Never out of stock ("sold"), unknown ("ghost"), or outside the popular list ("cold").
    assert picks(decision) == [
        ("boot", "contextual"),
        ("gone", "contextual"),
        ("shoe", "contextual"),
    ]
    assert decision is not None and decision.strategy == "contextual"


def test_popular_fills_what_the_context_leaves() -> None:
    decision = decide(Shopper(None), market(), slot(page(kw="hoppa")), ["shop1"], NOW)
    assert picks(decision) == [("shoe", "contextual"), ("shirt", "popular"), ("boot", "popular")]


def test_no_context_or_no_match_is_popular_and_asks_nothing() -> None:
    plain = market()
    assert picks(decide(Shopper(None), plain, slot(), ["shop1"], NOW))[0] == ("shirt", "popular")
    assert plain.asked == []
    unmatched = decide(Shopper(None), market(), slot(page(kw="kayak")), ["shop1"], NOW)
    assert picks(unmatched)[0] == ("shirt", "popular")


def test_purchased_products_are_never_contextual() -> None:
    bought = shopper(history(bought=("boot",)))
    decision = decide(bought, market(), slot(page(cat="Apparel > Shoes")), ["shop1"], NOW)
    assert ("boot", "contextual") not in picks(decision)


def test_a_known_shoppers_recent_views_come_first() -> None:
    known = shopper(history(viewed=("shirt",)))
    decision = decide(known, market(), slot(page(cat="Apparel > Shoes")), ["shop1"], NOW)
    assert picks(decision) == [("shirt", "recent"), ("boot", "contextual"), ("gone", "contextual")]


def test_a_contextual_campaign_outbids_on_matching_pages_only() -> None:
    """The newcomer ranking puts the contextual-only campaign first (higher bid); on a page it
    does not match, the next campaign (popular) still fills."""
    running = [
        campaign(
            "shop1",
            "shoes",
            what={"strategies": ["contextual"]},
            bid={"type": "cpm", "amount": "5"},
        ),
        campaign("shop1", "all", what={"strategies": ["popular"]}),
    ]
    shoes = decide(
        Shopper(None), market(shop1=running), slot(page(cat="Apparel > Shoes")), ["shop1"], NOW
    )
    assert shoes is not None and shoes.campaign == "shoes"
    assert picks(shoes) == [("boot", "contextual"), ("gone", "contextual"), ("shoe", "contextual")]
    for context in (page(cat="Toys"), NO_CONTEXT):
        other = decide(Shopper(None), market(shop1=running), slot(context), ["shop1"], NOW)
        assert other is not None and other.campaign == "all", context
    only = [running[0]]
    assert decide(Shopper(None), market(shop1=only), slot(page(kw="kayak")), ["shop1"], NOW) is None


def test_debug_notes_how_each_contextual_product_matched() -> None:
    explanation = Explanation()
    context = page(kw="hoppa", cat="Apparel > Shoes > Boots")
    decide(Shopper(None), market(), slot(context), ["shop1"], NOW, None, explanation)
    (note,) = explanation.campaigns
    assert note["candidates"]["contextual"] == ["boot", "shoe"]
    assert note["context"] == {
        "keywords": ["hoppa"],
        "category": "apparel > shoes > boots",
        "matched": {"boot": "category", "shoe": "keyword"},
    }


@pytest.mark.parametrize("seed", range(40))
def test_with_context_the_newcomer_ranking_gives_the_same_ad_as_checking_every_campaign(
    seed: int,
) -> None:
    rng = random.Random(seed)
    shops = ["shop1", "shop2"]
    catalog = {
        "a": product("a", category="Apparel > Shoes"),
        "b": product("b", title="Red Boot"),
        "c": product("c", category="Home"),
    }
    strategies = [["contextual"], ["contextual", "popular"], ["popular"], ["recent", "contextual"]]
    running = {}
    for s in shops:
        running[s] = []
        for n in range(rng.randrange(0, 6)):
            made = random_campaign(rng, s, n)
            what = {"strategies": rng.choice(strategies)}
            running[s].append(campaign(s, made.id, what=what, bid=made.to_json()["bid"]))
    fake = ContextMarket(
        {s: dict(catalog) for s in shops},
        {s: rng.sample(["a", "b", "c", "zz"], rng.randrange(0, 4)) for s in shops},
        running,
        {f"c{n:03d}": rng.choice([0.001, 0.005, 0.01]) for n in range(8)},
    )
    who = rng.choice([Shopper(None), shopper(history(viewed=("c",)))])
    context = rng.choice([NO_CONTEXT, page(cat="apparel"), page(kw="boot"), page(kw="nothing")])
    chosen = Slot("pub", rng.choice(SIZES), rng.randrange(1, 4), context=context)
    fast = decide(who, fake, chosen, shops, NOW)
    checked = decide(who, fake, chosen, shops, NOW, None, Explanation())
    assert fast == checked


@settings(max_examples=300, deadline=None)
@given(kw=st.text(max_size=300), cat=st.text(max_size=300))
def test_any_context_parses_or_is_a_bad_request_within_bounds(kw: str, cat: str) -> None:
    parsed = parse_context({"kw": kw, "cat": cat})
    if isinstance(parsed, BadAdRequest):
        assert parsed.reason in ("bad_keywords", "bad_category")
        return
    assert len(parsed.keywords) <= 10 and all(0 < len(k) <= 40 for k in parsed.keywords)
    assert all(k == k.casefold() and k[0].isalnum() for k in parsed.keywords)
    assert len(parsed.category) <= 10 and len(" > ".join(parsed.category)) <= 200 * 2
