"""Pure parsing of shop tracking input (pixel query strings and tag JSON) into events.

Nothing here raises on bad input: a parser returns either a `ShopperEvent` or a `Reject`
with a short machine-readable reason, which the handler counts in a metric and stores nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import cast

import orjson

from adserver.core.product import Product
from adserver.core.shopper import EVENT_KINDS, EventKind, LineItem, ShopperEvent, is_valid_sku
from adserver.delivery.click_ids import CLICK_ID_TEXT
from adserver.identity.email_signatures import parse_email_signature
from adserver.identity.identifiers import (
    Identify,
    valid_customer_id,
    valid_email_sha256,
    valid_fpid,
)

MAX_ITEMS = 50
MAX_EVENTS_PER_BATCH = 50
MAX_BATCH_BYTES = 64 * 1024
MAX_AMOUNT = Decimal("1e9")
MAX_AMOUNT_TEXT = 24
MAX_QUANTITY = 10_000
ORDER_ID = re.compile(r"^[A-Za-z0-9._:/#-]{1,64}\Z")
CURRENCY = re.compile(r"^[A-Z]{3}\Z")
ITEM_EVENTS: frozenset[str] = frozenset(("list", "view", "cart", "purchase"))


@dataclass(frozen=True, slots=True)
class Reject:
    """Why an input was refused; `reason` is a metric label, so it is one of a fixed set."""

    reason: str


def parse_amount(raw: object) -> Decimal | None | Reject:
    """A money amount from a string or number: None when absent, Reject when malformed."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return Reject("bad_amount")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return Reject("bad_amount")
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        return Reject("bad_amount")
    exponent = value.as_tuple().exponent
    if len(str(raw)) > MAX_AMOUNT_TEXT or (isinstance(exponent, int) and exponent < -6):
        return Reject("bad_amount")  # more precision than money has (and than Redis can add)
    return value


def _parse_quantity(raw: object) -> int | Reject:
    if raw is None or raw == "":
        return 1
    if isinstance(raw, bool):
        return Reject("bad_quantity")
    try:
        value = int(cast(str | int, raw))
    except (TypeError, ValueError):
        return Reject("bad_quantity")
    return value if 1 <= value <= MAX_QUANTITY else Reject("bad_quantity")


def _build_event(
    advertisers: Collection[str],
    advertiser: object,
    kind: object,
    lines: Sequence[LineItem],
    order: object,
    revenue: object,
    currency: object,
) -> ShopperEvent | Reject:
    if not isinstance(advertiser, str) or advertiser not in advertisers:
        return Reject("unknown_advertiser")
    if not isinstance(kind, str) or kind not in EVENT_KINDS:
        return Reject("unknown_event")
    if kind in ITEM_EVENTS and not lines:
        return Reject("missing_items")
    if len(lines) > MAX_ITEMS:
        return Reject("too_many_items")
    if any(not is_valid_sku(line.sku) for line in lines):
        return Reject("bad_item")
    if kind != "purchase":
        return ShopperEvent(advertiser, cast(EventKind, kind), tuple(x.sku for x in lines))
    return _build_purchase(advertiser, lines, order, revenue, currency)


def _build_purchase(
    advertiser: str, lines: Sequence[LineItem], order: object, revenue: object, currency: object
) -> ShopperEvent | Reject:
    if not isinstance(order, str) or not ORDER_ID.match(order):
        return Reject("bad_order")
    amount = parse_amount(revenue)
    if isinstance(amount, Reject):
        return amount
    if amount is None:
        priced = [x.price * x.quantity for x in lines if x.price is not None]
        amount = sum(priced, Decimal(0)) if priced else None
    if currency in (None, "") and amount is None:
        currency = None
    elif not isinstance(currency, str) or not CURRENCY.match(currency):
        return Reject("bad_currency")
    return ShopperEvent(
        advertiser,
        "purchase",
        tuple(x.sku for x in lines),
        order=order,
        revenue=amount,
        currency=currency,
        lines=tuple(lines),
    )


