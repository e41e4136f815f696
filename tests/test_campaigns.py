"""Campaigns: parsing reports every problem; audiences, targeting, schedule, slot fit, value."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from adserver.core.campaigns import (
    AUDIENCES,
    STRATEGIES,
    Bid,
    Campaign,
    HighValue,
    Publishers,
    ShopperFacts,
    What,
    When,
    Where,
    Who,
    audiences,
    default_campaign,
    expected_value,
    fits_slot,
    parse_campaign,
    runs_at,
    smoothed_ctr,
    targets,
)

SIZES = ("300x250", "728x90", "160x600")
HOUR = 3600
DAY = 86400
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC).timestamp()

FULL: dict[str, Any] = {
    "name": "Cart abandoners, weekdays",
    "status": "active",
    "who": {
        "include": ["cart_abandoners", "viewers"],
        "exclude": ["past_buyers"],
        "cart_abandoned_hours": 1,
        "lapsed_days": 14,
        "high_value": {"min_revenue": 500, "min_orders": 3},
        "segments": ["champions", "loyal"],
        "due": ["due_now", "overdue"],
    },
    "what": {
        "strategies": ["cart", "recent", "related", "cross_sell", "upsell", "popular"],
        "products": 3,
    },
    "when": {
        "lookback_days": 30,
        "min_delay_minutes": 0,
        "cap_per_day": 10,
        "cap_per_item_per_day": 3,
        "hours": [8, 22],
        "start": "2026-11-01",
        "end": "2026-12-31",
    },
    "where": {
        "sizes": ["300x250", "728x90"],
        "publishers": {"allow": ["news1"], "deny": ["spam-site"]},
        "countries": ["DE", "FR"],
    },
    "bid": {"type": "cpm", "amount": "2.50"},
    "bid_multipliers": {"champions": "1.5", "lost": "0.5"},
    "offer": {"text": "10% off your first order", "code": "WELCOME10", "starts": "2026-11-01"},
}
MINIMAL: dict[str, Any] = {"name": "Everyone", "bid": {"type": "cpc", "amount": 0.4}}
DROP = object()


def parse(data: object, campaign_id: str = "c1") -> Campaign | list[str]:
    return parse_campaign("shop1", campaign_id, data, SIZES)


def parsed(data: object) -> Campaign:
    campaign = parse(data)
    assert isinstance(campaign, Campaign), campaign
    return campaign


def with_value(base: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of `base` with the dotted `path` set to `value` (or removed when DROP)."""
    body = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return body


def campaign_with(**sections: Any) -> Campaign:
    return Campaign(
        id="c1",
        advertiser="shop1",
        name="test",
        status=sections.get("status", "active"),
        who=sections.get("who", Who()),
        what=What(),
        when=sections.get("when", When()),
        where=sections.get("where", Where()),
        bid=sections.get("bid", Bid("cpm", Decimal("1"))),
    )


def facts(
    *,
    last_seen: float | None = None,
    last_view: float | None = None,
    cart_since: float | None = None,
    orders: int = 0,
    revenue: str = "0",
) -> ShopperFacts:
    has_history = any(t is not None for t in (last_seen, last_view, cart_since)) or orders > 0
    return ShopperFacts(has_history, last_seen, last_view, cart_since, orders, Decimal(revenue))


# --- parsing ---------------------------------------------------------------------------------


def test_full_campaign_parses_into_typed_values() -> None:
    campaign = parsed(FULL)
    assert campaign.id == "c1"
    assert campaign.advertiser == "shop1"
    assert campaign.who == Who(
        include=("cart_abandoners", "viewers"),
        exclude=("past_buyers",),
        cart_abandoned_hours=1,
        lapsed_days=14,
        high_value=HighValue(Decimal(500), 3),
        segments=("champions", "loyal"),
        due=("due_now", "overdue"),
    )
    assert campaign.bid_multipliers == (("champions", Decimal("1.5")), ("lost", Decimal("0.5")))
    assert campaign.what == What(STRATEGIES, 3)
    assert campaign.when == When(30, 0, 10, 3, (8, 22), date(2026, 11, 1), date(2026, 12, 31))
    assert campaign.where == Where(
        ("300x250", "728x90"), Publishers(("news1",), ("spam-site",)), ("DE", "FR")
    )
    assert campaign.bid == Bid("cpm", Decimal("2.50"))


