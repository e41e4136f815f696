"""The shoppers' value records (`keys.user_value`): one script call per new order.

Only new orders are to be recorded: the profile script (`scripts.RECORD_EVENT`) is what tells
a new order id from one recorded before (the orders hash, `keys.user_orders`); the record's
fingerprint of the latest order makes the same order sent twice in a row change nothing.
Not called by the pixel yet: the integration into the purchase flow comes with the campaigns
that use it. Calling this after `Store.record_many` only for purchases it reports as new would
miss an order whose first write Redis applied but whose answer was lost (the replay reports it
as seen); exactly once takes the update inside the profile script's new-purchase branch, or a
consumer of the event stream with the learner's batch marks.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from redis.asyncio import Redis

from adserver.core.value_record import (
    MAX_CENTS,
    MAX_DAY,
    RecordError,
    ValueRecord,
    decode_record,
    order_fingerprint,
)
from adserver.store import keys, scripts
from adserver.store.base import text

DAY_SECONDS = 86400


class CustomerValues:
    def __init__(self, redis: Redis, lookback_seconds: int) -> None:
        self.redis = redis
        self.lookback_seconds = lookback_seconds
        self._record = redis.register_script(scripts.RECORD_VALUE)

    async def record_order(
        self, uid: str, advertiser: str, order: str, at: float, revenue: Decimal
    ) -> ValueRecord | None:
        """Fold a new order (`at`: unix seconds; `revenue` in the shop's currency) into the
        shopper's record; None when the shopper was erased since (the order is not kept)."""
        day = min(max(0, int(at // DAY_SECONDS)), MAX_DAY)
        cents = int((revenue * 100).to_integral_value(ROUND_HALF_UP))
        reply = await self._record(
            keys=[keys.user_value(uid, advertiser), keys.user_forgotten(uid)],
            args=[
                day,
                min(max(0, cents), MAX_CENTS),
                order_fingerprint(order),
                self.lookback_seconds,
                int(at * 1000),
            ],
        )
        return None if reply is None else decode_record(text(reply))

    async def read(self, uid: str, advertiser: str) -> ValueRecord | None:
        """The shopper's record; None without one (or with a value that is not one)."""
        raw = await self.redis.get(keys.user_value(uid, advertiser))
        if raw is None:
            return None
        try:
            return decode_record(raw)
        except RecordError:
            return None
