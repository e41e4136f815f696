"""What an operator deploys from: docker-compose.yml, the Dockerfile, kaeru.env.example and the
LICENSE. Docker does not run here, so the files are checked as Compose reads them, and the
parts that run (Redis's start-up script and health check, the image's HEALTHCHECK) are run
against a real redis-server and a real `kaeru serve`."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from adserver.runtime.embedded_redis import find_redis_server, free_port
from tests.test_cli import kaeru_env, running

ROOT = Path(__file__).resolve().parent.parent
# sha256 of the Apache License 2.0 as apache.org publishes it (LICENSE-2.0.txt)
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
WIRED_BY_COMPOSE = {"REDIS_URL", "KAERU_DATA_DIR", "KAERU_HOST", "KAERU_PORT"}
REQUIRED = ("KAERU_ADVERTISERS", "KAERU_OPERATOR_TOKEN", "REDIS_PASSWORD")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def documented_settings() -> set[str]:
    """Variables in the first column of the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def env_example() -> dict[str, str]:
    """NAME -> value of every `NAME=value` line of kaeru.env.example, commented or not."""
    found = {}
    for line in (ROOT / "kaeru.env.example").read_text().splitlines():
        if match := re.match(r"^(?:# )?([A-Z][A-Z0-9_]+)=(.*)$", line):
            found[match[1]] = match[2]
    return found


def shell(text: str) -> str:
    """A Compose string as the container's shell gets it (`$$` is Compose's escaped `$`)."""
    return text.replace("$$", "$")


# -- LICENSE --------------------------------------------------------------------------------


def test_the_license_file_is_the_apache_2_text_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256


# -- docker-compose.yml ---------------------------------------------------------------------


def test_redis_needs_a_password_and_is_reachable_only_from_kaeru(compose: dict[str, Any]) -> None:
    service = compose["services"]["redis"]
    assert "ports" not in service and "expose" not in service
    assert "kaeru.env" in _list(service["env_file"])
    script = " ".join(service["command"])
    assert "requirepass $$REDIS_PASSWORD" in script
    assert "--requirepass" not in script  # never on a command line (the process list)
    for network in service["networks"]:
        assert compose["networks"][network]["internal"] is True
        users = [name for name, s in compose["services"].items() if network in s["networks"]]
        assert sorted(users) == ["kaeru", "redis"]


def test_kaeru_is_published_on_loopback_only_with_every_setting_from_the_env_file(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["kaeru"]
    assert service["ports"] == ["127.0.0.1:8080:8080"]
    assert "kaeru.env" in _list(service["env_file"])
    assert set(service["environment"]) == WIRED_BY_COMPOSE  # everything else: kaeru.env
    container_port = service["ports"][0].rsplit(":", 1)[1]
    assert service["environment"]["KAERU_PORT"] == container_port
    assert not service["environment"]["REDIS_URL"].partition("@")[1]  # no password here
    assert service["stop_grace_period"] == "15s"


def test_the_trusted_proxy_of_the_example_is_the_gateway_of_kaerus_published_network(
    compose: dict[str, Any],
) -> None:
    published = [n for n in compose["services"]["kaeru"]["networks"] if n != "store"]
    assert len(published) == 1
    gateway = compose["networks"][published[0]]["ipam"]["config"][0]["gateway"]
    assert env_example()["KAERU_TRUSTED_PROXIES"] == gateway


def test_the_redis_service_script_starts_a_redis_that_requires_the_password(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """The service's own command and health check, run by sh against a real redis-server (a
    stand-in for the image's docker-entrypoint.sh adds a free port and a scratch dir)."""
    service = compose["services"]["redis"]
    assert service["command"][:2] == ["sh", "-c"]
    if not Path(_redis_cli()).exists():
        pytest.skip("no redis-cli beside redis-server")
    port = free_port()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "redis-server", f'exec {find_redis_server()} "$@"')
    _script(bin_dir / "docker-entrypoint.sh", f'exec "$@" --port {port} --dir {tmp_path}')
    _script(bin_dir / "redis-cli", f'exec {_redis_cli()} -p {port} "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "REDIS_PASSWORD": "pw123"}
    health = shell(service["healthcheck"]["test"][1])
    assert service["healthcheck"]["test"][0] == "CMD-SHELL"
    server = subprocess.Popen(["sh", "-c", shell(service["command"][2])], env=env)
    try:
        _poll(lambda: subprocess.run(["sh", "-c", health], env=env).returncode == 0)
        with redis.Redis(port=port) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with redis.Redis(port=port, password="pw123") as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        wrong = {**env, "REDIS_PASSWORD": "nope"}
        assert subprocess.run(["sh", "-c", health], env=wrong).returncode != 0
    finally:
        server.terminate()
        server.wait(timeout=10)
    unset = {k: v for k, v in env.items() if k != "REDIS_PASSWORD"}
    refused = subprocess.run(
        ["sh", "-c", shell(service["command"][2])], env=unset, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "set REDIS_PASSWORD in kaeru.env" in refused.stderr


# -- kaeru.env.example ----------------------------------------------------------------------


def test_the_env_example_lists_every_documented_setting() -> None:
    listed = env_example()
    missing = sorted(documented_settings() - listed.keys())
    assert not missing, f"add to kaeru.env.example (documented in the README): {missing}"
    undocumented = sorted(listed.keys() - documented_settings())
    assert not undocumented, f"not in the README's configuration table: {undocumented}"


def test_the_env_example_leaves_every_secret_for_the_operator_to_fill_in() -> None:
    listed = env_example()
    for name in REQUIRED:
        assert listed[name] == "", name  # a placeholder would be accepted as a real token
    assert "# KAERU_SECRET=" in (ROOT / "kaeru.env.example").read_text()


def test_the_env_file_stays_out_of_git_and_the_image() -> None:
    assert "kaeru.env" in (ROOT / ".gitignore").read_text().splitlines()
    assert "kaeru.env" in (ROOT / ".dockerignore").read_text().splitlines()


# -- Dockerfile -----------------------------------------------------------------------------


def test_the_image_listens_and_checks_health_where_kaeru_port_says() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    healthcheck = dockerfile.split("\nHEALTHCHECK ", 1)[1].split("\n\n", 1)[0]
    assert "8080" not in healthcheck
    assert '"python", "-m", "adserver.healthcheck"' in healthcheck
    assert 'CMD ["serve"]' in dockerfile  # flags would override KAERU_HOST / KAERU_PORT
    assert "\nUSER kaeru\n" in dockerfile


def test_the_healthcheck_asks_the_configured_port(tmp_path: Path) -> None:
    with running("serve", kaeru_env(tmp_path / "data")) as base:
        port = base.rsplit(":", 1)[1]
        assert _healthcheck(KAERU_PORT=port, KAERU_HOST="0.0.0.0").returncode == 0
        elsewhere = _healthcheck(KAERU_PORT=str(free_port()))
    assert elsewhere.returncode == 1
    assert "/healthz" in elsewhere.stderr


# -- helpers --------------------------------------------------------------------------------


def _healthcheck(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAERU_")}
    return subprocess.run(
        [sys.executable, "-m", "adserver.healthcheck"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _redis_cli() -> str:
    return str(Path(find_redis_server()).with_name("redis-cli"))


def _poll(done: Any, seconds: float = 10) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "redis-server did not become healthy"
        time.sleep(0.05)
