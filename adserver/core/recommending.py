"""What a recommendations placement picks from its ranked sources, as pure functions: shared
by the shop's placements (`adserver.recs.placements`) and by `kaeru eval`
(`adserver.learning.evaluation`), so the evaluation measures the ranking the shop shows.

Candidates are taken source by source, each product once; never an excluded product (the
item itself, what the shopper bought, ...), never an unknown or out-of-stock one."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from adserver.core.product import Product

Source = tuple[str, Sequence[str]]  # (reason, products best first)


@dataclass(frozen=True, slots=True)
class Recommendation:
    product: Product
    reason: str  # which source found it: viewed_together, same_category, bought_together, ...


def neighbour_skus(neighbours: Iterable[tuple[str, float, float]]) -> list[str]:
    """A learnt neighbour list's products in its stored order, best first."""
    return [sku for sku, _, _ in neighbours]


def product_sources(
    viewed_together: Sequence[str], same_category: Sequence[str], popular: Sequence[str]
) -> list[Source]:
    """The `product` placement ("related to the item"): the item's viewed-together
    neighbours, then its category, then the shop's popular products."""
    return [
        ("viewed_together", viewed_together),
        ("same_category", same_category),
        ("popular", popular),
    ]


def pick(
    sources: Iterable[Source],
    excluded: Collection[str],
    catalog: Mapping[str, Product],
    n: int,
) -> list[Recommendation]:
    """At most `n` products from `sources` in order, each once, none excluded, unknown or
    out of stock."""
    chosen: list[Recommendation] = []
    seen: set[str] = set()
    for reason, skus in sources:
        for sku in skus:
            if sku in seen or sku in excluded:
                continue
            product = catalog.get(sku)
            if product is None or not product.in_stock:
                continue
            seen.add(sku)
            chosen.append(Recommendation(product, reason))
            if len(chosen) >= n:
                return chosen
    return chosen
