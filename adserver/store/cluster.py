"""Redis Cluster: redis-py's asyncio `RedisCluster`, adapted so the store's code runs unchanged.

Every per-user key carries the `{uid}` hash tag and every advertiser model key the
`{advertiser}` tag, so each script and each multi-key command stays within one slot; a
pipeline may span nodes (redis-py sends one batch per node, in parallel). What redis-py's
cluster client (8.1) lacks or gets wrong is closed here:

- Scripts on pipelines: `await script(keys, args, client=pipe)` queues an EVALSHA. redis-py
  blocks EVALSHA on cluster pipelines (yet routes it by its KEYS like any keyed command), and
  its `ClusterPipeline.__await__` re-initialises the pipeline, which empties its queue: what
  was queued would silently vanish. Here EVALSHA queues and awaiting a pipeline returns it,
  as with a single-node pipeline.
- NOSCRIPT: a single-node pipeline loads its scripts before running (SCRIPT EXISTS / LOAD); a
  cluster pipeline does not, and every node has its own script cache (empty on a new node,
  and on a replica promoted by a failover: Redis 7 does not replicate it). Here a pipeline
  whose EVALSHA gets NOSCRIPT loads the script on every master and runs those calls again.
- Errors: RedisClusterException (no node reachable, a slot without master) is no RedisError,
  so it would slip past every `except RedisError` that degrades gracefully; it becomes
  `ClusterClientError`, a RedisError. And a connection that a topology refresh closed under a
  command (redis-py closes every connection of the client, in use or not) fails with a
  retryable ConnectionError instead of an AttributeError.
- Connections: at most 1000 per node rather than 100 (beyond, redis-py fails at once).

MULTI/EXEC across slots is impossible on a cluster (and redis-py runs each queued command of
a cluster transaction in a thread of its own): the store uses no cluster transactions; see
`base.write_in_order` for the writes that must stay ordered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import ClusterPipeline as _ClusterPipeline
from redis.asyncio.cluster import RedisCluster as _RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from adserver.config.redis_url import parse_cluster_url
from adserver.store.base import raise_first_error

PING_SECONDS = 1.0  # how long `ping_primaries` waits for each master

# Per node: plenty for a busy server process. redis-py's default (100) fails at once with
# MaxConnectionsError when exceeded, where a single-node pool just opens another connection.
MAX_CONNECTIONS_PER_NODE = 1000

_SCRIPTS: dict[str, bytes | str] = {}  # sha1 -> source of every script registered


class _GuardedSend:
    """A connection another task closed while this one was about to write (redis-py closes
    every connection of a node, in use or not, when it refreshes the cluster's topology)
    fails with ConnectionError, which the cluster client retries, instead of AttributeError
    on the vanished socket writer, which would escape every handler as a 5xx."""

    _writer: Any

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        if self._writer is None:
            raise RedisConnectionError("connection closed by a cluster topology refresh")
        await super()._send_packed_command(command)  # type: ignore[misc]


class _Connection(_GuardedSend, Connection):
    pass


class _SSLConnection(_GuardedSend, SSLConnection):
    pass


class ClusterClientError(RedisError):
    """redis-py raises RedisClusterException (no RedisError) when no node can be reached or a
    slot has no master; it is turned into this RedisError, so callers degrade on it as on any
    Redis failure (the pixel buffers, ads fall back) instead of failing with a 5xx."""


class RedisCluster(_RedisCluster):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        guarded = _SSLConnection if kwargs.get("ssl") else _Connection
        self.connection_kwargs["connection_class"] = guarded  # nodes found from now on
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = guarded

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise ClusterClientError(str(exc)) from exc

    async def ping_primaries(self) -> bool:
        """Whether every master answers (each serves a share of the slots, so of the shoppers:
        one away is a service that is not ready, where PING alone asks the default node only).
        A master that does not answer may have been replaced by its replica (a failover the
        client has not seen: it learns of one only when a command fails): then the topology is
        read again and the masters it names now are asked once more, so that an idle process
        (a readiness probe takes its traffic away) does not stay unready for ever."""
        try:
            if self._initialize:
                await self.initialize()
            failed = await self._unanswered()
            if failed:
                await self.nodes_manager.initialize(last_failed_node_name=failed[0])
                failed = await self._unanswered()
        except (RedisError, RedisClusterException, OSError):
            return False
        return not failed and bool(self.get_primaries())

    async def _unanswered(self) -> list[str]:
        """The masters (by name) that did not answer PING within PING_SECONDS, asked at once."""

        async def answers(node: ClusterNode) -> bool:
            try:
                reply = self.execute_command("PING", target_nodes=node)  # no retries: one node
                return bool(await asyncio.wait_for(reply, PING_SECONDS))
            except (RedisError, RedisClusterException, OSError, TimeoutError):
                return False

        primaries = self.get_primaries()
        answered = await asyncio.gather(*(answers(node) for node in primaries))
        return [node.name for node, ok in zip(primaries, answered, strict=True) if not ok]

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return ClusterPipeline(self, transaction)  # type: ignore[abstract]

    def register_script(self, script: Any) -> AsyncScript:  # type: ignore[override]
        registered = AsyncScript(self, script)
        _SCRIPTS[registered.sha] = script
        return registered


class ClusterPipeline(_ClusterPipeline):
    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> ClusterPipeline:
        """Blocked on cluster pipelines by redis-py, yet routed like any keyed command (by its
        KEYS, which share one slot in every Kaeru script)."""
        self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        return self

    def __await__(self) -> Generator[Any, None, ClusterPipeline]:
        return self._ready().__await__()

    async def _ready(self) -> ClusterPipeline:
        if self.cluster_client._initialize:
            await self.cluster_client.initialize()
        return self

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            if self._transaction:
                return await super().execute(raise_on_error, allow_redirections)
            return await self._execute_loading_scripts(raise_on_error, allow_redirections)
        except RedisClusterException as exc:
            raise ClusterClientError(str(exc)) from exc

    async def _execute_loading_scripts(
        self, raise_on_error: bool, allow_redirections: bool
    ) -> list[Any]:
        strategy: Any = self._execution_strategy  # its queue, kept to redo NOSCRIPT calls
        queued = [(cmd.args, dict(cmd.kwargs)) for cmd in strategy._command_queue]
        replies = await super().execute(False, allow_redirections)
        missed = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missed:
            for sha in {str(queued[n][0][1]) for n in missed}:
                if sha in _SCRIPTS:
                    await self.cluster_client.script_load(_SCRIPTS[sha])
            for n in missed:
                args, kwargs = queued[n]
                super().execute_command(*args, **kwargs)
            redone = await super().execute(False, allow_redirections)
            for n, reply in zip(missed, redone, strict=True):
                replies[n] = reply
        if raise_on_error:
            raise_first_error(replies)
        return replies


def connect_cluster(url: str, timeout: float) -> RedisCluster:
    """An asyncio cluster client for a `redis+cluster://` URL (nodes are found from any of
    those listed; connections are opened on first use)."""
    address = parse_cluster_url(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
        username=address.username,
        password=address.password,
        ssl=address.tls,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        max_connections=MAX_CONNECTIONS_PER_NODE,
    )
