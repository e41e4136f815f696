"""Delivery accounting: impressions, renders, clicks and conversions, per advertiser and day
(for reports), per campaign (for CTR estimates) and on the shopper (frequency caps, the last
touch for attribution)."""

from __future__ import annotations

import hashlib
import secrets
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
PUBLISHERS_TTL_SECONDS = 2 * 86400
RENDER_BEACON_SECONDS = 3600  # a render beacon counts if hit within this of the ad served
CLOCK_SKEW_SECONDS = 300  # how far ahead a token's issue time may be (see Signer.verify)


def new_impression_id(now: float) -> str:
    """Names one served impression (in its render beacon and click links): the unix hour it
    was served in, then 64 random bits."""
    return f"{int(now // 3600)}.{secrets.token_hex(8)}"


def impression_hour(impression: str) -> int | None:
    hour, _, rest = impression.partition(".")
    return int(hour) if hour.isdigit() and len(rest) == 16 else None


def render_markers_expire_at(hour: int) -> int:
    """When the render markers of impressions served in `hour` may go: every beacon of them
    has expired by then."""
    return (hour + 1) * 3600 + RENDER_BEACON_SECONDS + CLOCK_SKEW_SECONDS


@dataclass(frozen=True, slots=True)
class Shown:
    """An ad served (an impression: counted for reports, CTR estimates and, for a known
    shopper, caps and the last touch) or, with `rendered`, its creative displayed on the page
    (a render: counted for reports only, once per `impression` id). An impression past the
    per-client cap (`counted` False) still updates the shopper's caps and last touch. With
    `viewed` (and `rendered`), recommendations seen on the shop's page: `viewed` impressions
    of the placement, counted once per `impression` id and strategy (see Ledger.record_shown)."""

    uid: str | None
    placement: Placement
    skus: tuple[str, ...]
    at: float
    rendered: bool = False
    impression: str = ""
    counted: bool = True
    viewed: int = 0


@dataclass(frozen=True, slots=True)
class Click:
    """A click link followed; `token_id` names the link (a replay of it counts once). With
    `touch_only`, a click already counted that the landing page reported back (its click id):
    only the shopper's last touch is set (see Ledger.record_click_touch)."""

    uid: str | None
    placement: Placement
    sku: str
    at: float
    token_id: str = ""
    touch_only: bool = False


def _rest(placement: Placement) -> str:
    return f"{placement.strategy}\t{placement.size}"


class _DayCounters:
    """The COUNT_STATS call of one advertiser and day: counters and render markers."""

    def __init__(self, advertiser: str, day: str) -> None:
        self.keys = [keys.daily_stats(advertiser, day), keys.publishers_of_day(advertiser, day)]
        self.advertiser = advertiser
        self.counts: Counter[tuple[str, str, str, str]] = Counter()
        self.renders: list[tuple[str, str, str, str, int, int, str]] = []
        self.expiries: dict[str, int] = {}

    def add_impression(self, placement: Placement) -> None:
        self.counts[("imp", placement.campaign, placement.publisher, _rest(placement))] += 1

    def add_render(
        self, placement: Placement, impression: str, now: float, viewed: int = 0
    ) -> bool:
        """A render (`viewed` 0) or `viewed` impressions of recommendations seen, once per
        impression id (and, for those, strategy: one answer's products have several)."""
        hour = impression_hour(impression)
        if hour is None or render_markers_expire_at(hour) <= now + 60:
            return False  # too late to know whether it was counted before: at most once
        marker = keys.render_markers(self.advertiser, hour)
        if marker not in self.expiries:
            self.keys.append(marker)
            self.expiries[marker] = render_markers_expire_at(hour)
        index = self.keys.index(marker) + 1
        metric = "imp" if viewed else "render"
        fields = (metric, placement.campaign, placement.publisher, _rest(placement))
        once = f"{impression}/{placement.strategy}" if viewed else impression
        self.renders.append((*fields, max(viewed, 1), index, once))
        return True

    def command(self, sha: str, limits: StoreLimits) -> Command:
        args: list[str | int] = [
            limits.max_publishers_per_day,
            PUBLISHERS_TTL_SECONDS,
            STATS_TTL_SECONDS,
        ]
        for (metric, campaign, publisher, rest), n in self.counts.items():
            args += [metric, campaign, publisher, rest, n, 0, ""]
        for metric, campaign, publisher, rest, n, index, impression in self.renders:
            args += [metric, campaign, publisher, rest, n, index, impression]
        return ("EVALSHA", sha, len(self.keys), *self.keys, *args)


def hour_of(timestamp: float) -> str:
    """YYYYMMDDHH (UTC): what names an impression's caps member (scripts.COUNT_IMPRESSION)."""
    return time.strftime("%Y%m%d%H", time.gmtime(timestamp))


