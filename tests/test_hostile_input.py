"""Hostile input: hypothesis throws malformed, oversized and adversarial requests at every public
route of the real app (real Redis), and a few targeted cases pin what it found.

Properties: no route ever answers 5xx; `/px` and `/i/TOKEN` always answer the 43-byte GIF; bad
tracking input stores nothing (the event stream's length is compared before and after, since
hypothesis runs many examples against one fixture instance); only an untouched click token
redirects; the admin API answers nothing without a valid token.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import string
import zlib
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from multidict import MultiDictProxy
from yarl import URL

from adserver.http.ad_request import parse_ad_request
from adserver.http.app_keys import EVENT_WRITER, RENDERER, STORE
from adserver.http.edge import MAX_REQUEST_LINE
from adserver.http.responses import TRANSPARENT_GIF
from adserver.identity.consent import may_personalise
from adserver.store import keys
from pixel.events import MAX_BATCH_BYTES, Reject, parse_batch, parse_pixel_query
from tests.conftest import (
    BROWSER,
    OPERATOR_TOKEN,
    OTHER_SHOP,
    OTHER_TOKEN,
    SHOP,
    SHOP_TOKEN,
    landing_of,
    product_row,
)

ADVERTISERS = frozenset((SHOP, OTHER_SHOP))  # both are configured by tests/conftest.py
TOKENS = (SHOP_TOKEN, OTHER_TOKEN, OPERATOR_TOKEN)
SIZES = ("300x250", "728x90", "160x600", "320x50", "300x600", "320x100", "970x250")
EVENT_KINDS = ("home", "list", "view", "cart", "purchase")
PX_KEYS = ("a", "e", "i", "o", "v", "cur", "p", "q", "gdpr", "gdpr_consent")
MAX_LINE = 8190  # aiohttp's limit on the request line and on one header line
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CAMPAIGNS = f"/api/v1/advertisers/{SHOP}/campaigns"

# The documented rules, written out again (full matches: no trailing newline sneaks through).
ORDER_RULE = re.compile(r"[A-Za-z0-9._:/#-]{1,64}")
CURRENCY_RULE = re.compile(r"[A-Z]{3}")
UID_RULE = re.compile(r"[A-Za-z0-9_-]{22}")
PUBLISHER_RULE = re.compile(r"[A-Za-z0-9._-]{1,64}")
SLOT_RULE = re.compile(r"[A-Za-z0-9._-]{0,64}")
SKU_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f,]")
BASE64URL = string.ascii_letters + string.digits + "-_"


def fuzz(examples: int) -> Any:
    """Hypothesis settings for one fuzzer. No `explain` phase: it traces every line the
    in-process server runs and turns a failure's report into minutes."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- strategies -------------------------------------------------------------------------------

# Text an HTTP client can put into a header value (no CR, LF, NUL or other control characters).
HEADER_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30)
NUMBERS = (
    "0",
    "-0",
    "-5",
    "1e400",
    "-1e400",
    "1E-400",
    "1E-5000",
    "NaN",
    "-NaN",
    "sNaN",
    "Infinity",
    "-inf",
    "1e9",
    "1000000000.01",
    "12.5",
    "12,5",
    " 7 ",
    "1_000",
    "0x10",
    "\u0661\u0662",  # Arabic-Indic digits: int() and Decimal() accept them
    "\uff19",
    "99999999999999999999999999",
    "1" * 5000,
)
LONG_TEXT = st.builds(
    lambda piece, n: (piece * n)[:n],
    st.text(string.ascii_letters + string.digits + ",.-_ ", min_size=1, max_size=4)
    | st.text(min_size=1, max_size=2),
    st.integers(1000, 5200),
)
LONG_DECIMAL = st.builds(
    lambda lead, n: f"{lead}." + "0" * n + "1", st.sampled_from(["0", "1"]), st.integers(300, 5100)
)
NASTY = st.one_of(st.text(max_size=24), st.sampled_from(NUMBERS), LONG_TEXT, LONG_DECIMAL)
LONG_HEADER = st.builds(
    lambda piece, n: (piece * n)[:n],
    st.text(string.ascii_letters + string.digits + ' ;=,.-_"', min_size=1, max_size=4),
    st.integers(1000, 5200),
)
PLAUSIBLE: Mapping[str, Sequence[str]] = {
    "a": (SHOP, SHOP, OTHER_SHOP, "intruder", "SHOP1", " shop1", "shop1\n", ""),
    "e": (*EVENT_KINDS, "click", "View", ""),
    "i": (
        "sku-1",
        "sku-1,sku-2",
        "sku-1,,sku-3",
        ",",
        " sku-1",
        "sku-1 ",
        "a\tb",
        "x" * 65,
        ",".join(f"s{n}" for n in range(51)),
        "sku-1\n",
    ),
    "o": ("o-1", "o-2", "o-1\n", "o 1", "x" * 65, "", "o/1#2:3"),
    "v": ("21", "10.5", *NUMBERS),
    "cur": ("EUR", "EUR", "eur", "EUR\n", "EURO", "", "\u20ac"),
    "p": ("10.5", "10.5,1", "1e400", "NaN", ",,", ""),
    "q": ("1", "2,3", "0", "-1", "10001", "1.5", "\u0661", ""),
    "gdpr": ("0", "1", "", "true"),
    "gdpr_consent": ("CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", "garbage", ""),
}


