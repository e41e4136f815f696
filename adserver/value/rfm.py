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

Scoring one shopper and naming the segment live in `adserver/core/value_segments.py` (the ad
decision calls them); this module computes the cut points from a sample.
"""

from __future__ import annotations

from collections.abc import Iterable

from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import (
    LEVELS,
    MIDDLE,
    SEGMENT_RULES,
    SEGMENTS,
    Rfm,
    RfmCuts,
    higher_is_better,
    lower_is_better,
    rfm_score,
    segment,
)

__all__ = [
    "LEVELS",
    "MIDDLE",
    "SEGMENTS",
    "SEGMENT_RULES",
    "Rfm",
    "RfmCuts",
    "higher_is_better",
    "lower_is_better",
    "quantiles",
    "rfm_cuts",
    "rfm_score",
    "segment",
]


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


def rfm_cuts(records: Iterable[ValueRecord], today: int) -> RfmCuts:
    sample = list(records)
    return RfmCuts(
        recency=quantiles(max(0, today - r.last_day) for r in sample),
        frequency=quantiles(r.orders for r in sample),
        monetary=quantiles(r.revenue_cents for r in sample),
    )
