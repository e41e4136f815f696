"""The placements of `/recs.json` and what each recommends, as pure functions.

A placement reads the shopper's history at the shop (`AdvertiserHistory`, or None for a new or
non-personalised shopper), the learnt neighbour lists (`NeighbourList`, the lists the ad decision
reads, by (kind, advertiser, item) with kind 'viewed' or 'bought'), the shopper's merged rankings
(`Suggestions`, as the ad decision gets them), the catalog, the shop's popular list and, for
"same category", the catalog's upsell neighbours. Candidates are taken source by source, each
product once; never an unknown or out-of-stock product, never one the shopper bought, never the
item itself (nor, for `cart`, what is in the cart).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from adserver.core.product import Product
from adserver.core.recommending import (
    Recommendation,
    Source,
    neighbour_skus,
    pick,
    product_sources,
)
from adserver.core.shopper import AdvertiserHistory, is_valid_sku
from adserver.core.suggestions import Suggestions
from adserver.store.learning import NeighbourList

PLACEMENTS = ("product", "complements", "cart", "home", "thanks", "trending")
NEEDS_ITEM = frozenset(("product",))  # the others work from the shopper's history alone
DEFAULT_N = 6
MAX_N = 24
CART_ITEMS = 5  # the cart's latest items whose co-bought lists are read
ListKey = tuple[str, str, str]  # (kind, advertiser, item), as NeighbourCache takes it


@dataclass(frozen=True, slots=True)
class RecsQuery:
    advertiser: str
    placement: str
    item: str | None = None
    n: int = DEFAULT_N


@dataclass(frozen=True, slots=True)
class BadRecsQuery:
    reason: str  # the metric label
    message: str


def parse_recs_query(
    query: Mapping[str, str], advertisers: Collection[str]
) -> RecsQuery | BadRecsQuery:
    """`a=ADV&placement=P[&item=SKU][&n=N]`, or why not."""
    advertiser = query.get("a", "")
    if advertiser not in advertisers:
        return BadRecsQuery("unknown_advertiser", "a must be a configured advertiser")
    placement = query.get("placement", "")
    if placement not in PLACEMENTS:
        return BadRecsQuery(
            "unknown_placement", "placement must be one of " + ", ".join(PLACEMENTS)
        )
    item = query.get("item")
    if item == "":
        item = None
    if item is not None and not is_valid_sku(item):
        return BadRecsQuery("bad_item", "item must be a product id (1-64 characters, no comma)")
    if item is None and placement in NEEDS_ITEM:
        return BadRecsQuery("missing_item", f"placement={placement} needs item=SKU")
    raw_n = query.get("n")
    n = DEFAULT_N
    if raw_n is not None:
        if not raw_n.isascii() or not raw_n.isdigit() or not 1 <= int(raw_n) <= MAX_N:
            return BadRecsQuery("bad_n", f"n must be a whole number from 1 to {MAX_N}")
        n = int(raw_n)
    return RecsQuery(advertiser, placement, item, n)


def wanted_lists(query: RecsQuery, history: AdvertiserHistory | None) -> list[ListKey]:
    """The neighbour lists this placement reads beyond the shopper's own rankings."""
    adv, item = query.advertiser, query.item
    cart = history.cart[:CART_ITEMS] if history else ()
    if query.placement == "product" and item:
        return [("viewed", adv, item)]
    if query.placement == "complements":
        return [("bought", adv, sku) for sku in ((item,) if item else ()) + cart]
    if query.placement == "cart":
        return [("bought", adv, sku) for sku in cart]
    if query.placement == "thanks" and item:
        return [("bought", adv, item)]
    return []


def _neighbours(found: NeighbourList | None) -> list[str]:
    return neighbour_skus(found.neighbours) if found else []


def _merged(keys: Sequence[ListKey], lists: Mapping[ListKey, NeighbourList]) -> list[str]:
    """Several neighbour lists as one: the first list's best first, then alternating (a cart
    of three items shows something for each of them near the top)."""
    columns = [_neighbours(lists.get(key)) for key in keys]
    merged: list[str] = []
    for row in range(max((len(c) for c in columns), default=0)):
        merged.extend(column[row] for column in columns if row < len(column))
    return merged


