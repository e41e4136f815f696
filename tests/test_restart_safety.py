"""Restart safety, with real processes: `kaeru serve` stopped by SIGTERM finishes the requests
in flight and writes (or keeps on disk) every event it acknowledged; a `kill -9` of its Redis
(AOF everysec) loses nothing acknowledged, while the pixel keeps answering and Kaeru replays
what it buffered once Redis is back."""

from __future__ import annotations

import asyncio
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Generic, TypeVar

import orjson
import pytest
import redis

from adserver.app import UNSENT_DIR
from adserver.buffering.buffered_writer import EventWriter
from adserver.buffering.spill_codecs import Entry
from adserver.core.shopper import LineItem, ShopperEvent
from adserver.runtime.embedded_redis import EmbeddedRedis, free_port
from adserver.store import RedisError, Store, connect
from tests.conftest import BROWSER, SHOP, product_row
from tests.test_cli import TOKEN, kaeru_env

T = TypeVar("T")
GIF_LENGTH = 43
READY_SECONDS = 30.0


# -- a real `kaeru serve` ----------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"kaeru did not stop within {timeout}s:\n{self.output()}"
            ) from None


def start_server(env: dict[str, str], *args: str) -> Server:
    port = free_port()
    log = Path(env["KAERU_DATA_DIR"]).with_name(f"serve-{port}.log")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "adserver.cli", "serve", "--port", str(port), *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, log)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, server.output()
        try:
            if call(server, "GET", "/healthz")[0] == 200:
                return server
        except OSError:
            time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"kaeru not up within {READY_SECONDS}s:\n{server.output()}")


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[Server]:
    server = start_server(env, *args)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGTERM)


