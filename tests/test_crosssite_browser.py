"""Shop, partner and Kaeru on three sites, in a real Chromium that blocks third-party cookies.

`kaeru demo --cross-site` serves the shop at https://shop.test, the partner at https://news.test
and Kaeru at https://kaeru.test, all behind a real TLS-terminating nginx (a throwaway
certificate made here with `cryptography`), with `KAERU_TRUSTED_PROXIES` and `KAERU_PUBLIC_URL`
set as the README's production section says. Debian's Chromium, as it comes (a fresh profile),
blocks Kaeru's cookie on both sites: the scenario shows what carries the shopper then (the
tag's first-party id, a hashed e-mail, the click id, the page's context) and that an opt-out
on one site reaches every linked id. A second set-up serves Kaeru first-party, at
https://kaeru.shop.test with `KAERU_COOKIE_DOMAIN=shop.test`.

Each scenario step names the part of issue 13 it needs, so a missing piece fails at once with
that name instead of waiting: `pytest -s` prints the steps passed and the share of personalised
ads with and without identity.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import ipaddress
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adserver.runtime.embedded_redis import free_port
from tests.conftest import BROWSER, poll
from tests.test_edge_nginx import NGINX, nginx_in_front_of

CHROMIUM = Path("/usr/bin/chromium")
MISSING = [
    reason
    for absent, reason in (
        (not os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} not installed (apt-get install chromium)"),
        (NGINX is None, "nginx not installed (apt-get install nginx)"),
    )
    if absent
]
ON_CI = os.environ.get("CI") == "true"  # .ci/run installs both: there a missing one fails
pytestmark = pytest.mark.skipif(bool(MISSING) and not ON_CI, reason="; ".join(MISSING))


@pytest.fixture(autouse=True)
def _never_skipped_on_ci() -> None:
    if MISSING:
        pytest.fail(f"CI=true but {'; '.join(MISSING)}: .ci/run should have installed it")


sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright not installed (pip install playwright; no browser download needed)",
)

SHOP, NEWS, KAERU, KAERU_ON_SHOP = "shop.test", "news.test", "kaeru.test", "kaeru.shop.test"
NAMES = (SHOP, NEWS, KAERU, KAERU_ON_SHOP)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=" + ", ".join(f"MAP {name} 127.0.0.1" for name in NAMES),
]
ADVERTISER, PUBLISHER = "demo-shop", "demo-news"
TOKEN = "crosssite-shop-token-0123456789"
EMAIL = "  Reader.Shopper@Example.COM "
EMAIL_SHA256 = hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest()
VIEWED = ("sku-101", "sku-103")  # the tent, then the sleeping bag
PARTNER_SLOTS = 5  # the partner page's ad slots: four iframes and one /ad.js
PERSONALISED = frozenset({"cart", "recent", "related", "cross_sell", "upsell"})
NOT_PERSONALISED = frozenset({"popular", "contextual", "no fill"})
OTHERS_VIEWED = ("sku-110", "sku-112")  # what other shoppers viewed: the shop's popular items
DEADLINE_S = 15.0
CREATIVE_TITLE = (
    ".t"  # a product's title in a creative (short names: creatives/templates/creative.css)
)
CATALOG = Path(__file__).resolve().parent.parent / "adserver" / "demo" / "catalog.json"
TITLES: dict[str, str] = {row["id"]: row["title"] for row in orjson.loads(CATALOG.read_bytes())}
T = TypeVar("T")


# -- the sites ----------------------------------------------------------------------------------


def _certificate(directory: Path) -> Path:
    """A throwaway self-signed certificate for every name here (and 127.0.0.1), written as
    nginx's cert.pem and key.pem; returns the certificate (a CA file for the test's clients)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SHOP)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in NAMES]
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path = directory / "cert.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass
class Sites:
    """One `kaeru demo --cross-site` behind nginx: every name above on https://NAME:port."""

    port: int
    upstream: str  # Kaeru itself, straight (for /metrics)
    cafile: Path
    log: Path
    kaeru_name: str

    def origin(self, name: str) -> str:
        return f"https://{name}:{self.port}"

    @property
    def shop(self) -> str:
        return self.origin(SHOP)

    @property
    def news(self) -> str:
        return self.origin(NEWS)

    @property
    def kaeru(self) -> str:
        return self.origin(self.kaeru_name)

    def api(self, method: str, target: str, body: object = None) -> tuple[int, Any]:
        """The shop's server calling Kaeru's admin API at https://KAERU (through nginx)."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, timeout=10
        )
        headers = {"Host": f"{self.kaeru_name}:{self.port}", "Authorization": f"Bearer {TOKEN}"}
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            return response.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return response.status, raw.decode(errors="replace")

    def strategies(self) -> dict[str, float]:
        """Kaeru's ads served so far by strategy of the lead product, and no fills as None."""
        with urllib.request.urlopen(f"{self.upstream}/metrics", timeout=10) as response:
            text = response.read().decode()
        counts = {
            found[1]: float(found[2])
            for found in re.finditer(
                r'^kaeru_ads_served_total\{strategy="([^"]+)"\} (\S+)$', text, re.M
            )
        }
        no_fill = re.search(r"^kaeru_ads_no_fill_total (\S+)$", text, re.M)
        counts["no fill"] = float(no_fill[1]) if no_fill else 0.0
        return counts


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"not ready in 30 s: {log.read_text()}"
        time.sleep(0.1)


