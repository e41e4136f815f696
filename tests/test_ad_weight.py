"""What an ad weighs (issue 15): the creative links the shared stylesheet, cached a year;
`/ad` answers a few hundred bytes more than its products' links; `/ad.json` leaves the HTML
out unless asked; the ad's answers are gzip-compressed for clients that take it."""

from __future__ import annotations

import asyncio
import gzip
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.demo.catalog import demo_catalog
from adserver.http.app_keys import RENDERER
from tests.conftest import BROWSER, SHOP, learn_all, put_catalog
from tests.test_edge_http import metric

AD = {"pub": "news1", "size": "300x250"}
IDENTITY = {"Accept-Encoding": "identity"}
BUDGET = 1536  # bytes on the wire for /ad 300x250 with its products (issue 15: 1.5 KB)
# The yardstick is 300x250 with 3 products; the manifest's 300x250 shows 2, so the
# creative of the same width showing 3 (300x600) stands in for it.
BUDGETED = [("300x250", None), ("300x600", 3)]


async def stock_popular(client: TestClient[Any, Any], count: int) -> list[dict[str, str]]:
    """`count` products of the demo catalog (real titles and links), made popular, and a
    client Kaeru does not know: its ad shows those products."""
    rows = demo_catalog("https://www.shop-example.com")[:count]
    await put_catalog(client, rows)
    for row in rows:
        response = await client.get("/px", params={"a": SHOP, "e": "view", "i": row["id"]})
        assert response.status == 200
    client.session.cookie_jar.clear()
    await learn_all(client)
    return rows


async def raw_answer(client: TestClient[Any, Any], target: str, encoding: str) -> bytes:
    """The exact bytes of the answer to a browser's GET (no cookie)."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: ads.example.com\r\nUser-Agent: {BROWSER['User-Agent']}"
        f"\r\nAccept-Encoding: {encoding}\r\nConnection: close\r\n\r\n".encode()
    )
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    return raw


@pytest.mark.parametrize(("size", "count"), BUDGETED)
async def test_ad_300x250_with_its_products_fits_in_one_and_a_half_kb(
    client: TestClient[Any, Any], size: str, count: int | None
) -> None:
    limit = client.app[RENDERER].formats[size].max_products
    assert count is None or count <= limit
    rows = await stock_popular(client, count or limit)

    raw = await raw_answer(client, f"/ad?pub=news1&size={size}", "gzip, deflate, br")

    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    html = gzip.decompress(body).decode()
    assert all(row["title"] in html for row in rows)
    assert len(raw) <= BUDGET, f"{len(raw)} bytes on the wire"


async def test_ad_links_are_paths_on_kaeru_and_the_stylesheet_loads(
    client: TestClient[Any, Any],
) -> None:
    await stock_popular(client, 2)

    response = await client.get("/ad", params=AD)
    html = await response.text()

    assert "Content-Encoding" in response.headers  # the test client takes gzip
    assert re.findall(r'href="/c/[^"]+"', html) and 'src="/i/' in html
    href = re.search(r'<link rel=stylesheet href="(/static/creative\.\w+\.css)">', html)
    assert href is not None
    sheet = await client.get(href[1])
    assert sheet.status == 200 and sheet.content_type == "text/css"
    assert sheet.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert ".a{" in await sheet.text()
    assert sheet.headers["Content-Encoding"] == "gzip" and sheet.headers["ETag"].endswith('-gzip"')
    again = await client.get(href[1], headers={"If-None-Match": sheet.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""
    plain = await client.get(href[1], headers=IDENTITY)
    assert plain.headers["ETag"] != sheet.headers["ETag"] and ".a{" in await plain.text()


async def test_csp_lets_the_creative_load_its_own_stylesheet_only(
    client: TestClient[Any, Any],
) -> None:
    await stock_popular(client, 1)

    csp = (await client.get("/ad", params=AD)).headers["Content-Security-Policy"]

    assert "style-src 'self' 'unsafe-inline'" in csp and "default-src 'none'" in csp


async def test_a_stylesheet_of_another_version_is_todays_kept_briefly(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/static/creative.0123456789ab.css")

    assert response.status == 200 and response.headers["Cache-Control"] == "public, max-age=300"
    sheet = client.app[RENDERER].stylesheet
    assert sheet is not None and await response.read() == sheet.body


async def test_without_gzip_the_answers_are_plain(client: TestClient[Any, Any]) -> None:
    await stock_popular(client, 1)

    for path in ("/ad", "/ad.json"):
        response = await client.get(path, params=AD, headers=IDENTITY)
        assert response.status == 200 and "Content-Encoding" not in response.headers, path
    sheet = client.app[RENDERER].stylesheet
    assert sheet is not None
    response = await client.get(sheet.path, headers=IDENTITY)
    assert "Content-Encoding" not in response.headers
    assert response.headers["Vary"] == "Accept-Encoding"


async def test_ad_json_leaves_the_html_out_unless_asked(client: TestClient[Any, Any]) -> None:
    rows = await stock_popular(client, 2)

    plain = await (await client.get("/ad.json", params=AD)).json()
    with_html = await (await client.get("/ad.json", params={**AD, "html": "1"})).json()

    assert "html" not in plain and [p["id"] for p in plain["products"]]
    html = with_html["html"]
    assert all(p["click_url"] in html for p in with_html["products"])  # absolute links
    assert with_html["impression_url"] in html
    assert all(row["title"] in html for row in rows)
    base = with_html["impression_url"].split("/i/")[0]
    assert f'<link rel=stylesheet href="{base}/static/creative.' in html


async def test_ad_json_with_a_bad_html_flag_is_a_400(client: TestClient[Any, Any]) -> None:
    response = await client.get("/ad.json", params={**AD, "html": "yes"})

    assert response.status == 400 and "html" in (await response.json())["error"]
    assert await metric(client, "kaeru_bad_requests_total", reason="bad_html") == 1
