"""The value refresh, off the hot path: per advertiser, from a bounded random sample of its
buyers' value records, the RFM cut points, the typical interval and the fitted BG/NBD and
Gamma-Gamma models (`compute_standing`), and from the repeat gaps the store keeps, the
replenishment interval of each product enough shoppers bought again; both written back as
one small key each (`CustomerValues.write_standing`, `CustomerValues.write_intervals`).

Run by `kaeru value-refresh` (once) and inside `kaeru worker`, `kaeru serve` and `kaeru demo`
(every `REFRESH_SECONDS`): a lease per advertiser (`CustomerValues.claim_refresh`) makes one
process of many do each shop's refresh. The fit is pure Python and takes about a second for
`SAMPLE_SIZE` records: inside a server it runs in a child process (`fit_in="process"`). In a
thread it holds the GIL: a loop of 50 us handlers measured p99 0.3-2 ms idle, 8-12 ms during
a threaded fit, 1.9-2.9 ms during a fit in a child process (two alternated runs, 2 shared
cores). `kaeru value-refresh`, which serves nothing, fits in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Literal

from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import ValueStanding
from adserver.runtime.waiting import pause
from adserver.store import RedisError
from adserver.store.customer_values import CustomerValues
from adserver.value.models import fit_value_model
from adserver.value.replenishment import RepeatGap, intervals_from_gaps
from adserver.value.rfm import rfm_cuts
from adserver.value.timing import typical_interval

log = logging.getLogger(__name__)

DAY_SECONDS = 86400
SAMPLE_SIZE = 5_000  # records per advertiser per refresh (of at most MAX_BUYERS indexed)
MIN_FIT_BUYERS = 50  # fewer: no model (cut points and typical interval still)
REFRESH_SECONDS = 3600
RETRY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Refreshed:
    advertiser: str
    indexed: int
    standing: ValueStanding
    intervals: int


def compute_standing(records: Sequence[ValueRecord], today: int) -> ValueStanding:
    """The advertiser's standing from a sample of its records (pure)."""
    model: tuple[float, ...] = ()
    if len(records) >= MIN_FIT_BUYERS:
        try:
            fitted = fit_value_model(records, today)
            o, s = fitted.orders, fitted.spend
            model = (o.r, o.alpha, o.a, o.b, s.p, s.q, s.gamma)
        except (ValueError, OverflowError, ZeroDivisionError) as exc:
            log.warning("value models not fitted: %s", exc)
    return ValueStanding(
        day=today,
        sampled=len(records),
        cuts=rfm_cuts(records, today),
        typical_interval=typical_interval(records),
        model=model,
    )


class ValueRefresher:
    def __init__(
        self,
        values: CustomerValues,
        advertisers: Callable[[], Sequence[str]],
        every_seconds: int = REFRESH_SECONDS,
        sample_size: int = SAMPLE_SIZE,
        fit_in: Literal["process", "thread"] = "process",
    ) -> None:
        self.values = values
        self.advertisers = advertisers
        self.every_seconds = every_seconds
        self.sample_size = sample_size
        self.fit_in = fit_in
        self.token = f"{os.getpid()}:{secrets.token_hex(6)}"

    async def _compute(self, records: Sequence[ValueRecord], today: int) -> ValueStanding:
        if self.fit_in == "thread" or len(records) < MIN_FIT_BUYERS:
            return await asyncio.to_thread(compute_standing, records, today)
        # A fresh interpreter (spawn: forking a process with threads and sockets is unsafe),
        # once per fit: about 0.3 s to start, against a second of fitting, once an hour.
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(pool, compute_standing, tuple(records), today)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    async def refresh(self, advertiser: str, now: float | None = None) -> Refreshed:
        """Refresh one advertiser now (no lease)."""
        today = int((time.time() if now is None else now) // DAY_SECONDS)
        sample = await self.values.sample(advertiser, self.sample_size)
        standing = await self._compute(sample.records, today)
        gaps = [RepeatGap(*gap) for gap in await self.values.repeat_gaps(advertiser, today)]
        learnt = intervals_from_gaps(gaps)
        ranked = sorted(learnt.values(), key=lambda r: (-r.repeaters, r.product))
        # The intervals first, then the standing that announces them: a serving process
        # reloads a shop's intervals when its standing changed (MarketCache.refresh).
        await self.values.write_intervals(advertiser, {r.product: r.median_days for r in ranked})
        await self.values.write_standing(advertiser, standing)
        return Refreshed(advertiser, sample.indexed, standing, len(ranked))

    async def step(self, now: float | None = None) -> list[Refreshed]:
        """Refresh every advertiser whose lease this process takes."""
        done = []
        for advertiser in self.advertisers():
            if await self.values.claim_refresh(advertiser, self.token, self.every_seconds):
                done.append(await self.refresh(advertiser, now))
        return done

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh until `stop` is set; Redis trouble pauses it, never kills it."""
        while not stop.is_set():
            try:
                for result in await self.step():
                    log.info(
                        "value refresh %s: %d of %d buyers sampled, %d replenishment intervals",
                        result.advertiser,
                        result.standing.sampled,
                        result.indexed,
                        result.intervals,
                    )
                wait = min(60.0, self.every_seconds / 4)
            except (RedisError, OSError) as exc:
                log.warning("value refresh paused: %s", exc)
                wait = RETRY_SECONDS
            except Exception:  # a bug in one shop's fit must not end every later refresh
                log.exception("value refresh failed")
                wait = RETRY_SECONDS
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass
            await pause(0)
