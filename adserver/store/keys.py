"""Every Redis key name Kaeru uses. Nothing outside `adserver.store` builds a key.

Per-user keys share the hash tag `{uid}` so every per-user operation is single-slot (and runs
unchanged on Redis Cluster); the profile script derives the per-advertiser keys from
`user_prefix`, which is why that prefix carries the tag too.

A per-user per-advertiser key is `user_prefix(uid) + <suffix> + advertiser`, the suffix one of
the constants below. Each `user_*` function and the Lua that builds such keys inside Redis (see
`scripts.LOAD_SHOPPER`, generated from these constants) use the same constant, so renaming a
key is one edit here. Every suffix ends in its only ':', so no key of one kind is the key of
another kind for some other advertiser.
"""

from __future__ import annotations

import zlib

# The event stream is split into shards by shopper, so one shopper's events stay in order in one
# shard and several workers can learn at once, each shard by one worker at a time. Every key of
# a shard (stream, lease, journal) shares the hash tag `{<shard>}`. Changing the count reroutes
# shoppers: only while no events are waiting to be learnt.
EVENT_SHARDS = 16


def event_shard(uid: str | None) -> int:
    """The shard a shopper's events go to (stable across processes and restarts)."""
    return zlib.crc32((uid or "").encode()) % EVENT_SHARDS


def event_stream(shard: int) -> str:
    """stream of shopper events (field `d`: JSON), appended by the pixel, read by the worker."""
    return f"ev:{{{shard}}}"


def event_marks(shard: int) -> str:
    """hash write id -> ms: the writes whose events are on this shard's stream and whose
    acknowledgement the writing process has not seen yet, so a replay of one (its answer was
    lost) is not appended twice. The writer deletes a mark once it saw the write acknowledged."""
    return f"evm:{{{shard}}}"


def learning_lease(shard: int) -> str:
    """string: token of the worker learning from this shard, expiring unless renewed."""
    return f"evl:{{{shard}}}"


def learning_journal(shard: int) -> str:
    """string: the batch being applied from this shard (JSON), until it is acknowledged."""
    return f"evj:{{{shard}}}"


def learning_consumer(shard: int) -> str:
    """The consumer name under which a shard is read, whichever worker holds it, so a new
    holder finds the batch an old one left pending."""
    return f"shard-{shard}"


LEARNING_WORKERS = "evw"  # zset worker token -> heartbeat expiry (ms): live workers share shards


def user_prefix(uid: str) -> str:
    return f"u:{{{uid}}}:"


ADVERTISERS = "a"  # user_prefix(uid) + ADVERTISERS: the shopper's advertisers (no suffix)
VIEWED = "v:"
CART = "c:"
PURCHASED = "b:"
ORDERS = "oa:"
ORDERS_LEGACY = "o:"
FACTS = "m:"
CAPS = "cap:"
CAPS_LEGACY = "f:"
TOUCH = "t:"
LEARNING_VIEWS = "wv:"
LEARNING_PURCHASES = "wb:"
LEARNING_COUNT = "wn:"
LEARNING_CREDIT = "wk:"
LEARNING_CREDIT_V1 = "wc:"
EMAIL = "em:"
VALUE = "val:"
VALUE_FIELD = "val"  # of the facts hash: the value record


def user_key(uid: str, suffix: str, advertiser: str) -> str:
    """The shopper's key of one kind (`suffix`, a constant above) at one advertiser."""
    return user_prefix(uid) + suffix + advertiser


def user_forgotten(uid: str) -> str:
    """string: ms of the shopper's last erasure (opt-out, `DELETE /api/v1/users/UID`); events
    not newer are not written (a view waiting for a feed, or a replay, in another process).
    Outside `u:{uid}:` (it is no profile: nothing about the shopper but that it was erased),
    in the same slot; expires after the feed grace and a margin for replays (a few minutes,
    so that a loop of opt-outs with made-up uids keeps little)."""
    return f"fg:{{{uid}}}"


