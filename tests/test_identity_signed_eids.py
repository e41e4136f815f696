"""A partner's `eid` on `/ad` and `/ad.js` personalises only when its publisher's server signed
it (`eid_sig`, `eid_exp`: HMAC-SHA256 with the publisher's token over "pub\\neid\\nexpiry"). An
e-mail's hash is no secret: without the signature anyone who knows an address could read that
shopper's viewed products with a bare request. Against the real Redis."""

from __future__ import annotations

import hashlib
import hmac
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.cli import DEMO_EID_SECONDS, _demo_eid_signer
from adserver.config.settings import Settings
from adserver.demo.pages import DEMO_PUBLISHER, DemoSites, add_demo_routes
from adserver.identity.eid_signatures import (
    MAX_AHEAD_SECONDS,
    EidSignature,
    parse_signature,
    refusal,
    sign_eid,
)
from adserver.identity.identifiers import email_sha256_of
from adserver.runtime.embedded_redis import free_port
from tests.conftest import BROWSER, SHOP, product_row, put_catalog

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

PUBLISHER, PUBLISHER_TOKEN = "news1", "news1-token-0123456789"
OTHER_PUBLISHER, OTHER_PUBLISHER_TOKEN = "news2", "news2-token-0123456789"
VICTIM = email_sha256_of("victim@example.com")
OTHER = email_sha256_of("someone.else@example.com")
TOKENS = {PUBLISHER: PUBLISHER_TOKEN, OTHER_PUBLISHER: OTHER_PUBLISHER_TOKEN}
AD = {"pub": PUBLISHER, "size": "300x250"}
VIEWED = "Product sku-4"
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
async def shop(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """Two registered publishers; shop1 sells sku-1 .. sku-6; the victim identified on the shop
    and viewed sku-4 (another shopper, sku-2); the test's browser then keeps no cookie."""
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    app = create_app(replace(settings, publishers=TOKENS))
    client: TestClient[Any, Any] = await aiohttp_client(
        app, server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    for eid, sku in ((VICTIM, "sku-4"), (OTHER, "sku-2")):
        client.session.cookie_jar.clear()
        events = [
            {"advertiser": SHOP, "event": "identify", "email_sha256": eid},
            {"advertiser": SHOP, "event": "view", "items": [sku]},
        ]
        assert (await client.post("/e", json={"events": events})).status == 204
    client.session.cookie_jar.clear()
    return client


def signed(
    eid: str = VICTIM,
    *,
    token: str = PUBLISHER_TOKEN,
    pub: str = PUBLISHER,
    ahead: int = 600,
) -> dict[str, str]:
    expiry = int(time.time()) + ahead
    return {"eid": eid, "eid_sig": sign_eid(token, pub, eid, expiry), "eid_exp": str(expiry)}


async def frame(client: TestClient[Any, Any], params: dict[str, str]) -> tuple[int, str]:
    response = await client.get("/ad", params=params)
    return response.status, await response.text()


async def metrics(client: TestClient[Any, Any]) -> str:
    return await (await client.get("/metrics")).text()


def refused(reason: str, count: float = 1.0) -> str:
    return f'kaeru_eids_refused_total{{reason="{reason}"}} {count}'


def test_the_signature_is_hmac_sha256_of_pub_eid_and_expiry_with_the_publishers_token() -> None:
    """What a publisher's server computes, written out as the README says."""
    expected = hmac.new(
        PUBLISHER_TOKEN.encode(), f"{PUBLISHER}\n{VICTIM}\n1764000000".encode(), hashlib.sha256
    ).hexdigest()
    assert sign_eid(PUBLISHER_TOKEN, PUBLISHER, VICTIM, 1764000000) == expected
    now = 1764000000 - 60
    good = EidSignature(expected, 1764000000)
    assert refusal(PUBLISHER_TOKEN, PUBLISHER, VICTIM, good, now) is None
    assert refusal(PUBLISHER_TOKEN, PUBLISHER, VICTIM, None, now) == "unsigned"
    assert refusal(None, PUBLISHER, VICTIM, good, now) == "unregistered_publisher"
    assert refusal(PUBLISHER_TOKEN, PUBLISHER, VICTIM, good, 1764000001) == "expired"
    far = now - MAX_AHEAD_SECONDS - 1
    assert refusal(PUBLISHER_TOKEN, PUBLISHER, VICTIM, good, far) == "too_far_ahead"
    assert refusal(PUBLISHER_TOKEN, OTHER_PUBLISHER, VICTIM, good, now) == "bad_signature"
    assert refusal(PUBLISHER_TOKEN, PUBLISHER, OTHER, good, now) == "bad_signature"
    assert refusal(OTHER_PUBLISHER_TOKEN, PUBLISHER, VICTIM, good, now) == "bad_signature"
    assert parse_signature(None, None) is None
    assert parse_signature(expected, "1764000000") == good


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_the_readmes_node_snippet_signs_as_kaeru_checks() -> None:
    """The README's Node.js lines, run as they are printed there, agree with `sign_eid`."""
    readme = README.read_text(encoding="utf-8")
    snippet = re.search(r"```js\n(// A publisher's server.*?)```", readme, re.S)
    assert snippet is not None, "the README's Node.js signing snippet"
    program = snippet[1] + (
        f"\nconsole.log(JSON.stringify(signEid({PUBLISHER_TOKEN!r}, {PUBLISHER!r}, "
        f"{VICTIM!r}, 1764000000)));\n"
    )
    out = subprocess.run(
        ["node", "-e", program], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    answer = orjson.loads(out.strip().splitlines()[-1])
    assert answer["eid_sig"] == sign_eid(PUBLISHER_TOKEN, PUBLISHER, VICTIM, 1764000000)
    assert answer["eid"] == VICTIM and answer["eid_exp"] == 1764000000


def test_the_readmes_python_snippet_signs_as_kaeru_checks() -> None:
    readme = README.read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(# A publisher's server.*?)```", readme, re.S)
    assert snippet is not None, "the README's Python signing snippet"
    scope: dict[str, Any] = {}
    exec(snippet[1], scope)  # noqa: S102 - the README's own lines
    answer = scope["sign_eid"](PUBLISHER_TOKEN, PUBLISHER, VICTIM, 1764000000)
    assert answer["eid_sig"] == sign_eid(PUBLISHER_TOKEN, PUBLISHER, VICTIM, 1764000000)
    assert answer["eid"] == VICTIM and answer["eid_exp"] == 1764000000
    assert int(scope["sign_eid"](PUBLISHER_TOKEN, PUBLISHER, VICTIM)["eid_exp"]) > time.time()


async def test_a_signed_eid_personalises_the_frame(shop: TestClient[Any, Any]) -> None:
    status, html = await frame(shop, {**AD, **signed()})
    assert status == 200 and VIEWED in html
    assert "kaeru_eids_refused_total{" not in await metrics(shop)


async def test_a_bare_eid_reads_nobodys_history(shop: TestClient[Any, Any]) -> None:
    """The red team's request: a bare `curl /ad?eid=sha256(victim)`, no cookie, no token."""
    jar = aiohttp.DummyCookieJar()  # no cookie kept: as a bare curl with a browser's headers
    async with aiohttp.ClientSession(headers=BROWSER, cookie_jar=jar) as curl:
        async with curl.get(shop.make_url("/ad"), params={**AD, "eid": VICTIM}) as response:
            assert response.status == 200
            assert VIEWED not in await response.text()
        script_url = shop.make_url("/ad.js")
        async with curl.get(script_url, params={**AD, "eid": VICTIM}) as response:
            src = re.search(r'f\.src="([^"]+)"', await response.text())
        assert src is not None
        async with curl.get(src[1]) as response:
            assert VIEWED not in await response.text()
    assert refused("unsigned", 2.0) in await metrics(shop)


def _expired() -> dict[str, str]:
    return signed(ahead=-1)


def _far_future() -> dict[str, str]:
    return signed(ahead=MAX_AHEAD_SECONDS + 120)


def _altered_eid() -> dict[str, str]:
    return {**signed(OTHER), "eid": VICTIM}  # someone's signature, the victim's hash


def _altered_expiry() -> dict[str, str]:
    good = signed()
    return {**good, "eid_exp": str(int(good["eid_exp"]) + 60)}


def _altered_signature() -> dict[str, str]:
    good = signed()
    flipped = "0" if good["eid_sig"][0] != "0" else "1"
    return {**good, "eid_sig": flipped + good["eid_sig"][1:]}


@pytest.mark.parametrize(
    ("make", "pub", "reason"),
    [
        (lambda: {"eid": VICTIM}, PUBLISHER, "unsigned"),
        (lambda: signed(token="not-the-publishers-token-0123"), PUBLISHER, "bad_signature"),
        # another registered publisher's signature, its own pub in the message or this one's
        (
            lambda: signed(token=OTHER_PUBLISHER_TOKEN, pub=OTHER_PUBLISHER),
            PUBLISHER,
            "bad_signature",
        ),
        (lambda: signed(token=OTHER_PUBLISHER_TOKEN), PUBLISHER, "bad_signature"),
        # news1's signature on news2's ad request
        (lambda: signed(), OTHER_PUBLISHER, "bad_signature"),
        (_expired, PUBLISHER, "expired"),
        (_far_future, PUBLISHER, "too_far_ahead"),
        (_altered_eid, PUBLISHER, "bad_signature"),
        (_altered_expiry, PUBLISHER, "bad_signature"),
        (_altered_signature, PUBLISHER, "bad_signature"),
    ],
    ids=[
        "unsigned",
        "wrong_key",
        "other_publishers",
        "other_publishers_key",
        "for_another_pub",
        "expired",
        "far_future",
        "altered_eid",
        "altered_expiry",
        "altered_signature",
    ],
)
async def test_an_eid_its_publisher_did_not_vouch_for_personalises_nothing(
    shop: TestClient[Any, Any], make: Any, pub: str, reason: str
) -> None:
    """Not personalised (the anonymous ad, never the victim's products, never a 5xx) and
    counted; the same frame signed right shows them."""
    params = {**AD, "pub": pub, **make()}
    status, html = await frame(shop, params)
    assert status == 200 and VIEWED not in html
    script = await shop.get("/ad.js", params=params)
    assert script.status == 200  # the script frames /ad, which checks
    assert refused(reason) in await metrics(shop)
    good = signed(token=TOKENS[pub], pub=pub)
    status, html = await frame(shop, {**AD, "pub": pub, **good})
    assert status == 200 and VIEWED in html


async def test_an_unregistered_publisher_cannot_vouch(
    aiohttp_client: Any, settings: Settings
) -> None:
    """With no KAERU_PUBLISHERS every `pub=` is served, but none has a token to sign with:
    an eid personalises no frame (`/ad.json` still takes the operator's token)."""
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings), headers=BROWSER)
    await put_catalog(client, [product_row("sku-4")])
    events = [
        {"advertiser": SHOP, "event": "identify", "email_sha256": VICTIM},
        {"advertiser": SHOP, "event": "view", "items": ["sku-4"]},
    ]
    await client.post("/e", json={"events": events})
    client.session.cookie_jar.clear()
    status, html = await frame(client, {**AD, **signed()})
    assert status == 200 and VIEWED not in html
    assert refused("unregistered_publisher") in await metrics(client)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"eid_sig": "ab" * 32}, "bad_eid_signature"),  # no eid_exp
        ({"eid_exp": "1764000000"}, "bad_eid_signature"),  # no eid_sig
        ({"eid_sig": "AB" * 32, "eid_exp": "1764000000"}, "bad_eid_signature"),
        ({"eid_sig": "ab" * 31, "eid_exp": "1764000000"}, "bad_eid_signature"),
        ({"eid_sig": "ab" * 32, "eid_exp": "-1"}, "bad_eid_expiry"),
        ({"eid_sig": "ab" * 32, "eid_exp": "17e8"}, "bad_eid_expiry"),
        ({"eid_sig": "ab" * 32, "eid_exp": "0123"}, "bad_eid_expiry"),
        ({"eid_sig": "ab" * 32, "eid_exp": "9" * 13}, "bad_eid_expiry"),
    ],
)
async def test_a_malformed_signature_is_a_clear_400(
    shop: TestClient[Any, Any], params: dict[str, str], reason: str
) -> None:
    query = {**AD, "eid": VICTIM, **params}
    status, html = await frame(shop, query)
    assert status == 400 and VIEWED not in html  # the frame: an empty document
    script = await shop.get("/ad.js", params=query)
    assert script.status == 400 and "eid_" in (await script.json())["error"]
    text = await metrics(shop)
    assert f'kaeru_bad_requests_total{{reason="{reason}",route="ad"}} 2.0' in text


