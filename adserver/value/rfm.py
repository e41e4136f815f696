"""RFM: recency, frequency and monetary scores from 1 to 5 against the advertiser's own
distribution, and the named segments campaigns can target.

The cut points are quintiles of a sample of the advertiser's records, recomputed off the hot
path (`rfm_cuts`); scoring one shopper against them is a few comparisons (`rfm_score`).
Recency is days since the last order (fewer is better), frequency the number of orders,
monetary the revenue. A score rises only strictly past a cut point (a value equal to one keeps
the lower score): with most shoppers at one order they all share the lowest frequency score
and only the repeat buyers rise above it.

Segments (`SEGMENT_RULES`, the first rule that matches wins; FM is the mean of the frequency
and monetary scores, rounded down):

| segment | rule |
| --- | --- |
| `new` | one order, R >= 4 |
| `champions` | R >= 4, FM >= 4 |
| `loyal` | R >= 3, FM >= 3 |
| `potential_loyal` | R >= 4 |
| `at_risk` | R <= 2, FM >= 3 |
| `needs_attention` | R = 3 |
| `hibernating` | R = 2 |
| `lost` | R = 1 |
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from adserver.core.value_record import ValueRecord

LEVELS = 5
MIDDLE = (LEVELS + 1) // 2  # every score without a distribution to compare with


def quantiles(sample: Iterable[float], parts: int = LEVELS) -> tuple[float, ...]:
    """The `parts - 1` cut points splitting `sample` into equal shares (linear interpolation
    between order statistics, as numpy's default); () for an empty sample."""
    values = sorted(sample)
    if not values:
        return ()
    cuts = []
    for i in range(1, parts):
        position = (len(values) - 1) * i / parts
        low = int(position)
        high = min(low + 1, len(values) - 1)
        cuts.append(values[low] + (values[high] - values[low]) * (position - low))
    return tuple(cuts)


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


def rfm_cuts(records: Iterable[ValueRecord], today: int) -> RfmCuts:
    sample = list(records)
    return RfmCuts(
        recency=quantiles(max(0, today - r.last_day) for r in sample),
        frequency=quantiles(r.orders for r in sample),
        monetary=quantiles(r.revenue_cents for r in sample),
    )


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
