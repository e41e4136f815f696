"""Local creatives in the system Chromium: in every size, Japanese (a Japanese catalog), German
and French (their longer labels), each with a campaign offer, the text stays inside its box
(no title running out sideways; prices, calls to action and the offer inside their product
and the creative) and the ad label hides none of it; Japanese is drawn in a Japanese font.
Needs one (`fonts-ipafont-gothic`, which .ci/run installs on CI).

    .venv/bin/python -m tests.test_creative_locale_look OUT_DIR

writes the screenshots, to look at them."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from adserver.core.product import format_price
from adserver.demo.picture import product_picture
from creatives.renderer import CreativeOffer, CreativeProduct, CreativeRenderer
from tests.creative_screens import ADVERTISER as ENGLISH_ADVERTISER
from tests.creative_screens import CHROMIUM, CHROMIUM_ARGS, cases, sample_products, serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ADVERTISER = "北欧インテリアとキッチン雑貨の店"
OFFER = CreativeOffer("初回のご注文は全品10%オフ、送料無料でお届けします", "WELCOME-10")
_CATALOG = (
    ("jp-1", "北欧デザインのウールブランケット（ライトグレー）", "ノルド", "15800", "12800"),
    ("jp-2", "ステンレス製電気ケトル 1.0L「しずく」", "カマド", "6980", ""),
    ("jp-3", "天然木のカッティングボード、オーク材・大サイズ", "", "4400", "3520"),
    ("jp-4", "リネンのキッチンクロス3枚セット", "Linen&Co", "2970", ""),
)
# What the test reads off each creative: boxes as [left, top, right, bottom].
MEASURE = """() => {
    const box = (e) => { const r = e.getBoundingClientRect();
                         return [r.left, r.top, r.right, r.bottom]; };
    const all = (sel) => [...document.querySelectorAll(sel)];
    return {
        ad: box(document.querySelector('.a')),
        badge: box(document.querySelector('.g')),
        products: all('.p').map((p) => ({
            box: box(p),
            parts: [...p.querySelectorAll('.t,.q,.w,.c,.b')]
                .filter((e) => e.getClientRects().length)  // not hidden
                .map((e) => [e.className, box(e)]),
        })),
        offer: all('.ot,.oc').map((e) => [e.className, box(e)]),
        header: all('.h').map((h) => { const c = getComputedStyle(h);
            return (h.clientWidth - parseFloat(c.paddingLeft) - parseFloat(c.paddingRight))
                / h.getBoundingClientRect().width; }),
        sideways: all('.t,.h span').filter((e) => e.scrollWidth > e.clientWidth + 1)
            .map((e) => e.textContent),
    };
}"""


def japanese_fonts() -> set[str]:
    """The families fontconfig has for Japanese."""
    if shutil.which("fc-list") is None:
        return set()
    found = subprocess.run(["fc-list", ":lang=ja", "family"], capture_output=True, text=True)
    return {name.strip() for line in found.stdout.splitlines() for name in line.split(",")}


def japanese_products(count: int) -> list[CreativeProduct]:
    shown = []
    for sku, title, brand, price, sale in _CATALOG[:count]:
        svg = product_picture(sku, sku, "キッチン").encode()
        now = format_price(Decimal(sale or price), "JPY", "ja_JP")
        shown.append(
            CreativeProduct(
                title=title,
                price_text=now,
                image_url="data:image/svg+xml;base64," + base64.b64encode(svg).decode(),
                click_url=f"https://ads.example/c/{sku}",
                brand=brand,
                regular_price_text=format_price(Decimal(price), "JPY", "ja_JP") if sale else "",
            )
        )
    return shown


# locale -> the catalog (by product count), the advertiser's name and the offer shown
LOCALES: dict[str, tuple[Callable[[int], list[CreativeProduct]], str, CreativeOffer]] = {
    "ja-JP": (japanese_products, ADVERTISER, OFFER),
    "de-DE": (
        sample_products,
        ENGLISH_ADVERTISER,
        CreativeOffer("Gratis Versand ab 50 € – nur diese Woche", "HERBST-2024"),
    ),
    "fr-FR": (
        sample_products,
        ENGLISH_ADVERTISER,
        CreativeOffer("Livraison offerte dès 50 € cette semaine", "AUTOMNE-24"),
    ),
}


def documents(renderer: CreativeRenderer) -> dict[str, tuple[str, bytes]]:
    files: dict[str, tuple[str, bytes]] = {}
    for locale, (catalog, advertiser, offer) in LOCALES.items():
        for size, count in cases(renderer):
            html = renderer.render(
                size, catalog(count), advertiser=advertiser, locale=locale, offer=offer
            )
            files[f"/{locale}/{size}-{count}.html"] = ("text/html; charset=utf-8", html.encode())
    sheet = renderer.stylesheet
    assert sheet is not None
    files[sheet.path] = ("text/css; charset=utf-8", sheet.body)
    return files


def measured(browser: Browser, out: Path | None = None) -> dict[str, dict[str, Any]]:
    renderer = CreativeRenderer()
    found: dict[str, dict[str, Any]] = {}
    with serving(documents(renderer)) as base:
        for locale in LOCALES:
            for size, count in cases(renderer):
                fmt = renderer.formats[size]
                page = browser.new_page(
                    viewport={"width": fmt.width, "height": fmt.height}, device_scale_factor=1
                )
                page.goto(f"{base}/{locale}/{size}-{count}.html", wait_until="load")
                page.evaluate("document.fonts.ready.then(() => true)")
                found[f"{locale} {size}-{count}"] = shot = page.evaluate(MEASURE)
                shot["fonts"] = title_fonts(page)
                if out is not None:
                    shown = out / f"{locale}-{size}-{count}.png"
                    page.screenshot(path=str(shown), animations="disabled")
                page.close()
    return found


def title_fonts(page: Page) -> list[str]:
    """The fonts Chromium drew the first title with (its DevTools protocol says)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": ".t"})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    cdp.detach()
    return [str(font["familyName"]) for font in fonts if font["glyphCount"]]