@pytest.mark.parametrize("body", [FULL, MINIMAL], ids=["full", "minimal"])
def test_campaign_round_trips_through_json(body: dict[str, Any]) -> None:
    campaign = parsed(body)
    as_json = orjson.loads(orjson.dumps(campaign.to_json()))
    assert parse(as_json) == campaign


def test_to_json_writes_decimals_as_strings_and_has_the_input_shape() -> None:
    data = parsed(FULL).to_json()
    assert data["bid"] == {"type": "cpm", "amount": "2.50"}
    assert data["who"]["high_value"] == {"min_revenue": "500", "min_orders": 3}
    assert parsed(MINIMAL).to_json()["when"]["cap_per_day"] is None
    assert set(data) == set(FULL)
    for section in ("who", "what", "when", "where"):
        assert set(data[section]) == set(FULL[section])


def test_missing_sections_take_the_defaults() -> None:
    campaign = parsed(MINIMAL)
    assert campaign.status == "active"
    assert campaign.who == Who()
    assert campaign.what.strategies == ("cart", "recent", "related", "cross_sell", "popular")
    assert campaign.what.products is None
    assert campaign.when == When(lookback_days=30, cap_per_day=None, hours=None)
    assert campaign.where == Where()
    assert campaign.bid == Bid("cpc", Decimal("0.4"))


def test_null_means_the_default() -> None:
    body = {
        **MINIMAL,
        "status": None,
        "who": {"include": None, "high_value": {"min_revenue": None}},
        "what": {"strategies": None, "products": None},
        "when": {"hours": None, "cap_per_day": None, "end": None},
        "where": None,
    }
    campaign = parsed(body)
    assert campaign == parsed(MINIMAL)


def test_zero_caps_mean_no_cap() -> None:
    when = parsed({**MINIMAL, "when": {"cap_per_day": 0, "cap_per_item_per_day": 0}}).when
    assert when.cap_per_day is None
    assert when.cap_per_item_per_day is None


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("when.hours", [22, 6], (22, 6)),
        ("when.hours", [0, 24], (0, 24)),
        ("bid.amount", 1000, Decimal(1000)),
        ("bid.amount", " 0.01 ", Decimal("0.01")),
        ("bid.amount", "0.000001", Decimal("0.000001")),
        ("bid.amount", "1E+2", Decimal(100)),
        ("who.cart_abandoned_hours", 0, 0),
        ("who.high_value.min_revenue", "99.90", Decimal("99.90")),
        ("when.end", "2026-11-01", date(2026, 11, 1)),
    ],
)
def test_edge_values_are_accepted(path: str, value: object, expected: object) -> None:
    campaign = parsed(with_value(FULL, path, value))
    section, *rest = path.split(".")
    node: Any = getattr(campaign, section)
    for key in rest:
        node = getattr(node, key)
    assert node == expected


def test_name_is_stripped() -> None:
    assert parsed({**MINIMAL, "name": "  Spring sale "}).name == "Spring sale"


