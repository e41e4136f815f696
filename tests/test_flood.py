"""A flood of events: what Kaeru acknowledges is never lost nor applied twice, a full buffer
sheds new work visibly (`/e` 503 + Retry-After, `/px` its GIF and a count), a backlog does not
hold up live shoppers, buffered entries cost what the README says, admin routes answer 503 (not
500) when Redis fails them."""

from __future__ import annotations

import asyncio
import random
import string
import time
import tracemalloc
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import pytest
import redis

from adserver.app import create_app
from adserver.buffering.buffered_writer import EventWriter
from adserver.buffering.spill_codecs import Entry
from adserver.config.settings import Settings
from adserver.core.shopper import ShopperEvent
from adserver.runtime.embedded_redis import EmbeddedCluster, EmbeddedRedis
from adserver.store import Store, connect, keys
from tests.conftest import BROWSER, SHOP, SHOP_TOKEN, stream_events
from tests.test_redis_faults import poll, revived_on

if TYPE_CHECKING:
    from adserver.buffering.buffered_writer import Marked

pytestmark = pytest.mark.cluster

README = Path(__file__).resolve().parent.parent / "README.md"
BYTES_PER_ENTRY = 500  # the README's sizing: "at most about 500 bytes per entry"


def views(uid: str, count: int, at: float = 1_000_000.0) -> list[Entry]:
    return [(uid, ShopperEvent(SHOP, "view", (f"sku-{n}",)), at + n) for n in range(count)]


def tag_batch(skus: Sequence[str], event: str = "view") -> bytes:
    if event == "list":
        return orjson.dumps({"events": [{"advertiser": SHOP, "event": "list", "items": skus}]})
    return orjson.dumps(
        {"events": [{"advertiser": SHOP, "event": "view", "item": s} for s in skus]}
    )


