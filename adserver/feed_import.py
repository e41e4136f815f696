"""Importing a product feed while it arrives, without holding it or stalling anyone.

The body is validated piece by piece (`FeedValidator`) and its products are written to a
staging catalog a thousand at a time (`CatalogUpload`), so memory stays bounded whatever
the feed's size. The work runs on the event loop itself, in small pieces, and gives the loop
back for PAUSE_SECONDS whenever it has held it for SLICE_SECONDS: pixels and ads are
answered in between (a parsing thread would hold the GIL for as long as a C parser runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable

from adserver.catalog import FeedValidator, Product
from adserver.store import RedisError
from adserver.store.catalog_store import CatalogUpload

PIECE = 512  # bytes validated at a time: at most ~1.2 ms of CPU whatever the rows (CSV of "x")
SLICE_SECONDS = 0.002  # the longest the import holds the event loop at a time ...
PAUSE_SECONDS = 0.001  # ... before leaving it this long to everyone else
BATCH = 1000  # products per write to Redis


class _Slicer:
    """One per process, shared by every import at once: the loop gets its pause after every
    SLICE_SECONDS of import work in total, however many feeds arrive together."""

    def __init__(self) -> None:
        self._since = time.perf_counter()

    async def pause_if_due(self) -> None:
        if time.perf_counter() - self._since >= SLICE_SECONDS:
            # Not sleep(0): that yields one turn of the loop, and a request needs several
            # (read, handler, Redis, write), each of which would then wait for a slice.
            await asyncio.sleep(PAUSE_SECONDS)
            self._since = time.perf_counter()


SLICER = _Slicer()


async def import_feed(
    pieces: AsyncIterable[bytes], validator: FeedValidator, upload: CatalogUpload
) -> int | None:
    """Validate and stage the feed, then put it in place: its catalog version, or None when
    no row was valid (the catalog is then unchanged). Raises FeedError for an unreadable
    feed, or a Redis error; the staging catalog is then discarded."""
    try:
        await _stage(pieces, validator, upload)
    except BaseException:
        with contextlib.suppress(RedisError, OSError):
            await upload.discard()
        raise
    if not upload.products:
        return None
    return await upload.commit()


async def _stage(
    pieces: AsyncIterable[bytes], validator: FeedValidator, upload: CatalogUpload
) -> None:
    slicer = SLICER
    batch: list[Product] = []
    async for chunk in pieces:
        for start in range(0, len(chunk), PIECE):
            batch += validator.feed(chunk[start : start + PIECE])
            if len(batch) >= BATCH:
                await upload.add(batch)
                batch = []
            await slicer.pause_if_due()
    await upload.add(batch + validator.close())
