"""Identity beyond the third-party uid cookie, against the real Redis: the tag's first-party
id, `identify` events (hashed e-mail, customer id), a partner's `eid`, their consent, bounds,
expiry and forgetting."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.http.app_keys import IDENTITY, STORE
from adserver.identity.eid_signatures import sign_eid
from adserver.identity.email_signatures import sign_email
from adserver.identity.identifiers import FPID_PATTERN, email_sha256_of
from adserver.runtime.embedded_redis import free_port
from adserver.store import keys
from tests.conftest import (
    BROWSER,
    OPERATOR_TOKEN,
    OTHER_SHOP,
    SHOP,
    SHOP_TOKEN,
    counted,
    product_row,
    put_catalog,
)

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

PUBLISHER, PUBLISHER_TOKEN = "news1", "news1-token-0123456789"
EMAIL = "  Ana.Shopper@Example.COM "
EMAIL_SHA256 = email_sha256_of(EMAIL)
FPID = "AbCdEfGhIjKlMnOpQrStUv"
OTHER_FPID = "ZyXwVuTsRqPoNmLkJiHgFe"
AD = {"pub": PUBLISHER, "size": "300x250"}


@pytest.fixture
async def shop(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """The app with a registered publisher (its token may send `eid` on /ad.json) and shop1
    selling sku-1 .. sku-6."""
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    app = create_app(replace(settings, publishers={PUBLISHER: PUBLISHER_TOKEN}))
    client: TestClient[Any, Any] = await aiohttp_client(
        app, server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    return client


def uid_cookie(client: TestClient[Any, Any]) -> str | None:
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("uid")
    return cookie.value if cookie else None


def view(sku: str, advertiser: str = SHOP) -> dict[str, Any]:
    return {"advertiser": advertiser, "event": "view", "items": [sku]}


def identify(advertiser: str = SHOP, **identifier: Any) -> dict[str, Any]:
    return {"advertiser": advertiser, "event": "identify", **identifier}


async def send(
    client: TestClient[Any, Any], *events: dict[str, Any], headers: Any = None, **top: Any
) -> aiohttp.ClientResponse:
    response = await client.post("/e", json={"events": list(events), **top}, headers=headers)
    return response


async def viewed(client: TestClient[Any, Any], uid: str) -> set[str]:
    shopper = await client.app[STORE].load_shopper(uid)
    return {sku for history in shopper.histories for sku in history.viewed}


async def all_keys(client: TestClient[Any, Any]) -> list[str]:
    redis = client.app[STORE].redis
    return sorted([k.decode() if isinstance(k, bytes) else k async for k in redis.scan_iter()])


async def link_keys(client: TestClient[Any, Any]) -> list[str]:
    return [k for k in await all_keys(client) if k.startswith("id:")]


def signed_eid(eid: str) -> dict[str, str]:
    """`eid` with its publisher's signature, as the publisher's server adds it to its tags."""
    expiry = int(time.time()) + 600
    sig = sign_eid(PUBLISHER_TOKEN, PUBLISHER, eid, expiry)
    return {"eid": eid, "eid_sig": sig, "eid_exp": str(expiry)}


async def ad_json(client: TestClient[Any, Any], **params: str) -> tuple[int, Any]:
    response = await client.get(
        "/ad.json",
        params={**AD, **params},
        headers={"Authorization": f"Bearer {PUBLISHER_TOKEN}"},
    )
    return response.status, (await response.json() if response.status == 200 else None)


async def test_a_shopper_without_kaerus_cookie_keeps_one_history_through_the_fpid(
    shop: TestClient[Any, Any],
) -> None:
    assert (await send(shop, view("sku-1"), fpid=FPID)).status == 204
    first = uid_cookie(shop)
    assert first is not None
    shop.session.cookie_jar.clear()  # the browser drops Kaeru's third-party cookie
    assert (await send(shop, view("sku-2"), fpid=FPID)).status == 204
    # The same uid, found through the first-party id, and never handed out for it (any
    # script on the shop's page can read the fpid): stored under it, no uid cookie.
    assert uid_cookie(shop) is None
    assert await viewed(shop, first) == {"sku-1", "sku-2"}

    shop.session.cookie_jar.clear()  # another browser, its own first-party id: another uid
    await send(shop, view("sku-3"), fpid=OTHER_FPID)
    other = uid_cookie(shop)
    assert other not in (None, first) and await viewed(shop, str(other)) == {"sku-3"}


async def test_the_cookie_wins_and_the_fpid_is_linked_to_it(shop: TestClient[Any, Any]) -> None:
    await send(shop, view("sku-1"))  # no fpid yet: a uid from the cookie alone
    uid = uid_cookie(shop)
    await send(shop, view("sku-2"), fpid=FPID)  # the cookie is sent: the fpid joins it
    shop.session.cookie_jar.clear()
    await send(shop, view("sku-3"), fpid=FPID)  # found through the fpid: stored, not issued
    assert uid_cookie(shop) is None and await viewed(shop, str(uid)) == {"sku-1", "sku-2", "sku-3"}


async def test_the_fpid_is_per_advertiser(shop: TestClient[Any, Any]) -> None:
    await send(shop, view("sku-1"), fpid=FPID)
    first = uid_cookie(shop)
    shop.session.cookie_jar.clear()
    await send(shop, view("x-1", OTHER_SHOP), fpid=FPID)  # same value, another shop's page
    assert uid_cookie(shop) != first


@pytest.mark.parametrize("bad", ["short", "A" * 23, "AbCdEfGhIjKlMnOpQrSt+/", 12345, ["x"]])
async def test_a_malformed_fpid_is_ignored_and_counted(
    shop: TestClient[Any, Any], bad: object
) -> None:
    assert (await send(shop, view("sku-1"), fpid=bad)).status == 204
    uid = uid_cookie(shop)
    assert uid is not None and await viewed(shop, uid) == {"sku-1"}  # stored, without a link
    assert await link_keys(shop) == []
    metrics = await (await shop.get("/metrics")).text()
    assert 'kaeru_tracking_rejects_total{reason="bad_fpid"} 1.0' in metrics


async def test_identify_links_the_hashed_email_and_a_partner_eid_finds_the_history(
    shop: TestClient[Any, Any],
) -> None:
    """Shop: the shopper logs in (identify) and views two products, with no Kaeru cookie
    surviving. Partner: a cookie-less reader whose publisher passes the same hashed e-mail
    sees those products; without the eid, the popular ones."""
    await send(shop, identify(email_sha256=EMAIL_SHA256), fpid=FPID)
    shop.session.cookie_jar.clear()
    await send(shop, view("sku-2"), view("sku-4"), fpid=FPID)
    shop.session.cookie_jar.clear()

    status, anonymous = await ad_json(shop)
    assert status == 204 or anonymous["strategy"] == "popular"
    status, known = await ad_json(shop, eid=EMAIL_SHA256)
    assert status == 200 and known["strategy"] == "recent"
    assert {p["id"] for p in known["products"]} >= {"sku-2", "sku-4"}
    assert EMAIL_SHA256 not in str(known)

    # No token needed: the publisher's server signed its reader's hash (eid_sig, eid_exp).
    vouched = signed_eid(EMAIL_SHA256)
    frame = await shop.get("/ad", params={**AD, **vouched})
    assert frame.status == 200 and "Product sku-4" in await frame.text()
    script = await shop.get("/ad.js", params={**AD, **vouched})
    assert script.status == 200 and "eid=" + EMAIL_SHA256 in await script.text()


async def test_eid_on_ad_json_needs_the_publishers_token(shop: TestClient[Any, Any]) -> None:
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-2"))
    shop.session.cookie_jar.clear()
    bare = await shop.get("/ad.json", params={**AD, "eid": EMAIL_SHA256})
    assert bare.status == 403 and "token" in (await bare.json())["error"]
    wrong = await shop.get(
        "/ad.json",
        params={**AD, "eid": EMAIL_SHA256},
        headers={"Authorization": f"Bearer {SHOP_TOKEN}"},
    )
    assert wrong.status == 403
    for bad in ("ABC", EMAIL_SHA256.upper(), EMAIL_SHA256 + "0"):
        status, _ = await ad_json(shop, eid=bad)
        assert status == 400
        frame = await shop.get("/ad", params={**AD, "eid": bad})
        assert frame.status == 400


async def test_a_customer_id_links_only_within_its_advertiser(shop: TestClient[Any, Any]) -> None:
    await send(shop, identify(customer_id="C-1001"), view("sku-1"))
    hasher = shop.app[IDENTITY].hasher
    assert hasher.customer(SHOP, "C-1001") != hasher.customer(OTHER_SHOP, "C-1001")
    assert hasher.email(EMAIL_SHA256) == hasher.email(EMAIL_SHA256)
    assert await link_keys(shop) == [keys.identity_link(hasher.customer(SHOP, "C-1001"))]
    response = await send(shop, identify(customer_id=""), identify(email_sha256="nothex"))
    assert response.status == 400  # no valid event: both refused, counted
    metrics = await (await shop.get("/metrics")).text()
    assert (
        'reason="bad_customer_id"} 1.0' in metrics and 'reason="bad_email_sha256"} 1.0' in metrics
    )


@pytest.mark.parametrize(
    "headers", [{"Sec-GPC": "1"}, {"DNT": "1"}, {"User-Agent": "Googlebot/2.1"}]
)
async def test_no_link_without_the_consent_tracking_needs(
    shop: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-1"), fpid=FPID, headers=headers)
    assert await all_keys(shop) == [k for k in await all_keys(shop) if not k.startswith("u:")]
    assert await link_keys(shop) == []


async def test_no_link_where_gdpr_applies_without_consent(shop: TestClient[Any, Any]) -> None:
    await send(shop, identify(email_sha256=EMAIL_SHA256), fpid=FPID, gdpr=1, gdpr_consent="no")
    assert await link_keys(shop) == []


async def test_an_eid_personalises_nothing_against_the_gates(shop: TestClient[Any, Any]) -> None:
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-2"))
    shop.session.cookie_jar.clear()
    for headers in ({"Sec-GPC": "1"}, {"DNT": "1"}):
        response = await shop.get(
            "/ad.json",
            params={**AD, "eid": EMAIL_SHA256},
            headers={"Authorization": f"Bearer {PUBLISHER_TOKEN}", **headers},
        )
        assert response.status == 204 or (await response.json())["strategy"] == "popular"
    status, answer = await ad_json(shop, eid=EMAIL_SHA256, gdpr="1")  # no TCF consent
    assert status == 204 or answer["strategy"] == "popular"


async def test_links_are_bounded_on_both_sides_and_expire_with_the_lookback(
    shop: TestClient[Any, Any], settings: Settings
) -> None:
    browsers = []
    for _ in range(7):  # seven browsers identify with one e-mail: the newest five are kept
        shop.session.cookie_jar.clear()
        await send(shop, identify(email_sha256=EMAIL_SHA256))
        browsers.append(uid_cookie(shop))
    redis = shop.app[STORE].redis
    email_key = keys.identity_link(shop.app[IDENTITY].hasher.email(EMAIL_SHA256))
    kept = {u.decode() for u in await redis.zrange(email_key, 0, -1)}
    fell_out = set(map(str, browsers)) - kept
    assert len(kept) == 5 and kept <= set(map(str, browsers)) and len(fell_out) == 2
    for uid in fell_out:  # the two that fell out lost the link on their side too
        assert await redis.exists(keys.user_identifiers(uid)) == 0

    shop.session.cookie_jar.clear()
    for n in range(12):  # one browser, twelve customer ids: the newest ten are kept
        await send(shop, identify(customer_id=f"C-{n}"))
    browser = uid_cookie(shop)
    assert browser is not None and await redis.zcard(keys.user_identifiers(browser)) == 10
    # The e-mail's and ten customer ids': the two that fell out named only this uid.
    assert len(await link_keys(shop)) == 1 + 10
    hasher = shop.app[IDENTITY].hasher
    gone = [
        n
        for n in range(12)
        if not await redis.exists(keys.identity_link(hasher.customer(SHOP, f"C-{n}")))
    ]
    assert len(gone) == 2 and max(gone) <= 2  # the oldest (ties within a millisecond aside)

    lookback = settings.lookback_seconds
    for key in await all_keys(shop):
        if key.startswith(("id:", "u:")):
            ttl = await redis.ttl(key)
            assert 0 < ttl <= lookback, (key, ttl)


async def no_trace(client: TestClient[Any, Any], uids: set[str]) -> None:
    """Nothing of these uids and no link survives: the whole test database SCANned."""
    names = await all_keys(client)
    assert [k for k in names if k.startswith("id:")] == []
    assert [k for k in names if any(uid in k for uid in uids) and not k.startswith("fg:")] == []


async def linked_pair(shop: TestClient[Any, Any]) -> tuple[str, str]:
    """Two browsers (two uids) that identified with one e-mail, each with a history and a
    first-party id; the second's cookie stays in the jar."""
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-1"), fpid=FPID)
    first = uid_cookie(shop)
    shop.session.cookie_jar.clear()
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-2"), fpid=OTHER_FPID)
    second = uid_cookie(shop)
    assert first and second and first != second
    assert await viewed(shop, first) and await viewed(shop, second)
    return first, second


