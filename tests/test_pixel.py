"""The shop side over HTTP: `/px`, `/e`, `/tag.js` and the uid cookie."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.http.responses import TRANSPARENT_GIF
from adserver.store import keys
from tests.conftest import SHOP, stream_events

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

CASE_FILES = sorted((Path(__file__).parent / "cases" / "pixel").glob("*.json"))
CASES = [json.loads(path.read_text()) for path in CASE_FILES]


def metric(client: TestClient[Any, Any], name: str, **labels: str) -> float:
    from adserver.http.app_keys import METRICS

    value = client.app[METRICS].registry.get_sample_value(name, labels)
    return value or 0.0


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASE_FILES])
async def test_pixel_case(
    client: TestClient[Any, Any], redis_url: str, case: dict[str, Any]
) -> None:
    response = await client.get("/px", params=case["query"])

    assert response.status == 200, case["description"]
    assert await response.read() == TRANSPARENT_GIF
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["Cache-Control"] == "no-store"
    events = await stream_events(redis_url)
    assert bool(events) == case["stored"], case["description"]
    assert ("uid" in response.cookies) == case["stored"]
    if not case["stored"]:
        assert metric(client, "kaeru_tracking_rejects_total", reason=case["reject"]) == 1


def test_gif_is_43_bytes() -> None:
    assert len(TRANSPARENT_GIF) == 43


async def test_uid_cookie_has_the_documented_attributes(client: TestClient[Any, Any]) -> None:
    response = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    header = response.headers["Set-Cookie"]
    cookie = response.cookies["uid"]
    assert len(cookie.value) == 22
    assert cookie["max-age"] == str(396 * 86400)
    assert cookie["path"] == "/"
    for attribute in ("SameSite=None", "Secure", "HttpOnly"):
        assert attribute in header


async def test_uid_is_kept_across_hits_and_refreshed(client: TestClient[Any, Any]) -> None:
    first = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    second = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})
    assert first.cookies["uid"].value == second.cookies["uid"].value


async def test_forged_uid_cookie_is_replaced(client: TestClient[Any, Any], redis_url: str) -> None:
    client.session.cookie_jar.update_cookies({"uid": "<script>{x}</script>"})
    response = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    new_uid = response.cookies["uid"].value
    assert new_uid != "<script>{x}</script>" and len(new_uid) == 22
    assert (await stream_events(redis_url))[0]["uid"] == new_uid


async def test_tag_batch_is_stored_in_order(stocked: TestClient[Any, Any], redis_url: str) -> None:
    # sku-1 is in the catalog (at 19.90): a browser-reported revenue is at most its value.
    client = stocked
    batch = {
        "events": [
            {"advertiser": SHOP, "event": "home"},
            {"advertiser": SHOP, "event": "view", "items": ["sku-1"]},
            {
                "advertiser": SHOP,
                "event": "purchase",
                "order": "o-7",
                "currency": "EUR",
                "items": [{"id": "sku-1", "price": 12.5, "quantity": 2}],
            },
        ]
    }
    response = await client.post(
        "/e", data=json.dumps(batch), headers={"Content-Type": "text/plain"}
    )
    assert response.status == 204
    events = await stream_events(redis_url)
    assert [e["event"] for e in events] == ["home", "view", "purchase"]
    assert events[2]["revenue"] == "25.0"
    assert events[2]["lines"] == [{"id": "sku-1", "price": "12.5", "quantity": 2}]


async def test_bad_events_in_a_batch_are_dropped_and_counted(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    batch = [
        {"advertiser": SHOP, "event": "view", "items": ["ok"]},
        {"advertiser": "intruder", "event": "view", "items": ["x"]},
    ]
    response = await client.post("/e", json=batch)
    assert response.status == 204
    assert [e["items"] for e in await stream_events(redis_url)] == [["ok"]]
    assert metric(client, "kaeru_tracking_rejects_total", reason="unknown_advertiser") == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"{}", 400),
        (b"[]", 400),
        (b"[1, 2]", 400),
        (b"[" + b'{"event":"home"},' * 60 + b"1]", 400),
        (b"x" * 70_000, 413),
    ],
    ids=["garbage", "no-events", "empty", "not-objects", "too-many", "too-large"],
)
async def test_malformed_batches_get_a_clear_4xx_and_store_nothing(
    client: TestClient[Any, Any], redis_url: str, body: bytes, status: int
) -> None:
    response = await client.post("/e", data=body)
    assert response.status == status
    assert "error" in await response.json()
    assert await stream_events(redis_url) == []


async def test_repeated_purchase_of_an_order_is_recorded_once(
    stocked: TestClient[Any, Any],
) -> None:
    from adserver.http.app_keys import STORE

    params = {"a": SHOP, "e": "purchase", "i": "sku-1", "o": "o-1", "v": "9", "cur": "EUR"}
    for _ in range(2):
        await stocked.get("/px", params=params)
    uid = stocked.session.cookie_jar.filter_cookies(stocked.make_url("/"))["uid"].value
    shopper = await stocked.app[STORE].load_shopper(uid)
    assert shopper.histories[0].purchased == frozenset({"sku-1"})
    orders = await stocked.app[STORE].redis.hkeys(keys.user_orders(uid, SHOP))
    assert orders == [b"o-1"]


async def test_opted_out_browser_is_not_tracked(
    client: TestClient[Any, Any], redis_url: str
) -> None:
    response = await client.get(
        "/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers={"Sec-GPC": "1"}
    )
    assert response.status == 200 and await response.read() == TRANSPARENT_GIF
    assert "uid" not in response.cookies
    assert await stream_events(redis_url) == []


async def test_tag_js_is_served_as_cacheable_javascript(client: TestClient[Any, Any]) -> None:
    response = await client.get("/tag.js")
    assert response.status == 200
    assert response.content_type == "application/javascript"
    assert "sendBeacon" in await response.text()
    assert "max-age" in response.headers["Cache-Control"]
