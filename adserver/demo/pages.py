"""The demo: a shop and a partner news site, served by Kaeru itself.

By default all three share one site, so Kaeru's cookie is first-party on both and the demo
works in every browser. `kaeru demo --cross-site` puts the shop and the partner on two sites
(Kaeru on the shop's, by default): the partner's ads then see no Kaeru cookie where the browser
blocks third-party cookies, and each page has a fake log-in box whose e-mail, hashed in the
browser, carries the shopper across instead (`identify` on the shop, `eid=` on the partner).

On the partner the demo also plays the publisher's server: `POST /demo/partner/sign` takes the
hash (never the e-mail) and answers it signed with the demo publisher's token (`eid_sig`,
`eid_exp`), which the page adds to its ad tags; Kaeru personalises an `eid` on `/ad` only so
vouched for. A real publisher signs only the hash of the reader logged in on its own site;
this demo, whose log-in takes any address without a password, signs any hash it is sent.
The shop's log-in likewise has the shop's server sign its shopper's hash
(`POST /demo/shop/sign`, with the demo advertiser's token: `email_sig`, `sig_exp`), which
its `identify` carries, so the shop's e-mail audiences list the demo's shoppers.
"""

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from adserver.demo.catalog import DEMO_ADVERTISER, DEMO_SHOPS, ENGLISH_SHOP, DemoShop, demo_catalog
from adserver.demo.picture import product_picture

__all__ = [
    "DEMO_ADVERTISER",
    "DEMO_PUBLISHER",
    "DEMO_SHOPS",
    "PARTNER_CATEGORY",
    "PARTNER_KEYWORDS",
    "DemoShop",
    "DemoSites",
    "EidSigner",
    "EmailRecsFetcher",
    "add_demo_routes",
    "demo_catalog",
]

DEMO_PUBLISHER = "demo-news"
SIGN_PATH = "/demo/partner/sign"
SIGN_BODY_BYTES = 1024
HASHED_EMAIL = re.compile(r"^[0-9a-f]{64}\Z")
# What the demo's publisher server answers for a hashed e-mail: its signature and expiry
# (unix seconds), as `adserver.identity.eid_signatures.sign_eid` computes them.
EidSigner = Callable[[str], tuple[str, int]]
# The demo shop's e-mail service: asks Kaeru, server to server with the demo advertiser's token,
# `GET /api/v1/advertisers/{adv}/recommendations` with these query parameters, and answers the
# HTML block (None when Kaeru refused or could not be reached).
EmailRecsFetcher = Callable[[Mapping[str, str]], Awaitable[str | None]]
UID_COOKIE = "uid"  # Kaeru's cookie: one site with the shop in the demo, so the shop reads it
OUTBOX_PLACEMENT = "home"  # the browse abandoner's e-mail: what they viewed and its neighbours
OUTBOX_N = 3
# The e-mail's own text above Kaeru's block; links open outside the sandboxed frame.
OUTBOX_INTRO = (
    '<!doctype html><meta charset="utf-8"><base target="_blank">'
    '<p style="font-family:sans-serif">Hello! You looked around our shop the other day: '
    "here is what we picked for you.</p>"
)
PICTURE_CACHE_CONTROL = "public, max-age=604800"
# What the partner's article is about, passed as context (`kw=`, `cat=`) on its ad requests
# in the cross-site demo.
PARTNER_KEYWORDS = ("camping", "tent", "sleeping bag", "head torch", "mug")
PARTNER_CATEGORY = "Camping"


@dataclass(frozen=True, slots=True)
class DemoSites:
    """Where the browser reaches the shop, the partner and Kaeru: origins such as
    `http://localhost:8080`, or all "" (links relative to the one site serving everything)."""

    shop: str = ""
    partner: str = ""
    kaeru: str = ""

    @property
    def cross_site(self) -> bool:
        return self.shop != self.partner