@st.composite
def pixel_queries(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Mostly plausible pixel hits with a few fields swapped for garbage, plus random keys."""
    query = {key: draw(st.sampled_from(PLAUSIBLE[key])) for key in ("a", "e", "i")}
    for key in ("o", "v", "cur", "p", "q", "gdpr", "gdpr_consent"):
        if draw(st.booleans()):
            query[key] = draw(st.sampled_from(PLAUSIBLE[key]))
    for key in draw(st.lists(st.sampled_from(PX_KEYS), max_size=3, unique=True)):
        value = draw(st.none() | NASTY)
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    pairs = list(query.items())
    pairs += draw(st.lists(st.tuples(st.text(max_size=12) | st.sampled_from(PX_KEYS), NASTY)))
    return draw(st.permutations(pairs))


UID_LIKE = st.sampled_from(
    ["1", "A" * 22, "A" * 21, "A" * 23, "A" * 21 + "=", "<script>", '"' + "A" * 22 + '"', "%41" * 8]
)
COOKIE_VALUE = st.one_of(
    HEADER_TEXT,
    UID_LIKE,
    st.text(string.ascii_letters + string.digits + "-_", min_size=22, max_size=22),
    LONG_HEADER,
)
COOKIE_NAME = st.sampled_from(["uid", "uid", "optout", "UID", "uid ", "$Version", ""]) | HEADER_TEXT
COOKIE_HEADER = st.one_of(
    st.none(),
    COOKIE_VALUE.map(lambda v: f"uid={v}"),
    st.lists(st.tuples(COOKIE_NAME, COOKIE_VALUE), min_size=1, max_size=4).map(
        lambda pairs: "; ".join(f"{k}={v}" for k, v in pairs)
    ),
    HEADER_TEXT,
)
SIGNAL = st.sampled_from(["1", "0", "", " 1", "true"]) | HEADER_TEXT
HOSTS = st.sampled_from(
    ["evil.example", "[::1]", "localhost:99999", "a b", "\u00fc.example", "x" * 300, "@", ":"]
) | HEADER_TEXT.filter(lambda s: s.strip() != "")
XFF = st.lists(st.ip_addresses().map(str) | HEADER_TEXT, max_size=4).map(", ".join)
REQUEST_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Sec-GPC": SIGNAL,
        "DNT": SIGNAL,
        "User-Agent": st.sampled_from([BROWSER["User-Agent"], BOT_UA, ""]) | HEADER_TEXT,
        "Host": HOSTS,
        "X-Forwarded-For": XFF,
        "Referer": HEADER_TEXT,
        "Accept-Language": HEADER_TEXT,
    },
)

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too: orjson refuses those
    st.floats(),  # NaN and Infinity too: json.dumps writes them, orjson refuses them
    st.text(max_size=20),
    st.sampled_from(NUMBERS),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=12,
)
SKU = st.sampled_from(["sku-1", "sku-2", " sku", "a,b", "x" * 65, "\u00e9", "\x00", ""]) | JSON
AMOUNT = st.sampled_from(NUMBERS) | LONG_DECIMAL | JSON
LINE = st.fixed_dictionaries({"id": SKU}, optional={"price": AMOUNT, "quantity": AMOUNT})
EVENT = st.fixed_dictionaries(
    {},
    optional={
        "advertiser": st.sampled_from([SHOP, SHOP, OTHER_SHOP, "intruder"]) | JSON,
        "event": st.sampled_from([*EVENT_KINDS, "click"]) | JSON,
        "item": SKU,
        "items": st.lists(SKU | LINE, max_size=4) | JSON,
        "order": st.sampled_from(PLAUSIBLE["o"]) | JSON,
        "revenue": AMOUNT,
        "currency": st.sampled_from(PLAUSIBLE["cur"]) | JSON,
    },
)
BATCH = st.one_of(
    st.lists(EVENT | JSON, max_size=6),
    st.fixed_dictionaries(
        {"events": st.lists(EVENT | JSON, max_size=6) | JSON},
        optional={
            "gdpr": st.sampled_from([0, 1, "0", "1", ""]) | JSON,
            "gdpr_consent": st.sampled_from(PLAUSIBLE["gdpr_consent"]) | JSON,
        },
    ),
    JSON,
)
BODY = st.one_of(
    st.builds(
        lambda doc, ascii: json.dumps(doc, ensure_ascii=ascii).encode(), BATCH, st.booleans()
    ),
    st.binary(max_size=300),
    st.builds(lambda doc, cut: json.dumps(doc).encode()[:cut], BATCH, st.integers(0, 200)),
)
CONTENT_TYPE = (
    st.none()
    | HEADER_TEXT
    | st.sampled_from(
        [
            "application/json",
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=zzz",
            "text/csv",
            "application/x-ndjson",
            "image/gif",
        ]
    )
)
# (Content-Encoding, whether the body is really encoded that way)
ENCODING = st.one_of(
    st.just((None, True)),
    st.tuples(st.sampled_from(["gzip", "deflate", "br", "identity", "x-junk"]), st.booleans()),
)


def encode(body: bytes, encoding: str | None, honest: bool) -> tuple[bytes, bool]:
    """The body to send, and whether the server can decode it to `body`."""
    if encoding == "gzip" and honest:
        return gzip.compress(body), True
    if encoding == "deflate" and honest:
        return zlib.compress(body), True
    if encoding in ("gzip", "deflate", "br"):
        return body, False
    return body, True


def body_headers(content_type: str | None, encoding: str | None) -> dict[str, str]:
    headers = {"Connection": "close"}  # a refused body may leave the connection unusable
    if content_type is not None:
        headers["Content-Type"] = content_type
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return headers


# -- helpers ----------------------------------------------------------------------------------


def auth(token: str = SHOP_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def stream_length(client: TestClient[Any, Any]) -> int:
    redis = client.app[STORE].redis
    return sum([int(await redis.xlen(keys.event_stream(s))) for s in range(keys.EVENT_SHARDS)])


async def settle(client: TestClient[Any, Any]) -> None:
    """Wait until the pixel's writes are in Redis: its group commit flushed and whatever it had
    to buffer replayed by the background task (which retries every 0.25 s)."""
    writer = client.app[EVENT_WRITER]
    await writer._commit.drain()
    for _ in range(3):
        await asyncio.sleep(0)  # let the write's done-callback buffer a failed batch
    for _ in range(150):  # up to 3 s
        if not writer.buffer:
            break
        await asyncio.sleep(0.02)
    assert not writer.buffer, f"{len(writer.buffer)} events stuck in the write buffer"


async def last_event(client: TestClient[Any, Any]) -> dict[str, Any]:
    (event,) = await client.app[STORE].read_events(1)
    return event


def server_query(url: URL) -> MultiDictProxy[str]:
    """The query as the server parses it from the request target."""
    return URL(str(url), encoded=True).query


def _longest_line(target: str, headers: Mapping[str, str]) -> int:
    return max([len(target.encode()), *(len(v.encode()) for v in headers.values())])


def fits_http_limits(target: str, headers: Mapping[str, str]) -> bool:
    return _longest_line(target, headers) <= MAX_LINE


def near_http_limits(target: str, headers: Mapping[str, str]) -> bool:
    """Within a few bytes of aiohttp's limit, where what counts (header name, separators,
    the parser's own rounding) decides: refused or served, both are right."""
    return abs(_longest_line(target, headers) - MAX_LINE) <= 64


def opt_out_signals(headers: Mapping[str, str], cookie: str | None) -> tuple[bool, bool]:
    """(certainly opted out, possibly opted out or a bot) for the privacy headers sent."""
    certain = any(headers.get(h, "").strip(" \t") == "1" for h in ("Sec-GPC", "DNT"))
    agent = headers.get("User-Agent", BROWSER["User-Agent"])
    possible = certain or "optout" in (cookie or "") or agent != BROWSER["User-Agent"]
    return certain, possible


def is_valid_sku(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 64
        and value == value.strip()
        and SKU_FORBIDDEN.search(value) is None
    )


def assert_clean_event(event: Mapping[str, Any]) -> None:
    """A stored event obeys the documented rules (full matches: no trailing newline)."""
    assert event["advertiser"] in ADVERTISERS
    assert event["event"] in EVENT_KINDS
    assert all(is_valid_sku(sku) for sku in event["items"]), event["items"]
    assert UID_RULE.fullmatch(event["uid"]), event["uid"]
    if event["event"] != "purchase":
        return
    assert ORDER_RULE.fullmatch(event["order"]), f"stored order {event['order']!r}"
    currency = event["currency"]
    assert currency is None or CURRENCY_RULE.fullmatch(currency), f"stored currency {currency!r}"
    if event["revenue"] is not None:
        assert 0 <= Decimal(event["revenue"]) <= Decimal("1e9")


async def assert_gif(response: aiohttp.ClientResponse) -> None:
    assert response.status == 200, await response.text()
    assert await response.read() == TRANSPARENT_GIF
    assert response.content_type == "image/gif"
    assert response.headers["Cache-Control"] == "no-store"


async def assert_json_error(response: aiohttp.ClientResponse, *statuses: int) -> dict[str, Any]:
    text = await response.text()
    assert response.status in statuses, f"{response.status}: {text[:300]}"
    document: dict[str, Any] = json.loads(text)
    assert isinstance(document.get("error"), str)
    return document


def assert_no_5xx(response: aiohttp.ClientResponse, what: str) -> None:
    assert response.status < 500, f"{response.status} for {what}"


def uid_of(client: TestClient[Any, Any]) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))["uid"].value


