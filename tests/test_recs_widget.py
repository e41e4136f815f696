"""`GET /recs.js`: the recommendations widget is served like the shop tag (cacheable
JavaScript) and builds what it shows with DOM APIs only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

RECS_JS = Path(__file__).parents[1] / "adserver" / "recs" / "static" / "recs.js"
NODE = shutil.which("node")


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