async def test_a_full_buffer_sheds_new_events_and_keeps_every_accepted_one(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    app = create_app(replace(settings, redis_url=own_redis.url, buffer_events=3))
    client = await aiohttp_client(app, headers=BROWSER)
    own_redis.stop()
    for n in range(5):
        pixel = await client.get("/px", params={"a": SHOP, "e": "view", "i": f"sku-{n}"})
        assert pixel.status == 200 and pixel.content_type == "image/gif"  # shed or not
    batch = await client.post("/e", data=tag_batch(["sku-x"]))
    assert batch.status == 503
    assert int(batch.headers["Retry-After"]) >= 1
    metrics = await (await client.get("/metrics")).text()
    assert 'kaeru_events_shed_total{endpoint="px"} 2.0' in metrics
    assert 'kaeru_events_shed_total{endpoint="e"} 1.0' in metrics
    assert (await (await client.get("/readyz")).json())["buffered_events"] == 3

    with revived_on(own_redis, tmp_path) as revived:

        async def replayed() -> bool:
            return len(await stream_events(revived.url)) >= 3

        await poll(replayed)
        await app[_writer_key()].drain()
        items = sorted(e["items"][0] for e in await stream_events(revived.url))
        assert items == ["sku-0", "sku-1", "sku-2"]  # the accepted ones, none evicted


def _writer_key() -> Any:
    from adserver.http.app_keys import EVENT_WRITER

    return EVENT_WRITER


BUSY = """
local t0 = redis.call('TIME')
repeat
  local t = redis.call('TIME')
until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > tonumber(ARGV[1])
return 1
"""


def masters(request: pytest.FixtureRequest, redis_backend: str, redis_url: str) -> list[str]:
    """The URL of each master (one for a single Redis)."""
    if redis_backend != "cluster":
        return [redis_url]
    cluster: EmbeddedCluster = request.getfixturevalue("redis_cluster")
    return [node.url for node in cluster.primaries()]


async def busy(urls: list[str], seconds: float) -> asyncio.Task[list[Any]]:
    """Keep every master busy (a Lua loop) for `seconds`; returns once they all are: commands
    sent meanwhile wait, and are applied after it, whether their sender still waits or not."""

    def run(url: str) -> Any:
        with closing(redis.Redis.from_url(url, socket_timeout=10)) as client:
            return client.eval(BUSY, 0, int(seconds * 1_000_000))

    def answers(url: str) -> bool:
        with closing(redis.Redis.from_url(url, socket_timeout=0.02)) as client:
            try:
                return bool(client.ping())
            except redis.TimeoutError:
                return False

    task = asyncio.gather(*(asyncio.to_thread(run, url) for url in urls))
    end = time.monotonic() + 5
    while any([await asyncio.to_thread(answers, url) for url in urls]):
        assert time.monotonic() < end, "Redis never got busy"
    return asyncio.ensure_future(task)


class ReplyDropper:
    """A loopback TCP relay to a real Redis that, while `dropping`, passes commands on but
    loses every reply: a write is applied and its sender never hears of it (a network that
    failed at the wrong moment)."""

    def __init__(self, target: str) -> None:
        address = urlsplit(target)
        self.target = (address.hostname or "127.0.0.1", address.port or 6379)
        self.dropping = False
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up or not self.dropping:
                        dst.write(data)
                        await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_replayed_write_that_redis_had_applied_is_not_applied_again(
    request: pytest.FixtureRequest, redis_backend: str, redis_url: str
) -> None:
    """Redis applies a write but its answer is lost (single Redis: a relay drops the replies;
    cluster: Redis is busy past the socket timeout, then applies what waited). The writer keeps
    the write and replays it: every event is on the stream once, the profile as if written
    once."""
    store = Store(connect(redis_url))
    relay = ReplyDropper(masters(request, redis_backend, redis_url)[0])
    if redis_backend == "cluster":
        writing = Store(connect(redis_url, timeout=0.1))
    else:
        writing = Store(connect(await relay.start(), timeout=0.2))
    writer = EventWriter(lambda entries: writing.record_many(entries, entries.spans), deadline=1)
    try:
        entries = views("a" * 22, 40) + views("b" * 22, 40)
        if redis_backend == "cluster":
            blocked = await busy(masters(request, redis_backend, redis_url), 0.5)
        else:
            relay.dropping = True
        assert not await writer.write(entries)  # no answer in time: kept
        assert len(writer.buffer) == 80
        relay.dropping = False
        assert await writer.drain(retry_seconds=5) == 0
        if redis_backend == "cluster":
            await blocked
        stream = await store.read_events(1000)
        assert len(stream) == 80
        assert sorted(e["items"][0] for e in stream if e["uid"] == "a" * 22) == sorted(
            f"sku-{n}" for n in range(40)
        )
        shopper = await store.load_shopper("a" * 22, now=1_000_100.0)
        assert len(shopper.histories[0].viewed) == 40
    finally:
        await writing.close()
        await store.close()
        await relay.stop()


async def test_a_live_shopper_is_not_queued_behind_a_backlog(redis_url: str) -> None:
    """A backlog waits for a replay; new writes go to Redis at once, also those of a shopper
    whose older events are in the backlog (their profile ends the same)."""
    store = Store(connect(redis_url))
    try:
        # A deadline a loaded machine meets: this is about order, not speed (nothing replays
        # the backlog here, so a write queued behind it would never be stored).
        writer = EventWriter(lambda entries: store.record_many(entries, entries.spans), deadline=2)
        writer.buffer.extend(views("w" * 22, 1000))  # kept from an earlier failure
        assert await writer.write(views("l" * 22, 1))  # stored, not kept
        assert await writer.write(views("w" * 22, 1, at=2_000_000.0))  # sku-0, seen again
        assert len(writer.buffer) == 1000
        assert await writer.drain() == 0
        shopper = await store.load_shopper("w" * 22, now=2_000_000.0)
        (history,) = shopper.histories
        assert history.viewed[0] == "sku-0" and history.view_times[0] == 2_000_000.0
    finally:
        await store.close()


async def test_a_shopper_s_events_applied_out_of_order_give_the_same_profile(
    redis_url: str,
) -> None:
    """A replay comes after newer live events: views keep their newest time, a cart older than
    a purchase stays bought, a purchase empties the cart only up to its time."""
    store = Store(connect(redis_url))
    uid, t = "o" * 22, 1_000_000.0
    try:
        view = ShopperEvent(SHOP, "view", ("a",))
        cart_a, cart_b = ShopperEvent(SHOP, "cart", ("a",)), ShopperEvent(SHOP, "cart", ("b",))
        bought = ShopperEvent(SHOP, "purchase", ("a",), order="o-1", revenue=Decimal("5"))
        live = [(uid, view, t + 50), (uid, bought, t + 20), (uid, cart_b, t + 30)]
        await store.record_many(live)
        await store.record_many([(uid, view, t + 10), (uid, cart_a, t + 15)])  # the replay
        (history,) = (await store.load_shopper(uid, now=t + 60)).histories
        assert history.view_times == (t + 50,)
        assert history.cart == ("b",) and history.cart_since == t + 30
        assert history.bought == ("a",) and history.orders == 1
    finally:
        await store.close()


async def test_no_admin_route_answers_500_when_redis_fails_it(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    client = await aiohttp_client(create_app(replace(settings, redis_url=own_redis.url)))
    own_redis.stop()
    auth = {"Authorization": f"Bearer {SHOP_TOKEN}"}
    for path in (
        f"/api/v1/advertisers/{SHOP}/report",
        f"/api/v1/advertisers/{SHOP}/products",
        f"/api/v1/advertisers/{SHOP}/campaigns",
    ):
        response = await client.get(path, headers=auth)
        assert response.status < 500 or response.status == 503, path  # e.g. a cached catalog
        if response.status == 503:
            assert int(response.headers["Retry-After"]) >= 1
            assert "error" in await response.json()
    report = await client.get(f"/api/v1/advertisers/{SHOP}/report", headers=auth)
    assert report.status == 503


def test_buffered_entries_cost_what_the_readme_says() -> None:
    """Measured with tracemalloc, entries made as parsing a request makes them (fresh strings)
    and kept as failed writes are: the events of realistic 40 KB tag batches (50 events of 48
    SKUs each, one write per batch), and pixel events (one write each)."""
    assert "at most about 500 bytes per entry" in " ".join(README.read_text("utf-8").split())
    rnd = random.Random(11)

    def sku() -> str:
        return "".join(rnd.choices(string.ascii_uppercase + string.digits, k=12))

    def tag_write(n: int) -> list[Entry]:
        return [
            (f"{n:022d}", ShopperEvent(SHOP, "list", tuple(sku() for _ in range(48))), 1.0 + k)
            for k in range(50)
        ]

    def pixel_write(n: int) -> list[Entry]:
        return [(f"{n:022d}", ShopperEvent(SHOP, "view", (sku(),)), 1.0)]

    async def never(entries: Sequence[Entry]) -> None:
        raise AssertionError("not written in this test")

    def per_entry(make: Any, writes: int) -> float:
        writer = EventWriter(never, capacity=10**6)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(writes):
            writer.buffer.extend(make(n))
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return used / len(writer.buffer)

    assert 38_000 < len(tag_batch([sku() for _ in range(48)], "list")) * 50 < 44_000
    assert per_entry(tag_write, 40) <= BYTES_PER_ENTRY
    assert per_entry(pixel_write, 2000) <= BYTES_PER_ENTRY


async def test_a_backlog_is_replayed_in_bounded_slices(
    redis_url: str,
) -> None:
    """A replay goes in bounded slices: a slice is at most REPLAY_BATCH entries."""
    from adserver.buffering.buffered_writer import REPLAY_BATCH

    store = Store(connect(redis_url))
    try:
        sizes: list[int] = []

        async def record(entries: Marked[Entry]) -> None:
            sizes.append(len(entries))
            await store.record_many(entries, entries.spans)

        writer = EventWriter(record)
        for n in range(5):
            writer.buffer.extend(views(f"{n:022d}", REPLAY_BATCH))
        assert await writer.drain() == 0
        assert max(sizes) <= REPLAY_BATCH and sum(sizes) == 5 * REPLAY_BATCH
        lengths = [await store.redis.xlen(keys.event_stream(s)) for s in range(keys.EVENT_SHARDS)]
        assert sum(lengths) == 5 * REPLAY_BATCH
    finally:
        await store.close()


async def test_the_tag_on_a_shop_s_site_can_read_a_shed_answer(
    aiohttp_client: Any, settings: Settings, own_redis: EmbeddedRedis
) -> None:
    """The tag sends with fetch(credentials: include) from the shop's origin: the answer lets
    that origin read its status and Retry-After (CORS), the 204s as the 503s."""
    app = create_app(replace(settings, redis_url=own_redis.url, buffer_events=1))
    client = await aiohttp_client(app, headers=BROWSER)
    origin = {"Origin": "https://shop1.example"}
    accepted = await client.post("/e", data=tag_batch(["sku-1"]), headers=origin)
    assert accepted.status == 204
    own_redis.stop()
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})  # fills the buffer
    shed = await client.post("/e", data=tag_batch(["sku-3"]), headers=origin)
    assert shed.status == 503
    for response in (accepted, shed):
        assert response.headers["Access-Control-Allow-Origin"] == "https://shop1.example"
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
        assert "Origin" in response.headers.getall("Vary")


async def test_a_flood_of_big_batches_is_shed_before_a_shopper_s_pixel() -> None:
    """The last tenth of a buffer takes only small writes: a big batch is refused while a
    pixel event still gets in."""
    from adserver.buffering.buffered_writer import Outcome

    async def never(entries: Sequence[Entry]) -> None:
        raise AssertionError("the breaker is open: nothing is sent")

    writer = EventWriter(never, capacity=100)
    for _ in range(writer.breaker.threshold):
        writer.breaker.failed()  # Redis is failing: accepted writes are kept
    assert await writer.write(views("f" * 22, 50)) is Outcome.KEPT
    assert await writer.write(views("g" * 22, 35)) is Outcome.KEPT
    assert await writer.write(views("h" * 22, 10)) is Outcome.SHED  # 95 > 90 for a big one
    assert await writer.write(views("i" * 22, 1)) is Outcome.KEPT  # a pixel: the reserve
    assert len(writer.buffer) == 86 and writer.shed == 10
