"""The demo shop's sample catalog: advertiser "demo-shop", loaded once from catalog.json."""

import json
from dataclasses import dataclass
from pathlib import Path

DEMO_ADVERTISER = "demo-shop"

_CATALOG_PATH = Path(__file__).with_name("catalog.json")
_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


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


_PRODUCTS = _load(_CATALOG_PATH)


def demo_catalog(base_url: str) -> list[dict[str, str]]:
    """The catalog as a product feed, with `{base}` in links replaced by `base_url`."""
    base = base_url.rstrip("/")
    return [{k: v.replace("{base}", base) for k, v in p.items()} for p in _PRODUCTS]


def format_price(amount: str, currency: str) -> str:
    symbol = _CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{amount}" if symbol else f"{amount} {currency}"


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

    @property
    def amount(self) -> str:
        return self.sale_price or self.price

    @property
    def price_label(self) -> str:
        return format_price(self.amount, self.currency)

    @property
    def was_label(self) -> str | None:
        return format_price(self.price, self.currency) if self.sale_price else None

    @property
    def page_url(self) -> str:
        return f"/demo/shop/p/{self.id}"

    @property
    def image_url(self) -> str:
        return f"/demo/shop/img/{self.id}.svg"


def _shop_product(row: dict[str, str]) -> ShopProduct:
    return ShopProduct(
        id=row["id"],
        title=row["title"],
        brand=row.get("brand", ""),
        category=row.get("category", ""),
        currency=row["currency"],
        price=row["price"],
        sale_price=row.get("sale_price") or None,
        in_stock=row.get("availability") == "in_stock",
    )


SHOP_PRODUCTS: tuple[ShopProduct, ...] = tuple(_shop_product(row) for row in _PRODUCTS)
_BY_ID = {p.id: p for p in SHOP_PRODUCTS}


def find_product(sku: str) -> ShopProduct | None:
    return _BY_ID.get(sku)


def more_products(sku: str, count: int = 4) -> list[ShopProduct]:
    """The `count` products after `sku` in catalog order, wrapping around."""
    ids = [p.id for p in SHOP_PRODUCTS]
    start = ids.index(sku) + 1 if sku in _BY_ID else 0
    ring = SHOP_PRODUCTS[start:] + SHOP_PRODUCTS[:start]
    return [p for p in ring if p.id != sku][:count]
