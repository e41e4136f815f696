"""The e-mail audiences' listing: `GET /api/v1/advertisers/{adv}/audiences/{name}/members?since=
[&cursor=][&limit=]`, paginated over the hashed e-mails the shop's shoppers identified with,
against a real Redis."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.core.shopper import ShopperEvent
from adserver.http.app_keys import IDENTITY, STORE
from adserver.identity.email_signatures import sign_email
from adserver.identity.identifiers import Identify, email_sha256_of
from adserver.runtime.embedded_redis import free_port
from adserver.store import keys
from tests.conftest import (
    BROWSER,
    OPERATOR_TOKEN,
    OTHER_SHOP,
    OTHER_TOKEN,
    SHOP,
    SHOP_TOKEN,
    product_row,
    put_catalog,
)

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}
DAY = 86400
FPID = "AbCdEfGhIjKlMnOpQrStUv"


def email(n: int) -> str:
    return email_sha256_of(f"shopper{n}@example.org")


def path(name: str = "browse_abandoners", advertiser: str = SHOP) -> str:
    return f"/api/v1/advertisers/{advertiser}/audiences/{name}/members"


async def started(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings), server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    rows = [product_row(f"sku-{n}") for n in range(1, 5)]
    await put_catalog(client, [*rows, product_row("gone", availability="out_of_stock")])
    await put_catalog(client, rows, OTHER_SHOP, OTHER_TOKEN)
    return client


@pytest.fixture
async def shop(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    return await started(aiohttp_client, settings)


def uid_cookie(client: TestClient[Any, Any]) -> str:
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("uid")
    assert cookie is not None
    return cookie.value


async def new_shopper(
    client: TestClient[Any, Any],
    *events: dict[str, Any],
    headers: dict[str, str] | None = None,
    **top: Any,
) -> str:
    """A browser of its own (no cookie yet) sends one batch; its uid (or '' if none set)."""
    client.session.cookie_jar.clear()
    response = await client.post("/e", json={"events": list(events), **top}, headers=headers)
    assert response.status == 204, await response.text()
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("uid")
    return cookie.value if cookie else ""


def identify(n: int, advertiser: str = SHOP) -> dict[str, Any]:
    """An identify as a shop's logged-in page sends it: the hash signed by the shop's server
    (only a signed e-mail joins the audiences, tests/test_recs_email_audience_signatures.py)."""
    token = {SHOP: SHOP_TOKEN, OTHER_SHOP: OTHER_TOKEN}[advertiser]
    expiry = int(time.time()) + 3600
    return {
        "advertiser": advertiser,
        "event": "identify",
        "email_sha256": email(n),
        "email_sig": sign_email(token, advertiser, email(n), expiry),
        "sig_exp": expiry,
    }


def view(*skus: str, advertiser: str = SHOP) -> dict[str, Any]:
    return {"advertiser": advertiser, "event": "view", "items": list(skus)}


async def listing(
    client: TestClient[Any, Any],
    since: float = 0,
    name: str = "browse_abandoners",
    auth: dict[str, str] = AUTH,
    advertiser: str = SHOP,
    **params: str,
) -> dict[str, Any]:
    query = {"since": str(int(since)), **params}
    response = await client.get(path(name, advertiser), params=query, headers=auth)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    assert body["audience"] == name
    return body


async def walk(client: TestClient[Any, Any], since: float = 0, **params: str) -> list[str]:
    """Every page's e-mails, following next_cursor to the end."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        extra = {**params, **({"cursor": cursor} if cursor else {})}
        body = await listing(client, since, **extra)
        assert len(body["members"]) <= int(params.get("limit", "100"))
        seen += [m["email_sha256"] for m in body["members"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_pages_walk_every_member_exactly_once(shop: TestClient[Any, Any]) -> None:
    for n in range(7):
        await new_shopper(shop, identify(n), view(f"sku-{n % 4 + 1}"))
    first = await listing(shop, limit="3")
    assert len(first["members"]) == 3 and first["next_cursor"]
    member = first["members"][0]
    assert set(member) == {"email_sha256", "items", "since", "last_activity"}
    assert member["items"] == ["sku-1"] and member["email_sha256"] == email(0)  # oldest first
    seen = await walk(shop, limit="3")
    assert sorted(seen) == sorted(email(n) for n in range(7))  # each once
    assert await walk(shop) == seen  # one page of 100: the same order
    assert len(await walk(shop, limit="1")) == 7


async def test_since_bounds_the_listing_by_last_activity(shop: TestClient[Any, Any]) -> None:
    now = time.time()
    identity, store = shop.app[IDENTITY], shop.app[STORE]
    uids = []
    for n in range(3):  # all three identified three days ago and viewed then
        found = await identity.shop_uid(
            None, [SHOP], None, [Identify(SHOP, email(n), email_vouched=True)], now - 3 * DAY
        )
        assert found is not None
        uids.append(found.uid)
        await store.record_events(
            found.uid, [ShopperEvent(SHOP, "view", ("sku-1",))], now - 3 * DAY
        )
    # Shopper 1 came back today (no identify): the event raises their last activity.
    await store.record_events(uids[1], [ShopperEvent(SHOP, "view", ("sku-2",))], now)
    assert await walk(shop, now - DAY) == [email(1)]
    [member] = (await listing(shop, now - DAY))["members"]
    assert member["items"] == ["sku-2"] and member["last_activity"] == pytest.approx(now, abs=1)
    assert sorted(await walk(shop, now - 4 * DAY)) == sorted(email(n) for n in range(3))
    assert await walk(shop, now + 60) == []


async def test_another_advertiser_never_lists_a_shops_emails(shop: TestClient[Any, Any]) -> None:
    await new_shopper(shop, identify(1), view("sku-1"), view("sku-2", advertiser=OTHER_SHOP))
    # Identified at shop2 only, browsing both shops: shop1 was never given that e-mail.
    await new_shopper(
        shop, identify(2, OTHER_SHOP), view("sku-3"), view("sku-3", advertiser=OTHER_SHOP)
    )
    assert await walk(shop) == [email(1)]
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    assert (await shop.get(path(), params={"since": "0"}, headers=other)).status == 403
    theirs = await listing(shop, auth=other, advertiser=OTHER_SHOP)
    assert [m["email_sha256"] for m in theirs["members"]] == [email(2)]
    assert (await shop.get(path(), params={"since": "0"})).status == 401


async def test_only_shoppers_with_an_email_identified_at_the_shop_are_listed(
    shop: TestClient[Any, Any],
) -> None:
    await new_shopper(shop, view("sku-1"))  # never identified
    await new_shopper(
        shop, {"advertiser": SHOP, "event": "identify", "customer_id": "c-1"}, view("sku-2")
    )
    await new_shopper(shop, identify(3), view("sku-3"))
    assert await walk(shop) == [email(3)]


async def test_nothing_is_kept_without_the_consent_tracking_needs(
    shop: TestClient[Any, Any],
) -> None:
    await new_shopper(shop, identify(1), view("sku-1"), headers={"Sec-GPC": "1"})
    await new_shopper(shop, identify(2), view("sku-1"), headers={"DNT": "1"})
    await new_shopper(shop, identify(3), view("sku-1"), gdpr=1, gdpr_consent="no")
    assert await walk(shop) == []
    redis = shop.app[STORE].redis
    assert not await redis.exists(keys.email_audience(SHOP))
    assert [k async for k in redis.scan_iter(match="u:*")] == []


async def test_items_leave_out_what_was_bought_or_is_no_longer_sold(
    shop: TestClient[Any, Any],
) -> None:
    await new_shopper(shop, identify(1), view("sku-1"), view("gone"), view("sku-2"))
    buy = {"order": "o-1", "value": "10", "currency": "EUR"}
    await shop.post(
        "/e",
        json={"events": [{"advertiser": SHOP, "event": "purchase", "items": ["sku-2"], **buy}]},
    )
    [member] = (await listing(shop))["members"]
    assert member["items"] == ["sku-1"]
    await new_shopper(shop, identify(2), {"advertiser": SHOP, "event": "cart", "items": ["sku-3"]})
    carts = await listing(shop, name="cart_abandoners")
    assert [(m["email_sha256"], m["items"]) for m in carts["members"]] == [(email(2), ["sku-3"])]


OPT_OUTS = ["cookie", "fpid", "identity", "user"]


@pytest.mark.parametrize("how", OPT_OUTS)
async def test_opted_out_and_forgotten_shoppers_vanish(
    shop: TestClient[Any, Any], how: str
) -> None:
    await new_shopper(shop, identify(1), view("sku-1"))
    uid = await new_shopper(shop, identify(2), view("sku-2"), fpid=FPID)
    assert sorted(await walk(shop)) == sorted([email(1), email(2)])
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    if how == "cookie":
        response = await shop.get("/optout")  # the browser's own uid cookie
    elif how == "fpid":
        shop.session.cookie_jar.clear()  # Kaeru's cookies blocked: the tag's fpid names them
        response = await shop.get("/optout", params={"a": SHOP, "fpid": FPID})
    elif how == "identity":
        response = await shop.delete(f"/api/v1/identities/{email(2)}", headers=operator)
    else:
        response = await shop.delete(f"/api/v1/users/{uid}", headers=operator)
    assert response.status == 200
    assert await walk(shop) == [email(1)]
    redis = shop.app[STORE].redis
    assert not await redis.exists(keys.user_email(uid, SHOP))
    assert await redis.zscore(keys.email_audience(SHOP), uid) is None
    single = await listing(shop, email_sha256=email(2))
    assert single["members"] == []


async def test_an_email_opted_out_elsewhere_is_not_listed(shop: TestClient[Any, Any]) -> None:
    """An opt-out that reached the e-mail's identifier (`ido:`) but not this uid (a flood of
    links, say): the listing checks the e-mail's mark too."""
    await new_shopper(shop, identify(1), view("sku-1"))
    identity = shop.app[IDENTITY]
    await shop.app[STORE].identities.suppress([identity.hasher.email(email(1))], 3600)
    assert await walk(shop) == []


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"limit": "0"}, "bad_limit"),
        ({"limit": "1001"}, "bad_limit"),
        ({"limit": "ten"}, "bad_limit"),
        ({"limit": "-1"}, "bad_limit"),
        ({"cursor": "not-a-cursor"}, "bad_cursor"),
        ({"cursor": ""}, "bad_cursor"),
    ],
)
async def test_bad_limits_and_cursors_are_a_clear_400_counted(
    shop: TestClient[Any, Any], params: dict[str, str], reason: str
) -> None:
    response = await shop.get(path(), params={"since": "0", **params}, headers=AUTH)
    assert response.status == 400
    body = await response.json()
    assert body["reason"] == reason
    metrics = await (await shop.get("/metrics")).text()
    assert f'kaeru_bad_requests_total{{reason="{reason}",route="audiences"}} 1.0' in metrics


