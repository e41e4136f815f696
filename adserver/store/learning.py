"""Redis side of the related-items worker: reading the event stream through a consumer group,
the learner's per-shopper state, the neighbour lists it maintains, and reading them back.

A batch is applied in one MULTI/EXEC together with its XACK, so a crash either applies a batch
and acknowledges it, or does neither and the batch is read again from the pending list:
nothing is lost and nothing counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from adserver.cooccurrence import LearningConfig, Lessons, ShopperState, StreamEvent
from adserver.store import keys, scripts
from adserver.store.base import execute

NEIGHBOUR_TTL_SECONDS = 180 * 86400


@dataclass(frozen=True, slots=True)
class NeighbourList:
    """An item's strongest neighbours with everybody's popularity, for normalising scores."""

    count: float  # the item's own (decayed) views
    neighbours: tuple[tuple[str, float, float], ...] = ()  # (sku, weight, sku's views)


EMPTY_LIST = NeighbourList(0.0)


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


class LearningStore:
    def __init__(self, redis: Redis, config: LearningConfig) -> None:
        self.redis = redis
        self.config = config
        self._add_neighbours = redis.register_script(scripts.ADD_NEIGHBOURS)
        self._read_neighbours = redis.register_script(scripts.READ_NEIGHBOURS)

    async def ensure_group(self) -> None:
        """Create the consumer group (reading the stream from its start) unless it exists."""
        try:
            await self.redis.xgroup_create(
                keys.EVENT_STREAM, keys.LEARNING_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_batch(
        self, consumer: str, count: int, block_ms: int | None, pending: bool = False
    ) -> list[tuple[bytes, StreamEvent | None]]:
        """The next entries for this consumer; with `pending`, the ones it read and did not
        acknowledge before a crash."""
        reply: Any = await self.redis.xreadgroup(
            keys.LEARNING_GROUP,
            consumer,
            {keys.EVENT_STREAM: "0" if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        streams = reply.items() if isinstance(reply, dict) else (reply or [])
        entries: list[tuple[bytes, StreamEvent | None]] = []
        for _, stream_entries in streams:
            for entry_id, fields in stream_entries:
                entries.append((entry_id, parse_entry(fields) if fields else None))
        return entries

    async def load_states(
        self, shoppers: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], ShopperState]:
        shoppers = list(shoppers)
        pipe = self.redis.pipeline(transaction=False)
        for uid, advertiser in shoppers:
            pipe.lrange(keys.user_learning_views(uid, advertiser), 0, -1)
            pipe.lrange(keys.user_learning_purchases(uid, advertiser), 0, -1)
            pipe.get(keys.user_learning_count(uid, advertiser))
            pipe.hgetall(keys.user_learning_credit(uid, advertiser))
        replies = await execute(pipe) if shoppers else []
        states = {}
        for index, shopper in enumerate(shoppers):
            viewed, bought, count, credit = replies[4 * index : 4 * index + 4]
            states[shopper] = ShopperState(
                viewed=[_text(v) for v in viewed],
                bought=[_text(b) for b in bought],
                events=int(count or 0),
                credit={_text(k): float(v) for k, v in credit.items()},
            )
        return states

    async def apply(
        self,
        lessons: Lessons,
        states: Mapping[tuple[str, str], ShopperState],
        entry_ids: Sequence[bytes],
    ) -> None:
        """Write a batch's lessons and the shoppers' new states, and acknowledge the batch,
        atomically."""
        pipe = self.redis.pipeline(transaction=True)
        cap, ttl = self.config.cap, NEIGHBOUR_TTL_SECONDS
        for key_of, weights in (
            (keys.co_viewed, lessons.co_viewed),
            (keys.co_bought, lessons.co_bought),
        ):
            for (advertiser, item), neighbours in weights.items():
                flat = [x for pair in neighbours.items() for x in pair]
                await self._add_neighbours([key_of(advertiser, item)], [cap, ttl, *flat], pipe)
        for advertiser, counts in lessons.popular.items():
            flat = [x for pair in counts.items() for x in pair]
            await self._add_neighbours([keys.popular(advertiser)], [0, ttl, *flat], pipe)
        for (uid, advertiser), state in states.items():
            self._save_state(pipe, uid, advertiser, state)
        if entry_ids:
            pipe.xack(keys.EVENT_STREAM, keys.LEARNING_GROUP, *entry_ids)
        await execute(pipe)

    def _save_state(self, pipe: Any, uid: str, advertiser: str, state: ShopperState) -> None:
        ttl = self.config.memory_seconds
        for key, items in (
            (keys.user_learning_views(uid, advertiser), state.viewed),
            (keys.user_learning_purchases(uid, advertiser), state.bought),
        ):
            pipe.delete(key)
            if items:
                pipe.rpush(key, *items)
                pipe.expire(key, ttl)
        pipe.set(keys.user_learning_count(uid, advertiser), state.events, ex=ttl)
        if state.new_credit:
            credit_key = keys.user_learning_credit(uid, advertiser)
            pipe.hset(credit_key, mapping=state.new_credit)
            pipe.expire(credit_key, ttl)

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

    async def backlog(self) -> int:
        """Stream entries not yet learnt from (read-but-unacknowledged plus unread)."""
        try:
            groups: Any = await self.redis.xinfo_groups(keys.EVENT_STREAM)
        except ResponseError:
            return 0
        for group in groups:
            info = {_text(k): v for k, v in group.items()}
            if _text(info.get("name", "")) == keys.LEARNING_GROUP:
                return int(info.get("lag") or 0) + int(info.get("pending") or 0)
        return 0


def _neighbour_list(reply: Sequence[bytes | str]) -> NeighbourList:
    values = [_text(v) for v in reply]
    neighbours = tuple(
        (values[i], float(values[i + 1]), float(values[i + 2])) for i in range(1, len(values), 3)
    )
    return NeighbourList(float(values[0]), neighbours)
