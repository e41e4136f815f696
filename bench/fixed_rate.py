"""Open-loop HTTP load at a fixed rate, for latency without coordinated omission.

Requests are sent on a schedule (request n at start + n / rate) whatever the server does, over
a pool of keep-alive connections; each latency is measured from the request's *scheduled* send
time, so a server stall shows up in the percentiles instead of silently slowing the load down
(which is what a closed-loop tool such as wrk does). `--rate 0` runs closed loop instead (each
connection sends back to back): the saturation fallback when `wrk` is not installed.

    python bench/fixed_rate.py --url 'http://127.0.0.1:8080/px?a=shop1&e=view&i=sku-{sku}' \\
        --rate 2000 --duration 10 --uids uids.txt --skus 60 -H 'User-Agent: Mozilla/5.0'

`{sku}` in the URL becomes a random number in 1..--skus, and each request carries a random
`uid` cookie from --uids (one per line) when given. Loopback only. Prints one JSON object.
Percentiles come from an HdrHistogram (`hdrhistogram` on PyPI) when it is installed, else from
the sorted samples (exact).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1"))
VARIANTS = 4096  # distinct prebuilt requests cycled through
CONNECT_TIMEOUT_SECONDS = 5.0
DRAIN_SECONDS = 5.0  # after the schedule ends, wait this long for answers, then give up


class ResponseError(Exception):
    pass


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time (Content-Length bodies)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            status = self._take_response()
        except (ValueError, ResponseError) as exc:
            self.waiter.set_exception(ResponseError(str(exc)))
            return
        if status is not None:
            self.waiter.set_result(status)

    def _take_response(self) -> int | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        status, length = int(head[0][9:12]), 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise ResponseError("chunked responses are not supported")
        if len(self.buffer) < end + 4 + length:
            return None
        del self.buffer[: end + 4 + length]
        return status

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def send(self, request: bytes) -> int:
        if self.transport is None:
            raise ConnectionError("not connected")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


class Recorder:
    """Latencies in microseconds: an HdrHistogram if available, else every sample."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.count = 0
        try:
            from hdrh.histogram import HdrHistogram

            self.hdr: Any = HdrHistogram(1, 120_000_000, 3)
        except ImportError:
            self.hdr = None

    @property
    def method(self) -> str:
        return "hdrhistogram" if self.hdr is not None else "sorted samples"

    def record(self, seconds: float) -> None:
        micros = max(1, int(seconds * 1_000_000))
        self.count += 1
        if self.hdr is not None:
            self.hdr.record_value(micros)
        else:
            self.samples.append(micros)

    def percentile_ms(self, p: float) -> float | None:
        if not self.count:
            return None
        if self.hdr is not None:
            return float(self.hdr.get_value_at_percentile(p)) / 1000
        index = min(self.count - 1, max(0, round(p / 100 * self.count) - 1))
        return self.samples[index] / 1000  # sorted by summary()

    def summary(self) -> dict[str, float | None]:
        if self.hdr is None:
            self.samples.sort()
        return {
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "p999_ms": self.percentile_ms(99.9),
            "max_ms": self.percentile_ms(100),
        }


@dataclass
class Run:
    requests: Sequence[bytes]
    latency: Recorder = field(default_factory=Recorder)
    lateness: Recorder = field(default_factory=Recorder)  # the generator's own delay
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    next_request: int = 0
    elapsed: float = 0.0

    def request(self) -> bytes:
        self.next_request += 1
        return self.requests[self.next_request % len(self.requests)]

    def answered(self, request: bytes, status: int | None) -> None:
        """Called with each request's status, None when it got no answer (a transport error).
        Nothing here; a subclass that builds its own requests keeps score (bench/soak.py)."""


def build_requests(
    url: str, uids: Sequence[str], skus: int, headers: Sequence[str], seed: int = 1
) -> tuple[str, int, list[bytes]]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or host not in LOOPBACK:
        raise SystemExit(f"fixed_rate: only http:// on loopback is allowed, not {url!r}")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    rng = random.Random(seed)
    built = []
    for _ in range(VARIANTS if ("{sku}" in target or uids) else 1):
        lines = [f"GET {target.replace('{sku}', str(rng.randint(1, skus)))} HTTP/1.1"]
        lines += [f"Host: {parts.netloc}", *headers]
        if uids:
            lines.append(f"Cookie: uid={rng.choice(uids)}")
        built.append(("\r\n".join(lines) + "\r\n\r\n").encode())
    return host, parts.port or 80, built