async def test_ad_js_carries_the_signature_to_its_frame(shop: TestClient[Any, Any]) -> None:
    vouched = signed()
    script = await shop.get("/ad.js", params={**AD, "slot": "inline", **vouched})
    assert script.status == 200
    src = re.search(r'f\.src="([^"]+)"', await script.text())
    assert src is not None
    parts = urlsplit(src[1])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == "/ad" and query == {**AD, "slot": "inline", **vouched}
    status, html = await frame(shop, query)
    assert status == 200 and VIEWED in html


async def test_ad_json_keeps_needing_the_token_not_a_signature(
    shop: TestClient[Any, Any],
) -> None:
    """A signature is no bearer token: `/ad.json`, whose answer the page reads, still needs
    the publisher's token, and with it needs no signature."""
    bare = await shop.get("/ad.json", params={**AD, **signed()})
    assert bare.status == 403
    auth = {"Authorization": f"Bearer {PUBLISHER_TOKEN}"}
    answer = await shop.get("/ad.json", params={**AD, "eid": VICTIM}, headers=auth)
    assert answer.status == 200 and (await answer.json())["strategy"] == "recent"


# -- the cross-site demo's partner: its server signs its reader's hash -----------------------------

DEMO_TOKEN = "demo-news-token-0123456789"
SITES = DemoSites(
    shop="http://localhost:8080", partner="http://127.0.0.1:8080", kaeru="http://localhost:8080"
)


