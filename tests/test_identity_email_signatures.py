"""Only a hashed e-mail its shop's server signed joins the shop's e-mail audiences
(`adserver.identity.email_signatures`): unsigned, forged, expired, too-far-ahead, another
shop's or another hash's signatures are refused (counted), the identify still linking for ads."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adserver.cli import _demo_email_signer
from adserver.demo.pages import DEMO_ADVERTISER, DemoSites, add_demo_routes
from adserver.http.app_keys import IDENTITY
from adserver.identity.email_signatures import (
    MAX_AHEAD_SECONDS,
    parse_email_signature,
    refusal,
    sign_email,
)
from adserver.identity.identifiers import Identify, email_sha256_of
from tests.conftest import OTHER_SHOP, OTHER_TOKEN, SHOP, SHOP_TOKEN
from tests.test_recs_email_audience_listing import listing, new_shopper, started, view

VICTIM = email_sha256_of("victim@example.org")
OTHER = email_sha256_of("someone-else@example.org")
NOW = 1_764_600_000


@pytest.fixture
async def shop(aiohttp_client: Any, settings: Any) -> TestClient[Any, Any]:
    return await started(aiohttp_client, settings)


def identify(email: str, **signature: Any) -> dict[str, Any]:
    return {"advertiser": SHOP, "event": "identify", "email_sha256": email, **signature}


def signed(email: str, token: str = SHOP_TOKEN, advertiser: str = SHOP, ahead: int = 3600) -> Any:
    expiry = int(time.time()) + ahead
    return {"email_sig": sign_email(token, advertiser, email, expiry), "sig_exp": expiry}


async def refused(client: TestClient[Any, Any], reason: str) -> float:
    text = await (await client.get("/metrics")).text()
    line = f'kaeru_email_sigs_refused_total{{reason="{reason}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


async def members(client: TestClient[Any, Any], email: str | None = None) -> list[str]:
    params = {"email_sha256": email} if email else {}
    answer = await listing(client, **params)
    return [m["email_sha256"] for m in answer["members"]]


FORGED = {"email_sig": "0" * 64, "sig_exp": int(time.time()) + 3600}


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ({}, "unsigned"),
        (FORGED, "bad_email_sig"),
        (signed(VICTIM, OTHER_TOKEN), "bad_email_sig"),  # another shop's key
        (signed(VICTIM, OTHER_TOKEN, OTHER_SHOP), "bad_email_sig"),  # another shop's signature
        (signed(OTHER), "bad_email_sig"),  # the shop's signature of another hash
        (signed(VICTIM, ahead=-60), "expired"),
        (signed(VICTIM, ahead=MAX_AHEAD_SECONDS + 600), "too_far_ahead"),
        ({"email_sig": "not hex", "sig_exp": "soon"}, "bad_email_sig"),
        ({"email_sig": signed(VICTIM)["email_sig"]}, "bad_email_sig"),  # without sig_exp
    ],
)
async def test_an_identify_not_signed_by_the_shop_links_for_ads_but_is_never_listed(
    shop: TestClient[Any, Any], signature: dict[str, Any], reason: str
) -> None:
    uid = await new_shopper(shop, identify(VICTIM, **signature), view("sku-1"))
    assert uid  # the batch was taken (204) and its events stored, as before
    assert await shop.app[IDENTITY].partner_uid(VICTIM) == uid  # still links for ads
    assert await members(shop) == []
    assert await members(shop, VICTIM) == []
    assert await refused(shop, reason) == 1


async def test_a_signed_identify_is_listed_and_its_signature_admits_no_other_hash(
    shop: TestClient[Any, Any],
) -> None:
    signature = signed(VICTIM)
    await new_shopper(shop, identify(VICTIM, **signature), view("sku-1"))
    await new_shopper(shop, identify(OTHER, **signature), view("sku-2"))  # A's sig for B
    assert await members(shop) == [VICTIM]
    assert await members(shop, VICTIM) == [VICTIM]
    assert await members(shop, OTHER) == []
    assert await refused(shop, "bad_email_sig") == 1


async def test_an_attacker_claiming_a_listed_email_never_gets_their_views_mailed(
    shop: TestClient[Any, Any],
) -> None:
    """The victim logged in at the shop (signed); an attacker's browser then sends the
    victim's bare hash and views other products: no listing shows the attacker's items."""
    await new_shopper(shop, identify(VICTIM, **signed(VICTIM)), view("sku-1"))
    await new_shopper(shop, identify(VICTIM), view("sku-3"), view("sku-4"))
    answer = await listing(shop)
    assert [(m["email_sha256"], m["items"]) for m in answer["members"]] == [(VICTIM, ["sku-1"])]
    # The e-mail now resolves to the attacker's browser (links for ads are as before), which
    # kept no e-mail at the shop: the single-address form names nobody rather than its items.
    assert (await listing(shop, email_sha256=VICTIM))["members"] == []


def test_the_check_is_the_documented_hmac() -> None:
    import hashlib
    import hmac

    message = f"identify\n{SHOP}\n{VICTIM}\n{NOW + 60}".encode()
    expected = hmac.new(SHOP_TOKEN.encode(), message, hashlib.sha256).hexdigest()
    assert sign_email(SHOP_TOKEN, SHOP, VICTIM, NOW + 60) == expected
    good = Identify(SHOP, VICTIM, email_signature=(NOW + 60, expected))
    assert refusal(SHOP_TOKEN, good, NOW) is None
    assert refusal(None, good, NOW) == "bad_email_sig"  # no token: nothing can vouch
    assert refusal(SHOP_TOKEN, Identify(SHOP, VICTIM), NOW) == "unsigned"
    assert parse_email_signature(expected, NOW + 60) == (NOW + 60, expected)
    assert parse_email_signature(expected, str(NOW + 60)) == (NOW + 60, expected)
    assert parse_email_signature(None, None) is None
    for bad in ((expected.upper(), NOW), (expected, "0123"), (expected, True), (expected, None)):
        assert parse_email_signature(*bad) == (-1, "")


# -- the cross-site demo shop: its server signs its shopper's hash -----------------------------

DEMO_TOKEN = "demo-shop-token-0123456789"
SITES = DemoSites(
    shop="http://localhost:8080", partner="http://127.0.0.1:8080", kaeru="http://localhost:8080"
)


@pytest.fixture
async def demo(aiohttp_client: Any) -> TestClient[Any, Any]:
    app = web.Application()
    add_demo_routes(app, SITES, email_signer=_demo_email_signer(DEMO_ADVERTISER, DEMO_TOKEN))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def test_the_demo_shop_signs_a_hashed_email_its_identify_carries(
    demo: TestClient[Any, Any],
) -> None:
    response = await demo.post("/demo/shop/sign", json={"email_sha256": VICTIM})
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    answer = await response.json()
    assert set(answer) == {"email_sha256", "email_sig", "sig_exp"}
    signature = parse_email_signature(answer["email_sig"], answer["sig_exp"])
    identify = Identify(DEMO_ADVERTISER, VICTIM, email_signature=signature)
    assert refusal(DEMO_TOKEN, identify, time.time()) is None
    html = await (await demo.get("/demo/shop/")).text()
    assert 'fetch("/demo/shop/sign"' in html and "email_sig: signed.email_sig" in html


@pytest.mark.parametrize(
    "body",
    [{"email_sha256": "victim@example.com"}, {"email": "victim@example.com"}, [VICTIM], "x"],
)
async def test_the_demo_shop_signs_only_hashes_never_an_email(
    demo: TestClient[Any, Any], body: Any
) -> None:
    response = await demo.post("/demo/shop/sign", data=orjson.dumps(body))
    assert response.status == 400
    answer = await response.text()
    assert "email_sig" not in answer and "victim@" not in answer.lower()
    big = await demo.post("/demo/shop/sign", data=b'{"email_sha256": "' + b"a" * 2000 + b'"}')
    assert big.status == 413
