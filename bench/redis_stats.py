"""What Kaeru costs Redis: commands and round trips per request, memory per shopper.

- `INFO commandstats` counts every command, including the ones a Lua script runs inside
  Redis (an EVALSHA of the profile script shows up as 1 evalsha + its ZADDs, EXPIREs, …).
- `INFO stats` `total_reads_processed` counts socket reads: a client's round trip (one command
  or one pipeline) is one read, so its delta per request is the round trips per request.
- A short `MONITOR` sample tells commands sent by Kaeru (`[db addr]`) from commands run inside
  scripts (`[db lua]`).
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import redis

from adserver.store import scripts

IGNORED = frozenset(("info", "monitor", "ping", "memory|usage", "scan", "client|setname"))
# Kaeru's catalog/campaign refresh (once a second, whatever the traffic): not request work.
BACKGROUND_COMMANDS = frozenset(("hgetall", "zrevrange"))
MONITOR_LINE = re.compile(r'^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"(?: "([^"]+)")?')
# The one call an ad decision makes before answering: the profile script (adserver.store).
PROFILE_READ_SHA = hashlib.sha1(scripts.LOAD_SHOPPER.encode()).hexdigest()


@dataclass(frozen=True)
class RedisCounters:
    at: float
    calls: Mapping[str, int]
    reads: int
    cpu_seconds: float

    @classmethod
    def read(cls, client: redis.Redis) -> RedisCounters:
        stats = client.info("commandstats")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if name.removeprefix("cmdstat_") not in IGNORED
        }
        info = client.info("stats")
        cpu = client.info("cpu")
        cpu_seconds = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
        return cls(time.monotonic(), calls, int(info["total_reads_processed"]), cpu_seconds)


@dataclass(frozen=True)
class RedisDelta:
    """Counter changes over a window, with the idle background rate taken out."""

    seconds: float
    calls: Mapping[str, float]
    reads: float
    cpu_seconds: float

    @classmethod
    def between(
        cls, before: RedisCounters, after: RedisCounters, idle: RedisDelta | None = None
    ) -> RedisDelta:
        seconds = after.at - before.at
        calls: dict[str, float] = {}
        for name, count in after.calls.items():
            delta = float(count - before.calls.get(name, 0))
            if idle is not None and idle.seconds > 0:
                delta -= idle.calls.get(name, 0.0) / idle.seconds * seconds
            if delta > 0:
                calls[name] = delta
        reads = float(after.reads - before.reads)
        if idle is not None and idle.seconds > 0:
            reads -= idle.reads / idle.seconds * seconds
        return cls(seconds, calls, max(0.0, reads), after.cpu_seconds - before.cpu_seconds)

    def per_request(self, requests: int) -> dict[str, float]:
        return {name: n / requests for name, n in self.calls.items()} if requests else {}


def idle_rate(client: redis.Redis, seconds: float) -> RedisDelta:
    """What Redis sees while nobody sends requests (Kaeru's periodic cache refresh)."""
    before = RedisCounters.read(client)
    time.sleep(seconds)
    return RedisDelta.between(before, RedisCounters.read(client))


def settle(client: redis.Redis, idle: RedisDelta, timeout: float = 30.0) -> float:
    """Wait until Redis sees nothing but Kaeru's background refresh (writes that Kaeru defers
    past the answer have landed); returns how long that took."""
    started = time.monotonic()
    previous = RedisCounters.read(client)
    while time.monotonic() - started < timeout:
        time.sleep(0.25)
        current = RedisCounters.read(client)
        if sum(RedisDelta.between(previous, current, idle).calls.values()) < 5:
            return max(0.0, time.monotonic() - started - 0.25)
        previous = current
    return timeout


@dataclass
class MonitorSample:
    requests: int = 0
    client: Counter[str] = field(default_factory=Counter)  # commands Kaeru sent
    scripted: Counter[str] = field(default_factory=Counter)  # commands run inside Lua
    background: int = 0
    round_trips: float = 0.0  # per request, from total_reads_processed
    profile_reads: int = 0  # EVALSHA of the profile script: a decision's read before answering

    def per_request(self, counts: Counter[str]) -> dict[str, float]:
        return {name: n / self.requests for name, n in counts.most_common()}


def monitor_sample(port: int, send_requests: Callable[[], int]) -> MonitorSample:
    """Run `send_requests` (returns how many it sent) with MONITOR on, and count commands."""
    chunks: list[bytes] = []
    stop = threading.Event()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"MONITOR\r\n")
    if not sock.recv(5).startswith(b"+OK"):
        raise RuntimeError("MONITOR refused")
    sock.settimeout(0.2)

    def collect() -> None:
        while not stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    try:
        requests = send_requests()
        time.sleep(0.3)  # let the last commands arrive
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()
    return _count(b"".join(chunks).decode(errors="replace").split("\r\n"), requests)


def _count(lines: Iterable[str], requests: int) -> MonitorSample:
    sample = MonitorSample(requests=requests)
    for line in lines:
        match = MONITOR_LINE.match(line)
        if match is None:
            continue
        origin, command = match.group(1), match.group(2).lower()
        if origin == "lua":
            sample.scripted[command] += 1
        elif command in BACKGROUND_COMMANDS:
            sample.background += 1
        elif command not in IGNORED:
            sample.client[command] += 1
            if command == "evalsha" and match.group(3) == PROFILE_READ_SHA:
                sample.profile_reads += 1
    return sample


@dataclass(frozen=True)
class ShopperMemory:
    shoppers: int
    bytes_per_shopper: float
    keys_per_shopper: float
    by_kind: Mapping[str, float]  # key kind ('v', 'a', 'wc', …) -> average bytes
    ttl_days: Mapping[str, float]  # key kind -> longest TTL seen, in days


def shopper_memory(client: redis.Redis, uids: Iterable[str]) -> ShopperMemory:
    """Sum of MEMORY USAGE over each shopper's keys (SCAN MATCH u:{uid}:*), averaged."""
    total, keys, shoppers = 0, 0, 0
    kinds: Counter[str] = Counter()
    ttls: dict[str, float] = {}
    for uid in uids:
        shoppers += 1
        for key in client.scan_iter(match=f"u:{{{uid}}}:*", count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            used = int(client.memory_usage(name, samples=0) or 0)
            total += used
            keys += 1
            kind = name.split(":", 2)[2].split(":", 1)[0]
            kinds[kind] += used
            ttls[kind] = max(ttls.get(kind, 0.0), int(client.ttl(name)) / 86400)
    count = max(1, shoppers)
    return ShopperMemory(
        shoppers,
        total / count,
        keys / count,
        {kind: used / count for kind, used in kinds.most_common()},
        ttls,
    )
