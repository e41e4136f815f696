"""`/ad.json` for a shopper Kaeru does not know, with and without the page's context, in one run.

    .venv/bin/python bench/context.py [--requests 2000]

Starts an embedded Redis and the real app in this process (loopback), loads the bench catalog
(60 products in 6 categories), makes every product popular, then sends the same number of
anonymous `/ad.json` requests for each variant, interleaved (so both see the same machine):
no context, `cat=` matching a category, `kw=` matching nothing. Reports latency percentiles as
the client sees them and Redis round trips per request (`total_reads_processed`), which
context must not move: the match reads the in-process market cache only.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from aiohttp.test_utils import TestClient, TestServer

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.http.app_keys import MARKET, WORKER, buffered_writers
from adserver.runtime.embedded_redis import EmbeddedRedis

from report import percentile
from seed import ADVERTISER, CATALOG_SIZE, catalog_json

TOKEN = "bench-" + secrets.token_hex(12)
BASE = {"pub": "news1", "size": "728x90"}
VARIANTS = {
    "no context": {},
    "cat= (matches)": {"cat": "category-3"},
    "kw= (no match)": {"kw": "spaceship,rocket"},
}
HEADERS = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36"}


async def run(requests: int, tmp: Path) -> str:
    server = EmbeddedRedis(tmp / "redis", persistent=False)
    url = server.start()
    counters = redis.Redis.from_url(url)
    settings = Settings(
        redis_url=url,
        data_dir=tmp / "kaeru",
        secret=secrets.token_bytes(32),
        advertisers={ADVERTISER: TOKEN},
        run_worker=False,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)), headers=HEADERS)
    await client.start_server()
    try:
        response = await client.put(
            f"/api/v1/advertisers/{ADVERTISER}/products",
            data=catalog_json(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert response.status == 200, await response.text()
        for n in range(1, CATALOG_SIZE + 1):
            for _ in range(1 + n % 3):
                await client.get("/px", params={"a": ADVERTISER, "e": "view", "i": f"sku-{n}"})
                client.session.cookie_jar.clear()
        await client.app[WORKER].drain()
        await client.app[MARKET].refresh()
        latencies: dict[str, list[float]] = {name: [] for name in VARIANTS}
        reads: dict[str, int] = dict.fromkeys(VARIANTS, 0)
        strategies: dict[str, dict[str, int]] = {name: {} for name in VARIANTS}
        for _ in range(requests):
            for name, extra in VARIANTS.items():
                before = counters.info("stats")["total_reads_processed"]
                started = time.perf_counter()
                response = await client.get("/ad.json", params={**BASE, **extra})
                assert response.status in (200, 204), await response.text()
                body = await response.json() if response.status == 200 else {}
                latencies[name].append(time.perf_counter() - started)
                for writer in buffered_writers(client.app):
                    await writer.flush()  # the impression, counted after the answer
                # minus the INFO call itself
                reads[name] += counters.info("stats")["total_reads_processed"] - before - 1
                strategy = body.get("strategy", "no fill")
                strategies[name][strategy] = strategies[name].get(strategy, 0) + 1
    finally:
        await client.close()
        counters.close()
        server.stop()
    lines = [
        f"`/ad.json`, anonymous shopper, {requests} requests per variant, interleaved:",
        "",
        "| variant | p50 ms | p99 ms | Redis reads / request | strategy of the ad |",
        "|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        samples = latencies[name]
        shown = ", ".join(f"{s} {c}" for s, c in sorted(strategies[name].items()))
        lines.append(
            f"| {name} | {percentile(samples, 0.5) * 1000:.2f} | "
            f"{percentile(samples, 0.99) * 1000:.2f} | {reads[name] / requests:.2f} | {shown} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kaeru-context-bench-") as tmp:
        print(asyncio.run(run(args.requests, Path(tmp))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
