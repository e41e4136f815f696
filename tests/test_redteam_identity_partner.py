"""Red team of identity (issue 13), partner side: what a publisher-provided hashed e-mail
(`eid=`) lets leave Kaeru. Against the real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.identity.identifiers import email_sha256_of
from tests.conftest import SHOP

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