def user_advertisers(uid: str) -> str:
    """zset advertiser -> last seen (ms)."""
    return user_prefix(uid) + ADVERTISERS


def user_viewed(uid: str, advertiser: str) -> str:
    """zset sku -> last viewed (ms), capped to the newest `max_views`."""
    return user_key(uid, VIEWED, advertiser)


def user_cart(uid: str, advertiser: str) -> str:
    """zset sku -> added to cart (ms); cleared by a purchase."""
    return user_key(uid, CART, advertiser)


def user_purchased(uid: str, advertiser: str) -> str:
    """zset sku -> bought (ms): never retargeted again."""
    return user_key(uid, PURCHASED, advertiser)


def user_orders(uid: str, advertiser: str) -> str:
    """hash order id -> 'touch<TAB>attribution key' ('<TAB>' when not attributed): the orders
    already recorded, to deduplicate repeated purchase events, each with its attribution, so a
    repeat (a replay after a failed write) can still have its conversion counted."""
    return user_key(uid, ORDERS, advertiser)


def user_orders_legacy(uid: str, advertiser: str) -> str:
    """set of order ids, what `user_orders` was before it kept the attribution: still read to
    deduplicate (and deleted when forgetting) until it expires with the lookback."""
    return user_key(uid, ORDERS_LEGACY, advertiser)


def user_learning_views(uid: str, advertiser: str) -> str:
    """list: the worker's window of the shopper's latest views, oldest first."""
    return user_key(uid, LEARNING_VIEWS, advertiser)


def user_learning_purchases(uid: str, advertiser: str) -> str:
    """list: the worker's window of the shopper's latest purchases, oldest first."""
    return user_key(uid, LEARNING_PURCHASES, advertiser)


def user_learning_count(uid: str, advertiser: str) -> str:
    """int: events this shopper has taught the worker (their influence is bounded)."""
    return user_key(uid, LEARNING_COUNT, advertiser)


def user_learning_credit(uid: str, advertiser: str) -> str:
    """string: what the shopper credited to the pairs of their window (see
    `learning.encode_credit`), so a pair gains at most 1 from them while both stay in it."""
    return user_key(uid, LEARNING_CREDIT, advertiser)


def user_learning_credit_v1(uid: str, advertiser: str) -> str:
    """hash 'a<US>b' -> weight: the credit of every pair the shopper ever formed (before
    2026-11; no longer written, expires within a day of the upgrade)."""
    return user_key(uid, LEARNING_CREDIT_V1, advertiser)


def user_email(uid: str, advertiser: str) -> str:
    """string: the SHA-256 hex of the e-mail this shopper last identified with at this shop
    (an `identify` event of its tag, under the tracking gates), so that the shop's e-mail
    flows can list them (`email_audience`); only this advertiser's, never another's. Expires
    with the lookback after that identify; erased with the shopper."""
    return user_key(uid, EMAIL, advertiser)


def user_value(uid: str, advertiser: str) -> str:
    """string: where the shopper's value record was kept before it moved into the facts hash
    (`user_facts`, field `VALUE_FIELD`, on 2026-12-02: read there in the profile read's
    HMGET, with no command more, and about 90 bytes less); no longer written, erased with the
    shopper (and expiring) like before."""
    return user_key(uid, VALUE, advertiser)


def email_audience(advertiser: str) -> str:
    """zset uid -> last activity (ms): the shoppers of this shop with a `user_email`, for the
    e-mail audiences' listing (`adserver.store.email_audiences`). Added to by an identify with
    an e-mail, its scores raised by every later event (ZADD XX GT: never adds), trimmed by age
    (the lookback) and to the newest `KAERU_EMAIL_AUDIENCE_CAP` at each add, expiring with the
    lookback after the last add; a forgotten shopper is removed. In the advertiser's slot."""
    return f"eau:{{{advertiser}}}"


