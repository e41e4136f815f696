"""What one client can make Kaeru count (issue 11 §5): renders once per served impression,
clicks once per link for its lifetime, bounded impressions per browser and per cookie-less
client, bounded publisher ids, browser-reported revenue at most the catalog value."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.delivery.served_ad import AD_PURPOSE, link_index, sealed_ad
from adserver.http.app_keys import SIGNER, STORE
from adserver.runtime.embedded_redis import free_port
from adserver.store.ledger import Click
from tests.conftest import (
    BROWSER,
    SHOP,
    SHOP_TOKEN,
    counted,
    learn_all,
    product_row,
    put_catalog,
)

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}


async def report(client: TestClient[Any, Any], by: str = "day") -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/advertisers/{SHOP}/report", params={"by": by}, headers=AUTH
    )
    assert response.status == 200, await response.text()
    rows: list[dict[str, Any]] = (await response.json())["rows"]
    return rows


async def totals(client: TestClient[Any, Any]) -> dict[str, Any]:
    rows = await report(client)
    return rows[-1]  # today


async def ad(client: TestClient[Any, Any], pub: str = "news1", **headers: str) -> dict[str, Any]:
    response = await client.get("/ad.json", params={"pub": pub, "size": "300x250"}, headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def redis_time_passes(redis: Redis, seconds: float) -> None:
    """What `seconds` of Redis's clock do to expiring keys, without waiting: every key with a
    TTL of at most `seconds` goes, the others' TTLs shrink by it (the app's clock stays)."""
    nodes = redis.get_primaries() if hasattr(redis, "get_primaries") else [None]
    for node in nodes:
        scan = redis.scan_iter(target_nodes=node) if node is not None else redis.scan_iter()
        async for key in scan:
            pttl = await redis.pttl(key)
            if pttl < 0:
                continue
            if pttl <= seconds * 1000:
                await redis.delete(key)
            else:
                await redis.pexpire(key, pttl - int(seconds * 1000))


@pytest.fixture
async def popular(stocked: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """The stocked client whose cookie-less ads are filled (sku-1 is popular), cookies gone."""
    await stocked.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    await learn_all(stocked)
    stocked.session.cookie_jar.clear()
    return stocked


# -- renders ------------------------------------------------------------------------------


async def test_a_render_beacon_counts_once_however_often_it_is_hit(
    popular: TestClient[Any, Any],
) -> None:
    stocked = popular
    client = stocked
    served = [await ad(client) for _ in range(7)]
    beacons = [urlsplit(s["impression_url"]).path for s in served]
    assert len(set(beacons)) == 7  # one beacon per served impression
    for _ in range(500):
        response = await client.get(beacons[0])
        assert response.status == 200 and response.content_type == "image/gif"
    for beacon in beacons[1:]:
        await client.get(beacon)
    await counted(client)
    day = await totals(client)
    assert (day["impressions"], day["rendered"]) == (7, 7)
    metrics = await (await client.get("/metrics")).text()
    assert "kaeru_renders_uncounted_total 499.0" in metrics


async def test_a_forged_render_beacon_counts_nothing(popular: TestClient[Any, Any]) -> None:
    stocked = popular
    response = await stocked.get("/i/eyJmb28iOjF9.AAAA")
    assert response.status == 200 and response.content_type == "image/gif"
    await counted(stocked)
    assert (await totals(stocked))["rendered"] == 0


# -- clicks -------------------------------------------------------------------------------


async def test_a_click_link_counts_once_for_its_lifetime(popular: TestClient[Any, Any]) -> None:
    stocked = popular
    client = stocked
    link = urlsplit((await ad(client))["products"][0]["click_url"]).path
    # 11 minutes, then a day, then four weeks on (within the link's 30 days):
    for minutes in (0, 11, 60 * 24, 60 * 24 * 28):
        if minutes:
            await redis_time_passes(client.app[STORE].redis, minutes * 60)
        response = await client.get(link, allow_redirects=False)
        assert response.status == 302  # every follow still lands on the product
    await counted(client)
    assert (await totals(client))["clicks"] == 1


async def test_two_impressions_of_the_same_ad_each_get_their_own_click(
    popular: TestClient[Any, Any],
) -> None:
    """The same placement and product served twice within a second: two links, two clicks."""
    stocked = popular
    links = [urlsplit((await ad(stocked))["products"][0]["click_url"]).path for _ in range(2)]
    assert links[0] != links[1]
    for link in links:
        await stocked.get(link, allow_redirects=False)
    await counted(stocked)
    assert (await totals(stocked))["clicks"] == 2


async def test_a_click_replayed_from_the_outage_buffer_after_its_window_counts_once(
    popular: TestClient[Any, Any],
) -> None:
    stocked = popular
    client = stocked
    link = urlsplit((await ad(client))["products"][0]["click_url"]).path
    await client.get(link, allow_redirects=False)
    await counted(client)
    await redis_time_passes(client.app[STORE].redis, 3600)
    # What the click writer replays after a lost reply: the same click, an hour on.
    ledger = client.app[STORE].ledger
    token = link.removeprefix("/c/")  # TOKEN/LINK: the ad's token, the product's name
    ad_token, name = token.split("/")
    fields = client.app[SIGNER].verify(AD_PURPOSE, ad_token, 86400)
    sealed = sealed_ad(fields)  # type: ignore[arg-type]
    index = link_index(client.app[SIGNER], ad_token, name)
    parsed = None if sealed is None or index is None else sealed.click(index)
    assert parsed is not None
    click = Click(None, parsed[0], parsed[1], 0.0, token)
    assert not await ledger.record_click(click.uid, click.placement, click.sku, None, token)
    assert (await totals(client))["clicks"] == 1


# -- impressions --------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, impression_cap_per_hour=20, max_publishers_per_day=10)


async def test_a_looped_cookie_less_client_counts_a_bounded_number_of_impressions(
    popular: TestClient[Any, Any],
) -> None:
    stocked = popular
    client = stocked
    for _ in range(200):
        assert (await ad(client))["products"]  # the ads are still served
    await counted(client)
    assert (await totals(client))["impressions"] == 20
    # Another shopper (another browser) on the same publisher is counted as before.
    other = {"User-Agent": BROWSER["User-Agent"].replace("156.0", "155.0")}
    for _ in range(5):
        await ad(client, **other)
    await counted(client)
    assert (await totals(client))["impressions"] == 25


async def test_render_beacons_of_impressions_past_the_cap_count_nothing(
    popular: TestClient[Any, Any],
) -> None:
    """A loop fetching ads and hitting every beacon: no more renders than impressions."""
    client = popular
    beacons = [urlsplit((await ad(client))["impression_url"]).path for _ in range(60)]
    for beacon in beacons:
        response = await client.get(beacon)
        assert response.status == 200 and response.content_type == "image/gif"
    await counted(client)
    day = await totals(client)
    assert (day["impressions"], day["rendered"]) == (20, 20)


async def test_a_client_changing_ipv6_addresses_within_its_64_is_one_client(
    aiohttp_client: Any, settings: Settings
) -> None:
    """Any host picks addresses in its /64 at will: rotating them escapes no cap."""
    behind_proxy = replace(settings, trusted_proxies=("127.0.0.1",))
    client = await aiohttp_client(create_app(behind_proxy), headers=BROWSER)
    await popular_ads(client)
    for n in range(300):
        served = await ad(client, **{"X-Forwarded-For": f"2001:db8:0:1::{n + 1:x}"})
        assert served["products"]  # the ads are still served
    await counted(client)
    assert (await totals(client))["impressions"] == 20
    # Another /64 is another client.
    for n in range(5):
        await ad(client, **{"X-Forwarded-For": f"2001:db8:0:2::{n + 1:x}"})
    await counted(client)
    assert (await totals(client))["impressions"] == 25


async def test_a_looped_browser_counts_a_bounded_number_of_impressions(
    stocked: TestClient[Any, Any],
) -> None:
    client = stocked
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})  # a uid with a profile
    for _ in range(60):
        assert (await ad(client))["products"][0]["id"] == "sku-2"
    await counted(client)
    assert (await totals(client))["impressions"] == 20


async def test_made_up_uids_are_counted_like_cookie_less_requests(
    popular: TestClient[Any, Any],
) -> None:
    stocked = popular
    client = stocked
    for n in range(60):
        client.session.cookie_jar.clear()
        uid = f"{n:022d}"
        response = await client.get(
            "/ad.json", params={"pub": "news1", "size": "300x250"}, cookies={"uid": uid}
        )
        assert response.status == 200
    await counted(client)
    assert (await totals(client))["impressions"] == 20


async def test_made_up_uids_with_profiles_from_one_address_count_a_bounded_number(
    stocked: TestClient[Any, Any],
) -> None:
    """Each made-up uid gets a profile (one pixel hit), then loops ads up to its own cap:
    one address still counts at most ten times the cap an hour on one publisher."""
    client = stocked
    for n in range(30):
        uid = {"uid": f"{n:022d}"}
        await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"}, cookies=uid)
        for _ in range(20):
            params = {"pub": "news1", "size": "300x250"}
            assert (await client.get("/ad.json", params=params, cookies=uid)).status == 200
    await counted(client)
    assert (await totals(client))["impressions"] == 200


async def test_a_loop_following_every_new_click_link_counts_a_bounded_number_of_clicks(
    popular: TestClient[Any, Any],
) -> None:
    client = popular
    for _ in range(60):
        link = urlsplit((await ad(client))["products"][0]["click_url"]).path
        assert (await client.get(link, allow_redirects=False)).status == 302
    await counted(client)
    assert (await totals(client))["clicks"] == 20


# -- publishers ---------------------------------------------------------------------------


async def test_made_up_publishers_fold_into_one_other_row(popular: TestClient[Any, Any]) -> None:
    stocked = popular
    client = stocked
    for n in range(1000):
        await ad(client, pub=f"pub{n}")
    await counted(client)
    rows = await report(client, by="publisher")
    assert len(rows) == 11
    assert {r["publisher"] for r in rows} == {f"pub{n}" for n in range(10)} | {"other"}
    other = next(r for r in rows if r["publisher"] == "other")
    assert other["impressions"] == 990  # counted all the same (each pub is a new client)


async def test_registered_publishers_restrict_serving(
    aiohttp_client: Any, settings: Settings
) -> None:
    registered = replace(settings, publishers={"news1": "news1-token-0123456789"})
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client = await aiohttp_client(
        create_app(registered), server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    await put_catalog(client, [product_row("sku-1")])
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    assert (await ad(client))["products"]
    response = await client.get("/ad.json", params={"pub": "made-up", "size": "300x250"})
    assert response.status == 400
    assert "publisher" in (await response.json())["error"]


# -- purchases ----------------------------------------------------------------------------


async def test_browser_reported_revenue_is_at_most_the_catalog_value(
    stocked: TestClient[Any, Any],
) -> None:
    client = stocked
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})
    await ad(client)
    await counted(client)  # the impression the purchases are attributed to
    for n in range(200):
        response = await client.get(
            "/px",
            params={"a": SHOP, "e": "purchase", "o": f"fake-{n}", "i": "sku-1", "v": "999999999",
                    "cur": "EUR"},
        )  # fmt: skip
        assert response.status == 200
    await counted(client)
    day = await totals(client)
    assert day["conversions"] == 5  # KAERU_BROWSER_CONVERSIONS_PER_DAY
    assert Decimal(day["revenue"]) == 5 * Decimal("19.90")


async def test_made_up_uids_from_one_address_convert_a_bounded_number_of_orders(
    popular: TestClient[Any, Any],
) -> None:
    """Each made-up uid gets an impression, then converts its 5 orders a day: one address
    (one client) still converts at most ten times that an hour through the browser."""
    client = popular
    for n in range(40):
        uid = {"uid": f"{n:022d}"}
        await client.get("/ad.json", params={"pub": "news1", "size": "300x250"}, cookies=uid)
        await counted(client)
        for k in range(5):
            purchase = {"a": SHOP, "e": "purchase", "o": f"o-{n}-{k}", "i": "sku-1", "cur": "EUR"}
            response = await client.get("/px", params={**purchase, "v": "19.90"}, cookies=uid)
            assert response.status == 200
    await counted(client)
    day = await totals(client)
    assert (day["conversions"], Decimal(day["revenue"])) == (50, 50 * Decimal("19.90"))
    metrics = await (await client.get("/metrics")).text()
    assert "kaeru_browser_conversions_over_cap_total 150.0" in metrics


async def test_unknown_items_carry_no_revenue(stocked: TestClient[Any, Any]) -> None:
    client = stocked
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})
    await ad(client)
    await counted(client)
    await client.post(
        "/e",
        json={"events": [{"advertiser": SHOP, "event": "purchase", "order": "o1",
                          "items": [{"id": "sku-1", "price": "500", "quantity": 2},
                                    {"id": "not-sold-here", "price": "500"}],
                          "revenue": "1500", "currency": "EUR"}]},
    )  # fmt: skip
    await counted(client)
    day = await totals(client)
    assert (day["conversions"], Decimal(day["revenue"])) == (1, Decimal("39.80"))


async def test_the_server_to_server_postback_stays_trusted(stocked: TestClient[Any, Any]) -> None:
    client = stocked
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})
    await ad(client)
    await counted(client)
    uid = client.session.cookie_jar.filter_cookies(client.make_url("/"))["uid"].value
    for n in range(8):
        response = await client.post(
            f"/api/v1/advertisers/{SHOP}/conversions",
            json={"uid": uid, "order": f"real-{n}", "revenue": "1000", "currency": "EUR",
                  "items": ["sku-1"]},
            headers=AUTH,
        )  # fmt: skip
        assert response.status == 200, await response.text()
    day = await totals(client)
    assert (day["conversions"], Decimal(day["revenue"])) == (8, Decimal(8000))


async def test_the_postback_attributes_an_order_the_browser_reported_past_its_cap(
    stocked: TestClient[Any, Any],
) -> None:
    """The shopper's 6th order of the day, reported by the tag first (past the browser's cap:
    not attributed), then confirmed by the shop's server, which has no cap: attributed."""
    client = stocked
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})
    await ad(client)
    await counted(client)
    for n in range(6):
        purchase = {"a": SHOP, "e": "purchase", "o": f"o-{n}", "i": "sku-1", "cur": "EUR"}
        await client.get("/px", params={**purchase, "v": "19.90"})
    await counted(client)
    assert (await totals(client))["conversions"] == 5
    uid = client.session.cookie_jar.filter_cookies(client.make_url("/"))["uid"].value
    confirmation = {"uid": uid, "order": "o-5", "revenue": "100", "items": ["sku-1"]}
    response = await client.post(
        f"/api/v1/advertisers/{SHOP}/conversions", json={**confirmation, "currency": "EUR"},
        headers=AUTH,
    )  # fmt: skip
    assert response.status == 200 and (await response.json())["attributed"] is True
    day = await totals(client)
    assert (day["conversions"], Decimal(day["revenue"])) == (6, 5 * Decimal("19.90") + 100)
    # Confirmed again (a retry): still one conversion.
    await client.post(
        f"/api/v1/advertisers/{SHOP}/conversions", json={**confirmation, "currency": "EUR"},
        headers=AUTH,
    )  # fmt: skip
    assert (await totals(client))["conversions"] == 6


