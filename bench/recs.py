"""`/recs.json` next to `/ad.json` for the same shopper, in one run.

    .venv/bin/python bench/recs.py [--requests 1000]

Starts an embedded Redis and the real app in this process (loopback), loads the bench catalog
(60 products in 6 categories), lets 200 shoppers view and buy a few products each and the
learner learn, then gives one shopper (the uid cookie) a few views, a cart and a purchase and
sends the same number of requests for each variant, interleaved (so all see the same machine):
the ad decision (`/ad.json`) and each placement of `/recs.json`, personalised and for a
newcomer. Reports latency percentiles as the client sees them and Redis round trips per request
(`total_reads_processed`; the impression an ad counts after its answer included).
"""

from __future__ import annotations

import argparse
import asyncio
import random
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
HEADERS = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36"}
RECS = "/recs.json"
VARIANTS: dict[str, tuple[str, dict[str, str], bool]] = {  # path, query, with the uid cookie
    "/ad.json (the ad decision)": ("/ad.json", {"pub": "news1", "size": "728x90"}, True),
    "recs product": (RECS, {"a": ADVERTISER, "placement": "product", "item": "sku-7"}, True),
    "recs complements": (RECS, {"a": ADVERTISER, "placement": "complements"}, True),
    "recs cart": (RECS, {"a": ADVERTISER, "placement": "cart"}, True),
    "recs home": (RECS, {"a": ADVERTISER, "placement": "home"}, True),
    "recs thanks": (RECS, {"a": ADVERTISER, "placement": "thanks", "item": "sku-3"}, True),
    "recs trending": (RECS, {"a": ADVERTISER, "placement": "trending"}, True),
    "recs home, newcomer": (RECS, {"a": ADVERTISER, "placement": "home"}, False),
}


async def seed(client: TestClient[Any, Any]) -> str:
    """The bench shop's history; returns the measured shopper's uid cookie header."""
    response = await client.put(
        f"/api/v1/advertisers/{ADVERTISER}/products",
        data=catalog_json(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status == 200, await response.text()
    rng = random.Random(14)
    for shopper in range(200):
        skus = [f"sku-{rng.randint(1, CATALOG_SIZE)}" for _ in range(4)]
        for sku in skus:
            await client.get("/px", params={"a": ADVERTISER, "e": "view", "i": sku})
        purchase = {"a": ADVERTISER, "e": "purchase", "i": ",".join(skus[:2])}
        await client.get("/px", params={**purchase, "o": f"o-{shopper}", "v": "9", "cur": "EUR"})
        client.session.cookie_jar.clear()
    await client.app[WORKER].drain()
    await client.app[MARKET].refresh()
    first = await client.get("/px", params={"a": ADVERTISER, "e": "view", "i": "sku-7"})
    cookie = f"uid={first.cookies['uid'].value}"
    for sku in ("sku-12", "sku-30"):
        await client.get("/px", params={"a": ADVERTISER, "e": "view", "i": sku})
    await client.get("/px", params={"a": ADVERTISER, "e": "cart", "i": "sku-12"})
    purchase = {"a": ADVERTISER, "e": "purchase", "i": "sku-3", "o": "o-me", "v": "9"}
    await client.get("/px", params={**purchase, "cur": "EUR"})
    client.session.cookie_jar.clear()
    return cookie


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
        cookie = await seed(client)
        latencies: dict[str, list[float]] = {name: [] for name in VARIANTS}
        reads: dict[str, int] = dict.fromkeys(VARIANTS, 0)
        shown: dict[str, int] = dict.fromkeys(VARIANTS, 0)
        personalised: dict[str, int] = dict.fromkeys(VARIANTS, 0)
        for _ in range(requests):
            for name, (path, query, personal) in VARIANTS.items():
                before = counters.info("stats")["total_reads_processed"]
                started = time.perf_counter()
                headers = {"Cookie": cookie} if personal else None
                response = await client.get(path, params=query, headers=headers)
                assert response.status in (200, 204), await response.text()
                body = await response.json() if response.status == 200 else {}
                latencies[name].append(time.perf_counter() - started)
                for writer in buffered_writers(client.app):
                    await writer.flush()  # the impression, counted after the answer
                reads[name] += counters.info("stats")["total_reads_processed"] - before - 1
                shown[name] += len(body.get("products", ()))
                personalised[name] += bool(body.get("personalised", personal))
                client.session.cookie_jar.clear()
    finally:
        await client.close()
        counters.close()
        server.stop()
    lines = [
        f"`/ad.json` and `/recs.json`, {requests} requests per variant, interleaved:",
        "",
        "| variant | p50 ms | p99 ms | Redis round trips / request | products / answer "
        "| personalised |",
        "|---|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        samples = latencies[name]
        lines.append(
            f"| {name} | {percentile(samples, 0.5) * 1000:.2f} | "
            f"{percentile(samples, 0.99) * 1000:.2f} | {reads[name] / requests:.2f} | "
            f"{shown[name] / requests:.1f} | {personalised[name] / requests:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kaeru-recs-bench-") as tmp:
        print(asyncio.run(run(args.requests, Path(tmp))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
