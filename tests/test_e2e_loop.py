"""The whole loop a shopper goes through: view on the shop, ad on the partner site, click."""

from __future__ import annotations

import base64
import json
import re
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from adserver.delivery.tokens import Signer
from adserver.http.app_keys import SETTINGS, SIGNER, STORE
from adserver.store import day_of
from tests.conftest import SHOP, counted, landing_of, learn_all, product_row, put_catalog
from tests.test_signing import legacy_token

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text += data


async def view(client: TestClient[Any, Any], *skus: str) -> None:
    for sku in skus:
        response = await client.get("/px", params={"a": SHOP, "e": "view", "i": sku})
        assert response.status == 200


async def ad_products(client: TestClient[Any, Any], size: str = "728x90") -> list[dict[str, Any]]:
    response = await client.get("/ad.json", params={"pub": "news1", "size": size})
    await counted(client)
    if response.status == 204:
        return []
    assert response.status == 200
    body = await response.json()
    products: list[dict[str, Any]] = body["products"]
    return products


async def test_viewed_product_appears_in_ad_and_click_lands_on_it(
    stocked: TestClient[Any, Any],
) -> None:
    client = stocked
    await view(client, "sku-2", "sku-5")

    products = await ad_products(client)
    assert [p["id"] for p in products][:2] == ["sku-5", "sku-2"]
    assert products[0]["strategy"] == "recent"

    click_path = urlsplit(products[0]["click_url"]).path
    response = await client.get(click_path, allow_redirects=False)
    assert response.status == 302
    assert landing_of(response.headers["Location"]) == "https://shop1.example/p/sku-5"