def parse_pixel_query(
    query: Mapping[str, str], advertisers: Collection[str]
) -> ShopperEvent | Reject:
    """`/px?a=ADV&e=EVENT&i=SKU,SKU&o=ORDER&v=VALUE&cur=CUR&p=PRICE,PRICE&q=QTY,QTY`."""
    items, price_text, quantity_text = query.get("i"), query.get("p"), query.get("q")
    skus = [s for s in items.split(",") if s] if items else []
    if not price_text and not quantity_text:
        return _plain_event(advertisers, query, skus)
    prices = price_text.split(",") if price_text else []
    quantities = quantity_text.split(",") if quantity_text else []
    if len(skus) > MAX_ITEMS or len(prices) > len(skus) or len(quantities) > len(skus):
        return Reject("too_many_items")
    lines: list[LineItem] = []
    for index, sku in enumerate(skus):
        line = _line(sku, _at(prices, index), _at(quantities, index))
        if isinstance(line, Reject):
            return line
        lines.append(line)
    return _build_event(
        advertisers,
        query.get("a"),
        query.get("e"),
        lines,
        query.get("o"),
        query.get("v"),
        query.get("cur"),
    )


def _plain_event(
    advertisers: Collection[str], query: Mapping[str, str], skus: list[str]
) -> ShopperEvent | Reject:
    """A pixel without prices or quantities (a view, a cart, a list: the usual one), checked
    as `parse_pixel_query` and `_build_event` check it, in the same order, without making a
    line item per sku; a purchase goes the whole way (its lines carry quantities)."""
    if len(skus) > MAX_ITEMS:
        return Reject("too_many_items")
    advertiser, kind = query.get("a"), query.get("e")
    if kind == "purchase" or advertiser not in advertisers:
        lines = [LineItem(sku, None, 1) for sku in skus]
        return _build_event(
            advertisers, advertiser, kind, lines, query.get("o"), query.get("v"), query.get("cur")
        )
    if kind not in EVENT_KINDS:
        return Reject("unknown_event")
    if kind in ITEM_EVENTS and not skus:
        return Reject("missing_items")
    if not all(is_valid_sku(sku) for sku in skus):
        return Reject("bad_item")
    return ShopperEvent(cast(str, advertiser), cast(EventKind, kind), tuple(skus))


def _at(values: Sequence[str], index: int) -> str | None:
    return values[index] if index < len(values) else None


def _line(sku: object, price: object, quantity: object) -> LineItem | Reject:
    if not isinstance(sku, str):
        return Reject("bad_item")
    amount = parse_amount(price)
    if isinstance(amount, Reject):
        return amount
    count = _parse_quantity(quantity)
    if isinstance(count, Reject):
        return count
    return LineItem(sku, amount, count)


def parse_tag_event(raw: object, advertisers: Collection[str]) -> ShopperEvent | Reject:
    """One event object of a `/e` batch, as sent by tag.js (see README for the shape)."""
    if not isinstance(raw, dict):
        return Reject("bad_event")
    items = raw.get("items", [])
    if "item" in raw:
        items = [raw["item"]]
    if not isinstance(items, list):
        return Reject("bad_item")
    if len(items) > MAX_ITEMS:
        return Reject("too_many_items")
    lines: list[LineItem] = []
    for item in items:
        if isinstance(item, dict):
            line = _line(item.get("id"), item.get("price"), item.get("quantity"))
        else:
            line = _line(item, None, None)
        if isinstance(line, Reject):
            return line
        lines.append(line)
    return _build_event(
        advertisers,
        raw.get("advertiser"),
        raw.get("event"),
        lines,
        raw.get("order"),
        raw.get("revenue"),
        raw.get("currency"),
    )