async def raw_request(
    client: TestClient[Any, Any], head: bytes, body: bytes = b""
) -> tuple[int, bytes]:
    """Send bytes an HTTP client library would refuse to send; returns status and body."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split(b" ", 2)[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture
async def shopper(stocked: TestClient[Any, Any]) -> tuple[TestClient[Any, Any], str]:
    """The stocked client after a shopper viewed three products; its cookie jar is emptied,
    so examples send the cookies they choose. Returns the client and the shopper's uid."""
    for sku in ("sku-1", "sku-2", "sku-3"):
        response = await stocked.get("/px", params={"a": SHOP, "e": "view", "i": sku})
        assert response.status == 200
    uid = uid_of(stocked)
    stocked.session.cookie_jar.clear()
    return stocked, uid


# -- /px --------------------------------------------------------------------------------------


@fuzz(250)
@given(pairs=pixel_queries(), cookie=COOKIE_HEADER, headers=REQUEST_HEADERS)
async def test_pixel_always_answers_the_gif_and_stores_only_valid_events(
    client: TestClient[Any, Any],
    pairs: list[tuple[str, str]],
    cookie: str | None,
    headers: dict[str, str],
) -> None:
    client.session.cookie_jar.clear()
    url = URL("/px").with_query(pairs)
    if cookie is not None:
        headers = {**headers, "Cookie": cookie}
    before = await stream_length(client)
    response = await client.get(url, headers=headers)
    await settle(client)
    stored = await stream_length(client) - before
    what = f"GET {url} {headers}"
    if near_http_limits(str(url), headers):
        return  # see near_http_limits
    longest = len(str(url).encode())
    if abs(longest - MAX_REQUEST_LINE) <= 64:
        return  # see near_http_limits, at the pixel's own request-line limit
    if not fits_http_limits("/px", headers) or longest > MAX_REQUEST_LINE:
        assert 400 <= response.status < 500, what  # refused by aiohttp before Kaeru sees it
        assert stored == 0
        return
    if not fits_http_limits(str(url), {}):  # issue 11: a long pixel still gets its GIF
        assert response.status == 200, f"{response.status} for {what}"
        await assert_gif(response)
        assert stored == 0
        return
    assert response.status == 200, f"{response.status} for {what}"
    await assert_gif(response)

    query = server_query(url)
    expected = parse_pixel_query(query, ADVERTISERS)
    consent = may_personalise(query.get("gdpr"), query.get("gdpr_consent"))
    opted_out, maybe_untracked = opt_out_signals(headers, cookie)
    issued = response.cookies.get("uid")
    if issued is not None:
        assert UID_RULE.fullmatch(issued.value)
    if query.get("a") not in ADVERTISERS or isinstance(expected, Reject) or opted_out:
        assert stored == 0, f"stored an event from {what}"
        assert issued is None
        return
    if maybe_untracked or not consent:
        assert stored <= 1, f"one hit stored {stored} times: {what}"
        return
    assert stored == 1, f"valid hit stored {stored} times: {what}"
    assert issued is not None, f"event stored but no uid issued: {what}"
    assert_clean_event(await last_event(client))


@fuzz(40)
@given(
    header=st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    name=st.sampled_from([b"Cookie", b"User-Agent", b"Sec-GPC", b"Referer", b"Host"]),
)
async def test_pixel_survives_headers_that_are_not_utf8(
    client: TestClient[Any, Any], header: bytes, name: bytes
) -> None:
    head = b"GET /px?a=shop1&e=view&i=sku-1 HTTP/1.1\r\n" + name + b": " + header
    if name != b"Host":
        head += b"\r\nHost: 127.0.0.1"
    if name != b"User-Agent":
        head += b"\r\nUser-Agent: " + BROWSER["User-Agent"].encode()
    status, body = await raw_request(client, head)
    # 400: the HTTP parser refused the header itself; else the pixel answers its GIF
    assert status in (200, 400), f"{status} for {name.decode()}: {header!r}"
    assert status == 400 or body == TRANSPARENT_GIF


# -- /e ---------------------------------------------------------------------------------------


@fuzz(200)
@given(body=BODY, content_type=CONTENT_TYPE, encoding=ENCODING, cookie=COOKIE_HEADER)
async def test_event_batches_get_204_or_a_4xx_and_store_only_valid_events(
    client: TestClient[Any, Any],
    body: bytes,
    content_type: str | None,
    encoding: tuple[str | None, bool],
    cookie: str | None,
) -> None:
    client.session.cookie_jar.clear()
    sent, decodable = encode(body, *encoding)
    headers = body_headers(content_type, encoding[0])
    if cookie is not None:
        headers["Cookie"] = cookie
    before = await stream_length(client)
    response = await client.post("/e", data=sent, headers=headers)
    text = await response.text()
    await settle(client)
    stored = await stream_length(client) - before
    what = f"POST /e {headers} {sent[:200]!r}"
    if near_http_limits("/e", headers):
        return  # see near_http_limits
    if not fits_http_limits("/e", headers):
        assert 400 <= response.status < 500 and stored == 0, what
        return
    assert_no_5xx(response, what)
    if "optout" in (cookie or ""):
        assert response.status in (204, 400, 413)
        return
    if not decodable:
        assert 400 <= response.status < 500, what
        assert stored == 0
        return
    parsed = parse_batch(body[: MAX_BATCH_BYTES + 1], ADVERTISERS)
    if isinstance(parsed, Reject):
        valid = []
    elif not may_personalise(parsed.gdpr, parsed.gdpr_consent):
        assert response.status in (204, 400), f"{response.status} {text[:200]} for {what}"
        assert stored == 0
        return
    else:
        valid = [e for e in parsed.events if not isinstance(e, Reject)]
    if not valid:
        status = 413 if isinstance(parsed, Reject) and parsed.reason == "body_too_large" else 400
        assert response.status == status, f"{response.status} {text[:200]} for {what}"
        assert text.startswith("{") and isinstance(json.loads(text)["error"], str), text[:200]
        assert stored == 0
        return
    assert response.status == 204, f"{response.status} {text[:200]} for {what}"
    assert stored == len(valid)
    assert "uid" in response.cookies, f"{stored} events reached the stream, no uid: {what}"
    for event in await client.app[STORE].read_events(stored):
        assert_clean_event(event)


