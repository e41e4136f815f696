"""Red team of identity (issue 13): an opt-out named by a first-party id must hold, and what one
client can make Kaeru keep through it is bounded. Against the real Redis."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.http.app_keys import EVENT_WRITER, IDENTITY, STORE
from adserver.identity.identifiers import email_sha256_of
from adserver.identity.uid_cookie import new_uid
from adserver.runtime.embedded_redis import EmbeddedRedis, free_port
from pixel.optout import MARKING_OPTOUTS_PER_HOUR
from tests.conftest import BROWSER, SHOP, product_row, put_catalog

FPID = "AbCdEfGhIjKlMnOpQrStUv"
EMAIL_SHA256 = email_sha256_of("ana.shopper@example.com")


async def _client(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings), server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    return client


@pytest.fixture
async def shop(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    return await _client(aiohttp_client, settings)


async def keys_named(client: TestClient[Any, Any], prefix: str) -> list[str]:
    redis = client.app[STORE].redis
    names = [k.decode() if isinstance(k, bytes) else k async for k in redis.scan_iter()]
    return sorted(k for k in names if k.startswith(prefix))


async def send_view(client: TestClient[Any, Any], sku: str) -> aiohttp.ClientResponse:
    body = {"events": [{"advertiser": SHOP, "event": "view", "items": [sku]}], "fpid": FPID}
    return await client.post("/e", json=body)


@pytest.mark.cluster  # also on a Redis Cluster (see conftest)
async def test_an_optout_by_fpid_holds_however_many_identifiers_its_links_reach(
    shop: TestClient[Any, Any],
) -> None:
    """The opt-out remembers itself on at most 100 identifiers; when the links reach more (a
    big household, or someone who linked their own uids to the shopper's e-mail), the
    first-party id the shopper named must be among them, or the shopper is tracked again at
    once."""
    await shop.post(
        "/e",
        json={
            "events": [
                {"advertiser": SHOP, "event": "identify", "email_sha256": EMAIL_SHA256},
                {"advertiser": SHOP, "event": "view", "items": ["sku-1"]},
            ],
            "fpid": FPID,
        },
    )
    identities, hasher, now = shop.app[STORE].identities, shop.app[IDENTITY].hasher, time.time()
    email = hasher.email(EMAIL_SHA256)
    for k in range(4):  # four more uids on the e-mail, each with nine customer ids ...
        ids = [hasher.customer(SHOP, f"C-{k}-{j}") for j in range(9)]
        await identities.link(new_uid(), [email, *ids], now)
        for token in ids:  # ... each of those on another uid with nine more
            more = [hasher.customer(SHOP, f"{token}-{n}") for n in range(9)]
            await identities.link(new_uid(), [token, *more], now)
    assert len((await identities.linked(identifiers=[hasher.fpid(SHOP, FPID)])).identifiers) > 100

    shop.session.cookie_jar.clear()  # Kaeru's cookies blocked: the opt-out names the fpid
    assert (await shop.get("/optout", params={"a": SHOP, "fpid": FPID})).status == 200
    shop.session.cookie_jar.clear()
    assert (await send_view(shop, "sku-2")).status == 204
    assert await keys_named(shop, "u:") == []  # the opted-out browser is not tracked again


@pytest.mark.cluster  # also on a Redis Cluster (see conftest)
async def test_optouts_by_made_up_fpids_leave_a_bounded_number_of_five_year_marks(
    shop: TestClient[Any, Any],
) -> None:
    """`GET /optout?a=ADV&fpid=…` needs no link to exist: every made-up fpid was a 5-year key.
    From one client, past the hourly bound, no more are kept (the page still answers), but a
    shopper Kaeru tracked by their fpid behind that address still opts out for good."""
    for _ in range(MARKING_OPTOUTS_PER_HOUR + 30):
        fpid = secrets.token_urlsafe(16)[:22]
        page = await shop.get("/optout", params={"a": SHOP, "fpid": fpid})
        assert page.status == 200
    assert len(await keys_named(shop, "ido:")) == MARKING_OPTOUTS_PER_HOUR
    metrics = await (await shop.get("/metrics")).text()
    assert 'kaeru_bad_requests_total{reason="marks_over_cap",route="optout"} 30.0' in metrics

    shop.session.cookie_jar.clear()  # a shopper behind the same address, cookies blocked
    assert (await send_view(shop, "sku-1")).status == 204 and await keys_named(shop, "u:")
    shop.session.cookie_jar.clear()
    assert (await shop.get("/optout", params={"a": SHOP, "fpid": FPID})).status == 200
    assert await keys_named(shop, "u:") == []
    shop.session.cookie_jar.clear()
    assert (await send_view(shop, "sku-2")).status == 204
    assert await keys_named(shop, "u:") == []  # held, by the one mark on their fpid
    assert len(await keys_named(shop, "ido:")) == MARKING_OPTOUTS_PER_HOUR + 1


async def test_an_optout_by_fpid_holds_while_redis_cannot_check_it(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    """Redis freezes after a shopper opted out by first-party id (Kaeru's cookies blocked). A
    batch Kaeru cannot check against the opt-out is not acknowledged (503, the tag keeps it)
    rather than buffered under a made-up uid and stored once Redis is back."""
    assert own_redis.process is not None
    shop = await _client(aiohttp_client, replace(settings, redis_url=own_redis.url))
    assert (await send_view(shop, "sku-1")).status == 204
    shop.session.cookie_jar.clear()
    assert (await shop.get("/optout", params={"a": SHOP, "fpid": FPID})).status == 200
    assert await keys_named(shop, "u:") == []
    shop.session.cookie_jar.clear()
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        response = await send_view(shop, "sku-2")
        assert response.status == 503 and "Retry-After" in response.headers
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    end = time.monotonic() + 10
    while shop.app[EVENT_WRITER].buffer:  # whatever was buffered is replayed
        assert time.monotonic() < end
        await asyncio.sleep(0.05)
    await shop.app[EVENT_WRITER].flush()
    assert await keys_named(shop, "u:") == []


@pytest.mark.cluster  # also on a Redis Cluster (see conftest)
async def test_a_batch_landing_while_the_optout_erases_is_not_kept(
    shop: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shopper clicks the shop's opt-out link: the page's last batch (sent as the page
    unloads) reaches Kaeru while the opt-out is under way. Landing just after the erasure, it
    must meet the opt-out already remembered on its first-party id, not start a new history."""
    import pixel.optout

    assert (await send_view(shop, "sku-1")).status == 204
    real = pixel.optout.forget_linked

    async def beacon_during(app: Any, *args: Any, **kwargs: Any) -> Any:
        answer = await real(app, *args, **kwargs)
        shop.session.cookie_jar.clear()
        assert (await send_view(shop, "sku-2")).status == 204  # the unload beacon
        return answer

    monkeypatch.setattr(pixel.optout, "forget_linked", beacon_during)
    shop.session.cookie_jar.clear()
    assert (await shop.get("/optout", params={"a": SHOP, "fpid": FPID})).status == 200
    assert await keys_named(shop, "u:") == []
    assert await keys_named(shop, "id:") == []
