"""`kaeru serve` / `demo` on a port someone else holds: a clear message naming the port and a
non-zero exit, before anything is started. It used to hang with no message in 2 runs of 3 (a
background loop swallowed its cancellation, so the clean-up after the failed bind never ended)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adserver.delivery.market_cache import MarketCache
from adserver.runtime.embedded_redis import free_port
from adserver.runtime.waiting import pause
from adserver.store import Store, StoreLimits, connect
from tests.test_cli import kaeru_env, redis_running_in

HANG_DEADLINE_SECONDS = 30  # a run still going after this has hung


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", free_port()))
    holder.listen()
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def run_kaeru(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "adserver.cli", *args],
            env=kaeru_env(data_dir),
            capture_output=True,
            text=True,
            timeout=HANG_DEADLINE_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"kaeru {' '.join(args)} hung on a taken port: {exc.stderr!r}"
        ) from None


@pytest.mark.parametrize("attempt", range(5))
def test_serve_on_a_taken_port_exits_at_once_naming_the_port(
    tmp_path: Path, taken_port: int, attempt: int
) -> None:
    result = run_kaeru(tmp_path, "serve", "--port", str(taken_port))
    assert result.returncode == 1
    assert f"kaeru: cannot listen on 127.0.0.1:{taken_port}" in result.stderr
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started before the port was known to be ours.
    assert not redis_running_in(tmp_path)
    assert not (tmp_path / "appendonlydir").exists()


@pytest.mark.parametrize("command", [["demo"], ["serve", "--workers", "2"]])
def test_demo_and_several_workers_on_a_taken_port_exit_naming_the_port(
    tmp_path: Path, taken_port: int, command: list[str]
) -> None:
    result = run_kaeru(tmp_path, *command, "--port", str(taken_port))
    assert result.returncode == 1
    assert f"kaeru: cannot listen on 127.0.0.1:{taken_port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not redis_running_in(tmp_path)


async def test_a_pausing_loop_stops_even_when_a_library_swallowed_its_cancellation() -> None:
    """Python 3.11's `asyncio.wait_for` (redis-py sends every command through it) returns the
    result and drops the cancellation when both land in the same tick (CPython gh-86296)."""
    laps = 0

    async def loop() -> None:
        nonlocal laps
        while True:
            laps += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # what the library did: the cancellation request is still counted
            await pause(0)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert laps == 1


async def test_the_market_refresher_stops_whenever_it_is_cancelled(redis_url: str) -> None:
    """Cancelled at 40 moments of its refresh against a real Redis, it stops every time (it
    kept running in about 4 of 10 before, and the server's clean-up waited for it forever)."""
    store = Store(connect(redis_url), StoreLimits())
    cache = MarketCache(store, ["shop1", "shop2"], {"300x250"})
    try:
        for n in range(40):
            task = asyncio.create_task(cache.run(0))
            await asyncio.sleep(n * 0.0005)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=HANG_DEADLINE_SECONDS)
            assert task in done, f"refresher still running after cancel #{n}"
            assert task.cancelled()
    finally:
        await store.close()