@pytest.mark.parametrize("size", [MAX_BATCH_BYTES + 1, 1024 * 1024, 5 * 1024 * 1024])
async def test_big_event_bodies_get_413_and_store_nothing(
    client: TestClient[Any, Any], size: int
) -> None:
    event = json.dumps([{"advertiser": SHOP, "event": "home"}]).encode()
    body = event + b" " * (size - len(event))  # valid JSON, only too big
    before = await stream_length(client)
    response = await client.post("/e", data=io.BytesIO(body))
    await assert_json_error(response, 413)
    assert await stream_length(client) == before


async def test_big_event_body_sent_in_chunks_gets_413(client: TestClient[Any, Any]) -> None:
    async def chunks() -> Any:
        yield b'[{"advertiser": "shop1", "event": "home"}'
        for _ in range(64):
            yield b" " * 4096
        yield b"]"

    before = await stream_length(client)
    response = await client.post("/e", data=chunks())
    await assert_json_error(response, 413)
    assert await stream_length(client) == before


async def test_event_body_of_exactly_the_limit_is_accepted(client: TestClient[Any, Any]) -> None:
    event = json.dumps([{"advertiser": SHOP, "event": "home"}]).encode()
    response = await client.post("/e", data=event + b" " * (MAX_BATCH_BYTES - len(event)))
    assert response.status == 204


# -- /ad, /ad.js, /ad.json --------------------------------------------------------------------

AD_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "pub": st.sampled_from(["news1", "blog2", "news1\n", "", "x" * 65, "a b"]) | NASTY,
        "size": st.sampled_from([*SIZES, "300X250", "300x250 ", "0x0", "300x250\n"]) | NASTY,
        "slot": st.sampled_from(["side", "", "a" * 65, "top\n", "<b>"]) | NASTY,
        "debug": st.sampled_from(["1", "0", "true"]) | NASTY,
    },
)
AD_AUTH = st.none() | st.sampled_from([auth(OPERATOR_TOKEN), auth(SHOP_TOKEN), auth("nope")])


@fuzz(150)
@given(
    route=st.sampled_from(["/ad", "/ad.js", "/ad.json"]),
    params=AD_PARAMS,
    extra=st.lists(st.tuples(st.text(max_size=8), NASTY), max_size=2),
    headers=REQUEST_HEADERS,
    authorization=AD_AUTH,
    cookie=st.none() | st.just("personal") | COOKIE_HEADER,
)
async def test_ad_requests_never_fail_and_unknown_sizes_get_400(
    shopper: tuple[TestClient[Any, Any], str],
    route: str,
    params: dict[str, str],
    extra: list[tuple[str, str]],
    headers: dict[str, str],
    authorization: dict[str, str] | None,
    cookie: str | None,
) -> None:
    client, uid = shopper
    client.session.cookie_jar.clear()
    url = URL(route).with_query([*params.items(), *extra])
    headers = {**headers, **(authorization or {})}
    if cookie is not None:
        headers["Cookie"] = f"uid={uid}" if cookie == "personal" else cookie
    response = await client.get(url, headers=headers)
    text = await response.text()
    what = f"GET {url} {headers}"
    if near_http_limits(str(url), headers):
        return  # see near_http_limits
    if not fits_http_limits(str(url), headers):
        assert 400 <= response.status < 500, what
        return
    assert_no_5xx(response, what)
    query = server_query(url)
    slot = parse_ad_request(query, client.app[RENDERER].formats)
    size_ok = query.get("size", "") in SIZES
    pub_ok = PUBLISHER_RULE.fullmatch(query.get("pub", "")) is not None
    slot_ok = SLOT_RULE.fullmatch(query.get("slot", "")) is not None
    if not (size_ok and pub_ok and slot_ok):
        assert response.status == 400, f"{response.status} for {what}"
        if route == "/ad":  # issue 11: the partner's iframe shows an empty document, not JSON
            assert response.content_type == "text/html" and "error" not in text, what
            return
        error = json.loads(text)
        assert isinstance(error["error"], str)
        if pub_ok and not size_ok:
            assert error["sizes"] == list(SIZES)
        return
    assert not isinstance(slot, Exception)
    if route == "/ad.json" and query.get("debug") == "1":
        if authorization != auth(OPERATOR_TOKEN):
            assert response.status == 403, what
            return
        assert "explanation" in json.loads(text)
        return
    if route == "/ad.json":
        assert response.status in (200, 204), what
        if response.status == 200:
            products = json.loads(text)["products"]
            assert all(urlsplit(p["click_url"]).path.startswith("/c/") for p in products)
    elif route == "/ad":
        assert response.status == 200 and response.content_type == "text/html", what
        assert "script" not in response.headers["Content-Security-Policy"]
    else:
        assert response.status == 200 and response.content_type == "application/javascript"
        assert "</" not in text and "/c/" not in text, what  # frames /ad; holds no creative


# -- /c/TOKEN and /i/TOKEN --------------------------------------------------------------------

# Character edits, plus the edits that matter for base64: change the unused low bits of a
# segment's last character, or add padding, either of which a lax decoder ignores.
MUTATION = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "replace", "low-bits", "pad"]),
    st.sampled_from([0, -1, -1, -2, -22, -23]) | st.integers(0, 10_000),  # ends, the "."
    st.sampled_from(BASE64URL + "=.!*% \t")
    | st.characters(codec="utf-8", exclude_categories=("Cs",)),
)


def mutate(token: str, ops: Sequence[tuple[str, int, str]]) -> str:
    for kind, position, char in ops:
        if not token:
            token = char
            continue
        if kind in ("low-bits", "pad"):
            ends = [i for i, c in enumerate(token) if c == "."] + [len(token)]
            end = ends[position % len(ends)]  # just after a segment's last character
            if kind == "pad":
                token = token[:end] + "=" * (1 + ord(char) % 2) + token[end:]
            elif end and token[end - 1] in BASE64URL:
                low_bits = 1 + ord(char) % 15  # keeps the character's top two bits
                value = BASE64URL[BASE64URL.index(token[end - 1]) ^ low_bits]
                token = token[: end - 1] + value + token[end:]
            continue
        index = position % len(token) if kind != "insert" else position % (len(token) + 1)
        if kind == "flip":
            char = chr(ord(token[index]) ^ 1)
        if kind == "insert":
            token = token[:index] + char + token[index:]
        elif kind == "delete":
            token = token[:index] + token[index + 1 :]
        else:
            token = token[:index] + char + token[index + 1 :]
    return token


@pytest.fixture
async def served(shopper: tuple[TestClient[Any, Any], str]) -> dict[str, Any]:
    client, uid = shopper
    response = await client.get(
        "/ad.json", params={"pub": "news1", "size": "300x250"}, headers={"Cookie": f"uid={uid}"}
    )
    assert response.status == 200, await response.text()
    ad = await response.json()
    product = ad["products"][0]
    return {
        "client": client,
        "uid": uid,
        "click": urlsplit(product["click_url"]).path.removeprefix("/c/"),
        "landing": f"https://shop1.example/p/{product['id']}",
        "render": urlsplit(ad["impression_url"]).path.removeprefix("/i/"),
    }