def recommend(
    query: RecsQuery,
    history: AdvertiserHistory | None,
    suggestions: Suggestions | None,
    lists: Mapping[ListKey, NeighbourList],
    catalog: Mapping[str, Product],
    popular: Sequence[str],
    upsell: Callable[[str], Sequence[str]],
    trending: Sequence[str] = (),
) -> list[Recommendation]:
    """At most `query.n` products for the placement, best first (`trending`: the shop's
    trending ranking, see adserver.recs.trending)."""
    excluded = set(history.purchased) if history else set()
    if query.item:
        excluded.add(query.item)
    if query.placement == "cart" and history:
        excluded.update(history.cart)
    if query.placement == "trending":
        sources: list[Source] = [("trending", trending), ("popular", popular)]
    else:
        sources = _sources(query, history, suggestions, lists, catalog, popular, upsell)
    return pick(sources, excluded, catalog, query.n)


def _sources(
    query: RecsQuery,
    history: AdvertiserHistory | None,
    suggestions: Suggestions | None,
    lists: Mapping[ListKey, NeighbourList],
    catalog: Mapping[str, Product],
    popular: Sequence[str],
    upsell: Callable[[str], Sequence[str]],
) -> list[Source]:
    adv, item, placement = query.advertiser, query.item, query.placement
    cart = history.cart[:CART_ITEMS] if history else ()
    fill = ("popular", popular)
    if placement == "product" and item:
        return product_sources(
            _neighbours(lists.get(("viewed", adv, item))),
            _same_category(item, catalog, popular, upsell),
            popular,
        )
    if placement == "complements":
        anchors = ((item,) if item else ()) + cart
        return [
            ("bought_together", _merged([("bought", adv, s) for s in anchors], lists)),
            ("cross_sell", suggestions.cross_sell if suggestions else ()),
            fill,
        ]
    if placement == "cart":
        return [
            ("bought_together", _merged([("bought", adv, s) for s in cart], lists)),
            ("cross_sell", suggestions.cross_sell if suggestions else ()),
            fill,
        ]
    if placement == "thanks":
        just_bought = [("bought", adv, item)] if item else []
        return [
            ("bought_together", _merged(just_bought, lists)),
            ("cross_sell", suggestions.cross_sell if suggestions else ()),
            fill,
        ]
    # home: the shopper's recent views and their related items, popular for a new one
    return [
        ("for_you", suggestions.related if suggestions else ()),
        ("recently_viewed", history.viewed if history else ()),
        fill,
    ]


def _same_category(
    item: str,
    catalog: Mapping[str, Product],
    popular: Sequence[str],
    upsell: Callable[[str], Sequence[str]],
) -> list[str]:
    """The item's category among the shop's popular products, then the next pricier products
    of that category (the catalog's upsell index): no scan of the catalog per request, so a
    category with no popular product yields at most the upsell depth."""
    product = catalog.get(item)
    if product is None or not product.category:
        return []
    category = product.category
    same = [
        sku for sku in popular if (p := catalog.get(sku)) is not None and p.category == category
    ]
    return same + list(upsell(item))


def may_personalise_for(origin: str | None, domains: Sequence[str]) -> bool:
    """Whether an answer read by the page of `origin` may be personalised. The answer is CORS
    readable, so a page elsewhere must not read a shopper's history through it: a request
    without an Origin (the browser itself, a same-origin page) may; a cross-origin page only
    on the advertiser's own domains (KAERU_ADVERTISER_DOMAINS; none set: none may)."""
    if origin is None:
        return True
    host = _host_of(origin)
    names = [domain.lstrip(".").lower() for domain in domains]
    return bool(host) and any(host == name or host.endswith("." + name) for name in names)


def _host_of(origin: str) -> str:
    scheme, _, rest = origin.strip().partition("://")
    if scheme not in ("http", "https"):
        return ""  # `null`, `file:`, garbage
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if host.startswith("["):
        return ""
    return host.split(":", 1)[0].lower().rstrip(".")
