"""The shop tag's identity in a real Chromium (`kaeru demo`, see tests/test_browser.py): the
first-party id cookie, `identify` hashing in the page, and a partner's `eid` finding the
history after Kaeru's own cookie is gone. Skips like tests/test_browser.py."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright not installed")

from playwright.sync_api import Browser, Page, Request, sync_playwright  # noqa: E402

from tests.test_browser import (  # noqa: E402  (skips without Chromium)
    CHROMIUM,
    CHROMIUM_ARGS,
    PUBLISHER,
    demo_env,
    running_demo,
)

EMAIL = "  Ana.Shopper@Example.COM "
EMAIL_SHA256 = hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest()
ADVERTISER = "demo-shop"
DEADLINE_S = 15.0
OPERATOR = "operator-token-0123456789"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("identity-demo")
    env = {**demo_env(data_dir), "KAERU_OPERATOR_TOKEN": OPERATOR}  # may send eid on ad.json
    with running_demo(data_dir, env) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium as a person's Chrome (see tests/test_browser.py), `shop.test` mapped to
    loopback: plain http there is no secure context (no `crypto.subtle`)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                *CHROMIUM_ARGS,
                "--host-resolver-rules=MAP shop.test 127.0.0.1",
                "--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def batches(page: Page) -> list[dict[str, Any]]:
    """Every `/e` body the page sends from now on (filled as they go)."""
    sent: list[dict[str, Any]] = []

    def on_request(request: Request) -> None:
        if urlsplit(request.url).path == "/e" and request.method == "POST":
            sent.append(json.loads(request.post_data or "{}"))

    page.on("request", on_request)
    return sent


def wait_until(page: Page, check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {DEADLINE_S}s"
        page.wait_for_timeout(100)


def identified(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in sent for e in b.get("events", []) if e.get("event") == "identify"]


def test_first_party_id_identify_and_a_partner_eid(browser: Browser, demo: str) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        sent = batches(page)
        page.goto(f"{demo}/demo/shop/p/sku-101")
        wait_until(page, lambda: sent, "the first batch")
        (fp,) = [c for c in context.cookies(demo) if c["name"] == "_kaeru_fp"]
        assert len(fp["value"]) == 22 and fp["sameSite"] == "Lax" and not fp["httpOnly"]
        assert 395 * 86400 < fp["expires"] - time.time() <= 396 * 86400 + 60
        assert sent[0]["fpid"] == fp["value"]

        page.evaluate(
            "([adv, email]) => kaeru.push(['identify', {advertiser: adv, email: email}])",
            [ADVERTISER, EMAIL],
        )
        wait_until(page, lambda: identified(sent), "the identify event")
        assert identified(sent) == [
            {"advertiser": ADVERTISER, "event": "identify", "email_sha256": EMAIL_SHA256}
        ]
        assert all("Ana" not in json.dumps(b) and "example.com" not in json.dumps(b) for b in sent)

        # Kaeru's cookie is gone (as where third-party cookies are blocked): the fpid carries.
        context.clear_cookies(name="uid")
        with page.expect_response(lambda r: urlsplit(r.url).path == "/e"):
            page.goto(f"{demo}/demo/shop/p/sku-102")
        assert sent[-1]["fpid"] == fp["value"]

        # A partner's reader, no cookie at all: the publisher passes the same hashed e-mail.
        context.clear_cookies(name="uid")

        def ad() -> tuple[str | None, set[str]]:
            answer = page.evaluate(
                """async ([url, token]) => {
                    const r = await fetch(url, {credentials: "omit", cache: "no-store",
                                                headers: {Authorization: "Bearer " + token}});
                    return r.status === 200 ? await r.json() : null;
                }""",
                [f"/ad.json?pub={PUBLISHER}&size=300x250&eid={EMAIL_SHA256}", OPERATOR],
            )
            if answer is None:
                return None, set()
            return answer["strategy"], {p["id"] for p in answer["products"]}

        wait_until(
            page,
            lambda: (a := ad())[0] == "recent" and {"sku-101", "sku-102"} <= a[1],
            "both viewed products in the eid ad",
        )

        # The shop's opt-out link names the first-party id: the opt-out holds with Kaeru's
        # cookies gone, on the shop and for the partner's eid.
        optout = str(page.evaluate("kaeru.optoutUrl('demo-shop')"))
        assert f"fpid={fp['value']}" in optout
        page.goto(optout)
        assert "opted out" in page.content()
        context.clear_cookies(name="uid")
        context.clear_cookies(name="optout")
        with page.expect_response(lambda r: urlsplit(r.url).path == "/e"):
            page.goto(f"{demo}/demo/shop/p/sku-103")
        assert sent[-1]["fpid"] == fp["value"]
        assert ad()[0] in ("popular", None)
    finally:
        context.close()


def test_without_a_secure_context_identify_sends_nothing(browser: Browser, demo: str) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        warnings: list[str] = []
        page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
        sent = batches(page)
        port = urlsplit(demo).port
        page.goto(f"http://shop.test:{port}/demo/shop/p/sku-101")
        assert page.evaluate("window.isSecureContext") is False
        page.evaluate(
            "([adv, email]) => kaeru.push(['identify', {advertiser: adv, email: email}])",
            [ADVERTISER, EMAIL],
        )
        wait_until(page, lambda: any("crypto.subtle" in w for w in warnings), "the warning")
        page.evaluate("window.dispatchEvent(new Event('pagehide'))")  # flush what is queued
        page.wait_for_timeout(200)
        assert identified(sent) == []
        assert all(EMAIL_SHA256 not in json.dumps(b) for b in sent)
    finally:
        context.close()


COOKIES_REFUSED = """Object.defineProperty(Document.prototype, "cookie", {
    configurable: true, get() { return ""; }, set(value) {} });"""
GPC = """Object.defineProperty(Navigator.prototype, "globalPrivacyControl", {
    configurable: true, get() { return true; } });"""


def test_where_cookies_are_refused_the_fpid_lives_in_local_storage(
    browser: Browser, demo: str
) -> None:
    context = browser.new_context()
    try:
        context.add_init_script(COOKIES_REFUSED)
        page = context.new_page()
        sent = batches(page)
        page.goto(f"{demo}/demo/shop/p/sku-104")
        wait_until(page, lambda: sent, "the first batch")
        kept = page.evaluate("localStorage.getItem('_kaeru_fp')")
        assert isinstance(kept, str) and len(kept) == 22 and sent[0]["fpid"] == kept
        page.goto(f"{demo}/demo/shop/p/sku-105")  # the next page keeps it
        wait_until(page, lambda: len(sent) >= 2, "the second batch")
        assert sent[-1]["fpid"] == kept
    finally:
        context.close()


def test_under_global_privacy_control_there_is_no_fpid(browser: Browser, demo: str) -> None:
    context = browser.new_context()
    try:
        context.add_init_script(GPC)
        page = context.new_page()
        sent = batches(page)
        page.goto(f"{demo}/demo/shop/p/sku-104")
        wait_until(page, lambda: sent, "the first batch")
        assert "fpid" not in sent[0]
        assert not [c for c in context.cookies(demo) if c["name"] == "_kaeru_fp"]
        assert page.evaluate("localStorage.getItem('_kaeru_fp')") is None
    finally:
        context.close()
