"""The per-client impression caps (pure, in memory)."""

from __future__ import annotations

from adserver.delivery.impression_caps import ADDRESS_FACTOR, ImpressionCaps, client_network

HOUR = 3600 * 490_000.0  # the start of some UTC hour


def test_a_browser_counts_up_to_the_cap_each_hour() -> None:
    caps = ImpressionCaps(3)
    assert [caps.count_browser("u1", HOUR + n) for n in range(5)] == [True] * 3 + [False] * 2
    assert caps.count_browser("u2", HOUR)  # another browser has its own count
    assert caps.count_browser("u1", HOUR + 3600)  # the next hour starts again


def test_changing_user_agents_does_not_escape_the_address_cap() -> None:
    caps = ImpressionCaps(2)
    counted = [caps.count_anonymous("pub", "192.0.2.1", f"UA {n}", HOUR) for n in range(100)]
    assert sum(counted) == 2 * ADDRESS_FACTOR
    assert caps.count_anonymous("other-pub", "192.0.2.1", "UA 1", HOUR)


def test_no_address_is_kept_and_the_table_is_bounded() -> None:
    caps = ImpressionCaps(5, max_clients=10)
    for n in range(100):
        caps.count_anonymous("pub", f"192.0.2.{n}", "UA", HOUR)
    assert len(caps._counters) == 10
    assert all(len(name) == 16 and b"192.0.2" not in name for name in caps._counters)


def test_cap_zero_counts_everything() -> None:
    caps = ImpressionCaps(0)
    assert all(caps.count_anonymous("pub", "192.0.2.1", "UA", HOUR) for _ in range(1000))


def test_an_ipv6_client_is_its_64() -> None:
    caps = ImpressionCaps(3)
    counted = [caps.count_anonymous("pub", f"2001:db8:0:1::{n:x}", "UA", HOUR) for n in range(9)]
    assert sum(counted) == 3
    assert caps.count_anonymous("pub", "2001:db8:0:2::1", "UA", HOUR)  # another /64
    assert client_network("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_network("fe80::1%eth0") == "fe80::/64"
    assert client_network("not an address") == "not an address"


def test_normal_browsing_is_never_capped() -> None:
    """30 pages an hour with 3 slots each, for 20 known shoppers behind one office address and
    for one cookie-less shopper: every impression counts (the default cap of 240)."""
    caps = ImpressionCaps(240)
    office = [
        caps.count_browser(f"u{n}", HOUR + page * 120, "news1", "192.0.2.1")
        for page in range(30)
        for n in range(20)
        for _slot in range(3)
    ]
    assert all(office)
    alone = [caps.count_anonymous("news1", "198.51.100.7", "UA", HOUR + n) for n in range(90)]
    assert all(alone)


def test_made_up_uids_at_one_address_count_ten_times_the_cap() -> None:
    caps = ImpressionCaps(3)
    counted = [caps.count_browser(f"u{n}", HOUR, "pub", "2001:db8::1") for n in range(100)]
    assert sum(counted) == 3 * ADDRESS_FACTOR
    assert caps.count_browser("u1000", HOUR, "pub", "2001:db8:1::1")  # another client