INVALID = [
    ("name", DROP, "name: required"),
    ("name", "   ", "name: must be a string of 1-100 characters"),
    ("name", "x" * 101, "name: must be a string of 1-100 characters"),
    ("name", 7, "name: must be a string"),
    ("status", "running", "status: must be one of active, paused, got 'running'"),
    ("budget", 100, "budget: unknown key"),
    ("who", "everyone", "who: must be an object"),
    ("who.includes", ["viewers"], "who.includes: unknown key (expected one of: include,"),
    ("who.include", ["viewers", "buyerz"], "who.include[1]: unknown audience 'buyerz' (one of:"),
    ("who.include", "viewers", "who.include: must be a list"),
    ("who.include", [3], "who.include[0]: must be a string, not int"),
    ("who.include", ["viewers", "viewers"], "who.include[1]: 'viewers' is listed twice"),
    ("who.exclude", ["lapsd"], "who.exclude[0]: unknown audience 'lapsd'"),
    ("who.exclude", ["viewers"], "who: audience 'viewers' is both included and excluded"),
    ("who.cart_abandoned_hours", -1, "who.cart_abandoned_hours: must be a whole number from 0"),
    ("who.cart_abandoned_hours", 721, "who.cart_abandoned_hours: must be a whole number"),
    ("who.cart_abandoned_hours", "2", "who.cart_abandoned_hours: must be a whole number"),
    ("who.cart_abandoned_hours", 1.5, "who.cart_abandoned_hours: must be a whole number"),
    ("who.cart_abandoned_hours", True, "who.cart_abandoned_hours: must be a whole number"),
    ("who.lapsed_days", 0, "who.lapsed_days: must be a whole number from 1 to 365"),
    ("who.lapsed_days", 366, "who.lapsed_days: must be a whole number from 1 to 365"),
    ("who.high_value", [500], "who.high_value: must be an object"),
    ("who.high_value.min_revenue", -1, "who.high_value.min_revenue: must be a number >= 0"),
    ("who.high_value.min_revenue", "lots", "who.high_value.min_revenue: must be a number >= 0"),
    ("who.high_value.min_orders", 0, "who.high_value.min_orders: must be a whole number from 1"),
    ("who.high_value.orders", 2, "who.high_value.orders: unknown key"),
    ("what.strategies", [], "what.strategies: must name at least one strategy"),
    ("what.strategies", ["cart", "upsel"], "what.strategies[1]: unknown strategy 'upsel'"),
    ("what.strategies", ["cart", "cart"], "what.strategies[1]: 'cart' is listed twice"),
    ("what.products", 0, "what.products: must be a whole number from 1 to 10"),
    ("what.products", 11, "what.products: must be a whole number from 1 to 10"),
    ("what.product", 3, "what.product: unknown key"),
    ("when.lookback_days", 0, "when.lookback_days: must be a whole number from 1 to 400"),
    ("when.lookback_days", 401, "when.lookback_days: must be a whole number from 1 to 400"),
    ("when.min_delay_minutes", -1, "when.min_delay_minutes: must be a whole number from 0"),
    ("when.min_delay_minutes", 10081, "when.min_delay_minutes: must be a whole number"),
    ("when.cap_per_day", 1001, "when.cap_per_day: must be a whole number from 0 to 1000"),
    ("when.cap_per_day", -1, "when.cap_per_day: must be a whole number"),
    ("when.cap_per_item_per_day", 1001, "when.cap_per_item_per_day: must be a whole number"),
    ("when.hours", [8], "when.hours: must be [start, end]"),
    ("when.hours", [8, 25], "when.hours: must be [start, end]"),
    ("when.hours", [24, 6], "when.hours: must be [start, end]"),
    ("when.hours", [8.0, 22], "when.hours: must be [start, end]"),
    ("when.hours", "8-22", "when.hours: must be [start, end]"),
    ("when.hours", [8, 8], "when.hours: start equals end"),
    ("when.start", "2026-13-01", "when.start: must be a date like 2026-11-01"),
    ("when.start", "20261101", "when.start: must be a date like 2026-11-01"),
    ("when.end", 20261231, "when.end: must be a date like 2026-11-01"),
    ("when.end", "2026-10-31", "when.end: 2026-10-31 is before when.start 2026-11-01"),
    ("when.ends", "2026-10-31", "when.ends: unknown key"),
    ("where.sizes", ["300x250", "1x1"], "where.sizes[1]: unknown size '1x1' (one of: 160x600,"),
    ("where.publishers.allow", ["bad id"], "where.publishers.allow[0]: 'bad id' is not a publ"),
    ("where.publishers.deny", ["x" * 65], "where.publishers.deny[0]: 'xxx"),
    ("where.publishers.deny", ["news1"], "where.publishers: 'news1' is both allowed and denied"),
    ("where.publishers.block", [], "where.publishers.block: unknown key"),
    ("where.publishers", ["news1"], "where.publishers: must be an object"),
    ("where.countries", ["de"], "where.countries[0]: 'de' is not an upper-case ISO 3166 alpha-2"),
    ("where.countries", ["DEU"], "where.countries[0]: 'DEU' is not an upper-case ISO"),
    ("where.countries", ["DE\n"], "where.countries[0]: 'DE\\n' is not an upper-case ISO"),
    ("bid", DROP, "bid: required"),
    ("bid", "cpm", "bid: must be an object"),
    ("bid.type", "cpa", "bid.type: must be one of cpm, cpc, got 'cpa'"),
    ("bid.type", DROP, "bid.type: must be one of cpm, cpc, got None"),
    ("bid.amount", DROP, "bid.amount: must be a number > 0"),
    ("bid.amount", 0, "bid.amount: must be a number > 0"),
    ("bid.amount", "-1", "bid.amount: must be a number > 0"),
    ("bid.amount", "2,50", "bid.amount: must be a number > 0"),
    ("bid.amount", "NaN", "bid.amount: must be a number > 0"),
    ("bid.amount", True, "bid.amount: must be a number > 0"),
    ("bid.amount", "1000.01", "bid.amount: must be a number > 0 and <= 1000"),
    ("bid.amount", "1e-999999999", "bid.amount: must be a number > 0 and <= 1000 with at most 6"),
    ("bid.amount", 0.0000001, "bid.amount: must be a number > 0"),
    ("who.high_value.min_revenue", "1e999999999", "who.high_value.min_revenue: must be a number"),
    ("who.high_value.min_revenue", "0.1234567", "who.high_value.min_revenue: must be a number"),
    ("bid.currency", "EUR", "bid.currency: unknown key"),
]


