"""The demo shop's sample catalogs: advertiser "demo-shop", each loaded once from its JSON
file: `en` (catalog.json, in EUR) and `ja` (catalog_ja.json, the same products in Japanese and
JPY, for `kaeru demo --shop ja`, whose creatives are then in ja-JP)."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from babel.numbers import format_currency

DEMO_ADVERTISER = "demo-shop"

_CATALOG_PATH = Path(__file__).with_name("catalog.json")
_JA_CATALOG_PATH = Path(__file__).with_name("catalog_ja.json")


def _load(path: Path) -> tuple[dict[str, str], ...]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON array of products")
    products: list[dict[str, str]] = []
    for row in rows:
        if not isinstance(row, dict) or not all(isinstance(v, str) for v in row.values()):
            raise ValueError(f"{path}: every product must be an object of strings: {row!r}")
        products.append({str(k): str(v) for k, v in row.items()})
    return tuple(products)


def format_price(amount: str, currency: str, locale: str = "en-US") -> str:
    """As the shop's locale writes it (CLDR, through Babel, like Kaeru's creatives)."""
    return format_currency(Decimal(amount), currency, locale=locale.replace("-", "_"))


@dataclass(frozen=True, slots=True)
class ShopProduct:
    """A catalog row as the shop pages show it (links relative to the shop's own site)."""

    id: str
    title: str
    brand: str
    category: str
    currency: str
    price: str
    sale_price: str | None
    in_stock: bool
    locale: str = "en-US"

    @property
    def amount(self) -> str:
        return self.sale_price or self.price

    @property
    def price_label(self) -> str:
        return format_price(self.amount, self.currency, self.locale)

    @property
    def was_label(self) -> str | None:
        return format_price(self.price, self.currency, self.locale) if self.sale_price else None

    @property
    def page_url(self) -> str:
        return f"/demo/shop/p/{self.id}"

    @property
    def image_url(self) -> str:
        return f"/demo/shop/img/{self.id}.svg"


def _shop_product(row: dict[str, str], locale: str) -> ShopProduct:
    return ShopProduct(
        id=row["id"],
        title=row["title"],
        brand=row.get("brand", ""),
        category=row.get("category", ""),
        currency=row["currency"],
        price=row["price"],
        sale_price=row.get("sale_price") or None,
        in_stock=row.get("availability") == "in_stock",
        locale=locale,
    )


@dataclass(frozen=True, slots=True)
class DemoShop:
    """One of the demo's catalogs, with the locale its shop (and its creatives) speak."""

    name: str
    locale: str  # as KAERU_ADVERTISER_LOCALES writes it
    rows: tuple[dict[str, str], ...] = field(repr=False)
    products: tuple[ShopProduct, ...] = field(init=False, repr=False)
    _by_id: Mapping[str, ShopProduct] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        products = tuple(_shop_product(row, self.locale) for row in self.rows)
        object.__setattr__(self, "products", products)
        object.__setattr__(self, "_by_id", MappingProxyType({p.id: p for p in products}))

    def feed(self, base_url: str) -> list[dict[str, str]]:
        """The catalog as a product feed, with `{base}` in links replaced by `base_url`."""
        base = base_url.rstrip("/")
        return [{k: v.replace("{base}", base) for k, v in p.items()} for p in self.rows]

    def find(self, sku: str) -> ShopProduct | None:
        return self._by_id.get(sku)

    def more(self, sku: str, count: int = 4) -> list[ShopProduct]:
        """The `count` products after `sku` in catalog order, wrapping around."""
        ids = [p.id for p in self.products]
        start = ids.index(sku) + 1 if sku in self._by_id else 0
        ring = self.products[start:] + self.products[:start]
        return [p for p in ring if p.id != sku][:count]


DEMO_SHOPS: Mapping[str, DemoShop] = MappingProxyType(
    {
        "en": DemoShop("en", "en-US", _load(_CATALOG_PATH)),
        "ja": DemoShop("ja", "ja-JP", _load(_JA_CATALOG_PATH)),
    }
)
ENGLISH_SHOP = DEMO_SHOPS["en"]
SHOP_PRODUCTS = ENGLISH_SHOP.products


def demo_catalog(base_url: str) -> list[dict[str, str]]:
    """The English catalog as a product feed (see `DemoShop.feed`)."""
    return ENGLISH_SHOP.feed(base_url)


def find_product(sku: str) -> ShopProduct | None:
    return ENGLISH_SHOP.find(sku)


def more_products(sku: str, count: int = 4) -> list[ShopProduct]:
    return ENGLISH_SHOP.more(sku, count)
