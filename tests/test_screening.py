"""The pure parts of "only catalog products count": screening events against a catalog, the
grace for products a feed brings shortly after, and where an event comes from."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adserver.core.lessons import StreamEvent
from adserver.core.shopper import LineItem, ShopperEvent
from adserver.feeds.grace import FeedGrace, releaser
from adserver.learning.cooccurrence import sold_only
from pixel.provenance import from_own_pages
from pixel.screening import screen

SOLD = {"shop1": {"a", "b"}}


def catalog_of(advertiser: str) -> set[str] | None:
    return SOLD.get(advertiser)


def test_views_keep_what_is_sold_and_the_rest_waits() -> None:
    screened = screen([ShopperEvent("shop1", "view", ("a", "x", "b", "y"))], catalog_of)
    assert screened.kept == [ShopperEvent("shop1", "view", ("a", "b"))]
    assert screened.waiting == [ShopperEvent("shop1", "view", ("x", "y"))]
    assert screened.dropped == 0


def test_an_event_of_unknown_items_only_is_not_kept() -> None:
    screened = screen([ShopperEvent("shop1", "cart", ("x",))], catalog_of)
    assert screened.kept == []
    assert screened.waiting == [ShopperEvent("shop1", "cart", ("x",))]


def test_list_items_not_sold_are_dropped_not_kept_waiting() -> None:
    screened = screen([ShopperEvent("shop1", "list", ("a", "x"))], catalog_of)
    assert screened.kept == [ShopperEvent("shop1", "list", ("a",))]
    assert screened.waiting == [] and screened.dropped == 1


def test_purchases_and_item_less_events_are_kept_whole() -> None:
    purchase = ShopperEvent(
        "shop1", "purchase", ("x",), order="o1", revenue=Decimal(5), currency="EUR",
        lines=(LineItem("x", Decimal(5)),),
    )  # fmt: skip
    home = ShopperEvent("shop1", "home")
    assert screen([purchase, home], catalog_of).kept == [purchase, home]


def test_a_catalog_not_read_yet_cannot_be_checked() -> None:
    event = ShopperEvent("shop2", "view", ("x",))
    assert screen([event], catalog_of).kept == [event]


def test_an_empty_catalog_sells_nothing() -> None:
    screened = screen([ShopperEvent("shop3", "view", ("x",))], lambda advertiser: set())
    assert screened.kept == [] and len(screened.waiting) == 1


def test_learner_keeps_only_sold_items() -> None:
    events = [
        StreamEvent("u", "shop1", "view", ("a", "x"), 1),
        StreamEvent("u", "shop1", "view", ("y",), 2),
    ]
    kept, unsold = sold_only(events, lambda adv, sku: sku in SOLD[adv])
    assert [e.items for e in kept] == [("a",), ()]
    assert unsold == 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def waiting_view(uid: str, *skus: str, at: float = 1000.0) -> tuple[str, ShopperEvent, float]:
    return uid, ShopperEvent("shop1", "view", skus), at


def test_waiting_views_are_released_when_a_feed_sells_them() -> None:
    grace = FeedGrace(300, clock=Clock())
    assert grace.park([waiting_view("u1", "new", "other"), waiting_view("u2", "other")]) == 0

    released, expired = grace.release("shop1", {"a", "new"})
    assert released == [waiting_view("u1", "new")]
    assert expired == 0
    assert grace.waiting("shop1") == 2  # "other" still waits, twice
    assert grace.release("shop1", {"a", "new"}) == ([], 0)


def test_waiting_views_expire_after_the_grace() -> None:
    clock = Clock()
    grace = FeedGrace(300, clock=clock)
    grace.park([waiting_view("u1", "new", at=clock.now)])
    clock.now += 301

    assert grace.release("shop1", {"new"}) == ([], 1)
    assert grace.waiting("shop1") == 0


def test_grace_is_bounded_whatever_the_traffic() -> None:
    grace = FeedGrace(300, capacity=100, clock=Clock())
    dropped = sum(grace.park([waiting_view("u", f"x{n}-{i}" , f"y{n}") for i in range(10)])
                  for n in range(50))  # fmt: skip

    assert grace.waiting("shop1") <= 100
    assert dropped == 50 * 10 * 2 - grace.waiting("shop1")
    released, _ = grace.release("shop1", {"y49"})
    assert released and all(event.items == ("y49",) for _, event, _ in released)


def test_no_grace_drops_at_once() -> None:
    grace = FeedGrace(0, clock=Clock())
    assert grace.park([waiting_view("u1", "a", "b")]) == 2
    assert grace.waiting("shop1") == 0


def test_a_forgotten_shopper_stops_waiting() -> None:
    grace = FeedGrace(300, clock=Clock())
    grace.park([waiting_view("u1", "new"), waiting_view("u2", "new")])
    assert grace.discard("u1") == 1
    assert [uid for uid, _, _ in grace.release("shop1", {"new"})[0]] == ["u2"]


def test_releaser_writes_and_counts() -> None:
    grace = FeedGrace(300, clock=Clock())
    grace.park([waiting_view("u1", "new", "x")])
    written: list[object] = []
    counts = {"counted": 0, "dropped": 0}
    release = releaser(
        grace,
        lambda entries: written.extend(entries) is None,  # taken
        lambda n: counts.__setitem__("counted", counts["counted"] + n),
        lambda n: counts.__setitem__("dropped", counts["dropped"] + n),
    )
    release("shop1", {"new"})
    assert written == [waiting_view("u1", "new")]
    assert counts == {"counted": 1, "dropped": 0}


def test_released_events_a_full_buffer_sheds_are_counted_dropped() -> None:
    grace = FeedGrace(300, clock=Clock())
    grace.park([waiting_view("u1", "new", "x")])
    counts = {"counted": 0, "dropped": 0}
    release = releaser(
        grace,
        lambda entries: False,  # shed
        lambda n: counts.__setitem__("counted", counts["counted"] + n),
        lambda n: counts.__setitem__("dropped", counts["dropped"] + n),
    )
    release("shop1", {"new"})
    assert counts == {"counted": 0, "dropped": 1}


SHOP = ("shop.example",)


@pytest.mark.parametrize(
    ("origin", "referer", "expected"),
    [
        ("https://shop.example", None, True),
        ("https://www.shop.example:8443", None, True),
        ("https://SHOP.example.", None, True),
        (None, "https://m.shop.example/p?x=1", True),
        (None, None, True),  # cannot be known
        ("", "", True),
        ("https://evil.example", "https://shop.example/", False),  # Origin decides
        ("https://shop.example.evil.example", None, False),
        ("https://notshop.example", None, False),
        ("null", None, False),
        (None, "http://[::1/x", False),
        (None, "file:///home/x.html", False),
        (None, "android-app://com.shop/", False),
    ],
)
def test_own_pages(origin: str | None, referer: str | None, expected: bool) -> None:
    assert from_own_pages(origin, referer, SHOP) is expected


def test_no_domains_configured_accepts_every_page() -> None:
    assert from_own_pages("https://evil.example", None, ())


def test_domains_written_with_a_leading_dot() -> None:
    assert from_own_pages("https://www.shop.example", None, (".shop.example",))


def test_feed_grace_setting_is_read_and_checked() -> None:
    from adserver.config.settings import Settings, SettingsError

    assert Settings.from_env({}).feed_grace_seconds == 300
    assert Settings.from_env({"KAERU_FEED_GRACE_SECONDS": "0"}).feed_grace_seconds == 0
    with pytest.raises(SettingsError, match="KAERU_FEED_GRACE_SECONDS"):
        Settings.from_env({"KAERU_FEED_GRACE_SECONDS": "7200"})
