"""A flood of valid 40 KB tag batches (issue 11 §3): is every event Kaeru acknowledged in Redis
exactly once, does memory stay bounded, does a live shopper still get through, do admin routes
stay up?

    .venv/bin/python bench/flood.py                          # this tree: 70 batches/s for 30 s
    .venv/bin/python bench/flood.py --src /tmp/kaeru-before  # another tree (e.g. before a fix)
    .venv/bin/python bench/flood.py --rate 70 --duration 30 --stall 3 --json /tmp/flood.json

Starts a private redis-server and a real `kaeru serve` (the related-items worker off, so the
event stream holds exactly what was appended) on loopback, then sends `--rate` `POST /e`
batches a second for `--duration` seconds, open loop: each batch 50 `list` events of 48 SKUs
(about 40 KB), each event's first SKU unique, each batch its own shopper (uid cookie). At
`--stall-at` seconds Redis is held busy for `--stall` seconds (a Lua loop: commands sent
meanwhile are applied after it, past Kaeru's 2 s socket timeout, whose answers are then lost:
what a saturated Redis does under a flood), and
at `--pause-at` its writes are paused for `--pause` seconds (CLIENT PAUSE WRITE: a write whose
sender gave up is never applied). Meanwhile live shoppers view a fresh product (`/px`) ten
times a second, alternately a new shopper and a returning one, and the time until the view is
in their profile is measured: for a new shopper's views sent while Kaeru held a backlog,
outside the faults, it must be within Kaeru's deadline (a returning shopper whose own events
wait in the backlog has the next ones wait behind them, to keep their order: reported). Twice
a second the advertiser's report is fetched (its status counted) and Kaeru's RSS sampled.

Before the start, `--spilled` events are left in the data dir's `unsent/` as a previous run
that could not reach Redis leaves them: Kaeru replays them from the start, beside the flood
and the live shoppers (they count as acknowledged).

After the flood, waits (at most --drain-timeout s) for Kaeru's buffer to empty (`/readyz`),
then reads the whole event stream: every event answered 204 must be there once (missing and
duplicates are counted), and nothing else. Stops Kaeru (SIGTERM) and everything it started
by itself; loopback only; bounded in requests (rate x duration) and time. Exits 1 when a check
fails.
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
import string
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis

from adserver.runtime.embedded_redis import EmbeddedRedis, free_port
from adserver.store import Store, connect, keys

from procs import Processes, group_rss_bytes

BENCH = Path(__file__).resolve().parent
SHOP = "shop1"
TOKEN = "flood-" + secrets.token_hex(12)
EVENTS_PER_BATCH, SKUS_PER_EVENT = 50, 48
LIVE_DEADLINE_S = 0.04  # KAERU_REDIS_DEADLINE_MS: how long a shopper's write may be held up
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0"
BUSY = """
local t0 = redis.call('TIME')
repeat
  local t = redis.call('TIME')
until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > tonumber(ARGV[1])
return 1
"""


def uid() -> str:
    return secrets.token_urlsafe(16)


def batch_body(n: int, rnd: random.Random) -> bytes:
    """Batch n: 50 list events, each led by a unique SKU `f<n>-<k>`, then 47 random ones."""
    alphabet = string.ascii_uppercase + string.digits
    events = [
        {
            "advertiser": SHOP,
            "event": "list",
            "items": [f"f{n:06d}-{k:02d}"]
            + ["".join(rnd.choices(alphabet, k=12)) for _ in range(SKUS_PER_EVENT - 1)],
        }
        for k in range(EVENTS_PER_BATCH)
    ]
    return orjson.dumps({"events": events})


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    acknowledged: set[tuple[str, str]] = field(default_factory=set)  # (uid, lead SKU)
    report_statuses: Counter[str] = field(default_factory=Counter)
    # sent, seconds until visible, events buffered then, whether the same shopper all along
    live_lags: list[tuple[float, float, int, bool]] = field(default_factory=list)
    redis_stalled: list[tuple[float, float]] = field(default_factory=list)  # from, until
    live_px_seconds: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)


async def flood(base: str, args: argparse.Namespace, tally: Tally) -> None:
    rnd = random.Random(args.seed)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def send(n: int) -> None:
            shopper, body = uid(), batch_body(n, rnd)
            headers = {"Cookie": f"uid={shopper}", "User-Agent": BROWSER}
            try:
                async with session.post(f"{base}/e", data=body, headers=headers) as response:
                    await response.read()
                    tally.statuses[str(response.status)] += 1
                    if response.status == 204:
                        tally.acknowledged.update(
                            (shopper, f"f{n:06d}-{k:02d}") for k in range(EVENTS_PER_BATCH)
                        )
            except (aiohttp.ClientError, TimeoutError):
                tally.statuses["no answer"] += 1

        start, tasks = time.monotonic(), []
        for n in range(int(args.rate * args.duration)):
            await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
            tasks.append(asyncio.create_task(send(n)))
        await asyncio.gather(*tasks)


async def watch(base: str, redis_url: str, pid: int, tally: Tally, stop: asyncio.Event) -> None:
    """Ten times a second a live shopper's fresh view (until visible in Redis); twice a second
    the report and Kaeru's RSS."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(
            live_shopper(session, base, redis_url, tally, stop),
            operator(session, base, pid, tally, stop),
        )


