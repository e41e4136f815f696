"""Reading request bodies at the edge: a body that cannot be decoded (a client claiming gzip
or brotli it did not send) is a 400, never a 500."""

from __future__ import annotations

import orjson
from aiohttp import web


async def read_body(request: web.Request, limit: int) -> bytes:
    """Up to `limit` + 1 bytes, so that the caller can tell an oversized body."""
    try:
        return await request.content.read(limit + 1)
    except Exception:  # decompression errors surface as the codec's own exception types
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": "the request body could not be read"}).decode(),
            content_type="application/json",
        ) from None
