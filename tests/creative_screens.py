"""Screenshots of every creative size in the system Chromium, for the "same look" check of
`tests/test_creative_look.py`.

    .venv/bin/python -m tests.creative_screens [--out tests/cases/creatives]

writes one PNG per case (`SIZE-N.png`: size SIZE with N products) rendered by the creative
templates of this checkout. The committed references were made this way from main's templates
at 9188b1d (before the shared stylesheet, issue 15), so the test compares today's creatives
with those. Each creative is served by a throwaway HTTP server on loopback with the headers
`/ad` sends (its CSP included), with the stylesheet it links (if any) at the path it names,
and product pictures as data: URIs (no network).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from adserver.demo.picture import product_picture
from adserver.http.responses import CREATIVE_CSP
from creatives.renderer import CreativeProduct, CreativeRenderer

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
REFERENCES = Path(__file__).resolve().parent / "cases" / "creatives"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--font-render-hinting=none"]
ADVERTISER = "Nordic Home & Garden"
_PRODUCTS = (
    ("sku-1", "Ridge 2 Trekking Tent", "Kaeru Outdoor", "€189.00", "", "Tents"),
    ("sku-2", "Alpine 40 L Backpack", "Trailmark", "€99.00", "€119.00", "Backpacks"),
    (
        "sku-3",
        "Headlamp 400 lumen, rechargeable, with red light & <strong> strap",
        "Lumo",
        "€34.50",
        "",
        "Lighting",
    ),
    ("sku-4", "Carbon trekking poles (pair)", "", "€79.90", "€89.90", "Hiking gear"),
)


def sample_products(count: int) -> list[CreativeProduct]:
    shown = []
    for sku, title, brand, price, regular, category in _PRODUCTS[:count]:
        svg = product_picture(sku, title, category).encode()
        shown.append(
            CreativeProduct(
                title=title,
                price_text=price,
                image_url="data:image/svg+xml;base64," + base64.b64encode(svg).decode(),
                click_url=f"https://ads.example/c/{sku}",
                brand=brand,
                regular_price_text=regular,
            )
        )
    return shown


def cases(renderer: CreativeRenderer) -> list[tuple[str, int]]:
    """Every size with as many products as it shows, and with one (the layouts differ)."""
    found = []
    for size, fmt in renderer.formats.items():
        found.append((size, fmt.max_products))
        if fmt.max_products > 1:
            found.append((size, 1))
    return found


def documents(renderer: CreativeRenderer) -> dict[str, tuple[str, bytes]]:
    """Path -> (content type, body): one creative per case and the stylesheet, if any."""
    files: dict[str, tuple[str, bytes]] = {}
    for size, count in cases(renderer):
        html = renderer.render(size, sample_products(count), advertiser=ADVERTISER)
        files[f"/{size}-{count}.html"] = ("text/html; charset=utf-8", html.encode())
    stylesheet = getattr(renderer, "stylesheet", None)
    if stylesheet is not None:
        files[stylesheet.path] = ("text/css; charset=utf-8", stylesheet.body)
    return files


@contextlib.contextmanager
def serving(files: Mapping[str, tuple[str, bytes]]) -> Iterator[str]:
    """The files on a loopback HTTP server until the block ends; yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            found = files.get(self.path.partition("?")[0])
            if found is None:
                self.send_error(404)
                return
            content_type, body = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if content_type.startswith("text/html"):
                self.send_header("Content-Security-Policy", CREATIVE_CSP)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def screenshots(renderer: CreativeRenderer, browser: Browser | None = None) -> dict[str, bytes]:
    """`SIZE-N` -> PNG of that creative, each in a page of exactly its size (in `browser`, or
    a Chromium launched for the purpose)."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            own = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                return screenshots(renderer, own)
            finally:
                own.close()
    shots: dict[str, bytes] = {}
    with serving(documents(renderer)) as base:
        for size, count in cases(renderer):
            fmt = renderer.formats[size]
            page = browser.new_page(
                viewport={"width": fmt.width, "height": fmt.height}, device_scale_factor=1
            )
            page.goto(f"{base}/{size}-{count}.html", wait_until="load")
            page.evaluate("document.fonts.ready.then(() => true)")
            shots[f"{size}-{count}"] = page.screenshot(animations="disabled", caret="hide")
            page.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REFERENCES)
    args = parser.parse_args(argv)
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"{CHROMIUM} not installed")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, png in screenshots(CreativeRenderer()).items():
        (args.out / f"{name}.png").write_bytes(png)
        print(f"{args.out / name}.png: {len(png)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
