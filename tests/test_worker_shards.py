"""Several related-items workers at once, and crashes at every step of applying a batch: the
model (neighbour lists, popularity) and the learner's per-shopper state always end up exactly
as one uninterrupted worker makes them. The reference is learnt by one worker from the same
events written to a second database of the same server."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from adserver.core.lessons import LearningConfig
from adserver.core.shopper import ShopperEvent
from adserver.learning.worker import RelatedWorker
from adserver.runtime.embedded_redis import EmbeddedRedis
from adserver.store import Store, connect, keys
from adserver.store.base import text
from adserver.store.learning import LearningStore
from tests.conftest import OTHER_SHOP, SHOP, sell

CONFIG = LearningConfig()  # what `kaeru worker` learns with (forward decay included)
SHORT_LEASE = 0.4  # seconds: a "crashed" worker's shards are free again soon
Entries = list[tuple[str, ShopperEvent, float]]
Model = dict[str, Any]


pytestmark = pytest.mark.cluster  # on one Redis, and again on a Redis Cluster


@pytest.fixture
async def stores(redis_url: str, redis_server: EmbeddedRedis) -> AsyncIterator[tuple[Store, Store]]:
    """The store the workers under test learn in (one Redis or a cluster), and the
    reference's: database 1 of the single server."""
    base, _, _ = redis_server.url.rpartition("/")
    tested, reference = Store(connect(redis_url)), Store(connect(f"{base}/1"))
    await reference.redis.flushdb()
    for store in (tested, reference):  # only products a shop sells are learnt
        for shop in (SHOP, OTHER_SHOP):
            await sell(store, shop, [f"p{n}" for n in range(1, 16)])
    yield tested, reference
    await tested.close()
    await reference.close()


def shopping(seed: int, shoppers: int, start: float) -> Entries:
    """Shoppers browsing and buying at two shops, interleaved like live traffic."""
    rng = random.Random(seed)
    journeys: list[Entries] = []
    for n in range(shoppers):
        uid = f"s{seed}-{n:05d}".ljust(22, "x")
        at = start + rng.uniform(0, 3600)
        journey: Entries = []
        for _ in range(rng.randint(2, 12)):
            shop = rng.choice((SHOP, OTHER_SHOP))
            at += rng.uniform(1, 60)
            if rng.random() < 0.1:
                items = tuple(f"p{rng.randint(1, 15)}" for _ in range(2))
                order = f"o-{uid}-{len(journey)}"
                journey.append((uid, ShopperEvent(shop, "purchase", items, order=order), at))
            else:
                item = f"p{rng.randint(1, 15)}"
                journey.append((uid, ShopperEvent(shop, "view", (item,)), at))
        journeys.append(journey)
    merged = [entry for journey in journeys for entry in journey]
    merged.sort(key=lambda entry: entry[2])
    return merged


async def record(stores: tuple[Store, ...], entries: Entries) -> None:
    for store in stores:
        for chunk in range(0, len(entries), 500):
            await store.record_many(entries[chunk : chunk + 500])


async def snapshot(redis: Redis) -> Model:
    """Every neighbour list, popularity zset and learner state, by key."""
    model: Model = {}
    async for raw in redis.scan_iter(count=1000):
        key = text(raw)
        kind = key.split(":", 1)[0]
        if kind in ("nb", "cb", "pop"):
            scored: Any = await redis.zrange(key, 0, -1, withscores=True)
            model[key] = {text(member): score for member, score in scored}
        elif kind == "u" and ":w" in key:
            kind = key.rsplit(":", 2)[-2]
            if kind in ("wv", "wb"):
                model[key] = [text(v) for v in await redis.lrange(key, 0, -1)]
            elif kind == "wn":
                model[key] = int(await redis.get(key) or 0)
            elif kind == "wk":
                model[key] = await redis.get(key)
    return model


def assert_same_model(learnt: Model, reference: Model) -> None:
    assert sorted(learnt) == sorted(reference)
    assert any(key.startswith("nb:") for key in reference)
    assert any(key.startswith("cb:") for key in reference)
    for key, expected in reference.items():
        got = learnt[key]
        if isinstance(expected, dict) and key[0] != "u":  # float sums: batching changes order
            assert got.keys() == expected.keys(), key
            assert got == pytest.approx(expected, rel=1e-12), key
        else:
            assert got == expected, key


async def reference_model(reference: Store) -> Model:
    await RelatedWorker(LearningStore(reference.redis, CONFIG), "reference").drain()
    return await snapshot(reference.redis)


