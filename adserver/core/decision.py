"""The ad decision, pure: shopper + campaigns + catalogs + slot -> which ad, with which products.

Every campaign of every advertiser is checked: does it run now (status, dates, hours), may it
fill this slot (size, publisher, country), is the shopper in its audience, is its daily cap
left, and which products do its strategies give (never a product the shopper bought, but by
`replenish`; never one out of stock or missing, or one whose per-item cap is reached). Among
the campaigns with products, the slot goes to the highest expected value per impression (CPM,
or CPC x estimated CTR, times the campaign's bid multipliers); ties go to the shop the shopper
visited most recently. `Explanation` records all of it for "why this ad".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from adserver.core.campaigns import (
    CONTEXTUAL,
    REPLENISH,
    Campaign,
    Offer,
    ShopperFacts,
    audiences,
    expected_value,
    fits_slot,
    runs_at,
    targets,
)
from adserver.core.context import NO_CONTEXT, PageContext, ProductContext
from adserver.core.product import Product
from adserver.core.shopper import AdvertiserHistory, Shopper
from adserver.core.suggestions import Suggestions
from adserver.core.value_prediction import model_of, predicted_cents
from adserver.core.value_segments import (
    NO_CLASS,
    ShopperValue,
    ValueClass,
    bid_factor,
    classify,
    replenish,
)

DAY_SECONDS = 86400


class Market(Protocol):
    """What the decision reads besides the shopper (the in-process caches in production)."""

    def catalog(self, advertiser: str) -> Mapping[str, Product]: ...
    def popular(self, advertiser: str) -> Sequence[str]: ...
    def product_context(self, advertiser: str, sku: str) -> ProductContext | None:
        """What the product offers to match a page (kept per catalog load for popular
        products), or None: the decision then works it out from the product."""
        ...

    def upsell(self, advertiser: str, sku: str) -> Sequence[str]: ...
    def campaigns(self, advertiser: str) -> Sequence[Campaign]: ...
    def ctr(self, advertiser: str, campaign: str) -> float: ...
    def newcomer_campaigns(self, advertiser: str, size: str) -> Sequence[Campaign]:
        """`rank_for_newcomers` of the advertiser's campaigns (kept between refreshes)."""
        ...


@dataclass(frozen=True, slots=True)
class Slot:
    publisher: str
    size: str
    max_products: int
    name: str = ""
    country: str | None = None
    context: PageContext = NO_CONTEXT  # the page's keywords and category (`kw=`, `cat=`)


@dataclass(frozen=True, slots=True)
class Pick:
    product: Product
    strategy: str


@dataclass(frozen=True, slots=True)
class Decision:
    advertiser: str
    campaign: str
    picks: tuple[Pick, ...]
    expected_value: float = 0.0
    offer: Offer | None = None  # the campaign's, valid or not (the creative checks its dates)

    @property
    def strategy(self) -> str:
        """The strategy of the lead product: what this ad is mostly about."""
        return self.picks[0].strategy


@dataclass(slots=True)
class Explanation:
    """Why this ad: every campaign considered, and what became of it."""

    campaigns: list[dict[str, Any]] = field(default_factory=list)
    winner: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"campaigns": self.campaigns, "winner": self.winner}


def facts_of(history: AdvertiserHistory | None, value: ValueClass = NO_CLASS) -> ShopperFacts:
    if history is None:
        return ShopperFacts(False, None, None, None, 0, Decimal(0), value.segment, value.due)
    return ShopperFacts(
        True,
        history.last_seen,
        history.view_times[0] if history.view_times else None,
        history.cart_since if history.cart else None,
        history.orders,
        history.revenue,
        value.segment,
        value.due,
    )


def may_serve_newcomers(campaign: Campaign) -> bool:
    """Whether the campaign can ever fill a slot for a shopper with no history at its shop:
    it is active, wants such a shopper, and falls back on popular products (`popular`, or
    `contextual` on a page that says what it is about: the only strategies that give products
    without a history)."""
    strategies = campaign.what.strategies
    return (
        campaign.status == "active"
        and ("popular" in strategies or CONTEXTUAL in strategies)
        and targets(campaign, facts_of(None), 0.0)[0]
    )


def rank_for_newcomers(
    campaigns: Iterable[Campaign], value: Callable[[Campaign], float], size: str
) -> tuple[Campaign, ...]:
    """The campaigns that may serve a shopper new to their shop in `size`, the highest
    expected value first (ties in the given order, as `decide` breaks them)."""
    fitting = [
        c
        for c in campaigns
        if may_serve_newcomers(c) and (not c.where.sizes or size in c.where.sizes)
    ]
    return tuple(sorted(fitting, key=value, reverse=True))  # sorted() is stable in reverse too