@pytest.mark.parametrize(("path", "value", "expected"), INVALID, ids=[c[2] for c in INVALID])
def test_invalid_value_is_reported_with_its_path(path: str, value: object, expected: str) -> None:
    problems = parse(with_value(FULL, path, value))
    assert isinstance(problems, list)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize("data", [None, [], "campaign", 3])
def test_body_must_be_an_object(data: object) -> None:
    assert parse(data) == ["campaign: must be a JSON object"]


@pytest.mark.parametrize("campaign_id", ["", "a b", "x" * 65, "c1\n", "ü"])
def test_campaign_id_is_validated(campaign_id: str) -> None:
    problems = parse(FULL, campaign_id)
    assert isinstance(problems, list)
    assert problems[0].startswith("id: ")


def test_every_problem_is_reported_at_once() -> None:
    body = {
        "nam": "typo",
        "who": {"include": ["buyerz"], "lapsed_days": 0},
        "when": {"hours": [8, 8]},
        "where": {"sizes": ["1x1"]},
        "bid": {"type": "cpa", "amount": 0},
    }
    problems = parse(body)
    assert isinstance(problems, list)
    for start in (
        "nam: unknown key",
        "name: required",
        "who.include[0]: unknown audience",
        "who.lapsed_days:",
        "when.hours:",
        "where.sizes[0]:",
        "bid.type:",
        "bid.amount:",
    ):
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == 8


def test_default_campaign_serves_anyone_at_one_cpm_without_caps() -> None:
    campaign = default_campaign("shop1")
    assert campaign.id == "default"
    assert campaign.advertiser == "shop1"
    assert campaign.who.include == () and campaign.who.exclude == ()
    assert campaign.what.strategies == ("cart", "recent", "related", "cross_sell", "popular")
    assert campaign.when.cap_per_day is None and campaign.when.cap_per_item_per_day is None
    assert campaign.bid == Bid("cpm", Decimal("1.00"))
    assert parse_campaign("shop1", "default", campaign.to_json(), SIZES) == campaign
    assert targets(campaign, facts(), NOW) == (True, "")