@contextlib.contextmanager
def three_sites(directory: Path, kaeru_name: str, **extra_env: str) -> Iterator[Sites]:
    """nginx terminating TLS for every name, in front of one `kaeru demo --cross-site`."""
    cafile = _certificate(directory)
    upstream_port = free_port()
    with nginx_in_front_of(upstream_port, directory) as port:
        data_dir = directory / "data"
        env = {
            k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("KAERU_")
        }
        env.update(
            KAERU_DATA_DIR=str(data_dir),
            KAERU_ADVERTISERS=f"{ADVERTISER}:{TOKEN}",
            KAERU_TRUSTED_PROXIES="127.0.0.1",
            KAERU_PUBLIC_URL=f"https://{kaeru_name}:{port}",
            **extra_env,
        )
        command = [
            sys.executable, "-m", "adserver.cli", "demo", "--cross-site",
            "--port", str(upstream_port),
            "--shop-url", f"https://{SHOP}:{port}", "--partner-url", f"https://{NEWS}:{port}",
        ]  # fmt: skip
        log = directory / "kaeru.log"
        with log.open("wb") as output:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        upstream = f"http://127.0.0.1:{upstream_port}"
        try:
            _wait_ready(f"{upstream}/readyz", process, log)
            yield Sites(port, upstream, cafile, log, kaeru_name)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """Shop, partner and Kaeru on three sites."""
    with three_sites(tmp_path_factory.mktemp("three-sites"), KAERU) as running:
        yield running


@pytest.fixture(scope="module")
def first_party(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """Kaeru on a subdomain of the shop (kaeru.shop.test), its cookie on the shop's domain."""
    directory = tmp_path_factory.mktemp("first-party")
    with three_sites(directory, KAERU_ON_SHOP, KAERU_COOKIE_DOMAIN=SHOP) as running:
        yield running


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, default settings, announcing itself as a person's Chrome (Kaeru
    rightly treats `HeadlessChrome` as a bot; the switch also covers sandboxed iframes)."""
    with sync_api.sync_playwright() as playwright:
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
def context(browser: Any) -> Iterator[Any]:
    """A fresh profile, told to accept the throwaway certificate."""
    ctx = browser.new_context(ignore_https_errors=True)
    ctx.set_default_timeout(DEADLINE_S * 1000)
    try:
        yield ctx
    finally:
        ctx.close()


# -- helpers ------------------------------------------------------------------------------------


def is_batch(response: Any) -> bool:
    return bool(urlsplit(response.url).path == "/e" and response.request.method == "POST")


def is_batch_request(request: Any) -> bool:
    return bool(urlsplit(request.url).path == "/e" and request.method == "POST")


def batches(page: Any) -> list[dict[str, Any]]:
    """Every `/e` body the page's tag sent so far (collected by `watch_batches`)."""
    sent: list[dict[str, Any]] = page.kaeru_batches
    return sent


def watch_batches(page: Any) -> Any:
    page.kaeru_batches = []

    def keep(request: Any) -> None:
        if is_batch_request(request):
            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                page.kaeru_batches.append(orjson.loads(request.post_data or ""))

    page.on("request", keep)
    return page


def view(page: Any, sites: Sites, sku: str) -> Any:
    """Open a shop product page and wait until the tag's batch is answered (204)."""
    with page.expect_response(is_batch) as beacon:
        page.goto(f"{sites.shop}/demo/shop/p/{sku}")
    assert beacon.value.status == 204, beacon.value.text()
    return beacon.value