def token_path(prefix: str, token: str) -> URL:
    return URL(prefix + quote(token, safe=""), encoded=True)


def routable(token: str) -> bool:
    """Whether a path segment still reaches its route: the URL resolves dot segments away,
    aiohttp's `{name}` matches no brace, and the request line has a length limit."""
    return (
        token not in ("", ".", "..")
        and not {"{", "}"} & set(token)
        and len(quote(token, safe="")) < MAX_LINE - 100
    )


@fuzz(200)
@given(ops=st.lists(MUTATION, max_size=3), cookie=st.none() | COOKIE_HEADER)
@example(ops=[], cookie="; ".join(["uid=" + "0" * 3000] * 3))  # over the limit only as sent
async def test_click_redirects_only_for_the_untouched_token(
    served: dict[str, Any], ops: list[tuple[str, int, str]], cookie: str | None
) -> None:
    client, original = served["client"], served["click"]
    token = mutate(original, ops)
    # With cookies in its jar the client rewrites a Cookie header (one value per name), so
    # the header checked against aiohttp's limits below would not be the one sent.
    client.session.cookie_jar.clear()
    headers = {} if cookie is None else {"Cookie": cookie}
    response = await client.get(token_path("/c/", token), allow_redirects=False, headers=headers)
    what = f"GET /c/{quote(token, safe='')} (mutations {ops!r})"
    assert_no_5xx(response, what)
    if near_http_limits(str(token_path("/c/", token)), headers):
        return  # see near_http_limits
    if not fits_http_limits(str(token_path("/c/", token)), headers):
        assert not 300 <= response.status < 400, what
        return
    if token == original:
        assert response.status == 302, what
        assert landing_of(response.headers["Location"]) == served["landing"]
        return
    assert not 300 <= response.status < 400, f"altered token redirected: {what}"
    if routable(token):
        await assert_json_error(response, 400)


@fuzz(100)
@given(token=st.text(max_size=300) | LONG_TEXT | st.binary(max_size=120).map(lambda b: b.hex()))
async def test_random_click_tokens_get_400(client: TestClient[Any, Any], token: str) -> None:
    response = await client.get(token_path("/c/", token), allow_redirects=False)
    assert_no_5xx(response, f"GET /c/{quote(token, safe='')}")
    assert not 300 <= response.status < 400
    if routable(token):
        await assert_json_error(response, 400)


@fuzz(120)
@given(
    token=st.one_of(st.text(max_size=300), LONG_TEXT, st.lists(MUTATION, min_size=1, max_size=3)),
)
async def test_rendered_beacon_always_answers_the_gif(
    served: dict[str, Any], token: str | list[tuple[str, int, str]]
) -> None:
    if isinstance(token, list):
        token = mutate(served["render"], token)
    if not routable(token):
        return
    response = await served["client"].get(token_path("/i/", token))
    await assert_gif(response)


# -- admin API: without a valid token ---------------------------------------------------------


def segment(text: str) -> str:
    return quote(text, safe="") if routable(text) else "x"


ADMIN_ROUTES = (
    ("PUT", "/api/v1/advertisers/{adv}/products"),
    ("GET", "/api/v1/advertisers/{adv}/products"),
    ("GET", "/api/v1/advertisers/{adv}/campaigns"),
    ("PUT", "/api/v1/advertisers/{adv}/campaigns/{id}"),
    ("GET", "/api/v1/advertisers/{adv}/campaigns/{id}"),
    ("DELETE", "/api/v1/advertisers/{adv}/campaigns/{id}"),
    ("GET", "/api/v1/advertisers/{adv}/report"),
    ("POST", "/api/v1/advertisers/{adv}/conversions"),
    ("DELETE", "/api/v1/users/{id}"),
)
NEAR_TOKENS = st.sampled_from(TOKENS).flatmap(
    lambda t: st.sampled_from([t[:-1], t + "x", t.upper(), t[1:], t.replace("-", "_"), t * 2])
)
AUTHORIZATION = (
    st.none()
    | HEADER_TEXT
    | st.builds(
        lambda scheme, token: f"{scheme} {token}",
        st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "", "Bearer "]),
        HEADER_TEXT | NEAR_TOKENS | LONG_HEADER,
    )
)


def grants_access(authorization: str | None) -> bool:
    """Whether the server would read this header as a real token (as `bearer_token` does)."""
    if authorization is None:
        return False
    scheme, _, token = authorization.strip(" \t").partition(" ")
    return scheme.lower() == "bearer" and token.strip() in TOKENS


@fuzz(150)
@given(
    route=st.sampled_from(ADMIN_ROUTES),
    advertiser=st.sampled_from([SHOP, OTHER_SHOP, "nobody"]) | st.text(min_size=1, max_size=20),
    resource=st.sampled_from(["c1", "A" * 22]) | st.text(min_size=1, max_size=30),
    authorization=AUTHORIZATION,
    body=BODY,
    query=st.lists(st.tuples(st.sampled_from(["from", "to", "by", "format"]), NASTY), max_size=3),
)
async def test_admin_api_answers_nothing_without_a_valid_token(
    client: TestClient[Any, Any],
    route: tuple[str, str],
    advertiser: str,
    resource: str,
    authorization: str | None,
    body: bytes,
    query: list[tuple[str, str]],
) -> None:
    method, template = route
    path = template.format(adv=segment(advertiser), id=segment(resource))
    url = URL(path, encoded=True).with_query(query)
    headers = {"Connection": "close"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await client.request(method, url, data=body, headers=headers)
    what = f"{method} {url} {headers}"
    if near_http_limits(str(url), headers):
        return  # see near_http_limits
    if not fits_http_limits(str(url), headers):
        assert 400 <= response.status < 500, what
        return
    assert_no_5xx(response, what)
    if not grants_access(authorization):
        assert response.status in (401, 403), f"{response.status} for {what}"
        if response.status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


@fuzz(40)
@given(
    token=st.binary(min_size=1, max_size=40).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"") or b"\xff"
    ),
    path=st.sampled_from(
        [
            b"/api/v1/advertisers/shop1/products",
            b"/api/v1/advertisers/shop1/report",
            b"/api/v1/users/AAAAAAAAAAAAAAAAAAAAAA",
            b"/ad.json?pub=news1&size=300x250&debug=1",
        ]
    ),
)
async def test_admin_api_survives_tokens_that_are_not_utf8(
    client: TestClient[Any, Any], token: bytes, path: bytes
) -> None:
    method = b"DELETE" if path.startswith(b"/api/v1/users/") else b"GET"
    head = method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token
    status, _ = await raw_request(client, head)
    assert status in (400, 401, 403), f"{status} for Authorization: Bearer {token!r} on {path!r}"


# -- admin API: with shop1's token ------------------------------------------------------------

AUDIENCE = st.sampled_from(["viewers", "cart_abandoners", "past_buyers", "lapsed", "high_value"])
STRATEGY = st.sampled_from(["cart", "recent", "related", "cross_sell", "upsell", "popular"])


def maybe(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(plausible, plausible, JSON)


def section(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return maybe(st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()}))


