"""The `kaeru` command as an operator runs it: real processes, embedded Redis, real ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import redis

from adserver.runtime.embedded_redis import free_port
from tests.conftest import BROWSER, product_row

TOKEN = "cli-shop-token-0123456789"

# Requests come from a person's browser, not a known crawler (those are not tracked).
_opener = urllib.request.build_opener()
_opener.addheaders = list(BROWSER.items())
urllib.request.install_opener(_opener)


def kaeru_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("KAERU_")}
    env.update(KAERU_DATA_DIR=str(data_dir), KAERU_ADVERTISERS=f"shop1:{TOKEN}", **extra)
    return env


def kaeru(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adserver.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, deadline_s: float = 30
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {deadline_s}s")


@contextmanager
def running(command: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    log = Path(env["KAERU_DATA_DIR"]).with_suffix(".log")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "adserver.cli", command, "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", process, log)
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_running_in(data_dir: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", f"redis-server.*{data_dir}"], capture_output=True)
    return found.returncode == 0


def test_bad_configuration_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = kaeru("serve", env=kaeru_env(tmp_path, KAERU_LOOKBACK_DAYS="-1"))
    assert result.returncode == 2
    assert "KAERU_LOOKBACK_DAYS" in result.stderr


@pytest.mark.parametrize(
    ("command", "url", "problem"),
    [
        ("serve", "http://127.0.0.1:6379", "scheme must be one of redis://"),
        ("worker", "redis+cluster://h:1,,h:2", "list nodes as host:port"),
        ("catalog", "redis+cluster://h:1/3", "a cluster has only database 0"),
    ],
)
def test_a_bad_redis_url_flag_stops_start_up_naming_the_flag(
    tmp_path: Path, command: str, url: str, problem: str
) -> None:
    args = [command]
    if command == "catalog":
        args += ["import", str(tmp_path / "feed.csv"), "--advertiser", "shop1"]
    result = kaeru(*args, "--redis-url", url, env=kaeru_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"--redis-url: {problem}" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_log_line_shows_the_redis_password(tmp_path: Path, redis_url: str) -> None:
    password = "s3cret-" + os.urandom(8).hex()
    base = redis_url.removeprefix("redis://")
    with redis.Redis.from_url(redis_url) as admin:
        admin.acl_setuser(
            "kaeru-cli", enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
        )
        try:
            log = tmp_path / "worker.log"
            env = kaeru_env(tmp_path / "data")
            command = [sys.executable, "-m", "adserver.cli", "worker", "--name", "quiet"]
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [*command, "--redis-url", f"redis://kaeru-cli:{password}@{base}"],
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            try:
                deadline = time.monotonic() + 30
                while "learning from shards" not in log.read_text():  # connected: it works
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            finally:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=15) == 0, log.read_text()
        finally:
            admin.acl_deluser("kaeru-cli")
    text = log.read_text()
    assert f"learning from redis://kaeru-cli:***@{base}" in text
    assert password not in text


def test_serve_runs_on_embedded_redis_with_aof_and_stops_it(tmp_path: Path) -> None:
    with running("serve", kaeru_env(tmp_path)) as base:
        assert get(base + "/healthz")[0] == 200
        assert redis_running_in(tmp_path)
        assert get(base + "/px?a=shop1&e=view&i=sku-1")[0] == 200
    assert not redis_running_in(tmp_path)
    assert (tmp_path / "secret").exists()
    assert any((tmp_path / "appendonlydir").iterdir())


def test_catalog_import_then_serve_shows_the_products(tmp_path: Path) -> None:
    feed = tmp_path / "feed.ndjson"
    rows = [product_row("sku-1"), product_row("bad", price="?")]
    feed.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    env = kaeru_env(tmp_path / "data")
    result = kaeru("catalog", "import", str(feed), "--advertiser", "shop1", env=env)
    assert result.returncode == 0, result.stderr
    assert "1 products accepted, 1 rejected" in result.stdout
    assert "row 2 (id 'bad')" in result.stderr
    assert not redis_running_in(tmp_path / "data")
    with running("serve", env) as base:
        request = urllib.request.Request(
            base + "/api/v1/advertisers/shop1/products",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert orjson.loads(response.read())["count"] == 1


def test_catalog_import_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = kaeru(
        "catalog",
        "import",
        str(tmp_path / "nope.csv"),
        "--advertiser",
        "shop1",
        env=kaeru_env(tmp_path),
    )
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_demo_serves_shop_partner_and_personalised_ads(tmp_path: Path) -> None:
    with running("demo", kaeru_env(tmp_path)) as base:
        assert get(base + "/demo/")[0] == 200
        assert get(base + "/demo/shop/")[0] == 200
        assert get(base + "/demo/partner/")[0] == 200
        with urllib.request.urlopen(base + "/px?a=demo-shop&e=view&i=sku-105") as response:
            uid = response.headers["Set-Cookie"].split(";")[0]  # (urllib drops Secure on http)
        request = urllib.request.Request(
            base + "/ad.json?pub=demo-news&size=300x250", headers={"Cookie": uid}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            ad = orjson.loads(response.read())
        assert ad["products"][0]["id"] == "sku-105"
        assert ad["products"][0]["strategy"] == "recent"


def test_demo_learns_related_items_in_process(tmp_path: Path) -> None:
    def view(base: str, sku: str, cookie: str | None = None) -> str:
        request = urllib.request.Request(
            f"{base}/px?a=demo-shop&e=view&i={sku}", headers={"Cookie": cookie} if cookie else {}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return cookie or response.headers["Set-Cookie"].split(";")[0]

    with running("demo", kaeru_env(tmp_path)) as base:
        first = view(base, "sku-101")
        view(base, "sku-104", first)
        fresh = view(base, "sku-101")
        deadline = time.monotonic() + 20
        strategies: list[str] = []
        while time.monotonic() < deadline and "related" not in strategies:
            request = urllib.request.Request(
                base + "/ad.json?pub=demo-news&size=728x90", headers={"Cookie": fresh}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                products = orjson.loads(response.read())["products"]
            strategies = [p["strategy"] for p in products]
            time.sleep(0.2)
        assert products[0]["id"] == "sku-101"
        assert ("sku-104", "related") in [(p["id"], p["strategy"]) for p in products]


def test_serve_with_workers_shares_the_port_and_the_metrics(tmp_path: Path) -> None:
    port = free_port()
    env = kaeru_env(tmp_path)
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "adserver.cli", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", process, log)
        children = subprocess.run(
            ["pgrep", "-P", str(process.pid), "-f", "spawn_main"], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 2, log.read_text()
        for n in range(30):  # spread over both processes by the kernel
            assert get(f"{base}/px?a=shop1&e=view&i=sku-{n}")[0] == 200
        metrics = get(base + "/metrics")[1].decode()
        assert 'kaeru_events_stored_total{event="view"} 30.0' in metrics
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert not redis_running_in(tmp_path)


def test_sigterm_drains_in_flight_events_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    import concurrent.futures

    env = kaeru_env(tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "adserver.cli", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/readyz", process, log)

    def hit(n: int) -> bool:
        try:
            return get(f"{base}/px?a=shop1&e=view&i=sku-{n}")[0] == 200
        except OSError:
            return False  # refused once shutting down: not acknowledged, may be lost

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = [pool.submit(hit, n) for n in range(200)]
        while sum(a.done() for a in answers) < 50:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        acknowledged = sum(a.result() for a in answers)
    assert process.wait(timeout=30) == 0
    assert not redis_running_in(tmp_path)

    # Start again on the same data dir: Redis reloads its AOF.
    with running("serve", env) as base_again:
        import asyncio

        from tests.conftest import stream_events

        # through the store, whatever the stream's layout (shards)
        stored = len(asyncio.run(stream_events(f"unix://{tmp_path / 'redis.sock'}")))
        assert get(base_again + "/healthz")[0] == 200
    assert acknowledged >= 50
    assert stored >= acknowledged


def test_value_refresh_writes_each_advertisers_standing(tmp_path: Path, redis_url: str) -> None:
    from adserver.core.value_record import ValueRecord, encode_record
    from adserver.core.value_segments import decode_standing
    from adserver.store import keys

    today = int(time.time() // 86400)
    with redis.Redis.from_url(redis_url) as client:
        for n in range(60):
            uid = f"c{n:021d}"
            record = ValueRecord(today - 100 - n, today - n, 1 + n % 3, 1000 + 100 * n)
            client.hset(keys.user_facts(uid, "shop1"), keys.VALUE_FIELD, encode_record(record))
            client.zadd(keys.value_buyers("shop1"), {uid: time.time() * 1000})
        result = kaeru("value-refresh", env=kaeru_env(tmp_path, REDIS_URL=redis_url))
        assert result.returncode == 0, result.stderr
        assert "shop1: 60 of 60 buyers sampled" in result.stdout
        assert "models fitted" in result.stdout
        standing = decode_standing(client.get(keys.value_standing("shop1")) or b"")
        assert standing.sampled == 60 and standing.day == today
