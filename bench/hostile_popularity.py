"""One client against a shop's fallback ads and Redis memory (issue 11, §2), reproducibly.

Starts a private redis-server (temporary directory, loopback) and the real app with its
background tasks (catalog refresh, related-items worker) on a free loopback port, loads a
60-product catalog and a few real views, then:

1. **blank**: 40 cookie-less `POST /e` batches of views of the same 50 made-up SKUs; after the
   worker has learnt them, is the anonymous ad still `popular` (with real products)?
2. **grow**: `--batches` cookie-less batches of 50 views of `--items` random made-up SKUs each
   (~55 KB per batch by default: the largest a batch may be is 64 KiB); Redis `used_memory`
   before and after (once the worker has learnt everything), keys, popularity members.

Everything stops by itself: sending stops at `--max-seconds`, waiting for the worker too.
Prints one JSON object (`--json`) or a few lines. Run before and after a change with the same
arguments:

    .venv/bin/python bench/hostile_popularity.py                 # 200 batches, ~11 MB sent
    .venv/bin/python bench/hostile_popularity.py --batches 50 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.http.app_keys import MARKET, WORKER
from adserver.runtime.embedded_redis import EmbeddedRedis, free_port

from seed import ADVERTISER, catalog_json

TOKEN = "bench-token-0123456789"
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
}
MADE_UP = [f"made-up-{n}" for n in range(50)]


def views(skus: list[str] | list[list[str]]) -> bytes:
    events = [
        {"advertiser": ADVERTISER, "event": "view", "items": s if isinstance(s, list) else [s]}
        for s in skus
    ]
    return json.dumps({"events": events}).encode()


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    # A fresh session cookie jar per batch would be slow: send no cookie at all instead.
    async with session.post(url, data=body, headers={"Cookie": ""}) as response:
        await response.read()
        return response.status


async def settle(app: web.Application, deadline: float) -> bool:
    """Wait until the worker has learnt the whole stream, then refresh the caches."""
    learning = app[WORKER].learning
    while time.monotonic() < deadline:
        if await learning.backlog() == 0:
            await app[MARKET].refresh()
            return True
        await asyncio.sleep(0.2)
    return False


async def anonymous_ad(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    params = {"pub": "bench", "size": "728x90"}
    async with session.get(f"{base}/ad.json", params=params, headers={"Cookie": ""}) as answer:
        if answer.status != 200:
            return {"status": answer.status, "strategy": None, "products": []}
        body = await answer.json()
        return {
            "status": 200,
            "strategy": body["strategy"],
            "products": [p["id"] for p in body["products"]],
        }


async def memory(client: aioredis.Redis) -> dict[str, int]:
    info = await client.info("memory")
    pop = await client.zcard(f"pop:{{{ADVERTISER}}}")
    neighbour_keys = 0
    async for _ in client.scan_iter(match="nb:*", count=1000):
        neighbour_keys += 1
    return {
        "used_memory": int(info["used_memory"]),
        "keys": int(await client.dbsize()),
        "popularity_members": int(pop),
        "neighbour_keys": neighbour_keys,
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    server = EmbeddedRedis(workdir / "redis", persistent=False)
    server.start()
    client = aioredis.Redis.from_url(server.url)
    settings = Settings(
        redis_url=server.url,
        data_dir=workdir / "data",
        secret=secrets.token_urlsafe(48).encode(),
        advertisers={ADVERTISER: TOKEN},
        host="127.0.0.1",
        port=free_port(),
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    base = f"http://127.0.0.1:{settings.port}"
    result: dict[str, Any] = {"batches": args.batches, "items_per_event": args.items}
    stop_at = time.monotonic() + args.max_seconds
    try:
        async with aiohttp.ClientSession(headers=BROWSER, cookie_jar=aiohttp.DummyCookieJar()) as s:
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            async with s.put(
                f"{base}/api/v1/advertisers/{ADVERTISER}/products",
                data=catalog_json(),
                headers=headers,
            ) as answer:
                assert answer.status == 200, await answer.text()
            for _ in range(3):
                await post(s, f"{base}/e", views(["sku-7", "sku-8", "sku-9"]))
            await settle(app, stop_at)
            result["ad_before"] = await anonymous_ad(s, base)

            statuses = [await post(s, f"{base}/e", views(MADE_UP)) for _ in range(40)]
            result["blank_statuses"] = sorted(set(statuses))
            result["blank_learnt"] = await settle(app, stop_at)
            result["ad_after_blank"] = await anonymous_ad(s, base)

            result["memory_before"] = await memory(client)
            sent = 0
            started = time.monotonic()
            for n in range(args.batches):
                if time.monotonic() >= stop_at:
                    result["stopped_early_after_batches"] = n
                    break
                made_up = [[secrets.token_hex(16) for _ in range(args.items)] for _ in range(50)]
                body = views(made_up)
                sent += len(body)
                await post(s, f"{base}/e", body)
            result["bytes_sent"] = sent
            result["send_seconds"] = round(time.monotonic() - started, 1)
            result["grow_learnt"] = await settle(app, stop_at)
            result["memory_after"] = await memory(client)
            result["ad_after_grow"] = await anonymous_ad(s, base)
    finally:
        await runner.cleanup()
        await client.aclose()
        server.stop()
    growth = result["memory_after"]["used_memory"] - result["memory_before"]["used_memory"]
    result["used_memory_growth_mb"] = round(growth / 2**20, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--items", type=int, default=30, help="made-up SKUs per event")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kaeru-hostile-") as workdir:
        result = asyncio.run(run(args, Path(workdir)))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    blanked = result["ad_after_blank"]["strategy"] != "popular"
    return 1 if blanked else 0


if __name__ == "__main__":
    raise SystemExit(main())
