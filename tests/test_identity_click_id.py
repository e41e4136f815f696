"""Click ids on landing URLs (`kclid`): the click redirect appends one, the landing page's tag
sends it back, the conversions postback takes it instead of a uid. Against a real Redis."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.buffering.spill_codecs import CLICKS
from adserver.config.settings import Settings
from adserver.core.product import MAX_URL
from adserver.delivery.click_ids import mint_click_id, open_click_id, with_click_id
from adserver.delivery.tokens import InvalidToken, Signer
from adserver.http.app_keys import STORE
from adserver.runtime.embedded_redis import free_port
from adserver.store import Placement
from adserver.store.ledger import Click
from tests.conftest import (
    BROWSER,
    OTHER_SHOP,
    SECRET,
    SHOP,
    SHOP_TOKEN,
    counted,
    product_row,
    put_catalog,
)

CONVERSIONS = f"/api/v1/advertisers/{SHOP}/conversions"
REPORT = f"/api/v1/advertisers/{SHOP}/report"
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}
WINDOW = 30 * 86400
LANDING = "https://shop1.example/p/sku-1?utm_source=kaeru&kclid=stale&lang=en#reviews"
BOT = {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, impression_cap_per_hour=3)  # clicks per client and hour, too


@pytest.fixture
async def shop(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    rows = [product_row(f"sku-{n}") for n in range(1, 7)]
    rows[0] = product_row("sku-1", link=LANDING)
    await put_catalog(client, rows)
    return client


async def ad(client: TestClient[Any, Any], **headers: str) -> dict[str, Any]:
    params = {"pub": "news1", "size": "300x250"}
    response = await client.get("/ad.json", params=params, headers=headers)
    assert response.status == 200, await response.text()
    served: dict[str, Any] = await response.json()
    await counted(client)
    return served


async def click(client: TestClient[Any, Any], served: dict[str, Any], **headers: str) -> str:
    """Follow the served ad's link to sku-1 (the first product otherwise): the Location."""
    products = served["products"]
    chosen = next((p for p in products if p["id"] == "sku-1"), products[0])
    path = urlsplit(chosen["click_url"]).path
    response = await client.get(path, allow_redirects=False, headers=headers)
    assert response.status == 302
    await counted(client)
    return response.headers["Location"]


def click_id_of(location: str, name: str = "kclid") -> str | None:
    values = parse_qs(urlsplit(location).query).get(name)
    assert values is None or len(values) == 1
    return values[0] if values else None


def uid_of(client: TestClient[Any, Any]) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))["uid"].value


def cookie_blocked(client: TestClient[Any, Any]) -> None:
    """The shopper's next request carries no Kaeru cookie (a browser blocking third parties)."""
    client.session.cookie_jar.clear()


async def view(client: TestClient[Any, Any], *skus: str) -> None:
    for sku in skus:
        await client.get("/px", params={"a": SHOP, "e": "view", "i": sku})


async def batch(client: TestClient[Any, Any], events: list[dict[str, Any]], **top: Any) -> None:
    response = await client.post("/e", json={"events": events, **top})
    assert response.status == 204, await response.text()


def purchase(order: str) -> dict[str, Any]:
    item = {"id": "sku-1", "price": 19.90, "quantity": 1}
    return {
        **{"advertiser": SHOP, "event": "purchase", "order": order, "items": [item]},
        **{"revenue": 19.90, "currency": "EUR"},
    }


async def by_campaign(client: TestClient[Any, Any]) -> dict[str, dict[str, Any]]:
    response = await client.get(REPORT, params={"by": "campaign"}, headers=AUTH)
    assert response.status == 200, await response.text()
    return {row["campaign"]: row for row in (await response.json())["rows"]}


async def metric(client: TestClient[Any, Any], line_start: str) -> float:
    text = await (await client.get("/metrics")).text()
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)]
    return float(values[0]) if values else 0.0


async def clicked(client: TestClient[Any, Any]) -> str:
    """A shopper views sku-1 and sku-2, is shown an ad on the partner and clicks sku-1: the
    click id on the landing URL."""
    await view(client, "sku-1", "sku-2")
    kclid = click_id_of(await click(client, await ad(client)))
    assert kclid is not None
    return kclid


# -- the redirect ---------------------------------------------------------------------------


async def test_click_redirect_carries_a_click_id_and_keeps_the_query(
    shop: TestClient[Any, Any],
) -> None:
    await view(shop, "sku-1")
    location = await click(shop, await ad(shop))
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "shop1.example", "/p/sku-1")
    query = parse_qsl(parts.query)
    assert [name for name, _ in query] == ["utm_source", "lang", "kclid"]  # stale one replaced
    assert parts.fragment == "reviews"
    opened = open_click_id(Signer(SECRET), str(click_id_of(location)), WINDOW)
    assert not isinstance(opened, InvalidToken)
    assert (opened.placement.advertiser, opened.placement.campaign) == (SHOP, "default")
    assert (opened.placement.publisher, opened.placement.size) == ("news1", "300x250")
    assert (opened.sku, opened.uid) == ("sku-1", uid_of(shop))
    assert abs(opened.at - time.time()) < 60
    assert await metric(shop, 'kaeru_click_ids_total{outcome="minted"}') == 1


