"""Only products in the advertiser's catalog feed popularity, neighbours and shopper profiles;
events for an advertiser come from its own pages where that can be known (issue 11, §2)."""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.core.lessons import LearningConfig
from adserver.core.shopper import ShopperEvent
from adserver.http.app_keys import METRICS, STORE
from adserver.learning.worker import RelatedWorker
from adserver.runtime.embedded_redis import free_port
from adserver.store import keys
from adserver.store.learning import LearningStore
from tests.conftest import (
    BROWSER,
    SHOP,
    counted,
    learn_all,
    product_row,
    put_catalog,
    refresh_catalog,
)

pytestmark = pytest.mark.cluster  # also on a Redis Cluster (see conftest)

MADE_UP = [f"fake-{n}" for n in range(50)]


def metric(client: TestClient[Any, Any], name: str, **labels: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(name, labels)
    return value or 0.0


async def batch(client: TestClient[Any, Any], events: list[dict[str, Any]], **headers: str) -> int:
    """One cookie-less `/e` batch (each one a new shopper, as a script without a jar is)."""
    client.session.cookie_jar.clear()
    response = await client.post("/e", json={"events": events}, headers=headers)
    return response.status


def next_millisecond() -> None:
    """Until the clock has moved on by a millisecond (event times are kept in ms)."""
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= start:
        pass


def views(*skus: str) -> list[dict[str, Any]]:
    return [{"advertiser": SHOP, "event": "view", "item": sku} for sku in skus]


async def anonymous_ad(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    client.session.cookie_jar.clear()
    response = await client.get("/ad.json", params={"pub": "news1", "size": "728x90"})
    await counted(client)
    return response.status, (await response.json() if response.status == 200 else {})


async def popularity(client: TestClient[Any, Any]) -> dict[str, float]:
    members = await client.app[STORE].redis.zrange(keys.popular(SHOP), 0, -1, withscores=True)
    return {(m.decode() if isinstance(m, bytes) else m): float(s) for m, s in members}


async def test_made_up_skus_cannot_blank_the_anonymous_ad(stocked: TestClient[Any, Any]) -> None:
    """The report: 40 cookie-less batches of views of 50 made-up SKUs turned `popular` into
    a no-fill."""
    assert await batch(stocked, views("sku-3", "sku-4")) == 204
    for _ in range(40):
        assert await batch(stocked, views(*MADE_UP)) == 204
    await learn_all(stocked)

    status, body = await anonymous_ad(stocked)
    assert status == 200
    assert body["strategy"] == "popular"
    assert {p["id"] for p in body["products"]} <= {f"sku-{n}" for n in range(1, 7)}
    assert set(await popularity(stocked)) == {"sku-3", "sku-4"}
    assert metric(stocked, "kaeru_unknown_items_total", outcome="waiting") == 40 * 50


async def test_random_skus_grow_neither_popularity_nor_neighbour_lists(
    stocked: TestClient[Any, Any],
) -> None:
    """The report: every unknown SKU became a popularity member and neighbour keys."""
    redis = stocked.app[STORE].redis
    for _ in range(20):
        made_up = [secrets.token_hex(16) for _ in range(50)]
        events = [{"advertiser": SHOP, "event": "view", "items": [sku, "sku-1"]} for sku in made_up]
        assert await batch(stocked, events) == 204
    await learn_all(stocked)

    assert set(await popularity(stocked)) == {"sku-1"}
    neighbour_keys = [k async for k in redis.scan_iter(match="nb:*")] + [
        k async for k in redis.scan_iter(match="cb:*")
    ]
    assert neighbour_keys == []
    for key in [k async for k in redis.scan_iter(match="u:*")]:
        if await redis.type(key) in (b"zset", "zset"):
            members = {m.decode() for m in await redis.zrange(key, 0, -1)}
            assert members <= {"sku-1", SHOP}, key


async def test_unknown_items_are_left_out_of_the_shoppers_profile(
    stocked: TestClient[Any, Any],
) -> None:
    await stocked.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2,not-sold"})
    uid = stocked.session.cookie_jar.filter_cookies(stocked.make_url("/"))["uid"].value
    shopper = await stocked.app[STORE].load_shopper(uid)

    assert shopper.histories[0].viewed == ("sku-2",)
    assert metric(stocked, "kaeru_unknown_items_total", outcome="waiting") == 1


async def test_a_product_fed_shortly_after_its_first_views_still_counts(
    stocked: TestClient[Any, Any],
) -> None:
    """A shop's pages often name a new product before the next feed brings it."""
    response = await stocked.get("/px", params={"a": SHOP, "e": "view", "i": "sku-new"})
    assert response.status == 200
    uid = response.cookies["uid"].value
    await put_catalog(stocked, [product_row(f"sku-{n}") for n in (*range(1, 7), "new")])
    await counted(stocked)  # the waiting view went the normal way once its product was sold
    await learn_all(stocked)

    shopper = await stocked.app[STORE].load_shopper(uid)
    assert shopper.histories[0].viewed == ("sku-new",)
    assert set(await popularity(stocked)) == {"sku-new"}
    assert metric(stocked, "kaeru_unknown_items_total", outcome="counted") == 1


async def test_many_shoppers_behind_one_address_all_count(stocked: TestClient[Any, Any]) -> None:
    """An office or a mobile carrier: one address, many shoppers; nothing is limited by IP."""
    for _ in range(30):
        assert await batch(stocked, views("sku-5")) == 204
    assert await batch(stocked, views("sku-2")) == 204
    await learn_all(stocked)

    scores = await popularity(stocked)
    assert scores["sku-5"] == pytest.approx(30 * scores["sku-2"], rel=1e-3)
    status, body = await anonymous_ad(stocked)
    assert status == 200 and body["products"][0]["id"] == "sku-5"


async def test_learner_skips_items_not_in_the_catalog(stocked: TestClient[Any, Any]) -> None:
    """Events that reached the stream while the catalog could not be checked (Redis away at
    start-up, a feed replaced since) teach nothing about products that are not sold."""
    store = stocked.app[STORE]
    now = time.time()
    for n, uid in enumerate(("a" * 22, "b" * 22)):
        await store.record_events(
            uid, [ShopperEvent(SHOP, "view", (sku,)) for sku in ("sku-1", "gone", "sku-2")], now + n
        )
    unsold: list[int] = []
    worker = RelatedWorker(LearningStore(store.redis, LearningConfig()), on_unsold=unsold.append)
    await worker.drain()

    assert set(await popularity(stocked)) == {"sku-1", "sku-2"}
    assert not await store.redis.exists(keys.co_viewed(SHOP, "gone"))
    assert sum(unsold) == 2


async def test_popularity_is_trimmed_to_its_cap(client: TestClient[Any, Any]) -> None:
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(20)])
    store = client.app[STORE]
    now = time.time()
    for n in range(20):
        await store.record_events(f"{n:022d}", [ShopperEvent(SHOP, "view", (f"sku-{n}",))], now)
    config = LearningConfig(popular_cap=4)
    await RelatedWorker(LearningStore(store.redis, config), batch_size=1000).drain()

    assert len(await popularity(client)) <= 2 * 4


