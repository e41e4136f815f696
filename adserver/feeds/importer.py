"""Importing a product feed while it arrives, without holding it or stalling anyone.

The body is validated piece by piece (`FeedValidator`) and its products are written to a
staging catalog a thousand at a time (`CatalogUpload`), so memory stays bounded whatever
the feed's size. The work runs on the event loop itself, in small pieces, sharing it (see
loop_share): pixels and ads are answered in between.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable

from adserver.core.product import Product
from adserver.feeds.validation import FeedValidator
from adserver.runtime.loop_share import LOOP_SHARE
from adserver.store import RedisError
from adserver.store.catalog_store import CatalogUpload

PIECE = 512  # bytes validated at a time: at most ~1.2 ms of CPU whatever the rows (CSV of "x")
BATCH = 1000  # products per write to Redis


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
    batch: list[Product] = []
    async for chunk in pieces:
        for start in range(0, len(chunk), PIECE):
            batch += validator.feed(chunk[start : start + PIECE])
            if len(batch) >= BATCH:
                await upload.add(batch)
                batch = []
            await LOOP_SHARE.pause_if_due()
    await upload.add(batch + validator.close())
