"""Instructions per `/px` request, counted by callgrind: a figure other work on the machine
does not move (issue 15: the pixel against the bare aiohttp handler).

    .venv/bin/python bench/px_instructions.py [--old /tmp/base] [--requests 2000]

Starts a private Redis, the bare aiohttp handler (bench/bare_server.py) and Kaeru (this tree,
and `--old` when given, e.g. `git archive main | tar -x -C /tmp/base`) each under
`valgrind --tool=callgrind --instr-atstart=no`, loads bench/run.py's catalog, sends
`--warmup` requests, then switches counting on, sends `--requests` view pixels (random sku of
the catalog, random uid cookie, browser User-Agent: what wrk_kaeru.lua sends) over
`--connections` keep-alive connections and dumps the count: instructions per request, and
each Kaeru's ratio to bare (the instructions bare spends per request / Kaeru's). Everything on
loopback; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ab import BOOT  # type: ignore[attr-defined]
from adserver.runtime.embedded_redis import EmbeddedRedis, free_port
from run import TOKEN, USER_AGENT  # type: ignore[attr-defined]

from seed import ADVERTISER, CATALOG_SIZE, upload_catalog

BENCH = Path(__file__).resolve().parent
READY_SECONDS = 180.0
TOTALS = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


class Traced:
    """One server process under callgrind."""

    def __init__(self, name: str, command: list[str], tmp: Path, env: dict[str, str]) -> None:
        self.name, self.port = name, int(command[-1]) if name == "bare" else free_port()
        if name != "bare":
            command = [*command, "--port", str(self.port)]
        self.out = tmp / f"callgrind.{name}"
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        valgrind += [f"--callgrind-out-file={self.out}.%p"]
        self.log = (tmp / f"{name}.log").open("wb")
        self.process = subprocess.Popen(
            [*valgrind, *command], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not answer within {READY_SECONDS}s")

    def control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.process.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def counted(self) -> int:
        """Instructions counted since the last zeroing (dumps them)."""
        for old in self.out.parent.glob(f"{self.out.name}.*"):
            old.unlink()
        self.control("--dump")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for dump in self.out.parent.glob(f"{self.out.name}.*"):
                found = TOTALS.search(dump.read_bytes())
                if found:
                    return int(found.group(1))
            time.sleep(0.2)
        raise RuntimeError(f"no callgrind dump from {self.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


async def _one_connection(
    port: int, count: int, rng: random.Random, uids: list[str], advertiser: str
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ok = 0
    try:
        for _ in range(count):
            path = f"/px?a={advertiser}&e=view&i=sku-{rng.randint(1, CATALOG_SIZE)}"
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"User-Agent: {USER_AGENT}\r\nCookie: uid={rng.choice(uids)}\r\n\r\n"
            )
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            ok += head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    return ok


def send(
    port: int,
    requests: int,
    connections: int,
    seed: int,
    uids: list[str],
    advertiser: str = ADVERTISER,
) -> int:
    async def all_of_them() -> int:
        each = requests // connections
        rngs = [random.Random(seed * 1000 + k) for k in range(connections)]
        done = await asyncio.gather(
            *(_one_connection(port, each, r, uids, advertiser) for r in rngs)
        )
        return sum(done)

    return asyncio.run(all_of_them())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, help="another Kaeru tree to count beside this one")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--keep", type=Path, help="copy the callgrind dumps here (for callgrind_annotate)"
    )
    parser.add_argument(
        "--advertiser",
        default=ADVERTISER,
        help="the pixels' a= (another than the bench's: refused before any Redis work)",
    )
    args = parser.parse_args()
    trees = {"new": BENCH.parent} | ({"old": args.old.resolve()} if args.old else {})
    uids = [secrets.token_urlsafe(16) for _ in range(200)]
    traced: list[Traced] = []
    with tempfile.TemporaryDirectory(prefix="kaeru-pxi-") as where:
        tmp = Path(where)
        redis_server = EmbeddedRedis(tmp / "redis", persistent=False)
        url = redis_server.start()
        try:
            bare = Traced(
                "bare",
                [sys.executable, str(BENCH / "bare_server.py"), str(free_port())],
                tmp,
                dict(os.environ),
            )
            traced.append(bare)
            for name, tree in trees.items():
                env = {
                    **os.environ,
                    "KAERU_ADVERTISERS": f"{ADVERTISER}:{TOKEN}",
                    "KAERU_DATA_DIR": str(tmp / name),
                    "KAERU_SECRET": secrets.token_urlsafe(32),
                    "KAERU_WORKER": "0",
                }
                env.pop("REDIS_URL", None)
                command = [sys.executable, "-c", BOOT, str(tree), "serve", "--redis-url", url]
                traced.append(Traced(name, command, tmp, env))
            bare.wait_ready("/")
            for server in traced[1:]:
                server.wait_ready("/healthz")
            upload_catalog(f"http://127.0.0.1:{traced[1].port}", TOKEN)
            time.sleep(3)  # every Kaeru's catalog cache reloads
            per_request: dict[str, float] = {}
            for server in traced:
                send(server.port, args.warmup, args.connections, 1, uids)
                server.control("--zero")
                server.control("--instr=on")
                ok = send(server.port, args.requests, args.connections, 2, uids, args.advertiser)
                per_request[server.name] = server.counted() / args.requests
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    for dump in tmp.glob(f"callgrind.{server.name}.*"):
                        shutil.copy(dump, args.keep / f"callgrind.{server.name}")
                server.control("--instr=off")
                print(f"{server.name}: {ok}/{args.requests} answered 200", file=sys.stderr)
        finally:
            for server in traced:
                server.stop()
            redis_server.stop()
    bare_cost = per_request["bare"]
    print("| server | instructions per /px request | bare / server |")
    print("|---|--:|--:|")
    for name, cost in per_request.items():
        print(f"| {name} | {cost:,.0f} | {bare_cost / cost:.3f} |")
    if "old" in per_request:
        print(f"\nnew / old: {per_request['new'] / per_request['old']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
