"""What the ad decision asks of a shopper's value, pure: their RFM segment and due status
against the advertiser's standing, bid factors, and the products due for replenishment.

The advertiser's standing (`ValueStanding`: RFM cut points, typical interval, the fitted
models' parameters) is computed off the hot path from a sample of its value records
(`adserver/value/refresh.py`) and kept as one small string (`encode_standing`). The decision
gets it with the shopper's record (`ShopperValue`); without either, a shopper has no segment
and no due status, so a campaign that asks for one does not target them.

RFM (recency, frequency, monetary) scores run from 1 to 5 against the cut points; a score
rises only strictly past a cut point. The segment is the first rule of `SEGMENT_RULES` that
matches (FM: the mean of F and M, rounded down); see README "Customer value" for the table.
The due status shrinks the shopper's own mean interval towards the advertiser's typical one,
weight n/(n+k) on their own (n = orders - 1, k = `SHRINK_K`).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from adserver.core.shopper import Shopper
from adserver.core.value_record import ValueRecord

LEVELS = 5
MIDDLE = (LEVELS + 1) // 2  # every score without a distribution to compare with
SHRINK_K = 0.5  # the best of 0, 0.5, 1, 2, 5 on both synthetic shops (README: "Customer value")
MIN_TOLERANCE_DAYS = 3.0
TOLERANCE_SHARE = 0.25
LAPSE_INTERVALS = 3.0
REPLENISH_EARLY_SHARE = 0.2  # due from 80% of the product's interval...
REPLENISH_LATE_FACTOR = 2.0  # ...up to twice it
MIN_FACTOR, MAX_FACTOR = 0.1, 10.0
STANDING_VERSION = 1
MAX_STANDING_BYTES = 2048


def higher_is_better(value: float, cuts: Sequence[float]) -> int:
    return 1 + bisect_left(cuts, value) if cuts else MIDDLE


def lower_is_better(value: float, cuts: Sequence[float]) -> int:
    return LEVELS - bisect_right(cuts, value) if cuts else MIDDLE


@dataclass(frozen=True, slots=True)
class RfmCuts:
    """An advertiser's cut points: recency in days, frequency in orders, monetary in cents."""

    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int

    @property
    def fm(self) -> int:
        return (self.frequency + self.monetary) // 2


def rfm_score(record: ValueRecord, cuts: RfmCuts, today: int) -> Rfm:
    return Rfm(
        recency=lower_is_better(max(0, today - record.last_day), cuts.recency),
        frequency=higher_is_better(record.orders, cuts.frequency),
        monetary=higher_is_better(record.revenue_cents, cuts.monetary),
    )


Rule = Callable[[Rfm, ValueRecord], bool]
SEGMENT_RULES: tuple[tuple[str, Rule], ...] = (
    ("new", lambda s, r: r.orders == 1 and s.recency >= 4),
    ("champions", lambda s, r: s.recency >= 4 and s.fm >= 4),
    ("loyal", lambda s, r: s.recency >= 3 and s.fm >= 3),
    ("potential_loyal", lambda s, r: s.recency >= 4),
    ("at_risk", lambda s, r: s.recency <= 2 and s.fm >= 3),
    ("needs_attention", lambda s, r: s.recency == 3),
    ("hibernating", lambda s, r: s.recency == 2),
    ("lost", lambda s, r: True),
)
SEGMENTS = tuple(name for name, _ in SEGMENT_RULES)


def segment(score: Rfm, record: ValueRecord) -> str:
    return next(name for name, rule in SEGMENT_RULES if rule(score, record))


class Due(StrEnum):
    NOT_YET = "not_yet"
    DUE_NOW = "due_now"
    OVERDUE = "overdue"
    LAPSED = "lapsed"


DUE_STATUSES = tuple(d.value for d in Due)


def expected_interval(record: ValueRecord, typical: float, k: float = SHRINK_K) -> float:
    own = record.mean_interval
    if own is None:
        return typical
    n = record.repeat_orders
    return (n * own + k * typical) / (n + k)


def due_status(record: ValueRecord, today: int, typical: float, k: float = SHRINK_K) -> Due | None:
    """The status of a repeat buyer; None for a one-time buyer (no rhythm of their own)."""
    if record.orders < 2:
        return None
    interval = expected_interval(record, typical, k)
    expected = record.last_day + interval
    tolerance = max(MIN_TOLERANCE_DAYS, TOLERANCE_SHARE * interval)
    if today < expected - tolerance:
        return Due.NOT_YET
    if today <= expected + tolerance:
        return Due.DUE_NOW
    if today <= record.last_day + LAPSE_INTERVALS * interval:
        return Due.OVERDUE
    return Due.LAPSED


@dataclass(frozen=True, slots=True)
class ValueStanding:
    """An advertiser's value standing, from the refresh's sample (`day`: when it was computed,
    days since the epoch; `sampled`: records behind it; `model`: BG/NBD r, alpha, a, b and
    Gamma-Gamma p, q, gamma, or () when the fit failed or the sample was too small)."""

    day: int
    sampled: int
    cuts: RfmCuts
    typical_interval: float | None
    model: tuple[float, ...] = ()


