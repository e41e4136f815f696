"""Clicks, impressions and renders kept for Redis: spilled at exit and replayed whole, written
after the answer, and forgotten with the shopper who opted out."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from adserver.buffering.buffered_writer import BufferedWriter, SpillCodec
from adserver.buffering.spill_codecs import CLICKS, SHOWN
from adserver.store import Placement
from adserver.store.ledger import Click, Shown
from tests.test_restart_safety import FlakyRedis

T = TypeVar("T")
WHERE = Placement("shop1", "spring", "news1", "recent", "300x250")


def writer_of(codec: SpillCodec[T], redis: FlakyRedis[T] | None = None) -> BufferedWriter[T]:
    return BufferedWriter(redis or FlakyRedis[T](), codec=codec, deadline=0.05)


def test_spilled_clicks_come_back_with_every_field(tmp_path: Path) -> None:
    clicks = [
        Click("u1", WHERE, "sku-1", 1_700_000_000.25, "token-a"),
        Click(None, WHERE, "sku-2", 1_700_000_001.5, ""),  # an opted-out shopper's click
    ]
    writer = writer_of(CLICKS)
    writer.buffer.extend(clicks)
    path = writer.spill(tmp_path)
    assert path is not None and path.name.startswith("clicks-")
    later = writer_of(CLICKS)
    assert later.load_spilled(tmp_path) == 2
    assert list(later.buffer) == clicks


def test_spilled_impressions_and_renders_come_back_apart_from_other_kinds(tmp_path: Path) -> None:
    shown = [
        Shown("u1", WHERE, ("sku-1", "sku-2"), 1_700_000_000.0),
        Shown(None, WHERE, (), 1_700_000_002.0, rendered=True),
    ]
    writer = writer_of(SHOWN)
    writer.buffer.extend(shown)
    clicks = writer_of(CLICKS)
    clicks.buffer.append(Click("u1", WHERE, "sku-1", 1.0, "t"))
    assert writer.spill(tmp_path) is not None and clicks.spill(tmp_path) is not None
    later = writer_of(SHOWN)
    assert later.load_spilled(tmp_path) == 2  # its own file only
    assert list(later.buffer) == shown
    assert writer_of(CLICKS).load_spilled(tmp_path) == 1


def test_a_damaged_line_of_a_click_file_is_skipped(tmp_path: Path) -> None:
    writer = writer_of(CLICKS)
    writer.buffer.extend([Click("u", WHERE, "a", 1.0, "t1"), Click("u", WHERE, "b", 2.0, "t2")])
    path = writer.spill(tmp_path)
    assert path is not None
    first, second = path.read_bytes().splitlines()
    damaged = b'{"uid": "u", "placement": ["too", "short"], "sku": "x", "at": 1, "token_id": ""}'
    path.write_bytes(b"\n".join([first, damaged, b"[1, 2]", second]) + b"\n")
    assert writer.load_spilled(tmp_path) == 2
    assert [c.sku for c in writer.buffer] == ["a", "b"]


async def test_impressions_written_after_the_answer_are_kept_when_redis_fails() -> None:
    redis = FlakyRedis[Shown]()
    writer = writer_of(SHOWN, redis)
    redis.down = True
    writer.write_later([Shown("u1", WHERE, ("sku-1",), 1.0)])
    await writer.flush()
    assert [s.uid for s in writer.buffer] == ["u1"]
    redis.down = False
    writer.write_later([Shown("u1", WHERE, ("sku-3",), 3.0)])  # at once, not behind the kept
    writer.write_later([Shown("u2", WHERE, ("sku-2",), 2.0)])
    await writer.flush()
    assert [s.skus for s in redis.stored] == [("sku-3",), ("sku-2",)]
    assert await writer.drain(retry_seconds=0.5) == 0
    assert [s.skus for s in redis.stored] == [("sku-3",), ("sku-2",), ("sku-1",)]


async def test_a_forgotten_shopper_s_buffered_entries_are_never_replayed() -> None:
    redis = FlakyRedis[Click]()
    writer = writer_of(CLICKS, redis)
    redis.down = True
    for uid in ("forget-me", "keep-me", "forget-me"):
        assert not await writer.write([Click(uid, WHERE, "sku-1", 1.0, uid)])
    await writer.flush()
    assert await writer.discard("forget-me") == 2
    redis.down = False
    assert await writer.drain(retry_seconds=0.5) == 0
    assert [c.uid for c in redis.stored] == ["keep-me"]
