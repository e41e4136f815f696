"""Red team of issue 13's click ids, against a real Redis: one order reported by the landing
page's tag and by the shop's server with the click id counts once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.config.settings import Settings
from adserver.http.app_keys import STORE
from adserver.store import keys
from tests.conftest import SHOP, counted, product_row, put_catalog
from tests.test_identity_click_id import (
    LANDING,
    ad,
    batch,
    by_campaign,
    click,
    click_id_of,
    clicked,
    cookie_blocked,
    metric,
    postback,
    purchase,
    uid_of,
    view,
)

VIEW = {"advertiser": SHOP, "event": "view", "item": "sku-1"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, impression_cap_per_hour=3)  # as tests/test_identity_click_id.py


@pytest.fixture
async def shop(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    rows = [product_row(f"sku-{n}") for n in range(1, 7)]
    rows[0] = product_row("sku-1", link=LANDING)
    await put_catalog(client, rows)
    return client


async def test_tag_purchase_then_postback_with_the_click_id_count_the_order_once(
    shop: TestClient[Any, Any],
) -> None:
    """Kaeru's cookie blocked on the shop: the landing page's shopper is a new uid, the click
    id names the uid of the click. The tag reports the order, then the shop's server."""
    kclid = await clicked(shop)
    cookie_blocked(shop)
    await batch(shop, [VIEW], kclid=kclid)
    await batch(shop, [purchase("srv-1")])
    await counted(shop)
    status, answer = await postback(shop, click_id=kclid)
    assert (status, answer["attributed"]) == (200, False)  # the tag's report counted it
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"], row["revenue"]) == (1, 1, "49.90")  # server's


async def test_postback_with_the_click_id_then_tag_purchase_count_the_order_once(
    shop: TestClient[Any, Any],
) -> None:
    kclid = await clicked(shop)
    cookie_blocked(shop)
    await batch(shop, [VIEW], kclid=kclid)
    status, answer = await postback(shop, click_id=kclid)
    assert (status, answer["attributed"]) == (200, True)
    await batch(shop, [purchase("srv-1")])  # the thank-you page's tag, later
    await counted(shop)
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"], row["revenue"]) == (1, 1, "49.90")


async def test_two_orders_of_one_click_are_two_conversions(shop: TestClient[Any, Any]) -> None:
    kclid = await clicked(shop)
    cookie_blocked(shop)
    await batch(shop, [VIEW], kclid=kclid)
    await batch(shop, [purchase("srv-1")])
    await counted(shop)
    assert (await postback(shop, click_id=kclid))[1]["attributed"] is False
    assert (await postback(shop, click_id=kclid, order="srv-2"))[1]["attributed"] is True
    assert (await by_campaign(shop))["default"]["conversions"] == 2


async def test_postback_with_a_click_id_of_an_opted_out_shopper_brings_nothing_back(
    shop: TestClient[Any, Any],
) -> None:
    """The click id holds the uid of the click; the shopper opts out afterwards (everything
    Kaeru knew erased). The shop's server posts the order with that click id: attributed to
    the click (a count, nothing about anybody), but no profile comes back for that uid."""
    kclid = await clicked(shop)
    uid = uid_of(shop)
    assert (await shop.get("/optout")).status == 200
    redis = shop.app[STORE].redis
    assert await redis.keys(f"u:{{{uid}}}:*") == []
    status, answer = await postback(shop, click_id=kclid)
    assert (status, answer["attributed"]) == (200, True)
    assert await redis.keys(f"u:{{{uid}}}:*") == []
    assert (await by_campaign(shop))["default"]["conversions"] == 1


