"""The demo: a shop and a partner news site, served by Kaeru itself on the same site.

Same site means Kaeru's cookie is first-party on both, so the demo works in every browser.
"""

from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from adserver.demo.catalog import (
    DEMO_ADVERTISER,
    SHOP_PRODUCTS,
    demo_catalog,
    find_product,
    more_products,
)
from adserver.demo.picture import product_picture

__all__ = ["DEMO_ADVERTISER", "DEMO_PUBLISHER", "add_demo_routes", "demo_catalog"]

DEMO_PUBLISHER = "demo-news"
PICTURE_CACHE_CONTROL = "public, max-age=604800"

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    auto_reload=False,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals.update(advertiser=DEMO_ADVERTISER, publisher=DEMO_PUBLISHER)
_PAGES: dict[str, Template] = {
    name: _ENV.get_template(f"{name}.html")
    for name in ("landing", "shop", "product", "thanks", "partner", "not_found")
}


def _page(name: str, status: int = 200, **context: Any) -> web.Response:
    html = _PAGES[name].render(**context)
    return web.Response(text=html, status=status, content_type="text/html")


def _not_found(what: str) -> web.Response:
    return _page("not_found", status=404, what=what)


async def landing(request: web.Request) -> web.Response:
    return _page("landing")


async def shop(request: web.Request) -> web.Response:
    return _page("shop", products=SHOP_PRODUCTS)


async def product_page(request: web.Request) -> web.Response:
    product = find_product(request.match_info["sku"])
    if product is None:
        return _not_found("This product")
    checkout = {"id": product.id, "price": float(product.amount), "currency": product.currency}
    return _page("product", product=product, checkout=checkout, more=more_products(product.id))


async def product_image(request: web.Request) -> web.Response:
    product = find_product(request.match_info["sku"])
    if product is None:
        return web.Response(status=404, text="no such product")
    svg = product_picture(product.id, product.title, product.category)
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        headers={"Cache-Control": PICTURE_CACHE_CONTROL},
    )


async def thanks(request: web.Request) -> web.Response:
    return _page("thanks", product=find_product(request.query.get("sku", "")))


async def partner(request: web.Request) -> web.Response:
    return _page("partner")


def _redirect_to(location: str) -> Handler:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(location)

    return redirect


def add_demo_routes(app: web.Application) -> None:
    """Register the demo pages under /demo/ (GET only)."""
    app.router.add_routes(
        [
            web.get("/demo/", landing),
            web.get("/demo/shop/", shop),
            web.get("/demo/shop/p/{sku}", product_page),
            web.get("/demo/shop/img/{sku}.svg", product_image),
            web.get("/demo/shop/thanks", thanks),
            web.get("/demo/partner/", partner),
        ]
    )
    for path in ("/demo", "/demo/shop", "/demo/partner"):
        app.router.add_get(path, _redirect_to(f"{path}/"))
