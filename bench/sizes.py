"""What an ad weighs: `/ad` and `/ad.json` for every creative size with 1..N products, body
and on the wire (status line + headers + body), without and with gzip.

    .venv/bin/python bench/sizes.py [--out bench/SIZES.md]

A real Kaeru app (in this process, on loopback) on a private embedded Redis; the only advertiser
sells exactly N products of the demo catalog (real titles, brands, image links; one app per N),
so its ad (not personalised: no cookie) shows N products in each size that can show N. Answers
are read off a raw socket, so the byte counts are what the client receives: once without
`Accept-Encoding` (the body as rendered) and once with a browser's `gzip, deflate, br` (Kaeru
compresses the ad's answers itself since issue 15; the nginx of README.md passes them on as
they are). The creative stylesheet (when there is one) is fetched once and then cached; it is
reported on its own line. The last column, "plain + proxy gzip -1", is for comparison with
Kaerus that compressed nothing: the uncompressed answer as `gzip on` in nginx (level 1) would
have sent it.
`bench/run.py` calls `measure()` and puts the table in RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from adserver.app import create_app
from adserver.config.settings import Settings
from adserver.demo.catalog import demo_catalog
from adserver.http.app_keys import MARKET, RENDERER, WORKER, buffered_writers
from adserver.runtime.embedded_redis import EmbeddedRedis, free_port

BENCH = Path(__file__).resolve().parent
SHOP_URL = "https://www.shop-example.com"
PUBLIC_URL = "https://ads.example.com"  # a realistic length for the absolute links
PUBLISHER = "news"
SECRET = b"bench-sizes-secret-0123456789-0123456789"
MAX_N = 4
ENDPOINTS = ("/ad", "/ad.json", "/ad.json?html=1")
GZIP_HEADER = len(b"Content-Encoding: gzip\r\n")
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@dataclass(frozen=True, slots=True)
class Answer:
    head: int  # status line and headers, with the blank line
    body: bytes

    @property
    def wire(self) -> int:
        return self.head + len(self.body)

    def wire_gzip(self, level: int) -> int:
        return self.head + GZIP_HEADER + len(gzip.compress(self.body, level, mtime=0))


@dataclass(frozen=True, slots=True)
class Row:
    endpoint: str
    size: str
    products: int
    answer: Answer  # asked without Accept-Encoding
    gzipped: Answer  # asked as a browser asks


async def fetch(port: int, target: str, *, gzip: bool = False) -> Answer:
    """GET `target` over a fresh HTTP/1.1 connection; the exact bytes of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    encoding = "Accept-Encoding: gzip, deflate, br\r\n" if gzip else ""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: ads.example.com\r\nUser-Agent: {USER_AGENT}\r\n"
        f"Accept: */*\r\n{encoding}Connection: close\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        raise RuntimeError(f"{target}: chunked answer, sizes would be wrong")
    return Answer(len(head) + 4, body)


def catalog_rows(count: int) -> list[dict[str, str]]:
    return demo_catalog(SHOP_URL)[:count]


async def _stock(client_port: int, advertiser: str, token: str, count: int) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"http://127.0.0.1:{client_port}/api/v1/advertisers/{advertiser}/products",
            json=catalog_rows(count),
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"catalog upload failed: {response.status} {await response.text()}")
    # Views make the products popular: what an ad for someone Kaeru does not know shows.
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, headers={"User-Agent": USER_AGENT}) as s:
        for row in catalog_rows(count):
            query = f"a={advertiser}&e=view&i={row['id']}"
            async with s.get(f"http://127.0.0.1:{client_port}/px?{query}") as response:
                await response.read()


async def _measure(redis_url: str, data_dir: Path) -> tuple[list[Row], Answer | None]:
    rows: list[Row] = []
    stylesheet = None
    for n in range(1, MAX_N + 1):
        more, stylesheet = await _measure_stock(redis_url, data_dir, n)
        rows.extend(more)
    rows.sort(key=lambda r: (r.endpoint, r.size, r.products))
    return rows, stylesheet


async def _measure_stock(redis_url: str, data_dir: Path, n: int) -> tuple[list[Row], Answer | None]:
    """One app whose only advertiser sells `n` products: its ads of each size that can show
    `n` products."""
    import redis

    redis.Redis.from_url(redis_url).flushall()  # our own private server
    token = "shop-token-0123456789"
    settings = Settings(
        redis_url=redis_url,
        data_dir=data_dir,
        secret=SECRET,
        advertisers={"shop": token},
        public_url=PUBLIC_URL,
        run_worker=False,
        impression_cap_per_hour=0,
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await _stock(port, "shop", token, n)
        for writer in buffered_writers(app):
            await writer.flush()
        await app[WORKER].drain()  # learns popularity from the views
        await app[MARKET].refresh()
        rows: list[Row] = []
        for size, fmt in app[RENDERER].formats.items():
            if fmt.max_products < n:
                continue
            for endpoint in ENDPOINTS:
                path, _, extra = endpoint.partition("?")
                query = f"pub={PUBLISHER}&size={size}" + (f"&{extra}" if extra else "")
                answer = await fetch(port, f"{path}?{query}")
                shown = _products_in(path, answer.body)
                if shown != n:
                    raise RuntimeError(f"{endpoint} {size}, {n} sold: {shown} shown")
                gzipped = await fetch(port, f"{path}?{query}", gzip=True)
                rows.append(Row(endpoint, size, n, answer, gzipped))
        stylesheet = None
        first = next(r for r in rows if r.endpoint == "/ad").answer.body.decode()
        link = re.search(r'<link rel=stylesheet href="?([^" >]+)', first)
        if link:
            stylesheet = await fetch(port, link[1].removeprefix(PUBLIC_URL), gzip=True)
        return rows, stylesheet
    finally:
        await runner.cleanup()


def _products_in(path: str, body: bytes) -> int:
    if path == "/ad.json":
        return len(json.loads(body)["products"])
    return body.count(b"/c/")


def measure() -> tuple[list[Row], Answer | None]:
    with tempfile.TemporaryDirectory(prefix="kaeru-sizes-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", persistent=False)
        server.start()
        try:
            return asyncio.run(_measure(server.url, Path(tmp)))
        finally:
            server.stop()


def table(rows: list[Row], stylesheet: Answer | None) -> str:
    lines = [
        "| answer | size | products | body B | on the wire B | on the wire, browser (gzip) B "
        "| plain + proxy gzip -1 B |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        a = row.answer
        lines.append(
            f"| `{row.endpoint}` | {row.size} | {row.products} | {len(a.body)} | {a.wire} "
            f"| {row.gzipped.wire} | {a.wire_gzip(1)} |"
        )
    if stylesheet is not None:
        s = stylesheet
        lines.append(f"| stylesheet (once, then cached) | all | – | – | – | {s.wire} | – |")
    return "\n".join(lines) + "\n"


def headline(rows: list[Row]) -> str:
    """`/ad` 300x250 with its most products, the issue's yardstick."""
    best = max(
        (r for r in rows if r.endpoint == "/ad" and r.size == "300x250"), key=lambda r: r.products
    )
    a = best.answer
    return (
        f"`/ad` 300x250 with {best.products} products: {len(a.body)} B body, {a.wire} B on the "
        f"wire, {best.gzipped.wire} B to a browser (gzip)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    rows, stylesheet = measure()
    text = headline(rows) + "\n\n" + table(rows, stylesheet)
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