SITES = web.AppKey("demo_sites", DemoSites)
SHOP = web.AppKey("demo_shop", DemoShop)
SIGNER: web.AppKey[EidSigner] = web.AppKey("demo_eid_signer")
EMAIL_RECS: web.AppKey[EmailRecsFetcher] = web.AppKey("demo_email_recs")
SHOP_SIGNER: web.AppKey[EidSigner] = web.AppKey("demo_email_signer")
SHOP_SIGN_PATH = "/demo/shop/sign"

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    auto_reload=False,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals.update(
    advertiser=DEMO_ADVERTISER,
    publisher=DEMO_PUBLISHER,
    partner_keywords=",".join(PARTNER_KEYWORDS),
    partner_category=PARTNER_CATEGORY,
    shop_sign_path=SHOP_SIGN_PATH,
)
_PAGES: dict[str, Template] = {
    name: _ENV.get_template(f"{name}.html")
    for name in ("landing", "shop", "product", "cart", "outbox", "thanks", "partner", "not_found")
}


def _page(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    html = _PAGES[name].render(sites=request.app[SITES], **context)
    return web.Response(text=html, status=status, content_type="text/html")


def _not_found(request: web.Request, what: str) -> web.Response:
    return _page(request, "not_found", status=404, what=what)


async def landing(request: web.Request) -> web.Response:
    return _page(request, "landing")


async def shop(request: web.Request) -> web.Response:
    return _page(request, "shop", products=request.app[SHOP].products)


async def product_page(request: web.Request) -> web.Response:
    catalog = request.app[SHOP]
    product = catalog.find(request.match_info["sku"])
    if product is None:
        return _not_found(request, "This product")
    checkout = {"id": product.id, "price": float(product.amount), "currency": product.currency}
    return _page(
        request, "product", product=product, checkout=checkout, more=catalog.more(product.id)
    )


async def product_image(request: web.Request) -> web.Response:
    product = request.app[SHOP].find(request.match_info["sku"])
    if product is None:
        return web.Response(status=404, text="no such product")
    svg = product_picture(product.id, product.title, product.category)
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        headers={"Cache-Control": PICTURE_CACHE_CONTROL},
    )


async def thanks(request: web.Request) -> web.Response:
    return _page(request, "thanks", product=request.app[SHOP].find(request.query.get("sku", "")))


async def cart(request: web.Request) -> web.Response:
    """The cart after "Add to cart": the product added (`?sku=`) and the `cart` placement."""
    return _page(request, "cart", product=request.app[SHOP].find(request.query.get("sku", "")))


async def outbox(request: web.Request) -> web.Response:
    """The e-mail a browse abandoner would get: the demo's e-mail service fetches the block
    for the current shopper (Kaeru's uid cookie), or for `?email_sha256=HEX` (an address an
    e-mail audience lists), and the page shows it as an e-mail."""
    email = request.query.get("email_sha256")
    if email is not None and not HASHED_EMAIL.match(email):
        refused = _page(
            request,
            "outbox",
            status=400,
            bad_email=True,
            shopper=False,
            connected=True,
            block=None,
            email_sha256=None,
            placement=OUTBOX_PLACEMENT,
            intro="",
        )
        refused.headers.update(NO_STORE)
        return refused
    who = {"email_sha256": email} if email else {"uid": request.cookies.get(UID_COOKIE, "")}
    fetch = request.app.get(EMAIL_RECS)
    block: str | None = None
    uid = email or who["uid"]
    if uid and fetch is not None:
        block = await fetch({**who, "placement": OUTBOX_PLACEMENT, "n": str(OUTBOX_N)})
    page = _page(
        request,
        "outbox",
        shopper=bool(uid),
        email_sha256=email,
        bad_email=False,
        connected=fetch is not None,
        block=block,
        placement=OUTBOX_PLACEMENT,
        intro=OUTBOX_INTRO,
    )
    page.headers.update(NO_STORE)
    return page


async def partner(request: web.Request) -> web.Response:
    return _page(request, "partner", sign_path=SIGN_PATH)


NO_STORE = {"Cache-Control": "no-store"}


def _refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=NO_STORE)