async def test_opting_out_one_linked_uid_forgets_every_linked_uid_and_link(
    shop: TestClient[Any, Any],
) -> None:
    first, second = await linked_pair(shop)
    assert (await shop.get("/optout")).status == 200  # the second browser opts out
    await no_trace(shop, {first, second})
    status, answer = await ad_json(shop, eid=EMAIL_SHA256)
    assert status == 204 or answer["strategy"] == "popular"


async def test_forgetting_a_uid_through_the_api_carries_through_the_links(
    shop: TestClient[Any, Any],
) -> None:
    first, second = await linked_pair(shop)
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    response = await shop.delete(f"/api/v1/users/{first}", headers=auth)
    assert response.status == 200
    body = await response.json()
    assert body["linked_uids"] == 1 and body["deleted_keys"] > 0
    await no_trace(shop, {first, second})


async def user_key_count(client: TestClient[Any, Any]) -> int:
    return len([k for k in await all_keys(client) if k.startswith("u:")])


async def test_an_optout_by_first_party_id_holds_where_kaerus_cookie_cannot(
    shop: TestClient[Any, Any],
) -> None:
    """Kaeru's cookies blocked (the jar cleared before every request): the shop's opt-out
    link names the tag's first-party id; the opt-out then holds for it and for the e-mail it
    was linked to, on the shop and on the partner, and the page's undo button lifts it."""
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-1"), fpid=FPID)
    first = uid_cookie(shop)
    shop.session.cookie_jar.clear()
    page = await shop.get("/optout", params={"a": SHOP, "fpid": FPID})
    html = await page.text()
    assert page.status == 200 and FPID not in html
    undo_ids = re.search(r'name="ids" value="([A-Za-z0-9_-]+)"', html)
    assert undo_ids is not None  # the undo button carries what it lifts, sealed
    await no_trace(shop, {str(first)})
    assert sorted(k.split("{")[0] for k in await all_keys(shop) if k.startswith("ido:")) == [
        "ido:",
        "ido:",
    ]  # the first-party id and the e-mail remember the opt-out

    shop.session.cookie_jar.clear()  # the optout cookie is Kaeru's too: blocked
    await send(shop, view("sku-2"), fpid=FPID)
    shop.session.cookie_jar.clear()
    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-3"), fpid=OTHER_FPID)
    assert await user_key_count(shop) == 0 and await link_keys(shop) == []
    status, answer = await ad_json(shop, eid=EMAIL_SHA256)
    assert status == 204 or answer["strategy"] == "popular"
    metrics = await (await shop.get("/metrics")).text()
    assert 'kaeru_tracking_rejects_total{reason="opted_out"} 2.0' in metrics

    shop.session.cookie_jar.clear()
    same_origin = {"Sec-Fetch-Site": "same-origin"}
    forged = await shop.post("/optout", data={"undo": "1", "ids": "A" * 60}, headers=same_origin)
    assert forged.status == 200 and len([k for k in await all_keys(shop) if "ido:" in k]) == 2
    undo = await shop.post("/optout", data={"undo": "1", "ids": undo_ids[1]}, headers=same_origin)
    assert undo.status == 200
    assert [k for k in await all_keys(shop) if k.startswith("ido:")] == []
    shop.session.cookie_jar.clear()
    await send(shop, view("sku-4"), fpid=FPID)
    assert await user_key_count(shop) > 0  # tracked again