def log_in(page: Any, email: str) -> None:
    page.fill("#email", email)
    page.click("#log-in")
    page.locator("#who").filter(has_text="Logged in as").wait_for()


def ad_frames(page: Any) -> list[Any]:
    """The page's ad frames as loaded now. `page.frames` alone is what Playwright's sync API
    has taken in so far: a round trip first lets it see frames that navigated since (the
    partner's log-in fills its slots once its server has signed the reader's hash, which may
    be after the page's load event)."""
    page.evaluate("0")
    return [frame for frame in page.frames if urlsplit(frame.url).path == "/ad"]


def open_partner(page: Any, sites: Sites) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Open the partner page until its slots have rendered: each slot's product titles, and
    the strategies Kaeru served for the page (its metrics, before and after)."""
    before = sites.strategies()
    page.goto(f"{sites.news}/demo/partner/")

    def rendered() -> dict[str, list[str]]:
        slots: dict[str, list[str]] = {}
        for frame in ad_frames(page):
            query = parse_qs(urlsplit(frame.url).query)
            slots[query.get("slot", ["?"])[0]] = frame.locator(CREATIVE_TITLE).all_inner_texts()
        return slots

    def served() -> float:
        after = sites.strategies()
        return sum(after.values()) - sum(before.values())

    poll(served, lambda n: n >= PARTNER_SLOTS, "ads served for the partner page")
    slots = poll(rendered, lambda s: len(s) == PARTNER_SLOTS, "the partner page's ad slots")
    after = sites.strategies()
    return slots, {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k)}


def others_view(sites: Sites, shoppers: int = 3) -> None:
    """Other shoppers view a few products (the pixel, each without a cookie: a new uid), so
    the shop has popular products to show people Kaeru does not know."""
    for _ in range(shoppers):
        for sku in OTHERS_VIEWED:
            pixel = f"{sites.upstream}/px?a={ADVERTISER}&e=view&i={sku}"
            request = urllib.request.Request(pixel, headers=BROWSER)
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200


@dataclass
class Scenario:
    """The steps passed so far; a failing step says which part of issue 13 it waits for."""

    passed: list[str] = field(default_factory=list)
    shares: dict[str, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str, needs: str = "") -> Iterator[None]:
        try:
            yield
        except AssertionError as exc:
            done = "; ".join(self.passed) or "none"
            waiting = f" (needs {needs})" if needs else ""
            raise AssertionError(
                f"step {len(self.passed) + 1} failed: {name}{waiting}: {exc}\n"
                f"steps passed: {done}\nshares: {self.shares}"
            ) from exc
        self.passed.append(name)
        print(f"  ok {len(self.passed)}: {name}", flush=True)

    def share(self, label: str, strategies: dict[str, float]) -> float:
        total = sum(strategies.values())
        personal = sum(n for s, n in strategies.items() if s in PERSONALISED)
        self.shares[label] = f"{personal:.0f}/{total:.0f} personalised {strategies}"
        print(f"  share of personalised ads {label}: {personal:.0f}/{total:.0f} ({strategies})")
        return personal / total if total else 0.0


# -- tests --------------------------------------------------------------------------------------


def test_the_premise_chromium_blocks_kaerus_cookie_on_other_sites(
    context: Any, sites: Sites
) -> None:
    """The shop's tag on https://shop.test talks to https://kaeru.test: Kaeru sets its cookie,
    the browser drops it. At https://kaeru.test itself the same cookie is kept."""
    page = context.new_page()
    answer = view(page, sites, "sku-105")
    assert "uid=" in (answer.all_headers().get("set-cookie") or ""), answer.all_headers()
    assert "uid" not in {c["name"] for c in context.cookies(sites.kaeru)}, context.cookies()
    again = view(page, sites, "sku-106")
    assert "uid=" not in (again.request.all_headers().get("cookie") or "")

    page.goto(f"{sites.kaeru}/px?a={ADVERTISER}&e=view&i=sku-105")  # first-party: kept
    kept = {c["name"]: c for c in context.cookies(sites.kaeru)}
    assert "uid" in kept, context.cookies()
    # https as the trusted proxy says: the cookie a partner's iframe would need, were it kept.
    assert (kept["uid"]["secure"], kept["uid"]["sameSite"]) == (True, "None"), kept