async def test_an_order_id_claimed_first_by_another_shopper_is_not_stolen(
    stocked: TestClient[Any, Any],
) -> None:
    """A made-up shopper shown an ad on 'evil' reports order 1001 (order ids are often
    sequential) before the real buyer, shown an ad on news1, buys it: the real buyer's order
    still counts for news1, and the shop's postback confirms it there."""
    client = stocked
    for uid, pub in (("a" * 22, "evil"), ("v" * 22, "news1")):
        await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"}, cookies={"uid": uid})
        params = {"pub": pub, "size": "300x250"}
        await client.get("/ad.json", params=params, cookies={"uid": uid})
        await counted(client)
        purchase = {"a": SHOP, "e": "purchase", "o": "1001", "i": "sku-1", "cur": "EUR"}
        await client.get("/px", params={**purchase, "v": "19.90"}, cookies={"uid": uid})
    confirmation = {"uid": "v" * 22, "order": "1001", "revenue": "25", "items": ["sku-1"]}
    response = await client.post(
        f"/api/v1/advertisers/{SHOP}/conversions", json={**confirmation, "currency": "EUR"},
        headers=AUTH,
    )  # fmt: skip
    assert response.status == 200
    await counted(client)
    rows = await report(client, by="publisher")
    news1 = next(r for r in rows if r["publisher"] == "news1")
    assert (news1["conversions"], Decimal(news1["revenue"])) == (1, Decimal(25))


