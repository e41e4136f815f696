"""What an identifier costs an ad decision: Redis round trips and commands per `/ad.json`
before the answer, for a shopper known by the uid cookie (one who viewed, one who bought), by
a publisher's `eid` (hashed e-mail, no cookie), and for an anonymous reader.

    .venv/bin/python bench/identity.py [--requests 200]

Kaeru runs in this process on a private redis-server (embedded, temporary directory), its
background refresh turned off. Round trips are counted where the store sends them (every
pipelined batch is one), only from the request's own task and what it starts (a ContextVar
set by a middleware): the impression counted after the answer (group commit) is not part of
the decision and is left out. Commands come from MONITOR over the same requests (all of them,
impression counting included, by command name).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

import adserver.store.base as store_base  # noqa: E402
import adserver.store.identity_links as identity_links  # noqa: E402
from adserver.app import create_app  # noqa: E402
from adserver.config.settings import Settings  # noqa: E402
from adserver.http.app_keys import SHOWN_WRITER  # noqa: E402
from adserver.identity.identifiers import email_sha256_of  # noqa: E402
from adserver.runtime.embedded_redis import EmbeddedRedis  # noqa: E402

from redis_stats import monitor_sample  # noqa: E402

SHOP, TOKEN = "shop1", "shop1-token-0123456789"
PUB, PUB_TOKEN = "news1", "news1-token-0123456789"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0"
EID = email_sha256_of("bench@example.com")
IN_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)
trips: list[int] = [0]
answering: list[bool] = [False]  # between sending a request and reading its answer


@web.middleware
async def mark(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
    token = IN_REQUEST.set(True)
    try:
        return await handler(request)
    finally:
        IN_REQUEST.reset(token)


def counting(real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if IN_REQUEST.get() and answering[0]:
            trips[0] += 1
        return await real(*args, **kwargs)

    return wrapper


async def scenario(
    app: web.Application, base: str, requests: int, port: int
) -> dict[str, dict[str, float]]:
    headers = {"User-Agent": AGENT}
    results: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession(headers=headers) as shop:
        rows = [
            {
                "id": f"sku-{n}",
                "title": f"P{n}",
                "link": f"https://shop1.example/p/{n}",
                "image_link": f"https://shop1.example/i/{n}.jpg",
                "price": "9.90",
                "currency": "EUR",
            }
            for n in range(1, 21)
        ]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        await shop.put(f"{base}/api/v1/advertisers/{SHOP}/products", json=rows, headers=auth)
        body = {
            "events": [
                {"advertiser": SHOP, "event": "identify", "email_sha256": EID},
                {"advertiser": SHOP, "event": "view", "items": ["sku-3"]},
                {"advertiser": SHOP, "event": "view", "items": ["sku-7"]},
            ],
            "fpid": "BenchBenchBenchBench00",
        }
        answer = await shop.post(f"{base}/e", json=body)
        assert answer.status == 204, await answer.text()
        uid = answer.cookies["uid"].value
    async with aiohttp.ClientSession(headers=headers) as buyer_session:
        bought = {
            "events": [
                {"advertiser": SHOP, "event": "view", "items": ["sku-3"]},
                {"advertiser": SHOP, "event": "purchase", "order": "bench-1",
                 "items": [{"id": "sku-3", "price": "9.90"}], "revenue": "9.90",
                 "currency": "EUR"},
            ],
        }  # fmt: skip
        answer = await buyer_session.post(f"{base}/e", json=bought)
        assert answer.status == 204, await answer.text()
        buyer = answer.cookies["uid"].value
        await asyncio.sleep(1.5)  # the catalog reaches the in-process cache

    cases = {
        "uid cookie": ({"pub": PUB, "size": "300x250"}, {"Cookie": f"uid={uid}"}),
        "uid cookie, a buyer": ({"pub": PUB, "size": "300x250"}, {"Cookie": f"uid={buyer}"}),
        "eid, no cookie": ({"pub": PUB, "size": "300x250", "eid": EID}, {}),
        "anonymous": ({"pub": PUB, "size": "300x250"}, {}),
    }
    async with aiohttp.ClientSession(headers=headers, cookie_jar=aiohttp.DummyCookieJar()) as c:
        for name, (query, extra) in cases.items():
            results[name] = await measure(app, c, f"{base}/ad.json", query, extra, requests, port)
    return results


async def send(
    app: web.Application,
    client: aiohttp.ClientSession,
    url: str,
    query: dict[str, str],
    headers: dict[str, str],
    requests: int,
) -> Counter[str]:
    """Sequential requests; between two, the impression is counted (after the answer)."""
    strategies: Counter[str] = Counter()
    for _ in range(requests):
        answering[0] = True
        response = await client.get(url, params=query, headers=headers)
        answer = await response.json() if response.status == 200 else {"strategy": "none"}
        answering[0] = False
        strategies[answer["strategy"]] += 1
        await app[SHOWN_WRITER].flush()
    return strategies


async def measure(
    app: web.Application,
    client: aiohttp.ClientSession,
    url: str,
    query: dict[str, str],
    extra: dict[str, str],
    requests: int,
    port: int,
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {PUB_TOKEN}", **extra}
    await send(app, client, url, query, headers, requests)  # warm: scripts loaded
    trips[0] = 0
    loop = asyncio.get_running_loop()
    strategies: Counter[str] = Counter()

    def blocking() -> int:
        future = asyncio.run_coroutine_threadsafe(
            send(app, client, url, query, headers, requests), loop
        )
        strategies.update(future.result())
        return requests

    sample = await loop.run_in_executor(None, monitor_sample, port, blocking)
    return {
        "round trips before the answer": trips[0] / requests,
        "cmd zrevrange|hgetall (resolve, refresh)": sample.background / requests,
        **{f"cmd {k}": v for k, v in sample.per_request(sample.client).items()},
        **{f"lua {k}": v for k, v in sample.per_request(sample.scripted).items()},
        **{f"strategy {k}": v / requests for k, v in strategies.items()},
    }


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", persistent=False)
        server.start()
        try:
            settings = Settings(
                redis_url=server.url,
                data_dir=Path(tmp),
                secret=b"bench-secret-0123456789-0123456789-abcdef",
                advertisers={SHOP: TOKEN},
                publishers={PUB: PUB_TOKEN},
                run_worker=False,
                cache_refresh_seconds=1.0,
                redis_deadline_ms=1000,
                impression_cap_per_hour=0,
            )
            app = create_app(settings)
            app.middlewares.insert(0, mark)
            store_base.send_commands = counting(store_base.send_commands)  # type: ignore[assignment]
            identity_links.send_commands = counting(identity_links.send_commands)  # type: ignore[assignment]
            store_base.execute = counting(store_base.execute)  # type: ignore[assignment]
            http = TestServer(app, host="127.0.0.1")
            await http.start_server()
            try:
                started = time.monotonic()
                url = str(http.make_url("")).rstrip("/")
                results = await scenario(app, url, requests, server.port)
                print(
                    f"{requests} sequential /ad.json per case, {time.monotonic() - started:.1f} s"
                )
                for name, row in results.items():
                    print(f"\n{name}")
                    for key, value in row.items():
                        print(f"  {key:42} {value:6.2f}")
            finally:
                await http.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(main(parser.parse_args().requests))