def decide(
    shopper: Shopper,
    market: Market,
    slot: Slot,
    advertisers: Sequence[str],
    now: float,
    suggestions: Mapping[str, Suggestions] | None = None,
    explanation: Explanation | None = None,
    values: Mapping[str, ShopperValue] | None = None,
) -> Decision | None:
    """The winning ad for `slot`, or None for no fill. `advertisers` is the tie-break order
    after the shopper's own shops (shuffled by the caller for fairness). `values`: the
    shopper's value at each shop (record, the shop's standing, purchase days, replenishment
    intervals) for the value audiences, bid multipliers and `replenish` (the ad handlers pass
    `value_segments.shopper_values`; None: no segment, no due status, no replenishment).

    A shop the shopper never visited costs one look at its best campaign for newcomers
    (`newcomer_campaigns`), whatever the number of its campaigns; with an `explanation`
    (debug) every campaign is checked and noted instead, to the same decision."""
    histories = {h.advertiser: h for h in shopper.histories}
    suggestions = suggestions or {}
    values = values or {}
    order = list(dict.fromkeys([*histories, *advertisers]))
    best: tuple[tuple[float, int], Decision] | None = None
    for rank, advertiser in enumerate(order):
        history = histories.get(advertiser)
        suggested = suggestions.get(advertiser)
        value = values.get(advertiser)
        if history is None and suggested is None and value is None and explanation is None:
            to_beat = None if best is None else best[0][0]
            found = _newcomer_decision(advertiser, market, slot, now, to_beat)
            if found is not None:
                best = ((found.expected_value, -rank), found)
            continue
        predicted = None if explanation is None else _predicted_value(value, now)
        for campaign in market.campaigns(advertiser):
            decision, note = _consider(
                campaign, history, suggested or Suggestions(), market, slot, now, value
            )
            if explanation is not None:
                if predicted is not None:
                    note["predicted_12m_value"] = predicted
                explanation.campaigns.append(note)
            if decision is not None:
                score = (decision.expected_value, -rank)
                if best is None or score > best[0]:
                    best = (score, decision)
    if best is None:
        return None
    if explanation is not None:
        explanation.winner = {
            "advertiser": best[1].advertiser,
            "campaign": best[1].campaign,
            "expected_value": best[1].expected_value,
        }
    return best[1]