# -- events come from the advertiser's own pages --------------------------------------------


@pytest.fixture
async def guarded(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """shop1 restricted to its domains (KAERU_ADVERTISER_DOMAINS), selling sku-1 .. sku-6."""
    restricted = dataclasses.replace(settings, advertiser_domains={SHOP: ("shop1.example",)})
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(restricted), server_kwargs={"port": free_port()}, headers=BROWSER
    )
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    return client


async def stored_views(client: TestClient[Any, Any]) -> int:
    await learn_all(client)
    return round(sum((await popularity(client)).values()) / max(1e-9, _unit_weight()))


def _unit_weight() -> float:
    from adserver.learning.cooccurrence import decay_factor

    return decay_factor(int(time.time() * 1000), LearningConfig().half_life_days)


@pytest.mark.parametrize(
    "headers",
    [
        {"Referer": "https://evil.example/page"},
        {"Referer": "https://shop1.example.evil.example/"},
        {"Origin": "https://evil.example", "Referer": "https://shop1.example/p"},
        {"Origin": "null"},
    ],
)
async def test_pixel_from_another_site_is_answered_and_not_stored(
    guarded: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    response = await guarded.get(
        "/px", params={"a": SHOP, "e": "view", "i": "sku-1"}, headers=headers
    )

    assert response.status == 200 and response.headers["Content-Type"] == "image/gif"
    assert "uid" not in response.cookies
    assert metric(guarded, "kaeru_tracking_rejects_total", reason="foreign_origin") == 1
    assert await stored_views(guarded) == 0


async def test_batch_from_another_site_is_refused(guarded: TestClient[Any, Any]) -> None:
    status = await batch(guarded, views("sku-1"), Origin="https://evil.example")

    assert status == 403
    assert metric(guarded, "kaeru_tracking_rejects_total", reason="foreign_origin") == 1
    assert await stored_views(guarded) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://shop1.example"},
        {"Origin": "https://www.shop1.example:8443"},
        {"Referer": "https://m.shop1.example/p/sku-1?x=1"},
        {},  # neither header (a no-referrer policy): cannot be known, so accepted
    ],
)
async def test_events_from_the_advertisers_own_pages_are_stored(
    guarded: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    assert await batch(guarded, views("sku-1"), **headers) == 204
    response = await guarded.get(
        "/px", params={"a": SHOP, "e": "view", "i": "sku-2"}, headers=headers
    )
    assert "uid" in response.cookies

    assert await stored_views(guarded) == 2
    assert metric(guarded, "kaeru_tracking_rejects_total", reason="foreign_origin") == 0


async def test_a_shop_without_a_feed_keeps_views_but_learns_nothing(
    client: TestClient[Any, Any],
) -> None:
    """No catalog to check against: the profile (capped, expiring) keeps what the tag sends,
    so the shop's first feed can retarget at once; nothing is learnt before that feed."""
    response = await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-9"})
    uid = response.cookies["uid"].value
    await learn_all(client)

    assert (await client.app[STORE].load_shopper(uid)).histories[0].viewed == ("sku-9",)
    assert await popularity(client) == {}


async def test_a_forgotten_shopper_stops_waiting_for_the_feed(
    stocked: TestClient[Any, Any],
) -> None:
    from tests.conftest import OPERATOR_TOKEN

    response = await stocked.get("/px", params={"a": SHOP, "e": "view", "i": "sku-new"})
    uid = response.cookies["uid"].value
    forgotten = await stocked.delete(
        f"/api/v1/users/{uid}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert forgotten.status == 200
    await put_catalog(stocked, [product_row(f"sku-{n}") for n in (*range(1, 7), "new")])
    await counted(stocked)

    assert not (await stocked.app[STORE].load_shopper(uid)).known


async def test_a_new_product_bought_before_its_feed_is_not_left_in_the_cart(
    stocked: TestClient[Any, Any],
) -> None:
    """A launch: the shopper puts a product no feed has brought yet in the cart (it waits)
    and buys it at once; the feed lands after the purchase. The waiting cart must not come
    back as a cart not bought (a `cart_abandoners` target for what was bought)."""
    await stocked.post(
        "/e", json={"events": [{"advertiser": SHOP, "event": "cart", "item": "sku-new"}]}
    )
    uid = stocked.session.cookie_jar.filter_cookies(stocked.make_url("/"))["uid"].value
    next_millisecond()  # a shopper does not add and buy within one (a test client could)
    purchase = {
        "advertiser": SHOP,
        "event": "purchase",
        "order": "o-launch",
        "revenue": "19.90",
        "currency": "EUR",
    }
    bought = await stocked.post("/e", json={"events": [{**purchase, "items": ["sku-new"]}]})
    assert bought.status == 204
    await counted(stocked)
    await put_catalog(stocked, [product_row(f"sku-{n}") for n in (*range(1, 7), "new")])
    await counted(stocked)  # the waiting cart is released now

    history = (await stocked.app[STORE].load_shopper(uid)).histories[0]
    assert history.bought == ("sku-new",)
    assert history.cart == ()
    assert history.cart_since is None
    assert metric(stocked, "kaeru_unknown_items_total", outcome="counted") == 1


async def test_a_shopper_forgotten_by_another_process_stays_forgotten(
    aiohttp_client: Any, settings: Settings, stocked: TestClient[Any, Any]
) -> None:
    """`kaeru serve --workers N`: the view of a product not fed yet waits in the process that
    took it; the opt-out (or an erasure) reaches another process. When the feed lands, the
    waiting view must not bring back what the opt-out deleted."""
    other: TestClient[Any, Any] = await aiohttp_client(create_app(settings), headers=BROWSER)
    response = await stocked.get("/px", params={"a": SHOP, "e": "view", "i": "sku-new"})
    uid = response.cookies["uid"].value
    opted_out = await other.get("/optout", cookies={"uid": uid})
    assert opted_out.status == 200
    await put_catalog(stocked, [product_row(f"sku-{n}") for n in (*range(1, 7), "new")])
    await counted(stocked)  # the first process released its waiting view

    assert not (await stocked.app[STORE].load_shopper(uid)).known
    # What keeps it forgotten is kept only as long as something may wait: a loop of opt-outs
    # with made-up uids cannot grow Redis for the lookback.
    held = await stocked.app[STORE].redis.ttl(keys.user_forgotten(uid))
    assert 0 < held <= settings.feed_grace_seconds + 300


async def test_products_out_of_stock_cannot_blank_the_anonymous_ad(
    stocked: TestClient[Any, Any],
) -> None:
    """The report's attack with real SKUs: catalogs keep products that are sold out, and
    views of them pushed every product that can be shown out of the `popular` fallback."""
    sold_out = [f"gone-{n}" for n in range(50)]
    rows = [product_row(f"sku-{n}") for n in range(1, 7)]
    await put_catalog(
        stocked, rows + [product_row(s, availability="out_of_stock") for s in sold_out]
    )
    await refresh_catalog(stocked)
    assert await batch(stocked, views("sku-3", "sku-4")) == 204
    for _ in range(40):
        assert await batch(stocked, views(*sold_out)) == 204
    await learn_all(stocked)

    status, body = await anonymous_ad(stocked)
    assert status == 200
    assert body["strategy"] == "popular"
    assert {p["id"] for p in body["products"]} <= {"sku-3", "sku-4"}
