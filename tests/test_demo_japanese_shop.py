"""`kaeru demo --shop ja`: the demo shop sells its Japanese catalog in JPY, and its ads on the
partner are in ja-JP (広告, ￥ prices without decimals)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.cli import _parser, demo_locales, put_demo_campaigns
from adserver.config.settings import Settings
from adserver.core.campaigns import parse_campaign
from adserver.demo.campaigns import WELCOME_CODE, WELCOME_TEXT
from adserver.demo.pages import DEMO_ADVERTISER, DEMO_SHOPS, add_demo_routes
from adserver.runtime.embedded_redis import free_port
from adserver.store import Store, StoreLimits, connect
from tests.conftest import BROWSER, counted, put_catalog

TOKEN = "demo-shop-token-0123456789"
JAPANESE = DEMO_SHOPS["ja"]


@pytest.fixture
async def demo(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """What `kaeru demo --shop ja` assembles, on loopback."""
    settings = replace(
        settings,
        advertisers={**settings.advertisers, DEMO_ADVERTISER: TOKEN},
        advertiser_locales=demo_locales(settings, JAPANESE.locale),
    )
    app = create_app(settings)
    add_demo_routes(app, catalog=JAPANESE)
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client: TestClient[Any, Any] = await aiohttp_client(
        app, server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    base = str(client.make_url("")).rstrip("/")
    await put_catalog(client, JAPANESE.feed(base), DEMO_ADVERTISER, TOKEN)
    return client


def test_the_flag_picks_the_japanese_shop() -> None:
    assert _parser().parse_args(["demo", "--shop", "ja"]).shop == "ja"
    assert _parser().parse_args(["demo"]).shop == "en"
    assert demo_locales(Settings(), "ja-JP") == {DEMO_ADVERTISER: "ja-JP"}
    given = Settings(advertiser_locales={DEMO_ADVERTISER: "de-DE"})
    assert demo_locales(given, "ja-JP") == {DEMO_ADVERTISER: "de-DE"}  # the operator's wins


async def test_the_japanese_shop_shows_yen_and_its_ad_speaks_japanese(
    demo: TestClient[Any, Any],
) -> None:
    page = await (await demo.get("/demo/shop/p/sku-102")).text()
    assert "アルパイン 40L バックパック" in page and "￥14,800" in page and "￥17,800" in page

    await demo.get("/px", params={"a": DEMO_ADVERTISER, "e": "view", "i": "sku-102"})
    response = await demo.get("/ad", params={"pub": "demo-news", "size": "300x250"})
    html = await response.text()
    await counted(demo)

    assert response.status == 200
    assert ">広告</span>" in html and "<html lang=ja-JP>" in html
    assert "アルパイン 40L バックパック" in html
    prices = re.findall(r"￥[0-9,.]+", html)
    assert "￥14,800" in prices and "￥17,800" in prices
    assert not [p for p in prices if "." in p], prices  # JPY has no decimals


async def test_each_start_puts_the_demo_campaigns_in_the_shops_language(redis_url: str) -> None:
    """An English demo, then `--shop ja` on the same Redis: the offer is in Japanese; a
    campaign of the shop's own is left alone."""
    store = Store(connect(redis_url), StoreLimits())
    try:
        await store.campaigns.put(DEMO_ADVERTISER, "mine", {"name": "Mine", "bid": None})
        await put_demo_campaigns(store, "en", ("300x250",))
        await put_demo_campaigns(store, "ja", ("300x250",))
        stored = await store.campaigns.load(DEMO_ADVERTISER)
    finally:
        await store.close()
    assert set(stored) == {"welcome", "everyone", "mine"}
    welcome = parse_campaign(DEMO_ADVERTISER, "welcome", stored["welcome"], ("300x250",))
    assert not isinstance(welcome, list) and welcome.offer is not None
    assert (welcome.offer.text, welcome.offer.code) == (WELCOME_TEXT["ja"], WELCOME_CODE)
    assert welcome.who.exclude == ("past_buyers",)
    assert stored["mine"] == {"name": "Mine", "bid": None}
