"""`kaeru demo --cross-site`: the shop and the partner on two sites, a fake log-in box on both.

The pages (rendered by aiohttp's test client), the command's options, and the demo as a user
runs it (`kaeru demo --cross-site`, shop on http://localhost:PORT, partner on
http://127.0.0.1:PORT) in Debian's Chromium: the partner page hashes the e-mail in the browser
exactly as Kaeru's normalisation says, and no raw e-mail ever goes to Kaeru.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adserver.cli import demo_sites
from adserver.config.settings import Settings, SettingsError
from adserver.demo.pages import PARTNER_CATEGORY, PARTNER_KEYWORDS, DemoSites, add_demo_routes
from adserver.runtime.embedded_redis import free_port

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
SITES = DemoSites(
    shop="http://localhost:8080", partner="http://127.0.0.1:8080", kaeru="http://localhost:8080"
)
CHROMIUM = Path("/usr/bin/chromium")
EMAIL = "  Reader.Shopper@Example.COM "
EMAIL_SHA256 = hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest()


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> Client:
    app = web.Application()
    add_demo_routes(app, SITES)
    return await aiohttp_client(app)


async def text(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, path
    return await response.text()


async def test_the_shop_links_the_partner_site_and_loads_kaerus_tag(client: Client) -> None:
    html = await text(client, "/demo/shop/p/sku-102")
    assert '<script async src="http://localhost:8080/tag.js"></script>' in html
    assert 'href="http://127.0.0.1:8080/demo/partner/"' in html
    assert 'href="http://localhost:8080/optout" id="optout"' in html
    assert "this.href = kaeru.optoutUrl(advertiser)" in html  # names the first-party id
    assert 'href="/demo/shop/p/sku-' in html  # its own pages stay relative
    assert '<form class="login" id="login"' in html and 'id="email"' in html
    assert 'kaeru.push(["identify", {advertiser: advertiser, email: email}]);' in html
    assert 'kaeruDemoLogin("demo-shop-email", identify);' in html


async def test_the_partner_frames_kaerus_ads_with_context_and_a_log_in_box(
    client: Client,
) -> None:
    html = await text(client, "/demo/partner/")
    slots = re.findall(r'<iframe data-src="([^"]+)"', html)
    assert len(slots) == 4 and "<iframe src=" not in html  # filled by the script, with eid=
    inline = re.findall(r'<span data-script="([^"]+)"></span>', html)
    assert len(inline) == 1 and '<script src="' not in html
    for url in [*slots, *inline]:
        parts = urlsplit(url.replace("&amp;", "&"))
        assert f"{parts.scheme}://{parts.netloc}" == SITES.kaeru
        query = parse_qs(parts.query)
        assert query["pub"] == ["demo-news"] and "eid" not in query
        assert query["kw"] == [",".join(PARTNER_KEYWORDS)] and query["cat"] == [PARTNER_CATEGORY]
    assert 'crypto.subtle.digest("SHA-256"' in html
    assert 'kaeruDemoLogin("demo-news-email", login)' in html
    assert 'href="http://localhost:8080/demo/shop/"' in html
    assert 'id="identity-note"' in html


async def test_the_landing_page_explains_the_limit_and_the_remedy(client: Client) -> None:
    html = await text(client, "/demo/")
    assert "Two sites: the limit, and the remedy" in html
    assert 'href="http://localhost:8080/demo/shop/"' in html
    assert 'href="http://127.0.0.1:8080/demo/partner/"' in html
    assert "<code>eid=</code>" in html and "<code>kclid</code>" in html


async def test_the_one_site_demo_has_no_log_in_box(aiohttp_client: ClientFactory) -> None:
    app = web.Application()
    add_demo_routes(app)
    client = await aiohttp_client(app)
    for path in ("/demo/", "/demo/shop/", "/demo/shop/p/sku-101", "/demo/partner/"):
        html = await text(client, path)
        assert 'id="login"' not in html and "kaeruDemoLogin" not in html and "eid=" not in html


def settings(**fields: Any) -> Settings:
    return Settings.from_env({}, overrides=fields)


def test_cross_site_defaults_to_localhost_and_127_0_0_1() -> None:
    sites = demo_sites(settings(port=9090), True)
    assert sites == DemoSites(
        shop="http://localhost:9090", partner="http://127.0.0.1:9090", kaeru="http://localhost:9090"
    )
    assert sites.cross_site and not DemoSites().cross_site
    assert demo_sites(settings(), False) is None


def test_cross_site_takes_the_shop_and_partner_origins() -> None:
    sites = demo_sites(
        settings(public_url="https://kaeru.test"),
        True,
        "https://Shop.test:8443/",
        "https://news.test:8443",
    )
    assert sites == DemoSites(
        shop="https://shop.test:8443", partner="https://news.test:8443", kaeru="https://kaeru.test"
    )


@pytest.mark.parametrize(
    ("cross_site", "shop", "partner", "problem"),
    [
        (True, "javascript:alert(1)", None, "--shop-url must be an http(s) origin"),
        (True, None, 'http://x.test/"><script>', "--partner-url must be an http(s) origin"),
        (True, None, "http://news.test/path", "--partner-url must be an http(s) origin"),
        (True, None, "http://localhost:9", "need different host names"),
        (False, "http://shop.test", None, "need --cross-site"),
    ],
)
def test_bad_demo_origins_are_refused(
    cross_site: bool, shop: str | None, partner: str | None, problem: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(problem)):
        demo_sites(settings(), cross_site, shop, partner)


def test_cross_site_on_a_public_address_needs_the_partner_url() -> None:
    with pytest.raises(SettingsError, match="--partner-url"):
        demo_sites(settings(host="192.0.2.10"), True)


# -- `kaeru demo --cross-site` as a user runs it -------------------------------------------------


@contextlib.contextmanager
def cross_site_demo(data_dir: Path) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("KAERU_")}
    env["KAERU_DATA_DIR"] = str(data_dir)
    log = data_dir.with_suffix(".log")
    command = [sys.executable, "-m", "adserver.cli", "demo", "--cross-site", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while "Kaeru demo is running" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield port
        assert f"partner:  http://127.0.0.1:{port}/demo/partner/" in log.read_text()
        assert f"Open http://localhost:{port}/demo/" in log.read_text()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def listed_abandoner(port: int, data_dir: Path) -> list[str]:
    """The items the demo shop's browse-abandoner audience lists for EMAIL (polled: the
    events are written in the background)."""
    token = (data_dir / "demo-token").read_text().strip()
    url = (
        f"http://127.0.0.1:{port}/api/v1/advertisers/demo-shop/audiences/browse_abandoners/"
        f"members?since=1&email_sha256={EMAIL_SHA256}"
    )
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(request, timeout=5) as answer:
            members = json.loads(answer.read())["members"]
        if members or time.monotonic() > deadline:
            return [item for member in members for item in member["items"]]
        time.sleep(0.2)


def test_in_chromium_the_partner_hashes_the_e_mail_and_kaeru_never_sees_it(
    tmp_path: Path,
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing}: .ci/run should have installed it")
        pytest.skip(missing)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with cross_site_demo(tmp_path / "data") as port, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            agent = browser.new_page().evaluate("navigator.userAgent")  # not a bot to Kaeru
            context = browser.new_context(user_agent=agent.replace("HeadlessChrome", "Chrome"))
            context.set_default_timeout(15_000)
            sent: list[str] = []
            context.on("request", lambda r: sent.append(f"{r.url} {r.post_data or ''}"))

            shop = context.new_page()
            shop.goto(f"http://localhost:{port}/demo/shop/p/sku-101")
            shop.fill("#email", EMAIL)
            shop.click("#log-in")
            shop.locator("#who").filter(has_text="Logged in as").wait_for()
            shop.reload()  # kept in the shop's own storage: still logged in
            assert shop.locator("#who").inner_text() == f"Logged in as {EMAIL.strip()}"
            # The shop's server signed the hash for identify (it got only the hash), so the
            # shop's e-mail audience lists the shopper with the product viewed.
            identifies = [s for s in sent if "/e " in s and '"identify"' in s]
            assert identifies and all('"email_sig":"' in s for s in identifies), identifies
            signing = [s for s in sent if "/demo/shop/sign" in s]
            assert signing and all(
                s.endswith(f'{{"email_sha256":"{EMAIL_SHA256}"}}') for s in signing
            )
            assert listed_abandoner(port, tmp_path / "data") == ["sku-101"]

            partner = context.new_page()
            partner.goto(f"http://127.0.0.1:{port}/demo/partner/")
            assert partner.locator("#who").inner_text() == "Not logged in"  # another site
            frames = "[...document.querySelectorAll('iframe')].map(f => f.src)"
            anonymous = partner.evaluate(frames)
            assert len(anonymous) == 5 and not any("eid=" in src for src in anonymous)
            assert all(src.startswith(f"http://localhost:{port}/ad?") for src in anonymous)
            partner.fill("#email", EMAIL)
            partner.click("#log-in")
            deadline = time.monotonic() + 15
            while not all(f"&eid={EMAIL_SHA256}" in src for src in partner.evaluate(frames)):
                assert time.monotonic() < deadline, partner.evaluate(frames)
                time.sleep(0.1)
            # A new page of the partner, logged in: its ad slots carry the eid again once the
            # page's script has hashed the e-mail and the partner's server signed it.
            partner.goto(f"http://127.0.0.1:{port}/demo/partner/")
            deadline = time.monotonic() + 15
            while not (
                len(signed := partner.evaluate(frames)) == 5
                and all(f"&eid={EMAIL_SHA256}" in src for src in signed)
            ):
                assert time.monotonic() < deadline, signed
                time.sleep(0.1)
            # signed by the partner's own server (the demo), which got only the hash
            assert all("&eid_sig=" in src for src in partner.evaluate(frames))
            signing = [s for s in sent if "/demo/partner/sign" in s]
            assert signing and all(s.endswith(f'{{"eid":"{EMAIL_SHA256}"}}') for s in signing)
        finally:
            browser.close()
    address = EMAIL.strip().lower()
    assert sent and not [s for s in sent if address in s.lower() or "%40example" in s.lower()]