async def test_click_id_of_a_shopper_kaeru_does_not_know_carries_no_uid(
    shop: TestClient[Any, Any],
) -> None:
    await view(shop, "sku-1")
    served = await ad(shop)
    cookie_blocked(shop)  # the click comes without Kaeru's cookie
    opened = open_click_id(Signer(SECRET), str(click_id_of(await click(shop, served))), WINDOW)
    assert not isinstance(opened, InvalidToken) and opened.uid == ""


async def test_bot_and_uncounted_clicks_get_no_click_id(shop: TestClient[Any, Any]) -> None:
    await view(shop, "sku-1")
    assert await click(shop, await ad(shop), **BOT) == LANDING  # as the catalog has it
    # The client's cap is 3 clicks an hour on this publisher: the 4th is redirected, uncounted.
    locations = [await click(shop, await ad(shop)) for _ in range(4)]
    assert [click_id_of(url) != "stale" for url in locations] == [True, True, True, False]
    assert locations[3] == LANDING
    assert (await by_campaign(shop))["default"]["clicks"] == 3


async def test_a_landing_url_too_long_for_a_click_id_is_redirected_without(
    client: TestClient[Any, Any],
) -> None:
    link = "https://shop1.example/p/sku-1?q=" + "a" * (MAX_URL - 60)
    await put_catalog(client, [product_row("sku-1", link=link)])
    await view(client, "sku-1")
    location = await click(client, await ad(client))
    assert location == link
    assert await metric(client, 'kaeru_click_ids_total{outcome="too_long"}') == 1
    assert (await by_campaign(client))["default"]["clicks"] == 1  # counted all the same


def test_click_id_goes_before_the_fragment_and_replaces_its_namesake() -> None:
    assert with_click_id("https://a.example/p", "kclid", "ID") == "https://a.example/p?kclid=ID"
    assert (
        with_click_id("https://a.example/p?x=1&kclid=1&kclid=2&y#f", "kclid", "ID")
        == "https://a.example/p?x=1&y&kclid=ID#f"
    )
    assert with_click_id("https://a.example/?" + "x" * MAX_URL, "kclid", "ID") is None


async def test_the_click_id_parameter_name_is_configurable_for_redirect_and_tag(
    aiohttp_client: Any, settings: Settings
) -> None:
    port = free_port()  # as tests/conftest.py's client: loopback is a secure origin
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(replace(settings, click_id_param="ref_id")),
        server_kwargs={"port": port},
        cookie_jar=jar,
        headers=BROWSER,
    )
    await put_catalog(client, [product_row("sku-1")])
    await view(client, "sku-1")
    location = await click(client, await ad(client))
    assert click_id_of(location, "ref_id") is not None and click_id_of(location) is None
    tag = await (await client.get("/tag.js")).text()
    assert 'const CLICK_ID_PARAM = "ref_id";' in tag
    assert "o.kclid = " in tag  # the wire name stays `kclid`


def test_settings_validate_the_click_id_parameter_name() -> None:
    from adserver.config.settings import SettingsError

    assert Settings.from_env({}).click_id_param == "kclid"
    assert Settings.from_env({"KAERU_CLICK_ID_PARAM": "my_click"}).click_id_param == "my_click"
    for bad in ("k-clid", "a" * 33, "kclid=1", "é"):
        with pytest.raises(SettingsError, match="KAERU_CLICK_ID_PARAM"):
            Settings.from_env({"KAERU_CLICK_ID_PARAM": bad})


# -- the tag sends it back --------------------------------------------------------------------


async def test_landing_batch_with_click_id_then_tag_purchase_is_attributed_to_the_click(
    shop: TestClient[Any, Any],
) -> None:
    kclid = await clicked(shop)
    # On the shop, Kaeru's cookie from the partner's ad is not there: a new shopper to Kaeru.
    cookie_blocked(shop)
    view_event = {"advertiser": SHOP, "event": "view", "item": "sku-1"}
    await batch(shop, [view_event], kclid=kclid)
    await batch(shop, [view_event], kclid=kclid)  # the landing page reloaded
    await batch(shop, [purchase("o-1")])
    await counted(shop)
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"], row["revenue"]) == (1, 1, "19.90")
    assert await metric(shop, 'kaeru_click_ids_total{outcome="tag_touch"}') == 2


async def test_without_the_click_id_the_same_purchase_is_not_attributed(
    shop: TestClient[Any, Any],
) -> None:
    await clicked(shop)
    cookie_blocked(shop)
    await batch(shop, [{"advertiser": SHOP, "event": "view", "item": "sku-1"}])
    await batch(shop, [purchase("o-1")])
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"]) == (1, 0)


