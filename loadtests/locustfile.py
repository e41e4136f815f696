"""A shopper's journey across a shop and a partner site, as Kaeru sees it.

Each simulated shopper has its own cookie jar (so its own `uid`): it browses the shop (pixel
views, tag batches with list + view), adds to cart, now and then buys, and reads a partner site
whose ad slots ask Kaeru for an ad, render it and sometimes click it.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080

Configuration (environment):
    KAERU_ADVERTISER  advertiser id of the shop (default "demo-shop", as in `kaeru demo`)
    KAERU_SKUS        comma-separated product ids (default: the ids of the demo catalog)
    KAERU_PUBLISHER   publisher id of the partner site (default "demo-news")
"""

from __future__ import annotations

import json
import os
import random
import uuid
from decimal import Decimal
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from locust import HttpUser, between, task
from requests.cookies import RequestsCookieJar

DEMO_CATALOG = Path(__file__).resolve().parent.parent / "adserver" / "demo" / "catalog.json"
GIF_LENGTH = 43
# How http.cookiejar names loopback hosts in a cookie's domain ("localhost" gets ".local").
LOOPBACK_COOKIE_DOMAINS = frozenset(("localhost", "localhost.local", "127.0.0.1", "::1", "[::1]"))


def _load_demo_prices() -> dict[str, Decimal]:
    """SKU -> selling price from the demo catalog (the repository's, else the installed one)."""
    path = DEMO_CATALOG
    if not path.is_file():
        try:
            from importlib.resources import files

            path = Path(str(files("adserver").joinpath("demo/catalog.json")))
        except ImportError:
            return {}
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        str(row["id"]): Decimal(str(row.get("sale_price") or row["price"]))
        for row in rows
        if isinstance(row, dict) and "id" in row and "price" in row
    }


def _skus(prices: dict[str, Decimal]) -> list[str]:
    configured = [s.strip() for s in os.environ.get("KAERU_SKUS", "").split(",") if s.strip()]
    skus = configured or list(prices)
    if not skus:
        raise RuntimeError("no products to browse: set KAERU_SKUS=sku1,sku2,...")
    return skus


ADVERTISER = os.environ.get("KAERU_ADVERTISER", "demo-shop")
PUBLISHER = os.environ.get("KAERU_PUBLISHER", "demo-news")
PRICES = _load_demo_prices()
SKUS = _skus(PRICES)
CURRENCY = "EUR"


BROWSER_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)


class BrowserCookieJar(RequestsCookieJar):
    """Browsers treat http://localhost and loopback addresses as secure origins, so they send
    Kaeru's `Secure` uid cookie back there over plain http; Python's cookie jar would not.
    Do as browsers do: a `Secure` cookie from a loopback host is kept as an ordinary one."""

    def set_cookie(self, cookie: Cookie, *args: Any, **kwargs: Any) -> None:
        if cookie.secure and cookie.domain.lstrip(".") in LOOPBACK_COOKIE_DOMAINS:
            cookie.secure = False
        super().set_cookie(cookie, *args, **kwargs)


