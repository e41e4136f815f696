"""`GET /recs.json`: the placements on the shop's own pages, against a real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from adserver.http.app_keys import STORE
from adserver.store import keys
from tests.conftest import (
    OTHER_SHOP,
    OTHER_TOKEN,
    SHOP,
    counted,
    landing_of,
    learn_all,
    product_row,
    put_catalog,
)

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)


async def track(client: TestClient[Any, Any], kind: str, *skus: str, **extra: str) -> None:
    for sku in skus:
        response = await client.get("/px", params={"a": SHOP, "e": kind, "i": sku, **extra})
        assert response.status == 200
    await stored(client)


async def buy(client: TestClient[Any, Any], order: str, *skus: str) -> None:
    params = {"a": SHOP, "e": "purchase", "i": ",".join(skus), "o": order, "v": "9", "cur": "EUR"}
    assert (await client.get("/px", params=params)).status == 200
    await stored(client)


async def stored(client: TestClient[Any, Any]) -> None:
    """Until the events answered so far are in Redis: under load a pixel waiting on Redis past
    its deadline is answered and its event kept in the buffer, replayed a moment later."""
    deadline = time.monotonic() + 10
    while True:
        body = await (await client.get("/readyz")).json()
        if body.get("buffered_events") == 0 or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.02)


async def recs(
    client: TestClient[Any, Any], placement: str, **params: str
) -> list[tuple[str, str]]:
    response = await client.get("/recs.json", params={"a": SHOP, "placement": placement, **params})
    assert response.status == 200, await response.text()
    body = await response.json()
    return [(p["id"], p["reason"]) for p in body["products"]]


async def another_shopper(client: TestClient[Any, Any]) -> None:
    client.session.cookie_jar.clear()


@pytest.fixture
async def shop(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """shop1 selling sku-1 .. sku-8 (sku-7 out of stock), shoes and hats."""
    rows = [product_row(f"sku-{n}", category="shoes") for n in range(1, 5)]
    rows += [product_row(f"sku-{n}", category="hats", price=f"{n}0.00") for n in range(5, 9)]
    rows[6]["availability"] = "out_of_stock"
    await put_catalog(client, rows)
    return client


async def test_product_shows_what_others_viewed_with_it_then_its_category(
    shop: TestClient[Any, Any],
) -> None:
    await track(shop, "view", "sku-5", "sku-2", "sku-7", "unknown-sku")
    await another_shopper(shop)
    await learn_all(shop)
    found = await recs(shop, "product", item="sku-5")
    # viewed together first (never the out-of-stock sku-7 or an unknown product, never the
    # item itself), then the item's category (pricier hats), then popular products
    assert found == [
        ("sku-2", "viewed_together"),
        ("sku-6", "same_category"),
        ("sku-8", "same_category"),
    ]
    assert len(await recs(shop, "product", item="sku-5", n="2")) == 2


async def test_complements_and_thanks_show_what_was_bought_together(
    shop: TestClient[Any, Any],
) -> None:
    await buy(shop, "o-1", "sku-1", "sku-3")
    await another_shopper(shop)
    await learn_all(shop)
    assert (await recs(shop, "complements", item="sku-1"))[0] == ("sku-3", "bought_together")
    assert (await recs(shop, "thanks", item="sku-3"))[0] == ("sku-1", "bought_together")


async def test_cart_completes_the_cart_and_never_shows_what_is_in_it_or_was_bought(
    shop: TestClient[Any, Any],
) -> None:
    await buy(shop, "o-1", "sku-1", "sku-3", "sku-4")
    await another_shopper(shop)
    await learn_all(shop)
    await buy(shop, "o-2", "sku-4")
    await track(shop, "cart", "sku-1")
    found = await recs(shop, "cart")
    assert found[0] == ("sku-3", "bought_together")
    ids = [sku for sku, _ in found]
    assert "sku-1" not in ids  # in the cart
    assert "sku-4" not in ids  # bought


async def test_home_is_popular_for_a_newcomer_and_for_you_for_a_returning_shopper(
    shop: TestClient[Any, Any],
) -> None:
    for _ in range(3):
        await track(shop, "view", "sku-6")
    await track(shop, "view", "sku-2")
    await another_shopper(shop)
    await learn_all(shop)
    newcomer = await recs(shop, "home")
    assert newcomer[0] == ("sku-6", "popular")
    assert {reason for _, reason in newcomer} == {"popular"}
    await track(shop, "view", "sku-2")
    found = await recs(shop, "home")
    assert found[0] == ("sku-2", "for_you")  # the shopper's own recent view
    assert ("sku-6", "for_you") in found  # viewed with it by the shopper before


async def test_click_on_a_recommendation_lands_on_the_product_and_is_counted_onsite(
    shop: TestClient[Any, Any],
) -> None:
    await track(shop, "view", "sku-6")
    await learn_all(shop)
    response = await shop.get("/recs.json", params={"a": SHOP, "placement": "home", "n": "1"})
    product = (await response.json())["products"][0]
    assert product["title"] == "Product sku-6"
    assert product["price_text"] == "€60.00"
    assert product["image_url"] == "https://shop1.example/img/sku-6.jpg"
    click = await shop.get(urlsplit(product["click_url"]).path, allow_redirects=False)
    assert click.status == 302
    assert landing_of(click.headers["Location"]) == "https://shop1.example/p/sku-6"
    await counted(shop)
    report = await shop.get(
        f"/api/v1/advertisers/{SHOP}/report",
        params={"by": "publisher"},
        headers={"Authorization": "Bearer shop1-token-0123456789"},
    )
    assert report.status == 200
    rows = {row["publisher"]: row["clicks"] for row in (await report.json())["rows"]}
    assert rows == {"onsite": 1}  # the channel: reports can tell it from the partner sites


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"a": "nobody", "placement": "home"}, "unknown_advertiser"),
        ({"a": SHOP, "placement": "sidebar"}, "unknown_placement"),
        ({"a": SHOP, "placement": "product"}, "missing_item"),
        ({"a": SHOP, "placement": "product", "item": "a,b"}, "bad_item"),
        ({"a": SHOP, "placement": "home", "n": "25"}, "bad_n"),
        ({"a": SHOP, "placement": "home", "n": "0"}, "bad_n"),
        ({"a": SHOP, "placement": "home", "n": "six"}, "bad_n"),
    ],
)
async def test_bad_requests_are_a_clear_400_counted_in_a_metric(
    shop: TestClient[Any, Any], params: dict[str, str], reason: str
) -> None:
    response = await shop.get("/recs.json", params=params)
    assert response.status == 400
    assert (await response.json())["reason"] == reason
    metrics = await (await shop.get("/metrics")).text()
    assert f'kaeru_bad_requests_total{{reason="{reason}",route="recs"}} 1.0' in metrics


async def test_other_sites_and_opted_out_shoppers_get_no_personal_recommendations(
    shop: TestClient[Any, Any],
) -> None:
    await track(shop, "view", "sku-2")
    await learn_all(shop)
    params = {"a": SHOP, "placement": "home"}
    own = await shop.get("/recs.json", params=params)
    assert (await own.json())["personalised"] is True
    # a page elsewhere reads the answer (CORS) but not this shopper's history
    foreign = await shop.get(
        "/recs.json", params=params, headers={"Origin": "https://evil.example"}
    )
    assert (await foreign.json())["personalised"] is False
    assert foreign.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in foreign.headers
    opted_out = await shop.get("/recs.json", params=params, headers={"Sec-GPC": "1"})
    assert (await opted_out.json())["personalised"] is False
    no_consent = await shop.get("/recs.json", params={**params, "gdpr": "1", "gdpr_consent": ""})
    assert (await no_consent.json())["personalised"] is False


async def test_trending_is_what_rises_over_the_last_day_against_the_week(
    shop: TestClient[Any, Any],
) -> None:
    # last week: sku-1 was viewed 40 times a day, sku-2 never
    today = int(time.time() // 86400)
    r = shop.app[STORE].redis  # what the learner kept of the days before
    for back in range(1, 8):
        await r.zadd(keys.popular_day(SHOP, today - back), {"sku-1": 40})
    # today: sku-1 as usual or less, sku-2 suddenly (and sku-3 only twice: no trend)
    for _ in range(5):
        await track(shop, "view", "sku-1", "sku-2")
        await another_shopper(shop)
    await track(shop, "view", "sku-3", "sku-3")
    await learn_all(shop)
    found = await recs(shop, "trending")
    assert found[0] == ("sku-2", "trending")
    assert ("sku-1", "trending") in found  # above its threshold, far below its week
    assert [sku for sku, reason in found if reason == "trending"] == ["sku-2", "sku-1"]
    # the learner's day counts are bounded in time
    assert 0 < await r.ttl(keys.popular_day(SHOP, today)) <= 9 * 86400
    assert await r.zscore(keys.popular_day(SHOP, today), "sku-2") == 5


FPID = "AbCdEfGhIjKlMnOpQrSt_-"


async def test_the_shops_first_party_id_personalises_when_kaerus_cookie_is_blocked(
    shop: TestClient[Any, Any],
) -> None:
    batch = {"fpid": FPID, "events": [{"advertiser": SHOP, "event": "view", "items": ["sku-3"]}]}
    assert (await shop.post("/e", json=batch)).status == 204
    await another_shopper(shop)  # Kaeru's cookie blocked: only the shop's first-party id
    await learn_all(shop)
    params = {"a": SHOP, "placement": "home"}
    response = await shop.get("/recs.json", params={**params, "fpid": FPID})
    body = await response.json()
    assert body["personalised"] is True
    assert body["products"][0]["id"] == "sku-3"
    unknown = await shop.get("/recs.json", params={**params, "fpid": "Z" * 22})
    assert (await unknown.json())["personalised"] is False
    bad = await shop.get("/recs.json", params={**params, "fpid": "short"})
    assert bad.status == 400 and (await bad.json())["reason"] == "bad_fpid"
    opted_out = await shop.get(
        "/recs.json", params={**params, "fpid": FPID}, headers={"Sec-GPC": "1"}
    )
    assert (await opted_out.json())["personalised"] is False


async def test_a_purchase_after_a_recommendation_click_is_attributed_to_onsite(
    shop: TestClient[Any, Any],
) -> None:
    await track(shop, "view", "sku-6")
    await learn_all(shop)
    response = await shop.get("/recs.json", params={"a": SHOP, "placement": "home", "n": "1"})
    product = (await response.json())["products"][0]
    await shop.get(urlsplit(product["click_url"]).path, allow_redirects=False)
    await counted(shop)
    await buy(shop, "o-9", "sku-6")
    report = await shop.get(
        f"/api/v1/advertisers/{SHOP}/report",
        params={"by": "publisher"},
        headers={"Authorization": "Bearer shop1-token-0123456789"},
    )
    rows = {row["publisher"]: row["conversions"] for row in (await report.json())["rows"]}
    assert rows == {"onsite": 1}


async def test_another_shops_history_is_not_used(shop: TestClient[Any, Any]) -> None:
    await put_catalog(shop, [product_row("x-1")], advertiser=OTHER_SHOP, token=OTHER_TOKEN)
    await track(shop, "view", "sku-6")
    await another_shopper(shop)
    await learn_all(shop)
    assert (await shop.get("/px", params={"a": OTHER_SHOP, "e": "view", "i": "x-1"})).status == 200
    response = await shop.get("/recs.json", params={"a": SHOP, "placement": "home"})
    body = await response.json()
    assert body["personalised"] is False
    assert [(p["id"], p["reason"]) for p in body["products"]] == [("sku-6", "popular")]