def test_three_sites_identity_click_conversion_and_opt_out(context: Any, sites: Sites) -> None:
    scenario = Scenario()
    shop, news = context.new_page(), context.new_page()
    watch_batches(shop)
    signing: list[str] = []  # what the partner's page sent its own server to sign
    news.on(
        "request",
        lambda r: signing.append(r.post_data or "") if "/demo/partner/sign" in r.url else None,
    )

    others_view(sites)
    with scenario.step("an anonymous reader on the partner gets contextual or popular ads"):
        slots, served = poll(
            lambda: open_partner(news, sites),
            lambda got: all(got[0].values()),
            "every partner slot filled",
        )
        assert set(served) <= NOT_PERSONALISED, served
        scenario.share("before any visit to the shop", served)
        requested = [urlsplit(f.url).query for f in ad_frames(news)]
        assert all("kw=" in q and "cat=" in q and "eid=" not in q for q in requested), requested

    with scenario.step("the shopper logs in on the shop and views two products"):
        shop.goto(f"{sites.shop}/demo/shop/")
        log_in(shop, EMAIL)
        for sku in VIEWED:
            view(shop, sites, sku)
        assert "uid" not in {c["name"] for c in context.cookies(sites.kaeru)}  # still blocked

    with scenario.step("without identity the partner's ads are not personalised"):
        news.goto(f"{sites.news}/demo/partner/")
        assert news.locator("#who").inner_text() == "Not logged in"
        slots, served = open_partner(news, sites)
        assert set(served) <= NOT_PERSONALISED, served
        scenario.share("without identity (viewed two products, not logged in)", served)

    with scenario.step("logged in on the partner, its ad requests carry the e-mail's hash"):
        log_in(news, EMAIL)
        poll(
            lambda: news.evaluate("[...document.querySelectorAll('iframe')].map(f => f.src)"),
            lambda srcs: (
                len(srcs) == PARTNER_SLOTS and all(f"&eid={EMAIL_SHA256}" in src for src in srcs)
            ),
            "eid= on every ad slot",
        )
        news.reload()  # a logged-in reader's page: its ad requests carry eid= from the start
        requested = poll(
            lambda: [urlsplit(f.url).query for f in ad_frames(news)],
            lambda qs: len(qs) == PARTNER_SLOTS and all(f"eid={EMAIL_SHA256}" in q for q in qs),
            "eid= on every ad request",
        )
        assert all("kw=" in q and "cat=" in q for q in requested), requested
        # Vouched for by the partner's server, which got the hash, never the e-mail.
        assert all("eid_sig=" in q and "eid_exp=" in q for q in requested), requested
        assert signing and all(orjson.loads(b) == {"eid": EMAIL_SHA256} for b in signing)

    with scenario.step("the shop's tag sends its first-party id", needs="part A: fpid"):
        sent = batches(shop)
        without = [b for b in sent if not (isinstance(b.get("fpid"), str) and b["fpid"])]
        assert sent and not without, (
            f"{len(without)} of {len(sent)} /e bodies lack fpid: {sent[:1]}"
        )

    with scenario.step("the shop's tag sends identify with the hashed e-mail", needs="part A"):
        events = [e for b in batches(shop) for e in b.get("events", [])]
        identify = [e for e in events if e.get("event") == "identify"]
        assert identify, f"no identify event in the /e bodies: {[e.get('event') for e in events]}"
        assert identify[0].get("email_sha256") == EMAIL_SHA256, identify
        assert all(EMAIL.strip().lower() not in str(b).lower() for b in batches(shop))

    with scenario.step(
        "logged in on the partner, the ads show the viewed products", needs="part A: eid links"
    ):
        viewed = [TITLES[sku] for sku in reversed(VIEWED)]
        loads: list[dict[str, float]] = []

        def load() -> tuple[dict[str, list[str]], dict[str, float]]:
            # Reloaded until personalised: an ad that waits on Redis past its deadline degrades,
            # as designed, to a non-personalised one (and linking may take a moment).
            got = open_partner(news, sites)
            loads.append(got[1])
            return got

        slots, served = poll(
            load,
            lambda got: got[0].get("side", [])[:2] == viewed and set(got[1]) <= PERSONALISED,
            "the viewed products in the 300x250 slot, every slot personalised",
        )
        label = "with identity (logged in with the same e-mail)"
        scenario.share(label if len(loads) == 1 else f"{label}, page load {len(loads)}", served)
        if len(loads) > 1:
            scenario.share(f"{label}, first page load", loads[0])

    with scenario.step("a click lands on the shop with a click id", needs="part B: kclid"):
        slot = next(f for f in ad_frames(news) if "slot=side" in f.url)
        link = slot.locator("a[href]").first
        # (a path in the document since issue 15: the link as the browser resolves it)
        assert str(link.evaluate("a => a.href")).startswith(f"{sites.kaeru}/c/")
        with news.expect_request(is_batch_request) as landing_batch:
            link.click()
            news.wait_for_url(re.compile(rf"^{re.escape(sites.shop)}/demo/shop/p/"))
        landing = urlsplit(news.url)
        kclid = parse_qs(landing.query).get("kclid", [""])[0]
        assert kclid, f"no kclid on the landing URL {news.url}"

    with scenario.step("the landing page's tag sends the click id", needs="part B: tag kclid"):
        body = orjson.loads(landing_batch.value.post_data or "{}")
        assert body.get("kclid") == kclid, body

    order = f"xs-{int(time.time() * 1000)}"
    with scenario.step(
        "the shop's server posts the conversion with the click id", needs="part B: click_id"
    ):
        sku = landing.path.rsplit("/", 1)[-1]
        status, answer = sites.api(
            "POST",
            f"/api/v1/advertisers/{ADVERTISER}/conversions",
            {
                "click_id": kclid,
                "order": order,
                "revenue": "10.00",
                "currency": "EUR",
                "items": [{"id": sku, "price": 10.0, "quantity": 1}],
            },
        )
        assert status == 200 and answer.get("attributed") is True, (status, answer)
        assert answer.get("touch") == "click", answer

    with scenario.step("the report attributes the conversion", needs="part B"):
        today = datetime.datetime.now(datetime.UTC).date().isoformat()
        status, report = sites.api(
            "GET", f"/api/v1/advertisers/{ADVERTISER}/report?from={today}&to={today}&by=day"
        )
        assert status == 200, report
        rows = report.get("rows", []) if isinstance(report, dict) else []
        assert sum(row.get("conversions", 0) for row in rows) >= 1, report

    with scenario.step(
        "after an opt-out on the shop no ad is personalised anywhere", needs="part A: forgetting"
    ):
        shop.goto(f"{sites.shop}/demo/shop/")
        with shop.expect_navigation():
            shop.click("footer a[href$='/optout']")
        assert urlsplit(shop.url).netloc == urlsplit(sites.kaeru).netloc, shop.url
        assert shop.locator("h1").inner_text() == "You are opted out"
        news.goto(f"{sites.news}/demo/partner/")
        assert news.locator("#who").inner_text().startswith("Logged in as")
        slots, served = open_partner(news, sites)
        assert set(served) <= NOT_PERSONALISED, served
        scenario.share("after the opt-out (logged in)", served)

    print("steps passed:", len(scenario.passed), "shares:", scenario.shares)


