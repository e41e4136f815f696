"""The ad decision, pure: a shopper's histories + catalogs + a slot -> which products to show.

Order of preference within one shop: what is in the cart, what was viewed most recently,
what other shoppers viewed with those (`related`), what goes with what they bought
(`cross_sell`), topped up with the shop's most viewed items. Never a product the shopper bought,
one missing from the catalog, or one out of stock. The shop the shopper visited most recently
comes first; with no usable history, the most viewed items of a fallback shop fill the slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from adserver.catalog import Product
from adserver.related import Suggestions
from adserver.shopper import AdvertiserHistory, Shopper


class CatalogView(Protocol):
    def catalog(self, advertiser: str) -> Mapping[str, Product]: ...
    def popular(self, advertiser: str) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class Slot:
    publisher: str
    size: str
    max_products: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class Pick:
    product: Product
    strategy: str


@dataclass(frozen=True, slots=True)
class Decision:
    advertiser: str
    picks: tuple[Pick, ...]

    @property
    def strategy(self) -> str:
        """The strategy of the lead product: what this ad is mostly about."""
        return self.picks[0].strategy


def pick_products(
    shopper: Shopper,
    catalogs: CatalogView,
    slot: Slot,
    fallback_advertisers: Sequence[str] = (),
    suggestions: Mapping[str, Suggestions] | None = None,
) -> Decision | None:
    """The products to show in `slot`, or None for no fill."""
    for history in shopper.histories:
        suggested = (suggestions or {}).get(history.advertiser, Suggestions())
        personal = _eligible(
            catalogs.catalog(history.advertiser),
            history.purchased,
            [
                ("cart", history.cart),
                ("recent", history.viewed),
                ("related", suggested.related),
                ("cross_sell", suggested.cross_sell),
            ],
            slot.max_products,
        )
        if personal:
            return _top_up(history, personal, catalogs, slot.max_products)
    by_advertiser = {h.advertiser: h.purchased for h in shopper.histories}
    for advertiser in [*by_advertiser, *fallback_advertisers]:
        purchased = by_advertiser.get(advertiser, frozenset())
        picks = _eligible(
            catalogs.catalog(advertiser),
            purchased,
            [("popular", catalogs.popular(advertiser))],
            slot.max_products,
        )
        if picks:
            return Decision(advertiser, tuple(picks))
    return None


def _top_up(
    history: AdvertiserHistory, picks: list[Pick], catalogs: CatalogView, limit: int
) -> Decision:
    if len(picks) < limit:
        chosen = history.purchased | {p.product.id for p in picks}
        picks += _eligible(
            catalogs.catalog(history.advertiser),
            chosen,
            [("popular", catalogs.popular(history.advertiser))],
            limit - len(picks),
        )
    return Decision(history.advertiser, tuple(picks))


def _eligible(
    catalog: Mapping[str, Product],
    excluded: frozenset[str],
    sources: Iterable[tuple[str, Iterable[str]]],
    limit: int,
) -> list[Pick]:
    picks: list[Pick] = []
    seen: set[str] = set()
    for strategy, skus in sources:
        for sku in skus:
            if len(picks) >= limit:
                return picks
            product = catalog.get(sku)
            if sku in excluded or sku in seen or product is None or not product.in_stock:
                continue
            seen.add(sku)
            picks.append(Pick(product, strategy))
    return picks
