"""`Store`: what the rest of Kaeru holds of Redis — shoppers' events and profiles, catalogs,
forgetting, with the ledger and the campaigns beside it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from adserver.config.redis_url import is_cluster_url
from adserver.core.product import Product
from adserver.core.shopper import Shopper, ShopperEvent
from adserver.core.value_record import order_fingerprint
from adserver.store import keys, scripts
from adserver.store.base import (
    MAX_ADVERTISERS_PER_SHOPPER,
    Command,
    Conversion,
    PackedCommand,
    Placement,
    StoreLimits,
    day_of,
    execute,
    histories_of,
    pack_text,
    raise_first_error,
    send_commands,
    send_with_scripts,
    write_in_order,
)
from adserver.store.base import text as _text
from adserver.store.campaign_store import CampaignStore
from adserver.store.catalog_store import CatalogUpload
from adserver.store.cluster import RedisCluster, connect_cluster
from adserver.store.customer_values import CustomerValues, order_cents
from adserver.store.email_audiences import EmailAudiences
from adserver.store.identity_links import IdentityLinks, Linked
from adserver.store.ledger import Ledger

__all__ = [
    "Conversion",
    "Linked",
    "Placement",
    "RedisError",
    "Store",
    "StoreLimits",
    "connect",
    "day_of",
]

log = logging.getLogger(__name__)
MAX_PURCHASED = 200
MARK_TTL_SECONDS = 7 * 86400  # a write's stream mark, should its process never confirm it
POPULAR_DEPTH = 50


def connect(url: str, *, timeout: float = 2.0) -> Redis:
    """An asyncio client for `url`: redis://, rediss:// or unix:// for one Redis,
    redis+cluster://h1:p1,h2:p2 (or rediss+cluster://) for a Redis Cluster. The cluster client
    (see `store.cluster`) offers the same command API, hence the one type for both."""
    if is_cluster_url(url):
        return cast(Redis, connect_cluster(url, timeout))
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def _conversions_cap(event: ShopperEvent, browser_per_day: int) -> int:
    """The RECORD_EVENT conversions cap: none (0) for the shop's server, -1 (no attribution)
    for a browser-reported purchase past its client's cap, else the daily cap per shopper."""
    if event.server_reported:
        return 0
    return browser_per_day if event.attributable else -1


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """What the in-process cache needs each refresh: versions and popular items."""

    versions: Mapping[str, int]
    popular: Mapping[str, list[str]]