async def test_a_malformed_first_party_id_on_the_optout_page_is_ignored(
    shop: TestClient[Any, Any],
) -> None:
    for params in ({"a": SHOP, "fpid": "x<script>"}, {"a": "nobody", "fpid": FPID}):
        page = await shop.get("/optout", params=params)
        assert page.status == 200 and 'name="ids"' not in await page.text()
    assert [k for k in await all_keys(shop) if k.startswith("ido:")] == []


async def test_the_operator_forgets_by_hashed_email(shop: TestClient[Any, Any]) -> None:
    first, second = await linked_pair(shop)
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    assert (await shop.delete(f"/api/v1/identities/{EMAIL_SHA256}")).status == 401
    shop_auth = {"Authorization": f"Bearer {SHOP_TOKEN}"}
    assert (
        await shop.delete(f"/api/v1/identities/{EMAIL_SHA256}", headers=shop_auth)
    ).status == 403
    bad = await shop.delete(f"/api/v1/identities/{EMAIL_SHA256.upper()}", headers=auth)
    assert bad.status == 400
    response = await shop.delete(f"/api/v1/identities/{EMAIL_SHA256}", headers=auth)
    assert response.status == 200
    body = await response.json()
    # Two uids, the e-mail and both first-party ids; the answer names no uid or hash.
    assert body["forgotten_uids"] == 2 and body["forgotten_identifiers"] == 3
    assert EMAIL_SHA256 not in await response.text()
    await no_trace(shop, {first, second})
    again = await shop.delete(f"/api/v1/identities/{EMAIL_SHA256}", headers=auth)
    assert (await again.json())["forgotten_uids"] == 0