@pytest.mark.parametrize(
    "refusal",
    [{"headers": {"Sec-GPC": "1"}}, {"cookies": {"optout": "1"}}, {"body": {"gdpr": 1}}],
    ids=["gpc", "optout_cookie", "gdpr_without_consent"],
)
async def test_a_landing_batch_of_a_browser_that_said_no_stores_no_touch(
    shop: TestClient[Any, Any], refusal: dict[str, Any]
) -> None:
    kclid = await clicked(shop)
    cookie_blocked(shop)
    redis = shop.app[STORE].redis
    before = set(await redis.keys("u:*"))
    body = {"events": [VIEW], "kclid": kclid, **refusal.get("body", {})}
    for name, value in refusal.get("cookies", {}).items():
        shop.session.cookie_jar.update_cookies({name: value}, shop.make_url("/"))
    response = await shop.post("/e", json=body, headers=refusal.get("headers", {}))
    assert response.status == 204
    assert "uid" not in response.cookies
    await counted(shop)
    assert set(await redis.keys("u:*")) == before
    await batch(shop, [purchase("o-9")], **refusal.get("body", {}))
    assert (await by_campaign(shop))["default"]["conversions"] == 0


async def test_postback_with_a_click_id_of_a_shopper_known_only_by_the_click_keeps_it(
    shop: TestClient[Any, Any],
) -> None:
    """A Kaeru cookie but no event at the shop yet (the click is all Kaeru knows of them): the
    purchase still goes into their profile (its items are not shown to them again)."""
    await view(shop, "sku-1")
    served = await ad(shop)  # to another shopper: the link is the ad's, not theirs
    uid = "R" * 22
    shop.session.cookie_jar.update_cookies({"uid": uid}, shop.make_url("/"))
    kclid = click_id_of(await click(shop, served))
    status, answer = await postback(shop, click_id=kclid)
    assert (status, answer["attributed"]) == (200, True)
    redis = shop.app[STORE].redis
    assert await redis.zrange(keys.user_purchased(uid, SHOP), 0, -1) == [b"sku-1"]


async def test_under_a_first_party_id_the_tag_and_the_postback_count_one_order_once(
    shop: TestClient[Any, Any],
) -> None:
    """Kaeru's cookie blocked on every request to it from the shop (Chromium as it comes): the
    tag's batches are one shopper by their first-party id, not the click id's uid."""
    kclid, fpid = await clicked(shop), "F" * 22
    cookie_blocked(shop)
    await batch(shop, [VIEW], kclid=kclid, fpid=fpid)
    cookie_blocked(shop)
    await batch(shop, [purchase("srv-1")], fpid=fpid)
    await counted(shop)
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"]) == (1, 1)  # the tag's purchase, by the click
    status, answer = await postback(shop, click_id=kclid)
    assert (status, answer["attributed"]) == (200, False)
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"], row["revenue"]) == (1, 1, "49.90")


async def test_a_landing_batch_with_only_an_identify_event_keeps_its_click_id(
    shop: TestClient[Any, Any],
) -> None:
    """The landing page tells who is logged in before its first view (an app that fetches the
    product first): the tag sends its click id with that first batch, and only then."""
    kclid, fpid = await clicked(shop), "G" * 22
    cookie_blocked(shop)
    identify = {"advertiser": SHOP, "event": "identify", "customer_id": "c-42"}
    await batch(shop, [identify], kclid=kclid, fpid=fpid)
    cookie_blocked(shop)
    await batch(shop, [VIEW], fpid=fpid)  # the page view's next batch: no click id
    cookie_blocked(shop)
    await batch(shop, [purchase("o-1")], fpid=fpid)
    await counted(shop)
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"]) == (1, 1)
    assert await metric(shop, 'kaeru_click_ids_total{outcome="tag_touch"}') == 1


async def test_one_order_posted_with_one_click_id_under_many_uids_counts_once(
    shop: TestClient[Any, Any],
) -> None:
    kclid = await clicked(shop)
    answers = [(await postback(shop, click_id=kclid, uid=f"{n:022d}"))[1] for n in range(5)]
    assert [a["attributed"] for a in answers] == [True, False, False, False, False]
    assert (await by_campaign(shop))["default"]["conversions"] == 1
