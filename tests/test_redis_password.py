"""REDIS_PASSWORD: the password of the Redis in REDIS_URL kept apart from the URL, so that
docker-compose's env file names it once for Redis's `requirepass` and for Kaeru."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from adserver.config.redis_url import redact
from adserver.config.settings import Settings, SettingsError
from adserver.runtime.embedded_redis import find_redis_server, free_port

PASSWORD = "s3cret/with:odd@chars&more"


@pytest.fixture(scope="module")
def guarded_redis() -> Iterator[str]:
    """A real redis-server that answers only with PASSWORD; yields its URL without it."""
    port = free_port()
    process = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL,
    )
    try:
        with redis.Redis(port=port, password=PASSWORD) as client:
            deadline = time.monotonic() + 10
            while not _answers(client):
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_redis_password_reaches_a_redis_that_requires_it(guarded_redis: str) -> None:
    settings = Settings.from_env({"REDIS_URL": guarded_redis, "REDIS_PASSWORD": PASSWORD})
    assert settings.redis_url is not None
    with redis.Redis.from_url(settings.redis_url) as client:
        assert client.ping()
    with redis.Redis.from_url(guarded_redis) as client, pytest.raises(redis.AuthenticationError):
        client.ping()
    assert PASSWORD not in redact(settings.redis_url)


def test_the_redis_url_flag_gets_the_password_too(guarded_redis: str) -> None:
    settings = Settings.from_env({"REDIS_PASSWORD": PASSWORD}, {"redis_url": guarded_redis})
    assert settings.redis_url is not None
    with redis.Redis.from_url(settings.redis_url) as client:
        assert client.ping()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://redis:6379/0", "redis://:pw%2F1@redis:6379/0"),
        ("redis://kaeru@redis:6379/0", "redis://kaeru:pw%2F1@redis:6379/0"),
        ("redis+cluster://a:1,b:2", "redis+cluster://:pw%2F1@a:1,b:2"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1&password=pw%2F1"),
    ],
)
def test_the_password_goes_where_each_url_form_takes_it(url: str, expected: str) -> None:
    assert Settings.from_env({"REDIS_URL": url, "REDIS_PASSWORD": "pw/1"}).redis_url == expected


def test_a_password_in_both_places_is_refused() -> None:
    with pytest.raises(SettingsError, match="REDIS_PASSWORD: REDIS_URL has a password of its own"):
        Settings.from_env({"REDIS_URL": "redis://:a@redis:6379/0", "REDIS_PASSWORD": "b"})


def test_without_redis_url_the_password_is_unused(tmp_path: Path) -> None:
    assert Settings.from_env({"REDIS_PASSWORD": "x"}).redis_url is None
