"""The whole loop a shopper goes through: view on the shop, ad on the partner site, click."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient

from tests.conftest import SHOP, product_row, put_catalog, refresh_catalog


async def view(client: TestClient[Any, Any], *skus: str) -> None:
    for sku in skus:
        response = await client.get("/px", params={"a": SHOP, "e": "view", "i": sku})
        assert response.status == 200


async def ad_products(client: TestClient[Any, Any], size: str = "728x90") -> list[dict[str, Any]]:
    response = await client.get("/ad.json", params={"pub": "news1", "size": size})
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
    assert response.headers["Location"] == "https://shop1.example/p/sku-5"


async def test_iframe_ad_shows_viewed_product_title(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-3")
    response = await stocked.get("/ad", params={"pub": "news1", "size": "300x250"})
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "Product sku-3" in html
    assert "/c/" in html


async def test_ad_js_writes_the_creative_into_the_page(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-4")
    response = await stocked.get("/ad.js", params={"pub": "news1", "size": "300x250"})
    assert response.status == 200
    assert response.content_type == "application/javascript"
    code = await response.text()
    assert "Product sku-4" in code and "srcdoc" in code
    assert "</" not in code  # the HTML is embedded as an escaped string literal


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
        "/px", params={"a": SHOP, "e": "purchase", "i": "sku-2", "o": "o-1", "v": "19.90",
                       "cur": "EUR"}
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
    await refresh_catalog(stocked)  # popular items are cached in-process, refreshed each second
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
    for path in ("/ad", "/ad.js", "/ad.json"):
        response = await client.get(path, params={"pub": "news1", "size": "1x1"})
        assert response.status == 400
        body = await response.json()
        assert "300x250" in body["sizes"] and "728x90" in body["sizes"]
        assert "1x1" in body["error"]


async def test_missing_publisher_is_refused(client: TestClient[Any, Any]) -> None:
    response = await client.get("/ad.json", params={"size": "300x250"})
    assert response.status == 400
    assert "pub" in (await response.json())["error"]
