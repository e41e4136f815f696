"""Admin API: bearer tokens per advertiser, feed upload answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import (
    OPERATOR_TOKEN,
    OTHER_SHOP,
    OTHER_TOKEN,
    SHOP,
    SHOP_TOKEN,
    product_row,
    put_catalog,
)

PRODUCTS = f"/api/v1/advertisers/{SHOP}/products"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_products_need_a_token(client: TestClient[Any, Any], method: str) -> None:
    response = await client.request(method, PRODUCTS, data=b"[]")
    assert response.status == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]
    response = await client.request(method, PRODUCTS, data=b"[]", headers=auth("x" * 30))
    assert response.status == 401


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_another_advertisers_token_is_forbidden(
    client: TestClient[Any, Any], method: str
) -> None:
    body = orjson.dumps([product_row("a")])
    response = await client.request(method, PRODUCTS, data=body, headers=auth(OTHER_TOKEN))
    assert response.status == 403


async def test_operator_may_act_for_any_known_advertiser(client: TestClient[Any, Any]) -> None:
    await put_catalog(client, [product_row("a")], advertiser=OTHER_SHOP, token=OPERATOR_TOKEN)
    response = await client.get("/api/v1/advertisers/ghost/products", headers=auth(OPERATOR_TOKEN))
    assert response.status == 404


async def test_feed_answer_lists_accepted_and_rejected_rows(client: TestClient[Any, Any]) -> None:
    rows = [product_row("a"), product_row("b", link="javascript:alert(1)"), product_row("c")]
    body = await put_catalog(client, rows)
    assert body["accepted"] == 2
    assert body["rejected"] == 1
    assert body["rejections"] == [
        {"row": 2, "id": "b", "reason": "link missing or not an absolute http(s) URL"}
    ]
    listed = await client.get(PRODUCTS, headers=auth(SHOP_TOKEN))
    assert [p["id"] for p in (await listed.json())["products"]] == ["a", "c"]


async def test_csv_feed_is_accepted(client: TestClient[Any, Any]) -> None:
    csv = (
        "id,title,link,image_link,price,availability\n"
        "s1,Tent,https://s.example/p/s1,https://s.example/i/s1.jpg,199.00 EUR,in stock\n"
    )
    response = await client.put(
        PRODUCTS, data=csv, headers={**auth(SHOP_TOKEN), "Content-Type": "text/csv"}
    )
    assert response.status == 200
    assert (await response.json())["accepted"] == 1


async def test_a_new_feed_replaces_the_old_catalog(client: TestClient[Any, Any]) -> None:
    await put_catalog(client, [product_row("a"), product_row("b")])
    await put_catalog(client, [product_row("c")])
    listed = await client.get(PRODUCTS, headers=auth(SHOP_TOKEN))
    assert (await listed.json())["count"] == 1


async def test_feed_with_no_valid_row_leaves_the_catalog_alone(
    client: TestClient[Any, Any],
) -> None:
    await put_catalog(client, [product_row("a")])
    response = await client.put(
        PRODUCTS, data=orjson.dumps([{"id": "x"}]), headers=auth(SHOP_TOKEN)
    )
    assert response.status == 422
    assert (await response.json())["rejected"] == 1
    listed = await client.get(PRODUCTS, headers=auth(SHOP_TOKEN))
    assert (await listed.json())["count"] == 1


async def test_unreadable_feed_is_a_400(client: TestClient[Any, Any]) -> None:
    response = await client.put(PRODUCTS, data=b"[broken", headers=auth(SHOP_TOKEN))
    assert response.status == 400
    assert "unreadable feed" in (await response.json())["error"]
