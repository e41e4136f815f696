"""Where Kaeru's time goes per request: py-spy samples the server while wrk saturates it.

    .venv/bin/python bench/profile.py [--duration 10] [--route px|ad.json|ad] [--top 25]

Same set-up as bench/run.py (private Redis, seeded shoppers, learnt model, Kaeru on its own
core), then, for each route, `py-spy record` of the Kaeru process during a wrk run. Prints, per
route, the functions with the largest share of samples: *self* (the function's own code) and
*inclusive* (itself plus what it calls), as percentages of all samples taken while the server
was busy. Needs `py-spy` (`pip install py-spy`, in the `bench` extra) and `wrk`.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from run import TARGETS, Bench, Target  # type: ignore[attr-defined]

ROUTES = {"px": "Kaeru /px (view)", "ad.json": "Kaeru /ad.json", "ad": "Kaeru /ad (iframe)"}
IDLE_FRAMES = ("select (selectors.py", "_run_once (asyncio/base_events.py", "run (uvloop")


def _frame_name(frame: str) -> str:
    """`func (path/to/module.py:LINE)` -> `func (module.py)`, site-packages paths shortened."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def _tool(name: str) -> str | None:
    """On PATH, or beside this Python (`.venv/bin/python bench/profile.py` finds the venv's)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def summarise(collapsed: str, top: int) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames or any(frames[-1].startswith(idle.split(" (")[0]) for idle in IDLE_FRAMES):
            continue  # the event loop waiting for work, not serving
        count = int(count_text)
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} busy samples", "", "| self % | function |", "|--:|---|"]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in self_time.most_common(top)]
    lines += ["", "| inclusive % | function |", "|--:|---|"]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def profile(bench: Bench, target: Target, duration: int, rate: int) -> tuple[str, float]:
    """py-spy's collapsed stacks during a wrk run, and the run's requests per second (lower
    than without the profiler: py-spy takes some of the server's time)."""
    pid = bench.services["kaeru"].process.pid
    out = bench.tmp / "profile.txt"
    command = [
        _tool("py-spy") or "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(duration),
    ]
    command += ["--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results: list[dict[str, object]] = []
    load = threading.Thread(target=lambda: results.append(bench.wrk(target, duration + 1)))
    load.start()
    _, err = spy.communicate(timeout=duration + 60)
    load.join()
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
    return out.read_text(), float(results[0]["rps"]) if results else 0.0  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--route", choices=sorted(ROUTES), action="append")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    for tool in ("py-spy", "wrk"):
        if not _tool(tool):
            print(f"{tool} is needed (pip install py-spy; apt-get install wrk)", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="kaeru-profile-"))
    bench = Bench(args, tmp)
    try:
        bench.start_redis()
        bench.start_kaeru()
        bench.load_catalog()
        bench.seed()
        bench.sample_ad()
        for route in args.route or ["px", "ad.json"]:
            target = next(t for t in TARGETS if t.label == ROUTES[route])
            bench.wrk(target, 2)  # warm-up
            stacks, rps = profile(bench, target, args.duration, args.rate)
            print(f"## {target.label}: {rps:,.0f} req/s under the profiler\n")
            print(summarise(stacks, args.top))
    finally:
        bench.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
