"""The shoppers' value records (the field `keys.VALUE_FIELD` of `keys.user_facts`).

Only new orders are to be recorded: the profile script (`scripts.RECORD_EVENT`) is what tells
a new order id from one recorded before (the orders hash, `keys.user_orders`); the record's
fingerprint of the latest order makes the same order sent twice in a row change nothing.
The purchase flow does not call `record_order`: the profile script folds each new order into
the record itself (`scripts.RECORD_EVENT`'s new-purchase branch, with `scripts.VALUE_FOLD`),
since calling this after `Store.record_many` only for purchases it reports as new would miss
an order whose first write Redis applied but whose answer was lost (the replay reports it as
seen). `record_order` stays for tools and tests.

The shop-wide side, for the value refresh (`adserver/value/refresh.py`), all off the hot
path and SCAN-free: the index of buyers it samples (`note_buyer`, `sample`), the repeat gaps
it learns replenishment from (`note_repeat`, `repeat_gaps`), and what it writes back: the
standing (`write_standing`, `read_standing`) and the replenishment intervals
(`write_intervals`, `read_intervals`). `Store.record_many` sends `note_buyer_commands` with
every purchase in its round trip and `note_repeats` after it for the products the profile
script reports as bought before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from redis.asyncio import Redis

from adserver.core.value_record import (
    MAX_CENTS,
    MAX_DAY,
    RecordError,
    ValueRecord,
    decode_record,
    order_fingerprint,
)
from adserver.core.value_segments import (
    StandingError,
    ValueStanding,
    decode_standing,
    encode_standing,
)
from adserver.store import keys, scripts
from adserver.store.base import (
    Command,
    raise_first_error,
    send_commands,
    send_with_scripts,
    text,
)

DAY_SECONDS = 86400
MAX_BUYERS = 20_000  # per advertiser in the index the refresh samples
MAX_REPEAT_GAPS = 20_000  # per advertiser: (shopper, product) gaps kept for replenishment
MAX_INTERVALS = 2_000  # per advertiser: products with a replenishment interval
MIN_REPEAT_GAP_DAYS = 1.0  # as adserver.value.replenishment.MIN_GAP_DAYS: shorter is no repeat
STANDING_TTL_SECONDS = 7 * DAY_SECONDS  # a standing not refreshed for a week is gone
GLOB = re.compile(r"([*?\[\]\\])")


def order_cents(revenue: Decimal) -> int:
    """An order's revenue (the shop's currency) in whole cents, as the record keeps it."""
    cents = int((revenue * 100).to_integral_value(ROUND_HALF_UP))
    return min(max(0, cents), MAX_CENTS)


@dataclass(frozen=True, slots=True)
class BuyerSample:
    """Records drawn from the buyers' index (`indexed`: its size when drawn)."""

    records: tuple[ValueRecord, ...]
    indexed: int