async def live_shopper(
    session: aiohttp.ClientSession, base: str, redis_url: str, tally: Tally, stop: asyncio.Event
) -> None:
    """Alternately a new shopper (a fresh uid each time) and a returning one (the same uid
    throughout, whose own views may wait in the backlog: theirs stay in order)."""
    store, returning = Store(connect(redis_url, timeout=10)), uid()
    try:
        n = 0
        while not stop.is_set():
            n += 1
            same = n % 2 == 0
            shopper = returning if same else uid()
            headers = {"Cookie": f"uid={shopper}", "User-Agent": BROWSER}
            async with session.get(f"{base}/readyz") as response:
                buffered = int((await response.json()).get("buffered_events", 0))
            sku, sent = f"live-{n}", time.monotonic()
            params = {"a": SHOP, "e": "view", "i": sku}
            async with session.get(f"{base}/px", params=params, headers=headers) as response:
                await response.read()
            tally.live_px_seconds.append(time.monotonic() - sent)
            lag = await visible_after(store, shopper, sku, sent)
            tally.live_lags.append((sent, lag, buffered, same))
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - sent)))
    finally:
        await store.close()


async def operator(
    session: aiohttp.ClientSession, base: str, pid: int, tally: Tally, stop: asyncio.Event
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    started = time.monotonic()
    while not stop.is_set():
        tally.rss.append((time.monotonic() - started, group_rss_bytes(pid)))
        try:
            report = f"{base}/api/v1/advertisers/{SHOP}/report"
            async with session.get(report, headers=auth) as response:
                await response.read()
                tally.report_statuses[str(response.status)] += 1
                if response.status == 503 and "Retry-After" not in response.headers:
                    tally.report_statuses["503 without Retry-After"] += 1
        except (aiohttp.ClientError, TimeoutError):
            tally.report_statuses["no answer"] += 1
        await asyncio.sleep(0.5)


async def visible_after(store: Store, shopper: str, sku: str, sent: float) -> float:
    """Seconds from `sent` until the view is in the shopper's profile (inf after 30 s)."""
    while time.monotonic() - sent < 30:
        try:
            profile = await store.load_shopper(shopper)
            if any(sku in h.viewed for h in profile.histories):
                return time.monotonic() - sent
        except (redis.RedisError, OSError):
            pass
        await asyncio.sleep(0.005)
    return float("inf")


def stall_redis(url: str, seconds: float, tally: Tally) -> None:
    """Hold Redis busy; the stall lasts until Redis answers a PING within 10 ms again (it first
    works off what was sent meanwhile)."""
    began = time.monotonic()
    with closing(redis.Redis.from_url(url, socket_timeout=seconds + 10)) as client:
        client.eval(BUSY, 0, int(seconds * 1_000_000))
        while True:
            sent = time.monotonic()
            client.ping()
            if time.monotonic() - sent < 0.01:
                break
            time.sleep(0.01)
    tally.redis_stalled.append((began, time.monotonic()))


def pause_writes(url: str, seconds: float, tally: Tally) -> None:
    """CLIENT PAUSE WRITE: writes wait, and a write whose sender gives up (its socket timeout)
    is never applied: true failures, which Kaeru must keep and replay."""
    began = time.monotonic()
    with closing(redis.Redis.from_url(url)) as client:
        client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "WRITE")
    time.sleep(seconds)
    tally.redis_stalled.append((began, time.monotonic() + 0.5))


