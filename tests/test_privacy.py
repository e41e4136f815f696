"""Privacy: opt-out, forgetting, retention, signals."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.http.app_keys import STORE
from tests.conftest import (
    BROWSER,
    OPERATOR_TOKEN,
    SHOP,
    SHOP_TOKEN,
    counted,
    product_row,
    put_catalog,
    stream_events,
)

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


async def visit(client: TestClient[Any, Any], sku: str = "sku-1", **headers: str) -> Any:
    return await client.get("/px", params={"a": SHOP, "e": "view", "i": sku}, headers=headers)


def uid_of(client: TestClient[Any, Any]) -> str | None:
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("uid")
    return cookie.value if cookie else None


async def user_keys(client: TestClient[Any, Any], uid: str) -> list[bytes]:
    return [k async for k in client.app[STORE].redis.scan_iter(match=f"u:{{{uid}}}:*")]


async def ad_strategy(client: TestClient[Any, Any]) -> str | None:
    response = await client.get("/ad.json", params={"pub": "news1", "size": "300x250"})
    return None if response.status == 204 else (await response.json())["strategy"]


async def test_optout_forgets_the_profile_and_stops_tracking(
    stocked: TestClient[Any, Any], redis_url: str
) -> None:
    await visit(stocked)
    uid = uid_of(stocked)
    assert uid and await user_keys(stocked, uid)
    assert await ad_strategy(stocked) == "recent"

    page = await stocked.get("/optout")
    assert page.status == 200 and "opted out" in await page.text()
    assert page.cookies["optout"].value == "1"
    assert page.cookies["optout"]["max-age"] == str(5 * 365 * 86400)
    assert await user_keys(stocked, uid) == []

    events_before = len(await stream_events(redis_url))
    await visit(stocked, "sku-2")
    assert len(await stream_events(redis_url)) == events_before  # nothing stored
    assert await ad_strategy(stocked) in ("popular", None)  # never personalised

    undo = await stocked.post("/optout", data={"undo": "1"}, headers=SAME_ORIGIN)
    assert undo.status == 200 and "allowed again" in await undo.text()
    await visit(stocked, "sku-3")
    assert await ad_strategy(stocked) == "recent"


def own_origin(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("/")).rstrip("/")


def optout_cookie(client: TestClient[Any, Any]) -> str | None:
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("optout")
    return cookie.value if cookie else None


async def test_no_cross_site_request_can_undo_an_optout(
    stocked: TestClient[Any, Any], redis_url: str
) -> None:
    """Opting out is harmless to trigger from anywhere; taking it back is not: an
    `<img src=…/optout?undo=1>` or a form on another site must change nothing."""
    await stocked.get("/optout")
    assert optout_cookie(stocked) == "1"
    link = await stocked.get("/optout", params={"undo": "1"}, headers={"Sec-Fetch-Site": "none"})
    assert link.status == 200 and "optout" not in link.cookies
    assert '<form method="post" action="/optout">' in await link.text()
    image = await stocked.get(
        "/optout", params={"undo": "1"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert image.status == 200 and "optout" not in image.cookies
    forged = [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://partner.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://evil.127.0.0.1.example"},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "cross-site", "Origin": own_origin(stocked)},  # the browser's word wins
        {"Origin": "https://partner.example"},
        {"Origin": "null"},  # a sandboxed frame or a redirect
        {"Origin": own_origin(stocked) + ".evil.example"},
        {"Referer": own_origin(stocked) + "/optout"},  # no Origin: not proof enough
        {},
    ]
    for headers in forged:
        response = await stocked.post("/optout", data={"undo": "1"}, headers=headers)
        assert response.status == 403, headers
        assert "optout" not in response.cookies, headers
    assert optout_cookie(stocked) == "1"
    events_before = len(await stream_events(redis_url))
    await visit(stocked, "sku-2")
    assert len(await stream_events(redis_url)) == events_before  # still not tracked
    metrics = await (await stocked.get("/metrics")).text()
    assert 'kaeru_bad_requests_total{reason="cross_site",route="optout"} 7.0' in metrics
    assert 'kaeru_bad_requests_total{reason="no_origin",route="optout"} 2.0' in metrics


async def test_the_optout_page_undoes_it_with_a_same_origin_post(
    stocked: TestClient[Any, Any],
) -> None:
    page = await stocked.get("/optout")
    html = await page.text()
    assert '<form method="post" action="/optout">' in html and "Undo" in html
    # A browser without Sec-Fetch-* still sends Origin with a form POST.
    undo = await stocked.post(
        "/optout", data={"undo": "1"}, headers={"Origin": own_origin(stocked)}
    )
    assert undo.status == 200 and "allowed again" in await undo.text()
    assert undo.cookies["optout"].value == "" and optout_cookie(stocked) is None
    await visit(stocked, "sku-3")
    assert await ad_strategy(stocked) == "recent"


async def test_optout_pages_cannot_be_framed(client: TestClient[Any, Any]) -> None:
    """A page framing the undo button (clickjacking) would post from Kaeru's own origin."""
    for response in (
        await client.get("/optout"),
        await client.get("/optout", params={"undo": "1"}),
        await client.post("/optout", headers=SAME_ORIGIN),
    ):
        assert response.status == 200
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_global_privacy_control_and_do_not_track_mean_no_storage(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    await visit(client, **{"Sec-GPC": "1"})
    await visit(client, DNT="1")
    assert await stream_events(redis_url) == []
    assert uid_of(client) is None


async def test_operator_forgets_a_user_idempotently(stocked: TestClient[Any, Any]) -> None:
    await visit(stocked)
    await stocked.get(
        "/px", params={"a": SHOP, "e": "purchase", "i": "sku-1", "o": "o1", "v": "1", "cur": "EUR"}
    )
    await ad_strategy(stocked)
    uid = uid_of(stocked)
    assert uid
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    denied = await stocked.delete(
        f"/api/v1/users/{uid}", headers={"Authorization": f"Bearer {SHOP_TOKEN}"}
    )
    assert denied.status == 403
    first = await stocked.delete(f"/api/v1/users/{uid}", headers=auth)
    assert (await first.json())["deleted_keys"] >= 5
    assert await user_keys(stocked, uid) == []
    second = await stocked.delete(f"/api/v1/users/{uid}", headers=auth)
    assert (await second.json())["deleted_keys"] == 0
    assert (await stocked.delete("/api/v1/users/not-a-uid", headers=auth)).status == 400


async def test_no_per_user_key_outlives_the_lookback(stocked: TestClient[Any, Any]) -> None:
    await visit(stocked)
    await stocked.get("/px", params={"a": SHOP, "e": "cart", "i": "sku-2"})
    await stocked.get(
        "/px", params={"a": SHOP, "e": "purchase", "i": "sku-1", "o": "o1", "v": "1", "cur": "EUR"}
    )
    await ad_strategy(stocked)
    from adserver.http.app_keys import WORKER

    await stocked.app[WORKER].drain()  # the learner's per-shopper state too
    uid = uid_of(stocked)
    assert uid
    lookback = stocked.app[STORE].limits.lookback_seconds
    found = await user_keys(stocked, uid)
    assert len(found) >= 8
    for key in found:
        ttl = await stocked.app[STORE].redis.ttl(key)
        assert 0 < ttl <= lookback, (key, ttl)


async def test_tcf_consent_to_purposes_1_3_4_is_needed_where_gdpr_applies(
    stocked: TestClient[Any, Any], redis_url: str
) -> None:
    from tests.test_consent import encode

    refused = encode(purposes=(1, 2))
    granted = encode(purposes=(1, 3, 4))
    base = {"a": SHOP, "e": "view", "i": "sku-1"}
    for params in (
        {"gdpr": "1"},
        {"gdpr": "1", "gdpr_consent": refused},
        {"gdpr": "1", "gdpr_consent": "garbled!"},
    ):
        await stocked.get("/px", params={**base, **params})
    assert await stream_events(redis_url) == []
    await stocked.get("/px", params={**base, "gdpr": "1", "gdpr_consent": granted})
    await stocked.post(
        "/e",
        json={
            "events": [{**{"advertiser": SHOP, "event": "view"}, "items": ["sku-2"]}],
            "gdpr": 1,
            "gdpr_consent": refused,
        },
    )
    assert [e["items"] for e in await stream_events(redis_url)] == [["sku-1"]]
    personal = await stocked.get(
        "/ad.json", params={"pub": "news1", "size": "300x250", "gdpr": "1", "gdpr_consent": granted}
    )
    assert (await personal.json())["strategy"] == "recent"
    generic = await stocked.get(
        "/ad.json", params={"pub": "news1", "size": "300x250", "gdpr": "1", "gdpr_consent": refused}
    )
    assert generic.status == 204 or (await generic.json())["strategy"] == "popular"


async def test_a_publisher_restriction_or_a_bad_segment_means_no_storage(
    aiohttp_client: Any, settings: Settings, redis_url: str
) -> None:
    """With KAERU_TCF_VENDOR_ID set, a publisher restriction that takes purpose 3 from Kaeru's
    vendor, or a garbled segment after a valid core, is no consent: nothing is stored."""
    from tests.test_consent import encode

    client = await aiohttp_client(create_app(replace(settings, tcf_vendor_id=755)), headers=BROWSER)
    await put_catalog(client, [product_row("sku-1")])
    granted = encode(purposes=(1, 3, 4), vendors=(755,))
    refusals = [
        encode(purposes=(1, 3, 4), vendors=(755,), restrictions=[(3, 0, [(700, 800)])]),
        encode(purposes=(1, 3, 4), vendors=(755,), restrictions=[(4, 2, [(755, 755)])]),
        f"{granted}.zzzz",
        f"{granted}.I",
    ]
    base = {"a": SHOP, "e": "view", "i": "sku-1", "gdpr": "1"}
    for refused in refusals:
        await client.get("/px", params={**base, "gdpr_consent": refused})
    assert await stream_events(redis_url) == []
    allowed = encode(purposes=(1, 3, 4), vendors=(755,), restrictions=[(3, 1, [(755, 755)])])
    await client.get("/px", params={**base, "gdpr_consent": allowed})
    assert [e["items"] for e in await stream_events(redis_url)] == [["sku-1"]]


async def test_known_bots_are_not_tracked_or_counted(
    stocked: TestClient[Any, Any], redis_url: str
) -> None:
    googlebot = {
        "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    }
    await stocked.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers=googlebot)
    assert await stream_events(redis_url) == []
    await visit(stocked)
    response = await stocked.get(
        "/ad.json", params={"pub": "news1", "size": "300x250"}, headers=googlebot
    )
    assert response.status == 204 or (await response.json())["strategy"] == "popular"
    metrics = await (await stocked.get("/metrics")).text()
    assert 'kaeru_tracking_rejects_total{reason="bot"} 1.0' in metrics


async def test_a_replayed_click_counts_once(stocked: TestClient[Any, Any]) -> None:
    from urllib.parse import urlsplit

    await visit(stocked)
    served = await (await stocked.get("/ad.json", params={"pub": "n", "size": "300x250"})).json()
    path = urlsplit(served["products"][0]["click_url"]).path
    for _ in range(3):
        response = await stocked.get(path, allow_redirects=False)
        assert response.status == 302  # the shopper still lands
    await counted(stocked)
    metrics = await (await stocked.get("/metrics")).text()
    assert 'kaeru_clicks_total{outcome="counted"} 1.0' in metrics
    assert 'kaeru_clicks_total{outcome="replayed"} 2.0' in metrics


@pytest.mark.parametrize("domains", [{}, {SHOP: ("shop1.example",)}], ids=["any", "domains"])
async def test_a_foreign_page_cannot_read_whether_the_browser_opted_out(
    aiohttp_client: Any, settings: Settings, domains: dict[str, tuple[str, ...]]
) -> None:
    """/e answers any Origin with CORS and credentials (the tag must read a 503), so what it
    answers may not depend on the browser's opt-out: a foreign page's fetch read a 204 from
    an opted-out browser where one that was not got a 400 (or a 403), i.e. learned the bit."""
    app = create_app(replace(settings, advertiser_domains=domains))
    client = await aiohttp_client(app, headers=BROWSER)
    foreign = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    view = {"advertiser": SHOP, "event": "view", "items": ["sku-1"]}
    for body in (b"garbage", b'{"events": []}', orjson.dumps({"events": [view]})):
        plain = await client.post("/e", data=body, headers=foreign)
        opted = await client.post("/e", data=body, headers={**foreign, "Cookie": "optout=1"})
        assert plain.headers["Access-Control-Allow-Origin"] == "https://evil.example"
        assert (opted.status, await opted.read()) == (plain.status, await plain.read()), body
