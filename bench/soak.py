"""A soak: Kaeru under a steady fixed-rate mix for a long time, its Redis restarted once in the
middle; checks that nothing acknowledged was lost and that the server's memory stays flat.

    .venv/bin/python bench/soak.py                 # 10 minutes at 400 req/s → bench/SOAK.md
    .venv/bin/python bench/soak.py --duration 20 --rate 150 --out /tmp/soak.md --json /tmp/s.json

Starts a private redis-server (AOF everysec, in a temporary directory) and a real `kaeru serve`
on loopback (Kaeru on core 1, Redis and this load generator on core 0 when there are two cores),
loads a catalog, then sends an open-loop mix (bench/fixed_rate.py: requests go out on schedule
whatever the server does) of pixel views, carts and purchases, tag batches (`POST /e`) and
`/ad.json` decisions. Every shopper is a fresh uid and every event a distinct product (or order),
so each acknowledged event — a 2xx answer of `/px` or `/e` — is one member of one shopper's
profile, which is read back exactly through Kaeru's store (`Store.load_shopper`) at the end. In
the middle Redis is stopped (or killed with --kill), left down --redis-down seconds and started
again on the same socket and data directory (AOF reload). Kaeru's RSS is sampled throughout.

Writes a markdown report (--out) and, with --json, a machine-readable summary. Exits 1 when a
must fails: a non-2xx or unanswered pixel or batch request, a 5xx anywhere, an acknowledged event
missing from Redis, events shed by a full buffer, Redis not back with its data, Kaeru not
exiting 0 on SIGTERM or leaving unsent events behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import redis

from adserver.runtime.embedded_redis import EmbeddedRedis, free_port
from adserver.store import Store, connect

from fixed_rate import Recorder, Run, open_loop
from procs import Processes, Service, group_rss_bytes, machine, pin_running
from seed import ADVERTISER, upload_catalog

BENCH = Path(__file__).resolve().parent
LOADGEN_CORE, SERVER_CORE = 0, 1
# Pin (Kaeru on one core, Redis and the generator on the other) only where both are ours to use.
PIN = {LOADGEN_CORE, SERVER_CORE} <= os.sched_getaffinity(0)
TOKEN = "soak-" + secrets.token_hex(12)
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
READY_SECONDS = 30.0
SETTLE_SECONDS = 60.0  # after the load: how long Kaeru may take to write what it buffered
STOP_SECONDS = 30.0
# The mix: kind of request, share of all requests. Views, carts and batches use distinct
# products per shopper (at most PER_SHOPPER, under KAERU_MAX_VIEWS = 50); a purchase buys one
# product under a new order id. Each kind has its own shoppers (a purchase empties the cart).
MIX = (("view", 0.40), ("cart", 0.10), ("purchase", 0.05), ("batch", 0.10), ("ad", 0.35))
ROUTES = {"view": "/px", "cart": "/px", "purchase": "/px", "batch": "/e", "ad": "/ad.json"}
PER_SHOPPER = 40
BATCH_EVENTS = 3
ACTIVE_SHOPPERS = 64  # shoppers of each kind taking turns; a full one is replaced by a new uid
ANONYMOUS_ADS = 0.2  # share of ad requests without a uid cookie


class Interrupted(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


# -- the load -------------------------------------------------------------------------------------


@dataclass
class Shopper:
    uid: str
    sent: int = 0  # events sent so far: products sku-1 … sku-<sent>


@dataclass
class Pool:
    """The shoppers of one kind and what Kaeru acknowledged for each of them."""

    kind: str
    rng: random.Random
    active: list[Shopper] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)
    acked: dict[str, set[str]] = field(default_factory=dict)
    turn: int = 0

    def take(self, count: int) -> tuple[str, list[str]]:
        """A shopper and `count` products they never sent before."""
        if len(self.active) < ACTIVE_SHOPPERS:
            self.active.append(self._new())
        slot = self.turn % len(self.active)
        self.turn += 1
        shopper = self.active[slot]
        if shopper.sent + count > PER_SHOPPER:
            shopper = self.active[slot] = self._new()
        skus = [f"sku-{shopper.sent + k}" for k in range(1, count + 1)]
        shopper.sent += count
        return shopper.uid, skus

    def _new(self) -> Shopper:
        uid = secrets.token_urlsafe(16)
        self.uids.append(uid)
        return Shopper(uid)

    def some_uid(self) -> str | None:
        return self.rng.choice(self.uids) if self.uids else None


@dataclass
class Sent:
    request: bytes  # kept so that its id() stays unique while it is in flight
    kind: str
    uid: str | None
    items: list[str]
    at: float


class Mix(Run):
    """fixed_rate.Run building each request on the fly and keeping score of every answer."""

    def __init__(self, host: str, port: int, seed: int) -> None:
        super().__init__(requests=[b""])
        self.netloc = f"{host}:{port}"
        self.rng = random.Random(seed)
        self.kinds = [kind for kind, _ in MIX]
        self.weights = [share for _, share in MIX]
        self.pools = {k: Pool(k, self.rng) for k in ("view", "cart", "purchase", "batch")}
        self.in_flight: dict[int, Sent] = {}
        self.by_route: Counter[tuple[str, str]] = Counter()  # (route, status or "no answer")
        self.answer_time = {route: Recorder() for route in sorted(set(ROUTES.values()))}
        self.acknowledged: Counter[str] = Counter()  # events, by kind
        self.unanswered: Counter[str] = Counter()  # events sent without an answer
        self.answered_count = 0
        self.slowest = 0.0  # the slowest answer (s) since the last `take_slowest`
        self.pixel_failures = 0  # non-2xx or no answer on /px and /e
        self.server_errors = 0  # 5xx anywhere

    def request(self) -> bytes:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        uid: str | None
        items: list[str] = []
        body = b""
        if kind == "ad":
            uid = None if self.rng.random() < ANONYMOUS_ADS else self.pools["view"].some_uid()
            target = "/ad.json?pub=news1&size=300x250"
        elif kind == "batch":
            uid, items = self.pools[kind].take(BATCH_EVENTS)
            events = [{"event": "view", "advertiser": ADVERTISER, "item": s} for s in items]
            body = orjson.dumps({"events": events})
            target = "/e"
        else:
            uid, items = self.pools[kind].take(1)
            target = f"/px?a={ADVERTISER}&e={kind}&i={items[0]}"
            if kind == "purchase":
                order = f"o-{uid.replace('_', '.')}-{items[0]}"  # order ids allow no "_"
                target += f"&o={order}&v=19.90&cur=EUR"
        head = [
            f"{'POST' if body else 'GET'} {target} HTTP/1.1",
            f"Host: {self.netloc}",
            f"User-Agent: {USER_AGENT}",
        ]
        if uid is not None:
            head.append(f"Cookie: uid={uid}")
        if body:
            head += ["Content-Type: text/plain", f"Content-Length: {len(body)}"]
        request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.in_flight[id(request)] = Sent(request, kind, uid, items, time.perf_counter())
        return request

    def answered(self, request: bytes, status: int | None) -> None:
        sent = self.in_flight.pop(id(request))
        route = ROUTES[sent.kind]
        self.answered_count += 1
        self.by_route[route, "no answer" if status is None else str(status)] += 1
        if status is not None:
            seconds = time.perf_counter() - sent.at
            self.answer_time[route].record(seconds)
            self.slowest = max(self.slowest, seconds)
        if status is not None and status >= 500:
            self.server_errors += 1
        if sent.kind == "ad":
            return
        if status is None or not 200 <= status < 300:
            self.pixel_failures += 1
            if status is None:
                self.unanswered[sent.kind] += len(sent.items)
            return
        assert sent.uid is not None
        self.pools[sent.kind].acked.setdefault(sent.uid, set()).update(sent.items)
        self.acknowledged[sent.kind] += len(sent.items)

    def take_slowest(self) -> float:
        slowest, self.slowest = self.slowest, 0.0
        return slowest


# -- processes and probes -----------------------------------------------------------------------


@dataclass
class Sample:
    at: float  # seconds since the load started
    kaeru_rss: int
    redis_used: int | None  # Redis used_memory; None while it is down
    answered: int
    failures: int  # pixel/batch failures so far
    buffered: int | None  # Kaeru's in-memory buffer (/readyz); None if it did not answer
    slowest_ms: float  # the slowest answer since the previous sample


@dataclass
class Restart:
    mode: str
    stopped_at: float = 0.0
    started_at: float = 0.0
    keys_before: int = 0
    keys_after: int = 0
    aof: bool = False


@dataclass
class Soak:
    args: argparse.Namespace
    tmp: Path
    procs: Processes = field(default_factory=Processes)
    redis_server: EmbeddedRedis | None = None
    kaeru: Service | None = None
    samples: list[Sample] = field(default_factory=list)
    restart: Restart | None = None
    notes: list[str] = field(default_factory=list)
    started: float = 0.0  # perf_counter() when the load started
    cpu_share: float = 0.0  # Kaeru's CPU time over the load / its duration (1.0 = one core)

    @property
    def redis_url(self) -> str:
        assert self.redis_server is not None
        return self.redis_server.url

    def start_redis(self) -> None:
        self.redis_server = EmbeddedRedis(self.tmp / "redis")  # AOF everysec, unix socket
        self.redis_server.start()
        self._pin_redis()

    def _pin_redis(self) -> None:
        assert self.redis_server is not None and self.redis_server.process is not None
        if PIN:
            pin_running(self.redis_server.process.pid, LOADGEN_CORE)

    def start_kaeru(self) -> None:
        port = free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("KAERU_") and k != "REDIS_URL"
        }
        env.update(
            KAERU_ADVERTISERS=f"{ADVERTISER}:{TOKEN}",
            KAERU_DATA_DIR=str(self.tmp / "kaeru"),
            KAERU_SECRET=secrets.token_urlsafe(32),
            # Every anonymous ad of the soak comes from one address and User-Agent: as one
            # client it would be capped, and the soak checks that every ad served is counted.
            KAERU_IMPRESSION_CAP_PER_HOUR="0",
        )
        command = [sys.executable, "-m", "adserver.cli", "serve", "--port", str(port)]
        command += ["--redis-url", self.redis_url, "--workers", str(self.args.workers)]
        log = self.tmp / "kaeru.log"
        self.kaeru = self.procs.start(
            "kaeru", command, port=port, log=log, core=SERVER_CORE if PIN else None, env=env
        )
        deadline = time.monotonic() + READY_SECONDS
        while self.ready()[0] != 200:
            if not self.kaeru.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"kaeru did not start:\n{self.kaeru.log_tail()}")
            time.sleep(0.1)

    def url(self, path: str) -> str:
        assert self.kaeru is not None
        return f"http://127.0.0.1:{self.kaeru.port}{path}"

    def ready(self) -> tuple[int, int | None]:
        """(/readyz status, entries buffered: events, impressions and clicks) — (0, None) when
        Kaeru does not answer."""
        try:
            with urllib.request.urlopen(self.url("/readyz"), timeout=2) as answer:
                return answer.status, buffered(json.load(answer))
        except urllib.error.HTTPError as exc:
            return exc.code, buffered(json.load(exc))
        except (OSError, ValueError, KeyError):
            return 0, None

    def load_catalog(self) -> None:
        upload_catalog(self.url(""), TOKEN)

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=1)

    def redis_used(self) -> int | None:
        try:
            with self.redis_client() as client:
                return int(client.info("memory")["used_memory"])
        except (redis.RedisError, OSError):
            return None

    def sample(self, mix: Mix) -> None:
        assert self.kaeru is not None
        self.samples.append(
            Sample(
                at=time.perf_counter() - self.started,
                kaeru_rss=group_rss_bytes(self.kaeru.process.pid),
                redis_used=self.redis_used(),
                answered=mix.answered_count,
                failures=mix.pixel_failures,
                buffered=self.ready()[1],
                slowest_ms=mix.take_slowest() * 1000,
            )
        )

    def restart_redis(self) -> None:
        """Stop (or kill -9) Redis, leave it down, start it again on the same socket and data
        directory: it reloads its AOF."""
        server = self.redis_server
        assert server is not None and server.process is not None
        restart = self.restart = Restart("kill -9" if self.args.kill else "stop (SIGTERM)")
        with self.redis_client() as client:
            restart.keys_before = int(client.dbsize())
        restart.stopped_at = time.perf_counter() - self.started
        if self.args.kill:
            server.process.kill()
            server.process.wait()
        server.stop()
        time.sleep(self.args.redis_down)
        server.start()
        restart.started_at = time.perf_counter() - self.started
        self._pin_redis()
        with self.redis_client() as client:
            restart.keys_after = int(client.dbsize())
            restart.aof = int(client.info("persistence")["aof_enabled"]) == 1

    def settle(self) -> float:
        """Wait until Kaeru answers ready with an empty buffer; returns how long it took."""
        begun = time.monotonic()
        time.sleep(1.0)  # writes answered at their deadline are still on their way
        while time.monotonic() - begun < SETTLE_SECONDS:
            status, buffered = self.ready()
            if status == 200 and buffered == 0:
                break
            time.sleep(0.2)
        return time.monotonic() - begun

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as answer:
            text = answer.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("kaeru_") and "_total" in line:
                name, value = line.rsplit(" ", 1)
                values[name] = values.get(name, 0.0) + float(value)
        return values

    def stop_kaeru(self) -> tuple[int | None, float]:
        """SIGTERM, as an orchestrator stops it: (exit code, seconds to exit)."""
        assert self.kaeru is not None
        process = self.kaeru.process
        begun = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            code: int | None = process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - begun

    def stop(self) -> None:
        self.procs.stop_all()
        if self.redis_server is not None:
            self.redis_server.stop()


async def drive(soak: Soak, mix: Mix) -> float:
    """The fixed-rate load, the RSS sampler and the Redis restart, side by side."""
    args = soak.args
    assert soak.kaeru is not None
    started = soak.started = time.perf_counter()
    every = args.sample_every or max(1.0, args.duration / 60)

    async def sampler() -> None:
        while True:
            await asyncio.to_thread(soak.sample, mix)
            await asyncio.sleep(every)

    async def restarter() -> None:
        await asyncio.sleep(args.duration / 2)
        await asyncio.to_thread(soak.restart_redis)

    background = [asyncio.create_task(sampler()), asyncio.create_task(restarter())]
    host, port = "127.0.0.1", soak.kaeru.port
    cpu = soak.kaeru.cpu_seconds()
    await open_loop(mix, host, port, args.rate, args.duration, args.connections)
    elapsed = time.perf_counter() - started
    soak.cpu_share = (soak.kaeru.cpu_seconds() - cpu) / elapsed
    background[0].cancel()
    await background[1]  # a short run may end before Redis is back
    return elapsed


# -- verification -------------------------------------------------------------------------------


def buffered(ready: dict[str, Any]) -> int:
    return sum(int(n) for name, n in ready.items() if name.startswith("buffered_"))


@dataclass
class Tally:
    acknowledged: int = 0
    found: int = 0  # acknowledged and in Redis
    missing: int = 0  # acknowledged, not in Redis
    extra: int = 0  # in Redis without an answer (sent, answer lost)


async def count_in_redis(redis_url: str, mix: Mix) -> dict[str, Tally]:
    """Each shopper's profile through Kaeru's own store: which acknowledged events are there."""
    store = Store(connect(redis_url))
    limit = asyncio.Semaphore(32)
    tallies = {kind: Tally(acknowledged=mix.acknowledged[kind]) for kind in mix.pools}

    async def one(kind: str, uid: str) -> None:
        async with limit:
            shopper = await store.load_shopper(uid)
        held: set[str] = set()
        for history in shopper.histories:
            if history.advertiser == ADVERTISER:
                field_name = {"cart": "cart", "purchase": "bought"}.get(kind, "viewed")
                held = set(getattr(history, field_name))
        acked = mix.pools[kind].acked.get(uid, set())
        tally = tallies[kind]
        tally.found += len(acked & held)
        tally.missing += len(acked - held)
        tally.extra += len(held - acked)

    try:
        await asyncio.gather(*(one(k, uid) for k, pool in mix.pools.items() for uid in pool.uids))
    finally:
        await store.close()
    return tallies


async def impressions_in_redis(redis_url: str) -> int:
    """Impressions the reports count for the soak's shop (its campaign totals)."""
    store = Store(connect(redis_url))
    try:
        totals = (await store.ledger.campaign_totals([ADVERTISER]))[ADVERTISER]
    finally:
        await store.close()
    return sum(n for name, n in totals.items() if name.startswith("imp:"))