def forgeries(kclid: str) -> dict[str, str]:
    signer = Signer(SECRET)
    placement = Placement(SHOP, "default", "news1", "popular", "300x250")
    middle = len(kclid) // 2
    return {
        "bad_signature": kclid[:middle]
        + ("A" if kclid[middle] != "A" else "B")
        + kclid[middle + 1 :],
        "forged": mint_click_id(
            Signer(b"another-secret-0123456789-0123456789"), placement, "sku-1", "", time.time()
        ),
        "expired": mint_click_id(signer, placement, "sku-1", "", time.time() - WINDOW - 3600),
        "other_advertiser": mint_click_id(
            signer, replace(placement, advertiser=OTHER_SHOP), "sku-1", "", time.time()
        ),
        "truncated": kclid[:-2],
    }


async def test_forged_altered_expired_or_foreign_click_ids_from_the_tag_change_nothing(
    shop: TestClient[Any, Any],
) -> None:
    kclid = await clicked(shop)
    for n, bad in enumerate([*forgeries(kclid).values(), "../../etc", "x" * 600, 42]):
        cookie_blocked(shop)
        await batch(shop, [{"advertiser": SHOP, "event": "view", "item": "sku-1"}], kclid=bad)
        await batch(shop, [purchase(f"o-{n}")])  # the events still go through
    await counted(shop)
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"]) == (1, 0)
    assert await metric(shop, 'kaeru_tracking_rejects_total{reason="bad_kclid"}') == 3
    assert await metric(shop, 'kaeru_click_ids_total{outcome="tag_expired"}') == 1
    assert await metric(shop, 'kaeru_click_ids_total{outcome="tag_other_advertiser"}') == 1
    assert await metric(shop, 'kaeru_click_ids_total{outcome="tag_touch"}') == 0


# -- the conversions postback -------------------------------------------------------------


async def postback(client: TestClient[Any, Any], **body: Any) -> tuple[int, Any]:
    order = {"order": "srv-1", "revenue": "49.90", "currency": "EUR", "items": ["sku-1"]}
    response = await client.post(CONVERSIONS, headers=AUTH, json={**order, **body})
    return response.status, await response.json()


async def test_postback_with_click_id_is_attributed_to_the_click_once(
    shop: TestClient[Any, Any],
) -> None:
    kclid = await clicked(shop)
    status, answer = await postback(shop, click_id=kclid)
    assert status == 200
    assert answer == {"order": "srv-1", "attributed": True, "touch": "click", "campaign": "default"}
    status, again = await postback(shop, click_id=kclid)  # the shop's server retried
    assert status == 200 and again["attributed"] is False
    row = (await by_campaign(shop))["default"]
    assert (row["clicks"], row["conversions"], row["revenue"]) == (1, 1, "49.90")
    # The click id carried the shopper's uid: the purchase is in their profile, not retargeted.
    products = [p["id"] for p in (await ad(shop))["products"]]
    assert "sku-1" not in products and "sku-2" in products


async def test_postback_with_click_id_of_an_unknown_shopper_is_attributed(
    shop: TestClient[Any, Any],
) -> None:
    await view(shop, "sku-1")
    served = await ad(shop)
    cookie_blocked(shop)
    kclid = click_id_of(await click(shop, served))
    status, answer = await postback(shop, click_id=kclid, order="srv-2")
    assert (status, answer["attributed"], answer["touch"]) == (200, True, "click")
    assert (await by_campaign(shop))["default"]["conversions"] == 1


async def test_postback_refuses_forged_altered_expired_or_foreign_click_ids(
    shop: TestClient[Any, Any],
) -> None:
    kclid = await clicked(shop)
    before = await by_campaign(shop)
    for name, bad in [*forgeries(kclid).items(), ("number", 42), ("empty", "")]:
        status, answer = await postback(shop, click_id=bad)
        assert status == 400, name
        assert "click_id" in answer["error"], name
    status, answer = await postback(shop)  # neither uid nor click_id
    assert status == 400 and "uid" in answer["error"] and "click_id" in answer["error"]
    assert await by_campaign(shop) == before


# -- underneath: the touch kept for Redis, and never an older click over a later one ---------


def test_a_click_touch_kept_for_redis_comes_back_as_a_touch() -> None:
    placement = Placement(SHOP, "default", "news1", "recent", "300x250")
    touch = Click("u1", placement, "sku-1", 1_700_000_000.5, touch_only=True)
    assert CLICKS.decode(orjson.loads(orjson.dumps(CLICKS.encode(touch)))) == touch
    before = {k: v for k, v in CLICKS.encode(touch).items() if k != "touch_only"}
    assert CLICKS.decode(before) == replace(touch, touch_only=False)  # spilled by an older Kaeru


async def test_a_reported_click_never_replaces_a_later_click_touch(
    client: TestClient[Any, Any],
) -> None:
    ledger = client.app[STORE].ledger
    placement = Placement(SHOP, "default", "news1", "recent", "300x250")
    now = time.time()
    assert await ledger.record_click_touch("u" * 22, placement, now)
    assert not await ledger.record_click_touch(
        "u" * 22, replace(placement, campaign="old"), now - 60
    )
    assert await ledger.record_click_touch("u" * 22, replace(placement, campaign="new"), now + 1)
