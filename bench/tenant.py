"""What one tenant costs the others (issue 11, §4), against a loopback `kaeru serve`.

1. Feeds: peak RSS of the server (VmHWM) while a `[{},{},…]` feed of --feed-mb MB is PUT,
   one alone and two at once (a fresh server each), and the worst `/px` latency of a pixel
   request sent every 10 ms meanwhile.
2. A real catalog (--products rows): the PUT, loading it into the server's memory, and the
   worst `/px` latency meanwhile.
3. Campaigns: `/ad.json` p50/p99 for a shopper of shop2 while shop1 has no campaign, then
   after shop1 tried to create --campaigns campaigns (those past KAERU_MAX_CAMPAIGNS are
   refused), and how the campaign PUTs were answered.

    .venv/bin/python bench/tenant.py                       # this checkout
    .venv/bin/python bench/tenant.py --code /path/to/old   # another checkout (before/after)
    .venv/bin/python bench/tenant.py --env KAERU_MAX_PRODUCTS=50000000

Everything listens on 127.0.0.1; every process is stopped at the end (also on Ctrl-C), and
every request has a timeout, so a run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from adserver.runtime.embedded_redis import free_port

from procs import Processes, Service

ROOT = Path(__file__).resolve().parent.parent
TOKENS = {"shop1": "shop1-bench-token-0123456789", "shop2": "shop2-bench-token-0123456789"}
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36"}
START_SECONDS = 30.0
PUT_SECONDS = 600.0
IDLE_SECONDS = 5.0  # pixel latency without a feed, for comparison


def product(shop: str, n: int) -> dict[str, str]:
    return {
        "id": f"sku-{n}",
        "title": f"Product {n}",
        "link": f"https://{shop}.example/p/{n}",
        "image_link": f"https://{shop}.example/i/{n}.jpg",
        "price": "19.90",
        "currency": "EUR",
    }


def vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


@contextmanager
def kaeru(code: Path, extra_env: Mapping[str, str]) -> Iterator[tuple[Service, str]]:
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="kaeru-tenant-") as home:
        port = free_port()
        env = {
            **os.environ,
            "KAERU_DATA_DIR": str(Path(home) / "data"),
            "KAERU_ADVERTISERS": ",".join(f"{a}:{t}" for a, t in TOKENS.items()),
            "KAERU_OPERATOR_TOKEN": "operator-bench-token-0123456789",
            **extra_env,
        }
        env.pop("REDIS_URL", None)
        command = [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(code)!r}); from adserver.cli import main; "
            "sys.exit(main())",
            *("serve", "--host", "127.0.0.1", "--port", str(port)),
        ]
        service = processes.start(
            "kaeru", command, port=port, log=Path(home) / "kaeru.log", env=env, cwd=code
        )
        try:
            yield service, f"http://127.0.0.1:{port}"
        finally:
            processes.stop_all()


async def wait_ready(session: aiohttp.ClientSession, base: str, service: Service) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"kaeru exited:\n{service.log_tail()}")
        try:
            async with session.get(base + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"kaeru did not answer within {START_SECONDS} s:\n{service.log_tail()}")


def auth(shop: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[shop]}"}


async def put_feed(session: aiohttp.ClientSession, base: str, body: bytes) -> tuple[int, float]:
    async def pieces() -> AsyncIterator[bytes]:  # in pieces: never blocks the bench's own loop
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    started = time.monotonic()
    async with session.put(
        f"{base}/api/v1/advertisers/shop1/products",
        data=pieces(),
        headers={**auth("shop1"), "Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(PUT_SECONDS),
    ) as response:
        await response.read()
        return response.status, time.monotonic() - started


async def pixel_while(
    session: aiohttp.ClientSession, base: str, done: asyncio.Event
) -> list[float]:
    latencies: list[float] = []
    while not done.is_set():
        started = time.monotonic()
        try:
            async with session.get(
                base + "/px",
                params={"a": "shop2", "e": "view", "i": "sku-1"},
                timeout=aiohttp.ClientTimeout(PUT_SECONDS),
            ) as response:
                await response.read()
        except aiohttp.ClientError:
            pass
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.01)
    return latencies


async def feed_run(code: Path, env: Mapping[str, str], feed_mb: int, feeds: int) -> dict[str, Any]:
    rows = feed_mb * 2**20 // 3
    body = b"[" + b",".join([b"{}"] * rows) + b"]"
    with kaeru(code, env) as (service, base):
        async with aiohttp.ClientSession(headers=BROWSER) as session:
            await wait_ready(session, base, service)
            await asyncio.sleep(1.0)
            idle_rss = vm(service.process.pid, "VmRSS")
            idle_done = asyncio.Event()
            idle_probe = asyncio.ensure_future(pixel_while(session, base, idle_done))
            await asyncio.sleep(IDLE_SECONDS)
            idle_done.set()
            idle = await idle_probe
            done = asyncio.Event()
            pixel = asyncio.ensure_future(pixel_while(session, base, done))
            answers = await asyncio.gather(*(put_feed(session, base, body) for _ in range(feeds)))
            done.set()
            latencies = await pixel
            peak = vm(service.process.pid, "VmHWM")
    return {
        "feeds": feeds,
        "rows": rows,
        "answers": [status for status, _ in answers],
        "seconds": max(seconds for _, seconds in answers),
        "idle_rss_mib": idle_rss / 2**20,
        "peak_rss_mib": peak / 2**20,
        "idle_pixel_max_ms": max(idle) * 1000,
        "idle_pixel_p99_ms": sorted(idle)[int(len(idle) * 0.99)] * 1000,
        "pixels": len(latencies),
        "pixel_max_ms": max(latencies) * 1000,
        "pixel_p99_ms": sorted(latencies)[int(len(latencies) * 0.99)] * 1000,
    }


async def catalog_run(code: Path, env: Mapping[str, str], products: int) -> dict[str, Any]:
    """A real catalog of `products` rows: the PUT (which loads it into this process's market
    cache before answering) and the worst pixel latency meanwhile."""
    body = orjson.dumps(
        [{**product("shop1", n), "category": f"c{n % 50}"} for n in range(products)]
    )
    with kaeru(code, env) as (service, base):
        async with aiohttp.ClientSession(headers=BROWSER) as session:
            await wait_ready(session, base, service)
            done = asyncio.Event()
            pixel = asyncio.ensure_future(pixel_while(session, base, done))
            ((status, seconds),) = await asyncio.gather(put_feed(session, base, body))
            await asyncio.sleep(3.0)  # the background refresh loads it too, if not yet
            done.set()
            latencies = await pixel
            peak = vm(service.process.pid, "VmHWM")
    return {
        "products": products,
        "answer": status,
        "seconds": seconds,
        "peak_rss_mib": peak / 2**20,
        "pixels": len(latencies),
        "pixel_max_ms": max(latencies) * 1000,
        "pixel_p99_ms": sorted(latencies)[int(len(latencies) * 0.99)] * 1000,
    }


async def ad_latencies(session: aiohttp.ClientSession, base: str, uid: str, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.monotonic()
        async with session.get(
            base + "/ad.json",
            params={"pub": "news1", "size": "300x250"},
            headers={"Cookie": f"uid={uid}"},
            timeout=aiohttp.ClientTimeout(10),
        ) as response:
            await response.read()
            assert response.status in (200, 204), response.status
        latencies.append(time.monotonic() - started)
    return latencies


async def campaign_run(
    code: Path, env: Mapping[str, str], campaigns: int, requests: int
) -> dict[str, Any]:
    with kaeru(code, env) as (service, base):
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(headers=BROWSER, cookie_jar=jar) as session:
            await wait_ready(session, base, service)
            for shop in TOKENS:
                async with session.put(
                    f"{base}/api/v1/advertisers/{shop}/products",
                    json=[product(shop, n) for n in range(20)],
                    headers=auth(shop),
                ) as response:
                    assert response.status == 200, await response.text()
            for n in range(5):  # shop1's products become popular (views of other shoppers)
                jar.clear()
                await (
                    await session.get(
                        base + "/px", params={"a": "shop1", "e": "view", "i": f"sku-{n}"}
                    )
                ).read()
            jar.clear()
            await (
                await session.get(base + "/px", params={"a": "shop2", "e": "view", "i": "sku-1"})
            ).read()
            uid = next(c.value for c in jar if c.key == "uid")
            jar.clear()
            await asyncio.sleep(2.0)  # the market refresh sees catalogs and popularity
            await ad_latencies(session, base, uid, 200)  # warm-up
            none = await ad_latencies(session, base, uid, requests)
            statuses: Counter[int] = Counter()
            for n in range(campaigns):
                document = {"name": f"c{n}", "bid": {"type": "cpm", "amount": "1.00"}}
                async with session.put(
                    f"{base}/api/v1/advertisers/shop1/campaigns/c{n:04d}",
                    json=document,
                    headers=auth("shop1"),
                    timeout=aiohttp.ClientTimeout(30),
                ) as response:
                    statuses[response.status] += 1
            await asyncio.sleep(2.0)
            await ad_latencies(session, base, uid, 200)
            many = await ad_latencies(session, base, uid, requests)
    return {
        "campaigns_tried": campaigns,
        "put_statuses": dict(statuses),
        "p50_ms_none": statistics.median(none) * 1000,
        "p99_ms_none": sorted(none)[int(len(none) * 0.99)] * 1000,
        "p50_ms_after": statistics.median(many) * 1000,
        "p99_ms_after": sorted(many)[int(len(many) * 0.99)] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout to run (default: this)")
    parser.add_argument("--feed-mb", type=int, default=64)
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--products", type=int, default=200_000, help="rows of the real catalog")
    parser.add_argument("--only", choices=["feeds", "catalog", "campaigns"])
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    print(f"code: {args.code}  env: {env}", flush=True)
    if args.only in (None, "feeds"):
        for feeds in (1, 2):
            print(asyncio.run(feed_run(args.code, env, args.feed_mb, feeds)), flush=True)
    if args.only in (None, "catalog"):
        print(asyncio.run(catalog_run(args.code, env, args.products)), flush=True)
    if args.only in (None, "campaigns"):
        print(asyncio.run(campaign_run(args.code, env, args.campaigns, args.requests)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