# --- audiences -------------------------------------------------------------------------------


def test_audience_names_are_the_five_documented() -> None:
    assert AUDIENCES == {"viewers", "cart_abandoners", "past_buyers", "lapsed", "high_value"}


def test_shopper_without_history_is_in_no_audience() -> None:
    assert audiences(campaign_with(), facts(), NOW) == frozenset()


def test_viewer_counts_until_exactly_the_end_of_the_lookback() -> None:
    campaign = campaign_with(when=When(lookback_days=30))
    assert "viewers" in audiences(campaign, facts(last_view=NOW - 30 * DAY), NOW)
    assert "viewers" not in audiences(campaign, facts(last_view=NOW - 30 * DAY - 1), NOW)


def test_cart_is_abandoned_exactly_after_the_configured_hours() -> None:
    campaign = campaign_with(who=Who(cart_abandoned_hours=2))
    assert "cart_abandoners" in audiences(campaign, facts(cart_since=NOW - 2 * HOUR), NOW)
    assert "cart_abandoners" not in audiences(campaign, facts(cart_since=NOW - 2 * HOUR + 1), NOW)
    assert "cart_abandoners" not in audiences(campaign, facts(last_seen=NOW - DAY), NOW)


def test_zero_hours_makes_any_filled_cart_abandoned() -> None:
    campaign = campaign_with(who=Who(cart_abandoned_hours=0))
    assert "cart_abandoners" in audiences(campaign, facts(cart_since=NOW), NOW)


def test_one_order_makes_a_past_buyer() -> None:
    assert "past_buyers" in audiences(campaign_with(), facts(orders=1, revenue="10"), NOW)
    assert "past_buyers" not in audiences(campaign_with(), facts(last_seen=NOW), NOW)


def test_shopper_lapses_exactly_after_the_configured_days() -> None:
    campaign = campaign_with(who=Who(lapsed_days=14))
    assert "lapsed" in audiences(campaign, facts(last_seen=NOW - 14 * DAY), NOW)
    assert "lapsed" not in audiences(campaign, facts(last_seen=NOW - 14 * DAY + 1), NOW)


def test_high_value_needs_both_revenue_and_orders_at_least_the_minimum() -> None:
    campaign = campaign_with(who=Who(high_value=HighValue(Decimal(500), 3)))
    assert "high_value" in audiences(campaign, facts(orders=3, revenue="500"), NOW)
    assert "high_value" not in audiences(campaign, facts(orders=3, revenue="499.99"), NOW)
    assert "high_value" not in audiences(campaign, facts(orders=2, revenue="5000"), NOW)


def test_by_default_any_buyer_is_high_value() -> None:
    assert "high_value" in audiences(campaign_with(), facts(orders=1, revenue="0"), NOW)
    assert "high_value" not in audiences(campaign_with(), facts(), NOW)


# --- targeting -------------------------------------------------------------------------------


def test_campaign_without_include_targets_anyone_even_unknown_shoppers() -> None:
    assert targets(campaign_with(), facts(), NOW) == (True, "")
    assert targets(campaign_with(), facts(orders=4, revenue="90"), NOW) == (True, "")


def test_include_needs_at_least_one_included_audience() -> None:
    campaign = campaign_with(who=Who(include=("cart_abandoners", "viewers")))
    assert targets(campaign, facts(last_view=NOW - DAY), NOW) == (True, "")
    assert targets(campaign, facts(cart_since=NOW - DAY), NOW) == (True, "")
    assert targets(campaign, facts(orders=1), NOW) == (
        False,
        "not in any of: cart_abandoners, viewers",
    )


def test_include_never_targets_shoppers_without_history() -> None:
    campaign = campaign_with(who=Who(include=("viewers",)))
    assert targets(campaign, facts(), NOW) == (False, "no history at this shop")


