"""`GET /recs.js`: the recommendations widget is served like the shop tag (cacheable
JavaScript) and builds what it shows with DOM APIs only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adserver.demo.pages import add_demo_routes

RECS_JS = Path(__file__).parents[1] / "adserver" / "recs" / "static" / "recs.js"
NODE = shutil.which("node")
DEMO = 'data-advertiser="demo-shop"'


@pytest.fixture
async def demo_client(aiohttp_client: Any) -> TestClient[Any, Any]:
    app = web.Application()
    add_demo_routes(app)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def test_recs_js_is_served_cacheable_as_javascript(client: TestClient[Any, Any]) -> None:
    response = await client.get("/recs.js")
    assert response.status == 200
    assert response.content_type == "application/javascript"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = await response.text()
    assert body == RECS_JS.read_text(encoding="utf-8")
    assert "data-kaeru-recs" in body and "/recs.json?" in body


def test_recs_js_never_parses_server_data_as_html() -> None:
    source = RECS_JS.read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, sink
    assert "textContent" in source
    assert "IntersectionObserver" in source  # lazy: fetched when scrolled near


@pytest.mark.skipif(NODE is None, reason="node is not installed: recs.js not checked")
def test_recs_js_parses() -> None:
    assert NODE is not None
    checked = subprocess.run([NODE, "--check", str(RECS_JS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("path", "placement"),
    [
        ("/demo/shop/", f'data-kaeru-recs="home" {DEMO}'),
        ("/demo/shop/p/sku-102", f'data-kaeru-recs="product" {DEMO} data-item="sku-102"'),
        ("/demo/shop/p/sku-102", f'data-kaeru-recs="complements" {DEMO} data-item="sku-102"'),
        ("/demo/shop/thanks?sku=sku-101", f'data-kaeru-recs="thanks" {DEMO} data-item="sku-101"'),
        ("/demo/shop/thanks", f'data-kaeru-recs="thanks" {DEMO} data-n="4"'),
    ],
)
async def test_demo_shop_pages_show_their_placements(
    demo_client: TestClient[Any, Any], path: str, placement: str
) -> None:
    html = await (await demo_client.get(path)).text()
    assert placement in html
    assert '<script async src="/recs.js"></script>' in html