def http_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def wait_drained(base: str, timeout: float) -> float | None:
    """Seconds until /readyz says no event is buffered, None if not within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        status, body = http_json(f"{base}/readyz")
        if status == 200 and body.get("buffered_events") == 0:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def stream_counts(redis_url: str) -> Counter[tuple[str, str]]:
    """(uid, lead SKU) of every flood event on the stream, with how often it is there."""
    found: Counter[tuple[str, str]] = Counter()
    with closing(redis.Redis.from_url(redis_url)) as client:
        for shard in range(keys.EVENT_SHARDS):
            last = "-"
            while True:
                chunk = client.xrange(keys.event_stream(shard), min=last, count=10_000)
                chunk = [entry for entry in chunk if entry[0] != last]
                if not chunk:
                    break
                for _, fields in chunk:
                    document = orjson.loads(fields[b"d"])
                    items = document.get("items") or []
                    if items and items[0][:1] in ("f", "s"):
                        found[(document["uid"], items[0])] += 1
                last = chunk[-1][0]
    return found


def metric_values(base: str) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    wanted = ("kaeru_events_", "kaeru_http_requests_total")
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(wanted) and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def spill_backlog(directory: Path, count: int, rnd: random.Random) -> set[tuple[str, str]]:
    """What a previous run left unsent (acknowledged, never written): `count` events like the
    flood's, in the file the next start replays. Returns their (uid, lead SKU)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    alphabet = string.ascii_uppercase + string.digits
    kept: set[tuple[str, str]] = set()
    shopper = uid()
    with (directory / f"events-{time.time_ns()}-{os.getpid()}.jsonl").open("wb") as out:
        for n in range(count):
            if n and n % EVENTS_PER_BATCH == 0:
                shopper = uid()
            lead = f"s{n:07d}"
            items = [lead] + ["".join(rnd.choices(alphabet, k=12)) for _ in range(47)]
            line = {"uid": shopper, "at": time.time(), "advertiser": SHOP, "kind": "list"}
            line.update(items=items, order=None, revenue=None, currency=None, lines=[])
            out.write(orjson.dumps(line) + b"\n")
            kept.add((shopper, lead))
    return kept


def start_kaeru(procs: Processes, tmp: Path, redis_url: str, args: argparse.Namespace) -> Any:
    port = free_port()
    src = Path(args.src).resolve() if args.src else BENCH.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAERU_") and k != "REDIS_URL"}
    env.update(
        REDIS_URL=redis_url,
        KAERU_ADVERTISERS=f"{SHOP}:{TOKEN}",
        KAERU_DATA_DIR=str(tmp / "kaeru"),
        KAERU_SECRET=secrets.token_urlsafe(32),
        KAERU_WORKER="0",
        KAERU_BUFFER_EVENTS=str(args.buffer),
        PYTHONPATH=str(src),
    )
    command = [sys.executable, "-m", "adserver.cli", "serve", "--port", str(port)]
    kaeru = procs.start("kaeru", command, port=port, log=tmp / "kaeru.log", env=env, cwd=src)
    deadline = time.monotonic() + 30
    while http_json(f"http://127.0.0.1:{port}/healthz")[0] != 200:
        if not kaeru.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"kaeru did not start:\n{kaeru.log_tail()}")
        time.sleep(0.1)
    return kaeru