# -- the report ---------------------------------------------------------------------------------


def rss_around_restart(samples: Sequence[Sample], warm: Sample, restart: Restart) -> str:
    """How the RSS moved before the Redis outage, across it, and after it."""
    before = [s for s in samples if warm.at <= s.at < restart.stopped_at]
    after = [s for s in samples if s.at > restart.started_at + 1]
    if not before or not after:
        return ""
    first, last = before[-1], after[0]
    return (
        f": {mib(first.kaeru_rss - warm.kaeru_rss)} MiB from warm-up to the Redis stop, "
        f"{mib(last.kaeru_rss - first.kaeru_rss)} MiB across the outage (the write buffer "
        f"and reconnections), {mib(samples[-1].kaeru_rss - last.kaeru_rss)} MiB from then "
        "to the end"
    )


def span(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} s"


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.1f}"


@dataclass
class Outcome:
    musts: list[tuple[str, bool, str]]
    summary: dict[str, Any]
    markdown: str

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.musts)


def evaluate(
    soak: Soak,
    mix: Mix,
    elapsed: float,
    tallies: dict[str, Tally],
    counters: dict[str, float],
    impressions: int,
    settled: float,
    exit_code: int | None,
    stop_seconds: float,
    context: dict[str, str],
) -> Outcome:
    args = soak.args
    restart = soak.restart
    total = Tally()
    for tally in tallies.values():
        total.acknowledged += tally.acknowledged
        total.found += tally.found
        total.missing += tally.missing
        total.extra += tally.extra
    unsent = list((soak.tmp / "kaeru" / "unsent").glob("*")) if soak.tmp.exists() else []
    dropped = sum(  # shed: the buffer was full (nothing acknowledged is ever dropped)
        value for name, value in counters.items() if name.startswith("kaeru_events_shed")
    )
    delivery_dropped = sum(
        value for name, value in counters.items() if name.startswith("kaeru_delivery_shed")
    )
    served = mix.by_route["/ad.json", "200"]
    samples = soak.samples
    warm = next((s for s in samples if s.at >= args.duration * 0.1), samples[0])
    rss_start, rss_end = samples[0].kaeru_rss, samples[-1].kaeru_rss
    rss_max = max(s.kaeru_rss for s in samples)
    answered = sum(mix.by_route.values())
    expected = int(args.rate * args.duration)
    musts = [
        (
            "no non-2xx and no unanswered request on /px and /e",
            mix.pixel_failures == 0,
            f"{mix.pixel_failures} failed",
        ),
        ("no 5xx on any route", mix.server_errors == 0, f"{mix.server_errors} 5xx"),
        (
            "every acknowledged event found in Redis (acknowledged = found)",
            total.missing == 0 and total.found == total.acknowledged,
            f"{total.acknowledged:,} acknowledged, {total.found:,} found, "
            f"{total.missing:,} missing",
        ),
        ("no event shed by a full buffer", dropped == 0, f"{dropped:.0f} shed"),
        (
            "every ad served counted in the reports (impressions counted ≥ ads served)",
            impressions >= served and delivery_dropped == 0,
            f"{served:,} served, {impressions:,} counted, {delivery_dropped:.0f} shed",
        ),
        (
            "Redis restarted once, its data back from the AOF",
            restart is not None and restart.aof and restart.keys_after >= restart.keys_before,
            "not restarted"
            if restart is None
            else f"{restart.keys_before:,} keys before, {restart.keys_after:,} after",
        ),
        ("every scheduled request answered", answered == expected, f"{answered:,}/{expected:,}"),
        (
            "Kaeru exits 0 on SIGTERM, nothing left unsent",
            exit_code == 0 and not unsent,
            f"exit {exit_code} after {stop_seconds:.1f} s, {len(unsent)} unsent files",
        ),
    ]
    summary: dict[str, Any] = {
        "duration_s": args.duration,
        "rate": args.rate,
        "elapsed_s": elapsed,
        "requests": {f"{r} {s}": n for (r, s), n in sorted(mix.by_route.items())},
        "answered": answered,
        "scheduled": expected,
        "pixel_failures": mix.pixel_failures,
        "server_errors": mix.server_errors,
        "events": {k: vars(t) for k, t in tallies.items()} | {"total": vars(total)},
        "impressions": {"served": served, "counted": impressions},
        "unanswered_events": dict(mix.unanswered),
        "kaeru_counters": counters,
        "restart": None if restart is None else vars(restart),
        "rss_bytes": {"start": rss_start, "warm": warm.kaeru_rss, "end": rss_end, "max": rss_max},
        "samples": [vars(sample) for sample in samples],
        "settle_s": settled,
        "kaeru_cpu_share": soak.cpu_share,
        "exit_code": exit_code,
        "stop_s": stop_seconds,
        "musts": {name: ok for name, ok, _ in musts},
        "passed": all(ok for _, ok, _ in musts),
    }

    lines = [
        f"# Kaeru soak: {span(args.duration)} at {args.rate:g} req/s, Redis restarted once",
        "",
        f"Command: `.venv/bin/python bench/soak.py --duration {args.duration:g} --rate "
        f"{args.rate:g}{' --kill' if args.kill else ''} --redis-down {args.redis_down:g}"
        f"{f' --workers {args.workers}' if args.workers != 1 else ''}` "
        "(see bench/README.md). Every run overwrites this file.",
        "",
        "## Machine",
        "",
        f"- **CPU** {context['cpu']}, **RAM** {context['ram']}, kernel {context['kernel']}",
        f"- Python {context['python']}, aiohttp {context['aiohttp']}, uvloop "
        f"{context['uvloop']}, redis-py {context['redis-py']}, Redis {context['redis']}",
        f"- {context['date']}; load average at start `{context['load']}`",
        f"- `kaeru serve --workers {args.workers}` ({soak.kaeru.placement if soak.kaeru else '?'}),"
        f" related-items worker on; Redis with AOF everysec on a unix socket and this load "
        f"generator {f'on core {LOADGEN_CORE}' if PIN else 'not pinned'}; "
        f"{args.connections} keep-alive connections, open loop",
        "",
        "## Musts",
        "",
        "| must | result | |",
        "|---|---|---|",
        *(f"| {name} | {'PASS' if ok else '**FAIL**'} | {detail} |" for name, ok, detail in musts),
        "",
        "## Requests",
        "",
        f"{answered:,} requests in {elapsed:.0f} s ({answered / max(elapsed, 1e-9):,.0f}/s); "
        f"Kaeru used {soak.cpu_share:.0%} of a core on average; mix: "
        + ", ".join(f"{kind} {share:.0%}" for kind, share in MIX)
        + ". Answer time is measured from the send (the generator's own lateness excluded).",
        "",
        "| route | requests | by status | answer p50 ms | p99 ms | max ms |",
        "|---|--:|---|--:|--:|--:|",
    ]
    for route, recorder in mix.answer_time.items():
        statuses = {s: n for (r, s), n in sorted(mix.by_route.items()) if r == route}
        latency = recorder.summary()
        lines.append(
            f"| `{route}` | {sum(statuses.values()):,} | "
            + ", ".join(f"{s}: {n:,}" for s, n in statuses.items())
            + f" | {latency['p50_ms'] or 0:.2f} | {latency['p99_ms'] or 0:.2f} | "
            f"{latency['max_ms'] or 0:.2f} |"
        )
    lines += [
        "",
        "## Events: acknowledged by Kaeru vs found in Redis",
        "",
        "Acknowledged: events in a 2xx answer of `/px` or `/e`, counted by the client. Found: "
        "read back per shopper through `Store.load_shopper` after the run (views and batch "
        "views in the viewed set, carts in the cart, purchases in the bought set).",
        "",
        "| kind | acknowledged | found | missing | in Redis, not acknowledged |",
        "|---|--:|--:|--:|--:|",
        *(
            f"| {kind} | {t.acknowledged:,} | {t.found:,} | {t.missing:,} | {t.extra:,} |"
            for kind, t in [*tallies.items(), ("**total**", total)]
        ),
        "",
        f"Impressions: {served:,} ads answered 200, {impressions:,} counted in the shop's "
        "campaign totals"
        + (
            f" ({impressions - served:,} counted twice: a batch Redis applied but whose answer "
            "was lost as it stopped, replayed)."
            if impressions > served
            else "."
        ),
        "",
        "Kaeru's own counters at the end: "
        + ", ".join(
            f"`{name}` {value:,.0f}"
            for name, value in sorted(counters.items())
            if name.startswith(("kaeru_events_", "kaeru_delivery_", "kaeru_store_errors"))
        )
        + f". (`stored` counts writes Redis acknowledged within Kaeru's 40 ms deadline, "
        "`buffered` the answers given before that — replayed later, `delivery_buffered` the "
        "impressions and clicks Redis failed, replayed as well; store errors are reads that "
        "failed while Redis was down: ads fell back to non-personalised.) "
        f"Kaeru's buffer was empty {settled:.1f} s after the load ended.",
        "",
    ]
    if restart is not None:
        lines += [
            "## Redis restart",
            "",
            f"{restart.mode} at {restart.stopped_at:.1f} s, back at {restart.started_at:.1f} s "
            f"({restart.started_at - restart.stopped_at:.1f} s down, same socket and data "
            f"directory); {restart.keys_before:,} keys before the stop, {restart.keys_after:,} "
            "right after the start (reloaded from the AOF). Meanwhile the pixel answered from "
            "Kaeru's in-memory buffer, replayed when Redis was back.",
            "",
        ]
    lines += [
        "## Memory",
        "",
        f"Kaeru's RSS (all its processes): {mib(rss_start)} MiB when the load started, "
        f"{mib(warm.kaeru_rss)} MiB after 10% of the run, {mib(rss_end)} MiB at the end, "
        f"{mib(rss_max)} MiB at most; growth after warm-up "
        f"{mib(rss_end - warm.kaeru_rss)} MiB "
        f"({(rss_end - warm.kaeru_rss) / max(warm.kaeru_rss, 1):+.1%})"
        + (f"{rss_around_restart(samples, warm, restart)}." if restart else "."),
        "",
        "| t (s) | Kaeru RSS MiB | Redis used MiB | requests answered | pixel failures | "
        "buffered events | slowest answer ms (since the row above) |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    step = max(1, len(samples) // 20)
    shown = list(range(0, len(samples), step))
    if shown[-1] != len(samples) - 1:
        shown.append(len(samples) - 1)
    previous = -1
    for index in shown:
        s = samples[index]
        slowest = max(x.slowest_ms for x in samples[previous + 1 : index + 1])
        previous = index
        lines.append(
            f"| {s.at:.0f} | {mib(s.kaeru_rss)} | {mib(s.redis_used)} | {s.answered:,} | "
            f"{s.failures} | {'—' if s.buffered is None else f'{s.buffered:,}'} | "
            f"{slowest:,.0f} |"
        )
    lines += ["", *(f"- {note}" for note in soak.notes)] if soak.notes else []
    return Outcome(musts, summary, "\n".join(lines) + "\n")


# -- main ---------------------------------------------------------------------------------------


def run(soak: Soak) -> Outcome:
    args = soak.args
    context = machine()
    if PIN:
        os.sched_setaffinity(0, {LOADGEN_CORE})
    soak.start_redis()
    with soak.redis_client() as client:
        context["redis"] = str(client.info("server")["redis_version"])
    soak.start_kaeru()
    soak.load_catalog()
    assert soak.kaeru is not None
    mix = Mix("127.0.0.1", soak.kaeru.port, args.seed)
    print(
        f"soak: {args.duration:g} s at {args.rate:g} req/s, Redis restart at "
        f"{args.duration / 2:g} s …",
        file=sys.stderr,
    )
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        elapsed = runner.run(drive(soak, mix))
    settled = soak.settle()
    soak.sample(mix)
    counters = soak.metrics()
    tallies = asyncio.run(count_in_redis(soak.redis_url, mix))
    impressions = asyncio.run(impressions_in_redis(soak.redis_url))
    exit_code, stop_seconds = soak.stop_kaeru()
    if mix.unanswered:
        soak.notes.append(f"events sent without an answer: {dict(mix.unanswered)}")
    return evaluate(
        soak,
        mix,
        elapsed,
        tallies,
        counters,
        impressions,
        settled,
        exit_code,
        stop_seconds,
        context,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=400.0, help="requests per second")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--redis-down", type=float, default=5.0, help="seconds Redis stays down")
    parser.add_argument("--kill", action="store_true", help="kill -9 Redis instead of stopping it")
    parser.add_argument("--workers", type=int, default=1, help="kaeru serve --workers")
    parser.add_argument("--sample-every", type=float, help="seconds between RSS samples")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=BENCH / "SOAK.md")
    parser.add_argument("--json", type=Path, help="also write a JSON summary here")
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL):
            signal.signal(signum, _on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="kaeru-soak-"))
    soak = Soak(args, tmp)
    try:
        outcome = run(soak)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: stopping everything this run started", file=sys.stderr)
        return 130
    except Exception:
        if soak.kaeru is not None:
            print(f"kaeru log:\n{soak.kaeru.log_tail(40)}", file=sys.stderr)
        raise
    finally:
        soak.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.write_text(outcome.markdown)
    if args.json:
        args.json.write_text(json.dumps(outcome.summary, indent=2))
    print(outcome.markdown)
    for name, ok, detail in outcome.musts:
        if not ok:
            print(f"FAILED: {name}: {detail}", file=sys.stderr)
    print(f"written to {args.out}", file=sys.stderr)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