class StandingError(ValueError):
    """A stored standing that is not one (foreign, corrupted or of another version)."""


def encode_standing(standing: ValueStanding) -> str:
    def rounded(values: Iterable[float]) -> list[float]:
        return [round(v, 4) for v in values]

    body = {
        "v": STANDING_VERSION,
        "day": standing.day,
        "n": standing.sampled,
        "r": rounded(standing.cuts.recency),
        "f": rounded(standing.cuts.frequency),
        "m": rounded(standing.cuts.monetary),
        "t": None if standing.typical_interval is None else round(standing.typical_interval, 3),
        "model": [float(f"{v:.6g}") for v in standing.model],
    }
    return json.dumps(body, separators=(",", ":"))


def decode_standing(raw: str | bytes) -> ValueStanding:
    if len(raw) > MAX_STANDING_BYTES:
        raise StandingError("standing too long")
    try:
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("v") != STANDING_VERSION:
            raise StandingError("not a standing of this version")
        typical = body["t"]
        standing = ValueStanding(
            day=int(body["day"]),
            sampled=int(body["n"]),
            cuts=RfmCuts(*(_floats(body[k], LEVELS - 1) for k in ("r", "f", "m"))),
            typical_interval=None if typical is None else float(typical),
            model=_floats(body["model"], 7),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StandingError(f"not a value standing: {exc}") from None
    if standing.typical_interval is not None and not standing.typical_interval > 0:
        raise StandingError("typical interval must be positive")
    return standing


def _floats(raw: object, most: int) -> tuple[float, ...]:
    if not isinstance(raw, list) or len(raw) > most:
        raise ValueError("not a list of numbers")
    values = tuple(float(v) for v in raw)
    if not all(math.isfinite(v) for v in values):
        raise ValueError("not finite")
    return values


@dataclass(frozen=True, slots=True)
class ShopperValue:
    """What the decision knows of one shopper's value at one shop: their record and the
    shop's standing (either None: no segment, no due status), the day each product was last
    bought (days since the epoch) and the shop's replenishment intervals (days) per product."""

    record: ValueRecord | None = None
    standing: ValueStanding | None = None
    bought_days: Mapping[str, float] = field(default_factory=dict)
    intervals: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ValueClass:
    segment: str | None = None
    due: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.segment, self.due) if n is not None)


NO_CLASS = ValueClass()


def classify(value: ShopperValue | None, today: int) -> ValueClass:
    """The shopper's segment and due status (each None when it cannot be told)."""
    if value is None or value.record is None or value.standing is None:
        return NO_CLASS
    record, standing = value.record, value.standing
    name = segment(rfm_score(record, standing.cuts, today), record)
    typical = standing.typical_interval
    due = None if typical is None else due_status(record, today, typical)
    return ValueClass(name, None if due is None else due.value)


def bid_factor(multipliers: Mapping[str, float], names: Iterable[str]) -> float:
    """The product of the factors of every name (audience, segment, due status) the shopper
    is in, kept within [MIN_FACTOR, MAX_FACTOR]; 1.0 when none applies."""
    factor = 1.0
    for name in names:
        factor *= multipliers.get(name, 1.0)
    return min(MAX_FACTOR, max(MIN_FACTOR, factor))


def replenishment_due(
    last_bought: float,
    today: float,
    interval_days: float,
    early_share: float = REPLENISH_EARLY_SHARE,
) -> bool:
    """Whether a product last bought on `last_bought` is due again: from `early_share` of its
    interval before it has passed, up to `REPLENISH_LATE_FACTOR` times the interval."""
    elapsed = today - last_bought
    return (1 - early_share) * interval_days <= elapsed <= REPLENISH_LATE_FACTOR * interval_days


def replenish(value: ShopperValue | None, today: float) -> list[str]:
    """The products the shopper bought whose learnt interval has (about) passed, the most
    overdue first (elapsed / interval, highest first; ties by product id). Only products the
    shop learnt an interval for, i.e. ones that enough other shoppers bought again."""
    if value is None:
        return []
    due = [
        (-(today - day) / value.intervals[sku], sku)
        for sku, day in value.bought_days.items()
        if sku in value.intervals and replenishment_due(day, today, value.intervals[sku])
    ]
    return [sku for _, sku in sorted(due)]


def shopper_values(
    shopper: Shopper,
    standing: Callable[[str], ValueStanding | None],
    intervals: Callable[[str], Mapping[str, float]],
) -> dict[str, ShopperValue]:
    """The shopper's value at each shop they bought from (their record and purchase days from
    the profile read, the shop's standing and intervals from the process's cache), for
    `decide(…, values=…)`; shops where they bought nothing are left out."""
    values: dict[str, ShopperValue] = {}
    for history in shopper.histories:
        if history.value is None and not history.bought:
            continue
        shop = history.advertiser
        days = {
            sku: t / 86400 for sku, t in zip(history.bought, history.bought_times, strict=False)
        }
        values[shop] = ShopperValue(history.value, standing(shop), days, intervals(shop))
    return values
