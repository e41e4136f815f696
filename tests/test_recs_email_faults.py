"""The e-mail recommendations and audiences when Redis stops answering."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from typing import Any

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.identity.identifiers import email_sha256_of
from adserver.runtime.embedded_redis import EmbeddedRedis
from tests.conftest import BROWSER, SHOP, SHOP_TOKEN, learn_all, product_row, put_catalog

EMAIL_SHA256 = email_sha256_of("ana@example.org")
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}


async def test_a_frozen_redis_answers_popular_products_and_a_503_for_audiences(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    assert own_redis.process is not None
    client = await aiohttp_client(
        create_app(replace(settings, redis_url=own_redis.url)), headers=BROWSER
    )
    await put_catalog(client, [product_row("sku-1"), product_row("sku-2")])
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    await learn_all(client)  # sku-1 is popular, in the process's market cache
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
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
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