class Store:
    def __init__(self, redis: Redis, limits: StoreLimits | None = None) -> None:
        self.redis = redis
        self.limits = limits or StoreLimits()
        self._record_event = redis.register_script(scripts.RECORD_EVENT)
        self._load_shopper = redis.register_script(scripts.LOAD_SHOPPER)
        self._append_events = redis.register_script(scripts.APPEND_EVENTS)
        # Per shard, the writes seen acknowledged whose stream marks the next append deletes.
        self._confirmed: dict[int, list[str]] = {}
        self.ledger = Ledger(redis, self.limits)
        self.campaigns = CampaignStore(redis)
        self.identities = IdentityLinks(redis, self.limits)
        self.email_audiences = EmailAudiences(redis, self.limits, self._load_shopper.sha)
        self.values = CustomerValues(redis, self.limits.lookback_seconds)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        """Whether Redis answers; on a cluster, whether every master does (see `cluster`)."""
        if isinstance(self.redis, RedisCluster):
            return await self.redis.ping_primaries()
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    # -- shopper events -------------------------------------------------------------------

    async def record_events(
        self, uid: str, events: Sequence[ShopperEvent], now: float | None = None
    ) -> list[Conversion]:
        """Write a batch of one shopper's events in one pipelined round trip: the profile
        (per-user script) and the event stream the related-items worker learns from. A new
        purchase attributed to an ad click or impression is then counted as a conversion (a
        second round trip, for purchases only)."""
        at = time.time() if now is None else now
        return await self.record_many([(uid, event, at) for event in events])

    async def record_many(
        self,
        entries: Iterable[tuple[str, ShopperEvent, float]],
        writes: Sequence[tuple[str, int]] = (),
    ) -> list[Conversion]:
        """Like record_events for several shoppers and times at once (replays, batching).
        Returns the conversions counted by this call.

        `writes` names the writes the entries belong to, in order: (write id, entry count).
        Each write's events reach the stream once, however often it is sent (a write that
        Redis applied but whose answer was lost is sent again by the event writer): the shard's
        marks say which writes are there (see `keys.event_marks`). The profile script is
        idempotent for a shopper's events sent again in order (views and carts are sets with
        the event's time, purchases are deduplicated by order id), and the event writer keeps
        each shopper's order. A purchase whose order was recorded before comes back with the
        attribution it got then and goes to the ledger again, which counts each order once: so
        an event replayed because its conversion failed to be counted (the second round trip)
        is counted now, and a true repeat is not."""
        entries = list(entries)
        appends = self._appends(entries, writes)
        try:
            replies = await self._write_events(entries, appends)
            conversions = [
                Conversion(
                    event.advertiser,
                    event.order or "",
                    event.revenue or Decimal(0),
                    _text(reply[1]),
                    _text(reply[2]),
                    at,
                    event.server_reported,
                    uid,
                    _text(reply[3]) if len(reply) > 3 else "",
                )
                for (uid, event, at), reply in zip(entries, replies, strict=True)
                if event.kind == "purchase" and len(reply) >= 3 and _text(reply[1])
            ]
            counted = await self.ledger.record_conversions(conversions) if conversions else []
            await self._note_repeats(entries, replies)
        except BaseException:
            for shard, _, confirmed, _ in appends:  # their marks: deleted by a later append
                self._confirmed.setdefault(shard, []).extend(confirmed)
            raise
        for shard, write, _, _ in appends:
            if write:
                self._confirmed.setdefault(shard, []).append(write)
        return [c for c, new in zip(conversions, counted, strict=True) if new]

    async def _note_repeats(
        self, entries: list[tuple[str, ShopperEvent, float]], replies: list[Any]
    ) -> None:
        """The repeat gaps of new purchases (the products their shopper bought before, with
        when: the profile script's reply) into the shops' gaps, in one more round trip, only
        when there are any. A lost answer loses those gaps (a replay reports the order as seen
        and notes nothing): Redis trouble here is logged, never the write's failure."""
        gaps = [
            (uid, event.advertiser, _text(sku), (at * 1000 - float(before)) / 86_400_000, at)
            for (uid, event, at), reply in zip(entries, replies, strict=True)
            if event.kind == "purchase" and len(reply) > 4
            for sku, before in zip(reply[4][0::2], reply[4][1::2], strict=True)
        ]
        if gaps:
            try:
                await self.values.note_repeats(gaps)
            except (RedisError, OSError) as exc:
                log.warning("repeat gaps not noted: %s", exc)

    def _appends(
        self, entries: list[tuple[str, ShopperEvent, float]], writes: Sequence[tuple[str, int]]
    ) -> list[tuple[int, str, list[str], list[bytes]]]:
        """Per write and shard: (shard, write id, marks to delete there, event documents)."""
        spans = list(writes) if writes else [("", len(entries))]
        if sum(n for _, n in spans) != len(entries):
            raise ValueError("writes must cover the entries exactly")
        appends: list[tuple[int, str, list[str], list[bytes]]] = []
        start = 0
        for write, n in spans:
            shards: dict[int, list[bytes]] = {}
            for uid, event, at in entries[start : start + n]:
                document = _event_document(uid, event, int(at * 1000))
                shards.setdefault(keys.event_shard(uid), []).append(document)
            for shard, documents in shards.items():
                appends.append((shard, write, self._confirmed.pop(shard, []), documents))
            start += n
        return appends

    async def _write_events(
        self,
        entries: list[tuple[str, ShopperEvent, float]],
        appends: list[tuple[int, str, list[str], list[bytes]]],
    ) -> list[Any]:
        """One round trip: per event the profile script, per write and shard the stream
        append, per shopper and shop the e-mail audience's activity. Profile script replies
        only."""
        commands: list[Command] = [
            self._profile_command(uid, event, int(at * 1000)) for uid, event, at in entries
        ]
        now_ms = int(time.time() * 1000)
        maxlen = max(1, -(-self.limits.stream_maxlen // keys.EVENT_SHARDS))
        for shard, write, confirmed, documents in appends:
            commands.append(
                (
                    *("EVALSHA", self._append_events.sha, 2),
                    *(keys.event_stream(shard), keys.event_marks(shard)),
                    *(write, now_ms, MARK_TTL_SECONDS, maxlen, len(confirmed)),
                    *confirmed,
                    *documents,
                )
            )
        # The shoppers' last activity in their shops' e-mail audiences (only those listed).
        activity = ((uid, event.advertiser, at) for uid, event, at in entries)
        commands += self.email_audiences.bump_commands(activity)
        # The shops' buyers' indexes (the shop's slot, so beside the profile script, not in it).
        bought: dict[tuple[str, str], float] = {}
        for uid, event, at in entries:
            if event.kind == "purchase":
                key = (uid, event.advertiser)
                bought[key] = max(at, bought.get(key, at))
        for (uid, adv), at in bought.items():
            commands += self.values.note_buyer_commands(uid, adv, at)
        sources = {
            self._record_event.sha: scripts.RECORD_EVENT,
            self._append_events.sha: scripts.APPEND_EVENTS,
        }
        replies = await send_with_scripts(self.redis, commands, sources)
        raise_first_error(replies)
        return replies[: len(entries)]

    def _profile_command(self, uid: str, event: ShopperEvent, now_ms: int) -> Command:
        """EVALSHA of the profile script (sent as is: going through redis-py's Script object
        would send SCRIPT EXISTS first, a second round trip on the pixel's hot path)."""
        adv = event.advertiser
        cap = MAX_PURCHASED if event.kind == "purchase" else self.limits.max_views
        command = PackedCommand(
            (
                "EVALSHA",
                self._record_event.sha,
                9,
                *keys.profile_keys(uid, adv),
                event.kind,
                adv,
                now_ms,
                self.limits.lookback_seconds,
                cap,
                event.order or "",
                str(event.revenue or 0),
                self.limits.click_window_seconds * 1000,
                self.limits.view_window_seconds * 1000,
                _conversions_cap(event, self.limits.browser_conversions_per_day),
                day_of(now_ms / 1000),
                order_cents(event.revenue or Decimal(0)) if event.kind == "purchase" else 0,
                order_fingerprint(event.order or "") if event.kind == "purchase" else "",
                *event.items,
            )
        )
        # Packed here, as text (tests/test_store_keys.py): hiredis spends a sprintf per
        # argument, and this is the pixel's longest command (bench/PROFILING.md).
        command.resp = pack_text(command)
        return command

    async def knows(self, uid: str, advertiser: str) -> bool:
        """Whether Kaeru keeps this shopper's events or their last touch at `advertiser` (a
        click sets it for the click window): nothing of either once they were forgotten."""
        touch, seen = keys.user_touch(uid, advertiser), keys.user_advertisers(uid)
        return bool(await self.redis.exists(touch, seen))

    async def load_shopper(self, uid: str | None, now: float | None = None) -> Shopper:
        """The shopper's recent histories in one round trip (one server-side script)."""
        if uid is None:
            return Shopper(None)
        now = time.time() if now is None else now
        cutoff_ms = int((now - self.limits.lookback_seconds) * 1000)
        sha = self._load_shopper.sha
        command: Command = (
            *("EVALSHA", sha, 1, keys.user_advertisers(uid), keys.user_prefix(uid)),
            *(cutoff_ms, MAX_ADVERTISERS_PER_SHOPPER),
        )
        replies = await send_with_scripts(self.redis, [command], {sha: scripts.LOAD_SHOPPER})
        raise_first_error(replies)
        (reply,) = replies
        today = day_of(now)
        histories = histories_of(reply, today)
        return Shopper(uid, tuple(histories))

    async def forget(self, uid: str, advertisers: Iterable[str]) -> int:
        """Erase every key about this shopper (at the given shops and any shop their profile
        names), atomically; returns how many keys existed. Idempotent."""
        known: Any = await self.redis.zrange(keys.user_advertisers(uid), 0, -1)
        shops = dict.fromkeys([*advertisers, *(_text(a) for a in known)])
        doomed = [keys.user_advertisers(uid), *keys.user_link_keys(uid)]
        for shop in shops:
            doomed += keys.all_user_keys(uid, shop)
        # First the mark that refuses this shopper's older events (one waiting for a feed or a
        # replay in another process would bring the profile back), then the erasure.
        forgotten_ms = int(time.time() * 1000)
        await self.redis.set(
            keys.user_forgotten(uid), forgotten_ms, ex=self.limits.erasure_hold_seconds
        )
        # One DEL is atomic, and all these keys share the {uid} slot (one node on a cluster);
        # the shops' e-mail audience indexes (their slots) are cleaned in the same round trip.
        commands: list[Command] = [("DEL", *doomed)]
        commands += self.email_audiences.forget_commands(uid, shops)
        commands += CustomerValues.forget_commands(uid, shops)  # the buyers' indexes
        replies = await send_commands(self.redis, commands)
        raise_first_error(replies)
        await CustomerValues.forget_gaps(self.redis, uid, list(shops))
        return int(replies[0])

    async def forget_reached(self, linked: Linked, advertisers: Iterable[str]) -> int:
        """Forget every uid of `linked` (see `IdentityLinks.linked`: everything reachable
        through identity links), then erase its links; how many keys existed. The caller drops
        what it keeps buffered for those uids first."""
        shops = list(advertisers)
        deleted = 0
        for uid in sorted(linked.uids):
            deleted += await self.forget(uid, shops)
        return deleted + await self.identities.erase(linked)

    async def read_events(self, count: int = 100) -> list[dict[str, Any]]:
        """The newest `count` stream entries of all shards, oldest first (by stream id, so
        entries of different shards within one millisecond may come in either order; for
        tools and tests)."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(keys.EVENT_SHARDS):
            pipe.xrevrange(keys.event_stream(shard), count=count)
        entries = [
            (tuple(int(part) for part in _text(entry_id).split("-")), shard, fields)
            for shard, shard_entries in enumerate(await execute(pipe))
            for entry_id, fields in shard_entries or []
        ]
        newest = sorted(entries, key=lambda entry: entry[:2])[-count:] if count > 0 else []
        return [orjson.loads((fields or {})[b"d"]) for _, _, fields in newest]

    # -- catalog --------------------------------------------------------------------------

    def catalog_upload(self, advertiser: str) -> CatalogUpload:
        """A new catalog to be filled as its feed is read, then committed (or discarded)."""
        return CatalogUpload(self.redis, advertiser)

    async def replace_catalog(self, advertiser: str, products: Iterable[Product]) -> int:
        """Atomically swap in a new catalog (built aside, then RENAMEd); returns its version."""
        upload = self.catalog_upload(advertiser)
        batch: list[Product] = []
        for product in products:
            batch.append(product)
            if len(batch) >= 1000:
                await upload.add(batch)
                batch = []
        await upload.add(batch)
        if not upload.products:  # RENAME needs a key: an empty catalog is an empty hash
            await write_in_order(self.redis, ("DEL", keys.catalog(advertiser)))
            version = await self.redis.hincrby(keys.CATALOG_VERSIONS, advertiser, 1)
            return int(version)
        return await upload.commit()

    async def load_catalog(self, advertiser: str) -> dict[str, Product]:
        raw = await self.redis.hgetall(keys.catalog(advertiser))
        return {_text(sku): Product.from_json(doc) for sku, doc in raw.items()}

    async def catalog_pages(
        self, advertiser: str, count: int = 200
    ) -> AsyncIterator[list[tuple[str, bytes | str]]]:
        """The catalog's (sku, product JSON) pairs, about `count` at a time (HSCAN: a large
        catalog never comes back as one reply that takes seconds to decode). A catalog
        replaced meanwhile may give a mix: compare `catalog_version` before and after."""
        cursor = 0
        while True:
            reply: Any = await self.redis.hscan(keys.catalog(advertiser), cursor, count=count)
            cursor, page = int(reply[0]), reply[1]
            yield [(_text(sku), doc) for sku, doc in page.items()]
            if not cursor:
                return

    async def catalog_version(self, advertiser: str) -> int:
        return int(await self.redis.hget(keys.CATALOG_VERSIONS, advertiser) or 0)

    async def catalog_snapshot(self, advertisers: Sequence[str]) -> CatalogSnapshot:
        """Catalog versions and top popular items of every advertiser, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.CATALOG_VERSIONS)
        for advertiser in advertisers:
            pipe.zrevrange(keys.popular(advertiser), 0, POPULAR_DEPTH - 1)
        versions_raw, *popular_raw = await execute(pipe)
        versions = {_text(a): int(v) for a, v in versions_raw.items()}
        popular = {
            a: [_text(s) for s in skus] for a, skus in zip(advertisers, popular_raw, strict=True)
        }
        return CatalogSnapshot(versions, popular)

    # -- delivery counters ----------------------------------------------------------------


def _event_document(uid: str, event: ShopperEvent, now_ms: int) -> bytes:
    document: dict[str, Any] = {
        "uid": uid,
        "advertiser": event.advertiser,
        "event": event.kind,
        "items": list(event.items),
        "ts": now_ms,
    }
    if event.kind == "purchase":
        document["order"] = event.order
        document["revenue"] = None if event.revenue is None else str(event.revenue)
        document["currency"] = event.currency
        document["lines"] = [
            {
                "id": x.sku,
                "price": None if x.price is None else str(x.price),
                "quantity": x.quantity,
            }
            for x in event.lines
        ]
    return orjson.dumps(document)