def inside(inner: list[float], outer: list[float], slack: float = 0.5) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)
if not japanese_fonts():
    pytest.skip("no Japanese font (apt-get install fonts-ipafont-gothic)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright not installed")


@pytest.fixture(scope="module")
def creatives() -> Iterator[dict[str, dict[str, Any]]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield measured(chromium)
        finally:
            chromium.close()


CASES = [
    f"{locale} {size}-{count}" for locale in LOCALES for size, count in cases(CreativeRenderer())
]


@pytest.mark.parametrize("name", CASES)
def test_local_text_stays_inside_its_box(name: str, creatives: dict[str, Any]) -> None:
    shot = creatives[name]
    assert shot["sideways"] == [], f"{name}: text runs out of its line box"
    # room beside the ad label, but the header's text keeps at least half of it
    assert all(share >= 0.5 for share in shot["header"]), f"{name}: {shot['header']}"
    for product in shot["products"]:
        assert inside(product["box"], shot["ad"]), f"{name}: a product outside the creative"
        for kind, box in product["parts"]:
            assert inside(box, product["box"]), f"{name}: .{kind} cut off by its product"
            assert not overlaps(box, shot["badge"]), f"{name}: the ad label covers .{kind}"
    for kind, box in shot["offer"]:
        assert inside(box, shot["ad"]), f"{name}: the offer's .{kind} outside the creative"
        assert not overlaps(box, shot["badge"]), f"{name}: the ad label covers the offer"
    assert {kind for kind, _ in shot["offer"]} == {"ot", "oc"}, f"{name}: offer not shown"
    if name.startswith("ja-"):
        assert shot["fonts"] and set(shot["fonts"]) <= japanese_fonts(), shot["fonts"]


if __name__ == "__main__":
    from playwright.sync_api import sync_playwright

    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    target.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        own = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for name, shot in measured(own, target).items():
                print(name, shot["sideways"])
        finally:
            own.close()