async def test_a_registered_publisher_reads_its_own_report_with_its_token(
    aiohttp_client: Any, settings: Settings
) -> None:
    tokens = {"news1": "news1-token-0123456789", "blog2": "blog2-token-0123456789"}
    app = create_app(replace(settings, publishers=tokens))
    client = await aiohttp_client(app, headers=BROWSER)
    await popular_ads(client)
    for pub in ("news1", "news1", "blog2"):
        await ad(client, pub=pub)
    await counted(client)
    path = "/api/v1/publishers/news1/report"
    mine = {"Authorization": f"Bearer {tokens['news1']}"}
    response = await client.get(path, params={"by": "advertiser"}, headers=mine)
    assert response.status == 200
    rows = (await response.json())["rows"]
    assert [(r["advertiser"], r["impressions"]) for r in rows] == [(SHOP, 2)]
    theirs = {"Authorization": f"Bearer {tokens['blog2']}"}
    assert (await client.get(path, headers=theirs)).status == 403
    assert (await client.get(path, headers=AUTH)).status == 401  # an advertiser's token
    assert (await client.get(path)).status == 401


async def popular_ads(client: TestClient[Any, Any]) -> None:
    await put_catalog(client, [product_row("sku-1")])
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    await learn_all(client)
    client.session.cookie_jar.clear()


