import json
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adserver.demo.pages import DEMO_ADVERTISER, add_demo_routes, demo_catalog

TAG_JS = Path(__file__).parents[1] / "pixel" / "static" / "tag.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: tag.js not checked")
AD_SIZES = ("300x250", "728x90", "160x600", "320x50")

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> Client:
    app = web.Application()
    add_demo_routes(app)
    return await aiohttp_client(app)


async def test_landing_links_shop_partner_and_optout(client: Client) -> None:
    resp = await client.get("/demo/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    for href in ('href="/demo/shop/"', 'href="/demo/partner/"', 'href="/optout"'):
        assert href in html


async def test_demo_without_slash_redirects(client: Client) -> None:
    resp = await client.get("/demo", allow_redirects=False)
    assert resp.status == 301
    assert resp.headers["Location"] == "/demo/"


async def test_shop_lists_every_product_and_loads_the_tag(client: Client) -> None:
    resp = await client.get("/demo/shop/")
    assert resp.status == 200
    html = await resp.text()
    assert '<script async src="/tag.js"></script>' in html
    assert 'kaeru.push(["home", {advertiser: "demo-shop"}]);' in html
    assert 'kaeru.push(["list", {advertiser: "demo-shop", items: ["sku-101", ' in html
    for product in demo_catalog(""):
        assert f'href="/demo/shop/p/{product["id"]}"' in html
        assert f'src="/demo/shop/img/{product["id"]}.svg"' in html


async def test_product_page_fires_view_for_its_sku(client: Client) -> None:
    resp = await client.get("/demo/shop/p/sku-102")
    assert resp.status == 200
    html = await resp.text()
    assert '<script async src="/tag.js"></script>' in html
    assert 'kaeru.push(["view", {advertiser: "demo-shop", item: "sku-102"}]);' in html
    assert 'kaeru.push(["cart"' in html
    assert 'kaeru.push(["purchase"' in html
    assert "/demo/shop/thanks?sku=" in html


async def test_titles_are_escaped(client: Client) -> None:
    html = await (await client.get("/demo/shop/p/sku-107")).text()
    assert "Lumen &amp; Co" in html


async def test_unknown_sku_is_a_404_page(client: Client) -> None:
    resp = await client.get("/demo/shop/p/sku-nope")
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert (await client.get("/demo/shop/img/sku-nope.svg")).status == 404


async def test_product_picture_is_cacheable_svg(client: Client) -> None:
    resp = await client.get("/demo/shop/img/sku-101.svg")
    assert resp.status == 200
    assert resp.content_type == "image/svg+xml"
    assert "max-age=" in resp.headers["Cache-Control"]
    root = ElementTree.fromstring(await resp.text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


async def test_every_product_picture_is_well_formed(client: Client) -> None:
    for product in demo_catalog(""):
        resp = await client.get(f"/demo/shop/img/{product['id']}.svg")
        ElementTree.fromstring(await resp.text())


async def test_thanks_page_names_the_product(client: Client) -> None:
    resp = await client.get("/demo/shop/thanks", params={"sku": "sku-101"})
    assert resp.status == 200
    assert "Ridge 2 Trekking Tent" in await resp.text()
    assert (await client.get("/demo/shop/thanks")).status == 200


async def test_add_to_cart_goes_to_the_cart_page_which_shows_the_cart_placement(
    client: Client,
) -> None:
    product = await (await client.get("/demo/shop/p/sku-101")).text()
    assert 'kaeru.push(["cart", {advertiser: advertiser, items: [product.id]}]);' in product
    assert '"/demo/shop/cart?sku=" + encodeURIComponent(product.id)' in product
    resp = await client.get("/demo/shop/cart", params={"sku": "sku-101"})
    assert resp.status == 200
    html = await resp.text()
    assert "Added: <strong>Ridge 2 Trekking Tent</strong>" in html
    # the cart placement, told the item just added so it is never shown even before the
    # cart event is stored
    assert (
        '<div id="recs-cart" data-kaeru-recs="cart" data-advertiser="demo-shop" '
        'data-item="sku-101" data-n="4" data-label="Complete your cart"></div>'
    ) in html
    assert "/recs.js" in html
    empty = await (await client.get("/demo/shop/cart", params={"sku": "<nope>"})).text()
    assert 'data-kaeru-recs="cart"' in empty and "data-item" not in empty
    assert "<nope>" not in empty


async def test_outbox_without_the_e_mail_service_or_a_shopper_says_so(client: Client) -> None:
    resp = await client.get("/demo/shop/outbox")
    assert resp.status == 200
    html = await resp.text()
    assert "What is this?" in html and "started without its e-mail service" in html
    assert "<iframe" not in html


async def test_outbox_shows_the_block_fetched_for_the_shopper_escaped_in_a_sandbox(
    aiohttp_client: ClientFactory,
) -> None:
    asked: list[dict[str, str]] = []
    answers: list[str | None] = [
        '<table role="presentation"><tr><td>"Tent" & <b>co</b></td></tr></table>'
    ]

    async def fetch(params: Mapping[str, str]) -> str | None:
        asked.append(dict(params))
        return answers[0]

    app = web.Application()
    add_demo_routes(app, email_recs=fetch)
    client = await aiohttp_client(app)
    nobody = await (await client.get("/demo/shop/outbox")).text()
    assert "Kaeru does not know you yet" in nobody and not asked
    uid = "u" * 22
    resp = await client.get("/demo/shop/outbox", cookies={"uid": uid})
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    html = await resp.text()
    assert asked == [{"uid": uid, "placement": "home", "n": "3"}]
    assert 'id="email-subject">Still thinking it over?' in html
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in html
    assert "&lt;table role=&#34;presentation&#34;&gt;" in html  # escaped into srcdoc
    assert "&#34;Tent&#34; &amp; &lt;b&gt;co&lt;/b&gt;" in html
    assert '<table role="presentation">' not in html  # never raw in the shop's page
    hashed = "ab" * 32
    for_hash = await (await client.get("/demo/shop/outbox", params={"email_sha256": hashed})).text()
    assert asked[-1] == {"email_sha256": hashed, "placement": "home", "n": "3"}
    assert 'id="email-to">the address hashed abababababab' in for_hash
    refused = await client.get("/demo/shop/outbox", params={"email_sha256": "ana@example.org"})
    assert refused.status == 400 and len(asked) == 2
    assert "must be the SHA-256 of an e-mail" in await refused.text()
    answers[0] = None
    failed = await (await client.get("/demo/shop/outbox", cookies={"uid": uid})).text()
    assert "Kaeru did not answer" in failed and "<iframe" not in failed


async def test_partner_page_has_a_slot_of_each_size(client: Client) -> None:
    resp = await client.get("/demo/partner/")
    assert resp.status == 200
    html = await resp.text()
    for size in AD_SIZES:
        width, height = size.split("x")
        assert f'<iframe src="/ad?pub=demo-news&amp;size={size}&amp;slot=' in html
        assert f'width="{width}" height="{height}"' in html
    assert '<script src="/ad.js?pub=demo-news&amp;size=300x250&amp;slot=inline"></script>' in html
    assert "/demo/shop/" in html


def test_demo_catalog_fills_in_the_base_url() -> None:
    products = demo_catalog("http://localhost:8080")
    assert DEMO_ADVERTISER == "demo-shop"
    assert len(products) >= 10
    assert len({p["id"] for p in products}) == len(products)
    for p in products:
        assert p["link"] == f"http://localhost:8080/demo/shop/p/{p['id']}"
        assert p["image_link"] == f"http://localhost:8080/demo/shop/img/{p['id']}.svg"
        assert p["currency"] == "EUR"
        float(p["price"])
    assert any(p["availability"] == "out_of_stock" for p in products)
    assert sum("sale_price" in p for p in products) == 2


def test_demo_catalog_copies_are_independent() -> None:
    demo_catalog("http://a.test")[0]["title"] = "changed"
    assert demo_catalog("http://b.test")[0]["title"] != "changed"


# --- tag.js, run under node ------------------------------------------------------------------

HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const [tagPath, configJson] = process.argv.slice(2);
const config = JSON.parse(configJson);
const beacons = [], images = [], warnings = [];
class FakeImage { set src(url) { images.push(url); } }
const sandbox = {
  document: {
    currentScript: { src: "http://kaeru.test:8080/tag.js?v=1" },
    getElementsByTagName: () => [],
    addEventListener() {},
    visibilityState: "visible",
  },
  navigator: {
    sendBeacon(url, blob) { beacons.push([url, blob]); return config.beaconAccepts; },
  },
  console: { warn: (msg) => warnings.push(String(msg)) },
  Image: FakeImage, Blob, URL, URLSearchParams, setTimeout, clearTimeout,
  addEventListener() {},
  kaeru: config.before,
};
sandbox.window = sandbox;
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(tagPath, "utf8"), sandbox);
for (const cmd of config.after) sandbox.kaeru.push(cmd);
setTimeout(async () => {
  const sent = [];
  for (const [url, blob] of beacons) {
    sent.push({ url, type: blob.type, body: JSON.parse(await blob.text()) });
  }
  process.stdout.write(JSON.stringify({ beacons: sent, images, warnings }));
}, 20);
"""

VIEW = ["view", {"item": "sku-1"}]
PURCHASE = [
    "purchase",
    {
        "order": "o-1",
        "items": [{"id": "a", "price": 10.5, "quantity": 2}],
        "revenue": 21,
        "currency": "EUR",
    },
]
VIEW_EVENT = {"advertiser": "shop1", "event": "view", "items": ["sku-1"]}
PURCHASE_EVENT = {
    "advertiser": "shop1",
    "event": "purchase",
    "order": "o-1",
    "items": [{"id": "a", "price": 10.5, "quantity": 2}],
    "revenue": 21,
    "currency": "EUR",
}
CONSENT = ["consent", {"gdpr": 1, "gdpr_consent": "CO-abc"}]


def run_tag(tmp_path: Path, **config: Any) -> dict[str, Any]:
    assert NODE is not None
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    proc = subprocess.run(
        [NODE, str(harness), str(TAG_JS), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_tag_js_exists() -> None:
    assert TAG_JS.is_file()


@needs_node
def test_tag_js_is_valid_javascript() -> None:
    assert NODE is not None
    proc = subprocess.run(
        [NODE, "--check", str(TAG_JS)], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr


@needs_node
def test_tag_batches_queued_and_live_commands_into_one_beacon(tmp_path: Path) -> None:
    out = run_tag(
        tmp_path,
        beaconAccepts=True,
        before=[["set", {"advertiser": "shop1"}], VIEW],
        after=[PURCHASE, ["bogus", {}], ["bogus", {}]],
    )
    assert len(out["beacons"]) == 1
    beacon = out["beacons"][0]
    assert beacon["url"] == "http://kaeru.test:8080/e"
    assert beacon["type"] == "text/plain"
    assert beacon["body"] == {"events": [VIEW_EVENT, PURCHASE_EVENT]}
    assert out["images"] == []
    assert len(out["warnings"]) == 1
    assert "bogus" in out["warnings"][0]


@needs_node
def test_tag_normalises_every_event_kind(tmp_path: Path) -> None:
    out = run_tag(
        tmp_path,
        beaconAccepts=True,
        before=[],
        after=[
            ["home", {"advertiser": "shop1"}],
            ["list", {"advertiser": "shop1", "items": ["a", "b"]}],
            ["cart", {"advertiser": "shop1", "item": "c"}],
            ["cart", {"advertiser": "shop2", "items": ["d"]}],
            ["view", {"item": "no-advertiser"}],
        ],
    )
    assert out["beacons"][0]["body"]["events"] == [
        {"advertiser": "shop1", "event": "home"},
        {"advertiser": "shop1", "event": "list", "items": ["a", "b"]},
        {"advertiser": "shop1", "event": "cart", "items": ["c"]},
        {"advertiser": "shop2", "event": "cart", "items": ["d"]},
    ]


@needs_node
def test_tag_sends_consent_with_the_batch(tmp_path: Path) -> None:
    out = run_tag(
        tmp_path,
        beaconAccepts=True,
        before=[CONSENT, ["set", {"advertiser": "shop1"}]],
        after=[VIEW],
    )
    assert out["beacons"][0]["body"] == {
        "events": [VIEW_EVENT],
        "gdpr": 1,
        "gdpr_consent": "CO-abc",
    }


@needs_node
def test_tag_falls_back_to_pixels_when_the_beacon_is_refused(tmp_path: Path) -> None:
    out = run_tag(
        tmp_path,
        beaconAccepts=False,
        before=[CONSENT, ["set", {"advertiser": "shop1"}], VIEW],
        after=[PURCHASE],
    )
    assert len(out["beacons"]) == 1
    view_url, purchase_url = (urlsplit(url) for url in out["images"])
    assert view_url.netloc == purchase_url.netloc == "kaeru.test:8080"
    assert view_url.path == purchase_url.path == "/px"
    consent = {"gdpr": ["1"], "gdpr_consent": ["CO-abc"]}
    assert parse_qs(view_url.query) == {"a": ["shop1"], "e": ["view"], "i": ["sku-1"], **consent}
    assert parse_qs(purchase_url.query) == {
        "a": ["shop1"],
        "e": ["purchase"],
        "i": ["a"],
        "o": ["o-1"],
        "v": ["21"],
        "cur": ["EUR"],
        "p": ["10.5"],
        "q": ["2"],
        **consent,
    }