async def test_raw_and_hashed_emails_reach_no_other_key_value_stream_or_metric(
    shop: TestClient[Any, Any], redis_url: str
) -> None:
    expiry = int(time.time()) + 600
    signed = {"email_sig": sign_email(SHOP_TOKEN, SHOP, EMAIL_SHA256, expiry), "sig_exp": expiry}
    await send(shop, identify(email_sha256=EMAIL_SHA256, **signed), view("sku-1"), fpid=FPID)
    await send(shop, identify(customer_id="C-1001"))
    await ad_json(shop, eid=EMAIL_SHA256)
    uid = uid_cookie(shop)
    assert uid is not None
    # The one copy of the hashed e-mail: the shop's own, for its e-mail audiences' listing
    # (`keys.user_email`, erased with the shopper; see tests/test_recs_email_audience_listing.py).
    kept = keys.user_email(uid, SHOP)
    assert await shop.app[STORE].redis.get(kept) == EMAIL_SHA256.encode()
    dump = []
    for key in await all_keys(shop):
        if key == kept:
            continue
        dump.append(key)
        kind = (await shop.app[STORE].redis.type(key)).decode()
        if kind == "stream":
            dump.append(str(await shop.app[STORE].redis.xrange(key)))
        elif kind == "zset":
            dump.append(str(await shop.app[STORE].redis.zrange(key, 0, -1)))
        elif kind == "hash":
            dump.append(str(await shop.app[STORE].redis.hgetall(key)))
        elif kind == "string":
            dump.append(str(await shop.app[STORE].redis.get(key)))
    text = "\n".join(dump) + await (await shop.get("/metrics")).text()
    for secret in (EMAIL_SHA256, EMAIL.strip().lower(), "C-1001", FPID):
        assert secret not in text