def test_kaeru_on_a_subdomain_of_the_shop_keeps_one_uid_across_visits(
    context: Any, first_party: Sites
) -> None:
    """Kaeru at https://kaeru.shop.test with KAERU_COOKIE_DOMAIN=shop.test: its cookie is
    first-party on https://shop.test, so even this browser keeps it: one uid, one history."""
    page = context.new_page()
    first = view(page, first_party, VIEWED[0])
    jar = {c["name"]: c for c in context.cookies(first_party.shop)}
    assert "uid" in jar, context.cookies()
    uid = jar["uid"]
    assert uid["domain"] in (SHOP, f".{SHOP}") and uid["secure"] and uid["httpOnly"], uid
    assert "uid=" in (first.all_headers().get("set-cookie") or "")
    page.close()

    later = context.new_page()  # another visit
    second = view(later, first_party, VIEWED[1])
    assert f"uid={uid['value']}" in (second.request.all_headers().get("cookie") or "")
    assert {c["name"]: c for c in context.cookies(first_party.shop)}["uid"]["value"] == uid["value"]

    def history() -> list[str]:
        request = urllib.request.Request(
            f"{first_party.upstream}/ad.json?pub={PUBLISHER}&size=300x250",
            headers={**BROWSER, "Cookie": f"uid={uid['value']}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.status != 200:
                return []
            return [p["id"] for p in orjson.loads(response.read())["products"]]

    poll(history, lambda ids: ids[:2] == list(reversed(VIEWED)), "one history of both visits")
