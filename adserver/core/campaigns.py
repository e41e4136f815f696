"""Campaigns: one-to-one scenarios — whom to retarget with which products, when, where, at what bid.

`parse_campaign` reads the admin API's JSON and reports *every* problem at once, each naming its
JSON path. The questions the decision engine asks (`targets`, `runs_at`, `fits_slot`) are pure and
answer `(False, reason)` instead of raising, so "why this ad" can show the reason. Frequency caps
are declared here but counted elsewhere.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, cast

from adserver.core.value_segments import DUE_STATUSES, MAX_FACTOR, MIN_FACTOR, SEGMENTS

Status = Literal["active", "paused"]
BidType = Literal["cpm", "cpc"]

AUDIENCE_NAMES = ("viewers", "cart_abandoners", "past_buyers", "lapsed", "high_value")
AUDIENCES: frozenset[str] = frozenset(AUDIENCE_NAMES)
STRATEGIES: tuple[str, ...] = ("cart", "recent", "related", "cross_sell", "upsell", "popular")
DEFAULT_STRATEGIES: tuple[str, ...] = ("cart", "recent", "related", "cross_sell", "popular")
# The page's context (`kw=`/`cat=`): popular products matching it. A campaign may name it like
# any other strategy; one that falls back on `popular` without naming it tries it just before
# `popular` (see `What.effective`), so the default order is ..., cross_sell, contextual, popular.
CONTEXTUAL = "contextual"
# Products the shopper bought whose learnt repeat interval has passed: the one strategy that
# may show a purchased item (never in the default order; see `value_segments.replenish`).
REPLENISH = "replenish"
STRATEGY_NAMES: tuple[str, ...] = (*STRATEGIES[:-1], CONTEXTUAL, REPLENISH, STRATEGIES[-1])
# What a bid multiplier may name: an audience, an RFM segment or a due status.
MULTIPLIER_NAMES: tuple[str, ...] = (*AUDIENCE_NAMES, *SEGMENTS, *DUE_STATUSES)
STATUSES: tuple[str, ...] = ("active", "paused")
BID_TYPES: tuple[str, ...] = ("cpm", "cpc")
CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
PUBLISHER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
COUNTRY = re.compile(r"^[A-Z]{2}\Z")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
MAX_NAME = 100
MAX_LIST = 1000  # entries in any list (publishers mostly); membership is a linear scan
MAX_BID = Decimal(1000)
MAX_PLACES = 6  # decimals of money amounts; also keeps "1e-999999999" from exploding in to_json
MAX_DIGITS = 12  # digits before the point
MAX_OFFER_TEXT = 60
OFFER_CODE = re.compile(r"^[A-Z0-9-]{1,20}\Z")


@dataclass(frozen=True, slots=True)
class HighValue:
    min_revenue: Decimal = Decimal(0)
    min_orders: int = 1


@dataclass(frozen=True, slots=True)
class Who:
    include: tuple[str, ...] = ()  # empty: anyone, shoppers without history too
    exclude: tuple[str, ...] = ()
    cart_abandoned_hours: int = 1
    lapsed_days: int = 14
    high_value: HighValue = field(default_factory=HighValue)
    segments: tuple[str, ...] = ()  # RFM segments (any of them); empty: any shopper
    due: tuple[str, ...] = ()  # due statuses (any of them); empty: any shopper


@dataclass(frozen=True, slots=True)
class What:
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES  # in order of preference
    products: int | None = None  # max products per creative; None: the slot's own max

    @property
    def effective(self) -> tuple[str, ...]:
        """The strategies the decision tries, in order: `strategies`, with `contextual` just
        before `popular` when the campaign falls back on `popular` without naming `contextual`
        (with no context on the page, `contextual` gives nothing and `popular` fills)."""
        if CONTEXTUAL in self.strategies or "popular" not in self.strategies:
            return self.strategies
        at = self.strategies.index("popular")
        return (*self.strategies[:at], CONTEXTUAL, *self.strategies[at:])


@dataclass(frozen=True, slots=True)
class When:
    lookback_days: int = 30
    min_delay_minutes: int = 0  # since the shopper's last activity at the shop
    cap_per_day: int | None = None  # impressions per user per UTC day; None: no cap
    cap_per_item_per_day: int | None = None
    hours: tuple[int, int] | None = None  # UTC [start, end); start > end runs overnight
    start: date | None = None  # inclusive, UTC
    end: date | None = None  # inclusive, UTC

    @property
    def lookback_seconds(self) -> int:
        return self.lookback_days * 86400


@dataclass(frozen=True, slots=True)
class Publishers:
    allow: tuple[str, ...] = ()  # empty: every publisher not denied
    deny: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Where:
    sizes: tuple[str, ...] = ()  # empty: every size
    publishers: Publishers = field(default_factory=Publishers)
    countries: tuple[str, ...] = ()  # empty: anywhere, unknown country too


@dataclass(frozen=True, slots=True)
class Bid:
    type: BidType
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Offer:
    """What the campaign's creatives say besides the products ("10% off your first order"),
    with an optional code, shown from `starts` to `ends` (inclusive, UTC; None: open)."""

    text: str
    code: str = ""
    starts: date | None = None
    ends: date | None = None

    def valid_at(self, now: float) -> bool:
        today = datetime.fromtimestamp(now, UTC).date()
        return (self.starts is None or self.starts <= today) and (
            self.ends is None or today <= self.ends
        )


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    advertiser: str
    name: str
    status: Status
    who: Who
    what: What
    when: When
    where: Where
    bid: Bid
    # (audience, segment or due status, factor): the bid times the factors of all the
    # shopper is in (`value_segments.bid_factor`); empty: no multiplier.
    bid_multipliers: tuple[tuple[str, Decimal], ...] = ()
    offer: Offer | None = None  # shown on its creatives while valid

    def to_json(self) -> dict[str, Any]:
        """The admin API body, without id and advertiser (they live in the URL).

        Decimals and dates are strings, "not set" (no cap, all day, no end date...) is null.
        """
        data: dict[str, Any] = _jsonable(asdict(self))
        del data["id"], data["advertiser"]
        data["bid_multipliers"] = {name: format(f, "f") for name, f in self.bid_multipliers}
        return data


@functools.lru_cache(maxsize=1024)
def default_campaign(advertiser: str) -> Campaign:
    """What an advertiser without campaigns runs: anyone, default strategies, CPM 1.00, no caps.
    (Immutable, so one per advertiser is built: it is asked for on every decision.)"""
    return Campaign(
        id="default",
        advertiser=advertiser,
        name="Default",
        status="active",
        who=Who(),
        what=What(),
        when=When(),
        where=Where(),
        bid=Bid("cpm", Decimal("1.00")),
    )


@dataclass(frozen=True, slots=True)
class ShopperFacts:
    """What the decision knows about one shopper at one shop (times in unix seconds)."""

    has_history: bool
    last_seen: float | None
    last_view: float | None
    cart_since: float | None  # time of the latest cart add; None when the cart is empty
    orders: int
    revenue: Decimal
    segment: str | None = None  # RFM segment; None without a value record and standing
    due: str | None = None  # due status; None for a one-time buyer or without them


def audiences(campaign: Campaign, facts: ShopperFacts, now: float) -> frozenset[str]:
    """The audiences the shopper is in, by this campaign's thresholds."""
    who = campaign.who
    found: list[str] = []
    if facts.last_view is not None and now - facts.last_view <= campaign.when.lookback_seconds:
        found.append("viewers")
    if facts.cart_since is not None and now - facts.cart_since >= who.cart_abandoned_hours * 3600:
        found.append("cart_abandoners")
    if facts.orders >= 1:
        found.append("past_buyers")
    if facts.last_seen is not None and now - facts.last_seen >= who.lapsed_days * 86400:
        found.append("lapsed")
    high = who.high_value
    if facts.revenue >= high.min_revenue and facts.orders >= high.min_orders:
        found.append("high_value")
    return frozenset(found)


