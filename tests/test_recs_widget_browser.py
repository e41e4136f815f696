"""`recs.js` on the demo shop in a real headless Chromium (as tests/test_browser.py launches
it): the product page's placement is fetched only when scrolled near, renders related products
as a list with alt texts, and a click lands on the product with its click id and counts in the
report under publisher `onsite`."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip(
    "playwright.sync_api",
    reason="playwright not installed (pip install playwright; no browser download needed)",
)

from playwright.sync_api import Browser, BrowserContext, Request  # noqa: E402  (after the skip)

from tests.test_browser import (  # noqa: E402  (skips when Chromium is missing)
    PRODUCT_PAGE,
    TITLES,
    browser,
    context,
    demo_env,
    poll,
    running_demo,
    view,
)

__all__ = ["browser", "context"]  # the fixtures, shared with tests/test_browser.py
VIEWPORT = {"width": 1280, "height": 500}
NEAR_PX = 200  # recs.js's rootMargin: fetched this close to the viewport


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`kaeru demo` and its data directory (where its advertiser token is kept)."""
    data_dir = tmp_path_factory.mktemp("recs-demo")
    with running_demo(data_dir, demo_env(data_dir)) as url:
        yield url, data_dir


def onsite_clicks(base: str, data_dir: Path) -> int:
    token = (data_dir / "demo-token").read_text().strip()
    request = urllib.request.Request(
        f"{base}/api/v1/advertisers/demo-shop/report?by=publisher",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        rows: list[dict[str, Any]] = json.loads(response.read())["rows"]
    return sum(int(row["clicks"]) for row in rows if row["publisher"] == "onsite")


def test_product_page_recommendations_render_lazily_and_a_click_counts_onsite(
    context: BrowserContext, demo: tuple[str, Path]
) -> None:
    base, data_dir = demo
    page = context.new_page()
    page.set_viewport_size(VIEWPORT)
    asked: list[str] = []

    def record(request: Request) -> None:
        if urlsplit(request.url).path == "/recs.json":
            asked.append(request.url)

    page.on("request", record)
    view(page, base, "sku-108")
    widget = page.locator("#recs-product")
    box = widget.bounding_box()
    assert box is not None and box["y"] > VIEWPORT["height"] + NEAR_PX, box
    page.wait_for_function("() => window.kaeruRecsLoaded === true")
    assert widget.get_attribute("data-kaeru-state") is None  # not fetched: far below
    assert not [u for u in asked if parse_qs(urlsplit(u).query)["placement"] == ["product"]]

    widget.scroll_into_view_if_needed()
    poll(
        lambda: widget.get_attribute("data-kaeru-state"),
        lambda state: state not in (None, "loading"),
        "the placement fetched once scrolled near",
    )
    assert widget.get_attribute("data-kaeru-state") == "rendered", asked
    query = parse_qs(urlsplit(asked[-1]).query) if asked else {}
    assert any(parse_qs(urlsplit(u).query).get("placement") == ["product"] for u in asked)
    assert query.get("a") == ["demo-shop"]

    items = widget.locator("ul[aria-label='Viewed with it'] > li")
    count = items.count()
    assert 1 <= count <= 4
    shown = []
    for n in range(count):
        item = items.nth(n)
        title = item.locator(".kaeru-recs-title").inner_text()
        assert item.locator("img").get_attribute("alt") == title
        assert title in TITLES.values() and title != TITLES["sku-108"]
        href = item.locator("a").get_attribute("href") or ""
        assert href.startswith(f"{base}/c/"), href
        shown.append(title)
    assert len(set(shown)) == count

    before = onsite_clicks(base, data_dir)
    first = items.first
    title = first.locator(".kaeru-recs-title").inner_text()
    with page.expect_response(PRODUCT_PAGE):
        first.locator("a").click()
    page.wait_for_url(PRODUCT_PAGE)
    match = PRODUCT_PAGE.search(page.url)
    assert match is not None and TITLES[match[1]] == title, page.url
    assert match[2] is not None and match[2].startswith("?kclid="), page.url
    assert page.locator("h1").inner_text() == title
    poll(lambda: onsite_clicks(base, data_dir), lambda n: n == before + 1, "onsite click counted")


SHOP_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title>
<script async src="/recs.js"></script></head><body>
<template id="kaeru-recs-template"><a data-kaeru-field="link" class="mine">
  <img data-kaeru-field="image"><b data-kaeru-field="title"></b> <i data-kaeru-field="price"></i>
</a></template>
<div style="margin-top: 3000px" id="w" data-kaeru-recs="product" data-advertiser="demo-shop"
     data-item="sku-108" data-n="2"></div>
</body></html>"""


def test_a_shops_template_is_used_and_without_intersection_observer_it_loads_at_once(
    context: BrowserContext, demo: tuple[str, Path]
) -> None:
    base, _ = demo
    page = context.new_page()
    page.set_viewport_size(VIEWPORT)
    page.add_init_script("delete window.IntersectionObserver;")
    page.route(
        f"{base}/a-shop-page",
        lambda route: route.fulfill(status=200, content_type="text/html", body=SHOP_PAGE),
    )
    page.goto(f"{base}/a-shop-page")
    widget = page.locator("#w")
    poll(
        lambda: widget.get_attribute("data-kaeru-state"),
        lambda state: state not in (None, "loading"),
        "the placement fetched without scrolling (no IntersectionObserver)",
    )
    assert widget.get_attribute("data-kaeru-state") == "rendered"
    items = widget.locator("ul > li")
    assert 1 <= items.count() <= 2
    titles = [items.nth(n).locator("b").inner_text() for n in range(items.count())]
    assert TITLES["sku-107"] in titles  # same category, one step pricier
    first = items.first
    assert (first.locator("a.mine").get_attribute("href") or "").startswith(f"{base}/c/")
    assert first.locator("img").get_attribute("alt") == titles[0]
    assert first.locator("i").inner_text().startswith("€")
    assert first.locator(".kaeru-recs-title").count() == 0  # the default markup is not used


def onsite_impressions(base: str, data_dir: Path) -> int:
    token = (data_dir / "demo-token").read_text().strip()
    request = urllib.request.Request(
        f"{base}/api/v1/advertisers/demo-shop/report?by=channel",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        rows: list[dict[str, Any]] = json.loads(response.read())["rows"]
    return sum(int(row["impressions"]) for row in rows if row["channel"] == "onsite")


FAR_PAGE = SHOP_PAGE.replace("<template", "<!--").replace("</template>", "-->")


def test_a_rendered_list_counts_its_impressions_once_when_seen(
    context: BrowserContext, demo: tuple[str, Path]
) -> None:
    base, data_dir = demo
    page = context.new_page()
    page.set_viewport_size(VIEWPORT)
    beacons: list[str] = []
    page.on("request", lambda r: beacons.append(r.url) if "/recs/i/" in r.url else None)
    page.route(
        f"{base}/a-long-page",
        lambda route: route.fulfill(status=200, content_type="text/html", body=FAR_PAGE),
    )
    before = onsite_impressions(base, data_dir)
    page.goto(f"{base}/a-long-page")
    page.wait_for_function("() => window.kaeruRecsLoaded === true")
    widget = page.locator("#w")
    assert widget.get_attribute("data-kaeru-state") is None and not beacons  # far below

    widget.scroll_into_view_if_needed()  # the empty placement, at the viewport's bottom edge
    poll(
        lambda: widget.get_attribute("data-kaeru-state"),
        lambda state: state not in (None, "loading"),
        "the placement fetched once scrolled near",
    )
    assert widget.get_attribute("data-kaeru-state") == "rendered"
    box = widget.locator("ul").bounding_box()
    assert box is not None and box["y"] >= VIEWPORT["height"] - box["height"] / 2, box
    assert not beacons and widget.get_attribute("data-kaeru-seen") is None  # not seen yet
    widget.locator("ul").scroll_into_view_if_needed()
    poll(lambda: widget.get_attribute("data-kaeru-seen"), bool, "the list seen, its beacon sent")
    shown = widget.locator("ul > li").count()
    assert 1 <= shown <= 2
    poll(
        lambda: onsite_impressions(base, data_dir),
        lambda n: n == before + shown,
        "one impression per product shown",
    )
    page.evaluate("window.scrollTo(0, 0)")
    widget.scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    widget.scroll_into_view_if_needed()
    with urllib.request.urlopen(beacons[0], timeout=10) as replayed:  # a replay counts nothing
        assert replayed.headers["Content-Type"] == "image/gif"
    page.wait_for_load_state("networkidle")
    assert len(beacons) == 1, beacons
    assert onsite_impressions(base, data_dir) == before + shown


COOKIES_REFUSED = """Object.defineProperty(Document.prototype, "cookie", {
    configurable: true, get() { return ""; }, set(value) {} });"""


def done(state: str | None) -> bool:
    return state not in (None, "loading")


def test_where_cookies_are_refused_recs_js_sends_the_tags_local_storage_fpid(
    browser: Browser, demo: tuple[str, Path]
) -> None:
    base, _ = demo
    ctx = browser.new_context()
    try:
        ctx.add_init_script(COOKIES_REFUSED)
        page = ctx.new_page()
        asked: list[str] = []
        page.on(
            "request",
            lambda r: asked.append(r.url) if urlsplit(r.url).path == "/recs.json" else None,
        )
        page.goto(f"{base}/demo/shop/p/sku-108")
        page.locator("#recs-product").scroll_into_view_if_needed()
        state = page.locator("#recs-product")
        poll(lambda: state.get_attribute("data-kaeru-state"), done, "a placement fetched")
        assert asked
        kept = page.evaluate("localStorage.getItem('_kaeru_fp')")
        assert isinstance(kept, str) and len(kept) == 22  # tag.js's fallback
        assert all(parse_qs(urlsplit(u).query).get("fpid") == [kept] for u in asked), asked

        # recs.js checks the value as tag.js does: a malformed one is not sent
        bad = ctx.new_page()
        bad_asked: list[str] = []
        bad.on(
            "request",
            lambda r: bad_asked.append(r.url) if urlsplit(r.url).path == "/recs.json" else None,
        )
        bad.add_init_script("localStorage.setItem('_kaeru_fp', 'not an id<>');")
        bad.route(
            f"{base}/a-shop-page",
            lambda route: route.fulfill(status=200, content_type="text/html", body=SHOP_PAGE),
        )
        bad.goto(f"{base}/a-shop-page")
        bad.locator("#w").scroll_into_view_if_needed()
        widget = bad.locator("#w")
        poll(lambda: widget.get_attribute("data-kaeru-state"), done, "the placement fetched")
        assert bad_asked
        assert "fpid" not in parse_qs(urlsplit(bad_asked[0]).query), bad_asked
    finally:
        ctx.close()