async def test_a_cursor_serves_only_the_listing_it_came_from(shop: TestClient[Any, Any]) -> None:
    for n in range(3):
        await new_shopper(shop, identify(n, OTHER_SHOP), view("sku-1", advertiser=OTHER_SHOP))
        await new_shopper(shop, identify(n), view("sku-1"))
    cursor = (await listing(shop, limit="1"))["next_cursor"]
    assert cursor
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    elsewhere = [
        (path(), {"since": "1"}, AUTH),  # another since
        (path("cart_abandoners"), {"since": "0"}, AUTH),  # another audience
        (path(advertiser=OTHER_SHOP), {"since": "0"}, other),  # another advertiser
    ]
    for url, query, auth in elsewhere:
        response = await shop.get(url, params={**query, "cursor": cursor}, headers=auth)
        assert response.status == 400
        assert (await response.json())["reason"] == "bad_cursor"
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    response = await shop.get(path(), params={"since": "0", "cursor": tampered}, headers=AUTH)
    assert response.status == 400


async def test_the_cap_keeps_the_newest_shoppers(aiohttp_client: Any, settings: Settings) -> None:
    shop = await started(aiohttp_client, replace(settings, email_audience_cap=3))
    now = time.time()
    identity = shop.app[IDENTITY]
    for n in range(6):
        at = now - (6 - n) * 60  # shopper 5 the newest
        found = await identity.shop_uid(
            None, [SHOP], None, [Identify(SHOP, email(n), email_vouched=True)], at
        )
        assert found is not None
        await shop.app[STORE].record_events(found.uid, [ShopperEvent(SHOP, "view", ("sku-1",))], at)
    assert await shop.app[STORE].redis.zcard(keys.email_audience(SHOP)) == 3
    assert await walk(shop, limit="2") == [email(3), email(4), email(5)]


