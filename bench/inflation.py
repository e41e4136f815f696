"""Issue 11 §5, measured: what each count-inflation attack makes Kaeru count.

Runs the real app against a private redis-server, one fresh database per attack, and prints
what the advertiser's report says afterwards. Time passing for Redis (a click followed again
after 11 minutes) is simulated by shrinking every key's TTL: no sleeping. Same script before
and after the fix, with default settings:

    .venv/bin/python bench/inflation.py [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adserver.app import create_app  # noqa: E402
from adserver.config.settings import Settings  # noqa: E402
from adserver.http.app_keys import MARKET, STORE, WORKER, buffered_writers  # noqa: E402
from adserver.runtime.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

SHOP, TOKEN = "shop1", "shop1-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
}
Client = TestClient[Any, Any]


async def counted(client: Client) -> None:
    for writer in buffered_writers(client.app):
        await writer.flush()


async def report(client: Client, by: str = "day") -> list[dict[str, Any]]:
    today = datetime.now(UTC).date().isoformat()
    params = {"by": by, "from": today, "to": today}
    response = await client.get(f"/api/v1/advertisers/{SHOP}/report", params=params, headers=AUTH)
    rows: list[dict[str, Any]] = (await response.json())["rows"]
    return rows


async def ad(client: Client, pub: str = "news1") -> dict[str, Any]:
    response = await client.get("/ad.json", params={"pub": pub, "size": "300x250"})
    assert response.status == 200, response.status
    body: dict[str, Any] = await response.json()
    return body


async def redis_time_passes(client: Client, seconds: int) -> None:
    r = client.app[STORE].redis
    async for key in r.scan_iter():
        pttl = await r.pttl(key)
        if pttl > 0:
            await (
                r.delete(key) if pttl <= seconds * 1000 else r.pexpire(key, pttl - seconds * 1000)
            )


async def beacon_hit_500_times(client: Client) -> dict[str, Any]:
    served = [await ad(client) for _ in range(7)]
    for _ in range(500):
        await client.get(urlsplit(served[0]["impression_url"]).path)
    await counted(client)
    day = (await report(client))[0]
    return {"impressions": day["impressions"], "rendered": day["rendered"]}


async def click_again_after_11_minutes(client: Client) -> dict[str, Any]:
    link = urlsplit((await ad(client))["products"][0]["click_url"]).path
    statuses = [(await client.get(link, allow_redirects=False)).status]
    await counted(client)
    await redis_time_passes(client, 11 * 60)
    statuses.append((await client.get(link, allow_redirects=False)).status)
    await counted(client)
    return {
        "follows": len(statuses),
        "redirects": statuses,
        "clicks": (await report(client))[0]["clicks"],
    }


async def cookie_less_loop_1000(client: Client) -> dict[str, Any]:
    filled = 0
    for _ in range(1000):
        filled += bool((await ad(client))["products"])
    await counted(client)
    return {
        "requests": 1000,
        "ads_served": filled,
        "impressions": (await report(client))[0]["impressions"],
    }


async def made_up_publishers_1000(client: Client) -> dict[str, Any]:
    for n in range(1000):
        await ad(client, pub=f"made-up-{n}")
    await counted(client)
    rows = await report(client, by="publisher")
    stats = [k async for k in client.app[STORE].redis.scan_iter(match="st:*")]
    fields = sum([await client.app[STORE].redis.hlen(k) for k in stats])
    return {
        "publisher_rows": len(rows),
        "impressions": sum(r["impressions"] for r in rows),
        "stats_fields": fields,
    }


async def fake_purchases_200(client: Client) -> dict[str, Any]:
    await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-2"})
    await ad(client)
    await counted(client)
    for n in range(200):
        params = {"a": SHOP, "e": "purchase", "o": f"fake-{n}", "i": "sku-1", "v": "999999999"}
        await client.get("/px", params={**params, "cur": "EUR"})
    await counted(client)
    day = (await report(client))[0]
    return {"purchases": 200, "conversions": day["conversions"], "revenue": day["revenue"]}


async def run(
    server: EmbeddedRedis, data: Path, attack: Callable[[Client], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    flush = redis.Redis.from_url(server.url)
    flush.flushall()
    flush.close()
    settings = Settings(
        redis_url=server.url,
        data_dir=data,
        secret=b"bench-secret-0123456789-0123456789-abcdef",
        advertisers={SHOP: TOKEN},
        run_worker=False,
    )
    port = free_port()
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")
    client: Client = TestClient(
        TestServer(create_app(settings), port=port), cookie_jar=jar, headers=BROWSER
    )
    await client.start_server()
    try:
        rows = [
            {"id": f"sku-{n}", "title": f"Product {n}", "link": f"https://shop1.example/p/{n}",
             "image_link": f"https://shop1.example/i/{n}.jpg", "price": "19.90", "currency": "EUR"}
            for n in range(1, 7)
        ]  # fmt: skip
        await client.put(f"/api/v1/advertisers/{SHOP}/products", json=rows, headers=AUTH)
        await client.get("/px", params={"a": SHOP, "e": "view", "i": "sku-1"})  # sku-1 popular
        await client.app[WORKER].drain()
        await client.app[MARKET].refresh()
        client.session.cookie_jar.clear()  # the attacks start cookie-less
        return await attack(client)
    finally:
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    attacks = [
        beacon_hit_500_times,
        click_again_after_11_minutes,
        cookie_less_loop_1000,
        made_up_publishers_1000,
        fake_purchases_200,
    ]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", persistent=False)
        server.start()
        try:
            for attack in attacks:
                results[attack.__name__] = await run(server, Path(tmp), attack)
                print(f"{attack.__name__:32} {json.dumps(results[attack.__name__])}", flush=True)
        finally:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