SMALL_INT = st.integers(-2, 30) | st.integers()
DATE = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.dates(max_value=date(1, 1, 31)).map(lambda d: d.isoformat()),  # the ends of `date`
    st.dates(min_value=date(9999, 12, 1)).map(lambda d: d.isoformat()),
    st.sampled_from(["2026-02-30", "2026-1-1", "20261123", "2026-W01-1", "0000-00-00"]),
)
CAMPAIGN = st.fixed_dictionaries(
    {},
    optional={
        "name": maybe(st.text(max_size=120)),
        "status": maybe(st.sampled_from(["active", "paused", "on"])),
        "who": section(
            include=st.lists(AUDIENCE | st.text(max_size=8), max_size=3),
            exclude=st.lists(AUDIENCE, max_size=2),
            cart_abandoned_hours=SMALL_INT,
            lapsed_days=SMALL_INT,
            high_value=section(min_revenue=AMOUNT, min_orders=SMALL_INT),
        ),
        "what": section(strategies=st.lists(STRATEGY, max_size=4), products=SMALL_INT),
        "when": section(
            lookback_days=SMALL_INT,
            min_delay_minutes=SMALL_INT,
            cap_per_day=SMALL_INT,
            cap_per_item_per_day=SMALL_INT,
            hours=st.lists(st.integers(-1, 25), min_size=2, max_size=2),
            start=DATE,
            end=DATE,
        ),
        "where": section(
            sizes=st.lists(st.sampled_from(SIZES) | st.text(max_size=8), max_size=3),
            publishers=section(
                allow=st.lists(st.sampled_from(["news1", "blog2", "news1\n"]), max_size=2),
                deny=st.lists(st.sampled_from(["news1", "spam-site"]), max_size=2),
            ),
            countries=st.lists(st.sampled_from(["DE", "FR", "de", "XX"]), max_size=2),
        ),
        "bid": maybe(
            st.fixed_dictionaries(
                {"type": maybe(st.sampled_from(["cpm", "cpc", "cpx"])), "amount": AMOUNT}
            )
        ),
    },
)
CAMPAIGN_BODY = st.one_of(
    CAMPAIGN.map(lambda doc: json.dumps(doc).encode()),
    JSON.map(lambda doc: json.dumps(doc).encode()),
    st.binary(max_size=100),
)


@fuzz(80)
@given(
    campaign_id=st.sampled_from(["c1", "c1\n", "a" * 65]) | st.text(min_size=1, max_size=20),
    body=CAMPAIGN_BODY,
)
async def test_campaign_bodies_give_200_or_a_4xx_never_5xx(
    shopper: tuple[TestClient[Any, Any], str], campaign_id: str, body: bytes
) -> None:
    client, uid = shopper
    path = f"{CAMPAIGNS}/{segment(campaign_id)}"
    response = await client.put(URL(path, encoded=True), data=body, headers=auth())
    text = await response.text()
    what = f"PUT {path} {body[:300]!r}"
    assert_no_5xx(response, what)
    assert response.status in (200, 400, 413, 422), f"{response.status} for {what}"
    if response.status == 422:
        problems = json.loads(text)["problems"]
        assert problems and all(isinstance(p, str) for p in problems)
    if response.status != 200:
        return
    stored = json.loads(text)
    read = await client.get(URL(path, encoded=True), headers=auth())
    assert read.status == 200 and await read.json() == stored
    ad = await client.get(
        "/ad.json", params={"pub": "news1", "size": "300x250"}, headers={"Cookie": f"uid={uid}"}
    )
    assert ad.status in (200, 204), f"{ad.status} serving with campaign {stored!r}"
    gone = await client.delete(URL(path, encoded=True), headers=auth())
    assert gone.status == 204


REPORT_VALUE = st.none() | DATE | NASTY


@fuzz(120)
@given(
    start=REPORT_VALUE,
    end=REPORT_VALUE,
    by=st.none() | st.sampled_from(["day", "campaign", "publisher", "strategy", "size"]) | NASTY,
    fmt=st.none() | st.sampled_from(["csv", "json"]) | HEADER_TEXT,
    accept=st.none() | st.sampled_from(["text/csv", "application/json", "*/*"]) | HEADER_TEXT,
)
async def test_reports_answer_200_or_400(
    client: TestClient[Any, Any],
    start: str | None,
    end: str | None,
    by: str | None,
    fmt: str | None,
    accept: str | None,
) -> None:
    params = {k: v for k, v in {"from": start, "to": end, "by": by, "format": fmt}.items() if v}
    headers = auth() if accept is None else {**auth(), "Accept": accept}
    url = URL(f"/api/v1/advertisers/{SHOP}/report").with_query(params)
    response = await client.get(url, headers=headers)
    what = f"GET {url} {headers}"
    if near_http_limits(str(url), headers):
        return  # see near_http_limits
    if not fits_http_limits(str(url), headers):
        assert 400 <= response.status < 500, what
        return
    assert_no_5xx(response, what)
    if response.status != 200:
        await assert_json_error(response, 400)
    elif response.content_type == "text/csv":
        assert (await response.text()).startswith(params.get("by", "day"))
    else:
        assert isinstance((await response.json())["rows"], list)


CONVERSION = st.fixed_dictionaries(
    {},
    optional={
        "uid": st.sampled_from(["A" * 22, "B" * 22, "A" * 22 + "\n", "short"]) | JSON,
        "order": st.sampled_from(PLAUSIBLE["o"]) | JSON,
        "revenue": AMOUNT,
        "currency": st.sampled_from(PLAUSIBLE["cur"]) | JSON,
        "items": st.lists(SKU | LINE, max_size=3) | JSON,
        "advertiser": st.just(OTHER_SHOP),
        "event": st.just("view"),
    },
)


@fuzz(120)
@given(
    body=st.one_of(
        CONVERSION.map(lambda doc: json.dumps(doc).encode()),
        JSON.map(lambda doc: json.dumps(doc).encode()),
        st.binary(max_size=100),
    ),
    content_type=CONTENT_TYPE,
)
async def test_conversions_answer_200_or_400_never_5xx(
    client: TestClient[Any, Any], body: bytes, content_type: str | None
) -> None:
    before = await stream_length(client)
    response = await client.post(
        f"/api/v1/advertisers/{SHOP}/conversions",
        data=body,
        headers={**auth(), **body_headers(content_type, None)},
    )
    text = await response.text()
    stored = await stream_length(client) - before
    what = f"POST /api/v1/advertisers/{SHOP}/conversions {body[:300]!r}"
    assert response.status in (200, 400), f"{response.status} {text[:200]} for {what}"
    if response.status == 400:
        assert stored == 0, f"refused but stored: {what}"
        return
    answer = json.loads(text)
    assert isinstance(answer["attributed"], bool)
    if stored:
        event = await last_event(client)
        assert event["advertiser"] == SHOP
        assert_clean_event(event)


