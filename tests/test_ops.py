"""Operations: health, readiness, metrics."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.runtime.embedded_redis import free_port
from tests.conftest import BROWSER, SHOP


async def test_health_and_readiness(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["redis"] == "ok"


async def test_readiness_fails_when_redis_is_unreachable(
    aiohttp_client: Any, settings: Settings
) -> None:
    from dataclasses import replace

    dead = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(dead), headers=BROWSER)
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["redis"] == "unreachable"


async def test_redis_down_pixel_still_answers_and_ads_do_not_fail(
    aiohttp_client: Any, settings: Settings
) -> None:
    from dataclasses import replace

    dead = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(dead), headers=BROWSER)
    response = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    assert response.status == 200 and response.content_type == "image/gif"
    response = await client.get("/ad.json", params={"pub": "p", "size": "300x250"})
    assert response.status == 204
    metrics = await (await client.get("/metrics")).text()
    assert "kaeru_events_buffered_total 1.0" in metrics  # kept for replay, not lost
    ready = await (await client.get("/readyz")).json()
    assert ready == {
        "status": "degraded",
        "redis": "unreachable",
        "buffered_events": 1,
        "buffered_impressions": 0,  # no ad was served
        "buffered_clicks": 0,
    }


async def test_metrics_count_requests_events_and_rejects(client: TestClient[Any, Any]) -> None:
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    await client.get("/px", params={"a": "nobody", "e": "view", "i": "sku-1"})
    await client.get("/ad.json", params={"pub": "p", "size": "9x9"})
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert 'kaeru_http_requests_total{route="/px",status="200"} 2.0' in text
    assert 'kaeru_events_stored_total{event="view"} 1.0' in text
    assert 'kaeru_tracking_rejects_total{reason="unknown_advertiser"} 1.0' in text
    assert 'kaeru_bad_requests_total{reason="unknown_size",route="ad"} 1.0' in text
    assert 'kaeru_http_request_seconds_bucket{le="0.005",route="/ad.json"}' in text