class Ledger:
    def __init__(self, redis: Redis, limits: StoreLimits) -> None:
        self.redis = redis
        self.limits = limits
        self.touch_ttl = limits.click_window_seconds
        self._count_impression = redis.register_script(scripts.COUNT_IMPRESSION)
        self._count_stats = redis.register_script(scripts.COUNT_STATS)
        self._record_conversion = redis.register_script(scripts.RECORD_CONVERSION)
        self._record_click = redis.register_script(scripts.RECORD_CLICK)
        self._set_click_touch = redis.register_script(scripts.SET_CLICK_TOUCH)

    async def record_impression(
        self, uid: str | None, placement: Placement, skus: Sequence[str], now: float | None = None
    ) -> None:
        """Count an ad served: report counts, campaign totals, and (for a known shopper) the
        frequency counters and the last impression, in one round trip."""
        at = time.time() if now is None else now
        await self.record_shown([Shown(uid, placement, tuple(skus), at)])

    async def record_shown(self, shown: Iterable[Shown]) -> int:
        """Impressions and renders in one round trip (group commit): per shopper shown an ad
        the frequency counters and the last touch (a script), then per advertiser and day the
        report counters summed over the batch (a script: publisher ids bounded, a render
        counted once per impression) and the CTR totals. Returns how many renders were not
        counted (already counted, or too late to tell)."""
        sha = self._count_impression.sha
        commands: list[Command] = []
        days: dict[tuple[str, str], _DayCounters] = {}
        totals: Counter[tuple[str, str]] = Counter()
        late, wall = 0, time.time()
        for one in shown:
            placement, now = one.placement, one.at
            adv = placement.advertiser
            day = days.setdefault((adv, day_of(now)), _DayCounters(adv, day_of(now)))
            if one.rendered:
                late += not day.add_render(placement, one.impression, wall, one.viewed)
                continue
            if one.uid is not None:
                caps, touch = keys.user_caps(one.uid, adv), keys.user_touch(one.uid, adv)
                commands.append(
                    (
                        *("EVALSHA", sha, 2, caps, touch, hour_of(now), int(now * 1000)),
                        *(self.touch_ttl, placement.campaign, placement.key),
                        *one.skus,
                    )
                )
            if one.counted:
                day.add_impression(placement)
                totals[(keys.campaign_totals(adv), f"imp:{placement.campaign}")] += 1
        stats_sha = self._count_stats.sha
        first_stats = len(commands)
        for day in days.values():
            if day.counts or day.renders:
                commands.append(day.command(stats_sha, self.limits))
        last_stats = len(commands)
        commands += [("HINCRBY", key, field, n) for (key, field), n in totals.items()]
        for day in days.values():
            commands += [("EXPIREAT", key, at) for key, at in day.expiries.items()]
        if not commands:
            return late
        sources = {sha: scripts.COUNT_IMPRESSION, stats_sha: scripts.COUNT_STATS}
        replies = await send_with_scripts(self.redis, commands, sources)
        raise_first_error(replies)
        return late + sum(int(r) for r in replies[first_stats:last_stats])

    async def record_click(
        self,
        uid: str | None,
        placement: Placement,
        sku: str,
        now: float | None = None,
        token_id: str = "",
    ) -> bool:
        """Count a click once per click link for the link's lifetime (`token_id` names the
        link; a replay from the outage buffer, however late, finds its marker), remember it on
        the shopper for attribution, put it on the stream. Returns False for a replay, which
        changes nothing."""
        now = time.time() if now is None else now
        digest = hashlib.sha256(token_id.encode()).hexdigest()[:32] if token_id else ""
        day = day_of(now)
        counted = await self._record_click(
            [
                keys.click_marker(placement.advertiser, digest or str(now)),
                keys.daily_stats(placement.advertiser, day),
                keys.campaign_totals(placement.advertiser),
                keys.publishers_of_day(placement.advertiser, day),
            ],
            [
                *(placement.campaign, placement.publisher, _rest(placement)),
                self.limits.click_link_seconds,
                self.limits.max_publishers_per_day,
                PUBLISHERS_TTL_SECONDS,
            ],
        )
        if not counted:
            return False
        pipe = self.redis.pipeline(transaction=False)
        if uid is not None:
            touch = keys.user_touch(uid, placement.advertiser)
            pipe.hset(touch, mapping={"click": int(now * 1000), "click_key": placement.key})
            pipe.expire(touch, self.touch_ttl)
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

    async def record_click_touch(self, uid: str, placement: Placement, at: float) -> bool:
        """Make a click counted before (a click id the landing page sent back) the shopper's
        last click touch, unless a later click is there; counts nothing. True when set."""
        touch = keys.user_touch(uid, placement.advertiser)
        ttl = self.touch_ttl
        # round: `at` came from a click id's milliseconds (ms / 1000), which int() may cut to
        # the millisecond before; the touch keeps the click's own time (see click_order_marker)
        clicked = round(at * 1000)
        return bool(await self._set_click_touch([touch], [clicked, placement.key, ttl]))

    async def record_conversions(self, conversions: Iterable[Conversion]) -> list[bool]:
        """Count attributed purchases, once per shopper and order id (a made-up shopper who
        reports an order id first does not take the real buyer's conversion) and, attributed
        to a click, once per click and order id (the tag's purchase on the landing page and
        the postback with that click's id are one order); True where newly counted. The
        shop server's revenue for an order the browser reported first replaces the browser's."""
        pipe = self.redis.pipeline(transaction=False)
        for c in conversions:
            campaign, publisher, rest = (c.key.split("\t", 2) + ["", ""])[:3]
            day = day_of(c.at)
            by_click = [keys.click_order_marker(c.advertiser, c.order, c.click_ms)]
            await self._record_conversion(
                [
                    keys.order_marker(c.advertiser, c.order, c.uid),
                    keys.daily_stats(c.advertiser, day),
                    keys.campaign_totals(c.advertiser),
                    keys.publishers_of_day(c.advertiser, day),
                    *(by_click if c.touch == "click" and c.click_ms else []),
                ],
                [
                    *(campaign, publisher, rest, str(c.revenue), ORDER_MARKER_TTL_SECONDS),
                    *(self.limits.max_publishers_per_day, PUBLISHERS_TTL_SECONDS),
                    "1" if c.server_reported else "0",
                ],
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
