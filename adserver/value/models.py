"""BG/NBD (how many orders) and Gamma-Gamma (how much per order), fitted per advertiser.

BG/NBD (Fader, Hardie & Lee 2005): while alive, a shopper orders as a Poisson process with
rate lambda ~ Gamma(r, alpha); after each order they drop out with probability p ~ Beta(a, b).
From (x repeat orders, t_x the day of the last one and T the age, both from the first order)
it gives the probability of being alive and the expected orders in the next t days.
Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): order values ~ Gamma(p, nu) with
nu ~ Gamma(q, gamma); the expected order value shrinks the shopper's own mean towards the
population's. Both are fitted by maximum likelihood (Nelder-Mead on the log parameters, pure
Python: a few seconds for some thousands of shoppers, off the hot path). Time is in days.

One difference from the usual setup: the record keeps the mean value of all orders (not of the
repeat orders only), so Gamma-Gamma is fitted on every buyer with x = orders.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from adserver.core.value_record import ValueRecord

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


def fit_bgnbd(histories: Iterable[History]) -> BgNbd:
    counted = Counter(histories)
    if not counted:
        raise ValueError("no shopper to fit")
    mean_age = sum(h.age * c for h, c in counted.items()) / sum(counted.values())

    def loss(logs: Sequence[float]) -> float:
        r, alpha, a, b = (math.exp(v) for v in logs)
        try:
            return -BgNbd(r, alpha, a, b).log_likelihood(counted)
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.inf

    start = [0.0, math.log(max(1.0, mean_age)), 0.0, 0.0]
    r, alpha, a, b = (math.exp(v) for v in nelder_mead(loss, start))
    return BgNbd(r, alpha, a, b)


def fit_gamma_gamma(spends: Iterable[tuple[int, float]]) -> GammaGamma:
    """Fitted on (orders, mean order value) of buyers with a positive mean."""
    kept = [(n, m) for n, m in spends if n >= 1 and m > 0]
    if not kept:
        raise ValueError("no buyer to fit")
    mean = sum(m for _, m in kept) / len(kept)

    def loss(logs: Sequence[float]) -> float:
        p, q, g = (math.exp(v) for v in logs)
        try:
            return -GammaGamma(p, q, g).log_likelihood(kept)
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.inf

    p, q, g = (math.exp(v) for v in nelder_mead(loss, [0.0, math.log(2.0), math.log(mean)]))
    return GammaGamma(p, q, g)


def fit_value_model(records: Iterable[ValueRecord], today: int) -> ValueModel:
    sample = list(records)
    orders = fit_bgnbd(History.of(r, today) for r in sample)
    spend = fit_gamma_gamma((r.orders, r.mean_order_cents) for r in sample)
    return ValueModel(orders, spend)


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


def nelder_mead(
    f: Callable[[Sequence[float]], float],
    start: Sequence[float],
    step: float = 0.5,
    iterations: int = 4000,
    tolerance: float = 1e-10,
) -> list[float]:
    """The minimum of `f` near `start` by the Nelder-Mead simplex (standard coefficients)."""
    n = len(start)
    simplex = [list(start)] + [
        [v + (step if i == j else 0.0) for j, v in enumerate(start)] for i in range(n)
    ]
    values = [f(point) for point in simplex]
    for _ in range(iterations):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if abs(values[-1] - values[0]) <= tolerance * (abs(values[0]) + tolerance):
            break
        centre = [sum(p[j] for p in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]

        def toward(
            share: float, centre: list[float] = centre, worst: list[float] = worst
        ) -> list[float]:
            return [c + share * (w - c) for c, w in zip(centre, worst, strict=True)]

        reflected = toward(-1.0)
        fr = f(reflected)
        if fr < values[0]:
            expanded = toward(-2.0)
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = toward(0.5 if fr >= values[-1] else -0.5)
            fc = f(contracted)
            if fc < min(fr, values[-1]):
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [
                    [(b + v) / 2 for b, v in zip(best, p, strict=True)] for p in simplex[1:]
                ]
                values = [values[0]] + [f(p) for p in simplex[1:]]
    return simplex[min(range(n + 1), key=values.__getitem__)]
