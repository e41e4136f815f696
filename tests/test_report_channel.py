"""Reports by channel (`by=channel`): ads on partner pages, recommendations on the shop's pages
(`onsite`, their impressions counted by the widget's sealed beacon) and in its e-mails
(`email`, counted when produced), against a real Redis."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings, SettingsError
from adserver.http.app_keys import METRICS
from tests.conftest import BROWSER, SHOP, counted, learn_all, product_row, put_catalog
from tests.test_campaign_api import REPORT, auth, put_campaign, view

PUB_TOKEN = "news1-token-0123456789"
EMAIL_RECS = f"/api/v1/advertisers/{SHOP}/recommendations"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, publishers={"news1": PUB_TOKEN})


@pytest.fixture
async def shop(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """shop1 selling sku-1 .. sku-6 with campaign c1 (recent items), news1 registered."""
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    await put_campaign(client, "c1", what={"strategies": ["recent"]})
    await popular(client)
    return client


async def popular(client: TestClient[Any, Any]) -> None:
    """Views the learner turns into the shop's popular products (what `home` shows anyone)."""
    await view(client, "sku-1", "sku-2", "sku-3", "sku-4")
    await learn_all(client)


async def report(client: TestClient[Any, Any], by: str = "channel") -> dict[str, dict[str, Any]]:
    await counted(client)
    response = await client.get(REPORT, params={"by": by}, headers=auth())
    assert response.status == 200, await response.text()
    return {row[by]: row for row in (await response.json())["rows"]}


async def follow(client: TestClient[Any, Any], url: str) -> None:
    response = await client.get(urlsplit(url).path, allow_redirects=False)
    assert response.status == 302, await response.text()


async def beacon(client: TestClient[Any, Any], url: str) -> None:
    response = await client.get(urlsplit(url).path)
    assert response.status == 200
    assert response.content_type == "image/gif"


async def recs(client: TestClient[Any, Any], n: int) -> dict[str, Any]:
    response = await client.get("/recs.json", params={"a": SHOP, "placement": "home", "n": n})
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    assert len(answer["products"]) == n
    return answer


def counts(row: dict[str, Any]) -> tuple[int, int, int]:
    return row["impressions"], row["clicks"], row["conversions"]


async def test_each_channel_has_its_row_with_its_impressions_clicks_and_conversions(
    shop: TestClient[Any, Any],
) -> None:
    await view(shop, "sku-1")
    served = await shop.get("/ad.json", params={"pub": "news1", "size": "300x250"})
    assert served.status == 200, await served.text()
    await follow(shop, (await served.json())["products"][0]["click_url"])

    onsite = await recs(shop, 2)
    assert "onsite" not in await report(shop)  # answered, not seen yet: not counted
    await beacon(shop, onsite["impression_url"])
    await follow(shop, onsite["products"][1]["click_url"])
    purchase = {"a": SHOP, "e": "purchase", "i": "sku-2", "o": "o-1", "v": "49.90", "cur": "EUR"}
    assert (await shop.get("/px", params=purchase)).status == 200

    params = {"uid": "A" * 22, "placement": "home", "n": "3", "format": "html"}
    email = await shop.get(EMAIL_RECS, params={**params, "format": "json"}, headers=auth())
    assert email.status == 200, await email.text()
    await follow(shop, (await email.json())["products"][0]["click_url"])

    rows = await report(shop)
    assert list(rows) == ["ads", "email", "onsite"]
    assert counts(rows["ads"]) == (1, 1, 0)
    assert counts(rows["onsite"]) == (2, 1, 1)  # the purchase after the widget's click
    assert rows["onsite"]["revenue"] == "19.90"  # priced at catalog value
    assert rows["onsite"]["ctr"] == 50.0
    assert counts(rows["email"]) == (3, 1, 0)
    html = await shop.get(EMAIL_RECS, params=params, headers=auth())
    assert html.status == 200 and html.content_type == "text/html"
    assert (await report(shop))["email"]["impressions"] == 6  # each block produced counts


async def test_a_replayed_or_forged_beacon_counts_nothing(shop: TestClient[Any, Any]) -> None:
    onsite = await recs(shop, 2)
    url = onsite["impression_url"]
    for _ in range(3):
        await beacon(shop, url)
    token = urlsplit(url).path.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    await beacon(shop, f"/recs/i/{forged}")
    await beacon(shop, "/recs/i/not-a-token")
    await view(shop, "sku-1")
    served = await shop.get("/ad.json", params={"pub": "news1", "size": "300x250"})
    ad_beacon = (await served.json())["impression_url"]  # another purpose: refused here
    await beacon(shop, f"/recs/i/{urlsplit(ad_beacon).path.rsplit('/', 1)[1]}")
    rows = await report(shop)
    assert rows["onsite"]["impressions"] == 2
    assert rows["ads"]["impressions"] == 1 and rows["ads"]["rendered"] == 0


async def test_past_the_clients_cap_an_answers_beacon_counts_nothing(
    aiohttp_client: Any, settings: Settings
) -> None:
    capped = replace(settings, impression_cap_per_hour=2)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(capped), headers=BROWSER)
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    await popular(client)
    for _ in range(5):
        await beacon(client, (await recs(client, 1))["impression_url"])
    assert (await report(client))["onsite"]["impressions"] == 2


@pytest.mark.parametrize("path", ["/ad", "/ad.js", "/ad.json"])
@pytest.mark.parametrize("publisher", ["onsite", "email"])
async def test_a_partner_page_cannot_claim_a_reserved_channel(
    shop: TestClient[Any, Any], path: str, publisher: str
) -> None:
    await view(shop, "sku-1")
    response = await shop.get(path, params={"pub": publisher, "size": "300x250"})
    assert response.status == 400
    if path != "/ad":  # the frame's 400 is an empty page: the metric names the reason
        assert "reserved" in await response.text()
    labels = {"route": "ad", "reason": "reserved_publisher"}
    assert shop.app[METRICS].registry.get_sample_value("kaeru_bad_requests_total", labels) == 1
    assert await report(shop) == {}


def test_a_reserved_channel_cannot_be_registered_as_a_publisher() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"KAERU_PUBLISHERS": "onsite:onsite-token-0123456789"})
    assert "'onsite' is reserved" in str(caught.value)


async def test_the_csv_has_the_channel_column(shop: TestClient[Any, Any]) -> None:
    await beacon(shop, (await recs(shop, 2))["impression_url"])
    await counted(shop)
    response = await shop.get(REPORT, params={"by": "channel", "format": "csv"}, headers=auth())
    assert response.status == 200 and response.content_type == "text/csv"
    table = list(csv.reader(io.StringIO(await response.text(), newline="")))
    assert table[0][:3] == ["channel", "impressions", "clicks"]
    assert table[1][:2] == ["onsite", "2"]


async def test_a_publishers_own_report_leaves_out_the_shops_channels(
    shop: TestClient[Any, Any],
) -> None:
    await view(shop, "sku-1")
    assert (await shop.get("/ad.json", params={"pub": "news1", "size": "300x250"})).status == 200
    await beacon(shop, (await recs(shop, 2))["impression_url"])
    await counted(shop)
    mine = await shop.get(
        "/api/v1/publishers/news1/report",
        params={"by": "advertiser"},
        headers={"Authorization": f"Bearer {PUB_TOKEN}"},
    )
    assert mine.status == 200
    [row] = (await mine.json())["rows"]
    assert (row["advertiser"], row["impressions"]) == (SHOP, 1)
    assert (await report(shop))["onsite"]["impressions"] == 2
