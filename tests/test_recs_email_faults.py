"""The e-mail recommendations and audiences when Redis stops answering."""

from __future__ import annotations

import time
from typing import Any

from adserver.config.settings import Settings
from adserver.identity.identifiers import email_sha256_of
from adserver.runtime.embedded_redis import EmbeddedRedis
from tests.conftest import SHOP, SHOP_TOKEN, frozen_after_a_view

EMAIL_SHA256 = email_sha256_of("ana@example.org")
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}


async def test_a_frozen_redis_answers_popular_products_and_a_503_for_audiences(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    async with frozen_after_a_view(aiohttp_client, settings, own_redis) as client:
        started = time.monotonic()
        response = await client.get(
            f"/api/v1/advertisers/{SHOP}/recommendations",
            params={"email_sha256": EMAIL_SHA256, "placement": "home"},
            headers=AUTH,
        )
        assert response.status == 200
        body = await response.json()
        assert body["personalised"] is False
        assert [p["id"] for p in body["products"]] == ["sku-1"]
        audience = await client.get(
            f"/api/v1/advertisers/{SHOP}/audiences/cart_abandoners/members",
            params={"since": "1", "email_sha256": EMAIL_SHA256},
            headers=AUTH,
        )
        assert audience.status == 503 and audience.headers["Retry-After"]
        assert time.monotonic() - started < 3.0  # the Redis deadlines, not a socket timeout
        started = time.monotonic()
        listing = await client.get(
            f"/api/v1/advertisers/{SHOP}/audiences/cart_abandoners/members",
            params={"since": "1"},
            headers=AUTH,
        )
        assert listing.status == 503 and listing.headers["Retry-After"]
        assert time.monotonic() - started < 1.9  # the listing's deadline, before the socket's
