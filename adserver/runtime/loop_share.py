"""Sharing the event loop with long work: a caller doing CPU work in small steps calls
`pause_if_due()` between them, and every SLICE_SECONDS of such work in the process (all
callers together) the loop is left for PAUSE_SECONDS to everyone else, so pixels and ads are
answered within a few milliseconds whatever is being imported or loaded. (A thread would hold
the GIL for as long as a C parser runs, and hand it back only every 5 ms.)"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

SLICE_SECONDS = 0.002  # the longest such work holds the event loop at a time ...
PAUSE_SECONDS = 0.001  # ... before leaving it this long to everyone else


class LoopShare:
    def __init__(self) -> None:
        self._since = time.perf_counter()

    async def pause_if_due(self) -> None:
        if time.perf_counter() - self._since >= SLICE_SECONDS:
            # Not sleep(0): that yields one turn of the loop, and a request needs several
            # (read, handler, Redis, write), each of which would then wait for a slice.
            await asyncio.sleep(PAUSE_SECONDS)
            self._since = time.perf_counter()


LOOP_SHARE = LoopShare()  # one clock per process, shared by every caller


_quiet = 0


@contextmanager
def no_full_collections() -> Iterator[None]:
    """For building a large long-lived structure (a catalog): a full collection of the
    cyclic GC scans every object of the process, ~200 ms with a catalog of 200,000 products,
    and building one triggers several. So the collector waits while it is built, and what
    exists then is frozen (gc.freeze: never scanned again; objects are still freed by their
    reference counts, as products, which hold no cycles, are). Cycles that became garbage in
    that window stay in memory: a small price, paid once per catalog load."""
    global _quiet
    enabled = gc.isenabled() or _quiet > 0
    if enabled:
        gc.disable()
    _quiet += 1
    try:
        yield
    finally:
        _quiet -= 1
        if enabled and _quiet == 0:
            gc.freeze()
            gc.enable()
