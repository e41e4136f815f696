"""tag.js in a real headless Chromium sends the click id it finds on the landing page's URL.

The shop page and Kaeru are routed inside Playwright (no server): the page loads the tag as
`/tag.js` serves it (`pixel.handlers.tag_source`), and the `/e` body it posts is read back.
Skips when /usr/bin/chromium or the `playwright` package is missing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pixel.handlers import tag_source

CHROMIUM = Path("/usr/bin/chromium")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright not installed")

from playwright.sync_api import Browser, Route, sync_playwright  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
SHOP_PAGE = """<!doctype html><html><body><script>
window.kaeru = window.kaeru || [];
kaeru.push(["view", {advertiser: "shop1", item: "sku-1"}]);
(function later() {  // a command after the first batch went out: a second batch
  if (!window.kaeru.kaeruLoaded) return setTimeout(later, 10);
  setTimeout(function () { kaeru.push(["cart", {advertiser: "shop1", items: ["sku-1"]}]); }, 50);
})();
</script><script async src="https://kaeru.test/tag.js"></script></body></html>"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def batches_sent(browser: Browser, landing: str, param: str = "kclid") -> list[dict[str, Any]]:
    """Open `landing` (a shop page with the tag) and return the `/e` bodies it posts: the
    first batch at once, the second (a later command) 50 ms after the tag loaded."""
    bodies: list[dict[str, Any]] = []

    def kaeru(route: Route) -> None:
        request = route.request
        if request.url.endswith("/tag.js"):
            route.fulfill(body=tag_source(param), content_type="application/javascript")
            return
        if request.url.endswith("/e"):
            bodies.append(json.loads(request.post_data or "null"))
        route.fulfill(status=204, headers={"Access-Control-Allow-Origin": "https://shop.test"})

    context = browser.new_context()
    try:
        context.route("https://kaeru.test/**", kaeru)
        context.route(
            "https://shop.test/**", lambda r: r.fulfill(body=SHOP_PAGE, content_type="text/html")
        )
        page = context.new_page()
        page.goto(landing)
        deadline = time.monotonic() + 10
        while len(bodies) < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(20)  # lets Playwright deliver the routed requests
    finally:
        context.close()
    assert len(bodies) == 2, bodies
    return bodies


def test_tag_sends_the_click_id_of_the_landing_url_once_per_page_view(browser: Browser) -> None:
    first, second = batches_sent(browser, "https://shop.test/p/sku-1?utm=x&kclid=Abc-12_z#top")
    assert first["kclid"] == "Abc-12_z"
    assert first["events"] == [{"advertiser": "shop1", "event": "view", "items": ["sku-1"]}]
    assert "kclid" not in second  # once per page view
    assert second["events"][0]["event"] == "cart"


def test_tag_sends_no_click_id_without_one_and_reads_the_configured_name(
    browser: Browser,
) -> None:
    plain, _ = batches_sent(browser, "https://shop.test/p/sku-1?utm=x")
    assert "kclid" not in plain
    named, _ = batches_sent(browser, "https://shop.test/p/sku-1?ref_id=R1&kclid=no", "ref_id")
    assert named["kclid"] == "R1"  # read under the configured name, sent as `kclid`
