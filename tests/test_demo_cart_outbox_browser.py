"""The demo shop's cart and outbox pages in a real headless Chromium (as tests/test_browser.py
launches it): "Add to cart" lands on the cart page, whose `cart` placement lists products
(never the item carted, with alt texts); the outbox shows the browse-abandonment e-mail the
demo's e-mail service fetched server to server for this shopper, its products linked by
tracked links that count a click for the `email` channel."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "playwright.sync_api",
    reason="playwright not installed (pip install playwright; no browser download needed)",
)

from playwright.sync_api import BrowserContext  # noqa: E402  (after the skip)

from tests.test_browser import (  # noqa: E402  (skips when Chromium is missing)
    TITLES,
    browser,
    context,
    demo_env,
    poll,
    running_demo,
    view,
)

__all__ = ["browser", "context"]  # the fixtures, shared with tests/test_browser.py
CARTED = "sku-101"
OTHERS = ("sku-102", "sku-105")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`kaeru demo` and its data directory (where its advertiser token is kept)."""
    data_dir = tmp_path_factory.mktemp("cart-outbox-demo")
    with running_demo(data_dir, demo_env(data_dir)) as url:
        yield url, data_dir


def clicks_of(base: str, data_dir: Path, publisher: str) -> int:
    token = (data_dir / "demo-token").read_text().strip()
    request = urllib.request.Request(
        f"{base}/api/v1/advertisers/demo-shop/report?by=publisher",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        rows: list[dict[str, Any]] = json.loads(response.read())["rows"]
    return sum(int(row["clicks"]) for row in rows if row["publisher"] == publisher)


def test_add_to_cart_shows_the_cart_placement_and_the_outbox_the_e_mail(
    context: BrowserContext, demo: tuple[str, Path]
) -> None:
    base, data_dir = demo
    page = context.new_page()
    for other in OTHERS:  # a fresh shop's popular products: what a new cart is completed with
        view(page, base, other)
    view(page, base, CARTED)
    # the tag sends the cart event as the page leaves (keepalive or sendBeacon)
    page.locator("#add-to-cart").click()
    page.wait_for_url(re.compile(r"/demo/shop/cart\?sku=" + CARTED + "$"))
    assert TITLES[CARTED] in page.locator("#cart-item").inner_text()

    widget = page.locator("#recs-cart")

    def cart_state() -> str | None:
        state = widget.get_attribute("data-kaeru-state")
        if state == "empty":  # the shop's popular list is refreshed every few seconds
            page.reload()
        return state

    poll(cart_state, lambda state: state == "rendered", "the cart placement rendered")
    items = widget.locator("ul[aria-label='Complete your cart'] > li")
    count = items.count()
    assert 1 <= count <= 4
    for n in range(count):
        item = items.nth(n)
        title = item.locator(".kaeru-recs-title").inner_text()
        assert item.locator("img").get_attribute("alt") == title
        assert title in TITLES.values() and title != TITLES[CARTED]
        assert (item.locator("a").get_attribute("href") or "").startswith(f"{base}/c/")

    page.goto(f"{base}/demo/shop/outbox")
    assert "What is this?" in page.locator("main").inner_text()
    assert page.locator("#email-subject").inner_text().startswith("Still thinking it over?")
    body = page.frame_locator("#email-body")
    links = body.locator("a[href]")
    poll(links.count, lambda n: n >= 1, "the e-mail's products")
    titles = body.locator("body").inner_text()
    # the browse abandoner's e-mail: the product viewed (recently viewed) or its neighbours
    assert TITLES[CARTED] in titles, titles
    images = body.locator("img")
    for n in range(images.count()):
        assert images.nth(n).get_attribute("alt") in TITLES.values()
    hrefs = [links.nth(n).get_attribute("href") or "" for n in range(links.count())]
    assert all(h.startswith(f"{base}/c/") for h in hrefs), hrefs

    before = clicks_of(base, data_dir, "email")
    page.goto(hrefs[0])  # as the shopper's mail client would open it, in their browser
    assert "kclid=" in page.url and "/demo/shop/p/" in page.url, page.url
    poll(
        lambda: clicks_of(base, data_dir, "email"),
        lambda n: n == before + 1,
        "the e-mail click counted for publisher email",
    )
