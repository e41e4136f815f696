"""The demo in a real headless Chromium: shop → partner ad → click → opt-out → opt back in.

Runs `kaeru demo` as a process (embedded Redis, temporary data directory) and drives the system
Chromium (/usr/bin/chromium) with Playwright's sync API; no browser is ever downloaded. Skips
when Chromium or the `playwright` package is missing.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import pytest

from adserver.runtime.embedded_redis import free_port
from tests.conftest import poll

CHROMIUM = Path("/usr/bin/chromium")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)
pytest.importorskip(
    "playwright.sync_api",
    reason="playwright not installed (pip install playwright; no browser download needed)",
)

from playwright.sync_api import (  # noqa: E402  (after the skips)
    Browser,
    BrowserContext,
    Frame,
    Page,
    sync_playwright,
)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PUBLISHER = "demo-news"
PARTNER_SLOT = re.compile(r"/ad\?.*size=300x250&slot=(?!inline)")
PRODUCT_PAGE = re.compile(r"/demo/shop/p/(sku-\d+)(\?kclid=[A-Za-z0-9_-]+)?$")
CATALOG = Path(__file__).resolve().parent.parent / "adserver" / "demo" / "catalog.json"
TITLES: dict[str, str] = {row["id"]: row["title"] for row in json.loads(CATALOG.read_text("utf-8"))}
SLOTS = ["160x600", "300x250", "320x50", "728x90", "inline"]  # the partner page's ad slots
PERSONALISED = ("recent", "cart")
NOT_PERSONALISED = ("popular", None)  # None: 204, no fill
DEADLINE_S = 15.0
CREATIVE_TITLE = (
    ".t"  # a product's title in a creative (short names: creatives/templates/creative.css)
)
T = TypeVar("T")


# -- the demo server ----------------------------------------------------------------------------


def demo_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("KAERU_")}
    env["KAERU_DATA_DIR"] = str(data_dir)
    return env


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running_demo(data_dir: Path, env: dict[str, str], args: Sequence[str] = ()) -> Iterator[str]:
    """`kaeru demo ARGS` on a free port with `env`, until the block ends (SIGINT, then kill); yields
    http://localhost:PORT (loopback is a secure context, so the `SameSite=None; Secure` uid
    cookie is kept)."""
    port = free_port()
    log = data_dir.with_suffix(".log")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "adserver.cli", "demo", "--port", str(port), *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not ready(f"http://127.0.0.1:{port}/readyz"):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"demo not ready in 30 s:\n{log.read_text()}"
            time.sleep(0.1)
        yield f"http://localhost:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`kaeru demo`, for the whole module."""
    data_dir = tmp_path_factory.mktemp("demo")
    with running_demo(data_dir, demo_env(data_dir)) as url:
        yield url


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium announcing itself as a person's Chrome. Its own User-Agent says
    `HeadlessChrome`, which Kaeru (rightly) treats as a bot. The `--user-agent` switch, unlike
    a context's `user_agent`, also covers requests from the sandboxed iframe that `/ad.js`
    inserts (its impression beacon would otherwise be counted as a bot's)."""
    with sync_playwright() as playwright:
        probe = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        agent = str(probe.new_page().evaluate("navigator.userAgent"))
        probe.close()
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, "--user-agent=" + agent.replace("HeadlessChrome", "Chrome")],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile (cookies, storage) per test."""
    ctx = browser.new_context()
    ctx.set_default_timeout(DEADLINE_S * 1000)
    try:
        yield ctx
    finally:
        ctx.close()


# -- helpers ------------------------------------------------------------------------------------


def view(page: Page, base: str, sku: str) -> None:
    """Open a product page and wait until the shop tag's beacon (`POST /e`) is answered."""
    with page.expect_response(
        lambda r: urlsplit(r.url).path == "/e" and r.request.method == "POST"
    ) as beacon:
        page.goto(f"{base}/demo/shop/p/{sku}")
    assert beacon.value.status == 204, beacon.value.text()
    assert page.locator("h1").inner_text() == TITLES[sku]


