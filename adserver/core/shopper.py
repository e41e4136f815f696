"""The shopper as Kaeru sees them: the events a shop reports and the history they build up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from adserver.core.value_record import ValueRecord

EventKind = Literal["home", "list", "view", "cart", "purchase"]
EVENT_KINDS: frozenset[str] = frozenset(("home", "list", "view", "cart", "purchase"))

# Product ids travel comma-separated in the pixel URL, so a comma can never be part of one.
SKU_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f,]")
MAX_SKU_LENGTH = 64


def is_valid_sku(value: str) -> bool:
    """1-64 characters, no comma or control character, no surrounding blanks."""
    return (
        0 < len(value) <= MAX_SKU_LENGTH
        and value == value.strip()
        and SKU_FORBIDDEN.search(value) is None
    )


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of an order: which product, at what unit price, how many."""

    sku: str
    price: Decimal | None = None
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class ShopperEvent:
    """A validated tracking event from a shop page (pixel or tag)."""

    advertiser: str
    kind: EventKind
    items: tuple[str, ...] = ()
    order: str | None = None
    revenue: Decimal | None = None
    currency: str | None = None
    lines: tuple[LineItem, ...] = ()
    # A purchase confirmed by the shop's server (the conversions postback) is trusted: its
    # revenue stands and it is not held to the daily cap of browser-reported conversions.
    server_reported: bool = False
    # False for a browser-reported purchase past its client's hourly cap: recorded, not
    # attributed (see adserver.delivery.impression_caps.ImpressionCaps.count_purchase).
    attributable: bool = True


@dataclass(frozen=True, slots=True)
class AdvertiserHistory:
    """What one shopper did at one shop within the lookback window (newest first)."""

    advertiser: str
    last_seen: float
    viewed: tuple[str, ...] = ()
    cart: tuple[str, ...] = ()
    bought: tuple[str, ...] = ()  # newest first
    view_times: tuple[float, ...] = ()  # unix seconds, aligned with `viewed`
    revenue: Decimal = Decimal(0)  # lifetime, within the lookback of the facts key
    orders: int = 0
    cart_since: float | None = None  # latest add to a cart not bought since
    caps: Mapping[str, int] = field(default_factory=dict)  # today's c:<campaign>, i:<sku>
    bought_times: tuple[float, ...] = ()  # unix seconds of each one's last purchase
    value: ValueRecord | None = None  # the shopper's value record at this shop

    @property
    def purchased(self) -> frozenset[str]:
        return frozenset(self.bought)


@dataclass(frozen=True, slots=True)
class Shopper:
    """A cookie's histories, the most recently visited shop first."""

    uid: str | None
    histories: tuple[AdvertiserHistory, ...] = ()

    @property
    def known(self) -> bool:
        return bool(self.histories)
