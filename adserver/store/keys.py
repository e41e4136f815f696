"""Every Redis key name Kaeru uses. Nothing outside `adserver.store` builds a key.

Per-user keys share the hash tag `{uid}` so every per-user operation is single-slot (and runs
unchanged on Redis Cluster); the profile script derives the per-advertiser keys from
`user_prefix`, which is why that prefix carries the tag too.
"""

from __future__ import annotations

EVENT_STREAM = "ev"


def user_prefix(uid: str) -> str:
    return f"u:{{{uid}}}:"


def user_advertisers(uid: str) -> str:
    """zset advertiser -> last seen (ms)."""
    return user_prefix(uid) + "a"


def user_viewed(uid: str, advertiser: str) -> str:
    """zset sku -> last viewed (ms), capped to the newest `max_views`."""
    return f"{user_prefix(uid)}v:{advertiser}"


def user_cart(uid: str, advertiser: str) -> str:
    """zset sku -> added to cart (ms); cleared by a purchase."""
    return f"{user_prefix(uid)}c:{advertiser}"


def user_purchased(uid: str, advertiser: str) -> str:
    """zset sku -> bought (ms): never retargeted again."""
    return f"{user_prefix(uid)}b:{advertiser}"


def user_orders(uid: str, advertiser: str) -> str:
    """set of order ids already recorded, to deduplicate repeated purchase events."""
    return f"{user_prefix(uid)}o:{advertiser}"


def catalog(advertiser: str) -> str:
    """hash sku -> product JSON."""
    return f"cat:{advertiser}"


def catalog_staging(advertiser: str) -> str:
    return f"cat:{advertiser}:new"


CATALOG_VERSIONS = "catver"  # hash advertiser -> version, bumped on every feed import


def popular(advertiser: str) -> str:
    """zset sku -> number of views."""
    return f"pop:{advertiser}"


def daily_stats(advertiser: str, day: str) -> str:
    """hash '<metric>:<publisher>' -> count, for one advertiser and UTC day (YYYYMMDD)."""
    return f"st:{advertiser}:{day}"