@fuzz(60)
@given(uid=st.sampled_from(["A" * 22, "A" * 22 + "\n", "A" * 21]) | st.text(min_size=1))
async def test_forgetting_a_user_answers_200_for_a_uid_and_400_for_anything_else(
    client: TestClient[Any, Any], uid: str
) -> None:
    path = f"/api/v1/users/{segment(uid)}"
    response = await client.delete(URL(path, encoded=True), headers=auth(OPERATOR_TOKEN))
    assert_no_5xx(response, f"DELETE {path}")
    if not routable(uid):
        return
    expected = 200 if UID_RULE.fullmatch(uid) else 400
    assert response.status == expected, f"{response.status} for DELETE {path}"


FEED_ROW = st.fixed_dictionaries(
    {},
    optional={
        "id": SKU,
        "title": maybe(st.text(max_size=40)),
        "link": maybe(st.sampled_from(["https://shop1.example/p/1", "javascript:alert(1)", "/p"])),
        "image_link": maybe(st.sampled_from(["https://shop1.example/i.jpg", "ftp://x/i.jpg"])),
        "price": maybe(st.sampled_from(["19.99", "19.99 EUR", "1e400", "-1", "NaN"]) | AMOUNT),
        "sale_price": AMOUNT,
        "currency": maybe(st.sampled_from(["EUR", "eur", "XXX", "EURO", ""])),
        "availability": maybe(st.sampled_from(["in stock", "in_stock", "sold out"])),
    },
)


def as_csv(rows: list[dict[str, Any]], delimiter: str, newline: str) -> bytes:
    columns = sorted({k for row in rows for k in row}) or ["id"]
    lines = [delimiter.join(columns)]
    lines += [delimiter.join(str(row.get(c, "")) for c in columns) for row in rows]
    return newline.join(lines).encode()


FEED = st.one_of(
    st.lists(FEED_ROW | JSON, max_size=5).map(lambda rows: json.dumps(rows).encode()),
    st.lists(FEED_ROW | JSON, max_size=5).map(
        lambda rows: "\n".join(json.dumps(r) for r in rows).encode()
    ),
    st.builds(
        as_csv,
        st.lists(FEED_ROW, max_size=5),
        st.sampled_from([",", ";", "\t", "|"]),
        st.sampled_from(["\n", "\r\n", "\r"]),  # "\r": classic Mac line endings
    ),
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
)


@fuzz(80)
@given(body=FEED, content_type=CONTENT_TYPE, encoding=ENCODING)
async def test_product_feeds_answer_200_or_a_4xx_never_5xx(
    client: TestClient[Any, Any],
    body: bytes,
    content_type: str | None,
    encoding: tuple[str | None, bool],
) -> None:
    sent, decodable = encode(body, *encoding)
    response = await client.put(
        f"/api/v1/advertisers/{SHOP}/products",
        data=sent,
        headers={**auth(), **body_headers(content_type, encoding[0])},
    )
    text = await response.text()
    what = f"PUT products {body_headers(content_type, encoding[0])} {sent[:300]!r}"
    assert_no_5xx(response, what)
    assert response.status in (200, 400, 413, 422), f"{response.status} {text[:200]} for {what}"
    if not decodable:
        assert 400 <= response.status < 500, what


@fuzz(100)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.sampled_from(["/optout", "/report", "/healthz", "/metrics", "/tag.js", "/"])
    | st.text(max_size=40).map(lambda p: "/" + quote(p).lstrip("/")),
    query=st.lists(st.tuples(st.sampled_from(["undo", "x"]) | st.text(max_size=5), NASTY)),
    cookie=COOKIE_HEADER,
)
async def test_any_other_request_never_gets_a_5xx(
    client: TestClient[Any, Any],
    method: str,
    path: str,
    query: list[tuple[str, str]],
    cookie: str | None,
) -> None:
    client.session.cookie_jar.clear()
    url = URL(path, encoded=True).with_query(query)
    headers = {} if cookie is None else {"Cookie": cookie}
    if near_http_limits(str(url), headers):
        return  # see near_http_limits
    if not fits_http_limits(str(url), headers):
        return  # aiohttp's own 400 (with a body even for HEAD, which confuses its client)
    response = await client.request(
        method, url, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(10)
    )
    assert_no_5xx(response, f"{method} {url} {headers}")


# -- targeted cases ---------------------------------------------------------------------------


async def test_ten_megabyte_feed_of_one_row_repeated_is_answered_quickly(
    client: TestClient[Any, Any],
) -> None:
    header = "id,title,link,image_link,price,currency,description\n"
    row = (
        "sku-1,Product,https://shop1.example/p/1,https://shop1.example/i/1.jpg,19.90,EUR,"
        + "d" * 900
        + "\n"
    )
    repeats = 10 * 1024 * 1024 // len(row)
    body = (header + row * repeats).encode()
    response = await client.put(
        f"/api/v1/advertisers/{SHOP}/products",
        data=io.BytesIO(body),
        headers={**auth(), "Content-Type": "text/csv"},
    )
    assert response.status == 200, await response.text()
    summary = await response.json()
    assert (summary["accepted"], summary["rejected"]) == (1, repeats - 1)
    assert len(summary["rejections"]) <= 1000
    assert summary["rejections"][0]["reason"] == "duplicate id 'sku-1'"


PIECES = {
    "/e": (b'[{"advertiser": "shop1", ', b'"event": "view", "items": ["sku-1"]}]', 204),
    f"/api/v1/advertisers/{SHOP}/campaigns/c1": (
        b'{"name": "Viewers", ',
        b'"bid": {"type": "cpm", "amount": "2.50"}}',
        200,
    ),
    f"/api/v1/advertisers/{SHOP}/conversions": (
        b'{"uid": "AAAAAAAAAAAAAAAAAAAAAA", ',
        b'"order": "o-9", "items": ["sku-1"]}',
        200,
    ),
    f"/api/v1/advertisers/{SHOP}/products": (
        json.dumps([product_row("sku-1")]).encode()[:-1],
        b", " + json.dumps(product_row("sku-2")).encode() + b"]",
        200,
    ),
}


@pytest.mark.parametrize("path", list(PIECES))
async def test_body_arriving_in_pieces_is_read_whole(
    client: TestClient[Any, Any], path: str
) -> None:
    """A slow client: the body arrives in two pieces; the handler must read all of it."""
    first, second, status = PIECES[path]

    async def pieces() -> Any:
        yield first
        await asyncio.sleep(0.05)
        yield second

    method = "POST" if path in ("/e", f"/api/v1/advertisers/{SHOP}/conversions") else "PUT"
    response = await client.request(method, path, data=pieces(), headers=auth())
    assert response.status == status, await response.text()
    if path.endswith("/products"):
        assert (await response.json())["accepted"] == 2


CSV_HEADER = "id,title,link,image_link,price,currency"
CSV_ROW = "sku-1,Shoe,https://shop1.example/p/1,https://shop1.example/i/1.jpg,19.90,EUR"