async def test_what_counting_keeps_in_redis_expires(popular: TestClient[Any, Any]) -> None:
    """Click markers, render markers and the day's publishers all have TTLs."""
    client = popular
    served = await ad(client)
    await client.get(urlsplit(served["impression_url"]).path)
    await client.get(urlsplit(served["products"][0]["click_url"]).path, allow_redirects=False)
    await counted(client)
    redis = client.app[STORE].redis
    kinds = ("clk:", "rnd:", "pubs:")
    found = [k async for k in redis.scan_iter() if k.decode().startswith(kinds)]
    assert {k.decode().split(":")[0] + ":" for k in found} == set(kinds)
    for key in found:
        ttl = await redis.ttl(key)
        assert 0 < ttl <= 31 * 86400, key


async def test_the_postback_s_revenue_replaces_the_browser_s_for_the_same_order(
    stocked: TestClient[Any, Any],
) -> None:
    client = stocked
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})
    await ad(client)
    await counted(client)
    purchase = {"a": SHOP, "e": "purchase", "o": "o-1", "i": "sku-1", "v": "49.90", "cur": "EUR"}
    await client.get("/px", params=purchase)
    await counted(client)
    assert Decimal((await totals(client))["revenue"]) == Decimal("19.90")  # the catalog value
    uid = client.session.cookie_jar.filter_cookies(client.make_url("/"))["uid"].value
    confirmation = {"uid": uid, "order": "o-1", "revenue": "49.90", "items": ["sku-1"]}
    response = await client.post(
        f"/api/v1/advertisers/{SHOP}/conversions", json={**confirmation, "currency": "EUR"},
        headers=AUTH,
    )  # fmt: skip
    assert response.status == 200
    day = await totals(client)
    assert (day["conversions"], Decimal(day["revenue"])) == (1, Decimal("49.90"))