async def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> dict[str, Any]:
    server = EmbeddedRedis(tmp / "redis", persistent=False)
    server.start()
    try:
        spilled = spill_backlog(tmp / "kaeru" / "unsent", args.spilled, random.Random(args.seed))
        kaeru = start_kaeru(procs, tmp, server.url, args)
        base = f"http://127.0.0.1:{kaeru.port}"
        tally, stop = Tally(), asyncio.Event()
        rss_before = group_rss_bytes(kaeru.process.pid)
        watcher = asyncio.create_task(watch(base, server.url, kaeru.process.pid, tally, stop))
        loop = asyncio.get_running_loop()
        for at, fault, seconds in (
            (args.stall_at, stall_redis, args.stall),
            (args.pause_at, pause_writes, args.pause),
        ):
            if seconds > 0:
                loop.call_later(at, loop.run_in_executor, None, fault, server.url, seconds, tally)
        started = time.monotonic()
        await flood(base, args, tally)
        flooded = time.monotonic() - started
        drain = await asyncio.to_thread(wait_drained, base, args.drain_timeout)
        stop.set()
        await watcher
        metrics = metric_values(base)
        os.killpg(kaeru.process.pid, signal.SIGTERM)
        exit_code = kaeru.process.wait(timeout=60)
        found = stream_counts(server.url)
    finally:
        procs.stop_all()
        server.stop()
    unsent = list((tmp / "kaeru" / "unsent").glob("*"))
    acknowledged = tally.acknowledged | spilled
    lags = sorted(lag for _, lag, _, _ in tally.live_lags)

    def beside(returning: bool) -> list[float]:  # while a backlog waited, clear of the faults
        return sorted(
            lag
            for sent, lag, buffered, same in tally.live_lags
            if buffered
            and same == returning
            and not any(sent <= b and sent + lag >= a for a, b in tally.redis_stalled)
        )

    new, old = beside(False), beside(True)
    return {
        "rate": args.rate,
        "duration": args.duration,
        "flood_seconds": round(flooded, 1),
        "statuses": dict(tally.statuses),
        "acknowledged_events": len(acknowledged),
        "of_which_spilled_before_start": len(spilled),
        "events_on_stream": sum(found.values()),
        "missing": len(acknowledged - set(found)),
        "duplicates": sum(n - 1 for n in found.values()),
        "unacknowledged_on_stream": len(set(found) - acknowledged),
        "rss_mib_before": round(rss_before / 2**20, 1),
        "rss_mib_peak": round(max(r for _, r in tally.rss) / 2**20, 1) if tally.rss else None,
        "drain_seconds": None if drain is None else round(drain, 1),
        "live_views": len(lags),
        "live_lag_p50_ms": round(lags[len(lags) // 2] * 1000, 1) if lags else None,
        "live_lag_max_ms": round(lags[-1] * 1000, 1) if lags else None,
        "live_px_max_ms": round(max(tally.live_px_seconds) * 1000, 1) if lags else None,
        "redis_faults_seconds": [round(b - a, 1) for a, b in tally.redis_stalled],
        "backlog_max_events": max((b for _, _, b, _ in tally.live_lags), default=0),
        "new_shopper_views_beside_a_backlog": len(new),
        "new_shopper_lag_beside_a_backlog_p50_ms": round(new[len(new) // 2] * 1000, 1)
        if new
        else None,
        "new_shopper_lag_beside_a_backlog_max_ms": round(new[-1] * 1000, 1) if new else None,
        "returning_shopper_views_beside_a_backlog": len(old),
        "returning_shopper_lag_beside_a_backlog_max_ms": round(old[-1] * 1000, 1) if old else None,
        "report_statuses": dict(tally.report_statuses),
        "metrics": metrics,
        "kaeru_exit": exit_code,
        "unsent_files": len(unsent),
    }


def checks(result: dict[str, Any]) -> list[tuple[str, bool]]:
    lag_ms = result["new_shopper_lag_beside_a_backlog_max_ms"]
    return [
        ("no acknowledged event missing", result["missing"] == 0),
        ("no event twice on the stream", result["duplicates"] == 0),
        ("buffer drained", result["drain_seconds"] is not None),
        (
            f"beside a backlog, a new shopper's view in Redis within the deadline "
            f"({LIVE_DEADLINE_S * 1000:.0f} ms + 50 ms)",
            lag_ms is None or lag_ms <= LIVE_DEADLINE_S * 1000 + 50,
        ),
        (
            "report never 5xx but 503 (+ Retry-After, while Redis stalls)",
            not any(s[0] == "5" and s != "503" for s in result["report_statuses"]),
        ),
        ("/e: no 5xx but 503", not any(s[0] == "5" and s != "503" for s in result["statuses"])),
        ("memory bounded", (result["rss_mib_peak"] or 0) <= result["rss_mib_before"] + 200),
        ("kaeru exits 0", result["kaeru_exit"] == 0 and result["unsent_files"] == 0),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=70.0, help="batches per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of flood")
    parser.add_argument("--stall", type=float, default=3.0, help="seconds Redis is held busy")
    parser.add_argument("--stall-at", type=float, default=8.0, help="when, into the flood")
    parser.add_argument("--pause", type=float, default=4.0, help="seconds writes are paused")
    parser.add_argument("--pause-at", type=float, default=16.0, help="when, into the flood")
    parser.add_argument(
        "--spilled", type=int, default=50_000, help="events a previous run left unsent"
    )
    parser.add_argument("--buffer", type=int, default=100_000, help="KAERU_BUFFER_EVENTS")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--src", help="the Kaeru tree to run (default: this one)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", help="write the result there too")
    args = parser.parse_args()
    if args.stall >= 5:
        parser.error("--stall must stay under Redis' 5 s busy-script threshold")
    tmp = Path(tempfile.mkdtemp(prefix="kaeru-flood-"))
    procs = Processes()
    try:
        result = asyncio.run(run(args, tmp, procs))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    failed = [name for name, ok in checks(result) if not ok]
    for name, ok in checks(result):
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