def ad_json(page: Page, size: str = "300x250") -> tuple[str | None, list[str]]:
    """The ad the page's browser would get: (strategy or None for no fill, product ids)."""
    answer: dict[str, Any] = page.evaluate(
        """async (url) => {
            const r = await fetch(url, {credentials: "include", cache: "no-store"});
            return {status: r.status, body: r.status === 200 ? await r.json() : null};
        }""",
        f"/ad.json?pub={PUBLISHER}&size={size}",
    )
    if answer["status"] == 204:
        return None, []
    assert answer["status"] == 200, answer
    body = answer["body"]
    return body["strategy"], [p["id"] for p in body["products"]]


def wait_for_ad(
    page: Page, accept: Callable[[tuple[str | None, list[str]]], bool], what: str
) -> tuple[str | None, list[str]]:
    return poll(lambda: ad_json(page), accept, what)


def slot_titles(page: Page) -> dict[str, list[str]]:
    """Product titles per ad slot of the partner page: `/ad?…` iframes by size, and `inline`
    for the `/ad?…&slot=inline` iframe that `/ad.js` inserts."""
    titles = {}
    for frame in page.frames:
        if urlsplit(frame.url).path == "/ad":
            size = re.search(r"size=(\d+x\d+)", frame.url)
            name = "inline" if "slot=inline" in frame.url else size[1] if size else frame.url
            titles[name] = frame.locator(CREATIVE_TITLE).all_inner_texts()
    return titles


def open_partner(
    page: Page, base: str, accept: Callable[[dict[str, list[str]]], bool], what: str
) -> dict[str, list[str]]:
    """Open the partner page until its ads are as expected. A reload may be needed: under load
    an ad request that waits on Redis longer than KAERU_REDIS_DEADLINE_MS (40 ms) degrades, as
    designed, to a non-personalised ad."""

    def load() -> dict[str, list[str]]:
        page.goto(f"{base}/demo/partner/")
        return slot_titles(page)

    return poll(load, accept, what)


def partner_slot(page: Page) -> Frame:
    frame = page.frame(url=PARTNER_SLOT)
    assert frame is not None, [f.url for f in page.frames]
    return frame


def cookies(context: BrowserContext, base: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: dict(c) for c in context.cookies(base)}


# -- tests --------------------------------------------------------------------------------------