async def sign(request: web.Request) -> web.Response:
    """`POST /demo/partner/sign` `{"eid": "<64 lowercase hex>"}`: the demo publisher's server
    signing its reader's hashed e-mail: `{"eid", "eid_sig", "eid_exp"}`. Only a hash is taken
    (an e-mail, or anything else, is a 400, and nothing of the body is logged or kept)."""
    if request.content_length is None or request.content_length > SIGN_BODY_BYTES:
        return _refused(f"a JSON body of at most {SIGN_BODY_BYTES} bytes", 413)
    try:
        body = await request.json()
    except ValueError:
        return _refused('the body must be JSON: {"eid": "<SHA-256 hex of the e-mail>"}')
    eid = body.get("eid") if isinstance(body, dict) else None
    if not isinstance(eid, str) or not HASHED_EMAIL.match(eid):
        return _refused("eid must be the SHA-256 hex (64 lowercase) of an e-mail, not an e-mail")
    signature, expiry = request.app[SIGNER](eid)
    return web.json_response(
        {"eid": eid, "eid_sig": signature, "eid_exp": expiry}, headers=NO_STORE
    )


async def sign_email(request: web.Request) -> web.Response:
    """`POST /demo/shop/sign` `{"email_sha256": "<64 lowercase hex>"}`: the demo shop's server
    signing its logged-in shopper's hashed e-mail for `identify`: `{"email_sha256",
    "email_sig", "sig_exp"}` (as `adserver.identity.email_signatures.sign_email`). Only a
    hash is taken, nothing of the body is logged or kept."""
    if request.content_length is None or request.content_length > SIGN_BODY_BYTES:
        return _refused(f"a JSON body of at most {SIGN_BODY_BYTES} bytes", 413)
    try:
        body = await request.json()
    except ValueError:
        return _refused('the body must be JSON: {"email_sha256": "<SHA-256 hex>"}')
    email_sha256 = body.get("email_sha256") if isinstance(body, dict) else None
    if not isinstance(email_sha256, str) or not HASHED_EMAIL.match(email_sha256):
        return _refused("email_sha256 must be the SHA-256 hex (64 lowercase) of an e-mail")
    signature, expiry = request.app[SHOP_SIGNER](email_sha256)
    answer = {"email_sha256": email_sha256, "email_sig": signature, "sig_exp": expiry}
    return web.json_response(answer, headers=NO_STORE)


def _redirect_to(location: str) -> Handler:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(location)

    return redirect


def add_demo_routes(
    app: web.Application,
    sites: DemoSites | None = None,
    signer: EidSigner | None = None,
    email_recs: EmailRecsFetcher | None = None,
    email_signer: EidSigner | None = None,
    catalog: DemoShop = ENGLISH_SHOP,
) -> None:
    """Register the demo pages under /demo/ (GET only); `sites`: where each one lives (default:
    all on the one site serving them). With two sites and a `signer` (the demo publisher's
    token at work), the partner's publisher server too: `POST /demo/partner/sign`; with an
    `email_signer` (the demo advertiser's token), the shop's: `POST /demo/shop/sign`. With
    `email_recs` (the demo advertiser's token at work), the outbox shows the e-mail block.
    `catalog`: what the shop sells (`DEMO_SHOPS`: English in EUR, or Japanese in JPY)."""
    app[SITES] = sites or DemoSites()
    app[SHOP] = catalog
    if email_recs is not None:
        app[EMAIL_RECS] = email_recs
    if signer is not None and app[SITES].cross_site:
        app[SIGNER] = signer
        app.router.add_post(SIGN_PATH, sign)
    if email_signer is not None and app[SITES].cross_site:
        app[SHOP_SIGNER] = email_signer
        app.router.add_post(SHOP_SIGN_PATH, sign_email)
    app.router.add_routes(
        [
            web.get("/demo/", landing),
            web.get("/demo/shop/", shop),
            web.get("/demo/shop/p/{sku}", product_page),
            web.get("/demo/shop/img/{sku}.svg", product_image),
            web.get("/demo/shop/cart", cart),
            web.get("/demo/shop/outbox", outbox),
            web.get("/demo/shop/thanks", thanks),
            web.get("/demo/partner/", partner),
        ]
    )
    for path in ("/demo", "/demo/shop", "/demo/partner"):
        app.router.add_get(path, _redirect_to(f"{path}/"))
