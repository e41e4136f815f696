"""`GET /api/v1/advertisers/{adv}/audiences/{name}/members`: browse and cart abandoners, asked
per hashed e-mail, against a real Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.core.shopper import AdvertiserHistory
from adserver.identity.email_signatures import sign_email
from adserver.identity.identifiers import email_sha256_of
from adserver.recs.audiences import Membership, membership
from tests.conftest import OTHER_TOKEN, SHOP, SHOP_TOKEN, product_row, put_catalog

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

EMAIL_SHA256 = email_sha256_of("ana@example.org")
FPID = "AbCdEfGhIjKlMnOpQrStUv"
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}


def path(name: str) -> str:
    return f"/api/v1/advertisers/{SHOP}/audiences/{name}/members"


@pytest.fixture
async def shop(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 5)])
    return client


async def shopper_does(client: TestClient[Any, Any], *events: tuple[str, list[str]]) -> None:
    """The logged-in shopper (identify with the hashed e-mail, signed by the shop) does
    `events` (kind, items)."""
    batch: list[dict[str, Any]] = [
        {
            "advertiser": SHOP,
            "event": "identify",
            "email_sha256": EMAIL_SHA256,
            "email_sig": sign_email(SHOP_TOKEN, SHOP, EMAIL_SHA256, int(time.time()) + 600),
            "sig_exp": int(time.time()) + 600,
        }
    ]
    for kind, items in events:
        event: dict[str, Any] = {"advertiser": SHOP, "event": kind, "items": items}
        if kind == "purchase":
            event.update(order="o-1", value="10", currency="EUR")
        batch.append(event)
    response = await client.post("/e", json={"events": batch, "fpid": FPID})
    assert response.status == 204, await response.text()


async def members(
    client: TestClient[Any, Any], name: str, since: float, email: str = EMAIL_SHA256
) -> list[dict[str, Any]]:
    params = {"since": str(int(since)), "email_sha256": email}
    response = await client.get(path(name), params=params, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["audience"] == name
    listed: list[dict[str, Any]] = body["members"]
    return listed


async def test_a_browse_abandoner_is_listed_with_what_they_viewed(
    shop: TestClient[Any, Any],
) -> None:
    before = time.time() - 5
    await shopper_does(shop, ("view", ["sku-1"]), ("view", ["sku-2"]))
    [member] = await members(shop, "browse_abandoners", before)
    assert member["email_sha256"] == EMAIL_SHA256
    assert set(member["items"]) == {"sku-1", "sku-2"}
    assert await members(shop, "cart_abandoners", before) == []  # no cart
    assert await members(shop, "browse_abandoners", time.time() + 60) == []  # nothing since
    other = email_sha256_of("nobody@example.org")
    assert await members(shop, "browse_abandoners", before, other) == []  # unknown address


async def test_a_cart_abandoner_until_they_buy(shop: TestClient[Any, Any]) -> None:
    before = time.time() - 5
    await shopper_does(shop, ("view", ["sku-1"]), ("cart", ["sku-3"]))
    [member] = await members(shop, "cart_abandoners", before)
    assert member["items"] == ["sku-3"]
    assert await members(shop, "browse_abandoners", before) == []  # has a cart
    await shopper_does(shop, ("purchase", ["sku-3"]))
    assert await members(shop, "cart_abandoners", before) == []


async def test_an_opted_out_shopper_never_appears(shop: TestClient[Any, Any]) -> None:
    before = time.time() - 5
    await shopper_does(shop, ("view", ["sku-1"]))
    assert len(await members(shop, "browse_abandoners", before)) == 1
    assert (await shop.get("/optout", params={"a": SHOP, "fpid": FPID})).status == 200
    assert await members(shop, "browse_abandoners", before) == []


@pytest.mark.parametrize(
    ("name", "params", "reason"),
    [
        ("lapsed", {"since": "1", "email_sha256": EMAIL_SHA256}, "unknown_audience"),
        ("browse_abandoners", {"email_sha256": EMAIL_SHA256}, "bad_since"),
        ("browse_abandoners", {"since": "yesterday", "email_sha256": EMAIL_SHA256}, "bad_since"),
        ("browse_abandoners", {"since": "1", "email_sha256": ""}, "bad_email_sha256"),
        ("cart_abandoners", {"since": "1", "email_sha256": "ana@example.org"}, "bad_email_sha256"),
    ],
)
async def test_malformed_queries_are_a_clear_400_counted_in_a_metric(
    shop: TestClient[Any, Any], name: str, params: dict[str, str], reason: str
) -> None:
    response = await shop.get(path(name), params=params, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["reason"] == reason
    metrics = await (await shop.get("/metrics")).text()
    assert f'kaeru_bad_requests_total{{reason="{reason}",route="audiences"}} 1.0' in metrics


async def test_only_the_advertisers_own_token_may_ask(shop: TestClient[Any, Any]) -> None:
    params = {"since": "1", "email_sha256": EMAIL_SHA256}
    assert (await shop.get(path("cart_abandoners"), params=params)).status == 401
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    assert (await shop.get(path("cart_abandoners"), params=params, headers=other)).status == 403


def test_membership_leaves_out_what_was_bought_and_views_before_since() -> None:
    history = AdvertiserHistory(
        SHOP, 100.0, viewed=("s3", "s2", "s1"), view_times=(100.0, 90.0, 10.0), bought=("s3",)
    )
    assert membership("browse_abandoners", history, 50.0) == Membership(("s2",), 90.0)
    assert membership("browse_abandoners", history, 95.0) is None  # only s3 since: bought
    assert membership("cart_abandoners", history, 0.0) is None
    assert membership("browse_abandoners", None, 0.0) is None