def test_shopper_journey_view_ad_click_optout_and_back(context: BrowserContext, base: str) -> None:
    page = context.new_page()
    page.goto(f"{base}/demo/shop/")
    assert page.locator("a[href$='/demo/shop/p/sku-105']").count() > 0
    view(page, base, "sku-105")
    view(page, base, "sku-102")
    wait_for_ad(
        page,
        lambda ad: ad[0] in PERSONALISED and {"sku-105", "sku-102"} <= set(ad[1]),
        "the viewed products in the ad",
    )
    uid = cookies(context, base)["uid"]
    assert (uid["secure"], uid["httpOnly"], uid["sameSite"]) == (True, True, "None")

    # The partner site's 300x250 iframe shows what was viewed, most recent first.
    viewed = [TITLES["sku-102"], TITLES["sku-105"]]
    open_partner(page, base, lambda ads: ads.get("300x250", [])[:2] == viewed, "300x250 ad")
    slot = partner_slot(page)
    wait_for_ad(page, lambda ad: ad[0] in PERSONALISED, "a personalised ad.json answer")

    # Its first product link leaves the iframe (target=_top) through the signed click redirect.
    link = slot.locator("a[href]").first
    assert link.get_attribute("target") == "_top"
    # (a path in the document since issue 15: the link as the browser resolves it)
    assert str(link.evaluate("a => a.href")).startswith(f"{base}/c/")
    with page.expect_response(PRODUCT_PAGE) as landed:
        link.click()
    page.wait_for_url(PRODUCT_PAGE)
    hop = landed.value.request.redirected_from
    assert hop is not None and urlsplit(hop.url).path.startswith("/c/"), hop
    assert (hop.response() or pytest.fail("no /c/ response")).status == 302
    match = PRODUCT_PAGE.search(page.url)
    assert match is not None and match[1] == "sku-102", page.url
    assert page.locator("h1").inner_text() == TITLES["sku-102"]
    assert len(page.frames) == 1  # the top-level page navigated, not the iframe

    # Opt out: profile forgotten, cookie set, ads no longer personalised.
    page.goto(f"{base}/optout")
    assert page.locator("h1").inner_text() == "You are opted out"
    jar = cookies(context, base)
    assert jar["optout"]["value"] == "1" and "uid" not in jar, jar
    page.goto(f"{base}/demo/partner/")
    assert ad_json(page)[0] in NOT_PERSONALISED
    view(page, base, "sku-107")  # the tag still sends; Kaeru stores nothing
    page.goto(f"{base}/demo/partner/")
    assert ad_json(page)[0] in NOT_PERSONALISED
    assert "uid" not in cookies(context, base)

    # Undo, with the opt-out page's own button (the old ?undo=1 link only shows it):
    # tracked and personalised again.
    page.goto(f"{base}/optout?undo=1")
    assert cookies(context, base)["optout"]["value"] == "1"
    page.get_by_role("button", name="Undo: allow personalised ads again").click()
    page.wait_for_url(f"{base}/optout")
    assert page.locator("h1").inner_text() == "Personalised ads are allowed again"
    assert "optout" not in cookies(context, base)
    view(page, base, "sku-104")
    wait_for_ad(
        page,
        lambda ad: ad[0] in PERSONALISED and ad[1][:1] == ["sku-104"],
        "personalised again after undo",
    )
    title = TITLES["sku-104"]
    open_partner(page, base, lambda ads: ads.get("300x250", [])[:1] == [title], "300x250 ad")


def test_iframe_and_script_ad_tags_render_the_viewed_product(
    context: BrowserContext, base: str
) -> None:
    page = context.new_page()
    view(page, base, "sku-111")
    wait_for_ad(page, lambda ad: ad[1][:1] == ["sku-111"], "the viewed product in the ad")
    # <iframe src="/ad?…">, one per size, and the /ad.js slot: each leads with the product.
    title = TITLES["sku-111"]
    open_partner(
        page,
        base,
        lambda ads: sorted(ads) == SLOTS and all(titles[:1] == [title] for titles in ads.values()),
        "every ad slot",
    )

    # <script src="/ad.js?…">: inserts a sandboxed iframe on Kaeru's /ad with the same query.
    inserted = page.locator(".ad-inline iframe")
    assert inserted.count() == 1
    src = inserted.get_attribute("src") or ""
    assert src == f"{base}/ad?pub={PUBLISHER}&size=300x250&slot=inline", src
    assert inserted.get_attribute("srcdoc") is None
    assert "allow-top-navigation-by-user-activation" in (inserted.get_attribute("sandbox") or "")
    box = inserted.bounding_box()
    assert box is not None and (box["width"], box["height"]) == (300, 250)
    creative = inserted.element_handle().content_frame()
    assert creative is not None
    # The creative's document is complete (its link laid out, nothing still loading into the
    # frame) before the click, so that the click is the user activation the sandbox asks for.
    creative.wait_for_load_state("load")
    link = creative.locator("a[href]").first
    link.wait_for(state="visible")

    # A click in the sandboxed creative may still navigate the top-level page (user activation):
    # through the click hop (/c/…, a redirect) to the product page, whose URL the page then has.
    # Waiting on the URL rather than on one response also holds when Chromium answers the landing
    # from its cache (a click over the anonymous cap lands without kclid, on a URL seen before).
    link.click()
    page.wait_for_url(PRODUCT_PAGE, timeout=30_000)
    assert urlsplit(page.url).path.endswith("/demo/shop/p/sku-111")


