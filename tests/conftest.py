"""Fixtures: a private redis-server per test session (never a Redis we did not start), a clean
database per test, and the real app under pytest-aiohttp's client. Modules marked `cluster` run
their Redis tests a second time on a private Redis Cluster (`--redis-cluster`: every module)."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import redis
from aiohttp.test_utils import TestClient

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.http.app_keys import MARKET, WORKER, buffered_writers
from adserver.runtime.embedded_redis import EmbeddedCluster, EmbeddedRedis, free_port

SHOP = "shop1"
SHOP_TOKEN = "shop1-token-0123456789"
OTHER_SHOP = "shop2"
OTHER_TOKEN = "shop2-token-0123456789"
OPERATOR_TOKEN = "operator-token-0123456789"
SECRET = b"test-secret-0123456789-0123456789-abcdef"
# Known crawlers are not tracked (adserver: is_bot): tests browse like a person's browser.
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
}
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-cluster",
        action="store_true",
        help="run every test that uses Redis on a private Redis Cluster too "
        "(by default only the modules marked `cluster`)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: run these tests on a private 3-master Redis Cluster too"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `cluster` (or all, with --redis-cluster) that use Redis run twice: on one
    Redis (`[redis]`) and on a Redis Cluster (`[cluster]`)."""
    if "redis_backend" not in metafunc.fixturenames:
        return
    if metafunc.config.getoption("--redis-cluster") or metafunc.definition.get_closest_marker(
        "cluster"
    ):
        metafunc.parametrize("redis_backend", ["redis", "cluster"], indirect=True)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "redis"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A private 3-master Redis Cluster, started once per session when a test needs it."""
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("cluster"), masters=3)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_backend: str) -> str:
    """A clean database on our private server or cluster (flushing is safe: we started it)."""
    if redis_backend == "cluster":
        cluster: EmbeddedCluster = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        return cluster.url
    server: EmbeddedRedis = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.close()
    return server.url


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path,
        secret=SECRET,
        advertisers={SHOP: SHOP_TOKEN, OTHER_SHOP: OTHER_TOKEN},
        operator_token=OPERATOR_TOKEN,
        run_worker=False,  # tests run the worker's steps themselves: see `learn_all`
    )


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    """The real app on loopback, with a cookie jar that, like browsers, treats loopback as a
    secure origin (so the `Secure` uid cookie comes back)."""
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings), server_kwargs={"port": port}, cookie_jar=jar, headers=BROWSER
    )
    return client


def product_row(sku: str, **overrides: str) -> dict[str, str]:
    row = {
        "id": sku,
        "title": f"Product {sku}",
        "link": f"https://shop1.example/p/{sku}",
        "image_link": f"https://shop1.example/img/{sku}.jpg",
        "price": "19.90",
        "currency": "EUR",
    }
    row.update(overrides)
    return row


async def put_catalog(
    client: TestClient[Any, Any],
    rows: list[dict[str, str]],
    advertiser: str = SHOP,
    token: str = SHOP_TOKEN,
) -> dict[str, Any]:
    response = await client.put(
        f"/api/v1/advertisers/{advertiser}/products",
        json=rows,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


@pytest.fixture
async def stocked(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """The client with shop1 selling sku-1 .. sku-6."""
    await put_catalog(client, [product_row(f"sku-{n}") for n in range(1, 7)])
    return client


async def refresh_catalog(client: TestClient[Any, Any]) -> None:
    await client.app[MARKET].refresh()


async def counted(client: TestClient[Any, Any]) -> None:
    """Wait until the impressions, renders and clicks served so far are written (impressions
    and renders are counted right after the answer; a click waits for Redis only so long)."""
    for writer in buffered_writers(client.app):
        await writer.flush()


async def learn_all(client: TestClient[Any, Any]) -> None:
    """Let the related-items worker learn everything on the stream, then refresh the caches
    that serve its results (what the background tasks do within a second in production)."""
    await client.app[WORKER].drain()
    await refresh_catalog(client)


@asynccontextmanager
async def frozen_after_a_view(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of an app on `own_redis` whose shop sells sku-1 and sku-2, sku-1 viewed and
    learnt popular (in the process's market cache), then Redis frozen (SIGSTOP) until the
    block ends: what a hot path answers when Redis stops answering."""
    assert own_redis.process is not None
    client = await aiohttp_client(
        create_app(replace(settings, redis_url=own_redis.url)), headers=BROWSER
    )
    await put_catalog(client, [product_row("sku-1"), product_row("sku-2")])
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})
    await learn_all(client)
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        yield client
    finally:
        own_redis.process.send_signal(signal.SIGCONT)


@pytest.fixture
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data set not found at {DATA}")
    return DATA


async def stream_events(redis_url: str) -> list[dict[str, Any]]:
    from adserver.store import Store, connect

    store = Store(connect(redis_url))
    try:
        return await store.read_events(1000)
    finally:
        await store.close()


@pytest.fixture(autouse=True)
def no_embedded_redis_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that killed `kaeru` (or failed before stopping it) would leave the embedded
    redis-server it started running: shut down any whose socket is in the test's directory."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    directory: Path = request.getfixturevalue("tmp_path")  # torn down after this fixture
    yield
    for socket_path in directory.rglob("redis.sock"):
        client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2)
        try:
            client.shutdown(nosave=True)
        except (redis.RedisError, OSError):
            pass  # already gone, or gone while answering
        finally:
            client.close()


async def sell(store: Any, advertiser: str, skus: Iterable[str]) -> None:
    """Give `advertiser` a catalog of these products, straight into Redis (`store`: a
    `Store`): only products an advertiser sells are learnt and stored (issue 11, §2)."""
    from decimal import Decimal

    from adserver.core.product import Product

    await store.replace_catalog(
        advertiser,
        [
            Product(
                sku,
                sku,
                f"https://{advertiser}.example/p",
                "https://x.example/i",
                Decimal(1),
                "EUR",
            )
            for sku in skus
        ],
    )


def landing_of(location: str) -> str:
    """A click's Location without the click id Kaeru appended (tests of where a click lands)."""
    parts = urlsplit(location)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("kclid="))
    return urlunsplit(parts._replace(query=query))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, to freeze (SIGSTOP) or stop without harming the others."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    yield server
    server.stop()


POLL_DEADLINE_S = 15.0  # what the browser tests wait for a page, an ad or a count at most
T = TypeVar("T")


def poll(probe: Callable[[], T], accept: Callable[[T], bool], what: str) -> T:
    """`probe()` again every 0.1 s until `accept` takes its value (no fixed sleeps); fails
    naming `what` and the last value after POLL_DEADLINE_S."""
    deadline = time.monotonic() + POLL_DEADLINE_S
    while True:
        value = probe()
        if accept(value):
            return value
        assert time.monotonic() < deadline, f"{what}: still {value!r} after {POLL_DEADLINE_S}s"
        time.sleep(0.1)