async def _connect(host: str, port: int) -> HttpConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(HttpConnection, host, port), CONNECT_TIMEOUT_SECONDS
    )
    return protocol


async def _exchange(run: Run, conn: HttpConnection, host: str, port: int) -> HttpConnection:
    """Send the next request; on a failure count it and return a fresh connection."""
    request = run.request()
    try:
        status = await conn.send(request)
    except (ConnectionError, ResponseError, OSError) as exc:
        run.errors[type(exc).__name__] += 1
        run.answered(request, None)
        if conn.transport is not None:
            conn.transport.close()
        return await _connect(host, port)
    run.statuses[status] += 1
    run.answered(request, status)
    return conn


async def open_loop(
    run: Run, host: str, port: int, rate: float, duration: float, connections: int
) -> int:
    """Send rate * duration requests on schedule; returns how many got no answer in time."""
    conns = [await _connect(host, port) for _ in range(connections)]
    queue: asyncio.Queue[float | None] = asyncio.Queue()

    async def worker(conn: HttpConnection) -> None:
        while (scheduled := await queue.get()) is not None:
            conn = await _exchange(run, conn, host, port)
            run.latency.record(time.perf_counter() - scheduled)

    workers = [asyncio.create_task(worker(conn)) for conn in conns]
    total, sent = int(rate * duration), 0
    start = time.perf_counter() + 0.01
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        now = time.perf_counter()
        for n in range(sent, due):
            queue.put_nowait(start + n / rate)
            run.lateness.record(now - (start + n / rate))
        sent = max(sent, due)
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    for _ in workers:
        queue.put_nowait(None)
    _, pending = await asyncio.wait(workers, timeout=DRAIN_SECONDS)
    for task in pending:
        task.cancel()
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return total - run.latency.count


async def closed_loop(run: Run, host: str, port: int, duration: float, connections: int) -> int:
    """Every connection sends back to back until the deadline (saturation, wrk-like)."""
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        conn = await _connect(host, port)
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            conn = await _exchange(run, conn, host, port)
            run.latency.record(time.perf_counter() - sent)
        if conn.transport is not None:
            conn.transport.close()

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    _, pending = await asyncio.wait(tasks, timeout=duration + DRAIN_SECONDS)
    for task in pending:
        task.cancel()
    return len(pending)


async def measure(args: argparse.Namespace, requests: Sequence[bytes], host: str, port: int) -> Run:
    if args.warmup > 0:
        warm = Run(requests)
        if args.rate > 0:
            await open_loop(warm, host, port, args.rate, args.warmup, args.connections)
        else:
            await closed_loop(warm, host, port, args.warmup, args.connections)
    run = Run(requests)
    started = time.perf_counter()
    if args.rate > 0:
        unfinished = await open_loop(run, host, port, args.rate, args.duration, args.connections)
    else:
        unfinished = await closed_loop(run, host, port, args.duration, args.connections)
    run.errors["unfinished"] += unfinished
    run.elapsed = time.perf_counter() - started
    return run


def report(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    answered = sum(run.statuses.values())
    return {
        "mode": "open loop" if args.rate > 0 else "closed loop",
        "target_rps": args.rate,
        "duration_s": args.duration,
        "answered": answered,
        "achieved_rps": answered / (args.duration if args.rate > 0 else run.elapsed),
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "errors": {k: v for k, v in run.errors.items() if v},
        "latency": run.latency.summary(),
        "generator_lateness": run.lateness.summary() if run.lateness.count else None,
        "histogram": run.latency.method,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests/s; 0: closed loop")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--uids", type=Path, help="file of uid cookies, one per line")
    parser.add_argument("--skus", type=int, default=50)
    parser.add_argument("-H", "--header", action="append", default=[])
    args = parser.parse_args(argv)
    uids = args.uids.read_text().split() if args.uids else []
    host, port, requests = build_requests(args.url, uids, args.skus, args.header)
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        run = runner.run(measure(args, requests, host, port))
    json.dump(report(args, run), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
