"""Delivery accounting: impressions, renders, clicks and conversions, per advertiser and day
(for reports), per campaign (for CTR estimates) and on the shopper (frequency caps, the last
touch for attribution)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import orjson
from redis.asyncio import Redis

from adserver.store import keys, scripts
from adserver.store.base import (
    Command,
    Conversion,
    Placement,
    StoreLimits,
    append_to_stream,
    day_of,
    execute,
    raise_first_error,
    send_with_scripts,
    text,
)

STATS_TTL_SECONDS = 400 * 86400
ORDER_MARKER_TTL_SECONDS = 400 * 86400
CLICK_REPLAY_SECONDS = 600  # the same click link followed again within this counts once


@dataclass(frozen=True, slots=True)
class Shown:
    """An ad served (an impression: counted for reports, CTR estimates and, for a known
    shopper, caps and the last touch) or, with `rendered`, its creative displayed on the page
    (a render: counted for reports only)."""

    uid: str | None
    placement: Placement
    skus: tuple[str, ...]
    at: float
    rendered: bool = False


@dataclass(frozen=True, slots=True)
class Click:
    """A click link followed; `token_id` names the link (a replay of it counts once)."""

    uid: str | None
    placement: Placement
    sku: str
    at: float
    token_id: str = ""


class Ledger:
    def __init__(self, redis: Redis, limits: StoreLimits) -> None:
        self.redis = redis
        self.limits = limits
        self._count_impression = redis.register_script(scripts.COUNT_IMPRESSION)
        self._record_conversion = redis.register_script(scripts.RECORD_CONVERSION)
        self._record_click = redis.register_script(scripts.RECORD_CLICK)

    async def record_impression(
        self, uid: str | None, placement: Placement, skus: Sequence[str], now: float | None = None
    ) -> None:
        """Count an ad served: report counts, campaign totals, and (for a known shopper) the
        frequency counters and the last impression, in one round trip."""
        at = time.time() if now is None else now
        await self.record_shown([Shown(uid, placement, tuple(skus), at)])

    async def record_shown(self, shown: Iterable[Shown]) -> None:
        """Impressions and renders in one round trip (group commit): per shopper shown an ad
        the frequency counters and the last touch (a script), then the report and CTR counters
        summed over the batch (one HINCRBY per counter, not per impression)."""
        sha = self._count_impression.sha
        commands: list[Command] = []
        stats: Counter[tuple[str, str]] = Counter()
        totals: Counter[tuple[str, str]] = Counter()
        for one in shown:
            placement, now = one.placement, one.at
            adv = placement.advertiser
            day_stats = keys.daily_stats(adv, day_of(now))
            if one.rendered:
                stats[(day_stats, f"render\t{placement.key}")] += 1
                continue
            if one.uid is not None:
                caps, touch = keys.user_caps(one.uid, adv), keys.user_touch(one.uid, adv)
                commands.append(
                    (
                        *("EVALSHA", sha, 2, caps, touch, day_of(now), int(now * 1000)),
                        *(self.limits.click_window_seconds, placement.campaign, placement.key),
                        *one.skus,
                    )
                )
            stats[(day_stats, f"imp\t{placement.key}")] += 1
            totals[(keys.campaign_totals(adv), f"imp:{placement.campaign}")] += 1
        for counts in (stats, totals):
            commands += [("HINCRBY", key, field, n) for (key, field), n in counts.items()]
        commands += [
            ("EXPIRE", key, STATS_TTL_SECONDS) for key in dict.fromkeys(k for k, _ in stats)
        ]
        if not commands:
            return
        replies = await send_with_scripts(self.redis, commands, {sha: scripts.COUNT_IMPRESSION})
        raise_first_error(replies)

    async def record_click(
        self,
        uid: str | None,
        placement: Placement,
        sku: str,
        now: float | None = None,
        token_id: str = "",
    ) -> bool:
        """Count a click once per click link within the replay window (`token_id` names the
        link), remember it on the shopper for attribution, put it on the stream. Returns
        False for a replay, which changes nothing."""
        now = time.time() if now is None else now
        digest = hashlib.sha256(token_id.encode()).hexdigest()[:32] if token_id else ""
        counted = await self._record_click(
            [
                keys.click_marker(placement.advertiser, digest or str(now)),
                keys.daily_stats(placement.advertiser, day_of(now)),
                keys.campaign_totals(placement.advertiser),
            ],
            [placement.key, CLICK_REPLAY_SECONDS, placement.campaign],
        )
        if not counted:
            return False
        pipe = self.redis.pipeline(transaction=False)
        if uid is not None:
            touch = keys.user_touch(uid, placement.advertiser)
            pipe.hset(touch, mapping={"click": int(now * 1000), "click_key": placement.key})
            pipe.expire(touch, self.limits.click_window_seconds)
        document = {
            "uid": uid,
            "advertiser": placement.advertiser,
            "event": "click",
            "items": [sku],
            "campaign": placement.campaign,
            "publisher": placement.publisher,
            "ts": int(now * 1000),
        }
        append_to_stream(pipe, uid, orjson.dumps(document), self.limits.stream_maxlen)
        await execute(pipe)
        return True

    async def record_conversions(self, conversions: Iterable[Conversion]) -> list[bool]:
        """Count attributed purchases, once per order id; True where newly counted."""
        pipe = self.redis.pipeline(transaction=False)
        for c in conversions:
            await self._record_conversion(
                [
                    keys.order_marker(c.advertiser, c.order),
                    keys.daily_stats(c.advertiser, day_of(c.at)),
                    keys.campaign_totals(c.advertiser),
                ],
                [c.key, str(c.revenue), ORDER_MARKER_TTL_SECONDS, c.campaign],
                pipe,
            )
        return [bool(r) for r in await execute(pipe)]

    async def daily_stats(
        self, advertiser: str, days: Sequence[str]
    ) -> dict[str, dict[str, Decimal]]:
        """Raw report counters of each day: field -> value."""
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(keys.daily_stats(advertiser, day))
        replies = await execute(pipe) if days else []
        return {
            day: {text(k): Decimal(text(v)) for k, v in reply.items()}
            for day, reply in zip(days, replies, strict=True)
        }

    async def campaign_totals(self, advertisers: Sequence[str]) -> dict[str, dict[str, int]]:
        pipe = self.redis.pipeline(transaction=False)
        for advertiser in advertisers:
            pipe.hgetall(keys.campaign_totals(advertiser))
        replies = await execute(pipe) if advertisers else []
        return {
            advertiser: {text(k): int(v) for k, v in reply.items()}
            for advertiser, reply in zip(advertisers, replies, strict=True)
        }