def _predicted_value(value: ShopperValue | None, now: float) -> str | None:
    """For debug only (a series per shop): the shopper's predicted 12-month revenue at the shop
    in its currency ("123.45"), when the shop's standing has fitted models; else None."""
    if value is None:
        return None
    model = model_of(value.standing)
    cents = predicted_cents(model, value.record, int(now // DAY_SECONDS))
    return None if cents is None else str((Decimal(round(cents)) / 100).quantize(Decimal("0.01")))


def _newcomer_decision(
    advertiser: str, market: Market, slot: Slot, now: float, to_beat: float | None
) -> Decision | None:
    """The advertiser's best ad for a shopper new to it that beats `to_beat` (a shop later in
    the order must be strictly better), or None. Every such campaign shows the same popular
    products (those matching the page first), so the first one that runs now, fits the slot and
    finds products is the advertiser's best; a campaign only `contextual` may find none on this
    page, a later one falling back on `popular` still may."""
    for campaign in market.newcomer_campaigns(advertiser, slot.size):
        value = expected_value(campaign, market.ctr(advertiser, campaign.id))
        if to_beat is not None and value <= to_beat:
            return None  # ranked: no later campaign of this shop can win either
        if not runs_at(campaign, now)[0]:
            continue
        if not fits_slot(campaign, slot.size, slot.publisher, slot.country)[0]:
            continue
        decision = _consider(campaign, None, Suggestions(), market, slot, now)[0]
        if decision is not None or "popular" in campaign.what.strategies:
            return decision  # no popular product for one campaign: none for the others either
    return None


def _consider(
    campaign: Campaign,
    history: AdvertiserHistory | None,
    suggested: Suggestions,
    market: Market,
    slot: Slot,
    now: float,
    value: ShopperValue | None = None,
) -> tuple[Decision | None, dict[str, Any]]:
    valued = NO_CLASS if value is None else classify(value, int(now // DAY_SECONDS))
    facts = facts_of(history, valued)
    member = audiences(campaign, facts, now)
    note: dict[str, Any] = {
        "advertiser": campaign.advertiser,
        "campaign": campaign.id,
        "audiences": sorted(member),
    }
    if valued.segment is not None:
        note["segment"] = valued.segment
    if valued.due is not None:
        note["due"] = valued.due
    caps = history.caps if history else {}
    cap = campaign.when.cap_per_day
    checks = (
        runs_at(campaign, now),
        fits_slot(campaign, slot.size, slot.publisher, slot.country),
        targets(campaign, facts, now),
        (not cap or caps.get(f"c:{campaign.id}", 0) < cap, f"cap_per_day {cap} reached"),
    )
    for ok, reason in checks:
        if not ok:
            note["skipped"] = reason
            return None, note
    matched: dict[str, str] = {}
    sources = _sources(campaign, history, suggested, market, slot, now, matched, value)
    limit = min(slot.max_products, campaign.what.products or slot.max_products)
    picks, candidates = _pick(
        campaign, market.catalog(campaign.advertiser), history, sources, limit
    )
    note["candidates"] = candidates
    if slot.context and CONTEXTUAL in candidates:
        note["context"] = {
            "keywords": sorted(slot.context.keywords),
            "category": " > ".join(slot.context.category),
            "matched": {sku: matched[sku] for sku in candidates[CONTEXTUAL]},
        }
    if not picks:
        note["skipped"] = "no eligible product"
        return None, note
    worth = expected_value(campaign, market.ctr(campaign.advertiser, campaign.id))
    if campaign.bid_multipliers:
        factors = {name: float(factor) for name, factor in campaign.bid_multipliers}
        factor = bid_factor(factors, [*member, *valued.names])
        note["bid_factor"] = factor
        worth *= factor
    note["expected_value"] = worth
    return Decision(campaign.advertiser, campaign.id, tuple(picks), worth, campaign.offer), note


def _sources(
    campaign: Campaign,
    history: AdvertiserHistory | None,
    suggested: Suggestions,
    market: Market,
    slot: Slot,
    now: float,
    matched: dict[str, str],
    value: ShopperValue | None = None,
) -> list[tuple[str, Callable[[], Iterable[str]]]]:
    """The campaign's strategies in order, each as a function giving its candidates: a
    strategy is only computed if the slot is not full by the time `_pick` reaches it.
    `matched` receives how each contextual candidate matched the page (for debug)."""
    adv = campaign.advertiser
    cutoff = now - campaign.when.lookback_days * 86400

    def viewed() -> tuple[str, ...]:
        if history is None:
            return ()
        return tuple(
            s for s, t in zip(history.viewed, history.view_times, strict=False) if t >= cutoff
        )

    by_strategy: dict[str, Callable[[], Iterable[str]]] = {
        "cart": lambda: history.cart if history is not None else (),
        "recent": viewed,
        "related": lambda: suggested.related,
        "cross_sell": lambda: suggested.cross_sell,
        "upsell": lambda: [u for sku in viewed()[:3] for u in market.upsell(adv, sku)],
        "contextual": lambda: _contextual(market, adv, slot.context, matched),
        "replenish": lambda: replenish(value, now / DAY_SECONDS),
        "popular": lambda: market.popular(adv),
    }
    return [
        (strategy, by_strategy[strategy])
        for strategy in campaign.what.effective
        if slot.context or strategy != CONTEXTUAL  # nothing to match: nothing to try
    ]


def _contextual(
    market: Market, advertiser: str, page: PageContext, matched: dict[str, str]
) -> Iterator[str]:
    """The shop's popular products matching the page, most popular first: a scan of the
    popular list (short), each product's words worked out once per catalog load."""
    catalog = market.catalog(advertiser)
    for sku in market.popular(advertiser):
        context = market.product_context(advertiser, sku)
        if context is None:
            product = catalog.get(sku)
            if product is None:
                continue
            context = ProductContext.of(product)
        how = context.matches(page)
        if how is not None:
            matched[sku] = how
            yield sku


def _pick(
    campaign: Campaign,
    catalog: Mapping[str, Product],
    history: AdvertiserHistory | None,
    sources: Iterable[tuple[str, Callable[[], Iterable[str]]]],
    limit: int,
) -> tuple[list[Pick], dict[str, list[str]]]:
    purchased = history.purchased if history else frozenset()
    caps = history.caps if history else {}
    item_cap = campaign.when.cap_per_item_per_day
    picks: list[Pick] = []
    candidates: dict[str, list[str]] = {}
    seen: set[str] = set()
    for strategy, candidates_of in sources:
        if len(picks) >= limit:
            break
        chosen = candidates.setdefault(strategy, [])
        hidden = frozenset() if strategy == REPLENISH else purchased  # its point: bought before
        for sku in candidates_of():
            if len(picks) >= limit:
                return picks, candidates
            product = catalog.get(sku)
            if sku in hidden or sku in seen or product is None or not product.in_stock:
                continue
            if item_cap and caps.get(f"i:{sku}", 0) >= item_cap:
                continue
            seen.add(sku)
            chosen.append(sku)
            picks.append(Pick(product, strategy))
    return picks, candidates
