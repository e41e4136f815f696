"""Kaeru's benchmark in one command: throughput against a bare aiohttp handler and nginx,
latency at a fixed rate, Redis commands and round trips per request, memory per shopper.

    .venv/bin/python bench/run.py [--duration 10] [--connections 64] [--out bench/RESULTS.md]

Everything runs on loopback, in processes this script starts and stops (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from adserver.runtime.embedded_redis import EmbeddedRedis, free_port
from adserver.store import keys

from procs import (
    Processes,
    Service,
    busy_between,
    core_busy_share,
    core_busy_ticks,
    machine,
    nginx_conf,
    pin_running,
    pinned,
    run_bounded,
)
from redis_stats import (
    MonitorSample,
    RedisCounters,
    RedisDelta,
    ShopperMemory,
    idle_rate,
    monitor_sample,
    settle,
    shopper_memory,
)
from report import Context, FixedRun, Measured, render
from seed import ADVERTISER, CATALOG_SIZE, learn_related, seed_profiles, upload_catalog
from sizes import headline, table
from sizes import measure as measure_sizes

BENCH = Path(__file__).resolve().parent
LOADGEN_CORE, SERVER_CORE = 0, 1  # Redis and the load generators / the servers under test
WARMUP_SECONDS = 2
SHOPPERS = 2000
MEMORY_SAMPLE = 50
MONITOR_REQUESTS = 200
FIXED_RATE_WARMUP_SECONDS = 2
FIXED_RATE_CONNECTIONS = 256  # open loop: enough that a slow answer never holds up a send
READY_SECONDS = 20.0
TOKEN = "bench-" + secrets.token_hex(12)
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
# Kaeru counters reported per run: what was stored, deferred, shed or failed.
WATCHED_COUNTERS = (
    "kaeru_events_stored",
    "kaeru_events_buffered",
    "kaeru_events_shed",
    "kaeru_store_errors",
    "kaeru_ads_no_fill",
    "kaeru_tracking_rejects",
)
PIXEL_PATH = f"/px?a={ADVERTISER}&e=view&i=sku-"  # wrk_kaeru.lua appends a number


@dataclass(frozen=True)
class Target:
    label: str
    service: str  # bare | nginx | kaeru
    path: str
    mode: str  # px: sku varies; ad: uid cookie varies (see wrk_kaeru.lua)


TARGETS = (
    Target("bare aiohttp GIF", "bare", PIXEL_PATH, "px"),
    Target("nginx empty_gif", "nginx", PIXEL_PATH, "px"),
    Target("Kaeru /px (view)", "kaeru", PIXEL_PATH, "px"),
    Target("Kaeru /ad.json", "kaeru", "/ad.json?pub=news1&size=300x250", "ad"),
    Target("Kaeru /ad (iframe)", "kaeru", "/ad?pub=news1&size=300x250", "ad"),
)
FIXED_RATE_TARGETS = ("Kaeru /px (view)", "Kaeru /ad.json")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: raised wherever the main thread is, even inside asyncio.run (whose
    own SIGINT handling would let a task swallow the cancellation)."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    procs: Processes = field(default_factory=Processes)
    redis_server: EmbeddedRedis | None = None
    client: redis.Redis | None = None
    services: dict[str, Service] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)

    @property
    def redis(self) -> redis.Redis:
        assert self.client is not None
        return self.client

    @property
    def uid_file(self) -> Path:
        return self.tmp / "uids.txt"

    # -- processes --------------------------------------------------------------------------

    def start_redis(self) -> None:
        self.redis_server = EmbeddedRedis(self.tmp / "redis", persistent=False)
        url = self.redis_server.start()
        self.client = redis.Redis.from_url(url)
        assert self.redis_server.process is not None
        where = "core 0" if pin_running(self.redis_server.process.pid, LOADGEN_CORE) else "unpinned"
        self.notes.append(f"Redis {url} ({where})")

    def start_bare(self) -> None:
        port = free_port()
        command = [sys.executable, str(BENCH / "bare_server.py"), str(port)]
        self._start("bare", command, port)

    def start_nginx(self) -> None:
        nginx = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
        )
        if nginx is None:
            self.notes.append("nginx: not installed, skipped (apt-get install nginx-light)")
            return
        port = free_port()
        home = self.tmp / "nginx"
        home.mkdir()
        (home / "nginx.conf").write_text(nginx_conf(home, port))
        command = [nginx, "-p", str(home), "-c", str(home / "nginx.conf"), "-e", "stderr"]
        self._start("nginx", command, port)

    def start_kaeru(self) -> None:
        assert self.redis_server is not None
        port = free_port()
        env = {
            **os.environ,
            "KAERU_ADVERTISERS": f"{ADVERTISER}:{TOKEN}",
            "KAERU_DATA_DIR": str(self.tmp / "kaeru"),
            "KAERU_SECRET": secrets.token_urlsafe(32),
            "KAERU_WORKER": "0",
        }
        env.pop("REDIS_URL", None)
        command = [sys.executable, "-m", "adserver.cli", "serve", "--port", str(port)]
        command += ["--redis-url", self.redis_server.url]
        workers = getattr(self.args, "workers", 1)
        if workers > 1:
            command += ["--workers", str(workers)]
        self._start("kaeru", command, port, env)

    def _start(
        self, name: str, command: list[str], port: int, env: dict[str, str] | None = None
    ) -> None:
        log = self.tmp / f"{name}.log"
        # N > 1 Kaeru workers (--workers) get every core: they share them with Redis and wrk.
        spread = name.startswith("kaeru") and getattr(self.args, "workers", 1) > 1
        core = None if spread else SERVER_CORE
        service = self.procs.start(name, command, port=port, log=log, core=core, env=env)
        path = "/healthz" if name.startswith("kaeru") else "/"
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if not service.alive():
                raise RuntimeError(f"{name} exited at start:\n{service.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{name} did not answer within {READY_SECONDS}s")
        self.services[name] = service
        self.notes.append(f"{name} on 127.0.0.1:{port} ({service.placement})")

    def stop(self) -> None:
        self.procs.stop_all()
        if self.client is not None:
            self.client.close()
        if self.redis_server is not None:
            self.redis_server.stop()

    # -- data ---------------------------------------------------------------------------------

    def load_catalog(self) -> None:
        upload_catalog(self.kaeru_url(""), TOKEN)

    def seed(self) -> tuple[float, float]:
        """Profiles for SHOPPERS shoppers (50 views each), then the related-items model."""
        assert self.redis_server is not None
        rng = random.Random(7)
        self.uids = [secrets.token_urlsafe(16) for _ in range(SHOPPERS)]
        self.uid_file.write_text("\n".join(self.uids) + "\n")
        url = self.redis_server.url
        started = time.monotonic()
        asyncio.run(seed_profiles(url, self.uids, rng))
        seeded = time.monotonic() - started
        started = time.monotonic()
        asyncio.run(asyncio.wait_for(learn_related(url), timeout=600))
        return seeded, time.monotonic() - started

    def memory(self) -> ShopperMemory:
        return shopper_memory(self.redis, self.uids[:MEMORY_SAMPLE])

    def kaeru_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.services['kaeru'].port}{path}"

    def sample_ad(self) -> dict[str, Any]:
        """One decision for a seeded shopper once Kaeru's caches caught up (≤ ~2 s)."""
        deadline = time.monotonic() + 10
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            request = urllib.request.Request(
                self.kaeru_url("/ad.json?pub=news1&size=300x250"),
                headers={"User-Agent": USER_AGENT, "Cookie": f"uid={self.uids[0]}"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read()
            answer = json.loads(body) if body else {}
            if answer.get("strategy") not in (None, "popular"):
                break
            time.sleep(0.5)
        return answer

    # -- load ---------------------------------------------------------------------------------

    def wrk(self, target: Target, duration: int) -> dict[str, Any]:
        service = self.services[target.service]
        url = f"http://127.0.0.1:{service.port}{target.path}"
        command = [*pinned(LOADGEN_CORE), "wrk", "-t1", f"-c{self.args.connections}"]
        command += [f"-d{duration}s", "--timeout", "5s", "-s", str(BENCH / "wrk_kaeru.lua")]
        command += [url, "--", target.mode, str(self.uid_file), str(CATALOG_SIZE)]
        output = run_bounded(command, timeout=duration + 30)
        line = next(x for x in output.splitlines() if x.startswith("WRK_RESULT "))
        result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        return result

    def closed_loop(self, target: Target, duration: float) -> dict[str, Any]:
        """Fallback without wrk: fixed_rate.py in closed-loop mode."""
        out = self.fixed_rate(target, 0, duration, warmup=0)
        latency = out["latency"]
        return {
            "rps": out["achieved_rps"],
            "requests": out["answered"],
            "p50_us": (latency["p50_ms"] or 0) * 1000,
            "p99_us": (latency["p99_ms"] or 0) * 1000,
            "errors": out["errors"],
            "extra": {"statuses": out["statuses"], "strategies": {}},
        }

    def fixed_rate(
        self, target: Target, rate: float, duration: float, warmup: float = 0
    ) -> dict[str, Any]:
        service = self.services[target.service]
        path = target.path + "{sku}" if target.mode == "px" else target.path
        command = [*pinned(LOADGEN_CORE), sys.executable, str(BENCH / "fixed_rate.py")]
        command += ["--url", f"http://127.0.0.1:{service.port}{path}", "--rate", f"{rate:.0f}"]
        connections = max(FIXED_RATE_CONNECTIONS, self.args.connections) if rate else None
        command += ["--duration", str(duration)]
        command += ["--connections", str(connections or self.args.connections)]
        command += ["--uids", str(self.uid_file), "--skus", str(CATALOG_SIZE)]
        command += ["--warmup", str(warmup)]
        command += ["-H", f"User-Agent: {USER_AGENT}"]
        output = run_bounded(command, timeout=duration + 60)
        result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
        return result

    def saturate(self, target: Target, idle: RedisDelta) -> Measured:
        """wrk at full speed; for Kaeru, the run lasts until the writes it deferred (group
        commit, impressions counted after the answer) have reached Redis."""
        service = self.services[target.service]
        kaeru = target.service == "kaeru"
        if shutil.which("wrk"):
            self.wrk(target, WARMUP_SECONDS)
        else:
            self.closed_loop(target, WARMUP_SECONDS)
        if kaeru:
            settle(self.redis, idle)  # the warm-up's deferred writes are not this run's
        before, cpu_before = RedisCounters.read(self.redis), service.cpu_seconds()
        counters_before = self.kaeru_counters() if kaeru else {}
        cores_before = core_busy_ticks()
        if shutil.which("wrk"):
            result = self.wrk(target, self.args.duration)
        else:
            result = self.closed_loop(target, self.args.duration)
        core_busy = busy_between(cores_before, core_busy_ticks()).get(f"cpu{SERVER_CORE}", 0.0)
        drained = settle(self.redis, idle) if kaeru else 0.0
        cpu = service.cpu_seconds() - cpu_before
        redis_delta = RedisDelta.between(before, RedisCounters.read(self.redis), idle)
        counters = counter_deltas(counters_before, self.kaeru_counters()) if kaeru else {}
        return Measured.from_load(
            target.label,
            target.service,
            result,
            cpu,
            redis_delta,
            core_busy=core_busy,
            drain_seconds=drained,
            counters=counters,
        )

    def monitor(self, target: Target, idle: RedisDelta) -> MonitorSample:
        """Sequential requests (one at a time: nothing to batch with) under MONITOR."""
        service = self.services[target.service]
        rng = random.Random(3)

        def send() -> int:
            conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
            try:
                for _ in range(MONITOR_REQUESTS):
                    path = target.path
                    if target.mode == "px":
                        path += str(rng.randint(1, CATALOG_SIZE))
                    headers = {"User-Agent": USER_AGENT, "Cookie": f"uid={rng.choice(self.uids)}"}
                    conn.request("GET", path, headers=headers)
                    conn.getresponse().read()
            finally:
                conn.close()
            return MONITOR_REQUESTS

        assert self.redis_server is not None
        before = RedisCounters.read(self.redis)
        sample = monitor_sample(self.redis_server.port, send)
        settle(self.redis, idle)
        reads = RedisDelta.between(before, RedisCounters.read(self.redis), idle).reads
        sample.round_trips = max(0.0, reads - 1) / sample.requests  # minus MONITOR itself
        return sample

    def kaeru_metrics(self) -> list[tuple[str, float]]:
        """Kaeru's /metrics as (sample with labels, value)."""
        with urllib.request.urlopen(self.kaeru_url("/metrics"), timeout=5) as answer:
            text = answer.read().decode()
        samples = []
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples.append((name, float(value)))
        return samples

    def kaeru_counters(self) -> dict[str, float]:
        return {
            name: value
            for name, value in self.kaeru_metrics()
            if name.startswith(WATCHED_COUNTERS) and "_total" in name
        }

    def server_histogram(self, route: str) -> dict[float, float]:
        """Kaeru's own latency histogram for a route: cumulative count per bucket bound."""
        buckets: dict[float, float] = {}
        for name, value in self.kaeru_metrics():
            if not name.startswith("kaeru_http_request_seconds_bucket{"):
                continue
            labels = dict(part.split("=", 1) for part in name[name.index("{") + 1 : -1].split(","))
            if labels.get("route", "").strip('"') == route:
                buckets[float(labels["le"].strip('"'))] = value
        return buckets


def counter_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        name: value - before.get(name, 0.0)
        for name, value in after.items()
        if value - before.get(name, 0.0) > 0
    }


def run(bench: Bench) -> Context:
    args = bench.args
    context = Context(machine=machine(), args=vars(args))
    context.load_tool = "wrk" if shutil.which("wrk") else "fixed_rate.py"
    context.busy_before = core_busy_share(1.0)
    print("measuring what an ad weighs …", file=sys.stderr)
    rows, stylesheet = measure_sizes()
    context.sizes = headline(rows) + "\n\n" + table(rows, stylesheet)
    bench.start_redis()
    assert bench.client is not None
    context.machine["redis"] = str(bench.redis.info("server")["redis_version"])
    bench.start_bare()
    bench.start_nginx()
    bench.start_kaeru()
    bench.load_catalog()
    context.seed_seconds, context.learn_seconds = bench.seed()
    context.memory["after seeding and learning"] = bench.memory()
    used = bench.redis.info("memory")["used_memory"]
    context.stream_bytes = sum(
        int(bench.redis.memory_usage(keys.event_stream(shard), samples=0) or 0)
        for shard in range(keys.EVENT_SHARDS)
    )
    context.used_memory = int(used)
    context.sample_ad = bench.sample_ad()
    idle = idle_rate(bench.redis, 3.0)
    context.idle = idle
    if not shutil.which("wrk"):
        bench.notes.append("wrk not installed: saturation measured by fixed_rate.py closed loop")
    for target in TARGETS:
        if target.service not in bench.services:
            continue
        print(f"saturating {target.label} …", file=sys.stderr)
        context.measured.append(bench.saturate(target, idle))
    for target in TARGETS:
        if target.label in FIXED_RATE_TARGETS:
            settle(bench.redis, idle)
            context.monitor[target.label] = bench.monitor(target, idle)
    for target in TARGETS:
        if target.label not in FIXED_RATE_TARGETS:
            continue
        rate = next(m.rps for m in context.measured if m.label == target.label) / 2
        route = target.path.split("?")[0]
        print(f"fixed rate {rate:.0f}/s on {target.label} …", file=sys.stderr)
        bench.fixed_rate(target, rate, FIXED_RATE_WARMUP_SECONDS)  # discarded
        settle(bench.redis, idle)
        before, counters = bench.server_histogram(route), bench.kaeru_counters()
        kaeru, cores = bench.services["kaeru"], core_busy_ticks()
        cpu, started = kaeru.cpu_seconds(), time.monotonic()
        result = bench.fixed_rate(target, rate, args.duration)
        cpu_share = (kaeru.cpu_seconds() - cpu) / (time.monotonic() - started)
        core_busy = busy_between(cores, core_busy_ticks()).get(f"cpu{SERVER_CORE}", 0.0)
        after = bench.server_histogram(route)
        server = {le: after.get(le, 0) - before.get(le, 0) for le in after}
        moved = counter_deltas(counters, bench.kaeru_counters())
        context.fixed.append(FixedRun(target.label, result, server, moved, cpu_share, core_busy))
    context.memory["after the load runs"] = bench.memory()
    context.notes = bench.notes
    return context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Kaeru server processes (kaeru serve --workers N); N > 1 runs them unpinned",
    )
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL):
            signal.signal(signum, _on_signal)  # left alone when the caller ignores it
    tmp = Path(tempfile.mkdtemp(prefix="kaeru-bench-"))
    bench = Bench(args, tmp)
    try:
        context = run(bench)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: stopping everything this run started", file=sys.stderr)
        return 130
    finally:
        bench.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    markdown = render(context)
    print(markdown)
    args.out.write_text(markdown)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
