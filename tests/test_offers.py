"""A campaign's offer: validated with the campaign, shown (escaped) on its creatives while
valid, never once it has ended; and an advertiser's locale over HTTP (wording, prices)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.config.settings import Settings
from adserver.core.campaigns import Campaign, Offer, parse_campaign
from tests.conftest import (
    SHOP,
    SHOP_TOKEN,
    counted,
    product_row,
    put_catalog,
    refresh_catalog,
)

SIZES = ("300x250", "728x90", "160x600", "320x50", "300x600", "320x100", "970x250")
CAMPAIGNS = f"/api/v1/advertisers/{SHOP}/campaigns"
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}
HOSTILE = "<script>alert(\"x\")</script> & '10%'"
NOON = datetime(2026, 12, 2, 12, tzinfo=UTC).timestamp()


def campaign(offer: object) -> Campaign | list[str]:
    body = {"name": "Newcomers", "bid": {"type": "cpm", "amount": "2"}, "offer": offer}
    return parse_campaign(SHOP, "welcome", body, SIZES)


def test_an_offer_is_read_with_its_code_and_dates() -> None:
    parsed = campaign(
        {"text": " 10% off your first order ", "code": "WELCOME-10", "starts": "2026-12-01"}
    )
    assert isinstance(parsed, Campaign)
    assert parsed.offer == Offer("10% off your first order", "WELCOME-10", parsed.offer.starts)
    assert parsed.to_json()["offer"] == {
        "text": "10% off your first order",
        "code": "WELCOME-10",
        "starts": "2026-12-01",
        "ends": None,
    }


@pytest.mark.parametrize(
    ("offer", "problem"),
    [
        ({}, "offer.text: required"),
        ({"text": "x" * 61}, "offer.text: required, a string of 1-60"),
        ({"text": "two\nlines"}, "offer.text: must be printable"),
        ({"text": "right\u202eto left"}, "offer.text: must be printable"),
        ({"text": "zero\u200bwidth"}, "offer.text: must be printable"),
        ({"text": "ok", "code": "welcome"}, "offer.code: must be 1-20 upper-case"),
        ({"text": "ok", "code": "A" * 21}, "offer.code: must be 1-20 upper-case"),
        ({"text": "ok", "ends": "2026-13-01"}, "offer.ends: must be a date like"),
        ({"text": "ok", "starts": "2026-12-02", "ends": "2026-12-01"}, "offer.ends: 2026-12-01"),
        ({"text": "ok", "colour": "red"}, "offer.colour: unknown key"),
        ("10% off", "offer: must be an object"),
    ],
)
def test_a_bad_offer_names_its_field(offer: object, problem: str) -> None:
    problems = campaign(offer)
    assert isinstance(problems, list)
    assert any(p.startswith(problem) for p in problems), problems


def test_japanese_text_with_its_ideographic_space_is_printable() -> None:
    parsed = campaign({"text": "初回限定　全品10%オフ", "code": "HAJIME-10"})
    assert isinstance(parsed, Campaign) and parsed.offer is not None
    assert parsed.offer.text == "初回限定　全品10%オフ"


def test_an_offer_is_valid_only_between_its_dates() -> None:
    offer = Offer("x", starts=datetime(2026, 12, 1).date(), ends=datetime(2026, 12, 2).date())
    assert offer.valid_at(NOON)
    assert not offer.valid_at(NOON + 86400)  # 3 December
    assert not offer.valid_at(NOON - 2 * 86400)  # 30 November
    assert Offer("always").valid_at(NOON)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, advertiser_locales={SHOP: "ja-JP"})


async def put_offer(client: TestClient[Any, Any], offer: dict[str, Any]) -> int:
    body = {
        "name": "Newcomers",
        "who": {"exclude": ["past_buyers"]},  # shoppers with no purchase
        "bid": {"type": "cpm", "amount": "5"},
        "offer": offer,
    }
    response = await client.put(f"{CAMPAIGNS}/welcome", json=body, headers=AUTH)
    return response.status


async def ad_html(client: TestClient[Any, Any], size: str) -> str:
    response = await client.get("/ad", params={"pub": "news1", "size": size})
    assert response.status == 200
    text = await response.text()
    await counted(client)
    return text


async def stock_yen(client: TestClient[Any, Any]) -> None:
    await put_catalog(
        client,
        [
            product_row(
                "sku-1",
                title="ウールブランケット",
                price="15800",
                sale_price="12800",
                currency="JPY",
            )
        ],
    )
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})


async def test_a_valid_offer_shows_escaped_in_every_size_with_japanese_wording(
    client: TestClient[Any, Any],
) -> None:
    await stock_yen(client)
    assert await put_offer(client, {"text": HOSTILE, "code": "HELLO-10"}) == 200
    for size in SIZES:
        html = await ad_html(client, size)
        assert "<script>" not in html, size
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;10%&#39;" in html, size
        assert "コード:<b>HELLO-10</b>" in html, size
        assert ">広告</span>" in html and "<html lang=ja-JP>" in html, size
        assert "￥12,800" in html and "￥15,800" in html and "12,800.00" not in html, size
    json_ad = await client.get("/ad.json", params={"pub": "news1", "size": "300x250"})
    answer = await json_ad.json()
    assert answer["offer"] == {"text": HOSTILE, "code": "HELLO-10"}
    assert answer["products"][0]["price_text"] == "￥12,800"


async def test_an_ended_offer_is_not_shown(client: TestClient[Any, Any]) -> None:
    await stock_yen(client)
    assert await put_offer(client, {"text": "Autumn sale", "ends": "2020-01-31"}) == 200
    html = await ad_html(client, "300x250")
    assert "Autumn sale" not in html and "class=o" not in html
    assert ">広告</span>" in html  # the campaign itself still runs


async def test_a_bad_offer_is_refused_with_its_problem(client: TestClient[Any, Any]) -> None:
    body = {"name": "x", "bid": {"type": "cpm", "amount": "1"}, "offer": {"text": "a\tb"}}
    response = await client.put(f"{CAMPAIGNS}/welcome", json=body, headers=AUTH)
    assert response.status == 422
    assert "offer.text: must be printable" in (await response.text())
    assert (await client.get(f"{CAMPAIGNS}/welcome", headers=AUTH)).status == 404
    metrics = await (await client.get("/metrics")).text()
    assert 'kaeru_bad_requests_total{reason="invalid",route="campaigns"} 1.0' in metrics


def test_a_stored_offer_reads_back_the_same() -> None:
    parsed = campaign({"text": "Free shipping", "ends": "2026-12-24"})
    assert isinstance(parsed, Campaign)
    again = parse_campaign(SHOP, "welcome", parsed.to_json(), SIZES)
    assert again == parsed


async def test_shop_page_recommendations_are_priced_in_the_locale_too(
    client: TestClient[Any, Any],
) -> None:
    rows = [
        product_row("sku-1", category="毛布", price="9800", currency="JPY"),
        product_row("sku-2", category="毛布", price="15800", sale_price="12800", currency="JPY"),
    ]
    await put_catalog(client, rows)
    await refresh_catalog(client)
    params = {"a": SHOP, "placement": "product", "item": "sku-1"}
    body = await (await client.get("/recs.json", params=params)).json()
    assert [p["id"] for p in body["products"]] == ["sku-2"], body
    product = body["products"][0]
    assert (product["price_text"], product["regular_price_text"]) == ("￥12,800", "￥15,800")
