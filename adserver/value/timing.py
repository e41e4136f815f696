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
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from statistics import median

from adserver.core.value_record import ValueRecord

SHRINK_K = 0.5  # the best of 0, 0.5, 1, 2, 5 on both synthetic shops (README: "Customer value")
MIN_TOLERANCE_DAYS = 3.0
TOLERANCE_SHARE = 0.25
LAPSE_INTERVALS = 3.0


class Due(StrEnum):
    NOT_YET = "not_yet"
    DUE_NOW = "due_now"
    OVERDUE = "overdue"
    LAPSED = "lapsed"


def typical_interval(records: Iterable[ValueRecord]) -> float | None:
    """The median of the repeat buyers' mean intervals (None without a repeat buyer)."""
    intervals = [r.mean_interval for r in records if r.mean_interval is not None]
    return float(median(intervals)) if intervals else None


def expected_interval(record: ValueRecord, typical: float, k: float = SHRINK_K) -> float:
    own = record.mean_interval
    if own is None:
        return typical
    n = record.repeat_orders
    return (n * own + k * typical) / (n + k)


def next_order_day(record: ValueRecord, typical: float, k: float = SHRINK_K) -> float:
    return record.last_day + expected_interval(record, typical, k)


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