def call(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={**BROWSER, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


def ready(server: Server) -> tuple[int, dict[str, object]]:
    status, body, _ = call(server, "GET", "/readyz")
    return status, orjson.loads(body)


def wait_until(check: Callable[[], bool], what: str, deadline_s: float = 15) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {deadline_s}s"
        time.sleep(0.05)


def drained(server: Server) -> bool:
    """Redis answers and nothing waits in Kaeru's buffer."""
    status, body = ready(server)
    return status == 200 and body["buffered_events"] == 0


def metric(server: Server, name: str) -> float:
    text = call(server, "GET", "/metrics")[1].decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


# -- a shop sending pixel views, remembering what Kaeru acknowledged ---------------------------


@dataclass
class Shop:
    """One keep-alive connection, like a browser; every 43-byte GIF answer is an
    acknowledged view (uid, sku) at the time the answer arrived."""

    server: Server
    acked: list[tuple[str, str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    conn: http.client.HTTPConnection | None = None

    def view(self, uid: str, sku: str) -> None:
        conn = self.conn or http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        try:
            conn.request(
                "GET",
                f"/px?a={SHOP}&e=view&i={sku}",
                headers={**BROWSER, "Cookie": f"uid={uid}"},
            )
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self.conn = None
            self.failures.append(f"{sku}: {exc!r}")
            return
        self.conn = conn
        gif = response.getheader("Content-Type") == "image/gif" and len(body) == GIF_LENGTH
        if response.status == 200 and gif:
            self.acked.append((uid, sku, time.time()))
        else:
            self.failures.append(f"{sku}: {response.status} {body[:80]!r}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class SteadyShoppers(threading.Thread):
    """Views at about `rate` per second from `shoppers` shoppers, each viewing sku-1, sku-2, …
    in turn, so every acknowledged view is one member of one shopper's viewed set."""

    def __init__(self, server: Server, shoppers: int = 40, rate: float = 100) -> None:
        super().__init__(daemon=True)
        self.shop = Shop(server)
        self.uids = [secrets.token_urlsafe(16) for _ in range(shoppers)]
        self.interval = 1 / rate
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            uid = self.uids[n % len(self.uids)]
            self.shop.view(uid, f"sku-{n // len(self.uids) + 1}")
            n += 1
            self.halt.wait(self.interval)
        self.shop.close()

    def stop(self) -> Shop:
        self.halt.set()
        self.join(10)
        return self.shop


def stored_views(redis_url: str, uids: Iterable[str]) -> set[tuple[str, str]]:
    """(uid, sku) of every view in the shoppers' profiles, read through Kaeru's store."""

    async def read() -> set[tuple[str, str]]:
        store = Store(connect(redis_url))
        found: set[tuple[str, str]] = set()
        try:
            for uid in uids:
                for history in (await store.load_shopper(uid)).histories:
                    if history.advertiser == SHOP:
                        found.update((uid, sku) for sku in history.viewed)
        finally:
            await store.close()
        return found

    return asyncio.run(read())


def views_of(acked: Sequence[tuple[str, str, float]]) -> set[tuple[str, str]]:
    return {(uid, sku) for uid, sku, _ in acked}


def redis_pid(url: str) -> int:
    with closing(redis.Redis.from_url(url)) as client:
        return int(client.info("server")["process_id"])


def redis_answers(url: str) -> bool:
    try:
        with closing(redis.Redis.from_url(url, socket_connect_timeout=0.5)) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


# -- kill -9 of the embedded Redis ---------------------------------------------------------------


def test_kill_9_of_redis_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """`kaeru serve` on its embedded Redis (AOF everysec in the data dir) under a steady trickle
    of views; Redis is killed with SIGKILL, stays down 1.5 s, and is started again on the same
    data dir. Every view answered more than a second before the kill is back from the AOF; every
    view answered after it was buffered by Kaeru and replayed; the pixel never failed."""
    data = tmp_path / "data"
    url = f"unix://{data / 'redis.sock'}"
    revived: EmbeddedRedis | None = None
    server = start_server(kaeru_env(data), "--no-worker")
    try:
        shoppers = SteadyShoppers(server)
        shoppers.start()
        time.sleep(2.0)
        pid = redis_pid(url)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)  # the embedded redis-server kaeru started for this test
        wait_until(lambda: not redis_answers(url), "redis-server gone")
        time.sleep(1.5)
        status, body = ready(server)
        assert status == 503 and int(str(body["buffered_events"])) > 0, body
        down = [t for _, _, t in shoppers.shop.acked if t > killed_at]
        assert len(down) > 50, "the pixel kept answering while Redis was down"

        revived = EmbeddedRedis(data)  # same data dir, same socket: AOF replayed at start
        revived.start()
        time.sleep(1.0)
        shop = shoppers.stop()
        wait_until(lambda: drained(server), "Kaeru replayed its buffer")
        assert metric(server, "kaeru_events_buffered_total") > 0
        found = stored_views(url, shoppers.uids)
    finally:
        code = server.stop(signal.SIGTERM)
        if revived is not None:
            revived.stop()
    assert code == 0, server.output()

    assert shop.failures == [], shop.failures[:5]
    before = [a for a in shop.acked if a[2] < killed_at - 1.0]
    last_second = [a for a in shop.acked if killed_at - 1.0 <= a[2] < killed_at]
    after = [a for a in shop.acked if a[2] >= killed_at]
    assert len(before) > 50 and after
    assert views_of(before) - found == set(), "acknowledged more than 1 s before the kill, lost"
    assert views_of(after) - found == set(), "acknowledged after the kill (buffered), lost"
    lost_in_last_second = views_of(last_second) - found
    print(
        f"views acknowledged: {len(shop.acked)}; in the last second before the kill: "
        f"{len(last_second)}, of which lost: {len(lost_in_last_second)}"
    )
    # The AOF is written before Redis answers; everysec only bounds what a machine crash
    # loses. A process kill loses nothing unless the disk stalled fsync for seconds.
    assert len(lost_in_last_second) <= len(last_second)


# -- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_lets_requests_in_flight_finish_and_writes_their_events(tmp_path: Path) -> None:
    """Redis holds every write for 1.5 s (CLIENT PAUSE WRITE): a catalog upload is waiting on
    it, pixel views and a tag beacon were answered at their 40 ms deadline with their writes
    still on the way. SIGTERM now: no new connection is accepted, the upload is answered 200,
    the process waits for the writes and exits 0, and a restart finds every event."""
    data = tmp_path / "data"
    env = kaeru_env(data)
    url = f"unix://{data / 'redis.sock'}"
    feed = orjson.dumps([product_row(f"sku-{n}") for n in range(1, 201)])
    beacon = orjson.dumps({"events": [{"event": "view", "advertiser": SHOP, "item": "sku-tag"}]})
    uid = secrets.token_urlsafe(16)
    server = start_server(env, "--no-worker")
    try:
        with closing(redis.Redis.from_url(url)) as client:
            client.client_pause(1500, all=False)  # writes wait, reads and PING go on
        paused = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            upload = pool.submit(
                call,
                server,
                "PUT",
                f"/api/v1/advertisers/{SHOP}/products",
                feed,
                {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            shop = Shop(server)
            for n in range(20):
                shop.view(uid, f"sku-{n}")
            shop.close()
            status, _, _ = call(server, "POST", "/e", beacon, {"Cookie": f"uid={uid}"})
            assert status == 204
            assert not upload.done() and time.monotonic() - paused < 1.0
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert server.process.poll() is None, "exited with a request in flight"
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
                refused = False
            except ConnectionRefusedError:
                refused = True
            assert refused, "still accepting connections after SIGTERM"
            status, body, _ = upload.result(timeout=15)
        assert status == 200 and orjson.loads(body)["accepted"] == 200, body
        assert server.process.wait(timeout=15) == 0, server.output()
    finally:
        server.stop(signal.SIGKILL)
    assert shop.failures == [] and len(shop.acked) == 20
    assert "Traceback" not in server.output() and "lost" not in server.output()

    with serving(env, "--no-worker") as again:
        expected = views_of(shop.acked) | {(uid, "sku-tag")}
        assert stored_views(url, [uid]) == expected
        status, body, _ = call(
            again,
            "GET",
            f"/api/v1/advertisers/{SHOP}/products",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert status == 200 and orjson.loads(body)["count"] == 200


@contextmanager
def redis_of_its_own(directory: Path) -> Iterator[EmbeddedRedis]:
    """A Redis with AOF that the test stops and starts (Kaeru gets it as REDIS_URL)."""
    server = EmbeddedRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def buffer_views(server: Server, count: int) -> Shop:
    """Send `count` views while Redis is down: each is answered and waits in the buffer."""
    shop = Shop(server)
    uid = secrets.token_urlsafe(16)
    for n in range(count):
        shop.view(uid, f"sku-{n}")
    shop.close()
    assert shop.failures == [] and len(shop.acked) == count
    status, body = ready(server)
    assert status == 503 and body["buffered_events"] == count, body
    return shop


def test_sigterm_right_after_redis_comes_back_writes_the_buffer(tmp_path: Path) -> None:
    """Views buffered during an outage; Redis returns and Kaeru is stopped at once (its circuit
    breaker still open): the shutdown writes them all before exiting."""
    with redis_of_its_own(tmp_path / "redis") as store:
        env = kaeru_env(tmp_path / "data", REDIS_URL=store.url)
        server = start_server(env, "--no-worker")
        try:
            store.stop()
            shop = buffer_views(server, 25)
            time.sleep(1.2)  # the replayer's probes fail: the circuit breaker opens
            store.start()
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=20) == 0, server.output()
        finally:
            server.stop(signal.SIGKILL)
        assert views_of(shop.acked) <= stored_views(store.url, {u for u, _, _ in shop.acked})
    assert "lost" not in server.output() and "kept in" not in server.output(), server.output()


def test_sigterm_with_redis_down_keeps_the_buffer_on_disk_for_the_next_start(
    tmp_path: Path,
) -> None:
    """Redis stays down through the shutdown: the buffered views go to a file in the data dir
    (and the log says so); the next start replays them once Redis answers."""
    data = tmp_path / "data"
    with redis_of_its_own(tmp_path / "redis") as store:
        env = kaeru_env(data, REDIS_URL=store.url)
        server = start_server(env, "--no-worker")
        try:
            store.stop()
            shop = buffer_views(server, 30)
            stopping = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=20) == 0, server.output()
            assert time.monotonic() - stopping < 10
        finally:
            server.stop(signal.SIGKILL)
        assert "30 events kept in" in server.output(), server.output()
        assert len(list((data / UNSENT_DIR).glob("events-*.jsonl"))) == 1

        store.start()
        with serving(env, "--no-worker") as again:
            wait_until(lambda: drained(again), "spilled events replayed")
            assert "replaying 30 events" in again.output()
        uids = {u for u, _, _ in shop.acked}
        assert views_of(shop.acked) <= stored_views(store.url, uids)
    assert list((data / UNSENT_DIR).iterdir()) == []


# -- the write buffer on its own ---------------------------------------------------------------


class FlakyRedis(Generic[T]):
    """A write function that fails while `down`, recording what it stored."""

    def __init__(self) -> None:
        self.down = False
        self.stored: list[T] = []

    async def __call__(self, entries: Sequence[T]) -> None:
        await asyncio.sleep(0.001)
        if self.down:
            raise RedisError("down")
        self.stored.extend(entries)


def view(uid: str, sku: str, at: float = 1.0) -> Entry:
    return uid, ShopperEvent(SHOP, "view", (sku,)), at


async def test_drain_writes_the_buffer_even_while_the_breaker_is_open() -> None:
    redis_like = FlakyRedis()
    writer = EventWriter(redis_like, deadline=0.05)
    redis_like.down = True
    for n in range(5):
        assert not await writer.write([view("u", f"sku-{n}")])
    await asyncio.sleep(0.01)
    for _ in range(writer.breaker.threshold):
        writer.breaker.failed()  # what the replayer's probes did meanwhile
    assert writer.breaker.open and len(writer.buffer) == 5
    redis_like.down = False  # Redis is back, the breaker does not know yet
    assert await writer.drain(retry_seconds=0.5) == 0
    assert [e[1].items[0] for e in redis_like.stored] == [f"sku-{n}" for n in range(5)]


async def test_drain_waits_for_writes_under_way_and_buffers_their_failure() -> None:
    gate = asyncio.Event()

    async def stuck_then_failing(entries: Sequence[Entry]) -> None:
        await gate.wait()
        raise RedisError("gone")

    writer = EventWriter(stuck_then_failing, deadline=0.01)
    assert not await writer.write([view("u", "sku-1")])  # answered past the deadline
    assert not writer.buffer  # still on its way to Redis
    asyncio.get_running_loop().call_later(0.05, gate.set)
    assert await writer.drain(retry_seconds=0.1) == 1
    assert [e[1].items for e in writer.buffer] == [("sku-1",)]


def test_spilled_events_come_back_in_order_with_every_field(tmp_path: Path) -> None:
    purchase = ShopperEvent(
        SHOP,
        "purchase",
        ("a", "b"),
        order="o-1",
        revenue=Decimal("21.50"),
        currency="EUR",
        lines=(LineItem("a", Decimal("10.25"), 2), LineItem("b", None, 1)),
    )
    entries = [view("u1", "x", 1.5), ("u2", purchase, 2.25), view("u1", "y", 3.0)]
    writer = EventWriter(FlakyRedis())
    writer.buffer.extend(entries)
    path = writer.spill(tmp_path)
    assert path is not None and path.parent == tmp_path and not writer.buffer
    assert writer.spill(tmp_path) is None  # nothing left: no empty file

    later = EventWriter(FlakyRedis())
    later.buffer.append(view("u3", "newer"))
    other = EventWriter(FlakyRedis())
    assert later.load_spilled(tmp_path) == 3
    assert other.load_spilled(tmp_path) == 0  # claimed by the first
    assert list(later.buffer) == [*entries, view("u3", "newer")]
    # The claimed file stays until what came from it is written (a kill -9 loses nothing).
    assert [p.name.endswith(".replaying") for p in tmp_path.iterdir()] == [True]
    while later.buffer:
        asyncio.run(later.replay_once())
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_spill_line_is_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    writer = EventWriter(FlakyRedis())
    writer.buffer.extend([view("u", "a"), view("u", "b")])
    path = writer.spill(tmp_path)
    assert path is not None
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join([lines[0], b'{"kind": "bogus"}', b"not json", lines[1]]) + b"\n")
    assert writer.load_spilled(tmp_path) == 2
    assert [e[1].items for e in writer.buffer] == [("a",), ("b",)]


REPLAY_AND_DIE = """
import asyncio, os, signal, sys
from pathlib import Path
from adserver.buffering.buffered_writer import EventWriter

async def main() -> None:
    written = open(sys.argv[2], "a")
    async def write(entries):
        written.write("".join(f"{uid} {event.items[0]}\\n" for uid, event, _ in entries))
        written.flush()
    writer = EventWriter(write)
    writer.load_spilled(Path(sys.argv[1]))
    for _ in range(int(sys.argv[3])):
        await writer.replay_once()
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.parametrize("slices", [0, 1, 2])
def test_a_replay_killed_midway_leaves_the_rest_for_the_next_start(
    tmp_path: Path, slices: int
) -> None:
    """A start replays what the last run spilled. It used to delete the file once loaded
    into memory: a kill -9 (or the OOM killer) during the replay lost every acknowledged
    event not yet written. Now the next start replays exactly what was not written."""
    unsent, written = tmp_path / "unsent", tmp_path / "written.txt"
    writer = EventWriter(FlakyRedis())
    for n in range(25):  # 25 writes of 100 views: 3 replay slices
        writer.buffer.keep([view(f"u{n}", f"sku-{i}") for i in range(100)])
    assert writer.spill(unsent) is not None
    child = subprocess.run(
        [sys.executable, "-c", REPLAY_AND_DIE, str(unsent), str(written), str(slices)],
        capture_output=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    before = written.read_text().splitlines() if written.exists() else []
    assert len(before) == 1000 * slices

    redis_like = FlakyRedis[Entry]()
    again = EventWriter(redis_like)
    assert again.load_spilled(unsent) == 2500 - 1000 * slices
    while again.buffer:
        asyncio.run(again.replay_once())
    after = [f"{uid} {event.items[0]}" for uid, event, _ in redis_like.stored]
    expected = [f"u{n} sku-{i}" for n in range(25) for i in range(100)]
    assert sorted(before + after) == sorted(expected)  # each once
    assert list(unsent.iterdir()) == []