def test_the_cap_is_a_validated_setting() -> None:
    assert Settings.from_env({}).email_audience_cap == 100_000
    assert Settings.from_env({"KAERU_EMAIL_AUDIENCE_CAP": "5"}).email_audience_cap == 5
    for bad in ("0", "lots", "10000001"):
        with pytest.raises(ValueError, match="KAERU_EMAIL_AUDIENCE_CAP"):
            Settings.from_env({"KAERU_EMAIL_AUDIENCE_CAP": bad})


async def test_the_kept_email_expires_and_a_listing_drops_shoppers_whose_email_expired(
    shop: TestClient[Any, Any],
) -> None:
    first = await new_shopper(shop, identify(1), view("sku-1"))
    await new_shopper(shop, identify(2), view("sku-2"))
    redis, lookback_ms = shop.app[STORE].redis, shop.app[STORE].limits.lookback_seconds * 1000
    index = keys.email_audience(SHOP)
    for key in (keys.user_email(first, SHOP), index):
        assert 0 < await redis.pttl(key) <= lookback_ms
    await redis.delete(keys.user_email(first, SHOP))  # as when it expires
    assert await walk(shop) == [email(2)]
    assert await redis.zscore(index, first) is None  # and the index forgot it


async def test_shoppers_active_at_the_same_millisecond_are_each_listed_once(
    shop: TestClient[Any, Any],
) -> None:
    at = time.time() - 60
    identity, store = shop.app[IDENTITY], shop.app[STORE]
    for n in range(6):
        found = await identity.shop_uid(
            None, [SHOP], None, [Identify(SHOP, email(n), email_vouched=True)], at
        )
        assert found is not None
        await store.record_events(found.uid, [ShopperEvent(SHOP, "view", ("sku-1",))], at)
    scores = await store.redis.zrange(keys.email_audience(SHOP), 0, -1, withscores=True)
    assert len({score for _, score in scores}) == 1  # all tied
    for limit in ("1", "2", "4"):
        seen = await walk(shop, limit=limit)
        assert sorted(seen) == sorted(email(n) for n in range(6))


async def test_a_shopper_active_again_during_a_walk_moves_to_its_end(
    shop: TestClient[Any, Any],
) -> None:
    uids = [await new_shopper(shop, identify(n), view("sku-1")) for n in range(5)]
    first = await listing(shop, limit="2")
    assert [m["email_sha256"] for m in first["members"]] == [email(0), email(1)]
    # The cursor's own shopper (the page's last) and an earlier one come back.
    store = shop.app[STORE]
    for uid in (uids[1], uids[0]):
        await store.record_events(uid, [ShopperEvent(SHOP, "view", ("sku-2",))])
    seen = [m["email_sha256"] for m in first["members"]]
    cursor = first["next_cursor"]
    while cursor:
        body = await listing(shop, limit="2", cursor=cursor)
        seen += [m["email_sha256"] for m in body["members"]]
        cursor = body["next_cursor"]
    assert seen[:5] == [email(n) for n in range(5)]  # nobody missed
    assert sorted(seen[5:]) == sorted([email(0), email(1)])  # both again, newest activity
