"""When a repeat buyer will order again, and who is due now or overdue.

The expected interval is the shopper's own mean interval shrunk towards the advertiser's
typical one (empirical Bayes, a normal-normal posterior mean with the prior worth `SHRINK_K`
intervals, chosen on the synthetic shops of `kaeru value-eval`): with `n` intervals observed
(orders - 1),

    interval = (n * own_mean + k * typical) / (n + k)

so a shopper with one interval is half their own rhythm and half the shop's, one with ten
almost all their own; a one-time buyer is the shop's typical interval.
`typical` is the median of the repeat buyers' own mean intervals, recomputed off the hot path.
The next order is expected at `last_day + interval`.

Due status of a repeat buyer on `today` (tolerance = max(`MIN_TOLERANCE_DAYS`,
`TOLERANCE_SHARE` * interval)):

| status | rule |
| --- | --- |
| `not_yet` | today < next - tolerance |
| `due_now` | next - tolerance <= today <= next + tolerance |
| `overdue` | next + tolerance < today <= last + `LAPSE_INTERVALS` * interval |
| `lapsed` | later than that |

The status and the expected interval live in `adserver/core/value_segments.py` (the ad decision
asks them); this module computes the typical interval from a sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from statistics import median

from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import (
    LAPSE_INTERVALS,
    MIN_TOLERANCE_DAYS,
    SHRINK_K,
    TOLERANCE_SHARE,
    Due,
    due_status,
    expected_interval,
)

__all__ = [
    "LAPSE_INTERVALS",
    "MIN_TOLERANCE_DAYS",
    "SHRINK_K",
    "TOLERANCE_SHARE",
    "Due",
    "due_status",
    "expected_interval",
    "next_order_day",
    "typical_interval",
]


def typical_interval(records: Iterable[ValueRecord]) -> float | None:
    """The median of the repeat buyers' mean intervals (None without a repeat buyer)."""
    intervals = [r.mean_interval for r in records if r.mean_interval is not None]
    return float(median(intervals)) if intervals else None


def next_order_day(record: ValueRecord, typical: float, k: float = SHRINK_K) -> float:
    return record.last_day + expected_interval(record, typical, k)
