"""The placements of `/recs.json` as pure functions (adserver.recs.placements)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adserver.core.product import Product
from adserver.core.shopper import AdvertiserHistory
from adserver.core.suggestions import Suggestions
from adserver.recs.placements import (
    MAX_N,
    BadRecsQuery,
    RecsQuery,
    may_personalise_for,
    parse_recs_query,
    recommend,
    wanted_lists,
)
from adserver.store.learning import NeighbourList

SHOP = "shop1"


def product(sku: str, category: str = "", availability: str = "in_stock") -> Product:
    return Product(
        sku, sku, "https://s.example/p", "https://s.example/i", Decimal(1), "EUR",
        availability=availability, category=category,
    )  # fmt: skip


def listed(*skus: str) -> NeighbourList:
    return NeighbourList(1.0, tuple((sku, 1.0, 1.0) for sku in skus))


CATALOG = {p.id: p for p in [product(f"s{n}", "c1" if n < 5 else "c2") for n in range(1, 10)]}


@pytest.mark.parametrize("n", ["0", str(MAX_N + 1), "-1", "1.5", "２", " 3", ""])
def test_n_outside_1_to_max_is_refused(n: str) -> None:
    parsed = parse_recs_query({"a": SHOP, "placement": "home", "n": n}, [SHOP])
    assert isinstance(parsed, BadRecsQuery) and parsed.reason == "bad_n"


def test_a_good_query_and_its_defaults() -> None:
    assert parse_recs_query({"a": SHOP, "placement": "cart"}, [SHOP]) == RecsQuery(SHOP, "cart")
    parsed = parse_recs_query({"a": SHOP, "placement": "product", "item": "s1", "n": "24"}, [SHOP])
    assert parsed == RecsQuery(SHOP, "product", "s1", 24)


def test_never_the_item_a_purchase_an_unknown_or_out_of_stock_product() -> None:
    catalog = {**CATALOG, "gone": product("gone", availability="out_of_stock")}
    history = AdvertiserHistory(SHOP, 0.0, viewed=("s1",), bought=("s3",))
    query = RecsQuery(SHOP, "product", "s1", 24)
    lists = {("viewed", SHOP, "s1"): listed("s1", "gone", "nowhere", "s3", "s2")}
    chosen = recommend(query, history, None, lists, catalog, (), lambda sku: ())
    assert [(r.product.id, r.reason) for r in chosen] == [("s2", "viewed_together")]


def test_same_category_is_popular_products_of_it_then_the_pricier_ones() -> None:
    query = RecsQuery(SHOP, "product", "s6", 3)
    chosen = recommend(query, None, None, {}, CATALOG, ("s1", "s7", "s6"), lambda sku: ("s8",))
    assert [(r.product.id, r.reason) for r in chosen] == [
        ("s7", "same_category"),
        ("s8", "same_category"),
        ("s1", "popular"),
    ]


def test_the_cart_alternates_between_its_items_and_leaves_them_out() -> None:
    history = AdvertiserHistory(SHOP, 0.0, cart=("s1", "s2"))
    query = RecsQuery(SHOP, "cart", n=4)
    assert wanted_lists(query, history) == [("bought", SHOP, "s1"), ("bought", SHOP, "s2")]
    lists = {("bought", SHOP, "s1"): listed("s2", "s3", "s4"), ("bought", SHOP, "s2"): listed("s5")}
    cross = Suggestions(cross_sell=("s9",))
    chosen = recommend(query, history, cross, lists, CATALOG, (), lambda sku: ())
    assert [r.product.id for r in chosen] == ["s5", "s3", "s4", "s9"]


def test_a_new_shopper_at_home_gets_popular_products() -> None:
    chosen = recommend(
        RecsQuery(SHOP, "home", n=2), None, None, {}, CATALOG, ("s4", "s2", "s1"), tuple
    )
    assert [(r.product.id, r.reason) for r in chosen] == [("s4", "popular"), ("s2", "popular")]


@pytest.mark.parametrize(
    ("origin", "personal"),
    [
        (None, True),  # the browser itself or a same-origin page
        ("https://shop1.example", True),
        ("https://www.shop1.example:8443", True),
        ("https://shop1.example.evil.example", False),
        ("https://evilshop1.example", False),
        ("null", False),
        ("https://user@shop1.example", True),
    ],
)
def test_only_the_advertisers_pages_read_a_personal_answer(
    origin: str | None, personal: bool
) -> None:
    assert may_personalise_for(origin, ["shop1.example"]) is personal
    assert may_personalise_for(origin, []) is (origin is None)


def test_trending_compares_the_last_day_with_the_week_before() -> None:
    from adserver.recs.trending import rank_trending

    noon = 20_000 * 86400 + 43200  # half of today gone: yesterday counts half
    counts = {
        "steady": (20.0, 40.0, *[40.0] * 6),  # 40 in the last day, 40 a day all week
        "rising": (6.0, 2.0, *[0.0] * 6),  # 7 in the last day, almost nothing before
        "few": (2.0, 0.0),  # under the threshold: no trend
    }
    assert rank_trending(counts, noon) == ["rising", "steady"]
