"""Red team of identity (issue 13), partner side: what a publisher-provided hashed e-mail
(`eid=`) lets leave Kaeru. Against the real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.http.ads import EIDS_PER_ADDRESS_HOUR
from adserver.identity.identifiers import email_sha256_of
from tests.conftest import OPERATOR_TOKEN, SHOP

EMAIL_SHA256 = email_sha256_of("ana.shopper@example.com")
AD = {"pub": "news1", "size": "300x250"}


@pytest.mark.parametrize("path", ["/ad", "/ad?size=1x1"])
async def test_the_frame_never_hands_its_address_with_the_eid_to_images_or_landing_pages(
    stocked: TestClient[Any, Any], path: str
) -> None:
    """The creative's own address carries the partner's `eid` (and the page's `kw`): the
    product images it loads come from the shop's servers and its clicks land on the shop.
    Whatever the browser's default, the Referer they get may name Kaeru's origin, never that
    address (`Referrer-Policy`), for an ad, a no-fill and a bad request alike."""
    await stocked.post(
        "/e",
        json={
            "events": [
                {"advertiser": SHOP, "event": "identify", "email_sha256": EMAIL_SHA256},
                {"advertiser": SHOP, "event": "view", "items": ["sku-1"]},
            ]
        },
    )
    stocked.session.cookie_jar.clear()
    base, _, extra = path.partition("?")
    params = {**AD, "eid": EMAIL_SHA256, **dict([extra.split("=")] if extra else [])}
    response = await stocked.get(base, params=params)
    assert response.headers.get("Referrer-Policy") in ("no-referrer", "strict-origin", "origin")


async def test_one_client_cannot_read_histories_by_trying_hashed_emails_in_bulk(
    stocked: TestClient[Any, Any],
) -> None:
    """`/ad?eid=` needs no token (it renders in the partner's iframe), but nothing stops a
    script from reading the frame itself: with a list of hashed e-mails, anyone could read
    each shopper's viewed products. One client address gets `EIDS_PER_ADDRESS_HOUR` distinct
    e-mails resolved an hour (a reader's own, sent again and again, is one); past that its
    ads are not personalised by `eid` (counted). A publisher's own token (`/ad.json`) is its
    server speaking for its readers: not capped."""
    victims = [email_sha256_of(f"shopper{n}@example.com") for n in range(EIDS_PER_ADDRESS_HOUR)]
    last = email_sha256_of("last@example.com")
    for eid in [*victims, last]:
        stocked.session.cookie_jar.clear()
        await stocked.post(
            "/e",
            json={
                "events": [
                    {"advertiser": SHOP, "event": "identify", "email_sha256": eid},
                    {"advertiser": SHOP, "event": "view", "items": ["sku-3"]},
                ]
            },
        )
    stocked.session.cookie_jar.clear()
    for eid in [*victims, victims[0]]:  # the first again: still within the bound
        frame = await stocked.get("/ad", params={**AD, "eid": eid})
        assert "Product sku-3" in await frame.text()
    frame = await stocked.get("/ad", params={**AD, "eid": last})
    assert frame.status == 200 and "Product sku-3" not in await frame.text()
    metrics = await (await stocked.get("/metrics")).text()
    assert "kaeru_eids_over_cap_total 1.0" in metrics
    json_ad = await stocked.get(
        "/ad.json",
        params={**AD, "eid": last},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert "sku-3" in {p["id"] for p in (await json_ad.json())["products"]}