def test_email_normalisation_matches_the_partners() -> None:
    # Google Enhanced Conversions / Meta CAPI: trim, lowercase, SHA-256 hex.
    assert email_sha256_of(" Foo@Example.com\n") == email_sha256_of("foo@example.com")
    assert len(EMAIL_SHA256) == 64 and EMAIL_SHA256 == EMAIL_SHA256.lower()
    assert FPID_PATTERN.match(FPID) and FPID_PATTERN.match(OTHER_FPID)


async def test_a_partner_eid_decision_takes_two_round_trips(
    shop: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolve the link, then the one profile script: every round trip the store sends while
    one `/ad.json` with an `eid` is answered (impressions are counted after the answer)."""
    import adserver.store.base as base
    import adserver.store.identity_links as identity_links

    await send(shop, identify(email_sha256=EMAIL_SHA256), view("sku-2"))
    shop.session.cookie_jar.clear()
    await ad_json(shop, eid=EMAIL_SHA256)  # scripts loaded, caches warm
    await counted(shop)  # its impression written: not inside the window counted below
    sent: list[list[Any]] = []
    real = base.send_commands

    async def counting(redis: Any, commands: list[Any]) -> list[Any]:
        sent.append([command[0] for command in commands])
        return await real(redis, commands)

    monkeypatch.setattr(base, "send_commands", counting)
    monkeypatch.setattr(identity_links, "send_commands", counting)
    status, answer = await ad_json(shop, eid=EMAIL_SHA256)
    during = list(sent)
    assert status == 200 and answer["strategy"] == "recent"
    assert during == [["ZREVRANGE", "EXISTS"], ["EVALSHA"]]  # link and opt-out; profile
