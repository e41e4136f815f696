"""The `/report` page's customer segments in a real headless Chromium (as tests/test_browser.py
launches it): `kaeru demo` on the test Redis, value records of its shop written the way the
purchase wiring is to write them, and an advertiser logging in and grouping by segment."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis

pytest.importorskip(
    "playwright.sync_api",
    reason="playwright not installed (pip install playwright; no browser download needed)",
)

from playwright.sync_api import BrowserContext, Page  # noqa: E402  (after the skip)

from adserver.core.value_record import ValueRecord, encode_record  # noqa: E402
from adserver.store import keys  # noqa: E402
from tests.test_browser import (  # noqa: E402  (skips when Chromium is missing)
    browser,
    context,
    demo_env,
    running_demo,
)
from tests.test_demo_offer_browser import value_refresh  # noqa: E402

__all__ = ["browser", "context"]  # the fixtures, shared with tests/test_browser.py
SHOP = "demo-shop"


def seed(redis_url: str) -> None:
    """Ten recent repeat buyers (4 orders, 25.00 each) and thirty one-time buyers long ago."""
    today = int(time.time() // 86400)
    with redis.Redis.from_url(redis_url) as client:
        for n in range(40):
            uid = f"b{n:021d}"
            if n < 10:
                record = ValueRecord(today - 92, today - 2, 4, 10_000)
            else:
                record = ValueRecord(today - 300, today - 300, 1, 2_500)
            client.hset(keys.user_facts(uid, SHOP), keys.VALUE_FIELD, encode_record(record))
            client.zadd(keys.value_buyers(SHOP), {uid: time.time() * 1000})


@pytest.fixture
def demo(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, str]]:
    seed(redis_url)
    env = {**demo_env(tmp_path), "REDIS_URL": redis_url}
    with running_demo(tmp_path, env) as url:
        yield url, (tmp_path / "demo-token").read_text().strip()


def seed_many(redis_url: str) -> None:
    """Sixty buyers (a fit needs 50): 1 to 5 orders, the last 1 to 60 days ago."""
    today = int(time.time() // 86400)
    with redis.Redis.from_url(redis_url) as client:
        for n in range(60):
            uid = f"m{n:021d}"
            orders = 1 + n % 5
            last = today - 1 - (n * 7) % 60
            record = ValueRecord(last - 9 * (orders - 1), last, orders, 2_000 * orders + 37 * n)
            client.hset(keys.user_facts(uid, SHOP), keys.VALUE_FIELD, encode_record(record))
            client.zadd(keys.value_buyers(SHOP), {uid: time.time() * 1000})


def segment_table(page: Page, base: str, token: str) -> dict[str, list[str]]:
    page.goto(f"{base}/report")
    page.fill("#advertiser", SHOP)
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#results:not([hidden])")
    with page.expect_response(lambda r: "by=segment" in r.url) as answer:
        page.select_option("#by", "segment")
    assert answer.value.status == 200
    page.wait_for_function("document.querySelector('#table-title').textContent === 'By segment'")
    return {
        cells[0]: cells[1:]
        for cells in (
            row.locator("td").all_inner_texts() for row in page.locator("#table-body tr").all()
        )
    }


def test_after_a_fitted_refresh_the_page_shows_each_segments_predicted_revenue(
    context: BrowserContext, tmp_path: Path, redis_url: str
) -> None:
    seed_many(redis_url)
    assert "models fitted" in value_refresh(redis_url)
    env = {**demo_env(tmp_path), "REDIS_URL": redis_url}
    with running_demo(tmp_path, env) as base:
        token = (tmp_path / "demo-token").read_text().strip()
        request = urllib.request.Request(
            f"{base}/api/v1/advertisers/{SHOP}/report?by=segment",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            api = {r["segment"]: r for r in json.loads(response.read())["rows"]}
        page = context.new_page()
        rows = segment_table(page, base, token)
        predicted = {name: cells[5] for name, cells in rows.items()}
        for name, row in api.items():
            expected = f"{Decimal(row['predicted_12m_revenue']):,.2f}"  # the page's en-US format
            assert predicted[name] == expected, (name, predicted)
        assert any(Decimal(r["predicted_12m_revenue"]) > 0 for r in api.values())
        total = sum(Decimal(r["predicted_12m_revenue"]) for r in api.values())
        footer = page.locator("#table-foot td").all_inner_texts()
        assert footer[-1] == f"{total:,.2f}"


def test_an_advertiser_sees_its_customers_per_segment(
    context: BrowserContext, demo: tuple[str, str]
) -> None:
    base, token = demo
    page = context.new_page()
    page.goto(f"{base}/report")
    page.fill("#advertiser", SHOP)
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#results:not([hidden])")
    with page.expect_response(lambda r: "by=segment" in r.url) as answer:
        page.select_option("#by", "segment")
    assert answer.value.status == 200
    page.wait_for_function("document.querySelector('#table-title').textContent === 'By segment'")
    heads = page.locator("#table-head th").all_inner_texts()
    assert [h.lower() for h in heads] == [
        "segment",
        "customers",
        "share of customers",
        "conversions",
        "revenue",
        "share of revenue",
        "predicted 12-month revenue",
    ]
    rows = {
        cells[0]: cells[1:]
        for cells in (
            row.locator("td").all_inner_texts() for row in page.locator("#table-body tr").all()
        )
    }
    assert rows["champions"][0] == "10"
    assert rows["champions"][1].replace("\u00a0", " ") == "25.00 %"
    assert rows["champions"][2] == "40"  # their orders
    assert rows["champions"][4].replace("\u00a0", " ") == "57.14 %"  # 1,000.00 of 1,750.00
    assert sum(int(cells[0]) for cells in rows.values()) == 40
    assert rows["champions"][5] == "–"  # 40 buyers and no refresh: no fitted models yet
    footer = page.locator("#table-foot td").all_inner_texts()
    assert footer[:2] == ["Total", "40"] and footer[-1] == "–"
    assert "40 of 40 buyers sampled" in page.locator("#table-sub").inner_text()