def all_user_keys(uid: str, advertiser: str) -> list[str]:
    """Every key that holds something about this shopper at this shop (for forgetting)."""
    kinds = (
        user_viewed,
        user_cart,
        user_purchased,
        user_orders,
        user_orders_legacy,
        user_facts,
        user_caps,
        user_caps_legacy,
        user_touch,
        user_learning_views,
        user_learning_purchases,
        user_learning_count,
        user_learning_credit,
        user_learning_credit_v1,
        user_email,
        user_value,
    )
    return [kind(uid, advertiser) for kind in kinds]


IDENTIFIERS = "ids"  # user_prefix(uid) + IDENTIFIERS: the identifiers linked to the shopper


def user_identifiers(uid: str) -> str:
    """zset identifier token -> last linked (ms): the first-party ids, hashed e-mails and
    customer ids linked to this shopper (tokens as `adserver.identity.identifiers` makes
    them), so forgetting the shopper finds every link. Not per advertiser: deleted by
    `Store.forget` beside `user_advertisers`; expires with the lookback."""
    return user_prefix(uid) + IDENTIFIERS


IDENTIFIERS_EVER = "idf"  # user_prefix(uid) + IDENTIFIERS_EVER: what forgetting walks


def user_identifiers_ever(uid: str) -> str:
    """zset identifier token -> last linked (ms): every identifier linked to this shopper
    within the lookback, under a larger bound than `user_identifiers` (the newest
    `adserver.store.identity_links.FORGETTING_BOUND`), trimmed by age, expiring with the
    lookback. Read only by forgetting, never by resolution: a flood of links that pushes this
    shopper's identifiers out of `user_identifiers` leaves them here, so an erasure still
    reaches them. Deleted by `Store.forget` beside `user_identifiers`."""
    return user_prefix(uid) + IDENTIFIERS_EVER


def user_link_keys(uid: str) -> list[str]:
    """The shopper's identity-link keys (not per advertiser: deleted by `Store.forget` beside
    `user_advertisers`)."""
    return [user_identifiers(uid), user_identifiers_ever(uid)]


def identity_link(identifier: str) -> str:
    """zset uid -> last linked (ms): the shoppers one identifier token is linked to (a keyed
    hash, never the raw value), the newest few kept; expires with the lookback. Its slot is
    the identifier's: a link touches two slots and is pipelined, never scripted."""
    return f"id:{{{identifier}}}"


def identity_link_ever(identifier: str) -> str:
    """zset uid -> last linked (ms): every shopper linked to this identifier token within the
    lookback, a larger bound than `identity_link` (see
    `adserver.store.identity_links.FORGETTING_BOUND`), trimmed by age, expiring with the
    lookback. Read only by forgetting, never by resolution (which sees `identity_link`'s
    newest few): made-up uids flooding an e-mail push its shopper off `identity_link`, not
    off this, so forgetting by that e-mail still reaches them. In the identifier's slot."""
    return f"idf:{{{identifier}}}"


def identity_optout(identifier: str) -> str:
    """string: this identifier's shopper opted out (`GET /optout` reached it through links):
    nothing sent with it is tracked and an `eid` of it personalises nothing, on any site, until
    it expires with the opt-out (5 years). A keyed hash, as `identity_link`, in its slot."""
    return f"ido:{{{identifier}}}"


# An advertiser's model (neighbour lists and popularity) shares the hash tag `{advertiser}`,
# so a neighbour list and the counts that normalise it are read by one script in one slot.


def co_viewed(advertiser: str, sku: str) -> str:
    """zset neighbour sku -> decayed weight: viewed close together by the same shoppers."""
    return f"nb:{{{advertiser}}}:{sku}"


def co_bought(advertiser: str, sku: str) -> str:
    """zset neighbour sku -> decayed weight: bought together or after one another."""
    return f"cb:{{{advertiser}}}:{sku}"


LEARNING_GROUP = "related"  # consumer group of the related-items worker on each event stream