STYLED = """() => {
    const ad = document.querySelector(".a"), price = document.querySelector(".q");
    return ad && price && getComputedStyle(ad).borderTopColor === "rgb(221, 225, 230)"
        && getComputedStyle(ad).display === "flex" && getComputedStyle(price).fontWeight === "700";
}"""


def test_the_shared_stylesheet_styles_framed_and_sandboxed_creatives(
    context: BrowserContext, base: str
) -> None:
    """Issue 15: the look is in one stylesheet the creative links. It loads (CSP `style-src
    'self'`) in the partner's iframes and in the sandboxed frame /ad.js inserts, and the next
    page's ads, that frame's too, take it from the browser's cache: every answer for it then
    still carries the `Date` of the first, the server's clock having moved on meanwhile."""
    page = context.new_page()
    dates: list[str | None] = []

    def on_response(response: Any) -> None:
        if "/static/creative." in response.url:
            assert response.status == 200, response.url
            dates.append(response.header_value("date"))

    page.on("response", on_response)
    view(page, base, "sku-111")
    wait_for_ad(page, lambda ad: ad[1][:1] == ["sku-111"], "the viewed product in the ad")
    every_slot = lambda ads: sorted(ads) == SLOTS and all(ads.values())  # noqa: E731
    open_partner(page, base, every_slot, "every ad slot")

    frames = [f for f in page.frames if urlsplit(f.url).path == "/ad"]
    assert len(frames) == len(SLOTS)
    for frame in frames:
        frame.wait_for_load_state("load")
        assert frame.evaluate(STYLED), frame.url
    inserted = page.locator(".ad-inline iframe").element_handle().content_frame()
    assert inserted is not None and inserted.evaluate(STYLED)
    assert dates and len(set(dates)) == 1, dates
    first = dates[0]

    def server_date() -> str | None:
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            return response.headers.get("Date")

    poll(server_date, lambda date: date != first, "the server's clock past the first fetch")
    dates.clear()
    open_partner(page, base, every_slot, "every ad slot, again")
    for frame in (f for f in page.frames if urlsplit(f.url).path == "/ad"):
        frame.wait_for_load_state("load")
    assert len(dates) >= len(SLOTS) and set(dates) == {first}, dates


# -- a partner on another site ------------------------------------------------------------------