def _path(url: str) -> str:
    """Path and query of an absolute URL served by Kaeru, to request it from the test host."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


class ShopperUser(HttpUser):
    """One shopper: a browser with its own cookies, moving between the shop and a partner."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.client.cookies = BrowserCookieJar()
        # Kaeru does not count known crawlers (python-requests is one): look like a browser.
        self.client.headers["User-Agent"] = BROWSER_USER_AGENT
        self.viewed: list[str] = []
        self.cart: list[str] = []
        self.pixel({"a": ADVERTISER, "e": "home"}, name="/px?e=home")

    # -- shop ------------------------------------------------------------------------------

    @task(10)
    def browse(self) -> None:
        sku = random.choice(SKUS)
        self._remember(self.viewed, sku)
        if random.random() < 0.3:
            listed = random.sample(SKUS, k=min(len(SKUS), 4))
            self.events(
                [
                    {"advertiser": ADVERTISER, "event": "list", "items": listed},
                    {"advertiser": ADVERTISER, "event": "view", "item": sku},
                ],
                name="/e [list+view]",
            )
        else:
            self.pixel({"a": ADVERTISER, "e": "view", "i": sku}, name="/px?e=view")

    @task(3)
    def add_to_cart(self) -> None:
        sku = random.choice(self.viewed) if self.viewed else random.choice(SKUS)
        self._remember(self.cart, sku)
        self.pixel({"a": ADVERTISER, "e": "cart", "i": ",".join(self.cart)}, name="/px?e=cart")

    @task(1)
    def buy(self) -> None:
        bought = self.cart or [random.choice(SKUS)]
        lines = [(sku, self._price(sku), random.randint(1, 2)) for sku in bought]
        items = [{"id": sku, "price": str(price), "quantity": qty} for sku, price, qty in lines]
        revenue = sum((price * qty for _, price, qty in lines), Decimal(0))
        purchase = {
            "advertiser": ADVERTISER,
            "event": "purchase",
            "order": f"lt-{uuid.uuid4().hex}",
            "items": items,
            "revenue": str(revenue),
            "currency": CURRENCY,
        }
        if self.events([purchase], name="/e [purchase]"):
            self.cart = []

    @task(1)
    def tag_script(self) -> None:
        with self.client.get("/tag.js", name="/tag.js", catch_response=True) as response:
            content_type = response.headers.get("Content-Type", "")
            if response.status_code != 200:
                response.failure(f"expected 200, got {response.status_code}")
            elif "javascript" not in content_type:
                response.failure(f"expected JavaScript, got {content_type!r}")
            else:
                response.success()

    # -- partner site ----------------------------------------------------------------------

    @task(6)
    def visit_partner(self) -> None:
        sizes = ["300x250", "728x90"] if random.random() < 0.4 else ["300x250"]
        for size in sizes:
            ad = self.ad(size)
            if ad is None:
                continue
            if random.random() < 0.8:
                self.rendered(ad["impression_url"])
            if random.random() < 0.2:
                self.click(random.choice(ad["products"])["click_url"])

    # -- requests --------------------------------------------------------------------------

    def pixel(self, params: dict[str, str], *, name: str) -> None:
        url = f"/px?{urlencode(params)}"
        with self.client.get(url, name=name, catch_response=True) as response:
            self._expect_gif(response)

    def events(self, events: list[dict[str, Any]], *, name: str) -> bool:
        body = json.dumps({"events": events})
        headers = {"Content-Type": "text/plain;charset=UTF-8"}  # what sendBeacon sends
        with self.client.post(
            "/e", data=body, headers=headers, name=name, catch_response=True
        ) as response:
            if response.status_code != 204:
                response.failure(f"expected 204, got {response.status_code}: {response.text[:200]}")
                return False
            response.success()
            return True

    def ad(self, size: str) -> dict[str, Any] | None:
        """Ask for an ad; a valid answer is an ad (200) or no fill (204)."""
        url = f"/ad.json?{urlencode({'pub': PUBLISHER, 'size': size})}"
        with self.client.get(url, name=f"/ad.json?size={size}", catch_response=True) as response:
            if response.status_code == 204:
                response.success()
                return None
            if response.status_code != 200:
                response.failure(f"expected 200 or 204, got {response.status_code}")
                return None
            try:
                ad: dict[str, Any] = response.json()
                products = ad["products"]
                # No `html` unless asked (`&html=1`, issue 15): a JSON caller renders the products.
                valid = "html" not in ad and bool(ad["impression_url"]) and bool(products)
                valid = valid and all(p["click_url"] for p in products)
            except (ValueError, KeyError, TypeError) as exc:
                response.failure(f"malformed ad JSON: {exc!r}")
                return None
            if not valid:
                response.failure("ad with html, or without impression_url or clickable products")
                return None
            response.success()
            return ad

    def rendered(self, impression_url: str) -> None:
        with self.client.get(
            _path(impression_url), name="/i/[token]", catch_response=True
        ) as response:
            self._expect_gif(response)

    def click(self, click_url: str) -> None:
        with self.client.get(
            _path(click_url), name="/c/[token]", allow_redirects=False, catch_response=True
        ) as response:
            location = response.headers.get("Location", "")
            if response.status_code != 302:
                response.failure(f"expected 302, got {response.status_code}")
            elif urlsplit(location).scheme not in ("http", "https"):
                response.failure(f"redirect to a non-web URL: {location!r}")
            else:
                response.success()

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _expect_gif(response: Any) -> None:
        content_type = response.headers.get("Content-Type", "")
        if response.status_code != 200:
            response.failure(f"expected 200, got {response.status_code}")
        elif content_type.split(";")[0] != "image/gif" or len(response.content) != GIF_LENGTH:
            response.failure(f"expected a {GIF_LENGTH}-byte GIF, got {content_type!r}")
        else:
            response.success()

    @staticmethod
    def _remember(items: list[str], sku: str, limit: int = 10) -> None:
        if sku in items:
            items.remove(sku)
        items.append(sku)
        del items[:-limit]

    @staticmethod
    def _price(sku: str) -> Decimal:
        return PRICES.get(sku) or Decimal(random.randint(500, 20000)) / 100
