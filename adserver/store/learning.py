"""Redis side of the related-items worker: reading the event shards through a consumer group,
shard leases, the learner's per-shopper state, the neighbour lists it maintains, and reading
them back.

No step spans two hash slots, so it runs unchanged on Redis Cluster, and a crash at any point
loses nothing and counts nothing twice. A batch read from a shard is applied in four steps:

1. its *journal* (the increments per advertiser and the shoppers' new states) is written in
   the shard's slot, only while the worker holds the shard's lease;
2. each advertiser's increments go to its model in one script call in the advertiser's slot,
   skipped when the advertiser's mark for the shard shows this batch (or a later one) applied;
3. the shoppers' states are overwritten (idempotent);
4. the batch is acknowledged and its journal dropped, atomically, only under the lease.

Whoever reads the shard next (the same worker after a Redis error, or the new holder after a
crash) finds the batch pending and, when the journal matches it, replays the journal (steps
2-4) instead of learning it again from states that may already be overwritten.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from adserver.core.lessons import CREDIT_SCALE, LearningConfig, Lessons, ShopperState, StreamEvent
from adserver.store import keys, scripts
from adserver.store.base import execute, raise_first_error

NEIGHBOUR_TTL_SECONDS = 180 * 86400
POPULAR_DAY_CAP = 2000  # products kept per advertiser and day (keys.popular_day)
POPULAR_DAY_SECONDS = 9 * 86400  # a day's views are compared for a week after it
BACKLOG_SCAN_LIMIT = 10_000  # entries counted per shard when Redis does not report the lag

ModelUpdate = tuple[list[str], list[Any]]  # list keys, and per list: cap, n, n (member, weight)


@dataclass(frozen=True, slots=True)
class NeighbourList:
    """An item's strongest neighbours with everybody's popularity, for normalising scores."""

    count: float  # the item's own (decayed) views
    neighbours: tuple[tuple[str, float, float], ...] = ()  # (sku, weight, sku's views)


EMPTY_LIST = NeighbourList(0.0)


@dataclass(frozen=True, slots=True)
class Journal:
    """One batch of one shard, learnt and ready to apply (and to replay after a crash)."""

    shard: int
    entry_ids: tuple[str, ...]
    updates: Mapping[str, ModelUpdate]  # advertiser -> its model's increments
    states: Mapping[tuple[str, str], ShopperState]  # (uid, advertiser) -> new state

    @property
    def batch_id(self) -> str:
        """The id of the batch's last stream entry: batches of a shard come in id order."""
        return self.entry_ids[-1]

    @property
    def empty(self) -> bool:
        return not self.updates and not self.states

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "ids": self.entry_ids,
                "updates": self.updates,
                "states": [
                    [uid, adv, s.viewed, s.bought, s.events, s.credit]
                    for (uid, adv), s in self.states.items()
                ],
            }
        )

    @classmethod
    def from_json(cls, shard: int, raw: bytes | str) -> Journal:
        doc = orjson.loads(raw)
        states = {
            (uid, adv): ShopperState(viewed=viewed, bought=bought, events=events, credit=credit)
            for uid, adv, viewed, bought, events, credit in doc["states"]
        }
        updates = {adv: (list_keys, args) for adv, (list_keys, args) in doc["updates"].items()}
        return cls(shard, tuple(doc["ids"]), updates, states)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_entry(fields: Mapping[Any, Any]) -> StreamEvent | None:
    """A stream entry as the learner sees it; None for anything it cannot use."""
    raw = fields.get(b"d", fields.get("d"))
    try:
        doc = orjson.loads(raw)
        return StreamEvent(
            uid=str(doc["uid"]),
            advertiser=str(doc["advertiser"]),
            kind=str(doc["event"]),
            items=tuple(str(i) for i in doc.get("items") or ()),
            ts_ms=int(doc["ts"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


Batch = list[tuple[str, StreamEvent | None]]  # (stream entry id, event)


class LearningStore:
    def __init__(self, redis: Redis, config: LearningConfig) -> None:
        self.redis = redis
        self.config = config
        self._read_neighbours = redis.register_script(scripts.READ_NEIGHBOURS)
        self._apply_lessons = redis.register_script(scripts.APPLY_LESSONS)
        self._trending_counts = redis.register_script(scripts.TRENDING_COUNTS)
        self._heartbeat = redis.register_script(scripts.WORKER_HEARTBEAT)
        self._renew_lease = redis.register_script(scripts.RENEW_LEASE)
        self._release_lease = redis.register_script(scripts.RELEASE_LEASE)
        self._write_journal = redis.register_script(scripts.WRITE_JOURNAL)
        self._acknowledge = redis.register_script(scripts.ACKNOWLEDGE_BATCH)
        self._save_learner_state = redis.register_script(scripts.SAVE_LEARNER_STATE)
        self._load_learner_state = redis.register_script(scripts.LOAD_LEARNER_STATE)
        self._pipelined_scripts = (
            self._load_learner_state,
            self._apply_lessons,
            self._save_learner_state,
            self._renew_lease,
            self._release_lease,
        )

    # -- the event shards -----------------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the consumer group on every shard (reading it from its start) unless it
        exists."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(keys.EVENT_SHARDS):
            pipe.xgroup_create(keys.event_stream(shard), keys.LEARNING_GROUP, id="0", mkstream=True)
        for reply in await execute(pipe, raise_on_error=False):
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply

    async def read_batches(
        self, shards: Sequence[int], count: int, pending: bool = False
    ) -> dict[int, Batch]:
        """The next entries of each shard (at most `count` each); with `pending`, the ones
        read and not acknowledged (by whoever held the shard), oldest first."""
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for shard in shards:
                pipe.xreadgroup(
                    keys.LEARNING_GROUP,
                    keys.learning_consumer(shard),
                    {keys.event_stream(shard): "0" if pending else ">"},
                    count=count,
                )
            replies = await execute(pipe, raise_on_error=False) if shards else []
            if attempt == 0 and any(_is_nogroup(r) for r in replies):
                await self.ensure_group()  # the stream was deleted (or never learnt from)
                continue
            raise_first_error(replies)
            return {shard: _entries(reply) for shard, reply in zip(shards, replies, strict=True)}
        raise AssertionError("unreachable")  # pragma: no cover

    async def backlog(self) -> int:
        """Stream entries not yet learnt from (read-but-unacknowledged plus unread), all
        shards together."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(keys.EVENT_SHARDS):
            pipe.xinfo_groups(keys.event_stream(shard))
        total = 0
        for shard, groups in enumerate(await execute(pipe, raise_on_error=False)):
            if isinstance(groups, ResponseError):
                continue  # no stream yet
            if isinstance(groups, Exception):
                raise groups
            for group in groups:
                info = {_text(k): v for k, v in group.items()}
                if _text(info.get("name", "")) != keys.LEARNING_GROUP:
                    continue
                total += int(info.get("pending") or 0)
                lag = info.get("lag")
                if lag is None:  # Redis < 7, or unknown after deletions: count them
                    start = "(" + _text(info.get("last-delivered-id") or b"0-0")
                    unread = await self.redis.xrange(
                        keys.event_stream(shard), start, "+", count=BACKLOG_SCAN_LIMIT
                    )
                    lag = len(unread or [])
                total += int(lag)
        return total

    # -- sharing the shards between workers -----------------------------------------------

    async def heartbeat(self, token: str, ttl_ms: int) -> int:
        """Announce this worker alive for `ttl_ms`; returns how many workers are alive."""
        return int(await self._heartbeat([keys.LEARNING_WORKERS], [token, ttl_ms]))

    async def leave(self, token: str) -> None:
        await self.redis.zrem(keys.LEARNING_WORKERS, token)

    async def acquire(
        self, candidates: Sequence[int], wanted: int, token: str, ttl_ms: int
    ) -> set[int]:
        """Take up to `wanted` of the candidate shards whose lease is free (in that order)."""
        if wanted <= 0 or not candidates:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for shard in candidates:
            pipe.exists(keys.learning_lease(shard))
        free = [s for s, taken in zip(candidates, await execute(pipe), strict=True) if not taken]
        free = free[:wanted]
        if not free:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for shard in free:
            pipe.set(keys.learning_lease(shard), token, nx=True, px=ttl_ms)
        return {s for s, won in zip(free, await execute(pipe), strict=True) if won}

    async def renew(self, shards: Collection[int], token: str, ttl_ms: int) -> set[int]:
        """Extend the leases still held; returns those shards."""
        ordered = sorted(shards)

        def build(pipe: Any) -> None:
            for shard in ordered:
                self._evalsha(pipe, self._renew_lease, [keys.learning_lease(shard)], token, ttl_ms)

        replies = await self._idempotent(build) if ordered else []
        return {shard for shard, kept in zip(ordered, replies, strict=True) if kept}

    async def release(self, shards: Collection[int], token: str) -> None:
        def build(pipe: Any) -> None:
            for shard in shards:
                self._evalsha(pipe, self._release_lease, [keys.learning_lease(shard)], token)

        if shards:
            await self._idempotent(build)

    # -- learning a batch -----------------------------------------------------------------

    async def load_states(
        self, shoppers: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], ShopperState]:
        shoppers = list(shoppers)

        def build(pipe: Any) -> None:
            for uid, advertiser in shoppers:
                state_keys = _state_keys(uid, advertiser)
                self._evalsha(pipe, self._load_learner_state, state_keys)

        states = {}
        for shopper, reply in zip(shoppers, await self._idempotent(build), strict=True):
            viewed, bought, count, credit = reply
            window = [_text(v) for v in viewed]
            states[shopper] = ShopperState(
                viewed=window,
                bought=[_text(b) for b in bought],
                events=int(count or 0),
                credit=decode_credit(window, credit or b""),
            )
        return states

    def journal(
        self,
        shard: int,
        entry_ids: Sequence[str],
        lessons: Lessons,
        states: Mapping[tuple[str, str], ShopperState],
    ) -> Journal:
        """A batch's lessons, grouped per advertiser (one slot each), and its new states."""
        updates: dict[str, ModelUpdate] = {}

        def add(advertiser: str, key: str, cap: int | str, weights: Mapping[str, float]) -> None:
            list_keys, args = updates.setdefault(advertiser, ([], []))
            list_keys.append(key)
            args += [cap, len(weights)]
            for member, weight in weights.items():
                args += [member, weight]

        for key_of, lists in (
            (keys.co_viewed, lessons.co_viewed),
            (keys.co_bought, lessons.co_bought),
        ):
            for (advertiser, item), neighbours in lists.items():
                add(advertiser, key_of(advertiser, item), self.config.cap, neighbours)
        for advertiser, counts in lessons.popular.items():
            add(advertiser, keys.popular(advertiser), self.config.popular_cap, counts)
        for (advertiser, day), counts in lessons.popular_days.items():
            # "cap/ttl": this key's own expiry (journals written before it carry a plain cap)
            bounds = f"{POPULAR_DAY_CAP}/{POPULAR_DAY_SECONDS}"
            add(advertiser, keys.popular_day(advertiser, day), bounds, counts)
        return Journal(shard, tuple(entry_ids), updates, dict(states))

    async def write_journal(self, journal: Journal, token: str, ttl_ms: int) -> bool:
        """Write the journal (and renew the lease) if the shard's lease is still `token`'s."""
        shard = journal.shard
        written = await self._write_journal(
            [keys.learning_lease(shard), keys.learning_journal(shard)],
            [token, ttl_ms, journal.to_json()],
        )
        return bool(written)

    async def load_journal(self, shard: int) -> Journal | None:
        raw = await self.redis.get(keys.learning_journal(shard))
        return None if raw is None else Journal.from_json(shard, raw)

    async def drop_journal(self, shard: int) -> None:
        await self.redis.delete(keys.learning_journal(shard))

    async def apply(
        self,
        journal: Journal,
        advertisers: Collection[str] | None = None,
        states: bool = True,
    ) -> None:
        """Apply a journal's increments (of the given advertisers; default all), each
        advertiser once however often this runs, and write its shoppers' states."""
        mark_args = [journal.batch_id, NEIGHBOUR_TTL_SECONDS]

        def build(pipe: Any) -> None:
            for advertiser, (list_keys, args) in journal.updates.items():
                if advertisers is None or advertiser in advertisers:
                    mark = keys.learning_mark(advertiser, journal.shard)
                    self._evalsha(pipe, self._apply_lessons, [mark, *list_keys], *mark_args, *args)
            if states:
                for (uid, advertiser), state in journal.states.items():
                    self._save_state(pipe, uid, advertiser, state)

        await self._idempotent(build)

    async def acknowledge(self, journal: Journal, token: str) -> bool:
        """Acknowledge the batch and drop its journal, if the lease is still `token`'s."""
        shard = journal.shard
        acknowledged = await self._acknowledge(
            [
                keys.learning_lease(shard),
                keys.event_stream(shard),
                keys.learning_journal(shard),
            ],
            [token, keys.LEARNING_GROUP, *journal.entry_ids],
        )
        return bool(acknowledged)

    def _save_state(self, pipe: Any, uid: str, advertiser: str, state: ShopperState) -> None:
        state_keys = _state_keys(uid, advertiser)
        self._evalsha(
            pipe,
            self._save_learner_state,
            state_keys,
            self.config.memory_seconds,
            state.events,
            len(state.viewed),
            *state.viewed,
            len(state.bought),
            *state.bought,
            encode_credit(state.viewed, state.credit),
        )

    @staticmethod
    def _evalsha(pipe: Any, script: Any, script_keys: Sequence[str], *args: Any) -> None:
        pipe.evalsha(script.sha, len(script_keys), *script_keys, *args)

    async def _idempotent(self, build: Callable[[Any], None]) -> list[Any]:
        """Run a pipeline of commands that may safely run twice; a Redis that lost its script
        cache (restarted, or a new cluster node) gets the scripts and the whole pipeline
        again."""
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            build(pipe)
            replies = await execute(pipe, raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                for script in self._pipelined_scripts:
                    await self.redis.script_load(script.script)
                continue
            raise_first_error(replies)
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reading the model ----------------------------------------------------------------

    async def neighbours(
        self, wanted: Sequence[tuple[str, str, str]], depth: int
    ) -> dict[tuple[str, str, str], NeighbourList]:
        """Top `depth` neighbours for each (kind, advertiser, item), kind 'viewed' or
        'bought', with popularity counts, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for kind, advertiser, item in wanted:
            key = (keys.co_viewed if kind == "viewed" else keys.co_bought)(advertiser, item)
            await self._read_neighbours([key, keys.popular(advertiser)], [item, depth], pipe)
        replies = await execute(pipe) if wanted else []
        return {
            request: _neighbour_list(reply) for request, reply in zip(wanted, replies, strict=True)
        }

    async def day_views(
        self, advertiser: str, today: int, days: int, depth: int
    ) -> dict[str, tuple[float, ...]]:
        """The `depth` products most viewed `today` (days since 1970) and the day before, each
        with its views of today and of each of the `days` days before, newest first: one
        script call, one round trip."""
        day_keys = [keys.popular_day(advertiser, today - back) for back in range(days + 1)]
        reply = await self._trending_counts(day_keys, [depth])
        values = [_text(v) for v in reply]
        width = len(day_keys) + 1
        return {
            values[i]: tuple(float(v) for v in values[i + 1 : i + width])
            for i in range(0, len(values) - width + 1, width)
        }


CREDIT_RECORD = struct.Struct("<BBH")  # window place of a, of b, weight credited to a-then-b


def encode_credit(window: Sequence[str], credit: Mapping[str, float]) -> bytes:
    """The credit of the window's pairs as 4-byte records naming items by their place in the
    window (~200 bytes, where a hash of item names took ~14 KB per active shopper)."""
    place: dict[str, int] = {}
    for item in window:
        place.setdefault(item, len(place))
    records = []
    for pair, weight in credit.items():
        first, _, second = pair.partition("\x1f")
        if first in place and second in place and place[first] < 256 and place[second] < 256:
            level = min(CREDIT_SCALE, math.ceil(weight * CREDIT_SCALE - 1e-6))  # already k/65535
            records.append(CREDIT_RECORD.pack(place[first], place[second], level))
    return b"".join(records)


def decode_credit(window: Sequence[str], blob: bytes | str) -> dict[str, float]:
    """`encode_credit` reversed; records that no longer fit the window are ignored."""
    data = blob.encode("latin-1") if isinstance(blob, str) else blob
    items = list(dict.fromkeys(window))
    credit = {}
    usable = len(data) - len(data) % CREDIT_RECORD.size
    for first, second, level in CREDIT_RECORD.iter_unpack(data[:usable]):
        if first < len(items) and second < len(items):
            credit[f"{items[first]}\x1f{items[second]}"] = level / CREDIT_SCALE
    return credit


def _state_keys(uid: str, advertiser: str) -> list[str]:
    return [
        keys.user_learning_views(uid, advertiser),
        keys.user_learning_purchases(uid, advertiser),
        keys.user_learning_count(uid, advertiser),
        keys.user_learning_credit(uid, advertiser),
    ]


def _is_nogroup(reply: Any) -> bool:
    return isinstance(reply, ResponseError) and str(reply).startswith("NOGROUP")


def _entries(reply: Any) -> Batch:
    streams = reply.items() if isinstance(reply, dict) else (reply or [])
    return [
        (_text(entry_id), parse_entry(fields) if fields else None)
        for _, stream_entries in streams
        for entry_id, fields in stream_entries
    ]


def _neighbour_list(reply: Sequence[bytes | str]) -> NeighbourList:
    values = [_text(v) for v in reply]
    neighbours = tuple(
        (values[i], float(values[i + 1]), float(values[i + 2])) for i in range(1, len(values), 3)
    )
    return NeighbourList(float(values[0]), neighbours)
