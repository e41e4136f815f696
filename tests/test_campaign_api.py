"""Campaigns, reports, conversions and "why this ad" over HTTP, against a real Redis."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.runtime.embedded_redis import free_port
from tests.conftest import (
    BROWSER,
    OPERATOR_TOKEN,
    OTHER_SHOP,
    OTHER_TOKEN,
    SHOP,
    SHOP_TOKEN,
    counted,
    product_row,
    put_catalog,
)
from tests.test_geo import write_db

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

CAMPAIGNS = f"/api/v1/advertisers/{SHOP}/campaigns"
REPORT = f"/api/v1/advertisers/{SHOP}/report"


def auth(token: str = SHOP_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def body(**overrides: Any) -> dict[str, Any]:
    return {"name": "Viewers", "bid": {"type": "cpm", "amount": "2.50"}, **overrides}


async def put_campaign(client: TestClient[Any, Any], campaign_id: str, **overrides: Any) -> None:
    response = await client.put(
        f"{CAMPAIGNS}/{campaign_id}", json=body(**overrides), headers=auth()
    )
    assert response.status == 200, await response.text()


async def view(client: TestClient[Any, Any], *skus: str) -> None:
    for sku in skus:
        await client.get("/px", params={"a": SHOP, "e": "view", "i": sku})


async def ad(client: TestClient[Any, Any], **params: str) -> dict[str, Any] | None:
    response = await client.get("/ad.json", params={"pub": "news1", "size": "300x250", **params})
    await counted(client)
    if response.status == 204:
        return None
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_campaign_is_stored_listed_read_and_deleted(stocked: TestClient[Any, Any]) -> None:
    await put_campaign(stocked, "c1", what={"strategies": ["recent"]})
    response = await stocked.get(f"{CAMPAIGNS}/c1", headers=auth())
    assert (await response.json())["what"]["strategies"] == ["recent"]
    listed = await (await stocked.get(CAMPAIGNS, headers=auth())).json()
    assert [c["id"] for c in listed["campaigns"]] == ["c1"]
    assert (await stocked.delete(f"{CAMPAIGNS}/c1", headers=auth())).status == 204
    assert (await stocked.get(f"{CAMPAIGNS}/c1", headers=auth())).status == 404


async def test_invalid_campaign_is_refused_with_every_problem(
    stocked: TestClient[Any, Any],
) -> None:
    bad = {"name": "", "who": {"include": ["buyerz"]}, "bid": {"type": "cpx", "amount": -1}}
    response = await stocked.put(f"{CAMPAIGNS}/c1", json=bad, headers=auth())
    assert response.status == 422
    problems = (await response.json())["problems"]
    assert any("who.include[0]" in p for p in problems)
    assert any(p.startswith("bid.type") for p in problems)
    assert any(p.startswith("bid.amount") for p in problems)
    response = await stocked.put(f"{CAMPAIGNS}/c1", data=b"{not json", headers=auth())
    assert response.status == 400


async def test_campaigns_of_another_advertiser_are_out_of_reach(
    stocked: TestClient[Any, Any],
) -> None:
    await put_campaign(stocked, "c1")
    for method in ("GET", "PUT", "DELETE"):
        response = await stocked.request(
            method, f"{CAMPAIGNS}/c1", json=body(), headers=auth(OTHER_TOKEN)
        )
        assert response.status == 403
    assert (await stocked.get(CAMPAIGNS, headers=auth(OTHER_TOKEN))).status == 403


async def test_new_campaign_takes_effect_without_a_restart(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-1")
    first = await ad(stocked)
    assert first is not None and first["campaign"] == "default"
    await put_campaign(stocked, "deny-news", where={"publishers": {"deny": ["news1"]}})
    assert await ad(stocked) is None  # its only campaign now refuses this publisher
    assert (await ad(stocked, pub="blog2")) is not None


async def test_daily_cap_stops_ads_at_the_cap(stocked: TestClient[Any, Any]) -> None:
    await put_campaign(stocked, "capped", when={"cap_per_day": 2})
    await view(stocked, "sku-1")
    served = [await ad(stocked) for _ in range(4)]
    assert [s is not None for s in served] == [True, True, False, False]


async def test_why_this_ad_is_for_the_operator_only(stocked: TestClient[Any, Any]) -> None:
    await put_campaign(stocked, "paused", status="paused")
    await put_campaign(stocked, "live")
    await view(stocked, "sku-1")
    params = {"pub": "news1", "size": "300x250", "debug": "1"}
    denied = await stocked.get("/ad.json", params=params, headers=auth())
    assert denied.status == 403
    response = await stocked.get("/ad.json", params=params, headers=auth(OPERATOR_TOKEN))
    explained = (await response.json())["explanation"]
    considered = {c["campaign"]: c for c in explained["campaigns"]}
    assert considered["paused"]["skipped"] == "campaign is paused"
    assert considered["live"]["candidates"]["recent"] == ["sku-1"]
    assert considered["live"]["audiences"] == ["viewers"]
    assert explained["winner"]["campaign"] == "live"


async def click_first_product(client: TestClient[Any, Any]) -> None:
    served = await ad(client)
    assert served is not None
    response = await client.get(
        urlsplit(served["products"][0]["click_url"]).path, allow_redirects=False
    )
    assert response.status == 302
    await counted(client)


async def report(client: TestClient[Any, Any], by: str, token: str = SHOP_TOKEN) -> Any:
    response = await client.get(REPORT, params={"by": by}, headers=auth(token))
    assert response.status == 200, await response.text()
    return (await response.json())["rows"]


async def test_purchase_after_a_click_is_a_conversion_counted_once(
    stocked: TestClient[Any, Any],
) -> None:
    await put_campaign(stocked, "c1")
    await view(stocked, "sku-1")
    await click_first_product(stocked)
    purchase = {"a": SHOP, "e": "purchase", "i": "sku-1", "o": "o-9", "v": "49.90", "cur": "EUR"}
    await stocked.get("/px", params=purchase)
    await stocked.get("/px", params=purchase)  # the thank-you page reloaded
    uid = stocked.session.cookie_jar.filter_cookies(stocked.make_url("/"))["uid"].value
    postback = await stocked.post(
        f"/api/v1/advertisers/{SHOP}/conversions",
        headers=auth(),
        json={
            "uid": uid,
            "order": "o-9",
            "revenue": "49.90",
            "currency": "EUR",
            "items": ["sku-1"],
        },
    )
    assert postback.status == 200  # the server-side confirmation of the same order
    rows = await report(stocked, "campaign")
    assert rows == [
        {
            "campaign": "c1",
            "impressions": 1,
            "clicks": 1,
            "ctr": 100.0,
            "conversions": 1,
            "revenue": "49.90",
            "rendered": 0,
        }
    ]


async def test_postback_attributes_a_server_side_order(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-1")
    await ad(stocked)  # an impression: the view window (1 day) applies
    uid = stocked.session.cookie_jar.filter_cookies(stocked.make_url("/"))["uid"].value
    response = await stocked.post(
        f"/api/v1/advertisers/{SHOP}/conversions",
        headers=auth(),
        json={"uid": uid, "order": "srv-1", "revenue": 10, "currency": "EUR", "items": ["x"]},
    )
    assert await response.json() == {
        "order": "srv-1",
        "attributed": True,
        "touch": "view",
        "campaign": "default",
    }
    bad = await stocked.post(
        f"/api/v1/advertisers/{SHOP}/conversions", headers=auth(), json={"order": "x"}
    )
    assert bad.status == 400


async def test_reports_group_by_every_dimension_and_export_csv(
    stocked: TestClient[Any, Any],
) -> None:
    await view(stocked, "sku-1")
    await ad(stocked)
    await ad(stocked, size="728x90", pub="blog2")
    assert [r["size"] for r in await report(stocked, "size")] == ["300x250", "728x90"]
    assert [r["publisher"] for r in await report(stocked, "publisher")] == ["blog2", "news1"]
    assert [r["strategy"] for r in await report(stocked, "strategy")] == ["recent"]
    days = await report(stocked, "day")
    assert len(days) == 7 and days[-1]["impressions"] == 2
    response = await stocked.get(REPORT, params={"by": "size", "format": "csv"}, headers=auth())
    assert response.content_type == "text/csv"
    lines = (await response.text()).splitlines()
    assert lines[0] == "size,impressions,clicks,ctr,conversions,revenue,rendered"
    assert lines[1].startswith("300x250,1,0,")
    bad = await stocked.get(REPORT, params={"by": "colour"}, headers=auth())
    assert bad.status == 400


async def test_an_advertiser_sees_only_its_own_report(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-1")
    await ad(stocked)
    assert (await stocked.get(REPORT, headers=auth(OTHER_TOKEN))).status == 403
    response = await stocked.get(
        f"/api/v1/advertisers/{OTHER_SHOP}/report",
        params={"by": "campaign"},
        headers=auth(OTHER_TOKEN),
    )
    assert (await response.json())["rows"] == []


async def test_report_page_is_served(client: TestClient[Any, Any]) -> None:
    response = await client.get("/report")
    assert response.status == 200 and response.content_type == "text/html"


@pytest.fixture
async def geo_client(aiohttp_client: Any, settings: Settings, tmp_path: Path) -> Any:
    database = write_db(tmp_path / "country.mmdb")
    geo_settings = replace(settings, geoip_db=database, trusted_proxies=("127.0.0.1",))
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client = await aiohttp_client(
        create_app(geo_settings), server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    await put_catalog(client, [product_row("sku-1")])
    return client


async def test_country_targeting_uses_the_client_ip_behind_a_trusted_proxy(
    geo_client: TestClient[Any, Any],
) -> None:
    await put_campaign(geo_client, "uk-only", where={"countries": ["GB"]})
    await view(geo_client, "sku-1")
    params = {"pub": "news1", "size": "300x250"}
    british = await geo_client.get(
        "/ad.json", params=params, headers={"X-Forwarded-For": "81.2.69.160"}
    )
    assert british.status == 200
    chinese = await geo_client.get(
        "/ad.json", params=params, headers={"X-Forwarded-For": "175.16.199.1"}
    )
    assert chinese.status == 204
    unknown = await geo_client.get("/ad.json", params=params)  # loopback: no country
    assert unknown.status == 204
