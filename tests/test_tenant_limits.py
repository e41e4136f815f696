"""What one tenant can do to the others (issue 11, §4): feeds are read with bounded memory,
links are checked by a real URL parser at the feed, a click never answers 5xx, and campaigns
per advertiser are capped."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from adserver.catalog import Product
from adserver.context import MARKET, STORE
from tests.conftest import SHOP, SHOP_TOKEN, product_row

PRODUCTS = f"/api/v1/advertisers/{SHOP}/products"
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}

BAD_LINKS = [
    "http://[::1/x",  # unclosed IPv6 literal: urlsplit raises
    "https://shop1.example:99999/p/a",  # port out of range
    "https://shop1.example:abc/p/a",  # port not a number
    "https://shop1.example\\@evil.example/p/a",  # backslash (browsers read it as a slash)
    "https://shop1\u2028.example/p/a",  # line separator in the host
    "https://sh\u00adop1.example/p/a",  # soft hyphen in the host
    "https://shop1.example/p/a\r\nSet-Cookie: x=1",  # header injection through Location
    "https://shop1.example/p/\x00a",  # control character
    "https://user:pw@shop1.example/p/a",  # credentials in a landing URL
]


@pytest.mark.parametrize("link", BAD_LINKS)
async def test_feed_rejects_links_a_real_url_parser_refuses(
    client: TestClient[Any, Any], link: str
) -> None:
    rows = [product_row("a", link=link), product_row("b", image_link=link), product_row("c")]
    response = await client.put(PRODUCTS, json=rows, headers=AUTH)
    assert response.status == 200, await response.text()
    summary = await response.json()
    assert summary["accepted"] == 1
    reasons = {r["id"]: r["reason"] for r in summary["rejections"]}
    assert reasons["a"].startswith("link ")
    assert reasons["b"].startswith("image_link ")


async def test_international_domain_names_are_accepted_as_punycode(
    client: TestClient[Any, Any],
) -> None:
    row = product_row("a", link="https://bücher.example/p/a", image_link="https://x.example/i")
    response = await client.put(PRODUCTS, json=[row], headers=AUTH)
    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == 1
    await client.app[MARKET].refresh()
    assert client.app[MARKET].catalog(SHOP)["a"].link == "https://xn--bcher-kva.example/p/a"


@pytest.mark.parametrize("link", BAD_LINKS)
async def test_click_on_a_link_stored_before_validation_never_answers_5xx(
    client: TestClient[Any, Any], link: str
) -> None:
    """A catalog written by an older Kaeru may hold any link: the click answers 400."""
    legacy = Product("a", "A", link, "https://shop1.example/i/a.jpg", Decimal(5), "EUR")
    await client.app[STORE].replace_catalog(SHOP, [legacy])
    await client.app[MARKET].refresh()
    assert (await client.get("/px", params={"a": SHOP, "e": "view", "i": "a"})).status == 200
    response = await client.get("/ad.json", params={"pub": "news1", "size": "300x250"})
    assert response.status == 200, await response.text()
    click_url = (await response.json())["products"][0]["click_url"]
    click = await client.get(urlsplit(click_url).path, allow_redirects=False)
    assert click.status == 400, await click.text()
