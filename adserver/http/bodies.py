"""Reading request bodies at the edge: a body that cannot be decoded (a client claiming gzip
or brotli it did not send) is a 400, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from aiohttp import web

CHUNK = 256 * 1024


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or its first `limit` + 1 bytes so that the caller can tell an
    oversized one. (`StreamReader.read(n)` returns what has arrived so far, not n bytes.)"""
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = await request.content.read(min(CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except Exception:  # decompression errors surface as the codec's own exception types
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": "the request body could not be read"}).decode(),
            content_type="application/json",
        ) from None


class BodyTooLarge(Exception):
    """The request body is longer than the route accepts."""


async def body_pieces(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives, in pieces of at most CHUNK bytes; raises BodyTooLarge past
    `limit` bytes (nothing beyond it is read) and a 400 when it cannot be decoded."""
    size = 0
    while True:
        try:
            chunk = await request.content.read(CHUNK)
        except Exception:  # decompression errors, as in read_body
            raise web.HTTPBadRequest(
                text=orjson.dumps({"error": "the request body could not be read"}).decode(),
                content_type="application/json",
            ) from None
        if not chunk:
            return
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        yield chunk
