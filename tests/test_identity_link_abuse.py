"""Identity links under abuse, against the real Redis: a first-party id (which every script on
the shop's page can read) never buys the shopper's uid cookie, and a flood of links from
made-up uids never puts a shopper out of reach of forgetting."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.http.app_keys import IDENTITY, STORE
from adserver.identity.identifiers import email_sha256_of
from adserver.identity.uid_cookie import new_uid
from adserver.runtime.embedded_redis import free_port
from adserver.store import keys
from adserver.store.identity_links import FORGETTING_BOUND
from tests.conftest import (
    BROWSER,
    OPERATOR_TOKEN,
    OTHER_SHOP,
    OTHER_TOKEN,
    SHOP,
    product_row,
    put_catalog,
)

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

EMAIL_SHA256 = email_sha256_of("ana.shopper@example.com")
FPID = "AbCdEfGhIjKlMnOpQrStUv"
OTHER_FPID = "ZyXwVuTsRqPoNmLkJiHgFe"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
FLOOD = 12  # identify calls from made-up uids: more than the 5 uids an identifier keeps


@pytest.fixture
async def shop(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """The app, shop1 selling sku-1 .. sku-6 and shop2 x-1."""
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings), server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    await put_catalog(client, [product_row("x-1")], advertiser=OTHER_SHOP, token=OTHER_TOKEN)
    return client


def uid_cookie(client: TestClient[Any, Any]) -> str | None:
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("uid")
    return cookie.value if cookie else None


def view(sku: str, advertiser: str = SHOP) -> dict[str, Any]:
    return {"advertiser": advertiser, "event": "view", "items": [sku]}


def identify(advertiser: str = SHOP, **identifier: str) -> dict[str, Any]:
    return {"advertiser": advertiser, "event": "identify", **identifier}


async def send(client: TestClient[Any, Any], *events: dict[str, Any], **top: Any) -> Any:
    return await client.post("/e", json={"events": list(events), **top})


async def viewed(client: TestClient[Any, Any], uid: str) -> set[str]:
    shopper = await client.app[STORE].load_shopper(uid)
    return {sku for history in shopper.histories for sku in history.viewed}


async def all_keys(client: TestClient[Any, Any]) -> list[str]:
    redis = client.app[STORE].redis
    return sorted([k.decode() if isinstance(k, bytes) else k async for k in redis.scan_iter()])


async def nothing_linked_survives(client: TestClient[Any, Any], uids: set[str]) -> None:
    """The whole test database SCANned: no key of these uids (but the erasure mark) and no
    identity link of any kind, those kept for forgetting included."""
    names = await all_keys(client)
    assert [k for k in names if k.startswith(("id:", "idf:"))] == []
    assert [k for k in names if any(uid in k for uid in uids) and not k.startswith("fg:")] == []


def set_cookies(response: Any) -> list[str]:
    return list(response.headers.getall("Set-Cookie", []))


async def test_a_first_party_id_never_buys_the_shoppers_uid_cookie(
    shop: TestClient[Any, Any],
) -> None:
    """The shopper's browser keeps Kaeru's cookie (their history spans two shops under it) and
    its first-party id on shop1. A script on shop1's page reads that id and sends it from
    elsewhere, without a cookie: the batch joins the shopper's history on the server, and no
    answer (events, identify only, events waiting for a feed, the opt-out page) hands out the
    uid, as a cookie or in a body."""
    own = await send(shop, view("sku-1"), fpid=FPID)
    victim = uid_cookie(shop)
    assert own.status == 204 and victim is not None
    assert any(f"uid={victim}" in c for c in set_cookies(own))  # the browser's own: refreshed
    await send(shop, view("x-1", OTHER_SHOP))
    assert await viewed(shop, victim) == {"sku-1", "x-1"}

    for events in ([view("sku-2")], [identify(customer_id="C-1")], [view("sku-not-fed-yet")]):
        shop.session.cookie_jar.clear()  # the other party, with the fpid and no cookie
        answer = await send(shop, *events, fpid=FPID)
        assert answer.status == 204 and await answer.read() == b""
        assert set_cookies(answer) == [] and uid_cookie(shop) is None
        assert victim not in str(answer.headers)
    assert await viewed(shop, victim) == {"sku-1", "sku-2", "x-1"}  # one history

    shop.session.cookie_jar.clear()  # a browser without Kaeru's cookie nor a linked fpid
    fresh = await send(shop, view("sku-3"), fpid=OTHER_FPID)
    assert uid_cookie(shop) not in (None, victim) and set_cookies(fresh)  # a new uid: issued

    shop.session.cookie_jar.clear()
    page = await shop.get("/optout", params={"a": SHOP, "fpid": FPID})
    assert page.status == 200 and victim not in await page.text()
    assert all(victim not in c for c in set_cookies(page))
    assert await viewed(shop, victim) == set()


async def flood(client: TestClient[Any, Any], *events: dict[str, Any], **top: Any) -> set[str]:
    """FLOOD batches, each from a made-up uid (a fresh browser)."""
    uids = set()
    for _ in range(FLOOD):
        client.session.cookie_jar.clear()
        assert (await send(client, *events, **top)).status == 204
        uid = uid_cookie(client)
        assert uid is not None
        uids.add(uid)
    return uids


async def test_a_flood_on_an_email_does_not_keep_its_shopper_from_being_forgotten(
    shop: TestClient[Any, Any], settings: Settings
) -> None:
    """Identify calls with the shopper's hashed e-mail from more made-up uids than an
    identifier keeps push the shopper out of the links resolution sees (it still sees at most
    the bound); the operator's erasure by that e-mail still reaches the shopper and every
    flooded uid, and nothing linked survives."""
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-1"), fpid=FPID)
    shopper = uid_cookie(shop)
    assert shopper is not None
    flooded = await flood(shop, identify(email_sha256=EMAIL_SHA256), view("sku-5"))

    redis = shop.app[STORE].redis
    email = shop.app[IDENTITY].hasher.email(EMAIL_SHA256)
    seen = {u.decode() for u in await redis.zrange(keys.identity_link(email), 0, -1)}
    assert len(seen) == 5 and shopper not in seen  # pushed out of what resolution sees
    for key in await all_keys(shop):
        if key.startswith(("idf:", "id:", "u:")):
            assert 0 < await redis.ttl(key) <= settings.lookback_seconds, key

    response = await shop.delete(f"/api/v1/identities/{EMAIL_SHA256}", headers=OPERATOR)
    assert response.status == 200
    body = await response.json()
    assert body["forgotten_uids"] == 1 + FLOOD
    assert shopper not in await response.text()
    assert await viewed(shop, shopper) == set()
    await nothing_linked_survives(shop, {shopper, *flooded})


async def test_a_flood_through_the_first_party_id_does_not_cut_a_shopper_off_their_links(
    shop: TestClient[Any, Any],
) -> None:
    """The shopper's two browsers share an e-mail. Whoever reads the first's first-party id
    links a dozen customer ids to it (more than a uid keeps), pushing the e-mail out of that
    uid's links on both sides. Forgetting that uid still reaches the e-mail and the second
    browser."""
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-1"), fpid=FPID)
    first = uid_cookie(shop)
    shop.session.cookie_jar.clear()
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-2"), fpid=OTHER_FPID)
    second = uid_cookie(shop)
    assert first and second and first != second
    for n in range(FLOOD):
        shop.session.cookie_jar.clear()
        await send(shop, identify(customer_id=f"C-{n}"), fpid=FPID)
    redis = shop.app[STORE].redis
    email = shop.app[IDENTITY].hasher.email(EMAIL_SHA256).encode()
    assert email not in await redis.zrange(keys.user_identifiers(first), 0, -1)

    response = await shop.delete(f"/api/v1/users/{first}", headers=OPERATOR)
    assert response.status == 200 and (await response.json())["linked_uids"] == 1
    assert await viewed(shop, second) == set()
    await nothing_linked_survives(shop, {first, second})


async def test_an_optout_by_first_party_id_reaches_a_shopper_a_flood_pushed_out(
    shop: TestClient[Any, Any],
) -> None:
    """Two browsers of one shopper identified with one e-mail; a flood then pushes both out of
    the e-mail's links (and the e-mail out of theirs). The shopper opts out on the second
    browser by its first-party id (Kaeru's cookies blocked): the first browser's history goes
    too, and every flooded uid's."""
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-1"), fpid=FPID)
    first = uid_cookie(shop)
    shop.session.cookie_jar.clear()
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-2"), fpid=OTHER_FPID)
    second = uid_cookie(shop)
    assert first and second
    flooded = await flood(shop, identify(email_sha256=EMAIL_SHA256), view("sku-5"))
    shop.session.cookie_jar.clear()
    page = await shop.get("/optout", params={"a": SHOP, "fpid": OTHER_FPID})
    assert page.status == 200
    assert await viewed(shop, first) == set() and await viewed(shop, second) == set()
    await nothing_linked_survives(shop, {first, second, *flooded})


async def test_the_links_kept_for_forgetting_are_bounded_and_trimmed_by_age(
    shop: TestClient[Any, Any], settings: Settings
) -> None:
    """Per identifier at most FORGETTING_BOUND uids, the newest; a link older than the
    lookback falls out at the next write."""
    identities, now = shop.app[STORE].identities, time.time()
    token = shop.app[IDENTITY].hasher.email(EMAIL_SHA256)
    stale = new_uid()
    await identities.link(stale, [token], now - settings.lookback_seconds - 60)
    uids = [new_uid() for _ in range(FORGETTING_BOUND + 5)]
    for n, uid in enumerate(uids):
        await identities.link(uid, [token], now + n / 1000)
    redis = shop.app[STORE].redis
    kept = {u.decode() for u in await redis.zrange(keys.identity_link_ever(token), 0, -1)}
    assert kept == set(uids[-FORGETTING_BOUND:])
    assert await redis.zcard(keys.identity_link(token)) == 5
    assert 0 < await redis.ttl(keys.identity_link_ever(token)) <= settings.lookback_seconds

    linked = await identities.linked(identifiers=[token])
    assert set(uids[-FORGETTING_BOUND:]) <= linked.uids and stale not in linked.uids


async def test_a_batch_given_up_on_links_nothing(shop: TestClient[Any, Any]) -> None:
    """A batch refused because its identity step took too long (Redis slow) leaves no link to
    the uid it would have had: the browser's next batch gets a uid, and its cookie, anew."""
    resolver = shop.app[IDENTITY]
    late = await resolver.shop_uid(None, [SHOP], FPID, [], time.time(), time.monotonic() - 1)
    assert late is not None and not late.issue
    fresh = await resolver.shop_uid(None, [SHOP], FPID, [], time.time())
    assert fresh is not None and fresh.issue and fresh.uid != late.uid
    again = await resolver.shop_uid(None, [SHOP], FPID, [], time.time())
    assert again is not None and again.uid == fresh.uid and not again.issue
