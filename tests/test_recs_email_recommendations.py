"""`GET /api/v1/advertisers/{adv}/recommendations`: recommendations for the shop's e-mails,
server to server with the advertiser's token, against a real Redis."""

from __future__ import annotations

import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from adserver.identity.email_signatures import sign_email
from adserver.identity.identifiers import email_sha256_of
from tests.conftest import (
    OTHER_TOKEN,
    SHOP,
    SHOP_TOKEN,
    counted,
    landing_of,
    learn_all,
    product_row,
    put_catalog,
)

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

EMAIL_SHA256 = email_sha256_of("Ana@Example.org")
FPID = "AbCdEfGhIjKlMnOpQrStUv"
PATH = f"/api/v1/advertisers/{SHOP}/recommendations"
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}


@pytest.fixture
async def shop(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """shop1 selling sku-1 .. sku-6, hats; sku-3's title needs escaping, sku-4's image is
    served over plain http."""
    rows = [product_row(f"sku-{n}", category="hats", price=f"{n}0.00") for n in range(1, 7)]
    rows[2]["title"] = 'Hat <b>"3"</b> & co'
    rows[3]["image_link"] = "http://shop1.example/img/sku-4.jpg"
    await put_catalog(client, rows)
    return client


async def shopper_views(
    client: TestClient[Any, Any], *skus: str, signed: bool = True, **top: Any
) -> None:
    """A shopper logs in on the shop (identify with the hashed e-mail, signed by the shop's
    server unless `signed` is False: a bare claim) and views `skus`."""
    expiry = int(time.time()) + 600
    identify: dict[str, Any] = {
        "advertiser": SHOP,
        "event": "identify",
        "email_sha256": EMAIL_SHA256,
    }
    if signed:
        identify["email_sig"] = sign_email(SHOP_TOKEN, SHOP, EMAIL_SHA256, expiry)
        identify["sig_exp"] = expiry
    events: list[dict[str, Any]] = [identify]
    events += [{"advertiser": SHOP, "event": "view", "items": [sku]} for sku in skus]
    response = await client.post("/e", json={"events": events, "fpid": FPID, **top})
    assert response.status == 204, await response.text()
    client.session.cookie_jar.clear()  # the e-mail service is not the shopper's browser


async def test_a_browser_claiming_a_hash_unsigned_gets_no_email_filled_with_its_views(
    shop: TestClient[Any, Any],
) -> None:
    """The shopper logged in (signed) and viewed sku-2; another browser then claims their
    hash without the shop's signature and views sku-5: their e-mail is never filled from
    that browser's views (popular products, as for an unknown address)."""
    await shopper_views(shop, "sku-2")
    await shopper_views(shop, "sku-5", signed=False, fpid="ZzZzZzZzZzZzZzZzZzZzZz")
    await learn_all(shop)
    body = await ask(shop, email_sha256=EMAIL_SHA256, placement="home", n="3")
    assert body["personalised"] is False  # popular products only, as for an unknown address
    assert {p["reason"] for p in body["products"]} == {"popular"}


async def ask(client: TestClient[Any, Any], **params: str) -> Any:
    response = await client.get(PATH, params=params, headers=AUTH)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return await response.json()


async def test_a_hashed_email_gets_its_shoppers_recommendations_linked_for_the_email_channel(
    shop: TestClient[Any, Any],
) -> None:
    await shopper_views(shop, "sku-2")
    await learn_all(shop)
    body = await ask(shop, email_sha256=EMAIL_SHA256, placement="home", n="1")
    assert body["personalised"] is True
    [product] = body["products"]
    assert (product["id"], product["reason"]) == ("sku-2", "for_you")
    click = await shop.get(urlsplit(product["click_url"]).path, allow_redirects=False)
    assert click.status == 302
    assert landing_of(click.headers["Location"]) == "https://shop1.example/p/sku-2"
    await counted(shop)
    report = await shop.get(
        f"/api/v1/advertisers/{SHOP}/report", params={"by": "publisher"}, headers=AUTH
    )
    rows = {row["publisher"]: row["clicks"] for row in (await report.json())["rows"]}
    assert rows == {"email": 1}  # reports tell the e-mails from the shop's pages and the ads


async def test_unknown_and_opted_out_shoppers_get_the_non_personalised_products(
    shop: TestClient[Any, Any],
) -> None:
    await shopper_views(shop, "sku-2", "sku-5")
    await learn_all(shop)
    unknown = await ask(shop, email_sha256=email_sha256_of("nobody@example.org"), placement="home")
    assert unknown["personalised"] is False
    assert unknown["products"]  # popular products, the same answer as for a new shopper
    assert (await ask(shop, email_sha256=EMAIL_SHA256, placement="home"))["personalised"] is True
    assert (await shop.get("/optout", params={"a": SHOP, "fpid": FPID})).status == 200
    opted_out = await ask(shop, email_sha256=EMAIL_SHA256, placement="home")
    assert opted_out["personalised"] is False
    assert opted_out["products"] == [] or {p["reason"] for p in opted_out["products"]} == {
        "popular"
    }


async def test_a_purchased_product_or_the_item_itself_is_never_recommended(
    shop: TestClient[Any, Any],
) -> None:
    await shopper_views(shop, "sku-1", "sku-2")
    await learn_all(shop)
    before = await ask(shop, email_sha256=EMAIL_SHA256, placement="product", item="sku-2", n="24")
    assert "sku-1" in {p["id"] for p in before["products"]}  # what the purchase must take away
    purchase = {
        "advertiser": SHOP,
        "event": "purchase",
        "order": "o-1",
        "items": [{"id": "sku-1", "price": 10, "quantity": 1}],
        "revenue": 10,
        "currency": "EUR",
    }
    response = await shop.post("/e", json={"events": [purchase], "fpid": FPID})
    assert response.status == 204, await response.text()
    shop.session.cookie_jar.clear()
    await learn_all(shop)
    body = await ask(shop, email_sha256=EMAIL_SHA256, placement="product", item="sku-2", n="24")
    found = {p["id"] for p in body["products"]}
    assert found and "sku-2" not in found  # never the item itself
    assert "sku-1" not in found  # nor what the shopper bought


async def test_the_html_block_is_email_safe_escaped_and_tracked(
    shop: TestClient[Any, Any],
) -> None:
    await shopper_views(shop, *(f"sku-{n}" for n in range(1, 7)))
    await learn_all(shop)
    response = await shop.get(
        PATH,
        params={"email_sha256": EMAIL_SHA256, "placement": "home", "n": "6", "format": "html"},
        headers=AUTH,
    )
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert html.startswith("<table") and "<script" not in html and "<style" not in html
    assert "Hat &lt;b&gt;&quot;3&quot;&lt;/b&gt; &amp; co" in html and "<b>" not in html

    class Parsed(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.images: list[dict[str, str | None]] = []
            self.links: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "img":
                self.images.append(dict(attrs))
            if tag == "a":
                self.links.append(dict(attrs)["href"] or "")

    parsed = Parsed()
    parsed.feed(html)
    assert parsed.images and all(
        i["src"] and i["src"].startswith("https://") for i in parsed.images
    )
    assert all(i["alt"] for i in parsed.images)
    assert "http://shop1.example/img/sku-4.jpg" not in html  # not https: left out
    assert "Product sku-4" in html  # its title is still shown
    assert parsed.links and all(urlsplit(link).path.startswith("/c/") for link in parsed.links)
    click = await shop.get(urlsplit(parsed.links[0]).path, allow_redirects=False)
    assert click.status == 302
    await counted(shop)
    report = await shop.get(
        f"/api/v1/advertisers/{SHOP}/report", params={"by": "publisher"}, headers=AUTH
    )
    assert {row["publisher"] for row in (await report.json())["rows"]} == {"email"}


async def test_the_uid_form_reads_the_same_history(shop: TestClient[Any, Any]) -> None:
    response = await shop.post(
        "/e", json={"events": [{"advertiser": SHOP, "event": "view", "items": ["sku-5"]}]}
    )
    assert response.status == 204
    uid = next(c.value for c in shop.session.cookie_jar if c.key == "uid")
    shop.session.cookie_jar.clear()
    await learn_all(shop)
    body = await ask(shop, uid=uid, placement="home", n="1")
    assert body["personalised"] is True
    assert body["products"][0]["id"] == "sku-5"


async def test_an_opted_out_uid_is_not_personalised(shop: TestClient[Any, Any]) -> None:
    response = await shop.post(
        "/e", json={"events": [{"advertiser": SHOP, "event": "view", "items": ["sku-5"]}]}
    )
    assert response.status == 204
    uid = next(c.value for c in shop.session.cookie_jar if c.key == "uid")
    await learn_all(shop)
    assert (await shop.get("/optout")).status == 200  # the shopper's browser opts out
    shop.session.cookie_jar.clear()
    body = await ask(shop, uid=uid, placement="home")
    assert body["personalised"] is False


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"placement": "home"}, "missing_shopper"),
        ({"email_sha256": EMAIL_SHA256, "uid": "A" * 22, "placement": "home"}, "missing_shopper"),
        ({"email_sha256": "ana@example.org", "placement": "home"}, "bad_email_sha256"),
        ({"email_sha256": EMAIL_SHA256.upper(), "placement": "home"}, "bad_email_sha256"),
        ({"uid": "not-a-uid", "placement": "home"}, "bad_uid"),
        ({"email_sha256": EMAIL_SHA256, "placement": "sidebar"}, "unknown_placement"),
        ({"email_sha256": EMAIL_SHA256, "placement": "product"}, "missing_item"),
        ({"email_sha256": EMAIL_SHA256, "placement": "home", "n": "99"}, "bad_n"),
        ({"email_sha256": EMAIL_SHA256, "placement": "home", "format": "pdf"}, "bad_format"),
    ],
)
async def test_malformed_queries_are_a_clear_400_counted_in_a_metric(
    shop: TestClient[Any, Any], params: dict[str, str], reason: str
) -> None:
    response = await shop.get(PATH, params=params, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["reason"] == reason
    metrics = await (await shop.get("/metrics")).text()
    assert f'kaeru_bad_requests_total{{reason="{reason}",route="recommendations"}} 1.0' in metrics


async def test_only_the_advertisers_own_token_may_ask(shop: TestClient[Any, Any]) -> None:
    params = {"email_sha256": EMAIL_SHA256, "placement": "home"}
    assert (await shop.get(PATH, params=params)).status == 401
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    assert (await shop.get(PATH, params=params, headers=other)).status == 403
    wrong = {"Authorization": "Bearer nope"}
    assert (await shop.get(PATH, params=params, headers=wrong)).status == 401
