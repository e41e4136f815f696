"""The pure decision core: which products a shopper sees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from adserver.catalog import Product, parse_product
from adserver.decision import Slot, pick_products
from adserver.shopper import AdvertiserHistory, Shopper
from tests.conftest import product_row


def product(sku: str, **overrides: str) -> Product:
    parsed = parse_product(product_row(sku, **overrides))
    assert isinstance(parsed, Product)
    return parsed


@dataclass
class Catalogs:
    products: dict[str, dict[str, Product]] = field(default_factory=dict)
    most_viewed: dict[str, list[str]] = field(default_factory=dict)

    def catalog(self, advertiser: str) -> Mapping[str, Product]:
        return self.products.get(advertiser, {})

    def popular(self, advertiser: str) -> Sequence[str]:
        return self.most_viewed.get(advertiser, [])


def shop(*skus: str, popular: Sequence[str] = (), out_of_stock: Sequence[str] = ()) -> Catalogs:
    products = {
        s: product(s, availability="out_of_stock" if s in out_of_stock else "in_stock")
        for s in skus
    }
    return Catalogs({"shop1": products}, {"shop1": list(popular)})


SLOT3 = Slot("pub", "728x90", 3)


def history(**kwargs: object) -> Shopper:
    return Shopper("u", (AdvertiserHistory("shop1", 1.0, **kwargs),))  # type: ignore[arg-type]


def ids(decision: object) -> list[str]:
    assert decision is not None
    return [p.product.id for p in decision.picks]  # type: ignore[attr-defined]


def test_cart_then_recent_then_popular() -> None:
    catalogs = shop("a", "b", "c", "d", popular=["d", "a"])
    decision = pick_products(history(viewed=("b", "a"), cart=("a",)), catalogs, SLOT3)
    assert decision is not None
    assert [(p.product.id, p.strategy) for p in decision.picks] == [
        ("a", "cart"),
        ("b", "recent"),
        ("d", "popular"),
    ]
    assert decision.strategy == "cart"


def test_purchased_out_of_stock_and_unknown_items_are_never_picked() -> None:
    catalogs = shop("a", "b", "c", popular=["a", "b", "c"], out_of_stock=["b"])
    decision = pick_products(history(viewed=("x", "b", "a", "c"), bought=("a",)), catalogs, SLOT3)
    assert ids(decision) == ["c"]


def test_slot_size_limits_the_number_of_products() -> None:
    catalogs = shop("a", "b", "c")
    decision = pick_products(history(viewed=("a", "b", "c")), catalogs, Slot("p", "320x50", 1))
    assert ids(decision) == ["a"]


def test_unknown_shopper_gets_a_fallback_shops_popular_items() -> None:
    catalogs = shop("a", "b", popular=["b"])
    decision = pick_products(Shopper(None), catalogs, SLOT3, ["shop1"])
    assert decision is not None and ids(decision) == ["b"]
    assert decision.strategy == "popular"


def test_nothing_eligible_is_no_fill() -> None:
    assert pick_products(Shopper(None), shop("a"), SLOT3, ["shop1"]) is None
    assert pick_products(history(viewed=("zz",)), shop("a"), SLOT3) is None


def test_most_recently_visited_shop_wins() -> None:
    catalogs = Catalogs({"shop1": {"a": product("a")}, "shop2": {"b": product("b")}})
    shopper = Shopper(
        "u",
        (
            AdvertiserHistory("shop2", 2.0, viewed=("b",)),
            AdvertiserHistory("shop1", 1.0, viewed=("a",)),
        ),
    )
    decision = pick_products(shopper, catalogs, SLOT3)
    assert decision is not None and decision.advertiser == "shop2"
