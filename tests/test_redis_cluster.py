"""Redis Cluster: the URL, slot discipline, the client adaptations, and a failover under load.

The end-to-end modules marked `cluster` run on the session's 3-master cluster as well (see
conftest); this module checks what is specific to a cluster.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from adserver.app import create_app
from adserver.buffering.buffered_writer import EventWriter
from adserver.config.redis_url import parse_cluster_url
from adserver.config.settings import Settings, SettingsError
from adserver.core.shopper import ShopperEvent
from adserver.http.app_keys import EVENT_WRITER, METRICS, STORE
from adserver.runtime.embedded_redis import EmbeddedCluster, free_port
from adserver.store import Placement, RedisError, Store, connect, keys
from adserver.store.ledger import Shown
from tests.conftest import (
    BROWSER,
    OPERATOR_TOKEN,
    SECRET,
    SHOP,
    SHOP_TOKEN,
    product_row,
    put_catalog,
)

UID = "C" * 22


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


# -- configuration ----------------------------------------------------------------------------


def test_cluster_url_lists_nodes_and_credentials() -> None:
    url = "redis+cluster://kaeru:p%40ss@10.0.0.1:7000,10.0.0.2:7001,redis-3"
    address = parse_cluster_url(url)
    assert address.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("redis-3", 6379))
    assert (address.username, address.password, address.tls) == ("kaeru", "p@ss", False)
    assert parse_cluster_url("rediss+cluster://h:1").tls
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://", "host:port"),
        ("redis+cluster://h:1,,h:2", "host:port"),
        ("redis+cluster://h:1,h:99999", "'h:99999' is not host:port"),
        ("redis+cluster://h:1/2", "only database 0"),
        ("redis+cluster://h:1?timeout=3", "query options"),
        ("cluster://h:1", "scheme must be one of redis://, rediss://, unix://, redis+cluster://"),
    ],
)
def test_bad_cluster_urls_are_refused_naming_the_variable(url: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"REDIS_URL": url})
    assert caught.value.problems[0].startswith("REDIS_URL: ")
    assert problem in caught.value.problems[0]


async def test_connect_picks_the_cluster_client_for_a_cluster_url() -> None:
    client = connect("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    assert isinstance(client, RedisCluster)
    assert sorted(node.name for node in client.startup_nodes) == [
        "127.0.0.1:7000",
        "127.0.0.1:7001",
    ]
    await client.aclose()


# -- every multi-key operation stays within one slot -----------------------------------------


def test_every_key_of_a_shopper_shares_one_slot() -> None:
    shopper_keys = [keys.user_advertisers(UID)]
    for advertiser in ("shop1", "shop2"):
        shopper_keys += keys.all_user_keys(UID, advertiser)
    assert len({slot(k) for k in shopper_keys}) == 1
    # the profile script derives keys from the prefix: the prefix carries the tag
    assert slot(keys.user_prefix(UID) + "v:shop1") == slot(keys.user_advertisers(UID))


def test_every_key_of_an_advertiser_model_and_ledger_shares_one_slot() -> None:
    for advertiser in ("shop1", "shop-2", "x_y"):
        model = [
            keys.co_viewed(advertiser, "sku-1"),
            keys.co_bought(advertiser, "sku-9"),
            keys.popular(advertiser),
            keys.order_marker(advertiser, "o-1"),
            keys.click_marker(advertiser, "abc"),
            keys.campaign_totals(advertiser),
            keys.daily_stats(advertiser, "20261119"),
        ]
        assert len({slot(k) for k in model}) == 1, advertiser
        # a new catalog is built aside and RENAMEd over the live one: same slot
        assert slot(keys.catalog_staging(advertiser)) == slot(keys.catalog(advertiser))


def test_each_event_shard_keeps_its_keys_in_one_slot() -> None:
    for shard in range(keys.EVENT_SHARDS):
        shard_keys = [
            keys.event_stream(shard),
            keys.learning_lease(shard),
            keys.learning_journal(shard),
        ]
        assert len({slot(k) for k in shard_keys}) == 1


# -- the client adaptations, on the session's cluster -----------------------------------------


@pytest.fixture
async def cluster_store(redis_cluster: EmbeddedCluster) -> AsyncIterator[Store]:
    redis_cluster.flushall()
    store = Store(connect(redis_cluster.url))
    yield store
    await store.close()


def flush_scripts(cluster: EmbeddedCluster) -> None:
    """What a new node, or a replica promoted by a failover, looks like: no scripts."""
    for node in cluster.primaries():
        with closing(cluster.client(node)) as client:
            client.script_flush()


async def test_scripts_on_pipelines_survive_an_empty_script_cache(
    redis_cluster: EmbeddedCluster, cluster_store: Store
) -> None:
    flush_scripts(redis_cluster)
    uids = [f"{n:022d}" for n in range(12)]  # spread over the masters
    assert len({redis_cluster.master_of(keys.user_advertisers(u)).port for u in uids}) == 3
    at = time.time()
    await cluster_store.record_many(
        [(uid, ShopperEvent(SHOP, "view", ("sku-1", "sku-2")), at) for uid in uids]
    )
    flush_scripts(redis_cluster)
    placement = Placement(SHOP, "c1", "news1", "recent", "300x250")
    await cluster_store.ledger.record_shown([Shown(uid, placement, ("sku-1",), at) for uid in uids])
    flush_scripts(redis_cluster)
    for uid in uids:
        shopper = await cluster_store.load_shopper(uid)
        (history,) = shopper.histories
        assert set(history.viewed) == {"sku-1", "sku-2"}
        assert history.caps == {"c:c1": 1, "i:sku-1": 1}


async def test_scripts_queue_on_a_cluster_pipeline_among_other_commands(
    cluster_store: Store,
) -> None:
    redis = cluster_store.redis
    incr = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    pipe = redis.pipeline(transaction=False)
    pipe.set("a{x}", "1")
    await incr(["b{y}"], [5], client=pipe)  # queues EVALSHA, keeps what came before
    await incr(["c{z}"], [7], client=pipe)
    pipe.get("a{x}")
    assert await pipe.execute() == [True, 5, 7, b"1"]


async def test_an_unreachable_cluster_fails_as_a_redis_error() -> None:
    """redis-py's RedisClusterException is no RedisError: it would slip past every handler
    that degrades on Redis trouble."""
    store = Store(connect(f"redis+cluster://127.0.0.1:{free_port()}", timeout=0.2))
    assert not await store.ping()
    with pytest.raises(RedisError):
        await store.load_shopper(UID)
    with pytest.raises(RedisError):
        await store.record_events(UID, [ShopperEvent(SHOP, "view", ("sku-1",))])
    await store.close()


async def test_catalog_campaigns_and_forgetting_work_across_nodes(cluster_store: Store) -> None:
    from adserver.feeds.validation import parse_feed

    rows = [orjson.dumps(product_row(f"sku-{n}")) for n in range(3)]
    products = parse_feed(b"\n".join(rows), "application/x-ndjson").accepted
    assert len(products) == 3
    assert await cluster_store.replace_catalog(SHOP, products) == 1
    assert await cluster_store.replace_catalog(SHOP, products[:1]) == 2
    assert list(await cluster_store.load_catalog(SHOP)) == ["sku-0"]
    assert await cluster_store.campaigns.put(SHOP, "c1", {"name": "x"}) == 1
    assert await cluster_store.campaigns.delete(SHOP, "c1")
    assert await cluster_store.campaigns.versions([SHOP]) == {SHOP: 2}
    await cluster_store.record_events(UID, [ShopperEvent(SHOP, "cart", ("sku-0",))])
    assert await cluster_store.forget(UID, [SHOP]) >= 2
    assert await cluster_store.forget(UID, [SHOP]) == 0
    assert (await cluster_store.load_shopper(UID)).histories == ()


# -- failover under load --------------------------------------------------------------------


PRODUCTS = 5000  # distinct (shopper, product) views for 15,000 requests (lcm of 24, 5000)


@pytest.fixture
def failover_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """3 masters with a replica each, failing a master over within about 2 seconds."""
    cluster = EmbeddedCluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=1000)
    cluster.start()
    yield cluster
    cluster.stop()


async def test_service_keeps_answering_while_a_master_fails_over(
    failover_cluster: EmbeddedCluster, aiohttp_client: Any, tmp_path: Path
) -> None:
    """Pixels keep getting their GIF (writes past the deadline are buffered, or finish late
    once the replica has taken over), ads keep answering 200/204, never a 5xx, and every
    event answered for is in Redis afterwards."""
    settings = Settings(
        redis_url=failover_cluster.url,
        data_dir=tmp_path,
        secret=SECRET,
        advertisers={SHOP: SHOP_TOKEN},
        operator_token=OPERATOR_TOKEN,
        run_worker=False,
    )
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings),
        server_kwargs={"port": free_port()},
        cookie_jar=aiohttp.DummyCookieJar(),  # each request names its shopper itself
        headers=BROWSER,
    )
    # Only products in the catalog are stored: the shop sells every product viewed below.
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(PRODUCTS)])
    uids = [f"{n:022d}" for n in range(24)]
    sent: dict[str, set[str]] = {uid: set() for uid in uids}
    statuses: list[tuple[str, int]] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        n = 0
        while not stop.is_set():
            uid, sku = uids[n % len(uids)], f"sku-{n % PRODUCTS}"
            cookie = {"Cookie": f"uid={uid}"}
            pixel = await client.get(
                "/px", params={"a": SHOP, "e": "view", "i": sku}, headers=cookie
            )
            assert pixel.headers["Content-Type"] == "image/gif"
            await pixel.read()
            statuses.append(("px", pixel.status))
            if pixel.status == 200:
                sent[uid].add(sku)
            ad = await client.get(
                "/ad.json", params={"pub": "news1", "size": "300x250"}, headers=cookie
            )
            await ad.read()
            statuses.append(("ad", ad.status))
            n += 1
            await asyncio.sleep(0.01)

    runner = asyncio.create_task(traffic())
    await asyncio.sleep(0.5)
    victim = failover_cluster.master_of(keys.user_advertisers(uids[0]))
    failover_cluster.pause(victim)  # hangs, like a frozen host or a network partition
    before = len(statuses)
    try:
        await _wait_for_failover(failover_cluster, victim.port)
        during = len(statuses) - before
        await asyncio.sleep(0.5)  # traffic on the new master too
    finally:
        stop.set()
        await runner
    # Writes still waiting on the frozen master time out and go to the new one, directly or
    # through the buffer. (Only then is it woken up: a frozen master that wakes answers what
    # was queued to it before it learns it was replaced, and a write it acknowledged then is
    # lost when it resyncs as a replica. That window is Redis Cluster's, not Kaeru's.)
    writer = client.app[EVENT_WRITER]
    missing = await _wait_until_stored(client.app[STORE], writer, sent)
    failover_cluster.resume(victim)

    assert not missing, f"acknowledged views never stored: {missing}"
    assert not writer.buffer, f"{len(writer.buffer)} events never replayed"
    delayed = client.app[METRICS].registry.get_sample_value("kaeru_events_buffered_total")
    assert delayed, "the stopped master should have held some writes past their deadline"
    assert {status for route, status in statuses if route == "px"} == {200}
    assert {status for route, status in statuses if route == "ad"} <= {200, 204}
    assert during > 10, "requests should have been served while the master was frozen"
    assert (await client.get("/readyz")).status == 200


async def _wait_until_stored(
    store: Store, writer: EventWriter, sent: dict[str, set[str]]
) -> dict[str, set[str]]:
    """Wait (at most 30 s) until every view sent is in its shopper's profile and nothing is
    left to replay; returns what is still missing."""
    missing = sent
    for _ in range(300):
        missing = {}
        for uid, skus in sent.items():
            histories = (await store.load_shopper(uid)).histories
            if lost := skus - {sku for history in histories for sku in history.viewed}:
                missing[uid] = lost
        if not missing and not writer.buffer:
            break
        await asyncio.sleep(0.1)
    return missing


async def _wait_for_failover(cluster: EmbeddedCluster, old_master: int) -> None:
    """Until another node serves the slots of the stopped master (replica promoted)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        masters = await asyncio.to_thread(cluster.primaries)
        promoted = [m for m in masters if m.port != old_master]
        if len(promoted) == cluster.masters:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no replica took over within 30 s")


