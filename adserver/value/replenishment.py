"""How long a product lasts: per product, the median days between two purchases of it by the
same shopper, learnt from every shopper's purchases.

Only products that at least `MIN_REPEATERS` different shoppers bought again get an interval
(fewer would make one shopper's habit the product's); gaps shorter than `MIN_GAP_DAYS` (the
same order reported twice, or a second unit bought the same day) are not a repeat.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median

from adserver.core.value_segments import REPLENISH_EARLY_SHARE, replenishment_due

MIN_REPEATERS = 20
MIN_GAP_DAYS = 1.0


@dataclass(frozen=True, slots=True)
class Purchase:
    uid: str
    product: str
    day: float


@dataclass(frozen=True, slots=True)
class Replenishment:
    product: str
    median_days: float
    repeaters: int  # shoppers who bought it again
    gaps: int  # repeat intervals behind the median


def replenishment_intervals(
    purchases: Iterable[Purchase],
    min_repeaters: int = MIN_REPEATERS,
    min_gap_days: float = MIN_GAP_DAYS,
) -> dict[str, Replenishment]:
    days: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    for purchase in purchases:
        days[(purchase.product, purchase.uid)].append(purchase.day)
    gaps: defaultdict[str, list[float]] = defaultdict(list)
    repeaters: defaultdict[str, int] = defaultdict(int)
    for (product, _), bought in days.items():
        bought.sort()
        own = [b - a for a, b in zip(bought, bought[1:], strict=False) if b - a >= min_gap_days]
        if own:
            gaps[product].extend(own)
            repeaters[product] += 1
    return {
        product: Replenishment(product, float(median(gaps[product])), count, len(gaps[product]))
        for product, count in repeaters.items()
        if count >= min_repeaters
    }


def due_for_replenishment(
    last_bought: float,
    today: float,
    interval: Replenishment,
    early_share: float = REPLENISH_EARLY_SHARE,
) -> bool:
    """Whether a shopper who last bought the product on `last_bought` is due for it again:
    from `early_share` of the interval before it has passed on, up to twice the interval
    (`adserver.core.value_segments.replenishment_due`, which the `replenish` strategy asks)."""
    return replenishment_due(last_bought, today, interval.median_days, early_share)


@dataclass(frozen=True, slots=True)
class RepeatGap:
    """One shopper's latest gap between two purchases of one product (days), noted when the
    second purchase is recorded (`CustomerValues.note_repeat`)."""

    uid: str
    product: str
    gap_days: float


def intervals_from_gaps(
    gaps: Iterable[RepeatGap],
    min_repeaters: int = MIN_REPEATERS,
    min_gap_days: float = MIN_GAP_DAYS,
) -> dict[str, Replenishment]:
    """`replenishment_intervals` from the gaps the store keeps (one per shopper and product,
    so every gap is from a different shopper): the median gap of products at least
    `min_repeaters` shoppers bought again."""
    by_product: defaultdict[str, list[float]] = defaultdict(list)
    for gap in gaps:
        if gap.gap_days >= min_gap_days:
            by_product[gap.product].append(gap.gap_days)
    return {
        product: Replenishment(product, float(median(found)), len(found), len(found))
        for product, found in by_product.items()
        if len(found) >= min_repeaters
    }
