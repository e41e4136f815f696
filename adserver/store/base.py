"""Pieces every part of the store shares: reply narrowing, limits, the stream append."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import hiredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adserver.core.shopper import AdvertiserHistory
from adserver.core.value_record import RecordError, decode_record
from adserver.store import keys

MAX_ADVERTISERS_PER_SHOPPER = 5  # the profile script reads the newest few shops of a shopper


def text(value: bytes | str) -> str:
    """redis-py 8 (RESP3) types replies as bytes or str: make it str."""
    return value.decode() if isinstance(value, bytes) else value


def day_of(timestamp: float) -> str:
    """The UTC day of a Unix time, `YYYYMMDD`."""
    return _day_text(int(timestamp // 86400))


@functools.lru_cache(maxsize=8)
def _day_text(day: int) -> str:  # one strftime a day, not one an event (the pixel's path)
    return time.strftime("%Y%m%d", time.gmtime(day * 86400))


@dataclass(frozen=True, slots=True)
class StoreLimits:
    lookback_seconds: int = 30 * 86400
    max_views: int = 50
    stream_maxlen: int = 1_000_000
    click_window_seconds: int = 30 * 86400  # a purchase after a click within it converts
    view_window_seconds: int = 86400  # ... else after an impression within it
    # How long an erased shopper's older events are refused (see keys.user_forgotten): the
    # longest a view waits for a feed (KAERU_FEED_GRACE_SECONDS) plus time for buffered replays.
    erasure_hold_seconds: int = 300 + 300
    click_link_seconds: int = 30 * 86400 + 300  # a click link counts once within its lifetime
    max_publishers_per_day: int = 200  # per advertiser; more fold into 'other' (0: no bound)
    browser_conversions_per_day: int = 5  # per shopper and advertiser (0: no bound)
    uids_per_identifier: int = 5  # identity links: the newest kept per identifier
    identifiers_per_uid: int = 10  # ... and per shopper
    email_audience_cap: int = 100_000  # per advertiser: shoppers the e-mail listing keeps


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an ad ran, as reports break it down."""

    advertiser: str
    campaign: str
    publisher: str
    strategy: str
    size: str

    @property
    def key(self) -> str:
        """The attribution key kept on the shopper and the report field suffix."""
        return f"{self.campaign}\t{self.publisher}\t{self.strategy}\t{self.size}"


@dataclass(frozen=True, slots=True)
class Conversion:
    """A purchase attributed to an ad: `touch` is 'click' or 'view', `key` a Placement key."""

    advertiser: str
    order: str
    revenue: Decimal
    touch: str
    key: str
    at: float
    server_reported: bool = False  # by the shop's server: its revenue replaces the browser's
    uid: str = ""  # the shopper who bought: an order counts once per shopper and order id
    click_ms: str = ""  # the click's time (ms) when attributed to a click: once per click too

    @property
    def campaign(self) -> str:
        return self.key.split("\t", 1)[0]


Command = tuple[bytes | str | int, ...]
# hiredis' stub types the argument as a 1-tuple; it takes a tuple of any length.
_pack_command = cast(Callable[[tuple[object, ...]], bytes], hiredis.pack_command)