async def test_iframe_ad_shows_viewed_product_title(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-3")
    response = await stocked.get("/ad", params={"pub": "news1", "size": "300x250"})
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "Product sku-3" in html
    assert "/c/" in html


async def test_ad_js_frames_kaeru_ad_and_leaves_the_creative_out_of_the_page(
    stocked: TestClient[Any, Any],
) -> None:
    """The script only inserts a cross-origin iframe on `/ad` with the same query: the partner
    page never holds the creative (what the shopper viewed), and the ad is decided and counted
    once, by `/ad`."""
    await view(stocked, "sku-4")
    query = {"pub": "news1", "size": "300x250", "slot": "side", "kw": 'a "</script>&b', "gdpr": "0"}
    response = await stocked.get("/ad.js", params=query)
    assert response.status == 200
    assert response.content_type == "application/javascript"
    code = await response.text()
    assert "sku-4" not in code and "srcdoc" not in code and "/c/" not in code
    assert "</" not in code
    src = json.loads(re.search(r"f\.src=(\"[^\"]*\")", code)[1])  # type: ignore[index]
    framed_url = urlsplit(src)
    assert framed_url[:3] == urlsplit(str(stocked.make_url("/ad")))[:3]  # Kaeru's own /ad
    assert parse_qsl(framed_url.query) == list(query.items())
    assert not {'"', "<", ">", " ", "'"} & set(src)
    assert "f.width='300'" in code and "f.height='250'" in code
    assert "allow-top-navigation-by-user-activation" in code
    await counted(stocked)
    today = day_of(time.time())
    assert (await stocked.app[STORE].ledger.daily_stats(SHOP, [today]))[today] == {}

    framed = await stocked.get(f"{framed_url.path}?{framed_url.query}")
    assert "Product sku-4" in await framed.text()
    await counted(stocked)
    stats = (await stocked.app[STORE].ledger.daily_stats(SHOP, [today]))[today]
    assert stats == {"imp\tdefault\tnews1\trecent\t300x250": 1}


async def test_cart_items_come_before_viewed_items(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-1", "sku-2")
    await stocked.get("/px", params={"a": SHOP, "e": "cart", "i": "sku-1"})
    products = await ad_products(stocked)
    assert products[0]["id"] == "sku-1"
    assert products[0]["strategy"] == "cart"
    assert products[1]["id"] == "sku-2"


async def test_purchased_item_is_never_shown_again(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-1", "sku-2")
    await stocked.get(
        "/px",
        params={"a": SHOP, "e": "purchase", "i": "sku-2", "o": "o-1", "v": "19.90", "cur": "EUR"},
    )
    for _ in range(3):
        ids = [p["id"] for p in await ad_products(stocked)]
        assert "sku-2" not in ids
        assert ids[0] == "sku-1"


async def test_out_of_stock_and_unknown_items_are_skipped(client: TestClient[Any, Any]) -> None:
    await put_catalog(
        client, [product_row("sku-1"), product_row("sku-2", availability="out_of_stock")]
    )
    await view(client, "sku-1", "sku-2", "not-in-catalog")
    ids = [p["id"] for p in await ad_products(client)]
    assert ids == ["sku-1"]


async def test_new_shopper_gets_most_viewed_items_of_a_shop(
    stocked: TestClient[Any, Any],
) -> None:
    for _ in range(3):
        await view(stocked, "sku-6")
    stocked.session.cookie_jar.clear()  # a different shopper
    await learn_all(stocked)
    products = await ad_products(stocked)
    assert products[0]["id"] == "sku-6"
    assert products[0]["strategy"] == "popular"


async def test_nothing_to_show_is_a_no_fill(client: TestClient[Any, Any]) -> None:
    response = await client.get("/ad.json", params={"pub": "news1", "size": "300x250"})
    assert response.status == 204
    response = await client.get("/ad", params={"pub": "news1", "size": "300x250"})
    assert response.status == 200
    assert "<a " not in await response.text()


async def test_unknown_size_is_refused_with_the_supported_list(
    client: TestClient[Any, Any],
) -> None:
    for path in ("/ad.js", "/ad.json"):
        response = await client.get(path, params={"pub": "news1", "size": "1x1"})
        assert response.status == 400
        body = await response.json()
        assert "300x250" in body["sizes"] and "728x90" in body["sizes"]
        assert "1x1" in body["error"]
    # /ad is shown inside the partner's iframe: an empty document there, not JSON (issue 11)
    frame = await client.get("/ad", params={"pub": "news1", "size": "1x1"})
    assert frame.status == 400 and frame.content_type == "text/html"
    assert "1x1" not in await frame.text()


async def test_missing_publisher_is_refused(client: TestClient[Any, Any]) -> None:
    response = await client.get("/ad.json", params={"size": "300x250"})
    assert response.status == 400
    assert "pub" in (await response.json())["error"]


async def test_forged_or_altered_click_token_redirects_nowhere(
    stocked: TestClient[Any, Any],
) -> None:
    await view(stocked, "sku-1")
    click_path = urlsplit((await ad_products(stocked))[0]["click_url"]).path
    token = click_path.removeprefix("/c/")
    forged = Signer(b"attacker-key-0123456789abcdef").sign(
        "click", ["shop1", "sku-1", "news1", "https://evil.example/", "recent"]
    )
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for bad in (f"{token}x", token[:-2], token[::-1], flipped, forged, "nonsense"):
        response = await stocked.get(f"/c/{bad}", allow_redirects=False)
        assert response.status == 400
        assert "Location" not in response.headers


async def test_click_link_reveals_neither_the_product_nor_the_strategy(
    stocked: TestClient[Any, Any],
) -> None:
    """A partner page sees the links in the answer of /ad.json or in an OpenRTB bid: they
    must not tell it what the shopper viewed or has in the cart."""
    await view(stocked, "sku-2")
    await stocked.get("/px", params={"a": SHOP, "e": "cart", "i": "sku-4"})
    products = await ad_products(stocked)
    assert (products[0]["id"], products[0]["strategy"]) == ("sku-4", "cart")
    for product in products:
        token = urlsplit(product["click_url"]).path.removeprefix("/c/")
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        for needle in ("sku-", "cart", "recent", "shop1", "news1", "728x90"):
            assert needle.encode() not in sealed and needle not in token, needle
    response = await stocked.get(urlsplit(products[0]["click_url"]).path, allow_redirects=False)
    assert landing_of(response.headers["Location"]) == "https://shop1.example/p/sku-4"


async def test_a_click_link_minted_before_the_upgrade_still_lands(
    stocked: TestClient[Any, Any],
) -> None:
    """Creatives already out there carry the old, readable links: they keep working (and
    counting) until they expire."""
    fields: list[object] = ["shop1", "default", "news1", "recent", "728x90", "sku-3"]
    fields.append("https://shop1.example/p/sku-3")
    token = legacy_token(stocked.app[SETTINGS].secret, "click", fields, int(time.time()))
    response = await stocked.get(f"/c/{token}", allow_redirects=False)
    assert response.status == 302
    assert landing_of(response.headers["Location"]) == "https://shop1.example/p/sku-3"
    await counted(stocked)
    today = day_of(time.time())
    stats = (await stocked.app[STORE].ledger.daily_stats(SHOP, [today]))[today]
    assert stats == {"click\tdefault\tnews1\trecent\t728x90": 1}


async def test_expired_click_token_is_refused(stocked: TestClient[Any, Any]) -> None:
    signer = stocked.app[SIGNER]
    old = signer.sign(
        "click",
        ["shop1", "sku-1", "news1", "https://shop1.example/p/sku-1", "x"],
        now=time.time() - 31 * 86400,
    )
    response = await stocked.get(f"/c/{old}", allow_redirects=False)
    assert response.status == 400


async def test_impressions_and_clicks_are_counted_per_publisher_and_day(
    stocked: TestClient[Any, Any],
) -> None:
    await view(stocked, "sku-1")
    products = await ad_products(stocked)
    await stocked.get("/ad", params={"pub": "blog2", "size": "300x250"})
    await counted(stocked)
    await stocked.get(urlsplit(products[0]["click_url"]).path, allow_redirects=False)
    await counted(stocked)
    today = day_of(time.time())
    stats = (await stocked.app[STORE].ledger.daily_stats(SHOP, [today]))[today]
    assert stats == {
        "imp\tdefault\tnews1\trecent\t728x90": 1,
        "imp\tdefault\tblog2\trecent\t300x250": 1,
        "click\tdefault\tnews1\trecent\t728x90": 1,
    }


async def test_rendered_beacon_counts_and_answers_a_gif(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-1")
    response = await stocked.get("/ad.json", params={"pub": "news1", "size": "300x250"})
    beacon = urlsplit((await response.json())["impression_url"]).path
    response = await stocked.get(beacon)
    assert response.status == 200 and response.content_type == "image/gif"
    await counted(stocked)  # after the answer
    today = day_of(time.time())
    stats = (await stocked.app[STORE].ledger.daily_stats(SHOP, [today]))[today]
    assert stats["render\tdefault\tnews1\trecent\t300x250"] == 1


async def test_catalog_html_is_escaped_in_every_creative(client: TestClient[Any, Any]) -> None:
    payload = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    await put_catalog(client, [product_row("sku-1", title=payload, brand=payload)])
    await view(client, "sku-1")
    response = await client.get("/ad", params={"pub": "news1", "size": "300x250"})
    html = await response.text()
    parser = TagCollector()
    parser.feed(html)
    assert "script" not in parser.tags
    assert not [a for a in parser.attributes if a.startswith("on")]
    assert payload in parser.text  # shown as text, inert
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
