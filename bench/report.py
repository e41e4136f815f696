"""Turn one benchmark run into the markdown of bench/RESULTS.md."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis_stats import MonitorSample, RedisDelta, ShopperMemory

KIB = 1024
BUDGET_BYTES = 2 * KIB
PROFILE_KINDS = ("a", "v", "c", "b", "m", "o")  # what the profile script writes
LEARNER_KINDS = ("wv", "wb", "wn", "wk")  # the related-items worker's per-shopper state
DELIVERY_KINDS = ("f", "t")  # frequency caps and last touch, written by served ads
KIND_NAMES = {
    "a": "shops",
    "v": "views",
    "c": "cart",
    "b": "bought",
    "m": "facts",
    "o": "orders",
    "wv": "learner views",
    "wb": "learner buys",
    "wn": "learner count",
    "wk": "learner pair credits",
    "f": "caps",
    "t": "last touch",
}
PROFILING_NOTES = Path(__file__).with_name("PROFILING.md")
HOW_TO_RUN = """\
How to run: `.venv/bin/python bench/run.py [--duration 10] [--connections 64] \
[--out bench/RESULTS.md]` (needs `redis-server`; `wrk` and `nginx` are optional: \
`apt-get install -y wrk nginx-light`). Every run overwrites this file; bench/README.md says
how to read it. Ratios matter, absolute numbers only describe this machine on this day."""


def percentile(samples: list[float], share: float) -> float:
    """The sample at `share` (0..1) of the sorted samples (nearest rank, no interpolation)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Measured:
    label: str
    service: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    statuses: Mapping[str, int]
    strategies: Mapping[str, int]
    cpu_share: float  # cores used by the server under test
    redis_cpu_share: float
    commands: Mapping[str, float] | None  # per request, Kaeru only
    round_trips: float | None
    core_busy: float  # how busy the server's core was, whoever kept it busy
    drain_seconds: float  # after the run, until Kaeru's deferred writes had reached Redis
    counters: Mapping[str, float]  # Kaeru's counters that moved during the run

    @classmethod
    def from_load(
        cls,
        label: str,
        service: str,
        result: Mapping[str, Any],
        cpu: float,
        redis: RedisDelta,
        *,
        core_busy: float = 0.0,
        drain_seconds: float = 0.0,
        counters: Mapping[str, float] | None = None,
    ) -> Measured:
        requests = int(result["requests"])
        extra = result.get("extra") or {}
        errors = result.get("errors") or {}
        seconds = max(redis.seconds, 1e-9)
        kaeru = service == "kaeru"
        return cls(
            label=label,
            service=service,
            rps=float(result["rps"]),
            p50_ms=float(result["p50_us"]) / 1000,
            p99_ms=float(result["p99_us"]) / 1000,
            requests=requests,
            errors=sum(int(v) for k, v in errors.items() if k != "status"),
            statuses=extra.get("statuses") or {},
            strategies=extra.get("strategies") or {},
            cpu_share=cpu / seconds,
            redis_cpu_share=redis.cpu_seconds / seconds,
            commands=redis.per_request(requests) if kaeru else None,
            round_trips=redis.reads / requests if kaeru and requests else None,
            core_busy=core_busy,
            drain_seconds=drain_seconds,
            counters=counters or {},
        )


@dataclass(frozen=True)
class FixedRun:
    label: str
    result: Mapping[str, Any]  # fixed_rate.py's JSON
    server_buckets: Mapping[float, float]  # Kaeru's latency histogram delta for the route
    counters: Mapping[str, float]  # Kaeru's counters that moved
    cpu_share: float  # Kaeru's CPU over the measured run, in cores
    core_busy: float  # how busy Kaeru's core was, whoever kept it busy


