"""Key names reach the Lua scripts from `keys`, so renaming a key is one edit there."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from adserver.core.shopper import LineItem, ShopperEvent
from adserver.store import Placement, Store, StoreLimits, connect, keys, scripts

UID = "K" * 22
NOON = 1_795_089_600.0  # 2026-11-19 12:00 UTC
PLACEMENT = Placement("shop1", "c1", "news1", "recent", "300x250")
SUFFIXES = {
    keys.user_viewed: keys.VIEWED,
    keys.user_cart: keys.CART,
    keys.user_purchased: keys.PURCHASED,
    keys.user_orders: keys.ORDERS,
    keys.user_orders_legacy: keys.ORDERS_LEGACY,
    keys.user_facts: keys.FACTS,
    keys.user_caps: keys.CAPS,
    keys.user_caps_legacy: keys.CAPS_LEGACY,
    keys.user_touch: keys.TOUCH,
    keys.user_learning_views: keys.LEARNING_VIEWS,
    keys.user_learning_purchases: keys.LEARNING_PURCHASES,
    keys.user_learning_count: keys.LEARNING_COUNT,
    keys.user_learning_credit: keys.LEARNING_CREDIT,
    keys.user_learning_credit_v1: keys.LEARNING_CREDIT_V1,
    keys.user_email: keys.EMAIL,
    keys.user_value: keys.VALUE,
}


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(connect(redis_url), StoreLimits(lookback_seconds=3 * 86400))
    yield store
    await store.close()


def literals(lua: str) -> list[str]:
    """The Lua string literals of a script (its comments dropped: no '--' in these strings)."""
    code = re.sub(r"--[^\n]*", "", lua)
    return re.findall(r"'(?:[^'\\]|\\.)*'", code)


def test_every_per_user_key_is_the_prefix_a_suffix_of_keys_and_the_advertiser() -> None:
    for kind, suffix in SUFFIXES.items():
        assert kind(UID, "shop1") == keys.user_prefix(UID) + suffix + "shop1", kind.__name__
    assert keys.user_advertisers(UID) == keys.user_prefix(UID) + keys.ADVERTISERS
    assert set(keys.all_user_keys(UID, "shop1")) == {kind(UID, "shop1") for kind in SUFFIXES}
    # Distinct, and none the start of another: no kind's key is another kind's at some shop.
    suffixes = list(SUFFIXES.values())
    assert len(set(suffixes)) == len(suffixes)
    assert all(s.endswith(":") and s.count(":") == 1 for s in suffixes)
    assert keys.CAPS == "cap:" and keys.CAPS_LEGACY == "f:"


def test_the_profile_scripts_name_no_key_but_what_keys_gives() -> None:
    given = {scripts.lua_string(s) for s in (keys.VIEWED, keys.CART, keys.PURCHASED)}
    given |= {scripts.lua_string(keys.FACTS), scripts.lua_string(keys.CAPS)}
    assert {lit for lit in literals(scripts.LOAD_SHOPPER) if ":" in lit} == given
    assert "$" not in scripts.LOAD_SHOPPER  # every placeholder was substituted
    # RECORD_EVENT gets every key it touches as KEYS: no literal that could be a key name.
    assert [lit for lit in literals(scripts.RECORD_EVENT) if ":" in lit] == []
    assert "string.sub(KEYS" not in scripts.RECORD_EVENT


@pytest.mark.parametrize("text", ["cap:", "a'b", "back\\slash", "new\nline", "é ]]"])
async def test_lua_strings_come_back_as_they_were(store: Store, text: str) -> None:
    reply = await store.redis.eval(f"return {scripts.lua_string(text)}", 0)
    assert reply == text.encode()


async def test_a_shopper_written_by_the_store_reads_back_through_the_generated_script(
    store: Store,
) -> None:
    purchase = ShopperEvent(
        "shop1", "purchase", ("a",), order="o1", revenue=Decimal(12), lines=(LineItem("a"),)
    )
    events = [ShopperEvent("shop1", "view", ("a", "b")), purchase]
    await store.record_events(UID, events, now=NOON)
    await store.record_events(UID, [ShopperEvent("shop1", "cart", ("c",))], now=NOON + 1)
    await store.ledger.record_impression(UID, PLACEMENT, ["b"], NOON + 2)
    history = (await store.load_shopper(UID, now=NOON + 60)).histories[0]
    assert (history.viewed, history.cart, history.bought) == (("b", "a"), ("c",), ("a",))
    assert (history.orders, history.revenue) == (1, Decimal(12))
    assert history.caps == {"c:c1": 1, "i:b": 1}
    assert await store.redis.exists(keys.user_caps(UID, "shop1"))
    assert not await store.redis.exists(keys.user_caps_legacy(UID, "shop1"))


async def test_old_f_caps_are_ignored_and_forgetting_deletes_them(store: Store) -> None:
    """Caps kept under the old name on the upgrade day: not read (the shopper's caps start
    again), and a forget that day leaves nothing behind."""
    legacy = keys.user_caps_legacy(UID, "shop1")
    await store.redis.hset(legacy, mapping={"day": "20261119", "c:c1": 7})
    await store.redis.expire(legacy, 172800)
    await store.record_events(UID, [ShopperEvent("shop1", "view", ("a",))], now=NOON)
    assert (await store.load_shopper(UID, now=NOON + 60)).histories[0].caps == {}
    await store.forget(UID, [])  # the shop is found in the shopper's advertisers
    assert not await store.redis.exists(legacy)
    assert [k async for k in store.redis.scan_iter(match=f"u:{{{UID}}}:*")] == []


async def test_a_caps_hash_of_before_is_replaced_and_counting_goes_on(store: Store) -> None:
    """Caps were a hash until 2026-12-02 (day, c:<campaign>, i:<sku>): the profile read
    ignores one, the next impression replaces it with the zset, counted from there."""
    caps = keys.user_caps(UID, "shop1")
    await store.record_events(UID, [ShopperEvent("shop1", "view", ("a", "b"))], now=NOON)
    await store.redis.hset(caps, mapping={"day": "20261119", "c:c1": 7, "i:b": 7})
    await store.redis.expire(caps, 172800)
    assert (await store.load_shopper(UID, now=NOON + 60)).histories[0].caps == {}
    await store.ledger.record_impression(UID, PLACEMENT, ["b"], NOON + 61)
    await store.ledger.record_impression(UID, PLACEMENT, ["a", "b"], NOON + 62)
    history = (await store.load_shopper(UID, now=NOON + 63)).histories[0]
    assert history.caps == {"c:c1": 2, "i:a": 1, "i:b": 2}
    assert 0 < await store.redis.ttl(caps) <= 172800


async def test_caps_of_another_day_neither_count_nor_stay(store: Store) -> None:
    caps = keys.user_caps(UID, "shop1")
    await store.record_events(UID, [ShopperEvent("shop1", "view", ("a",))], now=NOON)
    await store.ledger.record_impression(UID, PLACEMENT, ["a"], NOON)
    await store.ledger.record_impression(UID, PLACEMENT, ["a"], NOON + 86400)
    history = (await store.load_shopper(UID, now=NOON + 86401)).histories[0]
    assert history.caps == {"c:c1": 1, "i:a": 1}
    assert await store.redis.zcard(caps) == 1  # yesterday's member went with the new day's
    touch = keys.user_touch(UID, "shop1")
    assert await store.redis.ttl(touch) >= store.limits.click_window_seconds


async def test_many_different_impressions_a_day_fold_into_one_member_per_counter(
    store: Store,
) -> None:
    """A shopper shown a different set of items each time: the caps zset stays bounded (one
    member per counter once past scripts.CAPS_FOLD_AT) and every counter keeps its sum."""
    caps = keys.user_caps(UID, "shop1")
    await store.record_events(UID, [ShopperEvent("shop1", "view", ("a",))], now=NOON)
    shown = [(f"s{n}", f"s{n + 1}") for n in range(3 * scripts.CAPS_FOLD_AT)]
    for n, skus in enumerate(shown):
        await store.ledger.record_impression(UID, PLACEMENT, list(skus), NOON + n)
    expected: dict[str, int] = {"c:c1": len(shown)}
    for skus in shown:
        for sku in skus:
            expected[f"i:{sku}"] = expected.get(f"i:{sku}", 0) + 1
    history = (await store.load_shopper(UID, now=NOON + 1000)).histories[0]
    assert history.caps == expected
    distinct = len(expected)
    assert await store.redis.zcard(caps) <= distinct + scripts.CAPS_FOLD_AT


def test_the_profile_scripts_keys_are_the_named_ones_in_its_order() -> None:
    uid, advertiser = "abcABC_-0123456789abcd", "shop-1"
    assert keys.profile_keys(uid, advertiser) == (
        keys.user_advertisers(uid),
        keys.user_viewed(uid, advertiser),
        keys.user_cart(uid, advertiser),
        keys.user_purchased(uid, advertiser),
        keys.user_orders(uid, advertiser),
        keys.user_facts(uid, advertiser),
        keys.user_touch(uid, advertiser),
        keys.user_forgotten(uid),
        keys.user_orders_legacy(uid, advertiser),
    )


def test_the_utc_day_of_a_time_turns_at_midnight() -> None:
    from adserver.store.base import day_of

    midnight = 1_795_132_800.0  # 2026-11-20 00:00 UTC
    assert day_of(NOON) == "20261119"
    assert day_of(midnight - 0.001) == "20261119"
    assert day_of(midnight) == "20261120"
    assert day_of(0) == "19700101"


@pytest.mark.parametrize(
    "uid, event",
    [
        (UID, ShopperEvent("shop1", "view", ("sku-1",))),
        ("ünï%d-" * 5, ShopperEvent("a%s b", "cart", ("x", "ß€", "1,2"[:1]))),
        (
            UID,
            ShopperEvent(
                "shop1",
                "purchase",
                ("sku-1", "sku-2"),
                order="o-1",
                revenue=Decimal("12.50"),
                currency="EUR",
                lines=(LineItem("sku-1", Decimal("10"), 1), LineItem("sku-2", None, 2)),
            ),
        ),
    ],
)
async def test_the_profile_call_is_sent_as_hiredis_would_pack_it(
    store: Store, uid: str, event: ShopperEvent
) -> None:
    import hiredis

    from adserver.store.base import PackedCommand, pack

    command = store._profile_command(uid, event, int(NOON * 1000))
    assert type(command) is PackedCommand
    assert pack(command) == hiredis.pack_command(tuple(command))


def test_text_is_packed_as_hiredis_packs_it() -> None:
    import hiredis

    from adserver.store.base import pack, pack_text

    for command in [("EVALSHA", "k", 12, -3, ""), ("SET", "ß", "€")]:
        assert pack_text(command) == hiredis.pack_command(command)
    mixed = ("SET", b"raw", Decimal("1.5"))  # bytes and a Decimal: packed as `pack` packs them
    assert pack_text(mixed) == pack(mixed) == b"*3\r\n$3\r\nSET\r\n$3\r\nraw\r\n$3\r\n1.5\r\n"
