"""A/B of two Kaeru trees on bench/run.py's set-up, interleaved, ratios from the same run.

    .venv/bin/python bench/ab.py --old /tmp/old-tree [--rounds 3] [--duration 4] [--route ad.json]

`--old` is another checkout of Kaeru (e.g. `git archive main | tar -x -C /tmp/old-tree`); the
new one is this tree. One private Redis (core 0) with bench/run.py's catalog, 2,000 seeded
shoppers and learnt model; the bare aiohttp handler and both Kaerus on core 1 (only the one
under load is busy). Each round runs wrk (core 0) against bare, old and new in turn, per
route. Prints per route and tree the mean req/s, the mean ratio to bare of the same round and
the server's CPU time per request (µs: the least sensitive to other processes on the machine),
and new/old of each. Stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from run import TARGETS, TOKEN, Bench, Target, _on_signal  # type: ignore[attr-defined]

from redis_stats import RedisCounters
from seed import ADVERTISER, upload_catalog

# `python -m adserver.cli` from a given tree: the venv's editable install of this tree hooks
# the imports of adserver/pixel/creatives ahead of sys.path (PYTHONPATH would not win), so
# its finder is dropped first.
BOOT = """
import runpy, sys
sys.meta_path[:] = [
    f for f in sys.meta_path
    if "__editable__" not in (getattr(f, "__module__", "") or "") + type(f).__module__
]
sys.path.insert(0, sys.argv[1])
sys.argv = ["adserver.cli", *sys.argv[2:]]
runpy.run_module("adserver.cli", run_name="__main__", alter_sys=True)
"""
ROUTES = {"px": "Kaeru /px (view)", "ad.json": "Kaeru /ad.json", "ad": "Kaeru /ad (iframe)"}


def start_kaeru(bench: Bench, name: str, tree: Path) -> None:
    from adserver.runtime.embedded_redis import free_port

    assert bench.redis_server is not None
    port = free_port()
    env = {
        **os.environ,
        "KAERU_ADVERTISERS": f"{ADVERTISER}:{TOKEN}",
        "KAERU_DATA_DIR": str(bench.tmp / name),
        "KAERU_SECRET": secrets.token_urlsafe(32),
        "KAERU_WORKER": "0",
    }
    env.pop("REDIS_URL", None)
    command = [sys.executable, "-c", BOOT, str(tree), "serve", "--port", str(port)]
    command += ["--redis-url", bench.redis_server.url]
    bench._start(f"kaeru-{name}", command, port, env)
    bench.services[name] = bench.services.pop(f"kaeru-{name}")


def measure(bench: Bench, name: str, target: Target, duration: int) -> tuple[float, ...]:
    """req/s, server CPU µs, Redis CPU µs and Redis commands (INFO commandstats, those run
    inside scripts included) per request of one wrk run against service `name`."""
    service = bench.services[name]
    cpu, redis_before = service.cpu_seconds(), RedisCounters.read(bench.redis)
    result = bench.wrk(Target(target.label, name, target.path, target.mode), duration)
    time.sleep(0.3)  # the impressions counted after the answers (group commit) land
    used, redis_after = service.cpu_seconds() - cpu, RedisCounters.read(bench.redis)
    n = max(result["requests"], 1)
    commands = sum(redis_after.calls.values()) - sum(redis_before.calls.values())
    redis_cpu = redis_after.cpu_seconds - redis_before.cpu_seconds
    return result["rps"], used / n * 1e6, redis_cpu / n * 1e6, commands / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--route", choices=sorted(ROUTES), action="append")
    args = parser.parse_args()
    routes = args.route or ["px", "ad.json"]
    signal.signal(signal.SIGTERM, _on_signal)
    new_tree = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="kaeru-ab-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            bench.start_redis()
            bench.start_bare()
            start_kaeru(bench, "old", args.old.resolve())
            start_kaeru(bench, "new", new_tree)
            bench.services["kaeru"] = bench.services["new"]
            for name in ("old", "new"):
                upload_catalog(f"http://127.0.0.1:{bench.services[name].port}", TOKEN)
            bench.seed()
            targets = {t.label: t for t in TARGETS}
            rows: dict[tuple[str, str], list[tuple[float, ...]]] = {}
            for round_ in range(args.rounds):
                for route in routes:
                    target = targets[ROUTES[route]]
                    bare = measure(bench, "bare", targets["bare aiohttp GIF"], args.duration)[0]
                    order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
                    for name in order:
                        rps, cpu, rcpu, cmds = measure(bench, name, target, args.duration)
                        rows.setdefault((route, name), []).append(
                            (rps, rps / bare, cpu, rcpu, cmds)
                        )
                        print(
                            f"round {round_} {route} {name}: {rps:,.0f} req/s, "
                            f"{rps / bare:.3f} of bare, {cpu:.0f} µs CPU/req, "
                            f"Redis {rcpu:.0f} µs, {cmds:.2f} cmds/req",
                            file=sys.stderr,
                        )
            print(
                "| route | tree | req/s | vs bare (same round) | server CPU µs/req "
                "| Redis CPU µs/req | Redis cmds/req |"
            )
            print("|---|---|--:|--:|--:|--:|--:|")
            for route in routes:
                means = {}
                for name in ("old", "new"):
                    runs = rows[(route, name)]
                    means[name] = [statistics.mean(r[i] for r in runs) for i in range(5)]
                    rps, ratio, cpu, rcpu, cmds = means[name]
                    print(
                        f"| {route} | {name} | {rps:,.0f} | {ratio:.3f} | {cpu:.0f} | {rcpu:.0f} "
                        f"| {cmds:.2f} |"
                    )
                o, n = means["old"], means["new"]
                cells = " | ".join(f"{n[i] / o[i]:.3f}" if o[i] else "—" for i in range(5))
                print(f"| {route} | new/old | {cells} |")
        finally:
            bench.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