@pytest.fixture
async def demo(aiohttp_client: Any) -> TestClient[Any, Any]:
    app = web.Application()
    add_demo_routes(app, SITES, _demo_eid_signer(DEMO_PUBLISHER, DEMO_TOKEN))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def test_the_demo_partner_signs_a_hashed_email(demo: TestClient[Any, Any]) -> None:
    response = await demo.post("/demo/partner/sign", json={"eid": VICTIM})
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    answer = await response.json()
    assert set(answer) == {"eid", "eid_sig", "eid_exp"} and answer["eid"] == VICTIM
    assert answer["eid_exp"] - time.time() == pytest.approx(DEMO_EID_SECONDS, abs=5)
    vouched = parse_signature(answer["eid_sig"], str(answer["eid_exp"]))
    assert isinstance(vouched, EidSignature)
    assert refusal(DEMO_TOKEN, DEMO_PUBLISHER, VICTIM, vouched, time.time()) is None
    html = await (await demo.get("/demo/partner/")).text()
    assert 'fetch("/demo/partner/sign"' in html and '"eid", "eid_sig", "eid_exp"' in html


@pytest.mark.parametrize(
    "body",
    [
        {"eid": "victim@example.com"},
        {"eid": "Victim@Example.com"},
        {"email": "victim@example.com"},
        {"eid": VICTIM.upper()},
        {"eid": VICTIM[:-1]},
        {"eid": 12},
        [VICTIM],
        "victim@example.com",
    ],
)
async def test_the_demo_partner_signs_only_hashes_never_an_email(
    demo: TestClient[Any, Any], body: Any
) -> None:
    response = await demo.post("/demo/partner/sign", data=orjson.dumps(body))
    assert response.status == 400
    answer = await response.text()
    assert "eid_sig" not in answer and "victim@" not in answer.lower()


async def test_the_demo_partner_refuses_a_large_or_unreadable_body(
    demo: TestClient[Any, Any],
) -> None:
    big = await demo.post("/demo/partner/sign", data=b'{"eid": "' + b"a" * 2000 + b'"}')
    assert big.status == 413
    broken = await demo.post("/demo/partner/sign", data=b"eid=" + VICTIM.encode())
    assert broken.status == 400


async def test_only_the_cross_site_demo_signs(aiohttp_client: Any) -> None:
    """The one-site demo has no log-in box and no signing route (Kaeru's cookie is
    first-party there); a cross-site demo without a publisher token neither."""
    for sites, signer in ((None, _demo_eid_signer(DEMO_PUBLISHER, DEMO_TOKEN)), (SITES, None)):
        app = web.Application()
        add_demo_routes(app, sites, signer)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        response = await client.post("/demo/partner/sign", json={"eid": VICTIM})
        assert response.status in (404, 405)