def test_excluded_audience_wins_over_included_one() -> None:
    campaign = campaign_with(who=Who(include=("viewers",), exclude=("past_buyers",)))
    buyer = facts(last_view=NOW - DAY, orders=1, revenue="20")
    assert targets(campaign, buyer, NOW) == (False, "in excluded audience past_buyers")


def test_exclude_alone_targets_everyone_else() -> None:
    campaign = campaign_with(who=Who(exclude=("past_buyers",)))
    assert targets(campaign, facts(), NOW) == (True, "")
    assert targets(campaign, facts(orders=1), NOW)[0] is False


def test_min_delay_waits_after_the_last_activity() -> None:
    campaign = campaign_with(when=When(min_delay_minutes=30))
    assert targets(campaign, facts(last_seen=NOW - 30 * 60), NOW) == (True, "")
    assert targets(campaign, facts(last_seen=NOW - 10 * 60), NOW) == (
        False,
        "active 10 min ago, delay is 30 min",
    )


def test_min_delay_lets_shoppers_without_history_through() -> None:
    campaign = campaign_with(when=When(min_delay_minutes=30))
    assert targets(campaign, facts(), NOW) == (True, "")


# --- schedule --------------------------------------------------------------------------------


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def test_paused_campaign_never_runs() -> None:
    assert runs_at(campaign_with(status="paused"), NOW) == (False, "campaign is paused")


def test_dates_are_inclusive_in_utc() -> None:
    campaign = campaign_with(when=When(start=date(2026, 11, 1), end=date(2026, 12, 31)))
    assert runs_at(campaign, at(2026, 11, 1, 0, 0)) == (True, "")
    assert runs_at(campaign, at(2026, 12, 31, 23, 59)) == (True, "")
    assert runs_at(campaign, at(2026, 10, 31, 23, 59)) == (False, "starts 2026-11-01")
    assert runs_at(campaign, at(2027, 1, 1, 0, 0)) == (False, "ended 2026-12-31")


def test_hours_include_the_start_and_exclude_the_end() -> None:
    campaign = campaign_with(when=When(hours=(8, 22)))
    assert runs_at(campaign, at(2026, 11, 10, 8, 0))[0] is True
    assert runs_at(campaign, at(2026, 11, 10, 21, 59))[0] is True
    assert runs_at(campaign, at(2026, 11, 10, 22, 0)) == (False, "outside hours 8-22 UTC")
    assert runs_at(campaign, at(2026, 11, 10, 7, 59))[0] is False


@pytest.mark.parametrize(
    ("hour", "runs"),
    [(22, True), (23, True), (0, True), (5, True), (6, False), (12, False), (21, False)],
)
def test_overnight_hours_wrap_past_midnight(hour: int, runs: bool) -> None:
    campaign = campaign_with(when=When(hours=(22, 6)))
    assert runs_at(campaign, at(2026, 11, 10, hour))[0] is runs


def test_campaign_without_dates_or_hours_always_runs() -> None:
    assert runs_at(campaign_with(), at(1999, 1, 1, 3)) == (True, "")


# --- slot ------------------------------------------------------------------------------------


def test_sizes_restrict_the_slot_and_empty_means_all() -> None:
    campaign = campaign_with(where=Where(sizes=("300x250",)))
    assert fits_slot(campaign, "300x250", "news1", None) == (True, "")
    assert fits_slot(campaign, "728x90", "news1", None) == (False, "size 728x90 not targeted")
    assert fits_slot(campaign_with(), "160x600", "news1", None) == (True, "")


def test_denied_publisher_never_fits() -> None:
    campaign = campaign_with(where=Where(publishers=Publishers(deny=("news9",))))
    assert fits_slot(campaign, "300x250", "news9", "DE") == (False, "publisher news9 is denied")
    assert fits_slot(campaign, "300x250", "news1", "DE") == (True, "")


def test_allow_list_admits_only_its_publishers() -> None:
    campaign = campaign_with(where=Where(publishers=Publishers(allow=("news1",))))
    assert fits_slot(campaign, "300x250", "news1", None) == (True, "")
    assert fits_slot(campaign, "300x250", "news2", None) == (
        False,
        "publisher news2 not in allow list",
    )


