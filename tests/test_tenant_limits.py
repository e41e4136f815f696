"""What one tenant can do to the others (issue 11, §4): feeds are read with bounded memory,
links are checked by a real URL parser at the feed, a click never answers 5xx, and campaigns
per advertiser are capped."""

from __future__ import annotations

import io
import signal
import tracemalloc
from dataclasses import replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings, SettingsError
from adserver.core.product import Product, clean_url
from adserver.delivery.market_cache import upsell_index
from adserver.feeds import reader as feed_reader
from adserver.feeds.reader import MAX_RECORD
from adserver.feeds.validation import FeedError, FeedValidator, parse_feed
from adserver.http.app_keys import MARKET, STORE
from adserver.runtime.embedded_redis import EmbeddedRedis
from tests.conftest import BROWSER, SHOP, SHOP_TOKEN, product_row, put_catalog

PRODUCTS = f"/api/v1/advertisers/{SHOP}/products"
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}


BAD_LINKS = [
    "http://[::1/x",  # unclosed IPv6 literal: urlsplit raises
    "https://shop1.example:99999/p/a",  # port out of range
    "https://shop1.example:abc/p/a",  # port not a number
    "https://shop1.example\\@evil.example/p/a",  # backslash (browsers read it as a slash)
    "https://shop1\u2028.example/p/a",  # line separator in the host
    "https://sh\u00adop1.example/p/a",  # soft hyphen in the host
    "https://shop1.example/p/a\r\nSet-Cookie: x=1",  # header injection through Location
    "https://shop1.example/p/\x00a",  # control character
    "https://user:pw@shop1.example/p/a",  # credentials in a landing URL
]


@pytest.mark.parametrize("link", BAD_LINKS)
async def test_feed_rejects_links_a_real_url_parser_refuses(
    client: TestClient[Any, Any], link: str
) -> None:
    rows = [product_row("a", link=link), product_row("b", image_link=link), product_row("c")]
    response = await client.put(PRODUCTS, json=rows, headers=AUTH)
    assert response.status == 200, await response.text()
    summary = await response.json()
    assert summary["accepted"] == 1
    reasons = {r["id"]: r["reason"] for r in summary["rejections"]}
    assert reasons["a"].startswith("link ")
    assert reasons["b"].startswith("image_link ")


async def test_international_domain_names_are_accepted_as_punycode(
    client: TestClient[Any, Any],
) -> None:
    row = product_row("a", link="https://bücher.example/p/a", image_link="https://x.example/i")
    response = await client.put(PRODUCTS, json=[row], headers=AUTH)
    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == 1
    await client.app[MARKET].refresh()
    assert client.app[MARKET].catalog(SHOP)["a"].link == "https://xn--bcher-kva.example/p/a"


@pytest.mark.parametrize("link", BAD_LINKS)
async def test_click_on_a_link_stored_before_validation_never_answers_5xx(
    client: TestClient[Any, Any], link: str
) -> None:
    """A catalog written by an older Kaeru may hold any link: the click answers 400."""
    legacy = Product("a", "A", link, "https://shop1.example/i/a.jpg", Decimal(5), "EUR")
    await client.app[STORE].replace_catalog(SHOP, [legacy])
    await client.app[MARKET].refresh()
    assert (await client.get("/px", params={"a": SHOP, "e": "view", "i": "a"})).status == 200
    response = await client.get("/ad.json", params={"pub": "news1", "size": "300x250"})
    assert response.status == 200, await response.text()
    click_url = (await response.json())["products"][0]["click_url"]
    click = await client.get(urlsplit(click_url).path, allow_redirects=False)
    assert click.status == 400, await click.text()


# -- feeds: bounded memory, bounded rows --------------------------------------------------------


async def _client_with(aiohttp_client: Any, settings: Settings, **changes: Any) -> Any:
    return await aiohttp_client(create_app(replace(settings, **changes)), headers=BROWSER)


