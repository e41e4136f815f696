"""Smoke test of the load test: the locust shopper journey, headless for a few seconds, against a
real `kaeru demo` (its own embedded Redis in a temporary data dir) must run without a failure.

Locust is an optional extra (`pip install -e '.[load]'`). It is only ever run in subprocesses:
importing it here would let gevent monkey-patch the test process.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
import redis

from adserver.runtime.embedded_redis import free_port

if importlib.util.find_spec("locust") is None:
    pytest.skip(
        "locust is not installed (pip install -e '.[load]'); load test smoke skipped",
        allow_module_level=True,
    )

LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadtests" / "locustfile.py"
READY_TIMEOUT_SECONDS = 30.0
LOCUST_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Kaeru or Redis configuration: the demo must only ever use
    the private Redis it starts itself."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAERU_", "LOCUST_")) and k != "REDIS_URL"
    }
    env.update(extra)
    return env


def _wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"kaeru demo exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    pytest.fail(f"kaeru demo not ready within {READY_TIMEOUT_SECONDS}s:\n{log.read_text()}")


def _stop(server: subprocess.Popen[bytes], data_dir: Path) -> None:
    """SIGINT (Ctrl-C: Kaeru stops its embedded Redis), then a kill after a grace period; and if
    the Redis it started is still answering in its data dir, shut that one down too."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    socket_path = data_dir / "redis.sock"
    if socket_path.exists():
        client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2)
        with closing(client):
            try:
                client.shutdown(nosave=True)
            except (redis.RedisError, OSError):
                pass  # already gone


@contextmanager
def _demo_server(log: Path) -> Iterator[str]:
    """A `kaeru demo` on a free loopback port; yields its base URL."""
    # A short data dir of our own: Redis listens on a unix socket in it (108-byte path limit).
    with tempfile.TemporaryDirectory(prefix="kaeru-lt-") as tmp:
        data_dir = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "adserver.cli", "demo", "--host", "127.0.0.1"]
        with log.open("wb") as output:
            server = subprocess.Popen(
                [*command, "--port", str(port)],
                env=_clean_env(KAERU_DATA_DIR=str(data_dir)),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_ready(url, server, log)
            yield url
        finally:
            _stop(server, data_dir)


def _aggregated(stats_csv: Path) -> dict[str, str]:
    with stats_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["Name"] == "Aggregated":
            return row
    raise AssertionError(f"no Aggregated row in {stats_csv}: {rows}")


def test_shopper_journey_runs_without_failures(tmp_path: Path) -> None:
    with _demo_server(tmp_path / "server.log") as url:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--users",
                "5",
                "--spawn-rate",
                "5",
                "--run-time",
                "3s",
                "--host",
                url,
                "--only-summary",
                "--csv",
                str(tmp_path / "run"),
            ],
            cwd=tmp_path,  # no stray locust.conf is picked up
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=LOCUST_TIMEOUT_SECONDS,
        )
    output = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 0, output

    total = _aggregated(tmp_path / "run_stats.csv")
    assert int(total["Request Count"]) > 0, output
    assert int(total["Failure Count"]) == 0, output
    with (tmp_path / "run_exceptions.csv").open(newline="") as handle:
        exceptions = list(csv.DictReader(handle))
    assert exceptions == [], output