def parse_identify(raw: dict[str, object], advertisers: Collection[str]) -> Identify | Reject:
    """`{"advertiser", "event": "identify", "email_sha256": "<64 lowercase hex>"}` (with the
    shop's `"email_sig"` and `"sig_exp"` when its server signed it; or `"customer_id": "..."`):
    who the shopper told the shop they are. It carries no items; the values are checked here
    and never kept as sent (see adserver.identity.identifiers); the signature's shape only
    (the handler verifies it: adserver.identity.email_signatures)."""
    advertiser = raw.get("advertiser")
    if not isinstance(advertiser, str) or advertiser not in advertisers:
        return Reject("unknown_advertiser")
    if "email_sha256" in raw:
        email_sha256 = valid_email_sha256(raw["email_sha256"])
        if not email_sha256:
            return Reject("bad_email_sha256")
        signature = parse_email_signature(raw.get("email_sig"), raw.get("sig_exp"))
        return Identify(advertiser, email_sha256=email_sha256, email_signature=signature)
    if "customer_id" in raw:
        customer = valid_customer_id(raw["customer_id"])
        return Identify(advertiser, customer_id=customer) if customer else Reject("bad_customer_id")
    return Reject("missing_identifier")


def parse_batch_event(
    raw: object, advertisers: Collection[str]
) -> ShopperEvent | Identify | Reject:
    """One event object of a `/e` batch: an `identify` event or a shopping event."""
    if isinstance(raw, dict) and raw.get("event") == "identify":
        return parse_identify(raw, advertisers)
    return parse_tag_event(raw, advertisers)


@dataclass(frozen=True, slots=True)
class Batch:
    """A `/e` body: its events (or why each was refused), the TCF fields sent with them, and
    the tag's first-party id (`fpid`: None when absent; `bad_fpid` when sent malformed, then
    ignored)."""

    events: list[ShopperEvent | Identify | Reject]
    gdpr: str | None = None
    gdpr_consent: str | None = None
    kclid: str | Reject | None = None  # the landing page's click id (or why it was ignored)
    fpid: str | None = None
    bad_fpid: bool = False


def _consent_field(document: object, name: str) -> str | None:
    value = document.get(name) if isinstance(document, dict) else None
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _click_id_field(document: object) -> str | Reject | None:
    """The `kclid` a landing page sends (a sealed click id: URL-safe, bounded), checked for
    shape only; it is opened by the handler."""
    value = document.get("kclid") if isinstance(document, dict) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not CLICK_ID_TEXT.match(value):
        return Reject("bad_kclid")
    return value


def parse_batch(body: bytes, advertisers: Collection[str]) -> Batch | Reject:
    """A `/e` body: `{"events": [...], "gdpr": 1, "gdpr_consent": "...", "fpid": "..."}` or a
    bare list."""
    if len(body) > MAX_BATCH_BYTES:
        return Reject("body_too_large")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Reject("bad_json")
    raw_events = document.get("events") if isinstance(document, dict) else document
    if not isinstance(raw_events, list) or not raw_events:
        return Reject("bad_json")
    if len(raw_events) > MAX_EVENTS_PER_BATCH:
        return Reject("too_many_events")
    raw_fpid = document.get("fpid") if isinstance(document, dict) else None
    fpid = valid_fpid(raw_fpid)
    return Batch(
        [parse_batch_event(raw, advertisers) for raw in raw_events],
        _consent_field(document, "gdpr"),
        _consent_field(document, "gdpr_consent"),
        kclid=_click_id_field(document),
        fpid=fpid,
        bad_fpid=raw_fpid is not None and fpid is None,
    )


def at_catalog_value(event: ShopperEvent, catalog: Mapping[str, Product]) -> ShopperEvent:
    """A purchase as the browser reported it carries at most the catalog value of its items
    (the price they sell at, times the quantities; an item not in the catalog is worth 0):
    anyone can send a purchase event, only the shop's server (the conversions postback) is
    believed beyond that."""
    if event.kind != "purchase" or event.revenue is None:
        return event
    value = Decimal(0)
    for line in event.lines:
        product = catalog.get(line.sku)
        if product is not None:
            value += product.selling_price * line.quantity
    return event if event.revenue <= value else replace(event, revenue=value)
