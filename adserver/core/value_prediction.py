"""A shopper's predicted value (pure): BG/NBD (how many orders) and Gamma-Gamma (how much per
order) with an advertiser's fitted parameters, as the value refresh keeps them in its standing
(`ValueStanding.model`; fitted in `adserver/value/models.py`). Shared by the segment report and
the ad decision's explanation (`debug=1`), which may not import the value room.

BG/NBD (Fader, Hardie & Lee 2005): while alive, a shopper orders as a Poisson process with
rate lambda ~ Gamma(r, alpha); after each order they drop out with probability p ~ Beta(a, b).
From (x repeat orders, t_x the day of the last one and T the age, both from the first order)
it gives the probability of being alive and the expected orders in the next t days.
Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): order values ~ Gamma(p, nu) with
nu ~ Gamma(q, gamma); the expected order value shrinks the shopper's own mean towards the
population's. Time is in days, money in cents.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import ValueStanding

MODEL_PARAMETERS = 7  # BG/NBD r, alpha, a, b; Gamma-Gamma p, q, gamma


HORIZON_DAYS = 365


@dataclass(frozen=True, slots=True)
class History:
    """A shopper's summary for BG/NBD: repeat orders, day of the last one and age, both counted
    from the first order (days)."""

    x: int
    t_x: float
    age: float

    @classmethod
    def of(cls, record: ValueRecord, today: int) -> History:
        age = max(today - record.first_day, record.last_day - record.first_day)
        return cls(record.repeat_orders, record.last_day - record.first_day, age)


@dataclass(frozen=True, slots=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, h: History) -> float:
        if h.x == 0:
            return 1.0
        return 1.0 / (1.0 + math.exp(self._log_dropped_odds(h)))

    def expected_orders(self, h: History, days: float = HORIZON_DAYS) -> float:
        """Expected orders in the next `days` (Fader, Hardie & Lee 2005, eq. 10)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = days / (alpha + h.age + days)
        hyp = hyp2f1(r + h.x, b + h.x, a + b + h.x - 1, z)
        unseen = math.exp((r + h.x) * math.log((alpha + h.age) / (alpha + h.age + days)))
        first = (a + b + h.x - 1) / (a - 1) * (1.0 - unseen * hyp)
        if h.x == 0:
            return first
        return first / (1.0 + math.exp(self._log_dropped_odds(h)))

    def _log_dropped_odds(self, h: History) -> float:
        return math.log(self.a / (self.b + h.x - 1)) + (self.r + h.x) * math.log(
            (self.alpha + h.age) / (self.alpha + h.t_x)
        )

    def log_likelihood(self, histories: Counter[History]) -> float:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        constant = r * math.log(alpha) + math.lgamma(a + b) - math.lgamma(b) - math.lgamma(r)
        by_x: dict[int, float] = {}
        total = 0.0
        for h, count in histories.items():
            if h.x not in by_x:
                by_x[h.x] = math.lgamma(r + h.x) + math.lgamma(b + h.x) - math.lgamma(a + b + h.x)
            a1 = -(r + h.x) * math.log(alpha + h.age)
            if h.x > 0:
                a2 = math.log(a) - math.log(b + h.x - 1) - (r + h.x) * math.log(alpha + h.t_x)
                top = max(a1, a2)
                mix = top + math.log(math.exp(a1 - top) + math.exp(a2 - top))
            else:
                mix = a1
            total += count * (constant + by_x[h.x] + mix)
        return total


@dataclass(frozen=True, slots=True)
class GammaGamma:
    p: float
    q: float
    gamma: float

    def expected_order_value(self, orders: int, mean_value: float) -> float:
        """The shopper's mean order value shrunk towards the population's: with n orders,
        weight p*n / (p*n + q - 1) on their own mean."""
        if self.q <= 1:  # the population mean is infinite: trust the shopper's own
            return mean_value
        population = self.p * self.gamma / (self.q - 1)
        weight = self.p * orders / (self.p * orders + self.q - 1)
        return (1 - weight) * population + weight * mean_value

    def log_likelihood(self, spends: Sequence[tuple[int, float]]) -> float:
        p, q, g = self.p, self.q, self.gamma
        constant = q * math.log(g) - math.lgamma(q)
        total = 0.0
        for n, m in spends:
            px = p * n
            total += (
                constant
                + math.lgamma(px + q)
                - math.lgamma(px)
                + (px - 1) * math.log(m)
                + px * math.log(n)
                - (px + q) * math.log(g + m * n)
            )
        return total


@dataclass(frozen=True, slots=True)
class ValueModel:
    """An advertiser's fitted models: the predicted value of one shopper over a horizon."""

    orders: BgNbd
    spend: GammaGamma

    def predicted_value(self, record: ValueRecord, today: int, days: float = HORIZON_DAYS) -> float:
        """Expected revenue (cents) in the next `days`."""
        expected = self.orders.expected_orders(History.of(record, today), days)
        value = self.spend.expected_order_value(record.orders, record.mean_order_cents)
        return expected * value


def model_of(standing: ValueStanding | None) -> ValueModel | None:
    """The standing's fitted models, or None without a fit (too few buyers, a failed fit) or
    with parameters no model has (every one is positive)."""
    if standing is None or len(standing.model) != MODEL_PARAMETERS:
        return None
    if min(standing.model) <= 0:
        return None
    r, alpha, a, b, p, q, gamma = standing.model
    return ValueModel(BgNbd(r, alpha, a, b), GammaGamma(p, q, gamma))


def predicted_cents(
    model: ValueModel | None, record: ValueRecord | None, today: int
) -> float | None:
    """The shopper's expected revenue (cents) in the next 12 months, or None without a model or
    a record, or when the numbers give no finite, non-negative value."""
    if model is None or record is None:
        return None
    try:
        value = model.predicted_value(record, today)
    except (ValueError, OverflowError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def hyp2f1(a: float, b: float, c: float, z: float, tolerance: float = 1e-12) -> float:
    """Gauss's hypergeometric 2F1(a, b; c; z) for 0 <= z < 1, by its series (z here is at most
    days / (alpha + age + days), well below 1 for a horizon of a year)."""
    if not 0 <= z < 1:
        raise ValueError("hyp2f1 needs 0 <= z < 1")
    term, total = 1.0, 1.0
    for k in range(100_000):
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
        if abs(term) <= tolerance * abs(total):
            return total
    return total