# -- readiness ------------------------------------------------------------------------------


async def _idle_app(cluster: EmbeddedCluster, aiohttp_client: Any, data: Path) -> Any:
    settings = Settings(
        redis_url=cluster.url,
        data_dir=data,
        secret=SECRET,
        advertisers={SHOP: SHOP_TOKEN},
        run_worker=False,
    )
    return await aiohttp_client(create_app(settings), server_kwargs={"port": free_port()})


async def _ready(client: Any) -> bool:
    response = await client.get("/readyz")
    await response.read()
    return bool(response.status == 200)


async def test_readyz_is_not_ready_while_any_master_is_unreachable(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    cluster = EmbeddedCluster(tmp_path / "cluster", masters=3)  # no replicas: no failover
    cluster.start()
    try:
        client = await _idle_app(cluster, aiohttp_client, tmp_path / "data")
        assert await _ready(client)
        default = client.app[STORE].redis.get_default_node()  # what a plain PING asks
        victim = next(node for node in cluster.primaries() if node.port != default.port)
        cluster.pause(victim)
        try:
            started = time.monotonic()
            response = await client.get("/readyz")
            assert response.status == 503
            assert (await response.json())["redis"] == "unreachable"
            assert time.monotonic() - started < 5  # a probe's answer, not a hang
        finally:
            cluster.resume(victim)
        assert await _ready(client)
    finally:
        cluster.stop()


async def test_readyz_sees_a_failover_without_traffic(
    failover_cluster: EmbeddedCluster, aiohttp_client: Any, tmp_path: Path
) -> None:
    """An idle process (a failing readiness probe takes its traffic away) learns the new
    topology itself: it does not stay unready once a replica has taken over."""
    client = await _idle_app(failover_cluster, aiohttp_client, tmp_path / "data")
    assert await _ready(client)
    victim = failover_cluster.primaries()[0]
    failover_cluster.pause(victim)
    try:
        await _wait_for_failover(failover_cluster, victim.port)
        deadline = time.monotonic() + 10
        while not await _ready(client):
            assert time.monotonic() < deadline, "still not ready after the failover"
            await asyncio.sleep(0.2)
    finally:
        failover_cluster.resume(victim)


# -- the `kaeru` command on a cluster -------------------------------------------------------


def test_cli_imports_a_catalog_and_serves_with_workers_on_a_cluster(
    redis_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    from tests.test_cli import TOKEN, get, kaeru, kaeru_env, wait_ready

    redis_cluster.flushall()
    env = kaeru_env(tmp_path / "data", REDIS_URL=redis_cluster.url)
    feed = tmp_path / "feed.ndjson"
    feed.write_bytes(orjson.dumps(product_row("sku-1")))
    result = kaeru("catalog", "import", str(feed), "--advertiser", SHOP, env=env)
    assert result.returncode == 0, result.stderr
    assert "catalog version 1" in result.stdout
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "adserver.cli", "serve", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--workers", "2"], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", process, log)
        request = urllib.request.Request(
            base + f"/api/v1/advertisers/{SHOP}/products",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert orjson.loads(response.read())["count"] == 1
        for _ in range(10):  # spread over both processes by the kernel
            assert get(f"{base}/px?a={SHOP}&e=view&i=sku-1")[0] == 200  # the one sold
        assert get(f"{base}/ad.json?pub=news1&size=300x250")[0] in (200, 204)
        metrics = get(base + "/metrics")[1].decode()
        assert 'kaeru_events_stored_total{event="view"} 10.0' in metrics
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert process.returncode == 0, log.read_text()