@pytest.mark.parametrize(
    ("feed", "statuses"),
    [
        (f"{CSV_HEADER}\r{CSV_ROW}\r", (200,)),  # CR-only line endings (classic Mac exports)
        (f"{CSV_HEADER}\n{CSV_ROW}\nsku-2,{'x' * 200_000}\n", (200, 400, 422)),  # 200 KB field
        ("\r0", (400, 422)),
    ],
    ids=["cr-line-endings", "field-over-128-kb", "cr-garbage"],
)
async def test_csv_feeds_the_csv_module_chokes_on_get_no_500(
    client: TestClient[Any, Any], feed: str, statuses: tuple[int, ...]
) -> None:
    """`csv` raises `csv.Error` on a bare CR in an unquoted field and on a field over 128 KB."""
    response = await client.put(
        f"/api/v1/advertisers/{SHOP}/products",
        data=feed.encode(),
        headers={**auth(), "Content-Type": "text/csv"},
    )
    assert response.status in statuses, f"{response.status}: {await response.text()}"


@pytest.mark.parametrize("route", ["/px?a=shop1&e=view&i=sku-1", "/ad.json?pub=n&size=300x250"])
async def test_header_of_more_than_8_kb_is_refused_with_4xx(
    client: TestClient[Any, Any], route: str
) -> None:
    before = await stream_length(client)
    response = await client.get(route, headers={"X-Padding": "y" * 9000})
    assert 400 <= response.status < 500
    response = await client.get(route, headers={"Cookie": "uid=" + "A" * 9000})
    assert 400 <= response.status < 500
    assert await stream_length(client) == before


async def test_query_string_of_16_kb_gets_the_gif_and_is_stored_nowhere(
    client: TestClient[Any, Any],
) -> None:
    """Issue 11: over aiohttp's former 8 KB line limit the pixel still answers its GIF (it was
    a 4xx), and stores nothing."""
    before = await stream_length(client)
    for padding in ("z=" + "x" * 16_384, "i=" + ",".join(["sku-1"] * 2800)):
        url = URL(f"/px?a={SHOP}&e=view&{padding}", encoded=True)
        await assert_gif(await client.get(url))
    assert await stream_length(client) == before
    # just under aiohttp's 8190-byte request line, the pixel answers its GIF as usual
    url = URL(f"/px?a={SHOP}&e=view&i=sku-1&z=" + "x" * 8000, encoded=True)
    await assert_gif(await client.get(url))
    assert await stream_length(client) == before + 1


# -- bugs found by the fuzzers, pinned with the exact request ---------------------------------


async def test_report_ending_in_the_first_week_of_year_one_is_a_400(
    client: TestClient[Any, Any],
) -> None:
    """`from` defaults to `to` minus 6 days, which overflows `date` before 0001-01-07."""
    response = await client.get(
        f"/api/v1/advertisers/{SHOP}/report", params={"to": "0001-01-01"}, headers=auth()
    )
    await assert_json_error(response, 400)


@pytest.mark.parametrize(
    "revenue",
    ["1E-5000", "1." + "0" * 5200 + "1"],
    ids=["tiny-exponent", "5-kb-of-digits"],
)
async def test_revenue_redis_cannot_add_is_refused_or_stored_whole(
    stocked: TestClient[Any, Any], revenue: str
) -> None:
    """Redis HINCRBYFLOAT refuses these amounts (underflow; > 5 KB): today the purchase is
    half-applied by the per-user script, its event still reaches the stream, the pixel issues no
    uid, and the conversions API answers 503."""
    params = {"a": SHOP, "e": "purchase", "i": "sku-1", "o": "o-1", "v": revenue, "cur": "EUR"}
    before = await stream_length(stocked)
    response = await stocked.get("/px", params=params)
    await assert_gif(response)
    stored = await stream_length(stocked) - before
    assert stored == ("uid" in response.cookies), f"stream +{stored}, cookie {response.cookies}"

    stocked.session.cookie_jar.clear()
    before = await stream_length(stocked)
    conversion = {"uid": "A" * 22, "order": "o-2", "revenue": revenue, "currency": "EUR"}
    response = await stocked.post(
        f"/api/v1/advertisers/{SHOP}/conversions",
        json={**conversion, "items": ["sku-1"]},
        headers=auth(),
    )
    assert response.status in (200, 400), f"{response.status}: {await response.text()}"
    assert (await stream_length(stocked) - before) == (response.status == 200)


@pytest.mark.parametrize(
    "params",
    [
        {"a": SHOP, "e": "purchase", "i": "sku-1", "o": "o-1\n", "v": "1", "cur": "EUR"},
        {"a": SHOP, "e": "purchase", "i": "sku-1", "o": "o-1", "v": "1", "cur": "EUR\n"},
    ],
    ids=["order", "currency"],
)
async def test_trailing_newline_is_not_part_of_a_valid_order_or_currency(
    client: TestClient[Any, Any], params: dict[str, str]
) -> None:
    """`^…$` lets one trailing newline through (`re.match`): use `fullmatch`."""
    before = await stream_length(client)
    await assert_gif(await client.get("/px", params=params))
    assert await stream_length(client) == before


async def test_trailing_newline_is_not_part_of_a_publisher_or_slot(
    client: TestClient[Any, Any],
) -> None:
    for params in (
        {"pub": "news1\n", "size": "300x250"},
        {"pub": "n", "size": "300x250", "slot": "s\n"},
    ):
        response = await client.get("/ad.json", params=params)
        await assert_json_error(response, 400)
    uid = "A" * 22 + "%0A"
    response = await client.delete(
        URL(f"/api/v1/users/{uid}", encoded=True), headers=auth(OPERATOR_TOKEN)
    )
    await assert_json_error(response, 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/e"),
        ("PUT", f"/api/v1/advertisers/{SHOP}/products"),
        ("PUT", f"/api/v1/advertisers/{SHOP}/campaigns/c1"),
        ("POST", f"/api/v1/advertisers/{SHOP}/conversions"),
    ],
)
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_body_that_does_not_decode_is_a_400(
    client: TestClient[Any, Any], method: str, path: str, encoding: str
) -> None:
    response = await client.request(
        method,
        path,
        data=b'[{"advertiser": "shop1", "event": "home"}]',  # not compressed at all
        headers={**auth(), "Content-Encoding": encoding, "Connection": "close"},
    )
    assert 400 <= response.status < 500, f"{response.status}: {await response.text()}"


async def test_token_that_is_not_utf8_is_a_401(client: TestClient[Any, Any]) -> None:
    head = (
        b"GET /api/v1/advertisers/shop1/products HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer \xff\xfe-token"
    )
    assert (await raw_request(client, head))[0] == 401


@pytest.mark.parametrize(
    "alter",
    [lambda t: t + "=", lambda t: t[:-1] + chr(ord(t[-1]) + 1), lambda t: t[:4] + "!!!!" + t[4:]],
    ids=["padding-appended", "unused-low-bits-of-last-character", "non-alphabet-characters"],
)
async def test_altered_click_token_redirects_nowhere(served: dict[str, Any], alter: Any) -> None:
    """README: "a forged, altered or expired token answers 400 and redirects nowhere"."""
    client, token = served["client"], served["click"]
    assert (await client.get(token_path("/c/", token), allow_redirects=False)).status == 302
    altered = alter(token)
    assert altered != token
    response = await client.get(token_path("/c/", altered), allow_redirects=False)
    await assert_json_error(response, 400)
