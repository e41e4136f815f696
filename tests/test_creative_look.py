"""Every creative size looks as it did before the shared stylesheet (issue 15): today's
templates, rendered in the system Chromium with the stylesheet they link, against reference
screenshots made from main's templates (`tests/creative_screens.py`, `tests/cases/creatives/`).
Compared pixel by pixel in the browser itself (a canvas): no image library needed."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest

from creatives.renderer import CreativeRenderer
from tests.creative_screens import CHROMIUM, CHROMIUM_ARGS, REFERENCES, cases, screenshots

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright not installed")

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402  (after the skips)

RENDERER = CreativeRenderer()
# A channel may differ by this much (anti-aliasing), and this share of pixels by more.
CHANNEL_TOLERANCE = 24
PIXEL_SHARE_TOLERANCE = 0.002

COMPARE = """async ([a, b]) => {
    const load = (src) => new Promise((ok, fail) => {
        const img = new Image(); img.onload = () => ok(img); img.onerror = fail; img.src = src;
    });
    const [x, y] = await Promise.all([load(a), load(b)]);
    if (x.width !== y.width || x.height !== y.height)
        return {size: [x.width, x.height, y.width, y.height]};
    const pixels = (img) => {
        const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
        const g = c.getContext("2d"); g.drawImage(img, 0, 0);
        return g.getImageData(0, 0, img.width, img.height).data;
    };
    const p = pixels(x), q = pixels(y);
    let off = 0, worst = 0;
    for (let i = 0; i < p.length; i += 4) {
        const d = Math.max(Math.abs(p[i] - q[i]), Math.abs(p[i + 1] - q[i + 1]),
                           Math.abs(p[i + 2] - q[i + 2]), Math.abs(p[i + 3] - q[i + 3]));
        worst = Math.max(worst, d);
        if (d > %d) off++;
    }
    return {size: null, off: off, total: p.length / 4, worst: worst};
}""".replace("%d", str(CHANNEL_TOLERANCE))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(browser: Browser) -> dict[str, bytes]:
    return screenshots(RENDERER, browser)


@pytest.fixture(scope="module")
def page(browser: Browser) -> Page:
    return browser.new_page()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def off_share(page: Page, a: bytes, b: bytes) -> float:
    result: dict[str, Any] = page.evaluate(COMPARE, [data_url(a), data_url(b)])
    assert result["size"] is None, f"screenshot size changed: {result['size']}"
    return float(result["off"]) / float(result["total"])


def test_the_comparison_sees_a_different_look(page: Page) -> None:
    one, two = (REFERENCES / f"300x250-{n}.png" for n in (1, 2))
    assert off_share(page, one.read_bytes(), two.read_bytes()) > PIXEL_SHARE_TOLERANCE * 10


@pytest.mark.parametrize(("size", "count"), cases(RENDERER))
def test_every_size_looks_as_before(
    size: str, count: int, shots: dict[str, bytes], page: Page
) -> None:
    name = f"{size}-{count}"
    reference = REFERENCES / f"{name}.png"
    assert reference.is_file(), f"no reference for {name}: run python -m tests.creative_screens"

    share = off_share(page, reference.read_bytes(), shots[name])

    assert share <= PIXEL_SHARE_TOLERANCE, f"{name}: {share:.2%} of the pixels differ"