@dataclass
class Context:
    machine: dict[str, str]
    args: dict[str, Any]
    busy_before: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seed_seconds: float = 0.0
    learn_seconds: float = 0.0
    stream_bytes: int = 0
    used_memory: int = 0
    sample_ad: dict[str, Any] = field(default_factory=dict)
    idle: RedisDelta | None = None
    measured: list[Measured] = field(default_factory=list)
    monitor: dict[str, MonitorSample] = field(default_factory=dict)
    fixed: list[FixedRun] = field(default_factory=list)
    memory: dict[str, ShopperMemory] = field(default_factory=dict)
    load_tool: str = "wrk"
    sizes: str = ""  # bench/sizes.py's headline and table (markdown)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "—"


def _shares(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {_pct(v, total)}" for k, v in ordered) or "—"


def _ratio(m: Measured, base: Measured | None) -> str:
    return f"{m.rps / base.rps:.2f}" if base else "—"


def _commands(per_request: Mapping[str, float], top: int = 8) -> str:
    ordered = sorted(per_request.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{name} {n:.2f}" for name, n in ordered if n >= 0.005) or "—"


def _bytes_by_kind(memory: ShopperMemory, kinds: tuple[str, ...]) -> float:
    return sum(memory.by_kind.get(k, 0.0) for k in kinds)


def server_side(buckets: Mapping[float, float]) -> tuple[str, str]:
    """(p99 bucket bound, share answered within 5 ms) from a cumulative histogram delta."""
    total = buckets.get(math.inf, 0.0)
    if not total:
        return "—", "—"
    p99 = next(le for le in sorted(buckets) if buckets[le] >= 0.99 * total)
    bound = "> 1 s" if math.isinf(p99) else f"≤ {p99 * 1000:g}"
    return bound, f"{100 * buckets.get(0.005, 0.0) / total:.1f}%"


def render(c: Context) -> str:
    out = ["# Kaeru benchmark results", "", HOW_TO_RUN, ""]
    out += _machine(c)
    out += _throughput(c)
    out += _redis(c)
    out += _fixed_rate(c)
    out += _memory(c)
    out += _sizes(c)
    out += _budgets(c)
    out += _method(c)
    if PROFILING_NOTES.exists():  # hand-written: where the time goes, what changed (profile.py)
        out += ["", PROFILING_NOTES.read_text(encoding="utf-8").strip()]
    return "\n".join(out) + "\n"


def _sizes(c: Context) -> list[str]:
    if not c.sizes:
        return []
    return [
        "## What an ad weighs",
        "",
        "bench/sizes.py (in-process app, real catalog rows, raw socket; see its docstring):",
        "",
        c.sizes.strip(),
        "",
    ]


def _machine(c: Context) -> list[str]:
    m = c.machine
    busy = ", ".join(f"{core} {100 * share:.0f}%" for core, share in sorted(c.busy_before.items()))
    out = ["## Machine and run", ""]
    out += [f"- **CPU** {m['cpu']}, **RAM** {m['ram']}, kernel {m['kernel']}"]
    out += [
        f"- Python {m['python']}, aiohttp {m['aiohttp']}, uvloop {m['uvloop']}, "
        f"redis-py {m['redis-py']}, Redis {m.get('redis', '?')}, {m['wrk']}, {m['nginx']}"
    ]
    out += [f"- {m['date']}; load average at start `{m['load']}`; busy before start: {busy}"]
    if _contended(c):
        out += [
            "- **Other processes used the CPU during this run** (busy before start, or a "
            "server's core busier than the server itself): numbers are noisy, rerun on a "
            "quiet machine before trusting ratios."
        ]
    out += ["- Processes: " + "; ".join(c.notes) + "; wrk and fixed_rate.py on core 0"]
    out += [
        f"- {c.args['duration']:g} s per measured run after a 2 s warm-up, "
        f"{c.args['connections']} connections, {c.load_tool} with 1 thread"
    ]
    if c.sample_ad:
        products = [p["id"] for p in c.sample_ad.get("products", [])]
        out += [
            f"- Sample decision for a seeded shopper: strategy `{c.sample_ad.get('strategy')}`,"
            f" products {products}"
        ]
    return [*out, ""]


def _contended(c: Context) -> bool:
    if any(share > 0.2 for share in c.busy_before.values()):
        return True
    runs = [(m.core_busy, m.cpu_share) for m in c.measured]
    runs += [(f.core_busy, f.cpu_share) for f in c.fixed]
    return any(busy - own > 0.2 for busy, own in runs)


def _throughput(c: Context) -> list[str]:
    bare = next((m for m in c.measured if m.service == "bare"), None)
    nginx = next((m for m in c.measured if m.service == "nginx"), None)
    out = [f"## Throughput at saturation ({c.load_tool}, closed loop)", ""]
    out += [
        "| target | req/s | p50 ms | p99 ms | vs bare aiohttp | vs nginx | Redis cmds/req "
        "| Redis round trips/req | server CPU / its core busy | Redis CPU | answers |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for m in c.measured:
        commands = f"{sum(m.commands.values()):.2f}" if m.commands is not None else "—"
        trips = f"{m.round_trips:.2f}" if m.round_trips is not None else "—"
        answers = _shares(m.statuses) + (f"; {m.errors} socket errors" if m.errors else "")
        out.append(
            f"| {m.label} | {m.rps:,.0f} | {_ms(m.p50_ms)} | {_ms(m.p99_ms)} "
            f"| {_ratio(m, bare)} | {_ratio(m, nginx)} | {commands} | {trips} "
            f"| {100 * m.cpu_share:.0f}% / {100 * m.core_busy:.0f}% "
            f"| {100 * m.redis_cpu_share:.0f}% | {answers} |"
        )
    out.append("")
    for m in c.measured:
        if m.cpu_share < 0.8:
            out.append(
                f"- {m.label}: the server used {100 * m.cpu_share:.0f}% of its core, so it was "
                "not the bottleneck (load generator, Redis, waiting, or other processes on its "
                "core): its req/s is a lower bound."
            )
        if m.strategies and set(m.strategies) != {"n/a"}:
            out.append(f"- {m.label} decisions by strategy: {_shares(m.strategies)}.")
        if m.service == "kaeru":
            moved = ", ".join(f"`{k}` +{v:,.0f}" for k, v in sorted(m.counters.items()))
            out.append(
                f"- {m.label}: deferred writes reached Redis {m.drain_seconds:.1f} s after the "
                f"run (counted in its Redis figures); Kaeru counters: {moved or 'none moved'}."
            )
    return [*out, ""]


def _redis(c: Context) -> list[str]:
    out = ["## Redis work per request", ""]
    out += [
        "`INFO commandstats` deltas over each measured run divided by its requests, Kaeru's "
        "once-a-second cache refresh (measured idle) subtracted. They include the commands Lua "
        "scripts run inside Redis, so they measure Redis work, not round trips.",
        "",
        "| target | all commands/req | by name |",
        "|---|--:|---|",
    ]
    for m in c.measured:
        if m.commands is not None:
            out.append(f"| {m.label} | {sum(m.commands.values()):.2f} | {_commands(m.commands)} |")
    if c.monitor:
        requests = next(iter(c.monitor.values())).requests
        out += [
            "",
            f"What Kaeru itself sends at low load (a `MONITOR` sample of {requests} sequential "
            "requests, so nothing is batched across requests; commands MONITOR marks `lua` are "
            "counted apart; `script` is SCRIPT EXISTS, which redis-py sends before every "
            "pipeline holding a script):",
            "",
            "| target | round trips/req | sent/req | sent, by name | run inside Lua/req |",
            "|---|--:|--:|---|--:|",
        ]
        for label, s in c.monitor.items():
            sent = sum(s.client.values()) / s.requests
            inside = sum(s.scripted.values()) / s.requests
            by_name = _commands(s.per_request(s.client))
            out.append(f"| {label} | {s.round_trips:.2f} | {sent:.2f} | {by_name} | {inside:.2f} |")
    return [*out, ""]


def _fixed_rate(c: Context) -> list[str]:
    out = ["## Latency at a fixed rate: half of saturation (fixed_rate.py, open loop)", ""]
    out += [
        "After a 2 s warm-up at the same rate (discarded): latency from each request's "
        "scheduled send time (no coordinated omission), measured by the client over 256 "
        "connections; *generator lag* is how late the generator itself "
        "queued requests for sending (its own share of the latency). Server-side columns come "
        "from Kaeru's `kaeru_http_request_seconds` histogram over the same run (bucket "
        "bounds: 0.5, 1, 2, 5, 10, 25 ms …).",
        "",
        "| target | rate/s | achieved/s | p50 ms | p99 ms | p99.9 ms | max ms | generator lag "
        "p99 ms | server p99 ms | server ≤ 5 ms | server CPU / its core busy | statuses "
        "| errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for run in c.fixed:
        label, r = run.label, run.result
        lat, lag = r["latency"], r.get("generator_lateness") or {}
        bound, within = server_side(run.server_buckets)
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"
        statuses = _shares({k: int(v) for k, v in r["statuses"].items()})
        out.append(
            f"| {label} | {r['target_rps']:,.0f} | {r['achieved_rps']:,.0f} "
            f"| {_ms(lat['p50_ms'])} | {_ms(lat['p99_ms'])} | {_ms(lat['p999_ms'])} "
            f"| {_ms(lat['max_ms'])} | {_ms(lag.get('p99_ms'))} | {bound} | {within} "
            f"| {100 * run.cpu_share:.0f}% / {100 * run.core_busy:.0f}% | {statuses} | {errors} |"
        )
    out.append("")
    for run in c.fixed:
        moved = ", ".join(f"`{k}` +{v:,.0f}" for k, v in sorted(run.counters.items()))
        out.append(f"- {run.label}: Kaeru counters: {moved or 'none moved'}.")
    if c.fixed:
        out.append(f"- Percentiles by {c.fixed[0].result.get('histogram', '?')}.")
    return [*out, ""]


def _memory(c: Context) -> list[str]:
    out = ["## Redis memory per shopper", ""]
    out += [
        "Sum of `MEMORY USAGE` (exact, `SAMPLES 0`) over one shopper's keys (`SCAN MATCH "
        "u:{uid}:*`), averaged over the first 50 of 2,000 seeded shoppers with 50 distinct "
        "viewed products each.",
        "",
        "| when | all keys B/shopper | keys | profile (a, v, …) | learner (wv, wn, wk) "
        "| delivery (caps, touch) | by key kind |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for when, mem in c.memory.items():
        kinds = ", ".join(
            f"{KIND_NAMES.get(k, k)} ({k}) {v:,.0f} B, TTL {mem.ttl_days.get(k, 0):.0f} d"
            for k, v in mem.by_kind.items()
        )
        out.append(
            f"| {when} | {mem.bytes_per_shopper:,.0f} | {mem.keys_per_shopper:.1f} "
            f"| {_bytes_by_kind(mem, PROFILE_KINDS):,.0f} "
            f"| {_bytes_by_kind(mem, LEARNER_KINDS):,.0f} "
            f"| {_bytes_by_kind(mem, DELIVERY_KINDS):,.0f} | {kinds} |"
        )
    shoppers = 2000
    out += [
        "",
        f"Not in the per-shopper keys: the event stream (`ev:{{n}}`) held "
        f"{c.stream_bytes / 2**20:.1f} "
        f"MiB after seeding ({c.stream_bytes / shoppers:,.0f} B per shopper, 50 entries each; "
        f"capped by KAERU_STREAM_MAXLEN); Redis `used_memory` was {c.used_memory / 2**20:.1f} "
        f"MiB in all. Seeding took {c.seed_seconds:.1f} s, learning {c.learn_seconds:.1f} s.",
    ]
    return [*out, ""]


def _budgets(c: Context) -> list[str]:
    by = {m.label: m for m in c.measured}
    bare = next((m for m in c.measured if m.service == "bare"), None)
    pixel, ad = by.get("Kaeru /px (view)"), by.get("Kaeru /ad.json")
    out = ["## Against the DESIGN.md budgets", ""]

    def verdict(ok: bool) -> str:
        return "within" if ok else "**MISSED**"

    if pixel and bare:
        ratio = pixel.rps / bare.rps
        out.append(f"- Pixel ≥ 80% of bare aiohttp: {ratio:.0%} → {verdict(ratio >= 0.8)}")
    if pixel and pixel.round_trips is not None:
        out.append(_trips("Pixel", pixel, c.monitor.get(pixel.label), verdict))
    if ad and bare:
        ratio = ad.rps / bare.rps
        out.append(f"- Ad decision ≥ 60% of bare aiohttp: {ratio:.0%} → {verdict(ratio >= 0.6)}")
    for run in c.fixed:
        if run.label == "Kaeru /ad.json":
            r, buckets = run.result, run.server_buckets
            total = buckets.get(math.inf, 0.0)
            within = buckets.get(0.005, 0.0) / total if total else 0.0
            out.append(
                f"- Ad decision p99 ≤ 5 ms server-side at half of saturation: "
                f"{100 * within:.1f}% answered within 5 ms (client-side p99 "
                f"{_ms(r['latency']['p99_ms'])} ms) → {verdict(within >= 0.99)}"
            )
    if ad and ad.round_trips is not None:
        out.append(_trips("Ad decision", ad, c.monitor.get(ad.label), verdict))
    for when, mem in c.memory.items():
        profile = _bytes_by_kind(mem, PROFILE_KINDS)
        out.append(
            f"- ≤ 2 KiB per shopper with 50 views ({when}): profile keys {profile:,.0f} B → "
            f"{verdict(profile <= BUDGET_BYTES)}; all of the shopper's keys "
            f"{mem.bytes_per_shopper:,.0f} B → {verdict(mem.bytes_per_shopper <= BUDGET_BYTES)}"
        )
    return [*out, ""]


def _trips(
    what: str, m: Measured, sample: MonitorSample | None, verdict: Callable[[bool], str]
) -> str:
    """Round trips per request at saturation (batched) and one request at a time."""
    assert m.round_trips is not None
    line = f"- {what} ≤ 1 Redis round trip: {m.round_trips:.2f} at saturation"
    worst = m.round_trips
    if sample is not None:
        line += f", {sample.round_trips:.2f} one request at a time"
        worst = max(worst, sample.round_trips)
    if what.startswith("Ad") and sample is not None and sample.requests:
        # What DESIGN.md budgets: the reads a decision waits for. Impressions are counted
        # after the answer, in group-commit batches shared with other requests.
        before = sample.profile_reads / sample.requests
        return (
            f"{line} in all, impressions counted after the answer included; before answering: "
            f"{before:.2f} (the profile script, MONITOR sample) → {verdict(before <= 1.05)}"
        )
    return f"{line} (deferred writes included) → {verdict(worst <= 1.05)}"


def _method(c: Context) -> list[str]:
    return [
        "## Method",
        "",
        "- Each server is its own process pinned to core 1; Redis, wrk and the fixed-rate "
        "generator share core 0, so the server under test never competes with them for CPU "
        "(they compete with each other). Other processes on the machine are not controlled: "
        "see *busy before start* and *its core busy*.",
        f"- {c.load_tool} runs closed loop at saturation (a slow answer delays the next "
        "request), so its percentiles understate the tail; the fixed-rate table does not.",
        "- bare, nginx and Kaeru /px get the same requests (wrk_kaeru.lua: a random sku and a "
        "random seeded uid cookie per request, a browser User-Agent); nginx answers "
        "`empty_gif` with a constant Set-Cookie of the same length.",
        "- Round trips/req is the delta of Redis `total_reads_processed` (one socket read per "
        "command or pipeline a client sends) per request.",
        "",
    ]