def learning_mark(advertiser: str, shard: int) -> str:
    """string: id of the last batch of `shard` applied to this advertiser's model, so a batch
    replayed after a crash is not counted twice (same slot as the model)."""
    return f"nbm:{{{advertiser}}}:{shard}"


def user_facts(uid: str, advertiser: str) -> str:
    """hash revenue, orders, cart_since (ms), bought_at (ms, the latest purchase, so a cart
    event that arrives after a newer purchase changes no cart): what audiences use; and
    `VALUE_FIELD`, the shopper's value record at this shop (`adserver.core.value_record`:
    first and last order day, orders, revenue, the latest order's fingerprint; ~25 bytes),
    folded in once per new order by the profile script (`scripts.RECORD_EVENT`)."""
    return user_key(uid, FACTS, advertiser)


def user_caps(uid: str, advertiser: str) -> str:
    """zset '<YYYYMMDDHH><TAB>c:<campaign><TAB>i:<sku>...' -> impressions of that campaign
    and those items that UTC hour (the frequency caps: each counter is the sum over the
    members of today naming it; one ZINCRBY per impression, see scripts.COUNT_IMPRESSION),
    expiring 2 days after the first impression of its newest member. A hash (day,
    c:<campaign>, i:<sku>) until 2026-12-02 (not read since: replaced by the first impression
    after the upgrade).
    Named `f:` before 2026-12: after the upgrade the old `f:` hashes are not read (a
    shopper's caps of that day start again from 0, once) and expire within 2 days; see
    `user_caps_legacy`."""
    return user_key(uid, CAPS, advertiser)


def user_caps_legacy(uid: str, advertiser: str) -> str:
    """hash, what `user_caps` was named before 2026-12: no longer read or written, still
    deleted when forgetting until it has expired (2 days after the upgrade)."""
    return user_key(uid, CAPS_LEGACY, advertiser)


def user_touch(uid: str, advertiser: str) -> str:
    """hash click, click_key, view, view_key: the last click and impression, for attribution."""
    return user_key(uid, TOUCH, advertiser)


def order_marker(advertiser: str, order: str, uid: str = "") -> str:
    """string, set once per shopper and order id: conversions are counted once per order
    (per shopper: an order id someone else reported first is not theirs to take)."""
    return f"ord:{{{advertiser}}}:{uid}:{order}" if uid else f"ord:{{{advertiser}}}:{order}"


def click_order_marker(advertiser: str, order: str, click_ms: str) -> str:
    """string, set once per click and order id (next to order_marker): an order attributed to
    a click counts once whoever reported it (the landing page's shopper through the tag, the
    shop's server with the click id). `click_ms` is the click's time, which the shopper's touch
    and the click id both carry; '@' is no uid's character."""
    return f"ord:{{{advertiser}}}:@{click_ms}:{order}"


def click_marker(advertiser: str, token_digest: str) -> str:
    """string, set for the lifetime of a click link: it counts once."""
    return f"clk:{{{advertiser}}}:{token_digest}"


def campaign_totals(advertiser: str) -> str:
    """hash imp:<campaign>, click:<campaign>, conv:<campaign>: all-time counts, for CTR."""
    return f"cst:{{{advertiser}}}"


def campaigns(advertiser: str) -> str:
    """hash campaign id -> campaign JSON."""
    return f"camp:{advertiser}"


CAMPAIGN_VERSIONS = "campver"  # hash advertiser -> version, bumped on every campaign change


def catalog(advertiser: str) -> str:
    """hash sku -> product JSON."""
    return f"cat:{advertiser}"


def catalog_staging(advertiser: str, upload: str = "") -> str:
    """Where a new catalog is built before its RENAME over `catalog` (one per upload, so two
    feeds arriving at once never mix): the hash tag is the whole catalog key name, which
    puts it in the catalog's slot on a cluster (RENAME needs one slot) while the catalog
    keeps its name."""
    return f"{{{catalog(advertiser)}}}:new" + (f":{upload}" if upload else "")


CATALOG_VERSIONS = "catver"  # hash advertiser -> version, bumped on every feed import