def targets(campaign: Campaign, facts: ShopperFacts, now: float) -> tuple[bool, str]:
    """Whether the campaign wants this shopper now; else why not."""
    who = campaign.who
    member = audiences(campaign, facts, now)
    if who.include and not any(name in member for name in who.include):
        if not facts.has_history:
            return False, "no history at this shop"
        return False, f"not in any of: {', '.join(who.include)}"
    for name in who.exclude:
        if name in member:
            return False, f"in excluded audience {name}"
    if who.segments and facts.segment not in who.segments:
        if facts.segment is None:
            return False, "no value segment known"
        return False, f"segment {facts.segment} not in: {', '.join(who.segments)}"
    if who.due and facts.due not in who.due:
        if facts.due is None:
            return False, "no due status known"
        return False, f"due status {facts.due} not in: {', '.join(who.due)}"
    delay = campaign.when.min_delay_minutes * 60
    if delay and facts.last_seen is not None and now - facts.last_seen < delay:
        minutes = int((now - facts.last_seen) // 60)
        return False, f"active {minutes} min ago, delay is {delay // 60} min"
    return True, ""


def runs_at(campaign: Campaign, now: float) -> tuple[bool, str]:
    """Whether the campaign is live at `now`: active, within its dates and hours (UTC)."""
    if campaign.status != "active":
        return False, f"campaign is {campaign.status}"
    when = campaign.when
    moment = datetime.fromtimestamp(now, UTC)
    today = moment.date()
    if when.start is not None and today < when.start:
        return False, f"starts {when.start.isoformat()}"
    if when.end is not None and today > when.end:
        return False, f"ended {when.end.isoformat()}"
    if when.hours is not None:
        start, end = when.hours
        hour = moment.hour
        inside = start <= hour < end if start < end else hour >= start or hour < end
        if not inside:
            return False, f"outside hours {start}-{end} UTC"
    return True, ""


def fits_slot(
    campaign: Campaign, size: str, publisher: str, country: str | None
) -> tuple[bool, str]:
    """Whether the slot's size, publisher and country are ones the campaign serves on."""
    where = campaign.where
    if where.sizes and size not in where.sizes:
        return False, f"size {size} not targeted"
    if publisher in where.publishers.deny:
        return False, f"publisher {publisher} is denied"
    if where.publishers.allow and publisher not in where.publishers.allow:
        return False, f"publisher {publisher} not in allow list"
    if where.countries:
        if country is None:
            return False, "country unknown"
        if country.upper() not in where.countries:
            return False, f"country {country} not targeted"
    return True, ""


def expected_value(campaign: Campaign, ctr: float) -> float:
    """Expected revenue of one impression, in the bid's currency."""
    amount = float(campaign.bid.amount)
    return amount / 1000.0 if campaign.bid.type == "cpm" else amount * ctr


def smoothed_ctr(
    clicks: int, impressions: int, prior_ctr: float = 0.005, prior_weight: float = 200.0
) -> float:
    """CTR pulled toward a prior: the prior alone with no data, the observed rate with lots."""
    return (clicks + prior_ctr * prior_weight) / (impressions + prior_weight)


def parse_campaign(
    advertiser: str, campaign_id: str, data: object, known_sizes: Collection[str]
) -> Campaign | list[str]:
    """A campaign from its admin API body, or every problem found, each naming its JSON path."""
    parser = _Parser(known_sizes)
    if not CAMPAIGN_ID.fullmatch(campaign_id):
        parser.problems.append(f"id: {campaign_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if not isinstance(data, dict):
        return [*parser.problems, "campaign: must be a JSON object"]
    body = parser.section(data, "", _KEYS[""])
    name = parser.name(body)
    status = cast(Status, parser.choice(body, "", "status", STATUSES, "active"))
    who = parser.who(parser.section(body.get("who"), "who", _KEYS["who"]))
    what = parser.what(parser.section(body.get("what"), "what", _KEYS["what"]))
    when = parser.when(parser.section(body.get("when"), "when", _KEYS["when"]))
    where = parser.where(parser.section(body.get("where"), "where", _KEYS["where"]))
    bid = parser.bid(body.get("bid"))
    multipliers = parser.multipliers(body.get("bid_multipliers"))
    offer = parser.offer(body.get("offer"))
    if parser.problems or name is None or bid is None:
        return parser.problems
    return Campaign(
        campaign_id, advertiser, name, status, who, what, when, where, bid, multipliers, offer
    )


def _keys(model: type[Any], *skip: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(model) if f.name not in skip)


_KEYS: Mapping[str, tuple[str, ...]] = {
    "": _keys(Campaign, "id", "advertiser"),
    "bid_multipliers": MULTIPLIER_NAMES,
    "who": _keys(Who),
    "who.high_value": _keys(HighValue),
    "what": _keys(What),
    "when": _keys(When),
    "where": _keys(Where),
    "where.publishers": _keys(Publishers),
    "bid": _keys(Bid),
    "offer": _keys(Offer),
}


def _jsonable(value: object) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return value


_PLACES = f" with at most {MAX_PLACES} decimals"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _to_decimal(raw: object) -> Decimal | None:
    """A money amount from a JSON number or numeric string; None when it is not one."""
    if isinstance(raw, bool):
        return None
    try:
        if isinstance(raw, int):
            value = Decimal(raw)
        elif isinstance(raw, float):
            value = Decimal(repr(raw))
        elif isinstance(raw, str):
            value = Decimal(raw.strip())
        else:
            return None
    except InvalidOperation:
        return None
    if not value.is_finite() or value.adjusted() >= MAX_DIGITS:
        return None
    exponent = value.as_tuple().exponent
    return value if isinstance(exponent, int) and exponent >= -MAX_PLACES else None


class _Parser:
    """Reads one campaign body, recording a problem per bad value instead of stopping.

    A missing key and a JSON null both mean "use the default".
    """

    def __init__(self, known_sizes: Collection[str]) -> None:
        self.known_sizes = known_sizes
        self.problems: list[str] = []

    def section(self, raw: object, path: str, keys: Sequence[str]) -> Mapping[str, object]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problems.append(f"{path}: must be an object")
            return {}
        for key in raw:
            if key not in keys:
                self.problems.append(
                    f"{_join(path, str(key))}: unknown key (expected one of: {', '.join(keys)})"
                )
        return cast(Mapping[str, object], raw)

    def integer(
        self, obj: Mapping[str, object], path: str, key: str, low: int, high: int, default: int
    ) -> int:
        raw = obj.get(key)
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            self.problems.append(
                f"{_join(path, key)}: must be a whole number from {low} to {high}, got {raw!r}"
            )
            return default
        return raw

    def choice(
        self, obj: Mapping[str, object], path: str, key: str, options: Sequence[str], default: str
    ) -> str:
        raw = obj.get(key)
        if raw is None:
            return default
        if raw not in options:
            self.problems.append(
                f"{_join(path, key)}: must be one of {', '.join(options)}, got {raw!r}"
            )
            return default
        return cast(str, raw)

    def strings(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        check: Callable[[str], str | None],
        default: tuple[str, ...] = (),
    ) -> tuple[str, ...]:
        """A list of unique strings, each passing `check` (which returns the problem, if any)."""
        raw, path = obj.get(key), _join(path, key)
        if raw is None:
            return default
        if not isinstance(raw, list):
            self.problems.append(f"{path}: must be a list")
            return default
        if len(raw) > MAX_LIST:
            self.problems.append(f"{path}: at most {MAX_LIST} entries, got {len(raw)}")
            return default
        found: list[str] = []
        seen: set[str] = set()
        for index, item in enumerate(raw):
            if not isinstance(item, str):
                problem: str | None = f"must be a string, not {type(item).__name__}"
            elif item in seen:
                problem = f"{item!r} is listed twice"
            else:
                problem = check(item)
            if problem is None:
                found.append(cast(str, item))
                seen.add(cast(str, item))
            else:
                self.problems.append(f"{path}[{index}]: {problem}")
        return tuple(found)

    def name(self, body: Mapping[str, object]) -> str | None:
        raw = body.get("name")
        if raw is None:
            self.problems.append(f"name: required (1-{MAX_NAME} characters)")
            return None
        if not isinstance(raw, str) or not 0 < len(raw.strip()) <= MAX_NAME:
            self.problems.append(f"name: must be a string of 1-{MAX_NAME} characters")
            return None
        return raw.strip()

    def who(self, obj: Mapping[str, object]) -> Who:
        audience = _known("audience", AUDIENCE_NAMES)
        include = self.strings(obj, "who", "include", audience)
        exclude = self.strings(obj, "who", "exclude", audience)
        for name in include:
            if name in exclude:
                self.problems.append(f"who: audience {name!r} is both included and excluded")
        cart_abandoned_hours = self.integer(obj, "who", "cart_abandoned_hours", 0, 720, 1)
        lapsed_days = self.integer(obj, "who", "lapsed_days", 1, 365, 14)
        path = "who.high_value"
        high = self.section(obj.get("high_value"), path, _KEYS[path])
        raw_revenue = high.get("min_revenue")
        min_revenue = Decimal(0) if raw_revenue is None else _to_decimal(raw_revenue)
        if min_revenue is None or min_revenue < 0:
            self.problems.append(f"{path}.min_revenue: must be a number >= 0{_PLACES}")
            min_revenue = Decimal(0)
        min_orders = self.integer(high, path, "min_orders", 1, 100_000, 1)
        high_value = HighValue(min_revenue, min_orders)
        segments = self.strings(obj, "who", "segments", _known("segment", SEGMENTS))
        due = self.strings(obj, "who", "due", _known("due status", DUE_STATUSES))
        return Who(include, exclude, cart_abandoned_hours, lapsed_days, high_value, segments, due)

    def what(self, obj: Mapping[str, object]) -> What:
        strategy = _known("strategy", STRATEGY_NAMES)
        strategies = self.strings(obj, "what", "strategies", strategy, DEFAULT_STRATEGIES)
        if obj.get("strategies") == []:
            self.problems.append("what.strategies: must name at least one strategy")
        products = self.integer(obj, "what", "products", 1, 10, 0) or None
        return What(strategies, products)

    def when(self, obj: Mapping[str, object]) -> When:
        lookback_days = self.integer(obj, "when", "lookback_days", 1, 400, 30)
        min_delay_minutes = self.integer(obj, "when", "min_delay_minutes", 0, 10080, 0)
        cap_per_day = self.integer(obj, "when", "cap_per_day", 0, 1000, 0) or None
        cap_per_item = self.integer(obj, "when", "cap_per_item_per_day", 0, 1000, 0) or None
        hours = self.hours(obj.get("hours"))
        start, end = self.date(obj, "start"), self.date(obj, "end")
        if start is not None and end is not None and end < start:
            self.problems.append(f"when.end: {end} is before when.start {start}")
        return When(lookback_days, min_delay_minutes, cap_per_day, cap_per_item, hours, start, end)

    def hours(self, raw: object) -> tuple[int, int] | None:
        if raw is None:
            return None
        if (
            not isinstance(raw, list)
            or len(raw) != 2
            or any(isinstance(h, bool) or not isinstance(h, int) for h in raw)
            or not 0 <= raw[0] <= 23
            or not 0 <= raw[1] <= 24
        ):
            self.problems.append(
                f"when.hours: must be [start, end] with start 0-23 and end 0-24, got {raw!r}"
            )
            return None
        if raw[0] == raw[1]:
            self.problems.append("when.hours: start equals end; leave hours out to run all day")
            return None
        return raw[0], raw[1]

    def date(self, obj: Mapping[str, object], key: str, path: str = "when") -> date | None:
        raw = obj.get(key)
        if raw is None:
            return None
        if isinstance(raw, str) and ISO_DATE.fullmatch(raw):
            try:
                return date.fromisoformat(raw)
            except ValueError:
                pass
        self.problems.append(f"{path}.{key}: must be a date like 2026-11-01, got {raw!r}")
        return None

    def offer(self, raw: object) -> Offer | None:
        if raw is None:
            return None
        obj = self.section(raw, "offer", _KEYS["offer"])
        if not isinstance(raw, dict):
            return None
        before = len(self.problems)
        text, code = obj.get("text"), obj.get("code")
        if not isinstance(text, str) or not 0 < len(text.strip()) <= MAX_OFFER_TEXT:
            self.problems.append(f"offer.text: required, a string of 1-{MAX_OFFER_TEXT} characters")
        elif not _printable(text):
            self.problems.append(
                "offer.text: must be printable (no line breaks, controls or invisible formatting)"
            )
        if code not in (None, "") and (not isinstance(code, str) or not OFFER_CODE.fullmatch(code)):
            self.problems.append(
                f"offer.code: must be 1-20 upper-case letters, digits or '-', got {code!r}"
            )
        starts, ends = self.date(obj, "starts", "offer"), self.date(obj, "ends", "offer")
        if starts is not None and ends is not None and ends < starts:
            self.problems.append(f"offer.ends: {ends} is before offer.starts {starts}")
        if len(self.problems) > before or not isinstance(text, str):
            return None
        return Offer(text.strip(), code if isinstance(code, str) else "", starts, ends)

    def where(self, obj: Mapping[str, object]) -> Where:
        size = _known("size", sorted(self.known_sizes))
        publisher = _matching(PUBLISHER_ID, "a publisher id (1-64 letters, digits, '.', '_', '-')")
        country = _matching(COUNTRY, "an upper-case ISO 3166 alpha-2 code like 'DE'")
        path = "where.publishers"
        publishers = self.section(obj.get("publishers"), path, _KEYS[path])
        allow = self.strings(publishers, path, "allow", publisher)
        deny = self.strings(publishers, path, "deny", publisher)
        for name in allow:
            if name in deny:
                self.problems.append(f"where.publishers: {name!r} is both allowed and denied")
        return Where(
            sizes=self.strings(obj, "where", "sizes", size),
            publishers=Publishers(allow, deny),
            countries=self.strings(obj, "where", "countries", country),
        )

    def bid(self, raw: object) -> Bid | None:
        if raw is None:
            self.problems.append('bid: required, like {"type": "cpm", "amount": "2.50"}')
            return None
        obj = self.section(raw, "bid", _KEYS["bid"])
        if not isinstance(raw, dict):
            return None
        kind = obj.get("type")
        if kind not in BID_TYPES:
            self.problems.append(f"bid.type: must be one of {', '.join(BID_TYPES)}, got {kind!r}")
        amount = _to_decimal(obj.get("amount"))
        if amount is None or not 0 < amount <= MAX_BID:
            self.problems.append(f"bid.amount: must be a number > 0 and <= {MAX_BID}{_PLACES}")
        if kind not in BID_TYPES or amount is None or not 0 < amount <= MAX_BID:
            return None
        return Bid(cast(BidType, kind), amount)

    def multipliers(self, raw: object) -> tuple[tuple[str, Decimal], ...]:
        path = "bid_multipliers"
        obj = self.section(raw, path, _KEYS[path])
        found: list[tuple[str, Decimal]] = []
        for name, value in obj.items():
            factor = _to_decimal(value)
            if factor is None or not Decimal(str(MIN_FACTOR)) <= factor <= Decimal(MAX_FACTOR):
                bounds = f"from {MIN_FACTOR:g} to {MAX_FACTOR:g}"
                self.problems.append(f"{path}.{name}: must be a number {bounds}{_PLACES}")
            elif name in MULTIPLIER_NAMES:
                found.append((name, factor))
        return tuple(found)


# Refused in an offer's text: controls and line breaks, invisible formatting (bidi overrides,
# zero-width characters), private-use, unassigned and surrogate code points. Spaces of every
# kind (the ideographic space of Japanese text too) are fine.
_UNPRINTABLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def _printable(text: str) -> bool:
    return not any(unicodedata.category(char) in _UNPRINTABLE for char in text)


def _known(what: str, names: Sequence[str]) -> Callable[[str], str | None]:
    def check(item: str) -> str | None:
        if item in names:
            return None
        return f"unknown {what} {item!r} (one of: {', '.join(names)})"

    return check


def _matching(pattern: re.Pattern[str], description: str) -> Callable[[str], str | None]:
    def check(item: str) -> str | None:
        return None if pattern.fullmatch(item) else f"{item!r} is not {description}"

    return check