def test_countries_restrict_the_slot() -> None:
    campaign = campaign_with(where=Where(countries=("DE", "FR")))
    assert fits_slot(campaign, "300x250", "news1", "FR") == (True, "")
    assert fits_slot(campaign, "300x250", "news1", "US") == (False, "country US not targeted")


def test_country_list_never_serves_an_unknown_country() -> None:
    campaign = campaign_with(where=Where(countries=("DE",)))
    assert fits_slot(campaign, "300x250", "news1", None) == (False, "country unknown")
    assert fits_slot(campaign_with(), "300x250", "news1", None) == (True, "")


# --- value -----------------------------------------------------------------------------------


def test_cpm_value_per_impression_ignores_ctr() -> None:
    campaign = campaign_with(bid=Bid("cpm", Decimal("2.50")))
    assert expected_value(campaign, 0.0) == pytest.approx(0.0025)
    assert expected_value(campaign, 0.5) == pytest.approx(0.0025)


def test_cpc_value_per_impression_is_bid_times_ctr() -> None:
    campaign = campaign_with(bid=Bid("cpc", Decimal("0.40")))
    assert expected_value(campaign, 0.01) == pytest.approx(0.004)
    assert expected_value(campaign, 0.0) == 0.0


def test_smoothed_ctr_is_the_prior_without_data() -> None:
    assert smoothed_ctr(0, 0) == pytest.approx(0.005)
    assert smoothed_ctr(0, 0, prior_ctr=0.02, prior_weight=50) == pytest.approx(0.02)


def test_smoothed_ctr_moves_from_the_prior_toward_the_observed_rate() -> None:
    observed = 0.03
    estimates = [smoothed_ctr(round(n * observed), n) for n in (0, 100, 1000, 10_000, 1_000_000)]
    assert estimates == sorted(estimates)
    distances = [abs(e - observed) for e in estimates]
    assert distances == sorted(distances, reverse=True)
    assert estimates[-1] == pytest.approx(observed, rel=0.01)


def test_value_audiences_and_bid_multipliers_report_every_problem() -> None:
    body = {
        **MINIMAL,
        "who": {"segments": ["champions", "whales"], "due": ["soon"]},
        "bid_multipliers": {"champions": 11, "lost": "0.05", "vip": 2, "due_now": "x"},
    }
    problems = parse(body)
    assert isinstance(problems, list)
    for start in (
        "who.segments[1]: unknown segment 'whales'",
        "who.due[0]: unknown due status 'soon'",
        "bid_multipliers.champions: must be a number from 0.1 to 10",
        "bid_multipliers.lost: must be a number from 0.1 to 10",
        "bid_multipliers.vip: unknown key",
        "bid_multipliers.due_now: must be a number",
    ):
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == 6  # vip: unknown only (2 is a factor)


def test_value_conditions_and_multipliers_survive_the_round_trip() -> None:
    body = {
        **MINIMAL,
        "who": {"segments": ["at_risk"], "due": ["overdue"]},
        "bid_multipliers": {"at_risk": 2, "past_buyers": 0.1, "overdue": "10"},
    }
    campaign = parsed(body)
    data = campaign.to_json()
    assert data["bid_multipliers"] == {"at_risk": "2", "past_buyers": "0.1", "overdue": "10"}
    assert (data["who"]["segments"], data["who"]["due"]) == (["at_risk"], ["overdue"])
    assert parsed(data) == campaign
    assert parsed(MINIMAL).to_json()["bid_multipliers"] == {}


def test_replenish_is_a_strategy_a_campaign_may_name_but_not_a_default() -> None:
    campaign = parsed({**MINIMAL, "what": {"strategies": ["replenish", "popular"]}})
    assert campaign.what.strategies == ("replenish", "popular")
    assert "replenish" not in parsed(MINIMAL).what.effective