async def test_feed_with_more_rows_than_kaeru_max_products_is_refused_catalog_unchanged(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await _client_with(aiohttp_client, settings, max_products=5)
    await put_catalog(client, [product_row(f"old-{n}") for n in range(5)])
    response = await client.put(
        PRODUCTS, json=[product_row(f"new-{n}") for n in range(6)], headers=AUTH
    )
    assert response.status == 413
    assert "KAERU_MAX_PRODUCTS" in (await response.json())["error"]
    await client.app[MARKET].refresh()
    assert sorted(client.app[MARKET].catalog(SHOP)) == [f"old-{n}" for n in range(5)]


async def test_a_feed_of_empty_objects_is_read_in_bounded_memory(
    aiohttp_client: Any, settings: Settings
) -> None:
    """`[{},{},…]`: every row is rejected with a reason, the answer lists the first 1,000, and
    the server never holds the feed or its rows (today: orjson built every row at once)."""
    client = await _client_with(aiohttp_client, settings, max_products=10_000_000)
    rows = 700_000  # 2 MB
    body = b"[" + b",".join([b"{}"] * rows) + b"]"
    tracemalloc.start()
    try:
        response = await client.put(
            PRODUCTS, data=io.BytesIO(body), headers={**AUTH, "Content-Type": "application/json"}
        )
        summary = await response.json()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status == 422
    assert (summary["accepted"], summary["rejected"]) == (0, rows)
    assert len(summary["rejections"]) == 1000
    assert summary["rejections"][0]["reason"].startswith("id missing")
    # The body itself (2 MB, sent by the test's client) is in the count.
    assert peak < len(body) + 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"


async def test_a_feed_the_store_cannot_take_answers_503_and_changes_nothing(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    client = await _client_with(aiohttp_client, settings, redis_url=own_redis.url)
    await put_catalog(client, [product_row("old")])
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        response = await client.put(PRODUCTS, json=[product_row("new")], headers=AUTH)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    assert response.status == 503, await response.text()
    assert "Retry-After" in response.headers
    await client.app[MARKET].refresh()
    assert list(client.app[MARKET].catalog(SHOP)) == ["old"]


CSV_FEED = (
    "\ufeffid;title;link;image_link;price;currency\r\n"
    'a;"TV 55 inch\r\nwith a second line";https://shop1.example/p/a;'
    "https://shop1.example/i/a;19.90;EUR\r\n"
    '\r\nb;5" tall;https://shop1.example/p/b;https://shop1.example/i/b;3;EUR\r'
    "c;;https://shop1.example/p/c;https://shop1.example/i/c;3;EUR"
)
NDJSON_FEED = (
    '{"id": "a", "title": "A\u2028B", "link": "https://shop1.example/p/a",'
    ' "image_link": "https://shop1.example/i/a", "price": 19.9, "currency": "EUR"}\r\n'
    "\n{broken\n"
    '{"id": "b", "title": "B", "link": "https://shop1.example/p/b", "image_link": '
    '"https://shop1.example/i/b", "price": "3 EUR", "extra": {"nested": [1, 2]}}'
)
JSON_FEED = (
    '[{"id": "a", "title": "A", "link": "https://shop1.example/p/a", "image_link":'
    ' "https://shop1.example/i/a", "price": 19.9, "currency": "EUR", "x": [{"y": 1}]},'
    ' 7, [1, {"id": "z"}], {"id": {"x": 1}}, {"title": "no id"},'
    ' {"id": "b", "title": "B", "link": "https://shop1.example/p/b", "image_link":'
    ' "https://shop1.example/i/b", "price": "3 EUR", "sale_price": [1]}]'
)


@pytest.mark.parametrize("feed", [CSV_FEED, NDJSON_FEED, JSON_FEED], ids=["csv", "ndjson", "json"])
@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_a_feed_read_in_pieces_reads_as_the_whole(feed: str, piece: int) -> None:
    body = feed.encode()
    whole = FeedValidator()
    expected = whole.feed(body) + whole.close()
    pieces = FeedValidator()
    got = [p for i in range(0, len(body), piece) for p in pieces.feed(body[i : i + piece])]
    got += pieces.close()
    assert got == expected
    assert pieces.tally == whole.tally
    assert [p.id for p in got] == (["a"] if feed is JSON_FEED else ["a", "b"])


def test_csv_quoted_fields_over_lines_and_stray_quotes_read_as_the_csv_module_does() -> None:
    result = parse_feed(CSV_FEED.encode())
    titles = {p.id: p.title for p in result.accepted}
    assert titles == {"a": "TV 55 inch\nwith a second line", "b": '5" tall'}
    assert [(r.row, r.id, r.reason) for r in result.rejected] == [(3, "c", "title missing")]


def test_json_rows_that_are_not_objects_are_rejected_with_their_row_number() -> None:
    result = parse_feed(JSON_FEED.encode())
    assert [p.id for p in result.accepted] == ["a"]
    reasons = [(r.row, r.reason.split(" (")[0]) for r in result.rejected]
    assert reasons[:2] == [(2, "row is not an object"), (3, "row is not an object")]
    assert reasons[2][0] == 4 and reasons[2][1].startswith("id missing")
    assert reasons[4] == (6, "sale_price is not a number like 19.99 or '19.99 EUR'")


def test_a_line_longer_than_the_record_limit_refuses_the_feed() -> None:
    with pytest.raises(FeedError, match="longer than"):
        parse_feed(b'{"id": "' + b"x" * (MAX_RECORD + 10) + b'"}\n{}', "application/x-ndjson")


LONG = b"x" * (2 * MAX_RECORD)
LONG_JSON_VALUES = {
    "string": b'[{"id": "a", "title": "' + LONG + b'"}]',
    "key": b'[{"id": "a", "' + LONG + b'": 1}]',
    "number": b'[{"id": "a", "price": 1.' + LONG.replace(b"x", b"0") + b"}]",
}


@pytest.mark.parametrize(
    ("kind", "piece"),
    [("string", 512), ("key", 512), ("number", 512), ("string", 10**7), ("key", 10**7)],
)
def test_a_json_value_longer_than_the_record_limit_refuses_the_feed(kind: str, piece: int) -> None:
    """As an NDJSON line or a CSV record: one JSON token fed in small pieces is lexed again
    from its start with each piece (yajl), so a 60 MB title cost half an hour of CPU. (Given
    whole, a long number costs nothing more and is not refused.)"""
    body = LONG_JSON_VALUES[kind]
    validator = FeedValidator("application/json")
    with pytest.raises(FeedError, match="JSON value is longer than 256 KB"):
        for start in range(0, len(body), piece):
            validator.feed(body[start : start + piece])
        validator.close()


async def test_a_json_feed_with_a_huge_string_is_a_400(client: TestClient[Any, Any]) -> None:
    row = product_row("a")
    body = b"[" + orjson.dumps({**row, "title": "x" * (4 * MAX_RECORD)}) + b"]"
    response = await client.put(PRODUCTS, data=io.BytesIO(body), headers=JSON_AUTH)
    assert response.status == 400
    assert "JSON value is longer than 256 KB" in (await response.json())["error"]
    metrics = await (await client.get("/metrics")).text()
    assert 'kaeru_bad_requests_total{reason="unreadable",route="products"} 1.0' in metrics


@pytest.mark.parametrize("escape", [b"\\udfff", b"\\udc00", b"\\u0041\\udc00"])
async def test_a_json_feed_with_a_lone_surrogate_escape_is_a_400(
    client: TestClient[Any, Any], escape: bytes
) -> None:
    """yajl decodes a lone low surrogate escape into bytes that are not UTF-8, and ijson's
    decode of them raised UnicodeDecodeError out of the handler: a 500. (A lone high one it
    replaces with '?' itself.)"""
    body = b'[{"id": "a' + escape + b'x", "title": "t"}]'
    response = await client.put(PRODUCTS, data=io.BytesIO(body), headers=JSON_AUTH)
    assert response.status == 400, await response.text()
    assert "lone surrogate" in (await response.json())["error"]
    assert (await client.get(PRODUCTS, headers=AUTH)).status == 200


@pytest.mark.parametrize(
    "url", ["https://shop1.example/p/\ud800", "https://shop1.example/?q=\udfff"]
)
def test_clean_url_refuses_lone_surrogates_instead_of_raising(url: str) -> None:
    """A stored landing goes through clean_url again on every click: it must answer None
    (the click falls back), never raise UnicodeEncodeError (a 500)."""
    assert clean_url(url) is None


def test_a_quoted_csv_field_over_many_lines_is_read_once_not_once_per_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The csv reader cannot resume a record: an incomplete one is read again from its
    start. It was read again for every 512-byte piece, so a quoted field of 120,000 empty
    lines cost ~1.5 s of CPU (a 64 MB feed of them, ~13 minutes). Only a line holding a
    quote can close the field, so only such a line is worth reading it again for."""
    reads = 0
    next_line = feed_reader._Lines.__next__

    def counted(self: Any) -> str:
        nonlocal reads
        reads += 1
        return next_line(self)

    monkeypatch.setattr(feed_reader._Lines, "__next__", counted)
    lines = 120_000
    body = b"id,title\n" + b'a,"' + b"\n" * lines + b'"\n' + b'b,"x\ny"\n'
    validator = FeedValidator("text/csv")
    for start in range(0, len(body), 512):
        validator.feed(body[start : start + 512])
    validator.close()
    assert validator.tally.rejected == 2
    assert reads < 3 * lines  # each line about once (before: ~240 times each)


# -- campaigns: a cap per advertiser, no 5xx when Redis times out ------------------------------

CAMPAIGNS = f"/api/v1/advertisers/{SHOP}/campaigns"
CAMPAIGN = {"name": "Viewers", "bid": {"type": "cpm", "amount": "2.50"}}


async def test_campaigns_past_kaeru_max_campaigns_are_refused_with_409(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await _client_with(aiohttp_client, settings, max_campaigns=3)
    for n in range(3):
        response = await client.put(f"{CAMPAIGNS}/c{n}", json=CAMPAIGN, headers=AUTH)
        assert response.status == 200, await response.text()
    refused = await client.put(f"{CAMPAIGNS}/c3", json=CAMPAIGN, headers=AUTH)
    assert refused.status == 409
    assert "KAERU_MAX_CAMPAIGNS" in (await refused.json())["error"]
    metrics = await (await client.get("/metrics")).text()
    assert 'kaeru_bad_requests_total{reason="max_campaigns",route="campaigns"} 1.0' in metrics
    changed = await client.put(f"{CAMPAIGNS}/c0", json={**CAMPAIGN, "name": "New"}, headers=AUTH)
    assert changed.status == 200  # changing one at the cap is fine
    assert (await client.delete(f"{CAMPAIGNS}/c1", headers=AUTH)).status == 204
    assert (await client.put(f"{CAMPAIGNS}/c3", json=CAMPAIGN, headers=AUTH)).status == 200
    listed = await (await client.get(CAMPAIGNS, headers=AUTH)).json()
    assert [c["id"] for c in listed["campaigns"]] == ["c0", "c2", "c3"]


async def test_a_campaign_put_redis_does_not_answer_is_a_503_not_a_500(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    client = await _client_with(aiohttp_client, settings, redis_url=own_redis.url)
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        response = await client.put(f"{CAMPAIGNS}/c1", json=CAMPAIGN, headers=AUTH)
        deleted = await client.delete(f"{CAMPAIGNS}/c1", headers=AUTH)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    assert response.status == 503, await response.text()
    assert "Retry-After" in response.headers
    assert deleted.status == 503


async def test_a_catalog_larger_than_a_page_is_served_whole_with_its_upsell_index(
    client: TestClient[Any, Any],
) -> None:
    """The market cache reads a catalog in pages and builds the upsell index in steps."""
    rows = [
        product_row(f"sku-{n}", price=f"{n % 97}.50", category=f"c{n % 3}") for n in range(2500)
    ]
    await put_catalog(client, rows)
    market = client.app[MARKET]
    catalog = market.catalog(SHOP)
    assert len(catalog) == 2500
    ranked = sorted(catalog.values(), key=lambda p: (p.price, p.id))
    expected = {
        p.id: better
        for p in catalog.values()
        if (better := [q.id for q in ranked if q.category == p.category and q.price > p.price][:5])
    }
    got = {sku: list(market.upsell(SHOP, sku)) for sku in catalog if market.upsell(SHOP, sku)}
    assert got == expected == upsell_index(catalog)


def test_the_caps_are_read_from_the_environment_and_checked() -> None:
    settings = Settings.from_env({"KAERU_MAX_PRODUCTS": "5000", "KAERU_MAX_CAMPAIGNS": "7"})
    assert (settings.max_products, settings.max_campaigns) == (5000, 7)
    assert (Settings.from_env({}).max_products, Settings.from_env({}).max_campaigns) == (
        200_000,
        100,
    )
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"KAERU_MAX_PRODUCTS": "lots", "KAERU_MAX_CAMPAIGNS": "0"})
    problems = "\n".join(raised.value.problems)
    assert "KAERU_MAX_PRODUCTS" in problems and "KAERU_MAX_CAMPAIGNS" in problems