def stream_command(uid: str | None, document: bytes, maxlen: int) -> Command:
    """XADD of an event to the shopper's shard of the stream; `maxlen` caps all shards
    together (approximately, which lets Redis trim whole nodes)."""
    shard_maxlen = max(1, -(-maxlen // keys.EVENT_SHARDS))
    stream = keys.event_stream(keys.event_shard(uid))
    return ("XADD", stream, "MAXLEN", "~", shard_maxlen, "*", "d", document)


def append_to_stream(pipe: Any, uid: str | None, document: bytes, maxlen: int) -> None:
    """Queue an event on the shopper's shard of the stream (see `stream_command`)."""
    pipe.execute_command(*stream_command(uid, document, maxlen))


class PackedCommand(tuple[bytes | str | int, ...]):
    """A command whose RESP was made already (`resp`, what `pack` would make of it): the
    pixel's profile script call is packed by `pack_text` (`Store._profile_command`)."""

    resp: bytes


def pack_text(command: Command) -> bytes:
    """`pack` of a command of text and integers (no bytes), made in Python: an f-string per
    argument and one encode are cheaper than hiredis's sprintf per argument
    (bench/PROFILING.md). hiredis packs it when an argument is not ASCII (lengths in bytes)."""
    texts: list[str] = []
    for arg in command:
        if type(arg) is str:
            texts.append(arg)
        elif type(arg) is int:
            texts.append(str(arg))
        else:  # bytes, a Decimal: not this function's
            return pack(tuple(command))
    body = "".join([f"${len(text)}\r\n{text}\r\n" for text in texts])
    if not body.isascii():
        return _pack_command(command)
    return f"*{len(texts)}\r\n{body}".encode()


def pack(command: Command) -> bytes:
    """A command in RESP, as redis-py would send it, packed by hiredis (C). Arguments other
    than str, bytes, int and float (a Decimal, say) are sent as their text."""
    if type(command) is PackedCommand:
        return command.resp
    try:
        return _pack_command(command)
    except TypeError:
        return _pack_command(tuple(arg if isinstance(arg, bytes) else str(arg) for arg in command))


async def send_commands(redis: Any, commands: list[Command]) -> list[Any]:
    """Commands in one round trip; replies in order, error replies as exceptions (like
    `execute(pipe, raise_on_error=False)`).

    On one Redis the commands are packed here and written on one pooled connection: for the
    pixel's batches redis-py's per-argument packing and pipeline bookkeeping cost more than
    the rest of the request (bench/RESULTS.md). A cluster routes each command by its slot,
    so there it is redis-py's cluster pipeline."""
    if isinstance(redis, RedisCluster):
        pipe = redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await execute(pipe, raise_on_error=False)
    pool = redis.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(b"".join(map(pack, commands)), check_health=False)
        replies: list[Any] = []
        # One deadline (the socket timeout) for all the replies, not a timer per reply.
        async with asyncio.timeout(connection.socket_timeout):
            for _ in commands:
                try:
                    replies.append(await connection.read_response(timeout=math.inf))
                except ResponseError as exc:
                    replies.append(exc)
        return replies
    except TimeoutError as exc:
        await connection.disconnect()
        raise RedisTimeoutError(f"no reply within {connection.socket_timeout} s") from exc
    except BaseException:
        await connection.disconnect()  # replies left unread would answer the next user
        raise
    finally:
        await pool.release(connection)


def raise_first_error(replies: Sequence[Any]) -> None:
    """Pipelined replies come back with their errors in place: raise the first one."""
    failure = next((reply for reply in replies if isinstance(reply, Exception)), None)
    if failure is not None:
        raise failure


async def send_with_scripts(
    redis: Any, commands: list[Command], sources: Mapping[str, str]
) -> list[Any]:
    """`send_commands` for batches holding EVALSHA of scripts given as sha -> source: a Redis
    that lost its script cache (restarted, failed over) gets each missing script once, and only
    the calls that failed are sent again."""
    replies = await send_commands(redis, commands)
    missed = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missed:
        for sha in {str(commands[n][1]) for n in missed}:
            await redis.script_load(sources[sha])
        retried = await send_commands(redis, [commands[n] for n in missed])
        for n, reply in zip(missed, retried, strict=True):
            replies[n] = reply
    return replies


async def write_in_order(redis: Any, *commands: tuple[Any, ...]) -> list[Any]:
    """Writes that must land in this order (data first, then the version that announces it):
    on one Redis a MULTI/EXEC, atomic; on a cluster, where the keys may live on different
    nodes, one command after the other, each acknowledged before the next is sent (a failure
    in between leaves the earlier ones done and raises, so the caller retries)."""
    if isinstance(redis, RedisCluster):
        return [await redis.execute_command(*command) for command in commands]
    pipe = redis.pipeline(transaction=True)
    for command in commands:
        pipe.execute_command(*command)
    return await execute(pipe)


async def execute(pipe: Any, raise_on_error: bool = True) -> list[Any]:
    """Run a pipeline and always give its connection back: redis-py leaves it held when the
    server vanishes while the pipeline loads its scripts (then warns when it is collected)."""
    try:
        result: list[Any] = await pipe.execute(raise_on_error=raise_on_error)
        return result
    finally:
        await pipe.reset()


def caps_of(fields: Sequence[Any], today: str) -> dict[str, int]:
    """Today's frequency counters from the caps zset (see scripts.COUNT_IMPRESSION): each
    member '<YYYYMMDDHH><TAB>c:<campaign><TAB>i:<sku>...' counts its impressions (its score)
    once for each counter it names; members of other days are not counted."""
    caps: dict[str, int] = {}
    for i in range(0, len(fields), 2):
        name = text(fields[i])
        if name.startswith(today) and name[10:11] == "\t":
            n = int(float(fields[i + 1]))
            for counter in name[11:].split("\t"):
                caps[counter] = caps.get(counter, 0) + n
    return caps


SHOP_FIELDS = 8  # per advertiser in `scripts.LOAD_SHOPPER`'s reply


def history_of(fields: Sequence[Any], today: str) -> AdvertiserHistory:
    """One shop's part of the profile script's reply (see `scripts.LOAD_SHOPPER`); `today`
    (YYYYMMDD, UTC) picks the caps counters that count. A value record that is not one is
    left out (None), never made up."""
    advertiser, last_seen, viewed, cart, purchased, facts, caps, value = fields
    revenue, orders, cart_since = (text(f) for f in facts)
    record = None
    if value:
        try:
            record = decode_record(value)
        except RecordError:
            pass
    # float() and int() take the reply's bytes as they are; only names become str.
    return AdvertiserHistory(
        advertiser=text(advertiser),
        last_seen=float(last_seen) / 1000,
        viewed=tuple(map(text, viewed[0::2])),
        view_times=tuple([float(t) / 1000 for t in viewed[1::2]]),
        cart=tuple(map(text, cart)),
        bought=tuple(map(text, purchased[0::2])),
        bought_times=tuple([float(t) / 1000 for t in purchased[1::2]]),
        revenue=Decimal(revenue),
        orders=int(orders),
        cart_since=float(cart_since) / 1000 if cart_since else None,
        caps=caps_of(caps, today),
        value=record,
    )


def histories_of(reply: Sequence[Any], today: str) -> list[AdvertiserHistory]:
    """Every shop's part of the profile script's reply."""
    n = SHOP_FIELDS
    return [history_of(reply[i : i + n], today) for i in range(0, len(reply), n)]
