"""Requests aiohttp cannot parse, or that are too long for it: a quiet 400 (no client address,
no traceback in the log), counted; the pixel still answers its GIF where it can; an iframe
gets a document, never JSON."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.http.responses import TRANSPARENT_GIF
from tests.conftest import SHOP, stream_events

RAW_TARGETS = [
    b"/px\xff?a=shop1&e=view&i=sku-1",
    b"/px?a=shop1&e=view&i=\xff",
    b"/ad\xff?pub=news1&size=300x250",
    b"/\xe9t\xe9",
]


async def raw_request(client: TestClient[Any, Any], target: bytes) -> tuple[int, bytes, bytes]:
    """Send bytes no HTTP client library would: (status, headers, body)."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: kaeru.test\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


async def metric(client: TestClient[Any, Any], name: str, **labels: str) -> float:
    """The sum of the samples of `name` that carry `labels`."""
    text = await (await client.get("/metrics")).text()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(label in line for label in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("target", RAW_TARGETS)
async def test_raw_bytes_in_the_target_answer_a_quiet_counted_400(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture, target: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    status, _, _ = await raw_request(client, target)
    assert status == 400
    for record in caplog.records:
        message = record.getMessage()
        assert "127.0.0.1" not in message, message
        assert record.exc_info is None and record.exc_text is None, message
        assert record.levelno < logging.WARNING, message
    assert await metric(client, "kaeru_malformed_requests_total", reason="bad_target") == 1
    assert await client.get("/healthz")  # still serving


def test_a_handler_error_outside_the_middleware_logs_no_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp's own "Error handling request from ADDRESS" line, for the errors it still logs
    (a real bug worth a traceback), carries no client address."""
    from adserver.http.edge.http_log import EdgeLog
    from adserver.runtime.metrics import Metrics

    log = EdgeLog(Metrics())
    caplog.set_level(logging.DEBUG)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        log.exception("Error handling request from %s", "81.2.69.160", exc_info=exc)
    (record,) = caplog.records
    assert "81.2.69.160" not in record.getMessage() and record.exc_info is not None


@pytest.mark.parametrize("size", [9_000, 60_000])
async def test_a_pixel_query_over_8_kb_answers_the_gif_and_stores_nothing(
    client: TestClient[Any, Any], redis_url: str, size: int
) -> None:
    padding = "x" * size
    response = await client.get(f"/px?a={SHOP}&e=view&i=sku-1&pad={padding}")
    assert response.status == 200
    assert response.content_type == "image/gif" and await response.read() == TRANSPARENT_GIF
    assert "Set-Cookie" not in response.headers
    assert await stream_events(redis_url) == []
    assert await metric(client, "kaeru_tracking_rejects_total", reason="query_too_long") == 1


async def test_an_ordinary_pixel_still_counts(client: TestClient[Any, Any], redis_url: str) -> None:
    response = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    assert response.status == 200 and await response.read() == TRANSPARENT_GIF
    assert "uid=" in response.headers["Set-Cookie"]


@pytest.mark.parametrize(
    "params",
    [
        {"pub": "news1", "size": "300x25"},
        {"pub": "news1", "size": "300×250"},
        {"pub": "news1"},
        {"pub": "", "size": "300x250"},
        {"pub": "news1", "size": "300x250", "slot": "a b"},
    ],
)
async def test_a_bad_ad_request_gives_the_iframe_an_empty_document(
    client: TestClient[Any, Any], params: dict[str, str]
) -> None:
    response = await client.get("/ad", params=params)
    assert response.status == 400
    assert response.content_type == "text/html"
    assert "Content-Security-Policy" in response.headers
    html = await response.text()
    assert html.startswith("<!doctype html>") and "error" not in html and "{" not in html
    assert await metric(client, "kaeru_bad_requests_total", route="ad") == 1


async def test_ad_json_keeps_its_json_400(client: TestClient[Any, Any]) -> None:
    response = await client.get("/ad.json", params={"pub": "news1", "size": "300x25"})
    assert response.status == 400 and "sizes" in await response.json()


@pytest.mark.parametrize("target", ["/ad.json?pub=news1&size=300x250&x=", "/nowhere?x="])
async def test_other_routes_still_refuse_a_target_over_8_kb(
    client: TestClient[Any, Any], target: str
) -> None:
    response = await client.get(target + "x" * 9_000)
    assert response.status == 414
    assert await metric(client, "kaeru_malformed_requests_total", reason="target_too_long") == 1