def worker(store: Store, name: str, batch_size: int = 5, lease: float = 1.0) -> RelatedWorker:
    learning = LearningStore(store.redis, CONFIG)
    return RelatedWorker(learning, name, batch_size=batch_size, lease_seconds=lease)


async def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def test_one_shoppers_events_stay_in_one_shard_and_shoppers_spread() -> None:
    uid = "Qm9va3MgYXJlIGdyZWF0IQ"
    assert keys.event_shard(uid) == keys.event_shard(uid)
    shards = {keys.event_shard(f"shopper-{n}") for n in range(1000)}
    assert shards == set(range(keys.EVENT_SHARDS))
    assert keys.event_stream(3) == "ev:{3}"
    assert keys.learning_lease(3).endswith("{3}") and keys.learning_journal(3).endswith("{3}")


@pytest.mark.parametrize("workers", [2, 3])
async def test_workers_learning_at_once_make_the_same_model_as_one(
    stores: tuple[Store, Store], workers: int
) -> None:
    tested, reference = stores
    start = time.time() - 86400
    team = [worker(tested, f"w{n}") for n in range(workers)]
    stop = asyncio.Event()
    running = [asyncio.create_task(w.run(stop)) for w in team]
    try:
        for wave in range(6):  # events keep arriving while the workers share the shards out
            await record(stores, shopping(wave, 60, start + wave * 7200))
            await asyncio.sleep(0.3)
        shares = [len(w.held) for w in team]
        await wait_for(lambda: _idle(tested), 30, "everything learnt")
    finally:
        stop.set()
        await asyncio.gather(*running)
    assert sum(shares) == keys.EVENT_SHARDS
    assert max(shares) == -(-keys.EVENT_SHARDS // workers)  # each its fair share, no more
    assert all(w.learnt > 0 for w in team)
    assert sum(w.learnt for w in team) == await stream_length(tested)
    assert await holders(tested) == [""] * keys.EVENT_SHARDS  # released on a clean stop
    assert_same_model(await snapshot(tested.redis), await reference_model(reference))


async def lapse(store: Store, dead: RelatedWorker) -> None:
    """What time does to a dead worker: its leases and its heartbeat expire."""
    for shard in dead.held:
        await store.redis.pexpire(keys.learning_lease(shard), 1)
    await store.redis.zrem(keys.LEARNING_WORKERS, dead.token)
    await asyncio.sleep(0.01)


async def _idle(store: Store) -> bool:
    return await LearningStore(store.redis, CONFIG).backlog() == 0


async def stream_length(store: Store) -> int:
    lengths = [await store.redis.xlen(keys.event_stream(s)) for s in range(keys.EVENT_SHARDS)]
    return sum(lengths)


CRASH_POINTS = [
    "read",  # the batch read, nothing written
    "journal",  # its journal written
    "some advertisers",  # one advertiser's increments applied, not the other's
    "model",  # every advertiser's increments applied, no shopper state
    "states",  # everything applied, not acknowledged
    "replayed",  # everything applied, then replayed by a worker that lost its lease
]


@pytest.mark.parametrize("crash", CRASH_POINTS)
async def test_a_crash_at_any_step_of_a_batch_leaves_the_model_exact(
    stores: tuple[Store, Store], crash: str
) -> None:
    tested, reference = stores
    await record(stores, shopping(7, 150, time.time() - 86400))
    crashed = worker(tested, "crashed", batch_size=8, lease=30.0)
    await crashed.start()
    assert len(crashed.held) == keys.EVENT_SHARDS
    await crashed.step()  # a first batch of every shard: the shoppers have states now
    learning = crashed.learning
    batches = await learning.read_batches(sorted(crashed.held), crashed.batch_size)
    shard, entries = next(
        (shard, entries)
        for shard, entries in batches.items()
        if len({e.advertiser for _, e in entries if e and e.kind == "view"}) == 2
    )
    if crash != "read":
        journal = await crashed.prepare(shard, entries)
        assert journal is not None and len(journal.updates) == 2
        if crash == "some advertisers":
            await learning.apply(journal, advertisers=[sorted(journal.updates)[0]], states=False)
        elif crash == "model":
            await learning.apply(journal, states=False)
        elif crash in ("states", "replayed"):
            await learning.apply(journal)
        if crash == "replayed":  # a stale holder applies it again: nothing is counted twice
            await learning.apply(journal)
    await lapse(tested, crashed)  # it never stops: its leases expire, another takes over
    restarted = worker(tested, "restarted", batch_size=8)
    await restarted.drain()
    assert await _idle(tested)
    assert not await tested.redis.exists(keys.learning_journal(shard))
    assert_same_model(await snapshot(tested.redis), await reference_model(reference))


async def test_a_worker_that_lost_its_lease_writes_nothing_more(
    stores: tuple[Store, Store],
) -> None:
    tested, reference = stores
    await record(stores, shopping(3, 40, time.time() - 86400))
    stale = worker(tested, "stale", batch_size=8, lease=SHORT_LEASE)
    await stale.start()
    batches = await stale.learning.read_batches(sorted(stale.held), stale.batch_size)
    shard = next(shard for shard, entries in batches.items() if entries)
    await asyncio.sleep(SHORT_LEASE + 0.1)  # it stalls; its lease expires
    taker = worker(tested, "taker", batch_size=8, lease=5.0)
    await taker.start()
    assert shard in taker.held
    assert await stale.prepare(shard, batches[shard]) is None  # its journal is refused
    assert shard not in stale.held
    await taker.drain()
    assert_same_model(await snapshot(tested.redis), await reference_model(reference))


async def test_a_redis_that_lost_its_scripts_gets_them_again(stores: tuple[Store, Store]) -> None:
    tested, reference = stores
    await record(stores, shopping(5, 40, time.time() - 86400))
    restarted = worker(tested, "w", batch_size=8)
    await restarted.start()
    await restarted.step()
    await tested.redis.script_flush()  # a restarted Redis (or a failover) forgets them
    await restarted.drain()
    assert_same_model(await snapshot(tested.redis), await reference_model(reference))


async def test_a_stopping_worker_hands_its_shards_over_at_once(stores: tuple[Store, Store]) -> None:
    tested, _ = stores
    first, second = worker(tested, "first", lease=30.0), worker(tested, "second", lease=30.0)
    await first.start()
    assert len(first.held) == keys.EVENT_SHARDS
    await first.stop()
    await second.start()  # no waiting for 30 s leases to expire
    assert len(second.held) == keys.EVENT_SHARDS
    await second.stop()
    assert await tested.redis.zcard(keys.LEARNING_WORKERS) == 0


# -- real processes -------------------------------------------------------------------------


@pytest.fixture
def worker_processes(redis_url: str, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    started: list[subprocess.Popen[bytes]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAERU_")}
    env.update(REDIS_URL=redis_url, KAERU_DATA_DIR=str(tmp_path))

    def start(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "adserver.cli", "worker", "--name", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def holders(store: Store) -> list[str]:
    pipe = store.redis.pipeline(transaction=False)
    for shard in range(keys.EVENT_SHARDS):
        pipe.get(keys.learning_lease(shard))
    values = await pipe.execute()
    return [text(v).split(":", 1)[0] if v else "" for v in values]


async def test_killed_worker_process_is_taken_over_with_nothing_lost_or_counted_twice(
    stores: tuple[Store, Store], worker_processes: Callable[[str], Any], tmp_path: Path
) -> None:
    tested, reference = stores
    start = time.time() - 86400
    await record(stores, shopping(100, 400, start))
    assert await tested.redis.zcard(keys.LEARNING_WORKERS) == 0  # no stray worker here
    doomed, survivor = worker_processes("doomed"), worker_processes("survivor")
    running = {"doomed": doomed, "survivor": survivor}

    async def held_by(names: set[str]) -> bool:
        """Whether exactly `names` hold the shards; fails at once, with its log, when a
        worker process died (a crash, not slowness) or when a worker this test did not start
        holds a shard, instead of ending in a timeout that says neither."""
        for name, process in running.items():
            if process.poll() is not None:
                log = (tmp_path / f"{name}.log").read_text()
                raise AssertionError(f"worker {name} exited ({process.returncode}):\n{log}")
        holding = set(await holders(tested)) - {""}
        assert holding <= {"doomed", "survivor"}, f"held by workers not started here: {holding}"
        return holding == names

    async def shared() -> bool:
        return await held_by({"doomed", "survivor"})

    await wait_for(shared, 30, "both processes holding shards")
    for wave in range(101, 104):
        await record(stores, shopping(wave, 400, start + (wave - 100) * 7200))
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    del running["doomed"]
    for wave in range(104, 106):
        await record(stores, shopping(wave, 400, start + (wave - 100) * 7200))

    async def taken_over_and_learnt() -> bool:
        return await held_by({"survivor"}) and await _idle(tested)

    await wait_for(taken_over_and_learnt, 60, "survivor holding every shard, nothing left")
    assert survivor.poll() is None, (tmp_path / "survivor.log").read_text()
    assert_same_model(await snapshot(tested.redis), await reference_model(reference))
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=15) == 0
    assert await holders(tested) == [""] * keys.EVENT_SHARDS  # released on a clean stop
