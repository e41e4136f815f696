"""A synthetic shop with known parameters: shoppers drawn from BG/NBD (orders) and Gamma-Gamma
(order values), seeded, so that predictions can be checked against what really happened next.

Every shopper's first order falls in the calibration year; orders then follow a Poisson process
at their own rate (or, with `regularity` above 1, a renewal process with gamma gaps) until they
drop out (after a repeat order, with their own probability) or the holdout year ends. The
clickstreams in ../shared/data carry no purchases (views and clicks only, no shopper across
sessions), so this is where the value predictions are measured.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from adserver.core.value_record import ValueRecord, with_order
from adserver.value.models import BgNbd, GammaGamma

CALIBRATION_DAYS = 365
HOLDOUT_DAYS = 365
TRUE_ORDERS = BgNbd(r=0.9, alpha=80.0, a=0.9, b=5.0)  # one order per ~90 days while alive
TRUE_SPEND = GammaGamma(p=6.0, q=4.0, gamma=1500.0)  # mean order 30.00 (cents)


@dataclass(frozen=True, slots=True)
class Order:
    day: float
    cents: int


@dataclass(frozen=True, slots=True)
class SyntheticShopper:
    orders: tuple[Order, ...]

    def record_until(self, day: float) -> ValueRecord | None:
        record = None
        for i, order in enumerate(self.orders):
            if order.day < day:
                record = with_order(record, int(order.day), order.cents, f"o{i}")
        return record

    def between(self, start: float, end: float) -> list[Order]:
        return [o for o in self.orders if start <= o.day < end]


def simulate(
    shoppers: int,
    seed: int = 1,
    orders: BgNbd = TRUE_ORDERS,
    spend: GammaGamma = TRUE_SPEND,
    calibration_days: int = CALIBRATION_DAYS,
    holdout_days: int = HOLDOUT_DAYS,
    regularity: float = 1.0,
) -> Iterator[SyntheticShopper]:
    """`regularity` is the shape of the gaps between orders (gamma distributed, mean 1/rate):
    1 is BG/NBD's memoryless Poisson process; 4 a shopper with a rhythm (replenishment)."""
    rng = random.Random(seed)
    end = calibration_days + holdout_days
    for _ in range(shoppers):
        rate = rng.gammavariate(orders.r, 1.0 / orders.alpha)
        dropout = rng.betavariate(orders.a, orders.b)
        scale = 1.0 / rng.gammavariate(spend.q, 1.0 / spend.gamma)  # 1 / nu
        day = rng.uniform(0, calibration_days)
        placed = [Order(day, _value(rng, spend.p, scale))]
        while True:
            day += rng.gammavariate(regularity, 1.0 / (rate * regularity)) if rate > 0 else end
            if day >= end:
                break
            placed.append(Order(day, _value(rng, spend.p, scale)))
            if rng.random() < dropout:
                break
        yield SyntheticShopper(tuple(placed))


def _value(rng: random.Random, shape: float, scale: float) -> int:
    return max(1, round(rng.gammavariate(shape, scale)))
