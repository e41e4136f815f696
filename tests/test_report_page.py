"""The advertiser report page (static/report.html): served as-is, self-contained, and its inline
script at least parses (under node, when node is installed)."""

import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adserver.delivery.reports import DIMENSIONS

PAGE = resources.files("adserver").joinpath("static/report.html").read_text("utf-8")
NODE = shutil.which("node")

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> Client:
    async def report_page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/report", report_page)
    return await aiohttp_client(app)


def inline_scripts(html: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", html, flags=re.S)


async def test_page_is_served(client: Client) -> None:
    resp = await client.get("/report")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert html.startswith("<!doctype html>")
    assert "<title>" in html


async def test_page_has_the_login_and_report_controls(client: Client) -> None:
    html = await (await client.get("/report")).text()
    assert re.search(r'<input id="advertiser" name="advertiser" type="text"', html)
    assert re.search(r'<input id="token" name="token" type="password"', html)
    assert "Show report" in html
    assert 'id="logout"' in html
    assert re.search(r'<input id="from" name="from" type="date"', html)
    assert re.search(r'<input id="to" name="to" type="date"', html)
    for dimension in DIMENSIONS:  # every dimension the report API takes, channel too
        assert f'<option value="{dimension}">' in html
    assert "Download CSV" in html


def test_page_calls_the_report_api_with_the_bearer_token() -> None:
    (script,) = inline_scripts(PAGE)
    assert '"/api/v1/advertisers/" + encodeURIComponent(' in script
    assert '"/report?"' in script
    assert '"Bearer " + token' in script
    assert 'query.set("format", "csv")' in script
    assert '"kaeru-report-"' in script
    assert "Wrong advertiser or token" in script
    assert "sessionStorage" in script
    assert "localStorage" not in script


def test_page_is_self_contained_and_never_injects_html() -> None:
    assert not re.search(r"<script[^>]*\ssrc=", PAGE)
    assert not re.search(r"<link[^>]*\shref=", PAGE)
    assert "@import" not in PAGE
    assert not re.search(r"(?:src|href)=[\"']?(?:https?:)?//", PAGE)
    (script,) = inline_scripts(PAGE)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


@pytest.mark.skipif(NODE is None, reason="node is not installed: report.html script not parsed")
def test_inline_script_parses(tmp_path: Path) -> None:
    (script,) = inline_scripts(PAGE)
    source = tmp_path / "report.js"
    source.write_text(script, "utf-8")
    assert NODE is not None
    proc = subprocess.run(
        [NODE, "--check", str(source)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
