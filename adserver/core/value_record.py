"""One shopper's value at one advertiser, kept in a few dozen bytes.

`ValueRecord` holds the first and last order day (days since 1970-01-01 UTC), the number of
orders, the revenue in cents and a short fingerprint of the latest order id. The mean interval
between orders is not stored: for orders in any arrival order it is exactly
`(last_day - first_day) / (orders - 1)`, the mean of the gaps between consecutive orders.

Deduplication: the store already counts each order once per shopper and advertiser (the
orders hash `adserver/store/keys.py::user_orders`, checked by the profile script: a purchase
whose order id was recorded before is "not new"). A record is updated only for new orders; the
fingerprint is a second guard, so the same order applied twice in a row (a replay whose first
answer was lost) changes nothing.

Encoded as `1.<first>.<span>.<orders>.<cents>.<fingerprint>`, numbers in base 36: about 25
bytes for a typical shopper, at most `MAX_ENCODED` bytes for any record.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

VERSION = "1"
MAX_DAY = 36**4 - 1  # 4 base-36 digits: until the year 4556
MAX_ORDERS = 36**3 - 1
MAX_CENTS = 36**10 - 1  # about 3.6e13 dollars: clamped, never wraps
FINGERPRINT_CHARS = 6
MAX_ENCODED = 1 + 1 + 4 + 1 + 4 + 1 + 3 + 1 + 10 + 1 + FINGERPRINT_CHARS  # 33 bytes
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
NUMBER = re.compile(r"[0-9a-z]{1,10}")
FINGERPRINT = re.compile(rf"[0-9a-z]{{0,{FINGERPRINT_CHARS}}}")


class RecordError(ValueError):
    """An encoded record that is not one (a foreign or corrupted value)."""


@dataclass(frozen=True, slots=True)
class ValueRecord:
    first_day: int
    last_day: int
    orders: int
    revenue_cents: int
    last_order: str = ""  # fingerprint of the latest order id applied

    @property
    def repeat_orders(self) -> int:
        return max(0, self.orders - 1)

    @property
    def mean_interval(self) -> float | None:
        """Mean days between consecutive orders; None for fewer than two orders."""
        if self.orders < 2:
            return None
        return (self.last_day - self.first_day) / (self.orders - 1)

    @property
    def mean_order_cents(self) -> float:
        return self.revenue_cents / self.orders if self.orders else 0.0


def order_fingerprint(order_id: str) -> str:
    digest = int.from_bytes(hashlib.blake2b(order_id.encode(), digest_size=4).digest(), "big")
    return _base36(digest % 36**FINGERPRINT_CHARS).rjust(FINGERPRINT_CHARS, "0")


def with_order(
    record: ValueRecord | None, day: int, revenue_cents: int, order_id: str
) -> ValueRecord:
    """The record after one new order (`day`: days since the epoch, UTC). An order older than
    the first or newer than the last moves that end; the same order id applied again right
    after itself changes nothing."""
    fingerprint = order_fingerprint(order_id)
    day = min(max(0, day), MAX_DAY)
    cents = max(0, revenue_cents)
    if record is None:
        return ValueRecord(day, day, 1, min(cents, MAX_CENTS), fingerprint)
    if record.last_order == fingerprint:
        return record
    return replace(
        record,
        first_day=min(record.first_day, day),
        last_day=max(record.last_day, day),
        orders=min(record.orders + 1, MAX_ORDERS),
        revenue_cents=min(record.revenue_cents + cents, MAX_CENTS),
        last_order=fingerprint,
    )


def encode_record(record: ValueRecord) -> str:
    span = record.last_day - record.first_day
    parts = (record.first_day, span, record.orders, record.revenue_cents)
    return ".".join((VERSION, *(_base36(n) for n in parts), record.last_order))


def decode_record(text: str | bytes) -> ValueRecord:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    fields = text.split(".")
    if len(text) > MAX_ENCODED or len(fields) != 6 or fields[0] != VERSION:
        raise RecordError(f"not a value record: {text[:40]!r}")
    if not all(NUMBER.fullmatch(f) for f in fields[1:5]) or not FINGERPRINT.fullmatch(fields[5]):
        raise RecordError(f"not a value record: {text[:40]!r}")
    first, span, orders, cents = (int(f, 36) for f in fields[1:5])
    fingerprint = fields[5]
    if orders < 1 or first + span > MAX_DAY:
        raise RecordError(f"not a value record: {text[:40]!r}")
    return ValueRecord(first, first + span, orders, cents, fingerprint)


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("negative")
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = DIGITS[digit] + text
        if number == 0:
            return text
