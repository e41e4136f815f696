"""A product as a shop's feed describes it, its price text, and the one check every URL Kaeru
puts in a creative or a redirect passes (`clean_url`). Feeds are read and validated in
`adserver.feeds`."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from urllib.parse import quote, urlsplit

import idna
import orjson
from babel.numbers import format_currency

MAX_URL = 2048
UNSAFE_URL = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")  # controls, backslashes, surrogates
URL_SAFE = "/%:@!$&'()*+,;=-._~"  # kept as they are in a path; the rest is percent-encoded
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
SELLABLE = frozenset(("in_stock", "preorder", "backorder"))
PRICE_LOCALE = "en_US"  # the feed's stored price text; an advertiser's locale: `prices_in`
LOCAL_PRICES_KEPT = 65536  # (amount, currency, locale) texts kept formatted, ~10 MB at most


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    title: str
    link: str
    image_link: str
    price: Decimal
    currency: str
    sale_price: Decimal | None = None
    availability: str = "in_stock"
    category: str = ""
    brand: str = ""
    price_text: str = ""  # the price to show, in its currency (the sale price when on sale)
    regular_price_text: str = ""  # the crossed-out price when on sale, else empty

    @property
    def in_stock(self) -> bool:
        return self.availability in SELLABLE

    @property
    def selling_price(self) -> Decimal:
        """What the product sells at now: the sale price when on sale."""
        return self.price if self.sale_price is None else self.sale_price

    def __post_init__(self) -> None:
        # Formatting a price costs ~16 µs: done once per product, not once per ad.
        if not self.price_text:
            object.__setattr__(self, "price_text", format_price(self.selling_price, self.currency))
        if not self.regular_price_text and self.sale_price is not None:
            object.__setattr__(self, "regular_price_text", format_price(self.price, self.currency))

    def to_json(self) -> bytes:
        data = asdict(self)
        data["price"] = str(self.price)
        data["sale_price"] = None if self.sale_price is None else str(self.sale_price)
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Product:
        data = orjson.loads(raw)
        data["price"] = Decimal(data["price"])
        if data.get("sale_price") is not None:
            data["sale_price"] = Decimal(data["sale_price"])
        return cls(**data)


def format_price(amount: Decimal, currency: str, locale: str = PRICE_LOCALE) -> str:
    """The amount in its currency as the locale writes it (CLDR's patterns and the currency's
    own decimals, through Babel: ¥1,980 for JPY in ja_JP, 1.234,50 € in de_DE)."""
    return format_currency(amount, currency, locale=locale)


@functools.lru_cache(maxsize=LOCAL_PRICES_KEPT)
def _local_price(amount: Decimal, currency: str, locale: str) -> str:
    return format_price(amount, currency, locale)


def prices_in(product: Product, locale: str | None) -> tuple[str, str]:
    """The product's price text and crossed-out regular price text (empty when not on sale)
    as `locale` (a tag like `ja-JP`) writes them; None: the feed's own texts (en_US). Kept
    formatted, so an ad pays a dictionary look-up, not Babel's ~16 µs."""
    if locale is None:
        return product.price_text, product.regular_price_text
    tag = locale.replace("-", "_")
    regular = (
        "" if product.sale_price is None else _local_price(product.price, product.currency, tag)
    )
    return _local_price(product.selling_price, product.currency, tag), regular


def clean_url(value: str) -> str | None:
    """`value` as a safe absolute http(s) URL (host in IDNA, the rest percent-encoded, so it
    can go into a Location header as is), or None when a real URL parser refuses it or it
    could mean two things: a backslash, a control character, credentials, a bad port."""
    if len(value) > MAX_URL or UNSAFE_URL.search(value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # "http://[::1/x", a port of 99999 or "abc"
        return None
    host = _host(parts.hostname or "")
    if parts.scheme not in ("http", "https") or host is None or "@" in parts.netloc:
        return None
    authority = host if port is None else f"{host}:{port}"
    url = f"{parts.scheme}://{authority}{quote(parts.path, safe=URL_SAFE)}"
    if parts.query:
        url += "?" + quote(parts.query, safe=URL_SAFE + "?")
    if parts.fragment:
        url += "#" + quote(parts.fragment, safe=URL_SAFE + "?#")
    return url if len(url) <= MAX_URL else None


def _host(host: str) -> str | None:
    """The host in ASCII (IDNA 2008 for international names, which refuses invisible code
    points such as soft hyphens or line separators), or None."""
    if host.startswith("[") or ":" in host:
        return None
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    labels = host.lower().rstrip(".").split(".")
    try:
        ascii_labels = [
            label if label.isascii() else idna.encode(label).decode("ascii") for label in labels
        ]
    except idna.IDNAError:
        return None
    if not all(HOST_LABEL.match(label) for label in ascii_labels):
        return None
    return ".".join(ascii_labels)


def on_domains(url: str, domains: Sequence[str]) -> bool:
    """The URL's host is one of `domains` or below one (no restriction when empty)."""
    host = (urlsplit(url).hostname or "").lower()
    return not domains or any(host == d or host.endswith("." + d) for d in domains)
