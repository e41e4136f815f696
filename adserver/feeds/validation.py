"""Validating a product feed: each row on its own (NDJSON, a JSON array or CSV with
Google-Merchant-like fields); a feed answers which rows were accepted and why the others were
rejected, so a shop can fix its export without guessing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from babel.numbers import is_currency

from adserver.core.product import MAX_URL, Product, clean_url, on_domains
from adserver.core.shopper import is_valid_sku
from adserver.feeds.reader import BOM, RowSource, row_source
from adserver.feeds.reader import FeedError as FeedError  # re-exported: a feed's own error
from adserver.feeds.reader import UnreadableRow as UnreadableRow
from adserver.feeds.reader import detect_format as detect_format

MAX_TITLE = 300
MAX_TEXT = 200
MAX_ROWS = 200_000
MAX_SHOWN_ID = 100  # characters of a rejected row's id in the answer (an id is at most 64)
PRICE = re.compile(r"^\s*(\d{1,9}(?:\.\d{1,4})?)\s*([A-Za-z]{3})?\s*\Z")
AVAILABILITY = {
    "in_stock": "in_stock",
    "in stock": "in_stock",
    "out_of_stock": "out_of_stock",
    "out of stock": "out_of_stock",
    "preorder": "preorder",
    "backorder": "backorder",
}


@dataclass(frozen=True, slots=True)
class RejectedRow:
    row: int
    id: str | None
    reason: str


@dataclass(slots=True)
class FeedTally:
    """How many rows were accepted and rejected, with the first `max_reasons` rejections."""

    max_reasons: int = 1000
    accepted: int = 0
    rejected: int = 0
    rejections: list[RejectedRow] = field(default_factory=list)

    def reject(self, row: RejectedRow) -> None:
        self.rejected += 1
        if len(self.rejections) < self.max_reasons:
            self.rejections.append(row)

    def summary(self, max_reasons: int = 1000) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejections": [asdict(r) for r in self.rejections[:max_reasons]],
        }


class FeedTooLong(FeedError):
    """More rows than one feed may have."""

    def __init__(self, max_rows: int) -> None:
        super().__init__(f"feed has more than {max_rows} rows")
        self.max_rows = max_rows


class FeedValidator:
    """Bytes of a feed in (pieces of any size), its valid products out as rows complete.
    Memory: the ids seen (for duplicates) and the first rejections, whatever the feed."""

    def __init__(
        self,
        content_type: str = "",
        domains: Sequence[str] = (),
        max_rows: int = MAX_ROWS,
        max_reasons: int = 1000,
    ) -> None:
        self.tally = FeedTally(max_reasons)
        self._content_type = content_type
        self._domains = domains
        self._max_rows = max_rows
        self._head = b""
        self._source: RowSource | None = None
        self._seen: set[str] = set()
        self._number = 0

    def feed(self, data: bytes) -> list[Product]:
        if self._source is None:
            self._head += data
            if len(self._head) < len(BOM) and BOM.startswith(self._head):
                return []  # maybe the start of a byte order mark
            head = self._head.removeprefix(BOM).lstrip()
            if not head:
                self._head = self._head[:64]  # blank so far: nothing to keep but a BOM
                return []
            self._source = row_source(head[:1], self._content_type)
            data, self._head = self._head.removeprefix(BOM), b""
        return self._validate(self._source.feed(data))

    def close(self) -> list[Product]:
        if self._source is None:
            self._source = row_source(b"", self._content_type)
            self._source.feed(self._head.removeprefix(BOM))
        return self._validate(self._source.close())

    def _validate(self, rows: list[object]) -> list[Product]:
        accepted: list[Product] = []
        for row in rows:
            self._number += 1
            if self._number > self._max_rows:
                raise FeedTooLong(self._max_rows)
            product = self._product(row)
            if isinstance(product, Product):
                self._seen.add(product.id)
                self.tally.accepted += 1
                accepted.append(product)
            else:
                row_id = row.get("id") if isinstance(row, dict) else None
                shown = str(row_id)[:MAX_SHOWN_ID] if row_id is not None else None
                self.tally.reject(RejectedRow(self._number, shown, product))
        return accepted

    def _product(self, row: object) -> Product | str:
        if isinstance(row, UnreadableRow):
            return row.reason
        if not isinstance(row, dict):
            return "row is not an object"
        product = parse_product(row, self._domains)
        if isinstance(product, Product) and product.id in self._seen:
            return f"duplicate id {product.id!r}"
        return product


@dataclass(slots=True)
class FeedResult:
    accepted: list[Product] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)

    def summary(self, max_reasons: int = 1000) -> dict[str, Any]:
        return {
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "rejections": [asdict(r) for r in self.rejected[:max_reasons]],
        }


def parse_feed(body: bytes, content_type: str = "", domains: Sequence[str] = ()) -> FeedResult:
    """Validate every row of a feed held whole in memory (tests, small files); raises
    FeedError only when the feed is unreadable. With `domains`, links and images must be on
    one of them (or a subdomain). Feeds that arrive over the network go through
    FeedValidator piece by piece instead."""
    validator = FeedValidator(content_type, domains, MAX_ROWS, MAX_ROWS)
    accepted = validator.feed(body) + validator.close()
    return FeedResult(accepted, validator.tally.rejections)


def _text(row: dict[str, Any], name: str, limit: int) -> str:
    value = row.get(name)
    if value is None:
        return ""
    return str(value).strip()[:limit]


def _url(row: dict[str, Any], name: str) -> str | None:
    return clean_url(_text(row, name, MAX_URL + 1))


def _price(raw: object) -> tuple[Decimal, str | None] | None:
    if isinstance(raw, bool) or raw is None or raw == "":
        return None
    match = PRICE.match(str(raw))
    if not match:
        return None
    return Decimal(match.group(1)), (match.group(2) or "").upper() or None


def parse_product(row: dict[str, Any], domains: Sequence[str] = ()) -> Product | str:
    """A Product, or the reason the row is rejected."""
    sku = _text(row, "id", 200)
    if not is_valid_sku(sku):
        return "id missing or invalid (1-64 characters, no comma or control characters)"
    title = _text(row, "title", MAX_TITLE)
    if not title:
        return "title missing"
    link, image = _url(row, "link"), _url(row, "image_link")
    if link is None:
        return "link missing or not an absolute http(s) URL"
    if image is None:
        return "image_link missing or not an absolute http(s) URL"
    for name, url in (("link", link), ("image_link", image)):
        if not on_domains(url, domains):
            return f"{name} is not on the advertiser's domains ({', '.join(domains)})"
    price = _price(row.get("price"))
    if price is None:
        return "price missing or not a number like 19.99 or '19.99 EUR'"
    sale = _price(row.get("sale_price")) if row.get("sale_price") not in (None, "") else None
    if row.get("sale_price") not in (None, "") and sale is None:
        return "sale_price is not a number like 19.99 or '19.99 EUR'"
    currency = _text(row, "currency", 8).upper() or price[1] or (sale[1] if sale else None)
    if not currency:
        return "currency missing (give a currency column or a price like '19.99 EUR')"
    if not is_currency(currency):
        return f"unknown currency {currency!r} (use an ISO 4217 code such as EUR)"
    availability = AVAILABILITY.get(_text(row, "availability", 40).lower() or "in_stock")
    if availability is None:
        return "availability must be in_stock, out_of_stock, preorder or backorder"
    return Product(
        id=sku,
        title=title,
        link=link,
        image_link=image,
        price=price[0],
        currency=currency,
        sale_price=sale[0] if sale and sale[0] < price[0] else None,
        availability=availability,
        category=_text(row, "category", MAX_TEXT),
        brand=_text(row, "brand", MAX_TEXT),
    )