class Elsewhere(http.server.BaseHTTPRequestHandler):
    """Another site than the demo's `localhost`: pages on 127.0.0.1 (loopback too, so that
    Chromium's local-network protection lets its scripts reach the demo), set by the test."""

    pages: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = self.pages.get(self.path, "not found").encode()
        self.send_response(200 if self.path in self.pages else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def foreign_page(context: BrowserContext, elsewhere: str, path: str, body: str) -> Page:
    """A page of a partner on another site holding `body`, opened."""
    Elsewhere.pages[path] = f"<!doctype html><title>Partner</title>{body}"
    page = context.new_page()
    page.goto(elsewhere + path)
    return page


def metric(base: str, sample: str) -> float:
    """The value of one sample (`name{labels}`) on the demo's /metrics, 0 when absent."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


def clicks_counted(base: str) -> float:
    return metric(base, 'kaeru_clicks_total{outcome="counted"}')


def test_a_partner_on_another_site_cannot_read_the_ad_it_shows(
    context: BrowserContext, base: str, elsewhere: str
) -> None:
    """`/ad.js` on another site: the creative (what the shopper viewed) stays in a
    cross-origin iframe the partner's scripts cannot read, and it still renders and clicks."""
    shop = context.new_page()
    view(shop, base, "sku-108")
    # The foreign frame is third-party: without its cookie (Chromium here blocks them) the ad
    # is the shop's popular products; wait until there are some.
    poll(
        lambda: shop.evaluate(
            "async (u) => (await fetch(u, {credentials: 'omit', cache: 'no-store'})).status",
            f"/ad.json?pub={PUBLISHER}&size=300x250",
        ),
        lambda status: status == 200,
        "a non-personalised ad to fill the slot",
    )
    query = f"pub={PUBLISHER}&size=300x250&slot=foreign"
    slot = f'<div id="slot"><script src="{base}/ad.js?{query}"></script></div>'
    page = foreign_page(context, elsewhere, "/article", slot)
    inserted = page.locator("#slot iframe")
    assert inserted.get_attribute("src") == f"{base}/ad?{query}"
    creative = page.frame(url=re.compile(r"/ad\?.*slot=foreign"))
    assert creative is not None, [f.url for f in page.frames]
    poll(lambda: creative.locator(CREATIVE_TITLE).count(), lambda n: n > 0, "the ad rendered")

    # What the partner's own scripts can see of it: nothing.
    seen = page.evaluate(
        """async (src) => {
            const f = document.querySelector('#slot iframe');
            let doc = 'readable';
            try { doc = f.contentDocument === null ? null : 'readable'; }
            catch (e) { doc = 'threw'; }
            let fetched = 'readable';
            try { await (await fetch(src, {credentials: 'include'})).text(); }
            catch (e) { fetched = 'blocked'; }
            return {doc, srcdoc: f.srcdoc, page: document.documentElement.outerHTML, fetched};
        }""",
        f"{base}/ad?{query}",
    )
    assert seen["doc"] is None and seen["srcdoc"] == "" and seen["fetched"] == "blocked", seen
    titles = creative.locator(CREATIVE_TITLE).all_inner_texts()
    assert not any(title in seen["page"] for title in titles), seen["page"]
    assert "/c/" not in seen["page"]

    # The click token in the creative tells nothing either (were it ever leaked).
    link = creative.locator("a[href]").first
    href = str(link.evaluate("a => a.href"))  # resolved: a path in the document (issue 15)
    assert href.startswith(f"{base}/c/"), href
    token = href.removeprefix(f"{base}/c/")
    sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for needle in ("sku-", "popular", "recent", "cart", PUBLISHER):
        assert needle.encode() not in sealed and needle not in token, needle

    # The click still leaves through the redirect to the product page, and counts.
    before = clicks_counted(base)
    with page.expect_response(PRODUCT_PAGE):
        link.click()
    page.wait_for_url(PRODUCT_PAGE)
    poll(lambda: clicks_counted(base), lambda n: n == before + 1, "the click counted")


def test_another_site_cannot_undo_an_optout_only_the_optout_page_can(
    context: BrowserContext, base: str, elsewhere: str
) -> None:
    page = context.new_page()
    page.goto(f"{base}/optout")
    assert cookies(context, base)["optout"]["value"] == "1"

    # Another site's image, its top-level link, and its form posting to /optout.
    done = "document.body.dataset.done = 1"
    image = f'<img src="{base}/optout?undo=1" alt="" onload="{done}" onerror="{done}">'
    page = foreign_page(context, elsewhere, "/image", image)
    page.wait_for_selector("body[data-done]", state="attached")  # answered (not an image)
    page = foreign_page(context, elsewhere, "/link", f'<a href="{base}/optout?undo=1">win</a>')
    page.click("a")
    page.wait_for_url(f"{base}/optout?undo=1")
    assert cookies(context, base)["optout"]["value"] == "1"
    form = (
        f'<form method="post" action="{base}/optout"><input type="hidden" name="undo" value="1">'
        '<button type="submit">win</button></form>'
    )
    page = foreign_page(context, elsewhere, "/form", form)
    with page.expect_response(f"{base}/optout") as posted:
        page.click("button")
    assert posted.value.status == 403
    assert page.locator("h1").inner_text() == "Nothing was changed"
    # Framed, the opt-out page (and its button) does not even show.
    framing = f'<iframe src="{base}/optout?undo=1" width="600" height="400"></iframe>'
    page = foreign_page(context, elsewhere, "/frame", framing)
    framed = page.frame(url=f"{base}/optout?undo=1")
    assert framed is None or framed.locator("button").count() == 0
    assert cookies(context, base)["optout"]["value"] == "1"

    # Kaeru's own page: its button takes the opt-out back.
    page.goto(f"{base}/optout?undo=1")
    page.get_by_role("button", name="Undo: allow personalised ads again").click()
    page.wait_for_url(f"{base}/optout")
    assert page.locator("h1").inner_text() == "Personalised ads are allowed again"
    assert "optout" not in cookies(context, base)


# -- the tag when Kaeru sheds (issue 11 §3) -----------------------------------------------------


@pytest.fixture(scope="module")
def shedding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`kaeru demo` whose event buffer holds one entry (KAERU_BUFFER_EVENTS=1): with its Redis
    frozen and one pixel event on its way, `/e` sheds (503 + Retry-After). Its base URL and
    data dir (where the embedded Redis' socket is)."""
    data_dir = tmp_path_factory.mktemp("shedding")
    with running_demo(data_dir, {**demo_env(data_dir), "KAERU_BUFFER_EVENTS": "1"}) as url:
        yield url, data_dir


def redis_pid(data_dir: Path) -> int:
    import redis

    socket_path = next(data_dir.rglob("redis.sock"))
    with redis.Redis(unix_socket_path=str(socket_path)) as client:
        return int(client.info("server")["process_id"])


def fill_the_buffer(base: str, data_dir: Path) -> int:
    """Freeze the demo's Redis and send one pixel event, which then waits in the buffer: the
    next batch is shed. Returns the Redis pid (SIGCONT it)."""
    pid = redis_pid(data_dir)
    os.kill(pid, signal.SIGSTOP)
    request = urllib.request.Request(
        f"{base}/px?a=demo-shop&e=view&i=sku-101", headers={"User-Agent": BROWSER_AGENT}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return pid


def shed_batches(base: str) -> float:
    return metric(base, 'kaeru_events_shed_total{endpoint="e"}')


BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0.0.0 Safari/537.36"
KEPT = "localStorage.getItem('kaeru:retry')"


def pumping_poll(page: Page, probe: Callable[[], T], accept: Callable[[T], bool], what: str) -> T:
    """`poll` that lets the page run meanwhile."""
    deadline = time.monotonic() + DEADLINE_S
    while not accept(value := probe()):
        assert time.monotonic() < deadline, f"{what}: still {value!r} after {DEADLINE_S}s"
        page.wait_for_timeout(100)
    return value


def test_the_tag_sends_a_shed_batch_again_after_retry_after(
    context: BrowserContext, shedding: tuple[str, Path]
) -> None:
    base, data_dir = shedding
    page = context.new_page()
    shed_before = shed_batches(base)
    pid = fill_the_buffer(base, data_dir)
    try:
        page.goto(f"{base}/demo/shop/p/sku-103")
        kept = pumping_poll(page, lambda: page.evaluate(KEPT), bool, "the tag keeps the batch")
        assert "sku-103" in kept
        assert shed_batches(base) == shed_before + 1  # Kaeru refused it: 503
    finally:
        os.kill(pid, signal.SIGCONT)
    pumping_poll(page, lambda: page.evaluate(KEPT), lambda k: k is None, "sent again")
    wait_for_ad(page, lambda ad: "sku-103" in ad[1], "the retried view in the shopper's ad")


def test_a_batch_shed_on_one_page_is_sent_from_the_next(
    context: BrowserContext, shedding: tuple[str, Path]
) -> None:
    """The shopper leaves the page before Retry-After: the tag kept the batch in the shop's
    localStorage, and the next page of the shop sends it."""
    base, data_dir = shedding
    page = context.new_page()
    pid = fill_the_buffer(base, data_dir)
    try:
        page.goto(f"{base}/demo/shop/p/sku-104")
        pumping_poll(page, lambda: page.evaluate(KEPT), bool, "the tag keeps the batch")
    finally:
        os.kill(pid, signal.SIGCONT)
    page.goto(f"{base}/demo/shop/p/sku-106")
    pumping_poll(page, lambda: page.evaluate(KEPT), lambda k: k is None, "sent from page 2")
    wait_for_ad(page, lambda ad: {"sku-104", "sku-106"} <= set(ad[1]), "both views in the ad")
