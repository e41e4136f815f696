"""Red team of identity (issue 13), partner side: what a publisher-provided hashed e-mail
(`eid=`) lets leave Kaeru. Against the real Redis."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.http.ads import EIDS_PER_ADDRESS_HOUR
from adserver.identity.eid_signatures import sign_eid
from adserver.identity.identifiers import email_sha256_of
from adserver.runtime.embedded_redis import free_port
from tests.conftest import BROWSER, OPERATOR_TOKEN, SHOP, product_row, put_catalog

EMAIL_SHA256 = email_sha256_of("ana.shopper@example.com")
PUBLISHER, PUBLISHER_TOKEN = "news1", "news1-token-0123456789"
AD = {"pub": PUBLISHER, "size": "300x250"}


@pytest.fixture
async def stocked(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """shop1 selling sku-1 .. sku-6, and news1 registered: its server signs its readers'
    `eid` (on `/ad`, an unsigned one personalises nothing: tests/test_identity_signed_eids.py)."""
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    app = create_app(replace(settings, publishers={PUBLISHER: PUBLISHER_TOKEN}))
    client: TestClient[Any, Any] = await aiohttp_client(
        app, server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    return client


def signed(eid: str) -> dict[str, str]:
    expiry = int(time.time()) + 600
    sig = sign_eid(PUBLISHER_TOKEN, PUBLISHER, eid, expiry)
    return {"eid": eid, "eid_sig": sig, "eid_exp": str(expiry)}


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
    params = {**AD, **signed(EMAIL_SHA256), **dict([extra.split("=")] if extra else [])}
    response = await stocked.get(base, params=params)
    assert response.headers.get("Referrer-Policy") in ("no-referrer", "strict-origin", "origin")


async def test_one_client_cannot_read_histories_by_trying_hashed_emails_in_bulk(
    stocked: TestClient[Any, Any],
) -> None:
    """`/ad?eid=` needs no token (it renders in the partner's iframe), but nothing stops a
    script from reading the frame itself: with a list of hashed e-mails, anyone could read
    each shopper's viewed products. Since then an eid there needs its publisher's signature;
    even signed ones (read off pages, replayed), one client address gets
    `EIDS_PER_ADDRESS_HOUR` distinct e-mails resolved an hour (a reader's own, sent again and
    again, is one); past that its ads are not personalised by `eid` (counted). A publisher's
    own token (`/ad.json`) is its server speaking for its readers: not capped."""
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
        frame = await stocked.get("/ad", params={**AD, **signed(eid)})
        assert "Product sku-3" in await frame.text()
    frame = await stocked.get("/ad", params={**AD, **signed(last)})
    assert frame.status == 200 and "Product sku-3" not in await frame.text()
    metrics = await (await stocked.get("/metrics")).text()
    assert "kaeru_eids_over_cap_total 1.0" in metrics
    json_ad = await stocked.get(
        "/ad.json",
        params={**AD, "eid": last},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert "sku-3" in {p["id"] for p in (await json_ad.json())["products"]}
