"""One sealed token per ad: its click links (`/c/TOKEN/LINK`) and render beacon (`/i/TOKEN`)
share it. Each link lands on its own product and counts once; a link altered, moved to
another ad's token or naming a product the ad did not show is refused (400, counted); links
minted before (a token per link) keep working; the token shows nothing of what it holds."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from adserver.delivery.served_ad import (
    AD_PURPOSE,
    CLICK_PURPOSE,
    RENDER_PURPOSE,
    ad_fields,
    link_index,
    link_name,
    sealed_ad,
)
from adserver.delivery.tokens import Signer
from adserver.http.app_keys import SIGNER, STORE
from adserver.store import Placement, day_of
from tests.conftest import SHOP, counted, landing_of
from tests.test_e2e_loop import view
from tests.test_edge_http import metric

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

SIZE = "728x90"  # three products


async def served(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/ad.json", params={"pub": "news1", "size": SIZE})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    await counted(client)
    return body


def path(url: str) -> str:
    return urlsplit(url).path


async def stats(client: TestClient[Any, Any]) -> dict[str, int]:
    today = day_of(time.time())
    day: dict[str, int] = (await client.app[STORE].ledger.daily_stats(SHOP, [today]))[today]
    return day


async def test_every_link_shares_the_ads_token_and_lands_on_its_own_product(
    stocked: TestClient[Any, Any],
) -> None:
    await view(stocked, "sku-1", "sku-2", "sku-3")
    ad = await served(stocked)
    links = [path(p["click_url"]) for p in ad["products"]]
    token = path(ad["impression_url"]).removeprefix("/i/")

    assert len(links) == 3 and all(link.startswith(f"/c/{token}/") for link in links)
    assert len(set(links)) == 3
    for product, link in zip(ad["products"], links, strict=True):
        response = await stocked.get(link, allow_redirects=False)
        assert response.status == 302
        location = response.headers["Location"]
        assert landing_of(location) == f"https://shop1.example/p/{product['id']}"
        assert dict(parse_qsl(urlsplit(location).query))["kclid"]  # minted as before
    for link in links:  # replays: each link counts once
        assert (await stocked.get(link, allow_redirects=False)).status == 302
    await counted(stocked)
    clicks = {k: v for k, v in (await stats(stocked)).items() if k.startswith("click\t")}
    assert clicks == {f"click\tdefault\tnews1\trecent\t{SIZE}": 3}


async def test_the_beacon_is_the_ads_token_and_counts_one_render(
    stocked: TestClient[Any, Any],
) -> None:
    await view(stocked, "sku-1")
    ad = await served(stocked)
    for _ in range(3):
        response = await stocked.get(path(ad["impression_url"]))
        assert response.status == 200 and response.content_type == "image/gif"
    await counted(stocked)
    assert (await stats(stocked))[f"render\tdefault\tnews1\trecent\t{SIZE}"] == 1


async def test_a_link_altered_moved_or_out_of_range_is_a_counted_400(
    stocked: TestClient[Any, Any],
) -> None:
    await view(stocked, "sku-1", "sku-2")
    first, second = await served(stocked), await served(stocked)
    signer = stocked.app[SIGNER]
    token, name = path(first["products"][0]["click_url"]).removeprefix("/c/").split("/")
    other = path(second["impression_url"]).removeprefix("/i/")
    cases = {
        "bad_link": [
            f"/c/{other}/{name}",  # another ad's token with this link's name
            f"/c/{token}/{name[:-1]}",
            f"/c/{token}/{name}A",
            f"/c/{token}/0",  # a bare index
            f"/c/{token}/{link_name(Signer(b'another-secret-0123456789'), token, 1)}",
        ],
        "bad_index": [f"/c/{token}/{link_name(signer, token, 3)}"],  # the ad showed 3
        "bad_signature": [f"/c/{token[:20]}A{token[21:]}/{name}"],
    }
    for reason, bad_links in cases.items():
        for link in bad_links:
            response = await stocked.get(link, allow_redirects=False)
            assert response.status == 400, link
            assert "Location" not in response.headers
        assert await metric(stocked, "kaeru_click_rejects_total", reason=reason) == len(bad_links)
    await counted(stocked)
    assert not any(k.startswith("click\t") for k in await stats(stocked))


async def test_the_ads_token_is_refused_past_the_click_lifetime(
    stocked: TestClient[Any, Any],
) -> None:
    signer = stocked.app[SIGNER]
    placement = Placement(SHOP, "default", "news1", "recent", SIZE)
    fields = ad_fields(placement, "1.ab", True, [("recent", "sku-1", "https://shop1.example/p/1")])
    old = signer.sign(AD_PURPOSE, fields, now=time.time() - 31 * 86400)
    response = await stocked.get(f"/c/{old}/{link_name(signer, old, 0)}", allow_redirects=False)
    assert response.status == 400
    assert await metric(stocked, "kaeru_click_rejects_total", reason="expired") == 1


async def test_links_and_beacons_minted_before_one_token_per_ad_still_work(
    stocked: TestClient[Any, Any],
) -> None:
    """What main's build_ad minted until this change: a token per link, and the beacon's."""
    signer = stocked.app[SIGNER]
    await view(stocked, "sku-2")
    token = path((await served(stocked))["impression_url"]).removeprefix("/i/")
    ad = sealed_ad(signer.verify(AD_PURPOSE, token, 60))  # type: ignore[arg-type]
    assert ad is not None  # an impression counted: its render counts, once
    where = [SHOP, "default", "news1", "recent", SIZE]
    landing = "https://shop1.example/p/sku-2"
    click = signer.sign(CLICK_PURPOSE, [*where, "sku-2", landing, ad.impression])
    beacon = signer.sign(RENDER_PURPOSE, [*where, ad.impression])

    response = await stocked.get(f"/c/{click}", allow_redirects=False)
    assert response.status == 302
    assert landing_of(response.headers["Location"]) == "https://shop1.example/p/sku-2"
    assert (await stocked.get(f"/i/{beacon}")).content_type == "image/gif"
    await counted(stocked)
    assert await stats(stocked) == {
        f"imp\tdefault\tnews1\trecent\t{SIZE}": 1,
        f"click\tdefault\tnews1\trecent\t{SIZE}": 1,
        f"render\tdefault\tnews1\trecent\t{SIZE}": 1,
    }


async def test_the_token_shows_nothing_it_holds(stocked: TestClient[Any, Any]) -> None:
    await view(stocked, "sku-1", "sku-2")
    await stocked.get("/px", params={"a": SHOP, "e": "cart", "i": "sku-4"})
    ad = await served(stocked)
    token = path(ad["impression_url"]).removeprefix("/i/")
    sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for needle in ("sku-", "shop1", "news1", "cart", "recent", SIZE, "https", "example"):
        assert needle.encode() not in sealed and needle not in token, needle


def test_the_fields_round_trip_with_shared_landing_prefixes() -> None:
    placement = Placement("a", "c", "p", "recent", "300x250")
    picks = [
        ("recent", "s1", "https://shop.example/p/one"),
        ("popular", "s2", "https://shop.example/p/two?x=1"),
        ("recent", "s3", "https://other.example/"),
        ("recent", "s4", "https://other.example/ü"),
        ("recent", "s5", "https://other.example/ü"),
    ]
    fields = ad_fields(placement, "7.ff", False, picks)
    assert fields[7:] == [
        *("", "s1", 0, "https://shop.example/p/one"),
        *("popular", "s2", 23, "two?x=1"),
        *("", "s3", 8, "other.example/"),
        *("", "s4", 0, "https://other.example/ü"),  # not ASCII: nothing shared
        *("", "s5", 0, "https://other.example/ü"),
    ]
    ad = sealed_ad(fields)
    assert ad is not None and (ad.impression, ad.counted, ad.products) == ("7.ff", False, (*picks,))
    assert ad.click(1) == (Placement("a", "c", "p", "popular", "300x250"), "s2", picks[1][2])
    assert ad.click(5) is None and ad.click(-1) is None


@pytest.mark.parametrize(
    "fields",
    [
        [],
        ["a", "c", "p", "s", "z", "i", 1],  # no product
        ["a", "c", "p", "s", "z", "i", 2, "", "s1", 0, "l"],  # counted neither 0 nor 1
        ["a", "c", "p", "s", "z", "i", True, "", "s1", 0, "l"],
        ["a", "c", "p", "s", "z", 5, 1, "", "s1", 0, "l"],
        ["a", "c", "p", "s", "z", "i", 1, "", "s1", 1, "l"],  # more in common than there was
        ["a", "c", "p", "s", "z", "i", 1, "", "s1", "0", "l"],
        ["a", "c", "p", "s", "z", "i", 1, "", "s1", 0],
    ],
)
def test_malformed_ad_fields_are_refused(fields: list[object]) -> None:
    assert sealed_ad(fields) is None


def test_a_link_name_is_only_good_for_its_token_and_index() -> None:
    signer = Signer(b"k" * 32)
    name = link_name(signer, "TOKEN", 2)
    assert len(name) == 7 and link_index(signer, "TOKEN", name) == 2
    assert link_index(signer, "TOKEM", name) is None
    assert link_index(Signer(b"j" * 32), "TOKEN", name) is None
    assert (
        link_index(signer, "TOKEN", name + "=") is None and link_index(signer, "TOKEN", "") is None
    )