def popular(advertiser: str) -> str:
    """zset sku -> views, forward-decayed (see adserver.learning.cooccurrence)."""
    return f"pop:{{{advertiser}}}"


def popular_day(advertiser: str, day: int) -> str:
    """zset sku -> views of that UTC day (`day`: days since 1970), undecayed: the `trending`
    placement compares the last day with the week before. At most POPULAR_DAY_CAP products
    (trimmed when twice that), kept POPULAR_DAY_SECONDS (in adserver.store.learning)."""
    return f"popd:{{{advertiser}}}:{day}"


def daily_stats(advertiser: str, day: str) -> str:
    """hash '<metric>\t<campaign>\t<publisher>\t<strategy>\t<size>' -> count, for one
    advertiser and UTC day (YYYYMMDD); metrics: imp, click, render, conv, revenue."""
    return f"st:{{{advertiser}}}:{day}"


def publishers_of_day(advertiser: str, day: str) -> str:
    """set of the publisher ids the day's report names (bounded; the rest fold into 'other'),
    expiring two days after it was last written."""
    return f"pubs:{{{advertiser}}}:{day}"


def render_markers(advertiser: str, hour: int) -> str:
    """hash impression id -> 1: the renders counted of impressions served in that hour (unix
    hours), kept until the last of their beacons has expired."""
    return f"rnd:{{{advertiser}}}:{hour}"


def value_buyers(advertiser: str) -> str:
    """zset uid -> last order (ms): the shop's buyers whose value record the refresh samples
    (`adserver.store.customer_values.CustomerValues.note_buyer`, called with each new order;
    no SCAN). Capped to the newest `MAX_BUYERS` and trimmed by age (the lookback) at each
    add, expiring with the lookback after the last add; a forgotten shopper is removed. In the
    advertiser's slot."""
    return f"valb:{{{advertiser}}}"


def value_standing(advertiser: str) -> str:
    """string: the shop's value standing (`adserver.core.value_segments.encode_standing`:
    RFM cut points, typical interval, fitted models; ~300 bytes), written by the value refresh
    and expiring `STANDING_TTL_SECONDS` after it (no shopper data)."""
    return f"vals:{{{advertiser}}}"


def value_refresh_lease(advertiser: str) -> str:
    """string: the process refreshing the shop's standing, set NX for the refresh interval so
    one of many server processes and workers does it."""
    return f"vall:{{{advertiser}}}"


def value_repeat_gaps(advertiser: str) -> str:
    """hash '<uid><TAB><sku>' -> '<gap days>:<day noted>': each shopper's latest gap between
    two purchases of a product (`CustomerValues.note_repeat`), what the refresh learns the
    replenishment intervals from. At most `MAX_REPEAT_GAPS` fields (new shoppers' gaps are
    refused past it), fields older than the lookback dropped by the refresh, the key expiring
    with the lookback after the last note; a forgotten shopper's fields are removed."""
    return f"valg:{{{advertiser}}}"


def replenishment_intervals(advertiser: str) -> str:
    """hash sku -> median days between two purchases of it by the same shopper (the products
    at least 20 shoppers bought again, at most `MAX_INTERVALS`), replaced by the value refresh
    and expiring `STANDING_TTL_SECONDS` after it (no shopper data)."""
    return f"vali:{{{advertiser}}}"


def profile_keys(uid: str, advertiser: str) -> tuple[str, ...]:
    """The keys the profile script (scripts.RECORD_EVENT) writes, in its KEYS order: the ones
    above, with the prefix made once (it runs for every pixel)."""
    user = f"u:{{{uid}}}:"
    return (
        user + ADVERTISERS,
        user + VIEWED + advertiser,
        user + CART + advertiser,
        user + PURCHASED + advertiser,
        user + ORDERS + advertiser,
        user + FACTS + advertiser,
        user + TOUCH + advertiser,
        f"fg:{{{uid}}}",
        user + ORDERS_LEGACY + advertiser,
    )