class CustomerValues:
    def __init__(self, redis: Redis, lookback_seconds: int) -> None:
        self.redis = redis
        self.lookback_seconds = lookback_seconds
        self._record = redis.register_script(scripts.RECORD_VALUE)
        self._note_repeat = redis.register_script(scripts.NOTE_REPEAT)
        self.max_buyers = MAX_BUYERS
        self.max_repeat_gaps = MAX_REPEAT_GAPS

    async def record_order(
        self, uid: str, advertiser: str, order: str, at: float, revenue: Decimal
    ) -> ValueRecord | None:
        """Fold a new order (`at`: unix seconds; `revenue` in the shop's currency) into the
        shopper's record; None when the shopper was erased since (the order is not kept)."""
        day = min(max(0, int(at // DAY_SECONDS)), MAX_DAY)
        reply = await self._record(
            keys=[keys.user_facts(uid, advertiser), keys.user_forgotten(uid)],
            args=[
                day,
                order_cents(revenue),
                order_fingerprint(order),
                self.lookback_seconds,
                int(at * 1000),
            ],
        )
        return None if reply is None else decode_record(text(reply))

    async def read(self, uid: str, advertiser: str) -> ValueRecord | None:
        """The shopper's record; None without one (or with a value that is not one)."""
        raw = await self.redis.hget(keys.user_facts(uid, advertiser), keys.VALUE_FIELD)
        if raw is None:
            return None
        try:
            return decode_record(raw)
        except RecordError:
            return None

    # -- the shop-wide side: the refresh's inputs and outputs -------------------------------

    def note_buyer_commands(self, uid: str, advertiser: str, at: float) -> list[Command]:
        """Put (or keep) the shopper in the shop's buyers' index at `at` (unix seconds): for a
        pipeline of the purchase write. Trimmed by age and to the newest `max_buyers`."""
        key, now_ms = keys.value_buyers(advertiser), int(at * 1000)
        return [
            ("ZADD", key, "GT", now_ms, uid),
            ("ZREMRANGEBYSCORE", key, "-inf", f"({now_ms - self.lookback_seconds * 1000}"),
            ("ZREMRANGEBYRANK", key, 0, -(self.max_buyers + 1)),
            ("EXPIRE", key, self.lookback_seconds),
        ]

    async def note_buyer(self, uid: str, advertiser: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        raise_first_error(
            await send_commands(self.redis, self.note_buyer_commands(uid, advertiser, at))
        )

    async def note_repeat(
        self, uid: str, advertiser: str, sku: str, gap_days: float, at: float | None = None
    ) -> bool:
        """Keep the shopper's latest gap between two purchases of `sku`; False when the shop's
        hash is full and this (shopper, product) is not in it yet."""
        command = self.note_repeat_command(uid, advertiser, sku, gap_days, at)
        (reply,) = await send_with_scripts(
            self.redis, [command], {self._note_repeat.sha: scripts.NOTE_REPEAT}
        )
        raise_first_error([reply])
        return bool(reply)

    def note_repeat_command(
        self, uid: str, advertiser: str, sku: str, gap_days: float, at: float | None = None
    ) -> Command:
        """`note_repeat` as one EVALSHA, for a pipeline (`note_repeats`)."""
        day = int((time.time() if at is None else at) // DAY_SECONDS)
        return (
            *("EVALSHA", self._note_repeat.sha, 1, keys.value_repeat_gaps(advertiser)),
            *(f"{uid}\t{sku}", f"{max(0.0, gap_days):.2f}:{day}"),
            *(self.max_repeat_gaps, self.lookback_seconds),
        )

    async def note_repeats(self, gaps: Sequence[tuple[str, str, str, float, float]]) -> None:
        """Several (uid, advertiser, sku, gap days, at) in one round trip: the purchase write's
        repeat gaps (`Store.record_many`). Gaps under `MIN_REPEAT_GAP_DAYS` are not noted (a
        second unit the same day would replace the shopper's real gap)."""
        commands = [self.note_repeat_command(*gap) for gap in gaps if gap[3] >= MIN_REPEAT_GAP_DAYS]
        if commands:
            sources = {self._note_repeat.sha: scripts.NOTE_REPEAT}
            raise_first_error(await send_with_scripts(self.redis, commands, sources))

    async def sample(self, advertiser: str, size: int) -> BuyerSample:
        """Up to `size` records of buyers drawn at random from the index (ZRANDMEMBER: without
        repeats); index entries whose record is gone (expired, erased) are removed."""
        key = keys.value_buyers(advertiser)
        indexed = int(await self.redis.zcard(key))
        members: Any = await self.redis.zrandmember(key, size)
        drawn = [text(u) for u in members or []]
        if not drawn:
            return BuyerSample((), indexed)
        replies = await send_commands(
            self.redis,
            [("HGET", keys.user_facts(uid, advertiser), keys.VALUE_FIELD) for uid in drawn],
        )
        raise_first_error(replies)
        records: list[ValueRecord] = []
        gone: list[str] = []
        for uid, raw in zip(drawn, replies, strict=True):
            try:
                records.append(decode_record(raw)) if raw is not None else gone.append(uid)
            except RecordError:
                gone.append(uid)
        if gone:
            await self.redis.zrem(key, *gone)
        return BuyerSample(tuple(records), indexed - len(gone))

    async def repeat_gaps(self, advertiser: str, today: int) -> list[tuple[str, str, float]]:
        """The shop's (uid, sku, gap days) within the lookback; older ones are deleted."""
        key = keys.value_repeat_gaps(advertiser)
        raw: Mapping[bytes | str, bytes | str] = await self.redis.hgetall(key)
        oldest = today - self.lookback_seconds // DAY_SECONDS
        kept: list[tuple[str, str, float]] = []
        stale: list[str] = []
        for name, value in raw.items():
            field, (gap, _, day) = text(name), text(value).partition(":")
            uid, _, sku = field.partition("\t")
            try:
                fresh = int(day) >= oldest
                kept.append((uid, sku, float(gap))) if fresh else stale.append(field)
            except ValueError:
                stale.append(field)
        if stale:
            await self.redis.hdel(key, *stale)
        return kept

    async def claim_refresh(self, advertiser: str, token: str, seconds: int) -> bool:
        """Whether this process refreshes the shop now (one of many, once per `seconds`)."""
        return bool(
            await self.redis.set(keys.value_refresh_lease(advertiser), token, nx=True, ex=seconds)
        )

    async def write_standing(self, advertiser: str, standing: ValueStanding) -> None:
        key = keys.value_standing(advertiser)
        await self.redis.set(key, encode_standing(standing), ex=STANDING_TTL_SECONDS)

    async def read_standing(self, advertiser: str) -> ValueStanding | None:
        raw = await self.redis.get(keys.value_standing(advertiser))
        if raw is None:
            return None
        try:
            return decode_standing(raw)
        except StandingError:
            return None

    async def read_standings(
        self, advertisers: Sequence[str]
    ) -> dict[str, tuple[bytes | str, ValueStanding] | None]:
        """Each shop's standing as stored and decoded (None: none, or not one), in one round
        trip: what each serving process checks at its market refresh."""
        replies = await send_commands(
            self.redis, [("GET", keys.value_standing(shop)) for shop in advertisers]
        )
        raise_first_error(replies)
        found: dict[str, tuple[bytes | str, ValueStanding] | None] = {}
        for shop, raw in zip(advertisers, replies, strict=True):
            try:
                found[shop] = None if raw is None else (raw, decode_standing(raw))
            except StandingError:
                found[shop] = None
        return found

    async def write_intervals(self, advertiser: str, intervals: Mapping[str, float]) -> None:
        """Replace the shop's replenishment intervals (the `MAX_INTERVALS` given first)."""
        key = keys.replenishment_intervals(advertiser)
        kept = dict(list(intervals.items())[:MAX_INTERVALS])
        commands: list[Command] = [("DEL", key)]
        if kept:
            pairs = [part for sku, days in kept.items() for part in (sku, f"{days:.1f}")]
            commands += [("HSET", key, *pairs), ("EXPIRE", key, STANDING_TTL_SECONDS)]
        raise_first_error(await send_commands(self.redis, commands))

    async def read_intervals(self, advertiser: str) -> dict[str, float]:
        raw: Mapping[bytes | str, bytes | str] = await self.redis.hgetall(
            keys.replenishment_intervals(advertiser)
        )
        found: dict[str, float] = {}
        for sku, days in raw.items():
            try:
                value = float(text(days))
            except ValueError:
                continue
            if value > 0:
                found[text(sku)] = value
        return found

    @staticmethod
    def forget_commands(uid: str, advertisers: Iterable[str]) -> list[Command]:
        """Take the shopper out of the shops' buyers' indexes (for `Store.forget`'s pipeline;
        their repeat gaps go with `forget_gaps`)."""
        return [("ZREM", keys.value_buyers(shop), uid) for shop in advertisers]

    @staticmethod
    async def forget_gaps(redis: Redis, uid: str, advertisers: Sequence[str]) -> int:
        """Delete the shopper's repeat gaps at those shops (HSCAN of hashes of at most
        `MAX_REPEAT_GAPS` fields, for their '<uid><TAB>' prefix); how many were deleted."""
        pattern = GLOB.sub(r"\\\1", uid) + "\t*"
        deleted = 0
        for shop in advertisers:
            key = keys.value_repeat_gaps(shop)
            fields = [text(f) async for f, _ in redis.hscan_iter(key, match=pattern, count=1000)]
            if fields:
                deleted += int(await redis.hdel(key, *fields))
        return deleted
